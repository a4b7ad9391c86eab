//! Guards: the branches of a `select!` that rarely end (a cancellation, a deadline), polled only
//! when they were woken.
//!
//! A task wakes for many reasons: a handler that calls two services is woken for each leg of
//! each call. Every wake polls every pending branch of its `select!`, and a cancellation's
//! branch costs a lock a poll (its notifier's; and the token's too with tokio-util as
//! published), a deadline's a look at the timer. A [`Guard`] polls its future once, with a
//! waker of its own, and after that only when that waker was called: the other wakes of the
//! task skip it for the price of an atomic load.
//! It ends exactly when the future it wraps would have, and once ended it polls that future at
//! every poll again (a guard shared by two `select!`s, one after the other, ends both, as the
//! future it wraps would: a cancellation's wait stays ready).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, RawWakerVTable, Wake, Waker};

use crate::lock::lock;

/// `future`, polled on its first poll and then only after it woke its task. A future that is
/// not `Unpin` is guarded pinned where it lives (`Guard::new(fut.as_mut())` after
/// `tokio::pin!(fut)`), so a guard allocates only its waker.
///
/// A poll that finds the future not woken, by the same task waker as the poll before, costs
/// one atomic load and touches nothing shared: no lock, no reference count. (The task's waker
/// is handed to the flag once and kept there; a wake wakes a copy of it, so it is still there
/// for the next wake. A wake costs a lock and a count, where it used to be every poll.)
pub(crate) struct Guard<F> {
    future: F,
    flag: Arc<Flag>,
    /// The waker `future` holds: the flag's, made once.
    waker: Waker,
    /// Which task waker the flag holds (its data and vtable addresses, as [`Waker::will_wake`]
    /// compares them; the kept clone's, which keeps that address from being reused); `None`
    /// before the first poll.
    registered: Option<(usize, usize)>,
}

/// Notes that the guarded future woke, and passes the wake on to the task.
struct Flag {
    /// Whether the future is to be polled at the task's next poll: set at first, so that the
    /// first poll arms it, and then by its wakes.
    woken: AtomicBool,
    /// The waker of the task that polls the guard, as of its latest poll by a new waker.
    task: Mutex<Option<Waker>>,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Only the wake that sets the flag wakes the task: the task then polls the future, and
        // further wakes before that poll have nothing to add (as a waker taken by its first
        // wake would not pass them on). A wake between the poll's look at the flag and its
        // clearing is covered by the future's own poll, which comes after the clearing.
        if self.woken.swap(true, Ordering::AcqRel) {
            return;
        }
        // Woken outside the lock (the clone is one count): an executor that polls inside a
        // wake, or drops a task inside it, must not find the lock held.
        let task = lock(&self.task).clone();
        if let Some(task) = task {
            task.wake();
        }
    }
}

impl<F: Future + Unpin> Guard<F> {
    /// Guards `future`.
    pub(crate) fn new(future: F) -> Guard<F> {
        let flag = Arc::new(Flag {
            woken: AtomicBool::new(true),
            task: Mutex::new(None),
        });
        Guard {
            future,
            waker: Waker::from(flag.clone()),
            flag,
            registered: None,
        }
    }
}

/// What tells two wakers apart, as [`Waker::will_wake`] does.
fn identity(waker: &Waker) -> (usize, usize) {
    let vtable: *const RawWakerVTable = waker.vtable();
    (waker.data() as usize, vtable as usize)
}

