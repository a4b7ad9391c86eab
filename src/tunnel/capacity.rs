//! Capacity search: the highest rate of one load at which every assertion still holds.
//!
//! Load testers leave "how much can this take" to manual ramps. Here each probe is a
//! deterministic run of the scenario with the load's rate set (and its stages removed), judged
//! by every assertion and invariant of the file. [`capacity`] brackets the answer by doubling
//! (or halving) from the file's rate, then bisects until the highest passing rate and the
//! lowest failing one are within the asked precision (2% by default). Every probe is kept, so
//! the report can draw p99, error rate and goodput against rate and mark the knee.
//!
//! Rates are probed at four significant digits, and never above the most a file may ask for
//! (1,000,000/s): a system that holds there is reported as holding at every rate probed. A file
//! without assertions is refused, since every rate would pass it.
//!
//! The search assumes that a rate that fails fails at every higher rate. At one seed that is
//! true up to noise: near the knee a rate can pass where a slightly lower one failed. The
//! answer is then a rate that passes with a failing one within the precision above it. A file
//! that asserts a floor on what the searched load adds to (`goodput > 1400/s`, `errors > 0`,
//! `p99(latency) > 200ms`, `count(hedge.sent) > 0`) breaks the assumption from below, since low
//! rates fail it, and is refused before any probe with the assertions named.

use toml::{Table, Value};

use crate::system::Catalog;
use crate::units::MAX_RATE_PER_SECOND;

use super::{Tunnel, TunnelError};

/// Most probes a search makes when not told otherwise.
pub const DEFAULT_MAX_PROBES: u32 = 40;

/// Why a capacity could not be searched for.
#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    /// A probe could not run.
    #[error(transparent)]
    Run(#[from] TunnelError),
    /// The file is not TOML.
    #[error("the scenario is not TOML: {0}")]
    Parse(#[from] toml::de::Error),
    /// A probe's file could not be written.
    #[error("a probe's scenario cannot be written: {0}")]
    Write(#[from] toml::ser::Error),
    /// No load of that name.
    #[error("no load {load:?} in the scenario; its loads are: {known}")]
    NoLoad {
        /// The name asked for.
        load: String,
        /// The loads there are.
        known: String,
    },
    /// The precision is not a fraction above 0 and below 1.
    #[error("the precision must be above 0% and below 100%, found {}%", .0 * 100.0)]
    Precision(f64),
    /// Assertions that set a floor on what the searched load adds to: low rates fail them,
    /// so "the highest rate that holds" is not what they ask.
    #[error("{file}: capacity needs assertions that only get harder as the rate rises (upper bounds, such as p99 and error rate below a limit); these are lower bounds on what the load adds to, which a light enough load fails, so the search would not find the highest rate that holds: {assertions}. Search a copy of the file without them")]
    Floors {
        /// The scenario file.
        file: String,
        /// The assertions, quoted and joined.
        assertions: String,
    },
    /// The file asserts nothing, so every rate would pass.
    #[error("the scenario asserts nothing, so every rate passes: add an [[assert]] that says what \"holding\" means (e.g. p99 and error rate bounds)")]
    NothingAsserted,
}

/// What to search.
#[derive(Debug, Clone)]
pub struct CapacityOptions {
    /// The load whose rate is searched.
    pub load: String,
    /// The answer is within this fraction of the lowest failing rate (0.02: 2%).
    pub precision: f64,
    /// Most probes.
    pub max_probes: u32,
    /// The seed every probe runs at.
    pub seed: u64,
}

/// One probe: a run at one rate.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Probe {
    /// Requests per second of the load.
    pub rate: f64,
    /// Whether every assertion and invariant held.
    pub passed: bool,
    /// The load's p99 latency, ms.
    pub p99_ms: f64,
    /// The load's error rate.
    pub error_rate: f64,
    /// The load's successful requests per second.
    pub goodput_per_s: f64,
    /// What failed (stable keys).
    pub failures: Vec<String>,
}

/// The result of a search.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Capacity {
    /// The scenario.
    pub scenario: String,
    /// The load searched.
    pub load: String,
    /// The highest rate that passed; `None` if even the lowest probed failed.
    pub rate: Option<f64>,
    /// The lowest rate above it that failed; `None` if no probe failed.
    pub failing: Option<f64>,
    /// Every probe, in the order run.
    pub probes: Vec<Probe>,
}

