//! Timers the simulation can see: what lets a run skip idle time and stay exact.
//!
//! A simulated run steps every host one tick (1 ms) at a time. When nothing is happening it
//! may instead jump straight to the next moment something can happen, but only if it knows
//! that moment: tokio keeps its timers to itself. So windtunnel's own code makes its timers
//! here, in two kinds:
//! - **work in flight** ([`sleep`], [`sleep_until`], [`timeout`], [`timeout_at`]): a call's
//!   deadline, a handler's service time, a message's latency, a backoff. While one of these is
//!   armed on any host, the run does not skip.
//! - **background wake-ups** ([`idle`], [`idle_until`]): a poller's next look, a health check's
//!   next round, a load generator's next arrival. Each one's time is on the thread's agenda,
//!   and a skip ends at the earliest.
//!
//! A timer made with tokio directly (in a service of your own, say) is invisible here. If one
//! fires inside a skip, the run notices (a task ran inside it) and runs again from the start
//! without skipping, so results never depend on it; use these functions in services of your
//! own to keep their idle time cheap (docs/design.md, "Skipping idle time").
//!
//! Outside a simulation (`serve`) these are tokio's timers plus a counter.
//!
//! [`now`] reads the clock for all of them, and for the framework's other uses of the time:
//! inside a simulation it reads the host's clock once per clock epoch (turmoil's runtimes move
//! their paused clocks only when they park, and number those moments), not on every call.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

thread_local! {
    /// Work timers armed on this thread.
    static BUSY: Cell<usize> = const { Cell::new(0) };
    /// Background wake-ups on this thread, by simulated time: how many at each.
    static WAKES: RefCell<BTreeMap<Duration, usize>> = const { RefCell::new(BTreeMap::new()) };
    /// The clock as read in one clock epoch of a simulated host, and that epoch.
    static NOW: Cell<Option<(u64, Instant)>> = const { Cell::new(None) };
    /// The last [`since`] read in one clock epoch: the epoch, the base and the time since it.
    static SINCE: Cell<Option<(u64, Instant, Duration)>> = const { Cell::new(None) };
}

/// tokio's `Instant::now()`, read once per clock epoch inside a simulation.
///
/// Inside a host of a simulation the clock is paused and moves only when the host's runtime
/// parks; turmoil numbers those moments ([`turmoil::clock_epoch`], which also changes from one
/// host to the next). A time read in one epoch is the time for the rest of it, so it is kept
/// here and handed back, which costs a fifth of a read of tokio's clock (a lookup of the
/// runtime and a lock). Anywhere else (the real network, a plain tokio runtime) the clock is
/// read every time. Debug builds check every kept time against the clock.
pub fn now() -> Instant {
    let Some(epoch) = turmoil::clock_epoch() else {
        return Instant::now();
    };
    NOW.with(|kept| match kept.get() {
        Some((e, at)) if e == epoch => {
            debug_assert_eq!(at, Instant::now(), "the clock moved inside an epoch");
            at
        }
        _ => {
            let at = Instant::now();
            kept.set(Some((epoch, at)));
            at
        }
    })
}

/// The time from `base` to [`now`] (zero if `base` is later), kept for the rest of a clock
/// epoch as [`now`] keeps the time itself: a transport's time since the start of the run is read
/// for most events, and this spares each read after the first in an epoch its subtraction.
pub fn since(base: Instant) -> Duration {
    let Some(epoch) = turmoil::clock_epoch() else {
        return Instant::now().saturating_duration_since(base);
    };
    SINCE.with(|kept| match kept.get() {
        Some((e, b, since)) if e == epoch && b == base => {
            debug_assert_eq!(
                since,
                now().saturating_duration_since(base),
                "a stale since"
            );
            since
        }
        _ => {
            let since = now().saturating_duration_since(base);
            kept.set(Some((epoch, base, since)));
            since
        }
    })
}

/// When the next thing can happen, as far as this thread's timers know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Horizon {
    /// A timer of work in flight is armed: something may happen at any tick.
    Busy,
    /// Nothing is armed but background wake-ups, the earliest at this simulated time.
    Until(Duration),
    /// No timer at all.
    Never,
}

/// What this thread's timers allow the simulation to skip.
pub fn horizon() -> Horizon {
    if BUSY.with(Cell::get) > 0 {
        return Horizon::Busy;
    }
    WAKES.with(|w| match w.borrow().keys().next() {
        Some(at) => Horizon::Until(*at),
        None => Horizon::Never,
    })
}

