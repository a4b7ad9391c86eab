//! The validated scenario: the "high args" the simulation runs from.
//!
//! A [`Scenario`] returned by [`parse_str`](super::parse_str) has been checked as a whole: every
//! reference resolves, every window lies inside the run, every number is in range. The harness can
//! index and unwrap nothing: it reads typed fields (durations, rates, ratios, dists, names).

use std::ops::Range;
use std::time::Duration;

use crate::dist::Dist;
use crate::units::{Rate, Ratio};

use super::assertion::{Assertion, Window};
use super::names::{
    BuiltinName, EndpointName, EndpointRef, ErrorCode, LoadName, RouteKey, ScenarioName,
    ServiceName, Target,
};

/// Limits on everything a scenario file controls, so that no input can exhaust a run.
pub mod limits {
    use std::time::Duration;

    /// Most faults a swarm sweep draws for one seed.
    pub const MAX_SWARM_FAULTS: i64 = 20;
    /// The longest simulated run.
    pub const MAX_RUN: Duration = Duration::from_secs(24 * 3600);
    /// The shortest simulation tick.
    pub const MIN_TICK: Duration = Duration::from_micros(100);
    /// The longest simulation tick.
    pub const MAX_TICK: Duration = Duration::from_millis(100);
    /// The longest request deadline or call timeout.
    pub const MAX_DEADLINE: Duration = Duration::from_secs(3600);
    /// Services in one scenario.
    pub const MAX_SERVICES: usize = 256;
    /// Instances of one service.
    pub const MAX_INSTANCES: i64 = 1000;
    /// Instances of all services together.
    pub const MAX_TOTAL_INSTANCES: u64 = 10_000;
    /// Handlers running at once in one instance.
    pub const MAX_WORKERS: i64 = 10_000;
    /// Requests waiting in one instance's queue.
    pub const MAX_QUEUE: i64 = 100_000;
    /// Endpoints of one service.
    pub const MAX_ENDPOINTS: usize = 256;
    /// Downstream calls of one endpoint.
    pub const MAX_CALLS: usize = 64;
    /// Bytes in one request or response body.
    pub const MAX_BODY_BYTES: i64 = 1024 * 1024;
    /// Gateway routes.
    pub const MAX_ROUTES: usize = 256;
    /// Loads.
    pub const MAX_LOADS: usize = 64;
    /// Stages of one load.
    pub const MAX_STAGES: usize = 256;
    /// Client hosts one load may be spread over.
    pub const MAX_CLIENTS: i64 = 16;
    /// Faults.
    pub const MAX_FAULTS: usize = 1024;
    /// Link overrides.
    pub const MAX_LINKS: usize = 1024;
    /// Assertions.
    pub const MAX_ASSERTIONS: usize = 1024;
    /// The largest slowdown factor.
    pub const MAX_SLOW_FACTOR: f64 = 10_000.0;
    /// The fastest an intruder may try, per second.
    pub const MAX_INTRUDER_RATE: f64 = 1000.0;
    /// How fast an intruder tries when its `rate` is left out, per second.
    pub const DEFAULT_INTRUDER_RATE: f64 = 10.0;
}

/// A validated scenario: what to run, what to break, and what must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// The scenario's name (report folder).
    pub name: ScenarioName,
    /// What it shows, in a sentence or two.
    pub description: String,
    /// The root seed every random stream derives from.
    pub seed: u64,
    /// Simulated run time.
    pub duration: Duration,
    /// The simulation step.
    pub tick: Duration,
    /// Default link behaviour and per-pair overrides.
    pub network: Network,
    /// The services, in file order.
    pub services: Vec<Service>,
    /// Gateway routes, in file order.
    pub routes: Vec<Route>,
    /// Open-loop loads, in file order.
    pub loads: Vec<Load>,
    /// Scheduled faults, in file order.
    pub faults: Vec<Fault>,
    /// What must hold, in file order.
    pub assertions: Vec<Assertion>,
    /// Who checks bearer tokens at the gateway.
    pub gateway_auth: GatewayAuth,
    /// How long one sync of a simulated disk takes (`[disk] sync`), drawn per sync.
    pub disk_sync: Dist,
    /// What `sweep --swarm` may draw (`[swarm]`).
    pub swarm: SwarmBounds,
    /// Whether the services' fault points may fire (`buggify`; see `Env::buggify`).
    pub buggify: bool,
    /// When every fault is lifted (`heal = "40s"`), if the file says.
    pub heal: Option<Heal>,
}

