//! What a run will cost before it starts: hosts, calls per simulated second, and wall time.
//!
//! The estimate is a model with two terms, calibrated on a 2-core machine:
//! - every host is driven every tick (`HOST_TICK` each);
//! - every call between services costs about `PER_CALL`, end to end.
//!
//! Calls per request are counted from a synthetic endpoint's call tree (a call fanned out to
//! every instance counts once per instance); an endpoint of a built-in service is taken to cost
//! `BUILTIN_CALLS` calls, its own background work included. It is an order of magnitude, not
//! a promise: `check` prints it and `run` warns before a run estimated to take hours. A run
//! skips idle time (`sim::Stepping`), so for a mostly idle run the first term is an upper
//! bound: such a run can be many times cheaper than estimated.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::scenario::{EndpointRef, Fanout, LoadTarget, Scenario, ServiceBody};

/// Wall time to drive one host through one tick with nothing to do (measured: 9 hosts idle for
/// 60 s of 1 ms ticks took 1.36 s).
const HOST_TICK: Duration = Duration::from_nanos(2_300);
/// Wall time per call between services, end to end (measured: the baseline at 200 and
/// 2,000 requests/s, four calls each, 28 to 31 µs a call beyond the idle cost).
const PER_CALL: Duration = Duration::from_micros(30);
/// Calls counted for one request to a built-in service's endpoint (measured on the card
/// pipeline, whose requests fan out and whose consumers poll: about 60 call-equivalents; the
/// webhook stack: about 15). The middle of the two.
const BUILTIN_CALLS: f64 = 30.0;
/// How deep a call tree is followed; deeper calls are counted at this depth.
const MAX_DEPTH: usize = 64;
/// Above this estimate `run` warns before it starts.
pub const WARN_ABOVE: Duration = Duration::from_secs(3600);

/// What a run is estimated to cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// turmoil hosts: instance nodes, the gateway, load clients, the verifier, an intruder.
    pub hosts: usize,
    /// Calls between services per simulated second, averaged over the run.
    pub calls_per_second: f64,
    /// Wall time, by the model above.
    pub wall: Duration,
}

impl std::fmt::Display for Estimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "estimate: {} hosts, about {:.0} calls per simulated second, about {} of wall time on a 2-core machine",
            self.hosts,
            self.calls_per_second,
            human(self.wall)
        )
    }
}

/// A duration in the largest unit that keeps it readable.
fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 48.0 * 3600.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.0} days", s / 86_400.0)
    }
}

/// The estimate for `scenario` (the authenticator, if the gateway asks one, adds a call per
/// request that enters by a route).
pub fn estimate(scenario: &Scenario, authenticated: bool) -> Estimate {
    let nodes: BTreeSet<String> = crate::sim::world::place(scenario)
        .into_iter()
        .map(|p| p.node)
        .collect();
    let clients = scenario.loads.iter().map(|l| l.clients).max().unwrap_or(0) as usize;
    let gateway = usize::from(!scenario.routes.is_empty());
    let builtins = scenario
        .services
        .iter()
        .any(|s| matches!(s.body, ServiceBody::Builtin { .. }));
    let intruder = usize::from(crate::sim::intruder::present(&scenario.faults));
    let hosts = nodes.len() + clients + gateway + usize::from(builtins) + intruder;
    let run = scenario.duration.as_secs_f64().max(f64::MIN_POSITIVE);
    let mut memo = BTreeMap::new();
    let calls: f64 = scenario
        .loads
        .iter()
        .map(|load| {
            let per_request = match &load.target {
                LoadTarget::Rpc(to) => calls_of(scenario, to, 0, &mut memo),
                LoadTarget::Route(key) => scenario.route(key).map_or(0.0, |route| {
                    let auth = f64::from(u8::from(authenticated));
                    1.0 + auth + calls_of(scenario, &route.to, 0, &mut memo)
                }),
            };
            mean_rate(load, scenario.duration) * per_request * run
        })
        // An empty sum of floats is -0.0, which prints as "-0": a file without loads makes none.
        .fold(0.0, |sum, calls| sum + calls);
    let ticks = run / scenario.tick.as_secs_f64().max(f64::MIN_POSITIVE);
    let wall_secs = HOST_TICK.as_secs_f64() * hosts as f64 * ticks + PER_CALL.as_secs_f64() * calls;
    Estimate {
        hosts,
        calls_per_second: calls / run,
        wall: Duration::try_from_secs_f64(wall_secs).unwrap_or(Duration::MAX),
    }
}

/// A load's rate averaged over the whole run, per second: its rate at 1,000 points of its
/// window (stages ramp), times the share of the run the window covers.
fn mean_rate(load: &crate::scenario::Load, run: Duration) -> f64 {
    const SAMPLES: u32 = 1000;
    let window = load.stop.min(run).saturating_sub(load.start);
    let sum: f64 = (0..SAMPLES)
        .map(|i| load.rate_at(window.mul_f64(f64::from(i) / f64::from(SAMPLES))))
        .map(|rate| rate.as_per_second())
        .sum();
    let share = window.as_secs_f64() / run.as_secs_f64().max(f64::MIN_POSITIVE);
    sum / f64::from(SAMPLES) * share
}

/// Calls one request to `to` makes, itself included. Each endpoint is counted once and
/// remembered in `memo`: a call graph of 64 calls per endpoint, many levels deep, has far too
/// many paths to walk one by one.
fn calls_of(
    scenario: &Scenario,
    to: &EndpointRef,
    depth: usize,
    memo: &mut BTreeMap<(String, String), f64>,
) -> f64 {
    let key = (to.service.to_string(), to.endpoint.to_string());
    if let Some(known) = memo.get(&key) {
        return *known;
    }
    let Some(service) = scenario.service(&to.service) else {
        return 1.0;
    };
    let calls = match &service.body {
        ServiceBody::Builtin { .. } => BUILTIN_CALLS,
        ServiceBody::Synthetic { endpoints } => {
            let Some(endpoint) = endpoints.iter().find(|e| e.name == to.endpoint) else {
                return 1.0;
            };
            if depth >= MAX_DEPTH {
                return 1.0;
            }
            let below: f64 = endpoint
                .calls
                .iter()
                .map(|call| {
                    let instances = scenario
                        .service(&call.to.service)
                        .map_or(1, |s| s.instances);
                    let copies = match call.fanout {
                        Fanout::All => instances,
                        Fanout::Count(n) => n.min(instances).max(1),
                    };
                    f64::from(copies) * calls_of(scenario, &call.to, depth + 1, memo)
                })
                .sum();
            1.0 + below
        }
    };
    memo.insert(key, calls);
    calls
}