/// Forgets every timer of this thread: called when a simulation starts, so one that ended
/// badly on this thread cannot hold the next one back.
pub fn reset() {
    BUSY.with(|b| b.set(0));
    WAKES.with(|w| w.borrow_mut().clear());
}

/// Counts one armed work timer while it lives.
struct Busy;

impl Busy {
    fn arm() -> Busy {
        BUSY.with(|b| b.set(b.get() + 1));
        Busy
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        // `try_with`: a timer dropped while the thread exits has nobody left to tell.
        let _ = BUSY.try_with(|b| b.set(b.get().saturating_sub(1)));
    }
}

/// Holds one background wake-up on the agenda while it lives.
struct Wake(Option<Duration>);

impl Wake {
    fn at(at: Instant) -> Wake {
        // Outside a simulation there is no agenda to keep.
        let Some(now) = turmoil::sim_elapsed() else {
            return Wake(None);
        };
        let when = now.saturating_add(at.saturating_duration_since(self::now()));
        WAKES.with(|w| *w.borrow_mut().entry(when).or_insert(0) += 1);
        Wake(Some(when))
    }
}

impl Drop for Wake {
    fn drop(&mut self) {
        let Some(when) = self.0 else {
            return;
        };
        let _ = WAKES.try_with(|w| {
            let mut w = w.borrow_mut();
            if let Some(n) = w.get_mut(&when) {
                *n -= 1;
                if *n == 0 {
                    w.remove(&when);
                }
            }
        });
    }
}

/// The longest sleep tokio's `sleep` takes (about 30 years): longer ones are cut to it.
const LONGEST_SLEEP: Duration = Duration::from_secs(86_400 * 365 * 30);

/// Sleeps for `duration`, as work in flight.
pub async fn sleep(duration: Duration) {
    let _busy = Busy::arm();
    // tokio's `sleep`, counted from this thread's kept time ([`now`]): tokio's would read its
    // clock again, a lock and a runtime handle's count for the same instant.
    tokio_sleep_until(now() + duration.min(LONGEST_SLEEP)).await
}

/// Sleeps until `deadline`, as work in flight.
pub async fn sleep_until(deadline: Instant) {
    let _busy = Busy::arm();
    tokio_sleep_until(deadline).await
}

/// tokio's `sleep_until`, except that once its timer has fired it is not polled again: a poll
/// of a fired tokio timer registers the task's waker with it once more (two compare-and-swaps
/// and a clone of the waker, kept until the timer is dropped) before it looks and finds it
/// fired. A timer that fires while its task waits on it is polled once more, at the wake-up it
/// sent, so this spares one registration for each; the look is one atomic load. The task's
/// budget is spent as tokio spends it, so tasks yield where they did. (tokio's `Sleep` needs
/// tokio 1.47 or later for its budget, `task::coop::poll_proceed`. One difference: a sleep
/// polled after its runtime's time driver shut down is ready here, where tokio's panics; a
/// runtime drops its tasks before that.)
async fn tokio_sleep_until(deadline: Instant) {
    let sleep = tokio::time::sleep_until(deadline);
    tokio::pin!(sleep);
    until_fired(sleep).await
}

/// Waits for `sleep` to fire, polling it through tokio only until it has ([`tokio_sleep_until`]).
async fn until_fired(mut sleep: Pin<&mut tokio::time::Sleep>) {
    std::future::poll_fn(|cx| {
        if sleep.is_elapsed() {
            // What tokio's poll would take for it: one unit of the task's budget (a task out of
            // budget yields here, as it would there).
            std::task::ready!(tokio::task::coop::poll_proceed(cx)).made_progress();
            Poll::Ready(())
        } else {
            sleep.as_mut().poll(cx)
        }
    })
    .await
}

/// A tokio timer for a call to keep across its waits (a simulated call's two legs and its
/// deadline between them), pinned where the call keeps it: [`sleep_on`] makes it at the first
/// wait and moves it to each later wait's time in turn, so the call makes and drops one timer
/// where it made one per wait. `None` until a wait with a deadline makes it.
pub(crate) type Kept = Option<tokio::time::Sleep>;

