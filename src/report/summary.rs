//! summary.json: what a run measured, judged against the scenario's assertions.
//!
//! Built from [`Measurements`] once the run ends. Every map is ordered and every figure derives
//! from the event log, so two runs of one scenario and seed give byte-identical files except
//! `wall_seconds` and `speedup`. The report's plots and pages are drawn from this alone, so
//! `windtunnel compare` can work from two summary files.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::framework::MetricKind;
use crate::metrics::{BusinessMetric, Checks, Measurements, Series, Trace, WindowStats};
use crate::scenario::{Assertion, FaultKind, LatencyStat, Metric, Scenario, Scope, Window};
pub use crate::system::Invariant;

/// Latency percentiles of a set of requests, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyMs {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// One point of a percentile spectrum (HdrHistogram's view).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpectrumPoint {
    /// Percentile, 0..=100.
    pub percentile: f64,
    /// Latency at that percentile, in milliseconds.
    pub value_ms: f64,
}

/// One time bucket of a route or endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BucketSummary {
    /// Bucket start, seconds since the start of the run.
    pub t_s: f64,
    /// Requests started in the bucket.
    pub sent: u64,
    /// Of those, answered ok.
    pub ok: u64,
    /// Of those, never sent (the generator could not keep up).
    pub dropped: u64,
    /// Of those, failed, by code.
    pub errors: BTreeMap<String, u64>,
    /// Latency percentiles of the bucket's answered requests; `None` when none were answered.
    pub latency_ms: Option<LatencyMs>,
}

/// A load (route) or endpoint over the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficSummary {
    /// Requests issued.
    pub sent: u64,
    /// Answered ok.
    pub ok: u64,
    /// Never sent on time.
    pub dropped: u64,
    /// Failed, by code.
    pub errors: BTreeMap<String, u64>,
    /// (sent - ok) / sent.
    pub error_rate: f64,
    /// Ok answers per second of the run.
    pub goodput_per_s: f64,
    /// Latency of answered requests, measured from each request's intended start.
    pub latency_ms: LatencyMs,
    /// Percentile spectrum, for distribution plots.
    pub spectrum: Vec<SpectrumPoint>,
    /// Per time bucket.
    pub timeline: Vec<BucketSummary>,
}

/// Load on one instance in one bucket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstancePoint {
    /// Bucket start, seconds.
    pub t_s: f64,
    /// Most requests held at once.
    pub max_inflight: u32,
    /// Most requests waiting for a worker at once.
    pub max_queue: u32,
    /// Share of worker time spent in handlers, 0..=1.
    pub utilisation: f64,
    /// Whether the instance was up.
    pub up: bool,
    /// Whether its out-of-band health checks passed (`None`: none ran in the bucket).
    #[serde(default)]
    pub healthy: Option<bool>,
}

/// One instance over the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceSummary {
    /// Its workers.
    pub workers: u32,
    /// Per time bucket.
    pub timeline: Vec<InstancePoint>,
}

/// A fault's window, for shading plots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultWindow {
    /// What it was, e.g. `slow service.webhook[1] x20`.
    pub label: String,
    /// Start, seconds.
    pub start_s: f64,
    /// End, seconds.
    pub end_s: f64,
}

/// One assertion's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssertionResult {
    /// The `that` text.
    pub that: String,
    /// What it was measured on: `all loads`, `load X`, `route X`, `endpoint X`.
    pub scope: String,
    /// The window: "whole run", or as seconds ("20s..40s"), after the name a named window was
    /// written with ("fault:slow-a 20s..40s", "after_faults 40s..60s").
    pub window: String,
    /// The value observed, in the metric's unit (ms, fraction, per second, count).
    pub observed: f64,
    /// The one-line verdict, e.g. `p99(latency) < 300ms: observed 412ms, fails`.
    pub verdict: String,
    /// Whether it holds.
    pub passed: bool,
}

/// One business metric over the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BusinessSummary {
    /// `counter` or `histogram`.
    pub kind: String,
    /// Sum of everything recorded.
    pub total: i64,
    /// Number of records.
    pub records: u64,
    /// Sum per time bucket (a counter's rate over time).
    pub timeline: Vec<i64>,
    /// Percentiles of the values (histograms only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<ValueStats>,
}

/// Percentiles of a business histogram's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueStats {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

fn business_summary(b: &BusinessMetric) -> BusinessSummary {
    let values = b
        .histogram
        .as_ref()
        .filter(|h| !h.is_empty())
        .map(|h| ValueStats {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
            mean: h.mean(),
        });
    BusinessSummary {
        kind: match b.kind {
            MetricKind::Counter => "counter",
            MetricKind::Histogram => "histogram",
        }
        .to_string(),
        total: b.total,
        records: b.records,
        timeline: b.per_bucket.clone(),
        values,
    }
}

