//! The simulated world: a scenario turned into turmoil hosts, stepped by windtunnel itself with
//! the fault schedule applied between steps.
//!
//! Layout: [`world`] places instances on hosts and starts each one through the deployment
//! ([`crate::topology`], shared with `serve`); [`netmodel`] is the network layer (latency, loss,
//! partitions, holds); [`faults`] holds the faults that act inside instances (slow, errors).
//! [`run`] drives the whole run and returns what it measured; the public way in is
//! [`crate::tunnel`].
//!
//! The one thing to know: a run is a pure function of (scenario, seed, crate version). Every
//! random draw comes from a stream named after its consumer, time is turmoil's, and faults take
//! effect at tick boundaries in file order.

pub mod faults;
pub mod intruder;
pub mod netmodel;
pub mod world;

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use crate::load::Generator;
use crate::metrics::{EventLog, Measurements, Recorder, RecorderConfig};
use crate::scenario::{FaultKind, Scenario, ServiceBody, Target, TokenUse};
use crate::sim::faults::FaultBoard;
use crate::sim::netmodel::{NetModel, Party};
use crate::sim::world::{Placement, World};
use crate::system::{Catalog, Clock, Invariant, Verifier, Verify, VERIFY_BUDGET};
use crate::topology::Deployment;

/// Why a run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The scenario asks for something this version cannot simulate.
    #[error("{0}")]
    Unsupported(String),
    /// turmoil stopped the simulation (a host's software returned an error).
    #[error("simulation failed: {0}")]
    Simulation(String),
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Simulated time done.
    pub done: Duration,
    /// Simulated time in all.
    pub total: Duration,
    /// Load requests finished so far.
    pub requests: u64,
    /// Of those, failed or dropped.
    pub failed: u64,
}

/// How a run reports its progress.
pub trait Progress {
    /// Called about every simulated second.
    fn tick(&mut self, status: Status);
}

/// Progress that goes nowhere.
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn tick(&mut self, _status: Status) {}
}

/// What a run produced.
#[derive(Debug)]
pub struct RunOutput {
    /// Everything measured.
    pub measurements: Measurements,
    /// Wall-clock time the simulation took.
    pub wall: Duration,
    /// Simulated time skipped as idle (in steps longer than a tick).
    pub skipped: Duration,
    /// Where a skip of idle time that was spoiled began (a host woke inside it, from a timer
    /// made outside [`crate::framework::timer`]): the run was then done again tick by tick.
    pub skip_spoiled: Option<Duration>,
}

#[derive(Debug, Clone)]
enum Action {
    Start(usize),
    End(usize),
}

/// The fault schedule: (time, action), by time then file order; ends before starts at a tie so a
/// fault that follows another on the same target takes over cleanly.
fn schedule(scenario: &Scenario) -> Vec<(Duration, Action)> {
    let mut out = Vec::new();
    for (i, f) in scenario.faults.iter().enumerate() {
        out.push((f.at, Action::Start(i)));
        if let Some(d) = f.duration {
            out.push((f.at.saturating_add(d), Action::End(i)));
        }
    }
    out.sort_by_key(|(t, a)| (*t, matches!(a, Action::Start(_))));
    out
}

/// How long after the end of the load the last request may still be in flight.
fn settle(scenario: &Scenario) -> Duration {
    let longest = scenario
        .loads
        .iter()
        .map(|l| l.deadline)
        .max()
        .unwrap_or_default();
    longest + Duration::from_secs(1)
}

/// How long after the end of the load a run may go on: draining in-flight requests, then
/// verifying the invariants when some system checks any.
fn drain(scenario: &Scenario, verifying: bool) -> Duration {
    let verify = if verifying {
        VERIFY_BUDGET
    } else {
        Duration::ZERO
    };
    settle(scenario) + verify
}