/// The fault kinds a swarm sweep draws from, by their key in a `[[fault]]` table.
pub const SWARM_KINDS: [&str; 10] = [
    "slow",
    "latency",
    "errors",
    "partition",
    "hold",
    "loss",
    "crash",
    "disk",
    "sync",
    "buggify",
];

/// Bounds on the faults `sweep --swarm` draws for each seed (`[swarm]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmBounds {
    /// The kinds it may draw, from [`SWARM_KINDS`] (`sync`: a `[disk] sync` distribution with
    /// a tail, drawn per seed).
    pub kinds: Vec<String>,
    /// At most this many faults per seed.
    pub max_faults: u32,
    /// The services faults may hit; empty: every service.
    pub targets: Vec<ServiceName>,
}

impl Default for SwarmBounds {
    fn default() -> SwarmBounds {
        SwarmBounds {
            kinds: SWARM_KINDS.iter().map(|k| k.to_string()).collect(),
            max_faults: 4,
            targets: Vec::new(),
        }
    }
}

/// `heal = "<duration>"`: from then on no fault acts; faults whose windows went past it were cut
/// at it (their `duration` in [`Scenario::faults`] is already the cut one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heal {
    /// When, from the start of the run.
    pub at: Duration,
    /// The faults cut at it, by index in [`Scenario::faults`] (file order).
    pub cut: Vec<usize>,
}

/// Who checks the bearer tokens of requests at the gateway (`[gateway] auth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayAuth {
    /// Left out: the one service whose builtin checks tokens, if the file has one.
    Found,
    /// `auth = "<service>"`: that service, whose builtin checks tokens.
    Service(ServiceName),
    /// `auth = "none"`: nobody; every route is open to requests without a token.
    Open,
}

impl Scenario {
    /// The service with this name.
    pub fn service(&self, name: &ServiceName) -> Option<&Service> {
        self.services.iter().find(|service| &service.name == name)
    }

    /// The gateway route with this method and path.
    pub fn route(&self, key: &RouteKey) -> Option<&Route> {
        self.routes.iter().find(|route| &route.key == key)
    }

    /// The load with this name.
    pub fn load(&self, name: &LoadName) -> Option<&Load> {
        self.loads.iter().find(|load| &load.name == name)
    }

    /// The stretch of the run an assertion window covers, from the start of the run.
    ///
    /// Validation guarantees the fault windows exist and are not empty where asked for; for a
    /// scenario without faults (or without a fault of the name), the fault windows fall back to
    /// the whole run.
    pub fn window_bounds(&self, window: &Window) -> Range<Duration> {
        let run = Duration::ZERO..self.duration;
        match window {
            Window::All => run,
            Window::Range { start, end } => *start..*end,
            Window::Faults => fault_span(&self.faults, self.duration).unwrap_or(run),
            Window::AfterFaults => match fault_span(&self.faults, self.duration) {
                Some(span) => span.end..self.duration,
                None => run,
            },
            Window::BeforeFaults => match fault_span(&self.faults, self.duration) {
                Some(span) => Duration::ZERO..span.start,
                None => run,
            },
            Window::AfterHeal(after) => match &self.heal {
                Some(heal) => (heal.at + *after).min(self.duration)..self.duration,
                None => run,
            },
            Window::Fault(name) => self
                .faults
                .iter()
                .find(|f| f.name.as_deref() == Some(name.as_str()))
                .map_or(run, |f| f.at..f.end(self.duration)),
        }
    }
}

/// From the first fault's start to the last fault's end, or `None` without faults.
pub(crate) fn fault_span(faults: &[Fault], run: Duration) -> Option<Range<Duration>> {
    let start = faults.iter().map(|fault| fault.at).min()?;
    let end = faults.iter().map(|fault| fault.end(run)).max()?;
    Some(start..end)
}

/// How messages travel between hosts, by default and per pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    /// One-way latency of every link without an override.
    pub latency: Dist,
    /// Fraction of messages lost on every link without an override.
    pub loss: Ratio,
    /// Overrides for pairs of targets, both directions.
    pub links: Vec<Link>,
}

/// A per-pair override of latency or loss, applying in both directions.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// One end.
    pub a: Target,
    /// The other end.
    pub b: Target,
    /// One-way latency between them, if overridden.
    pub latency: Option<Dist>,
    /// Fraction of messages lost between them, if overridden.
    pub loss: Option<Ratio>,
}

