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
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use tokio::time::{Duration, Instant};

scoped_tls::scoped_thread_local!(static CURRENT: RefCell<Deadlines>);

/// The tick with which a host keeps its own deadlines: tokio's timer resolution.
pub(crate) const TICK: Duration = Duration::from_millis(1);

/// Bits of a millisecond count each level of the wheel covers, and the levels: tokio's wheel.
const BITS: u32 = 6;
const LEVELS: usize = 6;
/// Slots in a level.
const SLOTS: usize = 1 << BITS;
/// Milliseconds the wheel spans; later deadlines wait in its last level, as in tokio's.
const SPAN: u64 = 1 << (BITS as usize * LEVELS);

/// Entries of dropped deadlines tolerated before the slots are rebuilt from the armed ones,
/// if they also outnumber those.
const STALE_SLACK: usize = 4096;

/// Numbers each host's queue, so a deadline never touches another host's.
static QUEUES: AtomicU64 = AtomicU64::new(1);

/// One deadline in a slot of the wheel: its millisecond, `seq` and slot in `slots`. Stale when
/// that slot no longer holds `seq` (the deadline was dropped).
#[derive(Clone, Copy)]
struct Entry {
    when: u64,
    seq: u64,
    slot: u32,
}

/// One host's deadlines, in a hierarchical timing wheel shaped as tokio's (six levels of 64
/// slots, a millisecond a slot at the lowest), so they wake in the order tokio's wheel would
/// have woken them: by millisecond, and within one in the order they reached its slot.
pub(crate) struct Deadlines {
    /// This queue's number.
    id: u64,
    /// The instant tokio's timer wheel counts its milliseconds from: ticks start at whole
    /// milliseconds from it.
    base: Instant,
    /// The host's clock as its current tick started.
    now: Instant,
    /// The millisecond the wheel has been advanced to.
    elapsed: u64,
    /// Each level's slots (allocated when the first deadline is armed), oldest entry first.
    levels: Vec<[Vec<Entry>; SLOTS]>,
    /// Each level's occupied slots, a bit each.
    occupied: [u64; LEVELS],
    /// Entries in the wheel, stale ones included.
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
    /// A slot's entries while they are processed, kept for its capacity.
    spare: Vec<Entry>,
}

/// The level of the wheel at which a deadline at `when` waits at `elapsed`: the highest
/// group of six bits in which the two differ (tokio's `level_for`).
fn level_for(elapsed: u64, when: u64) -> usize {
    let masked = (elapsed ^ when) | (SLOTS as u64 - 1);
    if masked >= SPAN {
        return LEVELS - 1;
    }
    masked.ilog2() as usize / BITS as usize
}

/// The slot of `when` at `level`.
fn slot_for(when: u64, level: usize) -> usize {
    ((when >> (level as u32 * BITS)) % SLOTS as u64) as usize
}