/// The verifiers of the registered systems that have something to check in this run, each
/// with its system's name, ordered by name: the order systems were registered in must not
/// change a run.
fn verifiers(catalog: &Catalog, deployment: &Deployment) -> Vec<(String, Verifier)> {
    let mut found: Vec<(String, Verifier)> = catalog
        .systems()
        .iter()
        .filter_map(|system| {
            let verifier = system.verifier(&deployment.topology)?;
            Some((system.name().to_string(), verifier))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// What the verifier host found, kept as each system finishes so a verifier that runs out of
/// time loses only its own verdicts.
#[derive(Default)]
struct Verdicts {
    /// Each finished system's name and verdicts, in the order they ran.
    done: Vec<(String, Vec<Invariant>)>,
    /// The system whose verifier is running.
    running: Option<String>,
}

impl Verdicts {
    /// Every verdict; a name two systems both checked is qualified with each system's name
    /// (`webhooks/no_lost_writes`), so every invariant in a summary has a name of its own.
    fn into_invariants(self) -> Vec<Invariant> {
        let mut count: std::collections::BTreeMap<String, usize> = Default::default();
        for (_, found) in &self.done {
            for i in found {
                *count.entry(i.name.clone()).or_default() += 1;
            }
        }
        let mut out = Vec::new();
        for (system, found) in self.done {
            for mut i in found {
                if count.get(&i.name).copied().unwrap_or(0) > 1 {
                    i.name = format!("{system}/{}", i.name);
                }
                out.push(i);
            }
        }
        if let Some(system) = self.running {
            out.push(Invariant::unreadable(
                "verification",
                &format!(
                    "the verifier of system {system} did not finish within the run's time limit"
                ),
            ));
        }
        out
    }
}

/// The one-way latency a message may take before its lateness counts against a handler: the
/// 99.9th percentile of the default latency (sampled from a fixed stream) plus two ticks.
fn hop_allowance(scenario: &Scenario) -> Duration {
    let mut rng = crate::framework::ids::stream(scenario.seed, "checks/hop");
    let mut draws: Vec<Duration> = (0..2000)
        .map(|_| scenario.network.latency.sample(&mut rng))
        .collect();
    draws.sort();
    let p999 = draws.get(1997).copied().unwrap_or_default();
    p999 + scenario.tick * 2
}

/// Runs `scenario` (with its own seed), its builtin services built from `catalog`, and returns
/// what was measured.
pub fn run(
    scenario: &Scenario,
    catalog: &Catalog,
    progress: &mut dyn Progress,
) -> Result<RunOutput, RunError> {
    run_logged(scenario, catalog, progress, EventLog::Off).map(|(output, _)| output)
}

/// How a run advances simulated time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stepping {
    /// One tick at a time, always: the reference a skipping run is checked against.
    EveryTick,
    /// One tick at a time, except that time in which nothing can happen is skipped in one
    /// step (see `next_step`), leaving every host as the ticks would have: the same run,
    /// event for event (docs/design.md, "Skipping idle time"). The default.
    #[default]
    SkipIdle,
}

/// Runs `scenario` as [`run`] does, its recorder keeping or comparing per-event hashes as `log`
/// says (a determinism check), and returns the log with what was measured.
pub fn run_logged(
    scenario: &Scenario,
    catalog: &Catalog,
    progress: &mut dyn Progress,
    log: EventLog,
) -> Result<(RunOutput, EventLog), RunError> {
    run_stepped(scenario, catalog, progress, log, Stepping::default())
}

/// Runs `scenario` as [`run_logged`] does, advancing time as `stepping` says. A run that skips
/// idle time and finds a skip was not idle (a host woke inside it, from a timer windtunnel could
/// not see) is run again from the start tick by tick, so a result never depends on skipping.
pub fn run_stepped(
    scenario: &Scenario,
    catalog: &Catalog,
    progress: &mut dyn Progress,
    log: EventLog,
    stepping: Stepping,
) -> Result<(RunOutput, EventLog), RunError> {
    match run_once(scenario, catalog, progress, log.clone(), stepping)? {
        Ok(done) => Ok(done),
        Err(skip) => {
            tracing::info!(
                at = ?skip.at,
                "a host woke inside a skip of idle time: running again tick by tick"
            );
            match run_once(scenario, catalog, progress, log, Stepping::EveryTick)? {
                Ok((mut output, log)) => {
                    output.skip_spoiled = Some(skip.at);
                    Ok((output, log))
                }
                Err(_) => Err(RunError::Simulation(
                    "a run stepped tick by tick reported a skip".into(),
                )),
            }
        }
    }
}

/// One attempt at a run: `Err(InexactSkip)` inside when a skip has to be undone.
fn run_once(
    scenario: &Scenario,
    catalog: &Catalog,
    progress: &mut dyn Progress,
    log: EventLog,
    stepping: Stepping,
) -> Result<Result<(RunOutput, EventLog), InexactSkip>, RunError> {
    align_task_ids();
    crate::framework::timer::reset();
    let placements = world::place(scenario);
    let authenticator =
        crate::topology::authenticator(scenario, catalog).map(|(name, _)| name.to_string());
    let scenario = Arc::new(scenario.clone());
    let recorder = Recorder::new(RecorderConfig {
        run: scenario.duration,
        bucket_width: bucket_width(scenario.duration),
        hop_allowance: hop_allowance(&scenario),
        instances: placements
            .iter()
            .map(|p| {
                let workers = scenario
                    .services
                    .iter()
                    .find(|s| s.name.as_str() == p.service)
                    .map_or(1, |s| s.workers);
                (p.id.clone(), workers)
            })
            .collect(),
        authenticator: authenticator.clone(),
    });
    recorder.set_log(log);
    let deployment = Deployment::new(scenario.clone(), catalog.clone(), recorder.clone());
    let world = World {
        deployment,
        recorder: recorder.clone(),
        model: NetModel::new(scenario.network.clone(), scenario.tick),
        faults: FaultBoard::new(),
        notes: Arc::default(),
    };
    for p in &placements {
        world.model.place(&p.addr(), p.party());
    }
    let verifiers = verifiers(catalog, &world.deployment);
    let verifying = !verifiers.is_empty();
    let drain = drain(&scenario, verifying);
    let mut sim = turmoil::Builder::new()
        .simulation_duration(scenario.duration + drain + Duration::from_secs(1))
        .tick_duration(scenario.tick)
        .min_message_latency(Duration::ZERO)
        .max_message_latency(Duration::ZERO)
        .rng_seed(scenario.seed)
        .build();
    for (node, group) in &world::by_node(&placements) {
        add_node(&mut sim, &world, node, group.clone());
    }
    if !scenario.routes.is_empty() {
        add_gateway(&mut sim, &world)?;
    }
    add_clients(&mut sim, &world);
    let intruder = intruder::present(&scenario.faults).then(Arc::<intruder::Tally>::default);
    if let Some(tally) = &intruder {
        let (faults, placed, run) = (
            scenario.faults.clone(),
            placements.clone(),
            scenario.duration,
        );
        let tally = tally.clone();
        sim.client(intruder::HOST, intruder::run(faults, placed, run, tally));
    }
    let verdicts: Arc<std::sync::Mutex<Verdicts>> = Arc::default();
    if verifying {
        add_verifier(&mut sim, &world, verifiers, verdicts.clone());
    }
    let start = std::time::Instant::now(); // wall clock, for the speed report only
    let skipped = match step_loop(&mut sim, &world, &placements, drain, stepping, progress)? {
        Ok(skipped) => skipped,
        Err(skip) => return Ok(Err(skip)),
    };
    let end = sim.elapsed().min(scenario.duration + drain);
    let mut measurements = recorder.finish(end);
    if verifying {
        let found = std::mem::take(&mut *crate::lock::lock(&verdicts));
        measurements.invariants = found.into_invariants();
    }
    if let (false, Some(auth)) = (scenario.routes.is_empty(), &authenticator) {
        let n = measurements.checks.unauthenticated_calls;
        measurements
            .invariants
            .push(crate::metrics::no_unauthenticated_calls(n, auth));
    }
    if let Some(tally) = &intruder {
        measurements.invariants.push(intruder::served(tally));
    }
    let wall = start.elapsed();
    let output = RunOutput {
        measurements,
        wall,
        skipped,
        skip_spoiled: None,
    };
    Ok(Ok((output, recorder.take_log())))
}

/// How many lists tokio spreads a current-thread runtime's tasks over, by task id.
const TOKIO_TASK_SHARDS: u64 = 4;

/// Makes the next tokio task id one more than a multiple of [`TOKIO_TASK_SHARDS`], as in a
/// fresh process (tokio numbers tasks from 1).
///
/// Why: task ids come from one counter for the whole process, and a current-thread runtime
/// keeps its tasks in lists chosen by id. When turmoil crashes a host it drops the runtime, and
/// the tasks are dropped list by list: the order of what they do on the way out (events, the
/// FIN or RST each socket sends) would depend on how many tasks the process made before this
/// run. Tasks spawned with [`crate::framework::task::spawn`] (every task of the framework and
/// the wind tunnel) are dropped first, in the order they were spawned; aligning the counter
/// still makes the rest (tasks a service of yours spawns with `tokio::spawn`) drop as in a
/// fresh process, when no other thread spawns tasks during the run.
fn align_task_ids() {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    for _ in 0..TOKIO_TASK_SHARDS {
        let id = rt.spawn(async {}).id();
        let number: u64 = id.to_string().parse().unwrap_or(0);
        // This one took the number before the next: stop when the next is 1 modulo the shards.
        if number.is_multiple_of(TOKIO_TASK_SHARDS) {
            return;
        }
    }
}

/// Buckets of one second, or wider for long runs so a series never has more than 3,600.
fn bucket_width(run: Duration) -> Duration {
    let secs = run.as_secs().div_ceil(3600).max(1);
    Duration::from_secs(secs)
}

fn add_node(sim: &mut turmoil::Sim<'_>, world: &World, node: &str, group: Vec<Placement>) {
    let world = world.clone();
    sim.host(node, move || {
        let (world, group) = (world.clone(), group.clone());
        async move {
            for p in &group {
                world.start_instance(p).await?;
            }
            std::future::pending::<()>().await;
            Ok(())
        }
    });
}

/// The turmoil host of the HTTP gateway, and its port.
const GATEWAY: (&str, u16) = ("gateway", 8080);

/// Places the HTTP gateway on its own host: the talk's routing layer, in front of the services.
fn add_gateway(sim: &mut turmoil::Sim<'_>, world: &World) -> Result<(), RunError> {
    let party = || Party::Instance {
        service: GATEWAY.0.into(),
        index: 0,
    };
    // Built once up front so a bad route is reported before the run starts.
    world
        .deployment
        .gateway(world.client(party(), GATEWAY.0))
        .map_err(|e| RunError::Unsupported(e.to_string()))?;
    let world = world.clone();
    sim.host(GATEWAY.0, move || {
        let world = world.clone();
        async move {
            let client = world.client(party(), GATEWAY.0);
            let gateway = Arc::new(world.deployment.gateway(client)?);
            let listener = turmoil::net::TcpListener::bind(("0.0.0.0", GATEWAY.1)).await?;
            loop {
                let (stream, _) = listener.accept().await?;
                crate::framework::task::spawn(crate::gateway::serve_connection(
                    stream,
                    gateway.clone(),
                ));
            }
        }
    });
    Ok(())
}

/// Places the verifier: once the load has stopped and settled, it runs each system's
/// verifier in turn through its own client.
fn add_verifier(
    sim: &mut turmoil::Sim<'_>,
    world: &World,
    verifiers: Vec<(String, Verifier)>,
    verdicts: Arc<std::sync::Mutex<Verdicts>>,
) {
    let world = world.clone();
    sim.client("verifier", async move {
        let client = world.client(Party::Client, "verifier");
        let scenario = world.scenario();
        let clock = Clock::current();
        crate::framework::timer::idle_until(clock.at(scenario.duration + settle(scenario))).await;
        for (system, verifier) in verifiers {
            crate::lock::lock(&verdicts).running = Some(system.clone());
            let with = Verify {
                client: client.clone(),
                topology: world.deployment.topology.clone(),
                notes: world.notes.clone(),
            };
            // A verifier that panics is a verdict on that system, not the end of the run.
            let found = std::panic::AssertUnwindSafe(verifier.verify(with))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    vec![Invariant::unreadable(
                        "verification",
                        &format!("the verifier of system {system} panicked"),
                    )]
                });
            let mut v = crate::lock::lock(&verdicts);
            v.running = None;
            v.done.push((system, found));
        }
        Ok(())
    });
}