/// A service: a name, its placement, its capacity and its endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// Unique, dotted.
    pub name: ServiceName,
    /// Instances running, at least 1.
    pub instances: u32,
    /// Simulated hosts the instances are spread over, `1..=instances`.
    pub nodes: u32,
    /// Handlers running at once per instance, at least 1.
    pub workers: u32,
    /// Requests that may wait per instance beyond the workers (0: none wait).
    pub queue: u32,
    /// How callers pick one of this service's instances.
    pub balancer: Balancer,
    /// Whether callers eject an instance that fails calls in a row (Envoy's outlier
    /// detection, with its defaults).
    pub eject: bool,
    /// Callers' circuit breakers per instance of this service; `None`: off.
    pub breaker: Option<BreakerSpec>,
    /// Callers' retries of this service's idempotent endpoints; `None`: off.
    pub retry: Option<RetrySpec>,
    /// Callers' hedged requests to this service; `None`: off.
    pub hedge: Option<HedgeSpec>,
    /// Each instance's concurrency limit; `None`: only workers and queue.
    pub limit: Option<LimitSpec>,
    /// What answers its requests.
    pub body: ServiceBody,
}

impl Service {
    /// The names of its endpoints, synthetic or built in.
    pub fn endpoint_names(&self) -> Vec<&EndpointName> {
        match &self.body {
            ServiceBody::Builtin { endpoints, .. } => endpoints.iter().collect(),
            ServiceBody::Synthetic { endpoints } => {
                endpoints.iter().map(|endpoint| &endpoint.name).collect()
            }
        }
    }

    /// The synthetic endpoint with this name (`None` for a builtin service).
    pub fn synthetic_endpoint(&self, name: &EndpointName) -> Option<&Endpoint> {
        match &self.body {
            ServiceBody::Builtin { .. } => None,
            ServiceBody::Synthetic { endpoints } => {
                endpoints.iter().find(|endpoint| &endpoint.name == name)
            }
        }
    }
}

/// What implements a service.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceBody {
    /// A Rust service from the catalog.
    Builtin {
        /// Its catalog name.
        builtin: BuiltinName,
        /// Its endpoints, as the catalog lists them.
        endpoints: Vec<EndpointName>,
    },
    /// Endpoints described in the file: a service time, then downstream calls.
    Synthetic {
        /// In file order.
        endpoints: Vec<Endpoint>,
    },
}

/// `breaker = true` or a table: when callers stop calling an instance. A field left out takes
/// the framework's default.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BreakerSpec {
    /// Failures in a row that open the circuit.
    pub failures: Option<u32>,
    /// The share of failed calls in the window that opens it.
    pub rate: Option<Ratio>,
    /// The window the rate is measured over.
    pub window: Option<Duration>,
    /// Calls the window needs before the rate counts.
    pub min_requests: Option<u32>,
    /// How long it first stays open.
    pub open: Option<Duration>,
    /// The longest it stays open.
    pub max_open: Option<Duration>,
}

/// `retry = true` or a table: how callers retry idempotent endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RetrySpec {
    /// Attempts in all, the first included.
    pub attempts: Option<u32>,
    /// The first backoff's ceiling.
    pub backoff: Option<Duration>,
    /// The highest backoff ceiling.
    pub max_backoff: Option<Duration>,
    /// The retry budget: `Some(None)` the default one, `None` no budget.
    pub budget: Option<Option<BudgetSpec>>,
}

/// `budget = { percent, min_per_sec, ttl }`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BudgetSpec {
    /// Retries per request.
    pub percent: Option<Ratio>,
    /// Retries per second whatever the traffic.
    pub min_per_sec: Option<u32>,
    /// The window requests are counted over.
    pub ttl: Option<Duration>,
}

/// `hedge = true` or a table: when callers send another copy of a slow call.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HedgeSpec {
    /// After how long: fixed, or a percentile of observed latency.
    pub after: Option<HedgeAfter>,
    /// Copies in all, the first included.
    pub copies: Option<u32>,
    /// The most extra copies, as a share of requests.
    pub max_extra: Option<Ratio>,
}

/// When a hedge goes out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HedgeAfter {
    /// A fixed delay.
    Fixed(Duration),
    /// A percentile of observed latency, as a quantile (0.95 for "p95").
    Percentile(f64),
}

/// `limit = N`, `"adaptive"` or `{ adaptive = true, initial, min, max }`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LimitSpec {
    /// At most this many requests held at once.
    Fixed(u32),
    /// The gradient limit, with optional bounds.
    Adaptive {
        /// Limit at start.
        initial: Option<u32>,
        /// Lowest limit.
        min: Option<u32>,
        /// Highest limit.
        max: Option<u32>,
    },
}