/// Everything summary.json holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The scenario's name.
    pub scenario: String,
    /// What it shows.
    pub description: String,
    /// The root seed.
    pub seed: u64,
    /// Simulated seconds.
    pub sim_seconds: f64,
    /// Wall-clock seconds the run took (the one field that differs between identical runs).
    pub wall_seconds: f64,
    /// sim_seconds / wall_seconds.
    pub speedup: f64,
    /// Simulated seconds skipped in one step each because nothing could happen in them
    /// (the results are what stepping every tick gives; only the wall time differs).
    #[serde(default)]
    pub skipped_seconds: f64,
    /// Where a skip of idle time that was spoiled began, in simulated seconds, if one was: a
    /// host woke inside it from a timer windtunnel cannot see, and the run was done tick by
    /// tick.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_spoiled_at: Option<f64>,
    /// The word hash (`metrics::WordHash`) of the ordered event log and load results, in hex:
    /// equal for equal runs.
    pub fingerprint: String,
    /// Framework events seen.
    pub events: u64,
    /// Width of a timeline bucket, seconds.
    pub bucket_seconds: f64,
    /// The fault windows.
    pub faults: Vec<FaultWindow>,
    /// Per load (RPC or HTTP route), by load name. (Reports written before the field's rename
    /// call it `routes`; they still load.)
    #[serde(alias = "routes")]
    pub loads: BTreeMap<String, TrafficSummary>,
    /// Per service endpoint, as its callers saw it.
    pub endpoints: BTreeMap<String, TrafficSummary>,
    /// Per instance.
    pub instances: BTreeMap<String, InstanceSummary>,
    /// The checks, by name.
    pub checks: BTreeMap<String, u64>,
    /// Business metrics the services recorded, by name.
    #[serde(default)]
    pub business: BTreeMap<String, BusinessSummary>,
    /// The registered systems' invariants, checked after the run.
    #[serde(default)]
    pub invariants: Vec<Invariant>,
    /// The assertions, in file order.
    pub assertions: Vec<AssertionResult>,
    /// Whether every assertion and every invariant holds.
    pub passed: bool,
    /// Kept traces: the slowest edge requests, then failed ones, then a sample.
    #[serde(default)]
    pub traces: Vec<Trace>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn latency_of(h: &Histogram<u64>) -> LatencyMs {
    if h.is_empty() {
        return LatencyMs::default();
    }
    LatencyMs {
        p50: ms(h.value_at_quantile(0.5)),
        p90: ms(h.value_at_quantile(0.9)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
        mean: h.mean() / 1000.0,
    }
}

/// The percentile spectrum as HdrHistogram prints it: five points per halving of the distance to
/// 100% (0, 10, 20, ... 50, 55, ...), down to the last request, then the maximum.
fn spectrum(h: &Histogram<u64>) -> Vec<SpectrumPoint> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut points: Vec<SpectrumPoint> = h
        .iter_quantiles(5)
        .map(|v| SpectrumPoint {
            percentile: v.quantile_iterated_to() * 100.0,
            value_ms: ms(h.highest_equivalent(v.value_iterated_to())),
        })
        .take(200)
        .collect();
    points.push(SpectrumPoint {
        percentile: 100.0,
        value_ms: ms(h.max()),
    });
    points
}

fn traffic_summary(series: &Series, run: Duration) -> TrafficSummary {
    let totals = series.totals();
    let width = series.bucket_width().as_secs_f64();
    let timeline = series
        .bucket_counts()
        .zip(series.bucket_latency())
        .enumerate()
        .map(|(i, (c, h))| BucketSummary {
            t_s: i as f64 * width,
            sent: c.sent,
            ok: c.ok,
            dropped: c.dropped,
            errors: c.errors,
            latency_ms: h.filter(|h| !h.is_empty()).map(|h| latency_of(&h)),
        })
        .collect();
    TrafficSummary {
        sent: totals.sent,
        ok: totals.ok,
        dropped: totals.dropped,
        errors: totals.errors.clone(),
        error_rate: rate_of_failure(totals.sent, totals.ok),
        goodput_per_s: totals.ok as f64 / run.as_secs_f64().max(f64::MIN_POSITIVE),
        latency_ms: latency_of(series.overall()),
        spectrum: spectrum(series.overall()),
        timeline,
    }
}

fn rate_of_failure(sent: u64, ok: u64) -> f64 {
    if sent == 0 {
        0.0
    } else {
        (sent - ok.min(sent)) as f64 / sent as f64
    }
}