/// The builtin endpoint a load ends up at, if it is one, with the system that serves it.
fn workload(world: &World, load: &crate::scenario::Load) -> Option<crate::load::Workload> {
    let scenario = world.scenario();
    let target = match &load.target {
        crate::scenario::LoadTarget::Rpc(to) => to.clone(),
        crate::scenario::LoadTarget::Route(key) => scenario.route(key)?.to.clone(),
    };
    let service = scenario.service(&target.service)?;
    let ServiceBody::Builtin { builtin, .. } = &service.body else {
        return None;
    };
    let system = world.deployment.catalog.system_of(builtin.as_str())?;
    Some(crate::load::Workload {
        system: system.clone(),
        builtin: builtin.as_str().to_string(),
        endpoint: target.endpoint.as_str().to_string(),
        notes: world.notes.clone(),
    })
}

/// The bearer token a load sends, given whether the gateway checks tokens.
fn token(world: &World, load: &crate::scenario::Load) -> Option<String> {
    let (_, tokens) = world.deployment.authenticator()?;
    match load.token {
        TokenUse::Valid => Some(tokens.valid.clone()),
        TokenUse::Missing => None,
        TokenUse::Invalid => Some(tokens.invalid.clone()),
    }
}

fn add_clients(sim: &mut turmoil::Sim<'_>, world: &World) {
    let hosts = world
        .scenario()
        .loads
        .iter()
        .map(|l| l.clients)
        .max()
        .unwrap_or(0);
    for h in 0..hosts {
        let world = world.clone();
        let name = format!("client-{h}");
        sim.client(name.clone(), async move {
            let client = world.client(Party::Client, &name);
            let mut tasks = Vec::new();
            for load in world.scenario().loads.iter().filter(|l| l.clients > h) {
                let gen = Generator {
                    load: load.clone(),
                    share: load.clients,
                    index: h,
                    client: client.clone(),
                    recorder: world.recorder.clone(),
                    seed: world.scenario().seed,
                    gateway: Some(crate::load::Gateway {
                        pool: crate::load::HttpPool::new(&format!("{}:{}", GATEWAY.0, GATEWAY.1)),
                        token: token(&world, load),
                    }),
                    workload: workload(&world, load),
                };
                tasks.push(tokio::task::spawn_local(gen.run()));
            }
            for t in tasks {
                t.await?;
            }
            Ok(())
        });
    }
}

