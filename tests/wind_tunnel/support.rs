//! Running scenarios from text, and reading what they measured.

use std::time::Duration;

use windtunnel::report::summary::{self, Summary, TrafficSummary};
use windtunnel::scenario::{self, Scenario};

use windtunnel::sim::{self, NoProgress};

/// Parses a scenario, panicking with its diagnostics if it is invalid.
pub fn scenario(text: &str) -> Scenario {
    match scenario::parse_str(text, "test.toml", &windtunnel::services::catalog()) {
        Ok(s) => s,
        Err(e) => panic!("test scenario is invalid:\n{e}"),
    }
}

/// Runs a scenario and builds its summary (wall time fixed at 1 s so summaries compare).
pub fn run(s: &Scenario) -> Summary {
    let out =
        sim::run(s, &windtunnel::services::catalog(), &mut NoProgress).expect("the scenario runs");
    summary::build(s, &out.measurements, Duration::from_secs(1))
}

/// The summary of one load.
pub fn route<'a>(s: &'a Summary, name: &str) -> &'a TrafficSummary {
    s.loads
        .get(name)
        .unwrap_or_else(|| panic!("no load {name} in {:?}", s.loads.keys()))
}

/// One synthetic service with one endpoint, called by one load: the smallest system.
pub fn one_service(extra: &str) -> String {
    format!(
        r#"
name = "probe"
description = "test"
seed = 3
duration = "20s"
[network]
latency = "1ms"
[[service]]
name = "svc.echo"
instances = 2
workers = 8
queue = 64
  [[service.endpoint]]
  name = "get"
  time = "2ms"
[[load]]
name = "gets"
rpc = "svc.echo.get"
rate = "100/s"
deadline = "200ms"
{extra}
"#
    )
}
