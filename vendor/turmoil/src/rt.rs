use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use rand::rngs::SmallRng;
use tokio::runtime::Runtime;
use tokio::task::LocalSet;
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::{sleep, sleep_until, Duration, Instant};

use super::Result;

thread_local! {
    /// Whether a host's runtime is being ticked on this thread, and the clock's epoch: a
    /// number that changes whenever the clock software reads may have moved (windtunnel
    /// patch; see [`clock_epoch`]).
    static CLOCK: std::cell::Cell<(bool, u64)> = const { std::cell::Cell::new((false, 0)) };

    /// The tasks [`spawn`] made on this thread inside hosts' runtimes, each with its host's
    /// key and its place in the order of spawning; the host whose runtime is being run; and
    /// whether a crash is dropping a host's tasks (windtunnel patch).
    static SPAWNED: std::cell::RefCell<Spawned> = const { std::cell::RefCell::new(Spawned::new()) };
}

/// `tokio::spawn`, except that inside a host of a simulation the task is also noted, so that a
/// crash or a bounce of the host drops it in the order tasks were spawned (windtunnel patch).
///
/// Why: a current-thread runtime keeps its tasks in lists chosen by task id, and ids come from
/// one counter for the whole process, so when a dropped runtime drops its tasks, list by list,
/// their order (and the order of what they do on the way out: the FIN each socket sends, the
/// messages and records of their destructors) depends on how many tasks every other thread of
/// the process has spawned. Tests of one binary run side by side, so a simulation with crashes
/// would not replay there. Before its runtime is dropped, a crashed host's noted tasks are
/// aborted in the order they were spawned, and the runtime turns until each has dropped its
/// future: an aborted task never polls its future again, and one spawned meanwhile is aborted
/// as it is spawned. Tasks already woken when the host crashed are dropped first, in the order
/// they were woken, then the rest in spawn order. A task spawned with `tokio::spawn` directly
/// is dropped as the runtime ends, or polled in those turns if it was woken. Outside a
/// simulation, and on the simulation's thread between steps, this is `tokio::spawn`.
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let task = tokio::spawn(future);
    if clock_epoch().is_some() {
        SPAWNED.with(|s| {
            let mut s = s.borrow_mut();
            if s.draining {
                task.abort();
            }
            s.note(task.abort_handle());
        });
    }
    task
}

/// Tasks [`spawn`] made inside hosts' runtimes on one thread, each with its host's key and its
/// place in the order of spawning (windtunnel patch). One list for all the hosts, so a tick pays
/// only for setting the key. Finished tasks are let go as new ones come: each new task takes the
/// two at the front of the queue, lets each go if it has finished and puts it back at the end if
/// not. So every task in the queue is looked at once in each pass through it, a pass lets go of
/// every task that had finished when it was looked at, and the queue holds at most about twice
/// the tasks alive, however long some of them live. A finished task's memory is freed a block at
/// a time, while the thread goes on spawning. (Not a cursor over a list with `swap_remove`: that
/// stepped over the live task it moved under the cursor, and beside long-lived tasks the list
/// grew with the run; PATCH.md.)
struct Spawned {
    tasks: std::collections::VecDeque<Noted>,
    /// The next task's place in the order of spawning.
    next: u64,
    /// The key of the host whose runtime is being run on this thread.
    host: u64,
    /// Whether a crash is dropping a host's tasks on this thread: a task [`spawn`] makes then
    /// is aborted at once, as a runtime being dropped would drop it unrun.
    draining: bool,
}

/// One task [`spawn`] made inside a host's runtime (windtunnel patch).
struct Noted {
    host: u64,
    order: u64,
    task: AbortHandle,
}

impl Spawned {
    const fn new() -> Spawned {
        Spawned {
            tasks: std::collections::VecDeque::new(),
            next: 0,
            host: 0,
            draining: false,
        }
    }

    /// Notes `task`, spawned now by the host whose runtime is being run.
    fn note(&mut self, task: AbortHandle) {
        for _ in 0..2 {
            self.look();
        }
        self.tasks.push_back(Noted {
            host: self.host,
            order: self.next,
            task,
        });
        self.next += 1;
    }

    /// Takes the task at the front of the queue: lets it go if it has finished, else puts it
    /// back at the end.
    fn look(&mut self) {
        if let Some(noted) = self.tasks.pop_front() {
            if !noted.task.is_finished() {
                self.tasks.push_back(noted);
            }
        }
    }

    /// Marks this thread as dropping a crashed host's tasks, or no longer.
    fn set_draining(draining: bool) {
        SPAWNED.with(|s| s.borrow_mut().draining = draining);
    }