impl Deadlines {
    /// An empty queue for a runtime whose timer wheel counts from `base`, its clock at `now`.
    pub(crate) fn new(base: Instant, now: Instant) -> Self {
        let mut q = Self {
            id: QUEUES.fetch_add(1, Ordering::Relaxed),
            base,
            now,
            elapsed: 0,
            levels: Vec::new(),
            occupied: [0; LEVELS],
            entries: 0,
            slots: Vec::new(),
            free: Vec::new(),
            seq: 0,
            live: 0,
            due: Vec::new(),
            spare: Vec::new(),
        };
        q.elapsed = q.millis(now);
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

    /// Starts a tick at `now`: wakes every deadline due by then, in the order tokio's wheel
    /// would have.
    pub(crate) fn start_tick(deadlines: &RefCell<Deadlines>, now: Instant) {
        let mut due = {
            let mut q = deadlines.borrow_mut();
            q.now = now;
            let to = q.millis(now);
            let mut due = std::mem::take(&mut q.due);
            if q.live == 0 {
                // Nothing armed: whatever the wheel holds is stale, and time may jump.
                q.clear();
                q.elapsed = q.elapsed.max(to);
            }
            q.advance(to, &mut due);
            due
        };
        // Woken outside the borrow: a waker may do anything.
        for waker in due.drain(..) {
            waker.wake();
        }
        deadlines.borrow_mut().due = due;
    }

    /// Advances the wheel to millisecond `to`, as tokio's `Wheel::poll` does: the slot that
    /// expires first, lowest level first, again and again. A slot of the lowest level is due
    /// whole; a higher one's entries due by its start are due, and the others move down to the
    /// level their deadline now needs.
    fn advance(&mut self, to: u64, due: &mut Vec<Waker>) {
        while let Some((level, slot, deadline)) = self.next_expiration() {
            if deadline > to {
                break;
            }
            self.occupied[level] &= !(1 << slot);
            let mut entries = std::mem::replace(
                &mut self.levels[level][slot],
                std::mem::take(&mut self.spare),
            );
            for entry in entries.drain(..) {
                let Entry { when, seq, slot: at } = entry;
                if self.slots[at as usize].0 != seq {
                    self.entries -= 1;
                    continue;
                }
                if when <= deadline {
                    self.entries -= 1;
                    self.fire(at, due);
                } else {
                    self.put(level_for(deadline, when), entry);
                }
            }
            self.spare = entries;
            self.elapsed = self.elapsed.max(deadline);
        }
        self.elapsed = self.elapsed.max(to);
    }

    /// The first slot to expire, at the lowest level that has one: its level, slot and
    /// millisecond (tokio's `Level::next_expiration`).
    fn next_expiration(&self) -> Option<(usize, usize, u64)> {
        for level in 0..LEVELS {
            let occupied = self.occupied[level];
            if occupied == 0 {
                continue;
            }
            let slot_range = 1u64 << (level as u32 * BITS);
            let level_range = slot_range << BITS;
            let now_slot = ((self.elapsed / slot_range) % SLOTS as u64) as u32 + 1;
            let slot = (occupied.rotate_right(now_slot).trailing_zeros() + now_slot) as usize
                % SLOTS;
            let mut deadline = (self.elapsed & !(level_range - 1)) + slot as u64 * slot_range;
            if deadline <= self.elapsed {
                deadline += level_range;
            }
            return Some((level, slot, deadline));
        }
        None
    }

    /// Frees the armed deadline in `slot` and keeps its waker to be woken.
    fn fire(&mut self, slot: u32, due: &mut Vec<Waker>) {
        let entry = &mut self.slots[slot as usize];
        entry.0 = 0;
        if let Some(waker) = entry.1.take() {
            due.push(waker);
        }
        self.free.push(slot);
        self.live -= 1;
    }

    /// Puts `entry` last in its slot at `level`.
    fn put(&mut self, level: usize, entry: Entry) {
        let slot = slot_for(entry.when, level);
        self.levels[level][slot].push(entry);
        self.occupied[level] |= 1 << slot;
    }

    /// Drops every entry (all stale: called with nothing armed).
    fn clear(&mut self) {
        if self.entries > 0 {
            for level in &mut self.levels {
                level.iter_mut().for_each(Vec::clear);
            }
            self.occupied = [0; LEVELS];
            self.entries = 0;
        }
    }

    /// Whether no deadline is armed.
    pub(crate) fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Arms a deadline at `at`, after the current tick, for `waker`: its queue, `seq` and slot.
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
        if self.levels.is_empty() {
            self.levels = (0..LEVELS)
                .map(|_| std::array::from_fn(|_| Vec::new()))
                .collect();
        }
        let when = self.millis(at).max(self.elapsed + 1);
        self.put(level_for(self.elapsed, when), Entry { when, seq, slot });
        self.entries += 1;
        self.live += 1;
        (self.id, seq, slot)
    }

    /// Disarms the deadline `seq` in `slot`, if it is still armed; its entry goes stale.
    fn disarm(&mut self, seq: u64, slot: u32) {
        let entry = &mut self.slots[slot as usize];
        if entry.0 != seq {
            return;
        }
        let waker = entry.1.take();
        entry.0 = 0;
        self.free.push(slot);
        self.live -= 1;
        let stale = self.entries - self.live;
        if stale > STALE_SLACK && stale > self.live {
            let slots = &self.slots;
            for (level, occupied) in self.levels.iter_mut().zip(&mut self.occupied) {
                for (at, bucket) in level.iter_mut().enumerate() {
                    bucket.retain(|e| slots[e.slot as usize].0 == e.seq);
                    if bucket.is_empty() {
                        *occupied &= !(1 << at);
                    }
                }
            }
            self.entries = self.live;
        }
        drop(waker);
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
