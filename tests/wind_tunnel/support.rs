//! Running scenarios from text, and reading what they measured.

use std::path::PathBuf;
use std::process::{Command, Output};
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

/// Runs the `windtunnel` binary with `args`.
pub fn windtunnel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_windtunnel"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// What a run of the binary printed, stdout then stderr.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A fresh, empty directory for one test (`name` must be unique across the test binary).
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("windtunnel-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
