//! Swarm drawing: for each seed, a fault schedule nobody wrote.
//!
//! Swarm testing (Groce et al., and TigerBeetle's VOPR) draws per seed not only the faults but
//! which kinds of fault are on at all: a run with only crashes and slow disks explores deeper
//! than one where every kind competes for the same few slots. [`draw`] takes a scenario file,
//! keeps its services, routes and loads, and replaces its faults with ones drawn from the
//! seed's own stream (`swarm`), within the file's `[swarm]` bounds (kinds, how many faults,
//! which services). The result is a plain scenario file, with no swarm left in it, that
//! replays the seed's run bit for bit with `windtunnel run`.
//!
//! A file with `heal` keeps it: faults are drawn to end before it, so the system must recover
//! by the end of the run, and the verifier's checks then see it healed.
//!
//! The file's assertions are left out of what is drawn: they were written for the file's own
//! faults, and a drawn crash of both instances fails "error_rate == 0" for the right reason. A
//! swarm run is judged by what must hold whatever breaks: the systems' invariants (no
//! acknowledged write lost, the ledger conserved, every event consumed, no unauthenticated
//! call served).

use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use toml::{Table, Value};

use crate::scenario::{Scenario, Service};

/// Why a swarm file could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    /// The file's text is not TOML (it was validated before, so this is a changed file).
    #[error("the scenario is not TOML: {0}")]
    Parse(#[from] toml::de::Error),
    /// The drawn file could not be written as TOML.
    #[error("the drawn scenario cannot be written: {0}")]
    Write(#[from] toml::ser::Error),
    /// The file's `[swarm]` leaves nothing to hit.
    #[error("the scenario has no service a drawn fault could hit")]
    NoTargets,
    /// The run (or the time before its `heal`) is too short to draw fault windows in.
    #[error("a swarm needs at least {} s before the run ends or heals to draw fault windows in", MIN_HORIZON.as_secs())]
    TooShort,
    /// The seed does not fit a scenario file.
    #[error("seed {0} is above the largest a scenario file holds ({max})", max = i64::MAX)]
    Seed(u64),
}

/// The scenario file `text` (already validated as `scenario`) with its faults and assertions
/// replaced by a fault schedule drawn for `seed`, and its seed set to `seed`.
pub fn draw(text: &str, scenario: &Scenario, seed: u64) -> Result<String, SwarmError> {
    let seed_value = i64::try_from(seed).map_err(|_| SwarmError::Seed(seed))?;
    // Faults end before the heal, if the file has one: what it says about recovery stands.
    let horizon = scenario.heal.as_ref().map_or(scenario.duration, |h| h.at);
    if horizon < MIN_HORIZON {
        return Err(SwarmError::TooShort);
    }
    let mut table: Table = toml::from_str(text)?;
    let mut rng = crate::framework::ids::stream(seed, "swarm");
    let targets = targets(scenario);
    if targets.is_empty() {
        return Err(SwarmError::NoTargets);
    }
    let kinds = kinds_on(&mut rng, &scenario.swarm.kinds);
    let fault_kinds: Vec<&str> = kinds
        .iter()
        .copied()
        .filter(|k| !["sync", "buggify"].contains(k))
        .collect();
    let mut faults = Vec::new();
    if !fault_kinds.is_empty() {
        let n = rng.random_range(1..=scenario.swarm.max_faults.max(1));
        for _ in 0..n {
            let kind = fault_kinds[rng.random_range(0..fault_kinds.len())];
            faults.push(Value::Table(fault(
                &mut rng,
                kind,
                &targets,
                scenario.duration,
            )));
        }
    }
    let mut summary: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
    summary.sort();
    if kinds.contains(&"sync") {
        table.insert("disk".into(), Value::Table(disk_sync(&mut rng)));
    }
    if kinds.contains(&"buggify") {
        table.insert("buggify".into(), Value::Boolean(true));
    }
    table.remove("assert");
    table.remove("swarm");
    table.insert("seed".into(), Value::Integer(seed_value));
    table.insert("fault".into(), Value::Array(faults));
    let body = toml::to_string(&table)?;
    Ok(format!(
        "# {name} at seed {seed}, with a fault schedule drawn by `windtunnel sweep --swarm`\n\
         # (kinds on for this seed: {kinds}). The file's own faults and assertions are left out:\n\
         # a swarm run is judged by the invariants of the systems it runs, which hold whatever\n\
         # breaks. `windtunnel run` replays it bit for bit; `windtunnel shrink` makes it smaller.\n{body}",
        name = scenario.name,
        kinds = summary.join(", "),
    ))
}

/// The shortest stretch (the run, or the time before its heal) windows are drawn in.
const MIN_HORIZON: Duration = Duration::from_secs(2);

/// The services faults may hit: the file's `[swarm] targets`, or every service.
fn targets(scenario: &Scenario) -> Vec<&Service> {
    let wanted = &scenario.swarm.targets;
    scenario
        .services
        .iter()
        .filter(|s| wanted.is_empty() || wanted.contains(&s.name))
        .collect()
}

/// Which kinds are on for this seed: each with even odds, at least one.
fn kinds_on<'a>(rng: &mut ChaCha8Rng, kinds: &'a [String]) -> Vec<&'a str> {
    let mut on: Vec<&str> = kinds
        .iter()
        .filter(|_| rng.random_bool(0.5))
        .map(String::as_str)
        .collect();
    if on.is_empty() && !kinds.is_empty() {
        on.push(kinds[rng.random_range(0..kinds.len())].as_str());
    }
    on
}