/// [`sleep_until`] on a timer the caller keeps ([`Kept`]), or forever without a deadline (as
/// [`crate::framework::sleep_until_opt`]; the timer is left alone). The timer is armed for
/// `deadline` where a new timer would be: at this wait's first poll, after the same look at the
/// task's budget, so tokio's timer wheel sees the same removals and insertions in the same order
/// and fires timers in the same order. A timer that fired is moved (tokio takes it out of the
/// wheel and puts it in again). So is one still armed for a later millisecond than `deadline`'s.
/// One still armed for `deadline`'s millisecond or an earlier one is replaced by a new timer
/// instead: tokio would leave it where it is and move it only when its old time came, after
/// timers armed in between.
pub(crate) async fn sleep_on(mut kept: Pin<&mut Kept>, deadline: Option<Instant>) {
    let Some(deadline) = deadline else {
        return std::future::pending().await;
    };
    let _busy = Busy::arm();
    // tokio counts its wheel in whole milliseconds, rounded up: a deadline at least one
    // millisecond before the armed one is in an earlier one.
    let moves = kept.as_mut().as_pin_mut().is_some_and(|sleep| {
        let earlier = deadline
            .checked_add(Duration::from_millis(1))
            .is_some_and(|d| d <= sleep.deadline());
        sleep.is_elapsed() || earlier
    });
    if moves {
        // A task out of budget yields here, as a new timer's first poll would, before it is
        // armed; the look spends nothing (tokio's `Sleep` spends the unit when it is polled).
        std::future::poll_fn(|cx| {
            if tokio::task::coop::has_budget_remaining() {
                Poll::Ready(())
            } else {
                tokio::task::coop::poll_proceed(cx).map(drop)
            }
        })
        .await;
        if let Some(sleep) = kept.as_mut().as_pin_mut() {
            sleep.reset(deadline);
        }
    } else {
        // A new timer (the old one, if any, is dropped now, as a wait's own timer was when the
        // wait ended), armed at its first poll as any is.
        kept.set(Some(tokio::time::sleep_until(deadline)));
    }
    if let Some(sleep) = kept.as_pin_mut() {
        until_fired(sleep).await
    }
}

/// Runs `future` for at most `duration`, as work in flight.
pub async fn timeout<F: Future>(
    duration: Duration,
    future: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    let _busy = Busy::arm();
    // From the kept time, as [`sleep`] is.
    match now().checked_add(duration) {
        Some(deadline) => tokio::time::timeout_at(deadline, future).await,
        None => tokio::time::timeout(duration, future).await,
    }
}

/// Runs `future` until `deadline` at the latest, as work in flight.
pub async fn timeout_at<F: Future>(
    deadline: Instant,
    future: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    let _busy = Busy::arm();
    tokio::time::timeout_at(deadline, future).await
}

/// Sleeps for `duration`, as a background wake-up the simulation may skip to.
pub async fn idle(duration: Duration) {
    idle_until(now() + duration).await
}