impl<F: Future + Unpin> Future for Guard<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        if this.registered != Some(identity(cx.waker())) {
            // The identity is the kept clone's: a waker whose clones differ from it (not
            // tokio's) is simply kept again at every poll.
            let task = cx.waker().clone();
            this.registered = Some(identity(&task));
            // The old waker is dropped after the statement, outside the lock: dropping a waker
            // may run an executor's code.
            let old = lock(&this.flag.task).replace(task);
            drop(old);
        }
        if !this.flag.woken.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        // Cleared before the poll: a wake from now on sets it again, and one before it is seen
        // by the poll itself.
        this.flag.woken.store(false, Ordering::Release);
        let polled = Pin::new(&mut this.future).poll(&mut Context::from_waker(&this.waker));
        if polled.is_ready() {
            // Nothing will wake an ended future again: poll it at every poll from now on.
            this.flag.woken.store(true, Ordering::Release);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio_util::sync::CancellationToken;

    #[tokio::test(start_paused = true)]
    async fn a_guard_ends_when_its_future_does_and_not_before() {
        // Goal: a guarded cancellation skipped on the task's other wakes still ends the select
        // when the token is cancelled. Method: a select of a guarded cancellation and a loop of
        // short sleeps (other wakes); cancel after 10 of them from another task.
        let token = CancellationToken::new();
        let canceller = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            canceller.cancel();
        });
        let mut wakes = 0u32;
        let cancelled = token.cancelled();
        tokio::pin!(cancelled);
        let mut guard = Guard::new(cancelled.as_mut());
        let ended_by_guard = loop {
            tokio::select! {
                biased;
                _ = tokio::time::sleep(Duration::from_millis(1)) => {
                    wakes += 1;
                    if wakes > 100 {
                        break false;
                    }
                }
                _ = &mut guard => break true,
            }
        };
        assert!(ended_by_guard, "the guard never ended");
        assert!((9..=11).contains(&wakes), "ended after {wakes} other wakes");
    }

    #[tokio::test(start_paused = true)]
    async fn a_guarded_deadline_fires_at_its_time() {
        // Goal: a guarded timer fires when it is due, though it is not polled on other wakes.
        let start = tokio::time::Instant::now();
        let mut guard = Guard::new(Box::pin(tokio::time::sleep(Duration::from_millis(25))));
        let mut ticks = 0u32;
        loop {
            tokio::select! {
                biased;
                _ = &mut guard => break,
                _ = tokio::time::sleep(Duration::from_millis(3)) => ticks += 1,
            }
        }
        assert_eq!(start.elapsed(), Duration::from_millis(25));
        assert_eq!(ticks, 8);
    }

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Count(std::sync::atomic::AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_guard_wakes_the_waker_of_its_latest_poll_every_time() {
        // Goal: the task waker a guard keeps is the one of its latest poll, and it is woken by
        // every wake of the guarded future, not only the first (the guard keeps it; a wake
        // does not take it). Method: a guarded Notify polled by waker `a`, then by `b`; notify
        // twice with a poll between; then poll by `a` again and notify.
        let notify = Arc::new(tokio::sync::Notify::new());
        let (a, b) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let (wa, wb) = (Waker::from(a.clone()), Waker::from(b.clone()));
        let n = notify.clone();
        let mut guard = Guard::new(Box::pin(async move {
            n.notified().await;
            n.notified().await;
            n.notified().await;
        }));
        let mut poll = |w: &Waker| Pin::new(&mut guard).poll(&mut Context::from_waker(w));
        assert!(poll(&wa).is_pending());
        assert!(poll(&wb).is_pending());
        notify.notify_one();
        assert_eq!(
            (a.0.load(Ordering::SeqCst), b.0.load(Ordering::SeqCst)),
            (0, 1)
        );
        assert!(poll(&wb).is_pending());
        assert!(poll(&wb).is_pending(), "a poll without a wake");
        notify.notify_one();
        assert_eq!(
            b.0.load(Ordering::SeqCst),
            2,
            "the second wake reached the task too"
        );
        assert!(poll(&wa).is_pending());
        notify.notify_one();
        assert_eq!(
            (a.0.load(Ordering::SeqCst), b.0.load(Ordering::SeqCst)),
            (1, 2)
        );
        assert!(poll(&wa).is_ready());
    }

    #[test]
    fn wakes_before_the_next_poll_wake_the_task_once() {
        // Goal: a future that wakes its guard again and again before the task polls wakes the
        // task once (extra wakes would be extra polls, and in a simulation, another order of
        // polls). Method: a future that keeps its waker; wake it three times, poll, wake twice.
        let kept: Arc<Mutex<Option<Waker>>> = Arc::default();
        let slot = kept.clone();
        let mut guard = Guard::new(Box::pin(std::future::poll_fn(move |cx| {
            *lock(&slot) = Some(cx.waker().clone());
            Poll::<()>::Pending
        })));
        let task = Arc::new(Count::default());
        let waker = Waker::from(task.clone());
        let mut poll = || Pin::new(&mut guard).poll(&mut Context::from_waker(&waker));
        let wake = || lock(&kept).as_ref().map(Waker::wake_by_ref);
        assert!(poll().is_pending());
        for _ in 0..3 {
            wake();
        }
        assert_eq!(task.0.load(Ordering::SeqCst), 1);
        assert!(poll().is_pending());
        wake();
        wake();
        assert_eq!(task.0.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_guard_that_ended_ends_the_next_select_too() {
        // Goal: a guard shared by two `select!`s, as a connection's "closed" is by its
        // backpressure wait and its read, ends the second after it ended the first (the
        // cancellation it wraps stays ready; nothing wakes it again). Method: cancel, end one
        // select through the guard, then select again against a wait that never ends.
        let token = CancellationToken::new();
        let cancelled = token.cancelled();
        tokio::pin!(cancelled);
        let mut guard = Guard::new(cancelled.as_mut());
        token.cancel();
        let never = tokio::sync::Notify::new();
        tokio::select! {
            _ = never.notified() => panic!("nothing notifies"),
            _ = &mut guard => {}
        }
        let again = tokio::time::timeout(Duration::from_secs(1), async {
            tokio::select! {
                _ = never.notified() => false,
                _ = &mut guard => true,
            }
        })
        .await;
        assert_eq!(again, Ok(true), "the guard did not end the second select");
    }

    #[test]
    fn a_cancellation_wait_polled_again_by_another_waker_wakes_that_one() {
        // Goal: the wait for a token's cancellation (`cancelled()`, which this repository's
        // copy of tokio-util lets skip the notifier when polled again by the waker it already
        // waits with) is woken through the waker of its latest poll, and only once the token is
        // cancelled. Method: poll it by `a` twice, then by `b`, then by `a` again; cancel; poll.
        let token = CancellationToken::new();
        let (a, b) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let (wa, wb) = (Waker::from(a.clone()), Waker::from(b.clone()));
        let wait = token.cancelled();
        tokio::pin!(wait);
        let mut poll = |w: &Waker| wait.as_mut().poll(&mut Context::from_waker(w));
        assert!(poll(&wa).is_pending());
        assert!(poll(&wa).is_pending(), "polled again by the same waker");
        assert!(poll(&wb).is_pending());
        assert!(poll(&wa).is_pending(), "and by the first waker again");
        token.cancel();
        assert_eq!(
            (a.0.load(Ordering::SeqCst), b.0.load(Ordering::SeqCst)),
            (1, 0),
            "the cancellation woke the latest poll's waker"
        );
        assert!(poll(&wa).is_ready());
        assert!(poll(&wb).is_ready(), "a cancelled wait stays ready");

        // And one polled by the same waker only: still woken, once cancelled.
        let token = CancellationToken::new();
        let c = Arc::new(Count::default());
        let wc = Waker::from(c.clone());
        let wait = token.cancelled();
        tokio::pin!(wait);
        for _ in 0..3 {
            assert!(wait
                .as_mut()
                .poll(&mut Context::from_waker(&wc))
                .is_pending());
        }
        assert_eq!(
            c.0.load(Ordering::SeqCst),
            0,
            "no wake before the cancellation"
        );
        token.cancel();
        assert_eq!(c.0.load(Ordering::SeqCst), 1);
        assert!(wait.as_mut().poll(&mut Context::from_waker(&wc)).is_ready());
    }
}
