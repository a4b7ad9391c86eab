//! Deadlines a host keeps itself (windtunnel patch): timers for software inside a host that
//! cost a push on a heap instead of a registration with tokio's timer driver.
//!
//! A tokio timer in a simulated host is registered with the runtime's driver (a lock, a wheel
//! slot, an atomic waker), fired from its park and deregistered when dropped: about a dozen
//! atomic operations each. Software that arms a few timers for every message (a deadline, a
//! service time, a modelled latency) spends much of its time there. A host's runtime is driven
//! a tick at a time, and when the tick is 1 ms (tokio's own timer resolution) a tokio timer
//! can only fire at a tick's end anyway: so the host keeps these deadlines on a heap of its own
//! and wakes the ones that are due as each tick starts, in order of deadline and then of
//! creation. A deadline fires at the first tick start at or after it, which is where tokio,
//! rounding deadlines up to its millisecond, would have fired it.
//!
//! [`sleep_until`] hands one out only while a host is ticked with a 1 ms tick; anywhere else
//! (another tick, a skip of idle time, outside a simulation) it returns `None` and software
//! uses tokio's timer.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use tokio::time::{Duration, Instant};

scoped_tls::scoped_thread_local!(static CURRENT: RefCell<Deadlines>);

/// The tick with which a host keeps its own deadlines: tokio's timer resolution.
pub(crate) const TICK: Duration = Duration::from_millis(1);

/// Milliseconds ahead kept in the ring, one bucket each; later deadlines wait in `later`.
const RING: u64 = 1024;

/// Entries of dropped deadlines tolerated before the buckets are rebuilt from the armed ones,
/// if they also outnumber those.
const STALE_SLACK: usize = 4096;

/// Numbers each host's queue, so a deadline never touches another host's.
static QUEUES: AtomicU64 = AtomicU64::new(1);

/// One deadline in a bucket: its `seq` and slot. Stale when the slot no longer holds `seq`
/// (the deadline was dropped).
type Entry = (u64, u32);

/// One host's deadlines, in buckets of a millisecond: the tick at whose start each is due.
pub(crate) struct Deadlines {
    /// This queue's number.
    id: u64,
    /// The instant tokio's timer wheel counts its milliseconds from: ticks start at whole
    /// milliseconds from it.
    base: Instant,
    /// The host's clock as its current tick started.
    now: Instant,
    /// The last millisecond whose bucket was emptied.
    fired: u64,
    /// Buckets for the milliseconds `fired + 1 ..= fired + RING`, by millisecond modulo `RING`
    /// (allocated when the first deadline is armed).
    ring: Vec<Vec<Entry>>,
    /// Buckets further ahead, by millisecond.
    later: BTreeMap<u64, Vec<Entry>>,
    /// Entries in `ring` and `later`, stale ones included.
    entries: usize,
    /// Each slot's armed deadline: its `seq` (0 when free) and the waker to wake.
    slots: Vec<(u64, Option<Waker>)>,
    /// Free slots.
    free: Vec<u32>,
    /// The last `seq` handed out.
    seq: u64,
    /// Armed deadlines.
    live: usize,
    /// Wakers of due deadlines, kept between ticks for its capacity.
    due: Vec<Waker>,
}

impl Deadlines {
    /// An empty queue for a runtime whose timer wheel counts from `base`, its clock at `now`.
    pub(crate) fn new(base: Instant, now: Instant) -> Self {
        let mut q = Self {
            id: QUEUES.fetch_add(1, Ordering::Relaxed),
            base,
            now,
            fired: 0,
            ring: Vec::new(),
            later: BTreeMap::new(),
            entries: 0,
            slots: Vec::new(),
            free: Vec::new(),
            seq: 0,
            live: 0,
            due: Vec::new(),
        };
        q.fired = q.millis(now);
        q
    }