/// How a caller picks one instance of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balancer {
    /// Each instance in turn.
    RoundRobin,
    /// Two instances at random, the less loaded of them.
    PowerOfTwoChoices,
    /// Two instances at random, the one with the lower peak-EWMA round-trip time times its
    /// load.
    PeakEwma,
}

/// A synthetic endpoint: sleep for a drawn service time, then make its calls in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// Unique within its service.
    pub name: EndpointName,
    /// Service time (simulated work) per request.
    pub time: Dist,
    /// Size of the response body.
    pub response_bytes: u32,
    /// Downstream calls, made one after another after the service time.
    pub calls: Vec<Call>,
    /// Whether a failed call fails this endpoint.
    pub on_error: OnError,
    /// Whether callers may retry it (`idempotent = true`).
    pub idempotent: bool,
}

/// One downstream call of a synthetic endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The endpoint called.
    pub to: EndpointRef,
    /// How many instances of the callee get the request.
    pub fanout: Fanout,
    /// How many replies the call waits for.
    pub wait: Wait,
    /// A per-call timeout; without one the caller's deadline applies.
    pub timeout: Option<Duration>,
}

/// How many instances a call goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fanout {
    /// `count` distinct instances (1 by default: one instance, picked by the callee's balancer),
    /// at most the callee's instance count.
    Count(u32),
    /// Every instance of the callee.
    All,
}

/// How many replies a fanned-out call waits for before it completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Every reply; the call fails if any fails.
    All,
    /// The first reply, whatever it is; the others are cancelled.
    First,
    /// The first `k` successful replies; the others are cancelled. Fails once `k` can no longer be
    /// reached.
    Any(u32),
}

/// Whether a failed downstream call fails the calling endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// The endpoint fails with the call's error.
    Fail,
    /// The endpoint carries on (graceful degradation).
    Ignore,
}

/// A gateway route: HTTP requests matching it are sent to a service endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Method and path pattern.
    pub key: RouteKey,
    /// The endpoint that serves it.
    pub to: EndpointRef,
    /// The HTTP status of a successful answer (200 unless the file says, e.g. 201 for a create).
    pub status: u16,
}

/// An open-loop load: requests arrive on a schedule whatever the system's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    /// Unique; by default its route or rpc as written.
    pub name: LoadName,
    /// Where requests enter.
    pub target: LoadTarget,
    /// Rate at `start`, above zero.
    pub rate: Rate,
    /// Ramps and steps after `start`; after the last the rate holds.
    pub stages: Vec<Stage>,
    /// How arrivals are spaced.
    pub arrival: Arrival,
    /// Each request's deadline, from its intended start.
    pub deadline: Duration,
    /// When the load starts, from the start of the run.
    pub start: Duration,
    /// When it stops, after `start` and at most the run's duration.
    pub stop: Duration,
    /// Size of each request body.
    pub body_bytes: u32,
    /// Client hosts the load is spread over, 1 to 16.
    pub clients: u32,
    /// The bearer token a route load sends, when the gateway checks tokens.
    pub token: TokenUse,
}

/// Which bearer token a route load's requests carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    /// A token the auth service accepts (the default).
    Valid,
    /// No `Authorization` header at all.
    Missing,
    /// A token the auth service does not know.
    Invalid,
}

impl Load {
    /// The target rate `elapsed` after the load's start: stages ramp linearly from the previous
    /// rate to their target over their duration (a zero duration is a step); after the last stage
    /// the rate holds.
    pub fn rate_at(&self, elapsed: Duration) -> Rate {
        let mut from = self.rate;
        let mut stage_start = Duration::ZERO;
        for stage in &self.stages {
            let stage_end = stage_start.saturating_add(stage.duration);
            if elapsed < stage_end {
                let done = elapsed.saturating_sub(stage_start).as_secs_f64()
                    / stage.duration.as_secs_f64();
                let per_second = from.as_per_second()
                    + (stage.target.as_per_second() - from.as_per_second()) * done;
                return Rate::per_second(per_second).unwrap_or(stage.target);
            }
            from = stage.target;
            stage_start = stage_end;
        }
        from
    }
}

/// Where a load's requests enter the system.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadTarget {
    /// Straight to a service endpoint over RPC.
    Rpc(EndpointRef),
    /// Over HTTP through the gateway, on a declared route.
    Route(RouteKey),
}

/// One k6-style stage of a load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    /// How long the ramp takes (zero: a step).
    pub duration: Duration,
    /// The rate at its end.
    pub target: Rate,
}

/// How a load spaces its arrivals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Exponential gaps (a Poisson process): bursts happen, as in real traffic.
    Poisson,
    /// Equal gaps.
    Uniform,
}