/// The nodes that host `target`'s instances.
fn nodes_of<'a>(target: &Target, placements: &'a [Placement]) -> Vec<&'a Placement> {
    placements.iter().filter(|p| p.party().is(target)).collect()
}

fn apply(
    sim: &mut turmoil::Sim<'_>,
    world: &World,
    placements: &[Placement],
    action: &Action,
    now: Duration,
) {
    let (id, starting) = match action {
        Action::Start(i) => (*i, true),
        Action::End(i) => (*i, false),
    };
    let Some(fault) = world.scenario().faults.get(id) else {
        return;
    };
    if let FaultKind::Crash { target } = &fault.kind {
        let hit = nodes_of(target, placements);
        // Instances are spread round robin (`i % nodes`), so one node recurs non-adjacently:
        // sort before dedup, or a node is crashed (and restarted) more than once.
        let mut nodes: Vec<&str> = hit.iter().map(|p| p.node.as_str()).collect();
        nodes.sort_unstable();
        nodes.dedup();
        // A crash takes the whole node: every instance on it goes down and comes back.
        let down: Vec<&Placement> = placements
            .iter()
            .filter(|p| nodes.contains(&p.node.as_str()))
            .collect();
        for node in &nodes {
            if starting {
                sim.crash(*node);
            } else {
                sim.bounce(*node);
            }
        }
        for p in down {
            if starting {
                world.deployment.registry.deregister(&p.service, &p.id);
                // What the instance had not synced is gone with it.
                world.deployment.disks.crash(&p.id);
            }
            world.recorder.set_up(&p.id, !starting, now);
        }
        return;
    }
    if let FaultKind::Disk { target, effect } = &fault.kind {
        if starting {
            let hit = nodes_of(target, placements);
            let ids = hit.iter().map(|p| p.id.clone()).collect();
            world.deployment.disks.start_fault(id, ids, *effect);
        } else {
            world.deployment.disks.end_fault(id);
        }
        return;
    }
    if starting {
        world.model.start_fault(id, &fault.kind);
        world.faults.start_fault(id, &fault.kind);
    } else {
        world.model.end_fault(id);
        world.faults.end_fault(id);
    }
}