    /// Takes out the tasks of `host`, oldest first.
    fn take(host: u64) -> Vec<AbortHandle> {
        let mut mine: Vec<Noted> = SPAWNED.with(|s| {
            let mut s = s.borrow_mut();
            let (mine, others): (Vec<Noted>, Vec<Noted>) = mem::take(&mut s.tasks)
                .into_iter()
                .partition(|n| n.host == host);
            s.tasks = others.into();
            mine
        });
        mine.sort_by_key(|n| n.order);
        mine.into_iter().map(|n| n.task).collect()
    }
}

/// A key for each host runtime (windtunnel patch), unique in the process.
fn host_key() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// How many rounds a crash gives tasks spawned by destructors of tasks it drops: each round
/// aborts the ones the round before spawned (windtunnel patch).
const DROP_ROUNDS: usize = 16;

/// How many turns in a row in which no aborted task is dropped a crash waits through, each
/// round, before it leaves the rest to the runtime's end (windtunnel patch).
const DROP_TURNS: usize = 64;

/// While a host's software runs (a tick or a skip of its runtime), a number that stays the
/// same for as long as its runtime's clock does; `None` anywhere else (windtunnel patch).
///
/// The runtime's clock is paused: it moves only when the runtime parks with nothing to run
/// (tokio then advances it to the next timer), and every runtime here starts a new epoch
/// before each such park (tokio's other looks at its time driver, while tasks are ready, pass
/// it a zero timeout and so move the clock by nothing). Each tick of a host starts a new epoch
/// too, as each host has a clock of its own. So software may keep the time it read under an
/// epoch, and use it again for as long as the epoch is the same, instead of reading the clock
/// each time (a lock and a lookup of the runtime). Software that moves the clock itself
/// (`tokio::time::advance`, `resume`) is not supported, as for the host's kept clock.
pub fn clock_epoch() -> Option<u64> {
    let (ticking, epoch) = CLOCK.with(std::cell::Cell::get);
    ticking.then_some(epoch)
}

/// Starts a new clock epoch (the clock may be about to move, or another host's clock is about
/// to be read), marking a host's runtime as ticking or not (`Some`), or leaving that as it was.
fn new_epoch(ticking: Option<bool>) {
    let _ = CLOCK.try_with(|c| {
        let (was, epoch) = c.get();
        c.set((ticking.unwrap_or(was), epoch.wrapping_add(1)));
    });
}

/// Marks a host's runtime as ticking on this thread, in a new epoch, until dropped (also when
/// the tick unwinds), when the epoch changes again.
struct Ticking;

impl Ticking {
    /// Starts ticking the runtime of the host with key `host` (see [`spawn`]).
    fn start(host: u64) -> Ticking {
        new_epoch(Some(true));
        SPAWNED.with(|s| s.borrow_mut().host = host);
        Ticking
    }
}

impl Drop for Ticking {
    fn drop(&mut self) {
        new_epoch(Some(false));
    }
}

// To support re-creation, we need to store a factory of the future that
// represents the software. This is somewhat annoying in that it requires
// boxxing to avoid generics.
type Software<'a> = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Result>>> + 'a>;

/// Runtime kinds.
pub enum Kind<'a> {
    /// A runtime for executing test code.
    Client,

    /// A runtime that is running simulated host software.
    Host { software: Software<'a> },

    /// A runtime without any software. The network topology makes one to read
    /// where its clock starts, and keeps the time itself from there (windtunnel
    /// patch: it used to tick this runtime every step to track time).
    NoSoftware,
}

/// Runtime configuration.
#[derive(Clone, Default)]
pub struct Config {
    /// Whether io is enabled on the runtime.
    pub enable_io: bool,

    /// Rng used to seed the tokio runtime.
    ///
    /// Only used if the `tokio_unstable` cfg flag is set.
    #[cfg_attr(not(tokio_unstable), expect(dead_code))]
    pub rng: Option<SmallRng>,

    /// When the runtime last polled one of its own tasks during a skip (windtunnel patch;
    /// tasks of the `LocalSet` are seen by `Rt::skip` itself).
    pub last_poll: Arc<Mutex<Option<Instant>>>,

    /// Whether a skip is running, so the poll hook notes `last_poll` (windtunnel patch: an
    /// ordinary tick pays one atomic load per poll, not a lock).
    pub skipping: Arc<AtomicBool>,

    /// How many times the runtime's thread has parked (windtunnel patch).
    pub parks: Arc<AtomicU64>,
}

/// Where a skip is (windtunnel patch; see [`Rt::skip`]).
#[derive(Clone, Copy)]
enum Phase {
    Start,
    /// Running to the window start, from this park count.
    Advance { parks: u64 },
    /// Turning both schedulers, this many polls left.
    Spin { left: u32 },
    /// Running to the end.
    Finish,
}