/// Sleeps until `at`, as a background wake-up the simulation may skip to.
pub async fn idle_until(at: Instant) {
    let _wake = Wake::at(at);
    tokio_sleep_until(at).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn work_timers_count_while_armed_and_background_ones_are_not_work() {
        reset();
        assert_eq!(horizon(), Horizon::Never);
        let work = tokio::spawn(sleep(Duration::from_millis(5)));
        tokio::task::yield_now().await;
        assert_eq!(horizon(), Horizon::Busy);
        work.await.ok();
        assert_eq!(horizon(), Horizon::Never);
        // Outside turmoil a background wake-up has no simulated time to be kept at.
        let bg = tokio::spawn(idle(Duration::from_millis(5)));
        tokio::task::yield_now().await;
        assert_eq!(horizon(), Horizon::Never);
        bg.abort();
    }

    /// Polls each of `sleeps` once, lets their timers fire, then polls them all again in one
    /// poll of the task: how many were ready before the task's budget ran out.
    async fn ready_in_one_poll<F: Future<Output = ()>>(mut sleeps: Vec<Pin<Box<F>>>) -> usize {
        std::future::poll_fn(|cx| {
            for s in sleeps.iter_mut() {
                assert!(s.as_mut().poll(cx).is_pending(), "armed, not yet due");
            }
            Poll::Ready(())
        })
        .await;
        tokio::time::advance(Duration::from_millis(2)).await;
        std::future::poll_fn(|cx| {
            let mut ready = 0;
            for s in sleeps.iter_mut() {
                if s.as_mut().poll(cx).is_pending() {
                    break;
                }
                ready += 1;
            }
            Poll::Ready(ready)
        })
        .await
    }

    #[tokio::test(start_paused = true)]
    async fn a_fired_work_timer_spends_the_task_budget_as_tokios_own_does() {
        // Goal: a work timer that has fired is ready without a poll through tokio, yet spends
        // one unit of the task's budget as tokio's `Sleep` would, so a task that is out of
        // budget yields at the same timer (the same order of polls, the same run). Method: 300
        // fired timers polled in one go, windtunnel's and tokio's: as many ready in both, and
        // fewer than all (the budget ran out).
        reset();
        let ms = Duration::from_millis(1);
        let ours = ready_in_one_poll((0..300).map(|_| Box::pin(sleep(ms))).collect()).await;
        let tokios =
            ready_in_one_poll((0..300).map(|_| Box::pin(tokio::time::sleep(ms))).collect()).await;
        assert!(ours > 0, "the timers fired");
        assert_eq!(ours, tokios, "the budget is spent as tokio spends it");
        assert!(ours < 300, "the task's budget ran out, {ours} ready");
    }

    /// The order two tasks end their waits in: `a` abandons a wait for 10 ms at 1 ms and then
    /// waits until 20 ms, on a kept timer ([`Kept`]) or on new timers; `b` arms a timer for 20 ms
    /// at 5 ms, between the two.
    async fn wake_order(kept_path: bool) -> Vec<&'static str> {
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let t = Instant::now();
        let ms = Duration::from_millis;
        let a_log = log.clone();
        let a = tokio::spawn(async move {
            if kept_path {
                let kept_timer: Kept = None;
                tokio::pin!(kept_timer);
                tokio::select! {
                    biased;
                    _ = sleep_on(kept_timer.as_mut(), Some(t + ms(10))) => {}
                    _ = tokio::time::sleep(ms(1)) => {}
                }
                sleep_on(kept_timer.as_mut(), Some(t + ms(20))).await;
            } else {
                tokio::select! {
                    biased;
                    _ = sleep_until(t + ms(10)) => {}
                    _ = tokio::time::sleep(ms(1)) => {}
                }
                sleep_until(t + ms(20)).await;
            }
            a_log.lock().unwrap().push("a");
        });
        let b_log = log.clone();
        let b = tokio::spawn(async move {
            tokio::time::sleep_until(t + ms(5)).await;
            tokio::time::sleep_until(t + ms(20)).await;
            b_log.lock().unwrap().push("b");
        });
        let _ = (a.await, b.await);
        let order = log.lock().unwrap().clone();
        order
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_timer_moved_later_fires_in_the_order_a_new_timer_would() {
        // Goal: moving a kept timer that is still armed to a later time puts it where a new
        // timer armed at that moment would go (tokio would otherwise leave it in its old slot
        // and move it only when that slot came due, after timers armed in between), so tasks
        // wake in the same order. Method: the same two tasks with a kept timer and with new
        // timers; the order they end in must match.
        reset();
        let with_new = wake_order(false).await;
        let with_kept = wake_order(true).await;
        assert_eq!(with_new.len(), 2);
        assert_eq!(with_kept, with_new);
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_timer_moved_from_wait_to_wait_fires_at_each_waits_time() {
        // Goal: one timer kept across a call's waits ends each wait at that wait's own time,
        // counts as work only while a wait is on it, and a wait without a deadline never ends.
        // Method: wait 5 ms on it; then a wait for 100 ms that a 10 ms sleep beats (the timer
        // is left armed for later); then a wait for 3 ms, which must not wait for the 100.
        reset();
        let kept_timer: Kept = None;
        tokio::pin!(kept_timer);
        let start = Instant::now();
        let ms = Duration::from_millis;
        sleep_on(kept_timer.as_mut(), Some(start + ms(5))).await;
        assert_eq!(start.elapsed(), ms(5));
        assert_eq!(horizon(), Horizon::Never, "no work after the wait");
        let beaten = tokio::select! {
            _ = sleep_on(kept_timer.as_mut(), Some(Instant::now() + ms(100))) => false,
            _ = tokio::time::sleep(ms(10)) => true,
        };
        assert!(beaten && start.elapsed() == ms(15));
        {
            let waiting = sleep_on(kept_timer.as_mut(), Some(Instant::now() + ms(3)));
            tokio::pin!(waiting);
            assert!(futures::poll!(waiting.as_mut()).is_pending());
            assert_eq!(horizon(), Horizon::Busy, "a wait on it is work in flight");
            waiting.await;
        }
        assert_eq!(
            start.elapsed(),
            ms(18),
            "moved to the new time, not left at the old"
        );
        let forever = tokio::select! {
            _ = sleep_on(kept_timer.as_mut(), None) => false,
            _ = tokio::time::sleep(ms(1_000)) => true,
        };
        assert!(forever, "a wait without a deadline does not end");
    }
}
