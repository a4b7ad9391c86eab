//! The simulated world: a scenario turned into turmoil hosts, stepped by windtunnel itself with
//! the fault schedule applied between steps.
//!
//! Layout: [`world`] places instances on hosts and assembles each one; [`netmodel`] is the
//! network layer (latency, loss, partitions, holds); [`faults`] holds the faults that act inside
//! instances (slow, errors); [`synthetic`] builds the endpoints a file describes. [`run`] drives
//! the whole run and returns what it measured.
//!
//! The one thing to know: a run is a pure function of (scenario, seed, crate version). Every
//! random draw comes from a stream named after its consumer, time is turmoil's, and faults take
//! effect at tick boundaries in file order.

pub mod faults;
pub mod netmodel;
pub mod synthetic;
pub mod world;

use std::sync::Arc;
use std::time::Duration;

use crate::framework::Registry;
use crate::load::Generator;
use crate::metrics::{Measurements, Recorder, RecorderConfig};
use crate::scenario::{FaultKind, Scenario, Target, TokenUse};
use crate::services::invariants::{self, Invariant, Systems};
use crate::sim::faults::FaultBoard;
use crate::sim::netmodel::{NetModel, Party};
use crate::sim::world::{Placement, Shared};

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

/// Time the verifier may take after the load settled: waiting for the system to go quiet,
/// then reading it back.
const VERIFY_BUDGET: Duration = Duration::from_secs(60);

/// How long after the end of the load a run may go on: draining in-flight requests, then
/// verifying the invariants when the topology has example systems.
fn drain(scenario: &Scenario, systems: Systems) -> Duration {
    let verify = if systems.any() {
        invariants::QUIESCE_LIMIT + VERIFY_BUDGET
    } else {
        Duration::ZERO
    };
    settle(scenario) + verify
}