/// One drawn fault of `kind`: a window inside the first `horizon` of the run (at least
/// [`MIN_HORIZON`]), a target, a strength.
fn fault(rng: &mut ChaCha8Rng, kind: &str, targets: &[&Service], horizon: Duration) -> Table {
    let run_ms = u64::try_from(horizon.as_millis()).unwrap_or(u64::MAX / 2);
    let at = rng.random_range(run_ms / 20..=run_ms * 7 / 10) / 100 * 100;
    let longest = (run_ms * 95 / 100).saturating_sub(at).max(100);
    let length = rng
        .random_range(run_ms / 20..=run_ms * 3 / 10)
        .clamp(100, longest)
        / 100
        * 100;
    let mut f = Table::new();
    f.insert("at".into(), ms(at));
    f.insert("duration".into(), ms(length.max(100)));
    let mut body = Table::new();
    match kind {
        "slow" => {
            body.insert("target".into(), target(rng, targets).into());
            body.insert(
                "factor".into(),
                Value::Integer(pick(rng, &[2, 5, 10, 30]) as i64),
            );
        }
        "latency" => {
            body.insert("target".into(), target(rng, targets).into());
            body.insert("add".into(), ms(pick(rng, &[5, 20, 50, 200])));
        }
        "errors" => {
            body.insert("target".into(), target(rng, targets).into());
            body.insert("rate".into(), percent(pick(rng, &[1, 10, 30, 50])));
            body.insert("code".into(), "internal.swarm".into());
        }
        "partition" | "hold" | "loss" => {
            let (a, b) = pair(rng, targets);
            body.insert("a".into(), a.into());
            body.insert("b".into(), b.into());
            if kind == "loss" {
                body.insert("rate".into(), percent(pick(rng, &[1, 5, 20, 50])));
            }
        }
        "crash" => {
            body.insert("target".into(), target(rng, targets).into());
        }
        _ => {
            body.insert("target".into(), target(rng, targets).into());
            if rng.random_bool(0.25) {
                body.insert("stall".into(), true.into());
            } else {
                body.insert(
                    "factor".into(),
                    Value::Integer(pick(rng, &[2, 5, 10, 20]) as i64),
                );
            }
        }
    }
    f.insert(kind.into(), Value::Table(body));
    f
}

/// A `[disk]` table whose syncs take from well under a millisecond to tens of them, with a tail.
fn disk_sync(rng: &mut ChaCha8Rng) -> Table {
    let p50_us = pick(rng, &[200, 500, 1000, 2000, 5000]);
    let p99_us = p50_us * pick(rng, &[3, 5, 10, 20]);
    let mut sync = Table::new();
    sync.insert("dist".into(), "lognormal".into());
    sync.insert("p50".into(), format!("{p50_us}us").into());
    sync.insert("p99".into(), format!("{p99_us}us").into());
    let mut disk = Table::new();
    disk.insert("sync".into(), Value::Table(sync));
    disk
}

/// A service, or one of its instances half the time when it has several.
fn target(rng: &mut ChaCha8Rng, targets: &[&Service]) -> String {
    let service = targets[rng.random_range(0..targets.len())];
    if service.instances > 1 && rng.random_bool(0.5) {
        let i = rng.random_range(0..service.instances);
        format!("{}[{i}]", service.name)
    } else {
        service.name.to_string()
    }
}

/// Two different ends: the load's client and a service, or two services.
fn pair(rng: &mut ChaCha8Rng, targets: &[&Service]) -> (String, String) {
    let b = targets[rng.random_range(0..targets.len())].name.to_string();
    let others: Vec<String> = targets
        .iter()
        .map(|s| s.name.to_string())
        .filter(|n| *n != b)
        .collect();
    if others.is_empty() || rng.random_bool(0.25) {
        ("client".to_string(), b)
    } else {
        (others[rng.random_range(0..others.len())].clone(), b)
    }
}

fn pick(rng: &mut ChaCha8Rng, choices: &[u64]) -> u64 {
    choices[rng.random_range(0..choices.len())]
}

fn ms(ms: u64) -> Value {
    Value::String(format!("{ms}ms"))
}

fn percent(p: u64) -> Value {
    Value::String(format!("{p}%"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
name = "s"
description = "d"
duration = "20s"
[[service]]
name = "svc.a"
instances = 2
[[service.endpoint]]
name = "get"
time = "1ms"
[[service]]
name = "svc.b"
[[service.endpoint]]
name = "get"
time = "1ms"
[[load]]
name = "l"
rpc = "svc.a.get"
rate = "10/s"
[[assert]]
that = "error_rate == 0"
load = "l"
"#;

    #[test]
    fn a_drawn_file_is_a_valid_scenario_that_depends_only_on_the_seed() {
        let scenario = crate::scenario::parse_str(FILE, "s.toml", &crate::scenario::NoBuiltins)
            .expect("valid");
        let a = draw(FILE, &scenario, 7).expect("draws");
        assert_eq!(a, draw(FILE, &scenario, 7).expect("draws"));
        let drawn: Vec<String> = (1..40)
            .map(|seed| draw(FILE, &scenario, seed).expect("draws"))
            .collect();
        for text in &drawn {
            let s = crate::scenario::parse_str(text, "drawn.toml", &crate::scenario::NoBuiltins)
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert!(s.assertions.is_empty());
        }
        let distinct: std::collections::BTreeSet<&String> = drawn.iter().collect();
        assert!(distinct.len() > 30, "seeds draw different schedules");
        assert!(drawn.iter().any(|t| t.contains("crash")));
        assert!(drawn.iter().any(|t| t.contains("lognormal")));
    }
}
