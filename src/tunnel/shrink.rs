//! Shrinking: the smallest scenario file that still fails the same way.
//!
//! A failing seed of a swarm sweep has several faults, full load and the whole run; the bug
//! usually needs one or two of them. [`shrink`] edits the file greedily (drop an assertion
//! that is not the failure, drop a fault, shorten the run, halve a load's rate or drop a load,
//! halve a fault's window, take a `[disk]` setting or an instance away), runs each candidate
//! at the same seed, and keeps a change when the same failure (by its key: see
//! [`Outcome::failure_keys`](super::Outcome::failure_keys)) is still there. It stops when no
//! change keeps the failure, or after a budget of runs. Each run is deterministic, so the
//! shrunk file replays its failure with `windtunnel run`.

use std::time::Duration;

use toml::{Table, Value};

use crate::scenario;
use crate::system::Catalog;
use crate::units::{format_duration, parse_duration, Rate};

use super::{Tunnel, TunnelError};

/// Why a file could not be shrunk.
#[derive(Debug, thiserror::Error)]
pub enum ShrinkError {
    /// The file does not run.
    #[error(transparent)]
    Run(#[from] TunnelError),
    /// The file is not TOML.
    #[error("the scenario is not TOML: {0}")]
    Parse(#[from] toml::de::Error),
    /// A candidate could not be written.
    #[error("a shrunk scenario cannot be written: {0}")]
    Write(#[from] toml::ser::Error),
    /// The file passes at this seed: there is nothing to shrink.
    #[error("the scenario passes at seed {seed}: nothing fails, so there is nothing to shrink")]
    Passes {
        /// The seed.
        seed: u64,
    },
    /// The failure asked for is not among the run's.
    #[error("the run at seed {seed} does not fail {wanted:?}; it fails: {found}")]
    NotFailing {
        /// The seed.
        seed: u64,
        /// The failure asked for.
        wanted: String,
        /// What failed instead.
        found: String,
    },
}

/// What to shrink and how hard.
#[derive(Debug, Clone)]
pub struct ShrinkOptions {
    /// The seed the failure happens at.
    pub seed: u64,
    /// The failure to keep (a key from `failure_keys`); `None`: the run's first failure.
    pub failure: Option<String>,
    /// Most candidate runs.
    pub max_runs: u32,
}

/// A shrunk scenario.
#[derive(Debug, Clone)]
pub struct Shrunk {
    /// The scenario file, with a header saying where it came from and what it fails.
    pub text: String,
    /// The failure it keeps.
    pub failure: String,
    /// Candidate runs made (the first run of the original file included).
    pub runs: u32,
    /// The changes kept, in order.
    pub steps: Vec<String>,
    /// Faults before and after.
    pub faults: (usize, usize),
}

/// Shrinks the scenario file `text` (named `name` in diagnostics) with `catalog`'s systems,
/// keeping the failure `options` asks for; `progress` hears of every change kept.
pub fn shrink(
    text: &str,
    name: &str,
    catalog: &Catalog,
    options: &ShrinkOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<Shrunk, ShrinkError> {
    let seed = options.seed;
    let first = failures_of(text, name, catalog, seed)?;
    let failure = match &options.failure {
        None => first.first().cloned().ok_or(ShrinkError::Passes { seed })?,
        Some(wanted) if first.contains(wanted) => wanted.clone(),
        Some(wanted) => {
            return Err(ShrinkError::NotFailing {
                seed,
                wanted: wanted.clone(),
                found: first.join("; "),
            })
        }
    };
    let original: Table = toml::from_str(text)?;
    let faults_before = array(&original, "fault").len();
    let mut current = original;
    let seed_value = i64::try_from(seed).unwrap_or(i64::MAX); // the command line bounds it
    current.insert("seed".into(), Value::Integer(seed_value));
    let mut runs = 1;
    let mut steps = Vec::new();
    'rounds: loop {
        let mut kept = false;
        for (what, candidate) in candidates(&current, &failure) {
            if runs >= options.max_runs {
                break 'rounds;
            }
            let candidate_text = toml::to_string(&candidate)?;
            if scenario::parse_str(&candidate_text, name, catalog).is_err() {
                continue; // a change the file format refuses costs no run
            }
            runs += 1;
            let still = failures_of(&candidate_text, name, catalog, seed)
                .is_ok_and(|f| f.contains(&failure));
            if still {
                progress(&what);
                steps.push(what);
                current = candidate;
                kept = true;
                break;
            }
        }
        if !kept {
            break;
        }
    }
    let body = toml::to_string(&current)?;
    let faults_after = array(&current, "fault").len();
    let mut header = format!(
        "# Shrunk by `windtunnel shrink` from {name} at seed {seed}: it still fails\n# {failure}\n# ({faults_before} faults -> {faults_after}, {runs} runs). Changes kept:\n"
    );
    for step in &steps {
        header.push_str(&format!("#   - {step}\n"));
    }
    Ok(Shrunk {
        text: header + &body,
        failure,
        runs,
        steps,
        faults: (faults_before, faults_after),
    })
}

/// The failure keys of `text` run at `seed`.
fn failures_of(
    text: &str,
    name: &str,
    catalog: &Catalog,
    seed: u64,
) -> Result<Vec<String>, ShrinkError> {
    let outcome = Tunnel::toml(text, name)
        .with_catalog(catalog.clone())
        .seed_from_env(false)
        .seed(seed)
        .run()?;
    Ok(outcome.failure_keys())
}

/// Every single change to try on `t`, most effective first.
fn candidates(t: &Table, failure: &str) -> Vec<(String, Table)> {
    // Assertions, faults and loads are named by what they are, not their place: a change kept
    // renumbers the ones after it, and the header lists every change kept.
    let mut out = Vec::new();
    let asserts = array(t, "assert");
    if failure.starts_with("invariant ") && !asserts.is_empty() {
        out.push(("drop every assertion".to_string(), without(t, "assert")));
    }
    for (i, assert) in asserts.iter().enumerate().rev() {
        let that = assert.get("that").and_then(Value::as_str).unwrap_or("?");
        out.push((format!("drop assertion {that:?}"), removed(t, "assert", i)));
    }
    let faults = array(t, "fault");
    for (i, fault) in faults.iter().enumerate().rev() {
        let what = format!("drop fault ({})", describe(fault));
        out.push((what, removed(t, "fault", i)));
    }
    out.extend(shorter_runs(t));
    for (i, load) in array(t, "load").iter().enumerate() {
        out.extend(slower_load(t, i, load));
        out.push((
            format!("drop load {}", load_name(load)),
            removed(t, "load", i),
        ));
    }
    for (i, fault) in faults.iter().enumerate() {
        out.extend(narrower_fault(t, i, fault));
    }
    if t.get("buggify").and_then(Value::as_bool) == Some(true) {
        out.push(("fault points off".to_string(), without(t, "buggify")));
    }
    if t.contains_key("disk") {
        out.push(("default disk sync time".to_string(), without(t, "disk")));
    }
    for (i, service) in array(t, "service").iter().enumerate() {
        let n = service
            .get("instances")
            .and_then(Value::as_integer)
            .unwrap_or(1);
        if n > 1 {
            let mut c = t.clone();
            set_in(&mut c, "service", i, "instances", Value::Integer(n - 1));
            let name = service.get("name").and_then(Value::as_str).unwrap_or("?");
            out.push((format!("{name}: {} instances", n - 1), c));
        }
    }
    out
}

fn array<'a>(t: &'a Table, key: &str) -> &'a [Value] {
    t.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn without(t: &Table, key: &str) -> Table {
    let mut c = t.clone();
    c.remove(key);
    c
}

fn removed(t: &Table, key: &str, i: usize) -> Table {
    let mut c = t.clone();
    if let Some(Value::Array(items)) = c.get_mut(key) {
        items.remove(i);
    }
    c
}

/// Table `i` of the array of tables `key` (`[[load]]`, `[[fault]]`, ...).
fn item_mut<'a>(t: &'a mut Table, key: &str, i: usize) -> Option<&'a mut Table> {
    t.get_mut(key)
        .and_then(Value::as_array_mut)
        .and_then(|a| a.get_mut(i))
        .and_then(Value::as_table_mut)
}