/// Searches the capacity of `options.load` in the scenario file `text` (named `name` in
/// diagnostics) with `catalog`'s systems; `progress` hears of every probe.
pub fn capacity(
    text: &str,
    name: &str,
    catalog: &Catalog,
    options: &CapacityOptions,
    progress: &mut dyn FnMut(&Probe),
) -> Result<Capacity, CapacityError> {
    if !(options.precision > 0.0 && options.precision < 1.0) {
        return Err(CapacityError::Precision(options.precision));
    }
    let table: Table = toml::from_str(text)?;
    let scenario = crate::scenario::parse_str(text, name, catalog).map_err(TunnelError::from)?;
    let index = scenario
        .loads
        .iter()
        .position(|l| l.name.as_str() == options.load)
        .ok_or_else(|| CapacityError::NoLoad {
            load: options.load.clone(),
            known: scenario
                .loads
                .iter()
                .map(|l| l.name.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    if scenario.assertions.is_empty() {
        return Err(CapacityError::NothingAsserted);
    }
    let floors: Vec<String> = scenario
        .assertions
        .iter()
        .filter(|a| is_floor(a, &scenario.loads[index]))
        .map(|a| format!("{:?}", a.text))
        .collect();
    if !floors.is_empty() {
        return Err(CapacityError::Floors {
            file: name.to_string(),
            assertions: floors.join(", "),
        });
    }
    let start = round_rate(scenario.loads[index].rate.as_per_second());
    let mut probes: Vec<Probe> = Vec::new();
    let mut probe = |rate: f64, probes: &mut Vec<Probe>| -> Result<bool, CapacityError> {
        let p = run_at(&table, index, rate, name, catalog, options)?;
        progress(&p);
        let passed = p.passed;
        probes.push(p);
        Ok(passed)
    };
    let (mut lo, mut hi) = (None::<f64>, None::<f64>);
    let mut rate = start;
    // Bracket: double while passing, halve while failing.
    while probes.len() < options.max_probes as usize {
        if probe(rate, &mut probes)? {
            lo = Some(rate);
            if hi.is_some() || rate >= MAX_RATE_PER_SECOND {
                break; // bracketed, or it holds at the most a file may ask for
            }
            rate = round_rate((rate * 2.0).min(MAX_RATE_PER_SECOND));
        } else {
            hi = Some(rate);
            if lo.is_some() || rate < 0.01 {
                break;
            }
            rate = round_rate(rate / 2.0);
        }
    }
    // Bisect.
    while let (Some(l), Some(h)) = (lo, hi) {
        if h - l <= h * options.precision || probes.len() >= options.max_probes as usize {
            break;
        }
        let mid = round_rate((l + h) / 2.0);
        if mid <= l || mid >= h {
            break;
        }
        if probe(mid, &mut probes)? {
            lo = Some(mid);
        } else {
            hi = Some(mid);
        }
    }
    Ok(Capacity {
        scenario: scenario.name.to_string(),
        load: options.load.clone(),
        rate: lo,
        failing: hi,
        probes,
    })
}

/// Whether `a` sets a floor that the searched `load` can fail by being too light: a lower
/// bound (`>`, `>=` above zero, `==` above zero) on anything it adds to. Every metric falls
/// to zero, or stays there, as a load falls to nothing (no requests, no errors, no slow ones,
/// no counts), so any floor fails there: `goodput > 1400/s`, `errors > 0`, `p99(latency) > 200ms`
/// (an off twin's claim). An assertion about another load, or a route it does not take, is
/// not: that load's rate is not searched.
fn is_floor(a: &crate::scenario::Assertion, load: &crate::scenario::Load) -> bool {
    use crate::scenario::{LoadTarget, Metric, Op, Scope};
    let bound = a.bound.value();
    let floor = match a.op {
        Op::Gt => true,
        Op::Ge | Op::Eq => bound > 0.0,
        Op::Lt | Op::Le => false,
    };
    // Counters and checks are counted whatever the scope.
    let unscoped = matches!(a.metric, Metric::Count(_) | Metric::Check(_));
    let touches = unscoped
        || match &a.scope {
            Scope::All | Scope::Endpoint(_) => true,
            Scope::Load(name) => *name == load.name,
            Scope::Route(route) => matches!(&load.target, LoadTarget::Route(r) if r == route),
        };
    floor && touches
}

/// Rates are probed at four significant digits, so a probe's rate prints as it ran.
fn round_rate(rate: f64) -> f64 {
    if rate <= 0.0 || !rate.is_finite() {
        return rate;
    }
    let scale = 10f64.powi(3 - rate.log10().floor() as i32);
    (rate * scale).round() / scale
}

/// The scenario with load `index` at `rate` and no stages, as TOML.
pub fn with_rate(table: &Table, index: usize, rate: f64) -> Result<String, CapacityError> {
    let mut t = table.clone();
    if let Some(Value::Table(load)) = t
        .get_mut("load")
        .and_then(Value::as_array_mut)
        .and_then(|loads| loads.get_mut(index))
    {
        load.insert(
            "rate".into(),
            Value::String(format!("{}/s", round_rate(rate))),
        );
        load.remove("stages");
    }
    Ok(toml::to_string(&t)?)
}

fn run_at(
    table: &Table,
    index: usize,
    rate: f64,
    name: &str,
    catalog: &Catalog,
    options: &CapacityOptions,
) -> Result<Probe, CapacityError> {
    let text = with_rate(table, index, rate)?;
    let outcome = Tunnel::toml(&text, name)
        .with_catalog(catalog.clone())
        .seed_from_env(false)
        .seed(options.seed)
        .run()?;
    let load = outcome.load(&options.load);
    Ok(Probe {
        rate,
        passed: outcome.passed(),
        p99_ms: load.map_or(0.0, |l| l.latency_ms.p99),
        error_rate: load.map_or(0.0, |l| l.error_rate),
        goodput_per_s: load.map_or(0.0, |l| l.goodput_per_s),
        failures: outcome.failure_keys(),
    })
}