/// How a skip is made exact (windtunnel patch; see [`Rt::skip`]). Times are from its start.
struct SkipPlan {
    /// Ticks the skip stands for.
    ticks: u64,
    /// Where the first run of time stops: a multiple of 64 ms of the runtime's clock.
    window: Duration,
    /// The end of the skip.
    end: Duration,
    /// A multiple of 64 ms between the window and the end, if there is one: a park is forced
    /// there, so the timers that move down the wheel there do not add one of their own.
    forced: Option<Duration>,
}

impl SkipPlan {
    /// Given the parks it took to reach the window, how many polls to spin there and at which
    /// instants to park before the end, so that both schedulers have turned as many times as
    /// `ticks` ticks would have turned them: the `LocalSet` once per tick (mod 256), the
    /// runtime twice per tick (mod 31).
    fn owed(&self, parked: u64) -> (u32, Vec<Duration>) {
        let k = self.ticks as i128;
        // The first poll turned the `LocalSet` once; each spin turns it once more.
        let spins = (k - 2).rem_euclid(256) + 1;
        // An idle tick turns the runtime twice: the wake that ended the tick before leaves
        // the time driver's `did_wake` set, so its first park only clears it, and the second
        // runs time on. So `ticks` ticks turn it `2 * ticks` times. The skip turns it once per
        // park up to the window. There, every poll but the last wakes itself, and the turn
        // after each only clears `did_wake` (the first also clears the window timer's); with a
        // single poll, one turn still clears the window timer's. Then once per dummy, and once
        // more to the end.
        let clearing = (spins - 1).max(1);
        let mut dummies = (2 * k - parked as i128 - clearing - 1).rem_euclid(31) as u64;
        let mut at = Vec::new();
        if let Some(forced) = self.forced {
            if dummies == 0 {
                dummies = 31;
            }
            at.push(forced);
        }
        let mut ms = self.window + Duration::from_millis(1);
        while (at.len() as u64) < dummies && ms < self.end {
            if Some(ms) != self.forced {
                at.push(ms);
            }
            ms += Duration::from_millis(1);
        }
        at.sort();
        (spins as u32, at)
    }
}

/// Per host simulated runtime.
///
/// The tokio runtime is paused (see [`Builder::start_paused`]), which gives us
/// control over when and how to advance time. In particular, see [`Rt::tick`],
/// which lets the runtime do a bit more work.
pub struct Rt<'a> {
    pub kind: Kind<'a>,

    /// Handle to the Tokio runtime driving this simulated host. Each runtime
    /// may have a different sense of "now" which simulates clock skew.
    tokio: Runtime,

    /// Local task set used for running !Send tasks.
    local: LocalSet,

    /// A user readable name to identify the node.
    pub nodename: Arc<str>,

    /// Optional handle to a host's software. When software finishes, the handle is
    /// consumed to check for error, which is propagated up to fail the simulation.
    handle: Option<JoinHandle<Result>>,

    /// Runtime configuration.
    config: Config,

    /// Whether no task ran strictly inside the last skip (windtunnel patch).
    quiet: bool,

    /// Where the runtime's clock started (windtunnel patch).
    base: Instant,

    /// The runtime's clock as its last tick left it (windtunnel patch): [`Rt::now`] reads it
    /// here instead of entering the runtime, once per host per step.
    clock: Instant,

    /// The key [`spawn`] notes this runtime's tasks with, for a crash to drop them in order
    /// (windtunnel patch).
    key: u64,
}

impl<'a> Rt<'a> {
    pub(crate) fn client<F>(nodename: Arc<str>, client: F, mut config: Config) -> Self
    where
        F: Future<Output = Result> + 'static,
    {
        let (tokio, local, base) = init(&mut config);
        let clock = read_clock(&tokio);

        let handle = with(&tokio, &local, || tokio::task::spawn_local(client));

        Self {
            kind: Kind::Client,
            tokio,
            local,
            nodename,
            handle: Some(handle),
            config,
            quiet: true,
            base,
            clock,
            key: host_key(),
        }
    }

    pub(crate) fn host<F, Fut>(nodename: Arc<str>, software: F, mut config: Config) -> Self
    where
        F: Fn() -> Fut + 'a,
        Fut: Future<Output = Result> + 'static,
    {
        let (tokio, local, base) = init(&mut config);
        let clock = read_clock(&tokio);

        let software: Software = Box::new(move || Box::pin(software()));
        let handle = with(&tokio, &local, || tokio::task::spawn_local(software()));

        Self {
            kind: Kind::Host { software },
            tokio,
            local,
            nodename,
            handle: Some(handle),
            config,
            quiet: true,
            base,
            clock,
            key: host_key(),
        }
    }