    /// The millisecond of the tick at whose start `at` is due: the first whole millisecond
    /// from `base` at or after it (tokio rounds its deadlines up the same way).
    fn millis(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.base);
        since
            .as_secs()
            .saturating_mul(1000)
            .saturating_add(u64::from(since.subsec_nanos().div_ceil(1_000_000)))
    }

    /// Makes `deadlines` the current host's while `f` runs.
    pub(crate) fn enter<R>(deadlines: &RefCell<Deadlines>, f: impl FnOnce() -> R) -> R {
        CURRENT.set(deadlines, f)
    }

    /// Starts a tick at `now`: wakes every deadline due by then, by millisecond and then in
    /// the order they were armed.
    pub(crate) fn start_tick(deadlines: &RefCell<Deadlines>, now: Instant) {
        let mut due = {
            let mut q = deadlines.borrow_mut();
            q.now = now;
            let to = q.millis(now);
            let mut due = std::mem::take(&mut q.due);
            if q.live == 0 {
                // Nothing armed: whatever the buckets hold is stale, and time may jump.
                q.clear();
                q.fired = q.fired.max(to);
            }
            while q.fired < to {
                q.fired += 1;
                q.fire(&mut due);
            }
            due
        };
        // Woken outside the borrow: a waker may do anything.
        for waker in due.drain(..) {
            waker.wake();
        }
        deadlines.borrow_mut().due = due;
    }

    /// Empties the bucket of millisecond `fired` into `due`, and brings the bucket that enters
    /// the ring's reach from `later`.
    fn fire(&mut self, due: &mut Vec<Waker>) {
        let at = (self.fired % RING) as usize;
        if let Some(bucket) = self.ring.get_mut(at) {
            let mut bucket = std::mem::take(bucket);
            self.entries -= bucket.len();
            for (seq, slot) in bucket.drain(..) {
                let entry = &mut self.slots[slot as usize];
                if entry.0 != seq {
                    continue;
                }
                entry.0 = 0;
                if let Some(waker) = entry.1.take() {
                    due.push(waker);
                }
                self.free.push(slot);
                self.live -= 1;
            }
            // The emptied bucket, its capacity kept, is the one for `fired + RING`.
            self.ring[at] = bucket;
        }
        let reach = self.fired + RING;
        if let Some(entries) = self.later.remove(&reach) {
            self.ring[at] = entries;
        }
    }

    /// Drops every entry (all stale: called with nothing armed).
    fn clear(&mut self) {
        if self.entries > 0 {
            self.ring.iter_mut().for_each(Vec::clear);
            self.later.clear();
            self.entries = 0;
        }
    }

    /// Whether no deadline is armed.
    pub(crate) fn is_empty(&self) -> bool {
        self.live == 0
    }

    fn arm(&mut self, at: Instant, waker: &Waker) -> (u64, u64, u32) {
        self.seq += 1;
        let seq = self.seq;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = (seq, Some(waker.clone()));
                slot
            }
            None => {
                self.slots.push((seq, Some(waker.clone())));
                u32::try_from(self.slots.len() - 1).expect("over 4 billion deadlines armed")
            }
        };
        // Due at a later tick than the current one (an earlier deadline is complete at once).
        let ms = self.millis(at).max(self.fired + 1);
        if self.ring.is_empty() {
            self.ring = (0..RING).map(|_| Vec::new()).collect();
        }
        if ms <= self.fired + RING {
            self.ring[(ms % RING) as usize].push((seq, slot));
        } else {
            self.later.entry(ms).or_default().push((seq, slot));
        }
        self.entries += 1;
        self.live += 1;
        (self.id, seq, slot)
    }

    fn disarm(&mut self, seq: u64, slot: u32) {
        let entry = &mut self.slots[slot as usize];
        if entry.0 != seq {
            return;
        }
        *entry = (0, None);
        self.free.push(slot);
        self.live -= 1;
        let stale = self.entries - self.live;
        if stale > STALE_SLACK && stale > self.live {
            let slots = &self.slots;
            let armed = |(seq, slot): &Entry| slots[*slot as usize].0 == *seq;
            for bucket in &mut self.ring {
                bucket.retain(armed);
            }
            self.later.retain(|_, bucket| {
                bucket.retain(armed);
                !bucket.is_empty()
            });
            self.entries = self.live;
        }
    }
}

/// A future that completes at `deadline`, kept by the current host (see the module docs), or
/// `None` when no host keeps deadlines here: use tokio's timer then.
pub fn sleep_until(deadline: Instant) -> Option<Sleep> {
    CURRENT.is_set().then_some(Sleep {
        deadline,
        armed: None,
    })
}

/// A deadline kept by a host: completes at the first tick start at or after it.
///
/// Polled outside the host's ticks (where no host keeps deadlines, or another host's are
/// kept), it is complete: there is no tick there to wait for.
#[derive(Debug)]
pub struct Sleep {
    deadline: Instant,
    /// The queue, `seq` and slot, once armed.
    armed: Option<(u64, u64, u32)>,
}

impl Sleep {
    /// The instant this completes at.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if !CURRENT.is_set() {
            return Poll::Ready(());
        }
        let deadline = self.deadline;
        CURRENT.with(|q| {
            let mut q = q.borrow_mut();
            match self.armed {
                None if deadline <= q.now => Poll::Ready(()),
                None => {
                    self.armed = Some(q.arm(deadline, cx.waker()));
                    Poll::Pending
                }
                Some((id, seq, slot)) if id == q.id => {
                    let entry = &mut q.slots[slot as usize];
                    if entry.0 != seq {
                        // Fired: the slot was freed as it was woken.
                        self.armed = None;
                        return Poll::Ready(());
                    }
                    match &mut entry.1 {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        w => *w = Some(cx.waker().clone()),
                    }
                    Poll::Pending
                }
                Some(_) => Poll::Ready(()),
            }
        })
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        let Some((id, seq, slot)) = self.armed else {
            return;
        };
        if !CURRENT.is_set() {
            // Dropped with its host's runtime (a crash): the queue is replaced with it.
            return;
        }
        CURRENT.with(|q| {
            if let Ok(mut q) = q.try_borrow_mut() {
                if q.id == id {
                    q.disarm(seq, slot);
                }
            }
        });
    }
}