/// How far the next step may go from `now`: to the earliest moment anything can happen, when
/// nothing is happening now; one tick otherwise.
///
/// A skip needs the network empty, no timer of work in flight on any host, and a quiet step
/// before it (no host woke another's task, and no fault was applied: a crash restarts
/// software at once). It ends at the tick boundary
/// at or before the earliest background wake-up, the next fault, or the end of the run, so
/// every host wakes at the tick it would have woken at when stepped tick by tick.
fn next_step(
    sim: &turmoil::Sim<'_>,
    tick: Duration,
    now: Duration,
    wake: Option<Duration>,
    applied: bool,
) -> Duration {
    // A task another host woke in the last step runs only in the next: not a skip.
    if applied || now.is_zero() || !sim.last_step_was_quiet() {
        return tick;
    }
    let Some(wake) = wake else {
        return tick;
    };
    let whole_ms = tick.subsec_nanos().is_multiple_of(1_000_000) && !tick.is_zero();
    if !whole_ms {
        return tick;
    }
    // Whole ticks up to the wake-up.
    let ticks = wake.saturating_sub(now).as_nanos() / tick.as_nanos();
    let step = u64::try_from(ticks * tick.as_nanos()).map_or(Duration::MAX, Duration::from_nanos);
    if step < MIN_SKIP || !sim.is_network_idle() {
        return tick;
    }
    step
}