    pub(crate) fn no_software() -> Self {
        let mut config = Config::default();
        let (tokio, local, base) = init(&mut config);
        let clock = read_clock(&tokio);

        Self {
            kind: Kind::NoSoftware,
            tokio,
            local,
            nodename: String::new().into(),
            handle: None,
            config,
            quiet: true,
            base,
            clock,
            key: host_key(),
        }
    }

    pub(crate) fn is_client(&self) -> bool {
        matches!(self.kind, Kind::Client)
    }

    fn is_host(&self) -> bool {
        matches!(self.kind, Kind::Host { .. })
    }

    pub(crate) fn is_software_running(&self) -> bool {
        self.handle.is_some()
    }

    /// Whether no task ran strictly inside the last tick (windtunnel patch). Without
    /// `tokio_unstable` the runtime's own tasks cannot be seen, so a tick is never quiet.
    pub(crate) fn was_quiet(&self) -> bool {
        cfg!(tokio_unstable) && self.quiet
    }

    /// How many times a task of this runtime has been woken from outside it: from another
    /// host, or the network (windtunnel patch). It needs `tokio_unstable`; without it no step
    /// is called quiet.
    pub(crate) fn remote_wakes(&self) -> u64 {
        #[cfg(tokio_unstable)]
        {
            self.tokio.metrics().remote_schedule_count()
        }
        #[cfg(not(tokio_unstable))]
        {
            0
        }
    }

    /// The runtime's clock. Only [`Rt::tick`] and [`Rt::skip`] move it (the clock is paused,
    /// and software that moves it itself, with `tokio::time::advance` or `resume`, is not
    /// supported), so it is kept rather than read (windtunnel patch).
    pub(crate) fn now(&self) -> Instant {
        debug_assert_eq!(self.clock, self.read_clock(), "the runtime's clock moved by itself");
        self.clock
    }

    /// The runtime's clock, read from the runtime.
    pub(crate) fn read_clock(&self) -> Instant {
        read_clock(&self.tokio)
    }

    // This method is called by [`Sim::run`], which iterates through all the
    // runtimes and ticks each one. The magic of this method is described in the
    // documentation for [`LocalSet::run_until`], but it may not be entirely
    // obvious how things fit together.
    //
    // A [`LocalSet`] tracks the tasks to run, which may in turn spawn more
    // tasks. `run_until` drives a top level task to completion, but not its
    // children. If you look below, you may be confused. The task we run here
    // just sleeps and has no children! However, it's the _same `LocalSet`_ that
    // is used to run software on the host.
    //
    // In this way, every time `tick` is called, the following unfolds:
    //
    // 1. Time advances on the runtime
    // 2. We schedule a new task that simply sleeps
    // 3. Other tasks on the `LocalSet` get a chance to run
    // 4. The sleep finishes
    // 5. The runtime pauses
    //
    // Returns whether the software has finished successfully or the error
    // that caused failure. Subsequent calls do not return the error as it is
    // expected to fail the simulation.
    pub(crate) fn tick(&mut self, duration: Duration) -> Result<bool> {
        let ticking = Ticking::start(self.key);
        self.tokio.block_on(async {
            self.local
                .run_until(async {
                    sleep(duration).await;
                })
                .await
        });
        drop(ticking);
        // Where the tick's sleep left the paused clock (windtunnel patch).
        self.clock = crate::top::clock_after_sleep(self.clock, duration);
        self.software_finished()
    }