fn set_in(t: &mut Table, key: &str, i: usize, field: &str, value: Value) {
    if let Some(item) = item_mut(t, key, i) {
        item.insert(field.to_string(), value);
    }
}

/// A fault in a few words: its kind and target.
fn describe(fault: &Value) -> String {
    let Some(f) = fault.as_table() else {
        return "?".to_string();
    };
    let at = f.get("at").and_then(Value::as_str).unwrap_or("?");
    f.iter()
        .find_map(|(kind, body)| {
            let body = body.as_table()?;
            let target = body
                .get("target")
                .or_else(|| body.get("b"))
                .and_then(Value::as_str)
                .unwrap_or("?");
            Some(format!("{kind} {target} at {at}"))
        })
        .unwrap_or_else(|| "?".to_string())
}

fn duration_of(value: Option<&Value>) -> Option<Duration> {
    value
        .and_then(Value::as_str)
        .and_then(|s| parse_duration(s).ok())
}

/// The run cut to half and to three quarters, in whole seconds.
fn shorter_runs(t: &Table) -> Vec<(String, Table)> {
    let Some(run) = duration_of(t.get("duration")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (num, den) in [(1, 2), (3, 4)] {
        let secs = run.as_secs() * num / den;
        if secs >= 1 && secs < run.as_secs() {
            let mut c = t.clone();
            let d = format_duration(Duration::from_secs(secs));
            c.insert("duration".into(), Value::String(d.clone()));
            out.push((format!("run for {d}"), c));
        }
    }
    out
}

/// A load as the header names it: the name it goes by in the file (scenario::load_name).
fn load_name(load: &Value) -> String {
    let key = |k: &str| load.get(k).and_then(Value::as_str);
    crate::scenario::load_name(key("name"), key("rpc"), key("route")).unwrap_or_else(|| "?".into())
}

/// Load `i` at half its rate, without its stages.
fn slower_load(t: &Table, i: usize, load: &Value) -> Vec<(String, Table)> {
    let mut out = Vec::new();
    let name = load_name(load);
    if load.get("stages").is_some() {
        let mut c = t.clone();
        if let Some(l) = item_mut(&mut c, "load", i) {
            l.remove("stages");
        }
        out.push((format!("load {name}: no stages"), c));
    }
    let rate = load
        .get("rate")
        .and_then(Value::as_str)
        .and_then(|r| Rate::parse(r).ok());
    if let Some(rate) = rate {
        let half = rate.as_per_second() / 2.0;
        if half >= 1.0 {
            let mut c = t.clone();
            let text = format!("{}/s", (half * 100.0).round() / 100.0);
            set_in(&mut c, "load", i, "rate", Value::String(text.clone()));
            out.push((format!("load {name}: rate {text}"), c));
        }
    }
    out
}

/// Fault `i` with half its window.
fn narrower_fault(t: &Table, i: usize, fault: &Value) -> Option<(String, Table)> {
    let length = duration_of(fault.get("duration"))?;
    let half = Duration::from_millis((length.as_millis() / 2 / 100 * 100) as u64);
    if half < Duration::from_millis(100) {
        return None;
    }
    let mut c = t.clone();
    let d = format_duration(half);
    set_in(&mut c, "fault", i, "duration", Value::String(d.clone()));
    Some((format!("fault ({}) lasts {d}", describe(fault)), c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_name_loads_and_assertions_by_what_they_are_not_their_place() {
        // Goal: the shrunk file's header stays readable when one change renumbers the rest
        // (it once listed "drop load 2" twice, for two different loads): loads by name (or
        // what they call), assertions by their text, faults by kind, target and start.
        let t: Table = toml::from_str(
            r#"
[[load]]
name = "first"
rate = "10/s"
[[load]]
name = "second"
rate = "4/s"
[[load]]
rpc = "svc.echo.get"
rate = "2/s"
[[assert]]
that = "error_rate == 0"
[[fault]]
at = "2s"
duration = "1s"
crash = { target = "svc.echo" }
"#,
        )
        .expect("TOML");
        let names: Vec<String> = candidates(&t, "assert error_rate == 0")
            .into_iter()
            .map(|(what, _)| what)
            .collect();
        for expected in [
            "drop load first",
            "drop load second",
            "load first: rate 5/s",
            "load second: rate 2/s",
            "drop assertion \"error_rate == 0\"",
            "drop load svc.echo.get",
            "drop fault (crash svc.echo at 2s)",
            "fault (crash svc.echo at 2s) lasts 500ms",
        ] {
            assert!(names.iter().any(|n| n == expected), "{expected}: {names:?}");
        }
    }
}