/// A fault injected over a window of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// Its name (`name = "slow-a"`), for the assertion window `during = "fault:slow-a"`; unique
    /// in the file.
    pub name: Option<String>,
    /// When it starts, from the start of the run.
    pub at: Duration,
    /// How long it lasts; `None`: to the end of the run. For a crash: the delay before restart.
    pub duration: Option<Duration>,
    /// What breaks.
    pub kind: FaultKind,
}

impl Fault {
    /// When the fault ends, given the run's duration.
    pub fn end(&self, run: Duration) -> Duration {
        self.duration
            .map_or(run, |duration| self.at.saturating_add(duration).min(run))
    }
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// Service time of the target multiplied by `factor`.
    Slow {
        /// A service or an instance.
        target: Target,
        /// The multiplier.
        factor: SlowFactor,
    },
    /// Extra one-way latency on messages to and from the target.
    Latency {
        /// A service, an instance or the client.
        target: Target,
        /// Drawn per message.
        add: Dist,
    },
    /// A fraction of requests to the target fail at once with `code`.
    Errors {
        /// A service or an instance.
        target: Target,
        /// Fraction of requests that fail.
        rate: Ratio,
        /// The error they fail with.
        code: ErrorCode,
    },
    /// Messages between `a` and `b` are dropped (only a to b when `oneway`).
    Partition {
        /// One side.
        a: Target,
        /// The other side.
        b: Target,
        /// Whether only messages from `a` to `b` are dropped.
        oneway: bool,
    },
    /// Messages between `a` and `b` are held, not lost, and released when the window ends.
    Hold {
        /// One side.
        a: Target,
        /// The other side.
        b: Target,
    },
    /// A fraction of messages between `a` and `b` are lost.
    Loss {
        /// One side.
        a: Target,
        /// The other side.
        b: Target,
        /// Fraction lost.
        rate: Ratio,
    },
    /// The target crashes at `at` and restarts after `duration`, if given.
    Crash {
        /// A service (every instance) or an instance.
        target: Target,
    },
    /// The target's disks misbehave: each sync takes longer, or none completes until the
    /// window ends. A store acknowledges a write only after its sync, so its callers wait.
    Disk {
        /// A service (every instance) or an instance.
        target: Target,
        /// What goes wrong.
        effect: DiskEffect,
    },
    /// A host that knows the target's service ports but not the deployment's key sends it
    /// requests (forged users and callers included) at `rate`, by turns without a handshake
    /// and after a failed one. None may be served.
    Intruder {
        /// A service (its instances by turns) or an instance.
        target: Target,
        /// Attempts per second.
        rate: Rate,
    },
}

/// What a `disk` fault does to the target's syncs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DiskEffect {
    /// Every sync takes `factor` times as long.
    Slow(SlowFactor),
    /// No sync completes until the window ends (a stalled device or a full write cache).
    Stall,
}

/// How many times slower a slowed service is: finite, above zero, at most 10,000.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct SlowFactor(f64);

impl SlowFactor {
    /// The factor, if finite, above zero and within the limit.
    pub fn new(factor: f64) -> Option<SlowFactor> {
        let valid = factor.is_finite() && factor > 0.0 && factor <= limits::MAX_SLOW_FACTOR;
        valid.then_some(SlowFactor(factor))
    }

    /// The multiplier.
    pub fn value(self) -> f64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_rate_ramps_linearly_steps_and_then_holds() {
        let rate = |per_second: f64| Rate::per_second(per_second).expect("valid rate");
        let load = Load {
            name: LoadName::parse("l").expect("valid name"),
            target: LoadTarget::Route(RouteKey::parse("GET /").expect("valid route")),
            rate: rate(200.0),
            stages: vec![
                Stage {
                    duration: Duration::from_secs(10),
                    target: rate(400.0),
                },
                Stage {
                    duration: Duration::ZERO,
                    target: rate(100.0),
                },
            ],
            arrival: Arrival::Poisson,
            deadline: Duration::from_secs(1),
            start: Duration::ZERO,
            stop: Duration::from_secs(60),
            body_bytes: 64,
            clients: 1,
            token: TokenUse::Valid,
        };
        assert_eq!(load.rate_at(Duration::ZERO), rate(200.0));
        assert_eq!(load.rate_at(Duration::from_secs(5)), rate(300.0));
        assert_eq!(load.rate_at(Duration::from_secs(10)), rate(100.0));
        assert_eq!(load.rate_at(Duration::from_secs(50)), rate(100.0));
    }
}