    /// Runs the host through `duration`, a whole number of `tick`s in which it is expected to
    /// do nothing, leaving it exactly as `duration / tick` calls of [`Rt::tick`] would have
    /// (windtunnel patch). [`Rt::was_quiet`] says afterwards whether it did do nothing.
    ///
    /// Time runs to the end in one go, but tokio's schedulers count their turns, and the
    /// count decides when they look at their queues of tasks woken from outside (the runtime
    /// every 31 turns, a `LocalSet` every 31 of its own, on a `u8`): a tick that does nothing
    /// turns the `LocalSet` once and the runtime twice (see `SkipPlan::owed`). And each tick's
    /// `block_on` draws a seed for the thread's random numbers from the runtime's generator.
    /// So the skip makes the turns it owes. It parks at the window start `W` (time runs there
    /// in parks of its own, counted), then turns both schedulers
    /// (`spins`: the future wakes itself and returns pending) and parks at as many more instants
    /// before the end as the runtime still owes (`dummies`: timers nobody waits on). Those
    /// instants lie where tokio's timer wheel has nothing else to do: between two multiples of
    /// 64 ms of the runtime's clock, where timers of higher wheel levels move down.
    pub(crate) fn skip(&mut self, duration: Duration, tick: Duration) -> Result<bool> {
        let Some(plan) = self.plan_skip(duration, tick) else {
            // Not a shape the skip can make exact (too short, or not in whole milliseconds):
            // one long tick, which nobody may call quiet.
            self.quiet = false;
            return self.tick(duration);
        };
        let local = &self.local;
        let last_poll = &self.config.last_poll;
        let parks = &self.config.parks;
        self.config.skipping.store(true, Ordering::Relaxed);
        let ticking = Ticking::start(self.key);
        self.quiet = self.tokio.block_on(async {
            let start = Instant::now();
            let window = start + plan.window;
            let end = start + duration;
            let mut woke = false;
            let mut phase = Phase::Start;
            let mut timer = Box::pin(sleep_until(window));
            let mut dummies = Vec::new();
            let mut armed = Vec::new();
            local
                .run_until(std::future::poll_fn(|cx| {
                    let now = Instant::now();
                    loop {
                        match phase {
                            Phase::Start => {
                                phase = Phase::Advance {
                                    parks: parks.load(Ordering::Relaxed),
                                };
                            }
                            Phase::Advance { parks: before } => {
                                if now != window {
                                    woke = woke || now != start;
                                    return timer.as_mut().poll(cx);
                                }
                                let parked = parks.load(Ordering::Relaxed) - before;
                                let (spins, at) = plan.owed(parked);
                                dummies = at;
                                phase = Phase::Spin { left: spins };
                            }
                            Phase::Spin { left } => {
                                woke = woke || now != window;
                                if left > 1 {
                                    phase = Phase::Spin { left: left - 1 };
                                    cx.waker().wake_by_ref();
                                    return Poll::Pending;
                                }
                                let noop = &mut Context::from_waker(Waker::noop());
                                for at in std::mem::take(&mut dummies) {
                                    let mut dummy = Box::pin(sleep_until(start + at));
                                    let _ = dummy.as_mut().poll(noop);
                                    armed.push(dummy);
                                }
                                timer = Box::pin(sleep_until(end));
                                phase = Phase::Finish;
                                return timer.as_mut().poll(cx);
                            }
                            Phase::Finish => {
                                if now != end {
                                    woke = woke || now != window;
                                }
                                return timer.as_mut().poll(cx);
                            }
                        }
                    }
                }))
                .await;
            let polled = last_poll.lock().map_or(None, |t| *t);
            !woke && polled.is_none_or(|t| t <= start)
        });
        drop(ticking);
        self.config.skipping.store(false, Ordering::Relaxed);
        // Every `block_on` draws the seed of the thread's random numbers (`select!` uses them)
        // from the runtime's generator: a tick each. Draw the ones the other ticks would have.
        // The handle's `block_on` draws the same seed as the runtime's, without taking the
        // scheduler's core: a fifth of the cost.
        let handle = self.tokio.handle();
        for _ in 1..plan.ticks {
            handle.block_on(async {});
        }
        self.clock = self.read_clock();
        self.software_finished()
    }

    /// Where a skip of `duration` parks and how many turns it owes, or `None` when the skip
    /// cannot be made exact in one go (too short, or times not in whole milliseconds).
    fn plan_skip(&self, duration: Duration, tick: Duration) -> Option<SkipPlan> {
        let whole_ms = |d: Duration| d.subsec_nanos() % 1_000_000 == 0;
        if !whole_ms(duration) || !whole_ms(tick) || tick.is_zero() {
            return None;
        }
        let ticks = duration.as_nanos() / tick.as_nanos();
        if ticks * tick.as_nanos() != duration.as_nanos() {
            return None;
        }
        let now = self.now().checked_duration_since(self.base)?;
        if !whole_ms(now) {
            return None;
        }
        // Milliseconds of the runtime's clock: tokio's timer wheel counts from its start.
        let start_ms = now.as_millis() as u64;
        let end_ms = start_ms + duration.as_millis() as u64;
        let block = (end_ms - 1) / 64 * 64;
        let (window_ms, forced) = if end_ms - block >= 33 {
            (block, None)
        } else {
            (block.checked_sub(64)?, Some(block))
        };
        if window_ms <= start_ms {
            return None;
        }
        Some(SkipPlan {
            ticks: ticks as u64,
            window: Duration::from_millis(window_ms - start_ms),
            end: Duration::from_millis(end_ms - start_ms),
            forced: forced.map(|b| Duration::from_millis(b - start_ms)),
        })
    }

    fn software_finished(&mut self) -> Result<bool> {
        // pull for software completion
        match &self.handle {
            Some(handle) if handle.is_finished() => {
                // Consume handle to extract task result
                if let Some(h) = self.handle.take() {
                    match self.tokio.block_on(h) {
                        // If the host was crashed the JoinError is cancelled, which
                        // needs to be handled to not fail the simulation.
                        Err(je) if je.is_cancelled() => {}
                        res => res??,
                    }
                };
                Ok(true)
            }
            Some(_) => Ok(false),
            None => Ok(true),
        }
    }