/// The names and values of the checks.
pub fn check_values(c: &Checks) -> BTreeMap<String, u64> {
    [
        ("orphaned_work", c.orphaned_work),
        ("orphaned_work_ms", c.orphaned_work_ms),
        ("late_work", c.late_work),
        ("late_ok", c.late_ok),
        ("unauthenticated_calls", c.unauthenticated_calls),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A short label for a fault, for plots.
pub fn fault_label(kind: &FaultKind) -> String {
    match kind {
        FaultKind::Slow { target, factor } => format!("slow {target} x{}", factor.value()),
        FaultKind::Latency { target, .. } => format!("latency {target}"),
        FaultKind::Errors { target, rate, code } => {
            format!(
                "errors {target} {}% {}",
                rate.value() * 100.0,
                code.as_str()
            )
        }
        FaultKind::Partition { a, b, oneway } => {
            format!("partition {a} {} {b}", if *oneway { "->" } else { "<->" })
        }
        FaultKind::Hold { a, b } => format!("hold {a} <-> {b}"),
        FaultKind::Loss { a, b, rate } => format!("loss {a} <-> {b} {}%", rate.value() * 100.0),
        FaultKind::Crash { target } => format!("crash {target}"),
        FaultKind::Intruder { target, rate } => format!("intruder -> {target} {rate}"),
        FaultKind::Disk {
            target,
            effect: crate::scenario::DiskEffect::Slow(factor),
        } => format!("disk syncs {target} x{}", factor.value()),
        FaultKind::Disk { target, .. } => format!("disk syncs stalled {target}"),
    }
}

/// Builds the summary of a finished run and judges its assertions.
pub fn build(scenario: &Scenario, m: &Measurements, wall: Duration) -> Summary {
    let run = m.run;
    let loads: BTreeMap<String, TrafficSummary> = m
        .loads
        .iter()
        .map(|(k, s)| (k.clone(), traffic_summary(s, run)))
        .collect();
    let endpoints = m
        .endpoints
        .iter()
        .map(|(k, s)| (k.clone(), traffic_summary(s, run)))
        .collect();
    let width = m.bucket_width;
    let instances = m
        .instances
        .iter()
        .map(|(id, t)| {
            let capacity = width.as_nanos() as f64 * f64::from(t.workers.max(1));
            let timeline = t
                .buckets
                .iter()
                .enumerate()
                .map(|(i, b)| InstancePoint {
                    t_s: i as f64 * width.as_secs_f64(),
                    max_inflight: b.max_inflight,
                    max_queue: b.max_queue,
                    utilisation: (b.busy_ns as f64 / capacity).min(1.0),
                    up: b.up,
                    healthy: b.healthy,
                })
                .collect();
            (
                id.to_string(),
                InstanceSummary {
                    workers: t.workers,
                    timeline,
                },
            )
        })
        .collect();
    let checks = check_values(&m.checks);
    let assertions: Vec<AssertionResult> = scenario
        .assertions
        .iter()
        .map(|a| judge(scenario, m, &checks, a))
        .collect();
    let faults = scenario
        .faults
        .iter()
        .map(|f| FaultWindow {
            label: fault_label(&f.kind),
            start_s: f.at.as_secs_f64(),
            end_s: f.end(run).as_secs_f64(),
        })
        .collect();
    let wall_seconds = wall.as_secs_f64();
    Summary {
        scenario: scenario.name.as_str().to_string(),
        description: scenario.description.clone(),
        seed: scenario.seed,
        sim_seconds: run.as_secs_f64(),
        wall_seconds,
        speedup: run.as_secs_f64() / wall_seconds.max(1e-9),
        skipped_seconds: 0.0,
        skip_spoiled_at: None,
        fingerprint: format!("{:016x}", m.fingerprint),
        events: m.events,
        bucket_seconds: width.as_secs_f64(),
        faults,
        loads,
        endpoints,
        instances,
        checks,
        business: m
            .business
            .iter()
            .map(|(k, b)| (k.to_string(), business_summary(b)))
            .collect(),
        invariants: m.invariants.clone(),
        passed: assertions.iter().all(|a| a.passed) && m.invariants.iter().all(|i| i.holds),
        assertions,
        traces: m.traces.clone(),
    }
}

/// The series an assertion's scope names, merged.
fn scoped(scenario: &Scenario, m: &Measurements, scope: &Scope) -> Option<Series> {
    let pick = |names: Vec<&str>, from: &BTreeMap<String, Series>| -> Option<Series> {
        let mut it = names.into_iter().filter_map(|n| from.get(n));
        let mut merged = it.next()?.clone();
        for s in it {
            merged.merge(s);
        }
        Some(merged)
    };
    match scope {
        Scope::All => pick(m.loads.keys().map(String::as_str).collect(), &m.loads),
        Scope::Load(name) => pick(vec![name.as_str()], &m.loads),
        Scope::Route(key) => {
            let names = scenario
                .loads
                .iter()
                .filter(|l| matches!(&l.target, crate::scenario::LoadTarget::Route(k) if k == key))
                .map(|l| l.name.as_str())
                .collect();
            pick(names, &m.loads)
        }
        Scope::Endpoint(r) => pick(vec![r.to_string().as_str()], &m.endpoints),
    }
}

fn observe(metric: &Metric, w: &WindowStats) -> f64 {
    let c = &w.counts;
    let h = &w.latency;
    let q = |q: f64| {
        if h.is_empty() {
            0.0
        } else {
            ms(h.value_at_quantile(q))
        }
    };
    match metric {
        Metric::Latency(LatencyStat::Max) => {
            if h.is_empty() {
                0.0
            } else {
                ms(h.max())
            }
        }
        Metric::Latency(LatencyStat::Mean) => {
            if h.is_empty() {
                0.0
            } else {
                h.mean() / 1000.0
            }
        }
        Metric::Latency(stat) => q(stat.quantile().unwrap_or(0.5)),
        Metric::ErrorRate => rate_of_failure(c.sent, c.ok),
        Metric::Goodput => c.ok as f64 / w.span.as_secs_f64().max(f64::MIN_POSITIVE),
        Metric::Sent => c.sent as f64,
        Metric::Ok => c.ok as f64,
        Metric::Dropped => c.dropped as f64,
        Metric::Errors => c.failed() as f64,
        Metric::SlowerThan(d) => {
            if h.is_empty() {
                f64::NAN
            } else {
                let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
                let within = h.count_between(0, us);
                h.len().saturating_sub(within) as f64 / h.len() as f64
            }
        }
        Metric::Check(_) | Metric::Count(_) => f64::NAN,
    }
}

/// The sum of counter `name` over the buckets that start in `window`; 0 when nothing recorded
/// it (a mechanism that never acted).
fn counted(m: &Measurements, name: &str, window: &Range<Duration>) -> f64 {
    let Some(metric) = m.business.get(name) else {
        return 0.0;
    };
    let width = m.bucket_width.as_nanos().max(1);
    let sum: i64 = metric
        .per_bucket
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            let start = Duration::from_nanos((*i as u128 * width).min(u128::from(u64::MAX)) as u64);
            window.contains(&start)
        })
        .map(|(_, v)| *v)
        .sum();
    sum as f64
}