/// The example systems a scenario runs, by its builtins.
pub fn systems(scenario: &Scenario) -> Systems {
    Systems::of(scenario.services.iter().filter_map(|s| match &s.body {
        crate::scenario::ServiceBody::Builtin { builtin, .. } => Some(builtin.as_str()),
        _ => None,
    }))
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

/// Runs `scenario` (with its own seed) and returns what was measured.
pub fn run(scenario: &Scenario, progress: &mut dyn Progress) -> Result<RunOutput, RunError> {
    for a in &scenario.assertions {
        if let crate::scenario::Metric::Check(name) = &a.metric {
            if !crate::report::summary::CHECK_NAMES.contains(&name.as_str()) {
                return Err(RunError::Unsupported(format!(
                    "assertion {:?} names the check {name:?}, which this version does not compute; \
                     known checks: {}",
                    a.text,
                    crate::report::summary::CHECK_NAMES.join(", ")
                )));
            }
        }
    }
    let placements = world::place(scenario);
    let recorder = Recorder::new(RecorderConfig {
        run: scenario.duration,
        bucket_width: bucket_width(scenario.duration),
        hop_allowance: hop_allowance(scenario),
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
    });
    let shared = Shared {
        scenario: Arc::new(scenario.clone()),
        registry: Registry::new(),
        recorder: recorder.clone(),
        model: NetModel::new(scenario.network.clone(), scenario.tick),
        faults: FaultBoard::new(),
        disks: crate::services::disk::Disks::new(),
        sizes: world::sizes(scenario),
        acknowledged: Arc::default(),
    };
    let systems = systems(scenario);
    for p in &placements {
        shared.model.place(&p.addr(), p.party());
    }
    let drain = drain(scenario, systems);
    let mut sim = turmoil::Builder::new()
        .simulation_duration(scenario.duration + drain + Duration::from_secs(1))
        .tick_duration(scenario.tick)
        .min_message_latency(Duration::ZERO)
        .max_message_latency(Duration::ZERO)
        .rng_seed(scenario.seed)
        .build();
    let nodes = world::by_node(&placements);
    for (node, group) in &nodes {
        add_node(&mut sim, &shared, node, group.clone());
    }
    if !scenario.routes.is_empty() {
        add_gateway(&mut sim, &shared)?;
    }
    add_clients(&mut sim, &shared);
    let verdicts: Arc<std::sync::Mutex<Option<Vec<Invariant>>>> = Arc::default();
    if systems.any() {
        add_verifier(&mut sim, &shared, systems, verdicts.clone());
    }
    let start = std::time::Instant::now(); // wall clock, for the speed report only
    step_loop(&mut sim, &shared, &placements, drain, progress)?;
    let end = sim.elapsed().min(scenario.duration + drain);
    let mut measurements = recorder.finish(end);
    if systems.any() {
        let found = crate::lock::lock(&verdicts).take();
        measurements.invariants = found.unwrap_or_else(|| {
            vec![Invariant::unreadable(
                "verification",
                "the verifier did not finish within the run's time limit",
            )]
        });
    }
    if !scenario.routes.is_empty() && crate::serve::has_auth(scenario) {
        let n = measurements.checks.unauthenticated_calls;
        measurements
            .invariants
            .push(invariants::no_unauthenticated_calls(n));
    }
    Ok(RunOutput {
        measurements,
        wall: start.elapsed(),
    })
}

/// Buckets of one second, or wider for long runs so a series never has more than 3,600.
fn bucket_width(run: Duration) -> Duration {
    let secs = run.as_secs().div_ceil(3600).max(1);
    Duration::from_secs(secs)
}

fn add_node(sim: &mut turmoil::Sim<'_>, shared: &Shared, node: &str, group: Vec<Placement>) {
    let shared = shared.clone();
    sim.host(node, move || {
        let (shared, group) = (shared.clone(), group.clone());
        async move {
            for p in &group {
                shared.start_instance(p).await?;
            }
            std::future::pending::<()>().await;
            Ok(())
        }
    });
}

/// The turmoil host of the HTTP gateway, and its port.
const GATEWAY: (&str, u16) = ("gateway", 8080);

/// Places the HTTP gateway on its own host: the talk's routing layer, in front of the services.
fn add_gateway(sim: &mut turmoil::Sim<'_>, shared: &Shared) -> Result<(), RunError> {
    // Built once up front so a bad route is reported before the run starts.
    let probe = shared
        .client(
            Party::Instance {
                service: "gateway".into(),
                index: 0,
            },
            "gateway",
        )
        .0;
    crate::serve::gateway(&shared.scenario, probe)
        .map_err(|e| RunError::Unsupported(e.to_string()))?;
    let shared = shared.clone();
    sim.host(GATEWAY.0, move || {
        let shared = shared.clone();
        async move {
            let party = Party::Instance {
                service: "gateway".into(),
                index: 0,
            };
            let (client, _transport) = shared.client(party, "gateway");
            let gateway = Arc::new(crate::serve::gateway(&shared.scenario, client)?);
            let listener = turmoil::net::TcpListener::bind(("0.0.0.0", GATEWAY.1)).await?;
            loop {
                let (stream, _) = listener.accept().await?;
                tokio::spawn(crate::gateway::serve_connection(stream, gateway.clone()));
            }
        }
    });
    Ok(())
}

/// Places the verifier: once the load has stopped and settled, it waits for the system to go
/// quiet and checks the invariants, through its own client.
fn add_verifier(
    sim: &mut turmoil::Sim<'_>,
    shared: &Shared,
    systems: Systems,
    verdicts: Arc<std::sync::Mutex<Option<Vec<Invariant>>>>,
) {
    let shared = shared.clone();
    sim.client("verifier", async move {
        let (client, _transport) = shared.client(Party::Client, "verifier");
        let scenario = &shared.scenario;
        let clock = crate::load::RunClock::current();
        tokio::time::sleep_until(clock.at(scenario.duration + settle(scenario))).await;
        let dbs = shared
            .sizes
            .get(crate::services::webhook::DB)
            .copied()
            .unwrap_or(0);
        let found = invariants::verify(&client, systems, dbs, &shared.acknowledged).await;
        *crate::lock::lock(&verdicts) = Some(found);
        Ok(())
    });
}

/// The built-in endpoint a load ends up at, if it is one.
fn workload(shared: &Shared, load: &crate::scenario::Load) -> Option<crate::load::Workload> {
    let scenario = &shared.scenario;
    let target = match &load.target {
        crate::scenario::LoadTarget::Rpc(to) => to.clone(),
        crate::scenario::LoadTarget::Route(key) => scenario.route(key)?.to.clone(),
    };
    let service = scenario.service(&target.service)?;
    match &service.body {
        crate::scenario::ServiceBody::Builtin { builtin, .. } => Some(crate::load::Workload {
            builtin: builtin.as_str().to_string(),
            endpoint: target.endpoint.as_str().to_string(),
            acknowledged: shared.acknowledged.clone(),
        }),
        crate::scenario::ServiceBody::Synthetic { .. } => None,
    }
}

/// The bearer token a load sends, given whether the gateway checks tokens.
fn token(scenario: &Scenario, load: &crate::scenario::Load) -> Option<String> {
    if !crate::serve::has_auth(scenario) {
        return None;
    }
    match load.token {
        TokenUse::Valid => Some("token-alice".to_string()),
        TokenUse::Missing => None,
        TokenUse::Invalid => Some("token-nobody".to_string()),
    }
}

fn add_clients(sim: &mut turmoil::Sim<'_>, shared: &Shared) {
    let hosts = shared
        .scenario
        .loads
        .iter()
        .map(|l| l.clients)
        .max()
        .unwrap_or(0);
    for h in 0..hosts {
        let shared = shared.clone();
        let name = format!("client-{h}");
        sim.client(name.clone(), async move {
            let (client, _transport) = shared.client(Party::Client, &name);
            let mut tasks = Vec::new();
            for load in shared.scenario.loads.iter().filter(|l| l.clients > h) {
                let gen = Generator {
                    load: load.clone(),
                    share: load.clients,
                    index: h,
                    client: client.clone(),
                    recorder: shared.recorder.clone(),
                    seed: shared.scenario.seed,
                    gateway: Some(crate::load::Gateway {
                        pool: crate::load::HttpPool::new(&format!("{}:{}", GATEWAY.0, GATEWAY.1)),
                        token: token(&shared.scenario, load),
                    }),
                    workload: workload(&shared, load),
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
    shared: &Shared,
    placements: &[Placement],
    action: &Action,
    now: Duration,
) {
    let (id, starting) = match action {
        Action::Start(i) => (*i, true),
        Action::End(i) => (*i, false),
    };
    let Some(fault) = shared.scenario.faults.get(id) else {
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
                shared.registry.deregister(&p.service, &p.id);
                // What the instance had not synced is gone with it.
                shared.disks.crash(&p.id);
            }
            shared.recorder.set_up(&p.id, !starting, now);
        }
        return;
    }
    if starting {
        shared.model.start_fault(id, &fault.kind);
        shared.faults.start_fault(id, &fault.kind);
    } else {
        shared.model.end_fault(id);
        shared.faults.end_fault(id);
    }
}

fn step_loop(
    sim: &mut turmoil::Sim<'_>,
    shared: &Shared,
    placements: &[Placement],
    drain: Duration,
    progress: &mut dyn Progress,
) -> Result<(), RunError> {
    let duration = shared.scenario.duration;
    let actions = schedule(&shared.scenario);
    let mut next = 0;
    let mut reported = Duration::ZERO;
    loop {
        let now = sim.elapsed();
        while let Some((at, action)) = actions.get(next) {
            if *at > now {
                break;
            }
            apply(sim, shared, placements, action, now);
            next += 1;
        }
        let clients_done = sim
            .step()
            .map_err(|e| RunError::Simulation(e.to_string()))?;
        let now = sim.elapsed();
        let over = (clients_done && now >= duration) || now >= duration + drain;
        if over || now >= reported + Duration::from_secs(1) {
            reported = now;
            let (requests, failed) = shared.recorder.load_progress();
            let done = if over { duration } else { now.min(duration) };
            progress.tick(Status {
                done,
                total: duration,
                requests,
                failed,
            });
        }
        if over {
            return Ok(());
        }
    }
}