/// The earliest background wake-up on windtunnel's agenda, or `limit` if that is sooner;
/// `None` while a timer of work in flight is armed.
fn next_wake(limit: Duration) -> Option<Duration> {
    use crate::framework::timer::{horizon, Horizon};
    match horizon() {
        Horizon::Busy => None,
        Horizon::Until(at) => Some(at.min(limit)),
        Horizon::Never => Some(limit),
    }
}

/// The shortest skip worth making: turmoil makes a skip exact by parking at a multiple of
/// 64 ms of each host's clock before its end (vendor/turmoil/PATCH.md), so shorter ones are
/// stepped tick by tick.
const MIN_SKIP: Duration = Duration::from_millis(160);

/// A skip of idle time that turned out not to be idle: a host woke before it ended, from a
/// timer made outside [`crate::framework::timer`]. The run starts again, tick by tick.
#[derive(Debug)]
struct InexactSkip {
    at: Duration,
}

fn step_loop(
    sim: &mut turmoil::Sim<'_>,
    world: &World,
    placements: &[Placement],
    drain: Duration,
    stepping: Stepping,
    progress: &mut dyn Progress,
) -> Result<Result<Duration, InexactSkip>, RunError> {
    let duration = world.scenario().duration;
    let tick = world.scenario().tick;
    let actions = schedule(world.scenario());
    let mut next = 0;
    let mut reported = Duration::ZERO;
    let mut skipped = Duration::ZERO;
    loop {
        let now = sim.elapsed();
        let mut applied = false;
        while let Some((at, action)) = actions.get(next) {
            if *at > now {
                break;
            }
            apply(sim, world, placements, action, now);
            applied = true;
            next += 1;
        }
        let step = match stepping {
            Stepping::EveryTick => tick,
            Stepping::SkipIdle => {
                // Never past the next fault, nor the end of the load or the run.
                let mut limit = duration + drain;
                if now < duration {
                    limit = limit.min(duration);
                }
                if let Some((at, _)) = actions.get(next) {
                    limit = limit.min(*at);
                }
                let wake = next_wake(limit);
                let step = next_step(sim, tick, now, wake, applied);
                // turmoil notes whether a step was quiet only when asked, as that costs a
                // look at every host and link: a skip, and a tick after which one may follow
                // (no work timer armed, and the next wake-up at least `MIN_SKIP` after it).
                let may_skip_after =
                    wake.is_some_and(|at| at.saturating_sub(now + tick) >= MIN_SKIP);
                sim.watch_quiet(step > tick || may_skip_after);
                step
            }
        };
        let clients_done = sim
            .step_by(step)
            .map_err(|e| RunError::Simulation(e.to_string()))?;
        if step > tick {
            if !sim.last_step_was_quiet() {
                return Ok(Err(InexactSkip { at: now }));
            }
            skipped += step - tick;
        }
        let now = sim.elapsed();
        let over = (clients_done && now >= duration) || now >= duration + drain;
        if over || now >= reported + Duration::from_secs(1) {
            reported = now;
            let (requests, failed) = world.recorder.load_progress();
            let done = if over { duration } else { now.min(duration) };
            progress.tick(Status {
                done,
                total: duration,
                requests,
                failed,
            });
        }
        if over {
            return Ok(Ok(skipped));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_keep_every_name_distinct_and_name_a_verifier_that_did_not_finish() {
        let holds = |name: &str| Invariant::new(name, true, "ok".into(), &[]);
        let verdicts = Verdicts {
            done: vec![
                (
                    "cards".into(),
                    vec![holds("no_lost_writes"), holds("ledger")],
                ),
                ("webhooks".into(), vec![holds("no_lost_writes")]),
            ],
            running: Some("slowpoke".into()),
        };
        let names: Vec<String> = verdicts
            .into_invariants()
            .into_iter()
            .map(|i| format!("{} {}", i.name, i.holds))
            .collect();
        assert_eq!(
            names,
            [
                "cards/no_lost_writes true",
                "ledger true",
                "webhooks/no_lost_writes true",
                "verification false",
            ]
        );
    }
}