    pub(crate) fn crash(&mut self) {
        if !self.is_host() {
            panic!("can only crash host's software");
        }

        if self.handle.take().is_some() {
            self.cancel_tasks();
        };
    }

    pub(crate) fn bounce(&mut self) {
        if !self.is_host() {
            panic!("can only bounce host's software");
        }

        self.cancel_tasks();

        if let Kind::Host { software } = &self.kind {
            let handle = with(&self.tokio, &self.local, || {
                tokio::task::spawn_local(software())
            });
            self.handle.replace(handle);
        };
    }

    /// Cancel all tasks within the [`Rt`] by dropping the current tokio
    /// [`Runtime`].
    ///
    /// Dropping the runtime blocks the calling thread until all futures have
    /// completed, which is desired here to ensure host software completes and
    /// all resources are dropped.
    ///
    /// Both the [`Runtime`] and [`LocalSet`] are replaced with new instances.
    fn cancel_tasks(&mut self) {
        self.drop_spawned();
        let (tokio, local, base) = init(&mut self.config);

        self.base = base;
        _ = mem::replace(&mut self.tokio, tokio);
        drop(mem::replace(&mut self.local, local));
        self.clock = self.read_clock();
    }
}

impl Rt<'_> {
    /// Drops the tasks [`spawn`] made on the runtime before the runtime itself is dropped
    /// (windtunnel patch; see [`spawn`]). They are aborted in the order they were spawned, and
    /// the runtime turns until each has dropped its future (those already woken go first, in
    /// the order they were woken). A task spawned meanwhile, by a destructor, is aborted as it
    /// is spawned and waited for the same way, for at most [`DROP_ROUNDS`] rounds. The
    /// runtime's clock does not move: the turns park with a zero timeout. The `LocalSet` is not
    /// run.
    fn drop_spawned(&mut self) {
        let ticking = Ticking::start(self.key);
        Spawned::set_draining(true);
        for _ in 0..DROP_ROUNDS {
            let tasks = Spawned::take(self.key);
            if tasks.is_empty() {
                break;
            }
            self.tokio.block_on(async {
                for task in &tasks {
                    task.abort();
                }
                // An aborted task is dropped at its next poll; a turn of the scheduler polls up
                // to 61 tasks, so many tasks take many turns. The bound is on turns that drop
                // none, so only a runtime that does not turn cannot hang the crash.
                let mut left = tasks.len();
                let mut idle = 0;
                while idle < DROP_TURNS {
                    let now_left = tasks.iter().filter(|t| !t.is_finished()).count();
                    if now_left == 0 {
                        break;
                    }
                    idle = if now_left < left { 0 } else { idle + 1 };
                    left = now_left;
                    tokio::task::yield_now().await;
                }
            });
        }
        Spawned::set_draining(false);
        drop(ticking);
    }
}

fn init(config: &mut Config) -> (Runtime, LocalSet, Instant) {
    let mut tokio_builder = tokio::runtime::Builder::new_current_thread();

    #[cfg(tokio_unstable)]
    tokio_builder.unhandled_panic(tokio::runtime::UnhandledPanic::ShutdownRuntime);

    if config.enable_io {
        tokio_builder.enable_io();
    }

    let parks = config.parks.clone();
    tokio_builder.on_thread_park(move || {
        parks.fetch_add(1, Ordering::Relaxed);
        // The clock moves only inside a park, after this (windtunnel patch).
        new_epoch(None);
    });

    #[cfg(tokio_unstable)]
    {
        let (last_poll, skipping) = (config.last_poll.clone(), config.skipping.clone());
        tokio_builder.on_before_task_poll(move |_| {
            if !skipping.load(Ordering::Relaxed) {
                return;
            }
            if let Ok(mut t) = last_poll.lock() {
                *t = Some(Instant::now());
            }
        });
    }

    #[cfg(tokio_unstable)]
    if let Some(rng) = &mut config.rng {
        let bytes: [u8; 32] = rand::Rng::random(rng);
        let seed = tokio::runtime::RngSeed::from_bytes(&bytes);
        tokio_builder.rng_seed(seed);
    }

    let tokio = tokio_builder
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();

    // The instant tokio's timer wheel counts its milliseconds from (windtunnel patch): the
    // clock is paused, so it has not moved since the runtime was built.
    let base = read_clock(&tokio);

    tokio.block_on(async {
        // Sleep to "round" `Instant::now()` to the closest `ms`
        tokio::time::sleep(Duration::from_millis(1)).await;
    });

    (tokio, new_local(), base)
}