fn describe_scope(scope: &Scope) -> String {
    match scope {
        Scope::All => "all loads".to_string(),
        Scope::Load(n) => format!("load {n}"),
        Scope::Route(k) => format!("route {k}"),
        Scope::Endpoint(r) => format!("endpoint {r}"),
    }
}

fn describe_window(w: &Range<Duration>) -> String {
    format!("{}s..{}s", w.start.as_secs_f64(), w.end.as_secs_f64())
}

fn judge(
    scenario: &Scenario,
    m: &Measurements,
    checks: &BTreeMap<String, u64>,
    a: &Assertion,
) -> AssertionResult {
    let window = scenario.window_bounds(&a.window);
    let observed = match &a.metric {
        Metric::Check(name) => checks.get(name).map_or(f64::NAN, |v| *v as f64),
        Metric::Count(name) => counted(m, name, &window),
        metric => match scoped(scenario, m, &a.scope) {
            Some(series) => observe(metric, &series.window(&window, m.run)),
            None => f64::NAN,
        },
    };
    let passed = a.holds(observed);
    let unrecorded = match &a.metric {
        Metric::Count(name) => !m.business.contains_key(name.as_str()),
        _ => false,
    };
    let verdict = if unrecorded {
        format!(
            "{} (nothing in this run recorded a counter of that name: is it spelled right?)",
            a.describe(observed)
        )
    } else if observed.is_nan() {
        format!(
            "{}: nothing was measured for {}, fails",
            a.text,
            describe_scope(&a.scope)
        )
    } else {
        a.describe(observed)
    };
    AssertionResult {
        that: a.text.clone(),
        scope: describe_scope(&a.scope),
        window: match &a.window {
            Window::All => "whole run".to_string(),
            Window::Range { .. } => describe_window(&window),
            named => format!("{named} {}", describe_window(&window)),
        },
        observed: if observed.is_nan() { -1.0 } else { observed },
        verdict,
        passed,
    }
}

pub use crate::scenario::assertion::CHECK_NAMES;
