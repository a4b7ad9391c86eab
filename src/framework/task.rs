//! Spawning tasks so that a crash in the wind tunnel replays ([`spawn`]), and boxing large
//! futures where they are made.
//!
//! When the wind tunnel crashes a host, the host's tasks are dropped, and what they do on the
//! way out (a socket's FIN, a call's cancel, the events they record) happens in the order they
//! are dropped. tokio drops a runtime's tasks in lists chosen by task id, and ids come from one
//! counter for the whole process, so that order would depend on what every other thread of the
//! process spawned: a test of yours that runs a scenario with a crash beside other tests would
//! not replay. Tasks spawned with [`spawn`] are dropped first instead, in the order they were
//! spawned (those already woken at the crash first, in the order they were woken).
//! The framework spawns all its tasks so; a service of your own should too (docs/own-services.md).

use std::future::Future;
use std::pin::Pin;

use tokio::task::JoinHandle;

/// `tokio::spawn`, with the task noted so that a crash of its host in a simulation drops it in
/// the order tasks were spawned (module docs). Outside a simulation it is `tokio::spawn`.
///
/// # Panics
///
/// As `tokio::spawn`: when called outside a tokio runtime.
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    turmoil::spawn(future)
}

/// `Box::pin(make())`, with the box allocated before the future is made, so that the compiler
/// can make the future in place. `Box::pin(future)` makes the future on the stack and copies
/// it into a box allocated after it; a call's and a request's futures are a kilobyte or more,
/// and those copies were the largest single cost of a call (memcpy, 10% of the rpc bench's
/// instructions, before this).
#[inline(always)]
pub(crate) fn boxed<F>(make: impl FnOnce() -> F) -> Pin<Box<F>> {
    Box::into_pin(in_box(make))
}

/// `Box::new(make())`, with the box allocated before the value is made, so that the compiler
/// can make the value in place instead of copying it in (see [`boxed`]).
#[inline(always)]
pub(crate) fn in_box<T>(make: impl FnOnce() -> T) -> Box<T> {
    Box::write(Box::new_uninit(), make())
}