/// `tokio`'s clock now, read by entering the runtime (not `block_on`, which would draw a seed
/// from the runtime's generator).
fn read_clock(tokio: &Runtime) -> Instant {
    let _guard = tokio.enter();
    Instant::now()
}

fn new_local() -> LocalSet {
    #[cfg(not(tokio_unstable))]
    let local = LocalSet::new();

    #[cfg(tokio_unstable)]
    let mut local = LocalSet::new();

    #[cfg(tokio_unstable)]
    local.unhandled_panic(tokio::runtime::UnhandledPanic::ShutdownRuntime);

    local
}

fn with<R>(tokio: &Runtime, local: &LocalSet, f: impl FnOnce() -> R) -> R {
    tokio.block_on(async { local.run_until(async { f() }).await })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Config, Rt};

    #[test]
    fn a_crash_drops_spawned_tasks_oldest_first_whatever_their_ids() {
        // Software spawns tasks with `spawn` that wait for ever and note their number as they
        // are dropped; between two spawns, tasks are spawned on another runtime (0, 1, 2 or 3 of
        // them), as other threads of a process do, so the tasks' ids fall in tokio's lists in
        // no order. The first task's destructor spawns one more, which must be dropped unpolled.
        // A crash must drop the tasks in the order they were spawned, the one spawned on the way
        // out last, and a bounce the same (windtunnel patch).
        use std::sync::{Arc, Mutex};
        static POLLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        type Dropped = Arc<Mutex<Vec<usize>>>;
        struct Note(usize, Dropped, bool);
        impl Drop for Note {
            fn drop(&mut self) {
                if let Ok(mut d) = self.1.lock() {
                    d.push(self.0);
                }
                if self.2 {
                    let note = Note(99, self.1.clone(), false);
                    super::spawn(async move {
                        let _note = note;
                        POLLED.store(true, std::sync::atomic::Ordering::SeqCst);
                        std::future::pending::<()>().await;
                    });
                }
            }
        }
        let other = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let other = Arc::new(other);
        for crash in [true, false] {
            let dropped: Dropped = Arc::default();
            let (d, o) = (dropped.clone(), other.clone());
            let software = move || {
                let (d, o) = (d.clone(), o.clone());
                async move {
                    for i in 0..12 {
                        let note = Note(i, d.clone(), i == 0);
                        super::spawn(async move {
                            let _note = note;
                            std::future::pending::<()>().await;
                        });
                        for _ in 0..(i * 7) % 4 {
                            drop(o.spawn(async {}));
                        }
                    }
                    std::future::pending::<()>().await;
                    Ok(())
                }
            };
            let mut rt = Rt::host("h".into(), software, Config::default());
            let _ = rt.tick(Duration::from_millis(1));
            assert!(dropped.lock().expect("no panic").is_empty());
            if crash {
                rt.crash();
            } else {
                rt.bounce();
            }
            let mut want: Vec<usize> = (0..12).collect();
            want.push(99);
            assert_eq!(*dropped.lock().expect("no panic"), want, "crash: {crash}");
            assert!(
                !POLLED.load(std::sync::atomic::Ordering::SeqCst),
                "a task spawned as the crash dropped tasks was polled"
            );
        }
    }

    #[test]
    fn the_kept_clock_is_the_runtimes_after_every_tick_and_skip() {
        // Software whose timers end between the ticks' milliseconds and past them, and a task
        // that keeps waking itself: the runtime's clock moves through all of them, and must
        // end each tick where the kept clock says (windtunnel patch).
        // (Each runs out, then waits for ever: a step of two days would otherwise wake them
        // millions of times.)
        let software = || async {
            let _spinner = tokio::task::spawn_local(async {
                for _ in 0..5_000 {
                    tokio::task::yield_now().await;
                    tokio::time::sleep(Duration::from_micros(700)).await;
                }
            });
            for _ in 0..500 {
                tokio::time::sleep(Duration::from_micros(300)).await;
                tokio::time::sleep(Duration::from_micros(2_500)).await;
                tokio::time::sleep(Duration::from_millis(70)).await;
            }
            std::future::pending::<()>().await;
            Ok(())
        };
        let mut rt = Rt::host("h".into(), software, Config::default());
        assert_eq!(rt.now(), rt.read_clock(), "as built");
        let tick = Duration::from_millis(1);
        let steps = [
            Duration::from_millis(1),
            Duration::ZERO,
            Duration::from_micros(500),
            Duration::from_micros(1500),
            Duration::from_nanos(1),
            Duration::from_millis(64),
            Duration::from_nanos(999_999),
        ];
        for round in 0..40 {
            for step in steps {
                let _ = rt.tick(step);
                assert_eq!(rt.now(), rt.read_clock(), "after a tick of {step:?}, round {round}");
            }
            // A skip reads the clock; the next round's ticks check what it left.
            let _ = rt.skip(Duration::from_millis(300), tick);
        }
        for step in [Duration::from_secs(2 * 86_400), Duration::from_secs(86400 * 365 * 40)] {
            let _ = rt.tick(step);
            assert_eq!(rt.now(), rt.read_clock(), "after a tick of {step:?}");
        }
        rt.bounce();
        assert_eq!(rt.now(), rt.read_clock(), "after a bounce");
        let _ = rt.tick(tick);
        assert_eq!(rt.now(), rt.read_clock(), "after a bounce and a tick");
    }

    #[test]
    fn a_clock_epoch_holds_only_while_the_clock_stands_still() {
        // Software reads the clock and the epoch in every poll, through timers between and past
        // the ticks' milliseconds, a task that keeps waking itself, and skips: whenever two
        // reads share an epoch they must share the time (what lets software keep a time for an
        // epoch). Outside a tick there is no epoch. (windtunnel patch)
        use std::cell::RefCell;
        use std::rc::Rc;
        type Reads = Rc<RefCell<Vec<(u64, tokio::time::Instant)>>>;
        fn read(reads: &Reads) {
            let epoch = super::clock_epoch().expect("an epoch inside a tick");
            reads.borrow_mut().push((epoch, tokio::time::Instant::now()));
        }
        let reads: Reads = Rc::default();
        let r = reads.clone();
        let software = move || {
            let r = r.clone();
            async move {
                let r2 = r.clone();
                let _spinner = tokio::task::spawn_local(async move {
                    for _ in 0..3_000 {
                        read(&r2);
                        tokio::task::yield_now().await;
                        read(&r2);
                        tokio::time::sleep(Duration::from_micros(700)).await;
                    }
                });
                for _ in 0..300 {
                    read(&r);
                    tokio::time::sleep(Duration::from_micros(300)).await;
                    read(&r);
                    tokio::time::sleep(Duration::from_micros(2_500)).await;
                    read(&r);
                    tokio::time::sleep(Duration::from_millis(70)).await;
                }
                std::future::pending::<()>().await;
                Ok(())
            }
        };
        assert_eq!(super::clock_epoch(), None, "before any runtime");
        let mut rt = Rt::host("h".into(), software, Config::default());
        let tick = Duration::from_millis(1);
        for round in 0..30 {
            for step in [tick, Duration::from_micros(500), Duration::from_millis(3), tick] {
                let _ = rt.tick(step);
                assert_eq!(super::clock_epoch(), None, "after a tick, round {round}");
            }
            let _ = rt.skip(Duration::from_millis(300), tick);
            assert_eq!(super::clock_epoch(), None, "after a skip, round {round}");
        }
        let reads = reads.borrow();
        let mut by_epoch = std::collections::BTreeMap::new();
        for (epoch, at) in reads.iter() {
            let first = *by_epoch.entry(*epoch).or_insert(*at);
            assert_eq!(first, *at, "two times in epoch {epoch}");
        }
        // The test saw the clock move, and reads that shared an epoch (a task polled twice in
        // one turn of the scheduler, or two in one turn).
        assert!(by_epoch.len() > 100, "{} epochs", by_epoch.len());
        assert!(reads.len() > by_epoch.len() + 100, "{} reads", reads.len());
    }

    #[test]
    fn the_list_of_spawned_tasks_holds_about_twice_the_tasks_alive() {
        // Goal: beside tasks that live for the whole run (a connection's reader), the list of
        // spawned tasks lets finished ones go as fast as new ones come, so its length follows
        // the tasks alive, not the tasks ever spawned (windtunnel patch). Method: 500 tasks
        // that never end, then 1,000 batches of 100 that end before the next batch; the list's
        // length after each batch. The version this replaced reached 6,640 here, and grew on.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let mut list = super::Spawned::new();
        let longest = rt.block_on(async {
            let mut longest = 0;
            for _ in 0..500 {
                list.note(tokio::spawn(std::future::pending::<()>()).abort_handle());
            }
            for _ in 0..1000 {
                let batch: Vec<_> = (0..100).map(|_| tokio::spawn(async {})).collect();
                for task in &batch {
                    list.note(task.abort_handle());
                }
                while !batch.iter().all(|t| t.is_finished()) {
                    tokio::task::yield_now().await;
                }
                longest = longest.max(list.tasks.len());
            }
            longest
        });
        assert!(longest <= 2 * (500 + 100) + 100, "the list held {longest} tasks");
        assert!(longest >= 500, "the list let go of tasks alive: {longest}");
    }
}
