//! The report as a reader meets it: PNG plots, index.html, .hgrm spectra and `compare`.
//!
//! Goal: every file a run leaves behind is valid and honest (plots are real PNGs even for empty
//! runs, the page links only files that exist and escapes scenario text, a .hgrm reads back to
//! the histogram's own percentiles). Method: build realistic summaries by hand (a webhook stack
//! with a slow instance and a crash, latencies drawn from a seeded generator) and check the
//! files written from them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hdrhistogram::Histogram;
use windtunnel::metrics::{Measurements, Recorder, RecorderConfig, Span, Trace};
use windtunnel::report::summary::{
    AssertionResult, BucketSummary, BusinessSummary, FaultWindow, InstancePoint, InstanceSummary,
    Invariant, LatencyMs, SpectrumPoint, Summary, TrafficSummary, ValueStats,
};
use windtunnel::report::{compare, hgrm, html, plots, write_report};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A small seeded generator (xorshift64*), so fixtures are the same on every run.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An exponential draw with this mean.
    fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.next_f64()).ln()
    }
}

/// A fresh, empty folder for one test, under cargo's scratch space for integration tests.
fn scratch(name: &str) -> Result<PathBuf, std::io::Error> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("report-tests")
        .join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn latency_of(h: &Histogram<u64>) -> LatencyMs {
    let ms = |us: u64| us as f64 / 1000.0;
    LatencyMs {
        p50: ms(h.value_at_quantile(0.5)),
        p90: ms(h.value_at_quantile(0.9)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
        mean: h.mean() / 1000.0,
    }
}

fn spectrum_of(h: &Histogram<u64>) -> Vec<SpectrumPoint> {
    let mut points = Vec::new();
    let (mut q, mut gap) = (0.0f64, 0.5f64);
    while q < 0.999_999 {
        points.push(SpectrumPoint {
            percentile: q * 100.0,
            value_ms: h.value_at_quantile(q) as f64 / 1000.0,
        });
        q += gap;
        gap /= 2.0;
    }
    points.push(SpectrumPoint {
        percentile: 100.0,
        value_ms: h.max() as f64 / 1000.0,
    });
    points
}

/// How one load behaves in the fixture.
struct LoadShape {
    rate_per_s: u64,
    mean_ms: f64,
    /// Latency multiplier inside the slow window (20 s..40 s).
    slow_factor: f64,
}

/// One load over 60 one-second buckets: slow between 20 s and 40 s (deadline errors), some
/// `unavailable` errors while an instance is down (45 s..55 s), a few dropped at the peak.
fn load(rng: &mut Rng, shape: &LoadShape) -> TrafficSummary {
    let mut overall = histogram();
    let mut route = TrafficSummary::default();
    for t in 0..60u64 {
        let slow = (20..40).contains(&t);
        let mut h = histogram();
        let mut b = BucketSummary {
            t_s: t as f64,
            sent: shape.rate_per_s,
            ..Default::default()
        };
        for _ in 0..shape.rate_per_s {
            let factor = if slow && rng.next_f64() < 0.25 {
                shape.slow_factor
            } else {
                1.0
            };
            let ms = 1.0 + rng.exp(shape.mean_ms * factor);
            if ms > 300.0 {
                *b.errors.entry("deadline_exceeded".to_string()).or_default() += 1;
            } else if (45..55).contains(&t) && rng.next_f64() < 0.05 {
                *b.errors.entry("unavailable".to_string()).or_default() += 1;
            } else if slow && rng.next_f64() < 0.01 {
                b.dropped += 1;
                continue;
            } else {
                b.ok += 1;
            }
            h.record((ms * 1000.0) as u64)
                .expect("latency within the histogram's bounds");
        }
        b.latency_ms = Some(latency_of(&h));
        overall.add(&h).expect("same bounds");
        route.sent += b.sent;
        route.ok += b.ok;
        route.dropped += b.dropped;
        for (code, n) in &b.errors {
            *route.errors.entry(code.clone()).or_default() += n;
        }
        route.timeline.push(b);
    }
    route.error_rate = (route.sent - route.ok) as f64 / route.sent as f64;
    route.goodput_per_s = route.ok as f64 / 60.0;
    route.latency_ms = latency_of(&overall);
    route.spectrum = spectrum_of(&overall);
    route
}

/// An instance over 60 buckets: `busy` utilisation, pinned (and queueing) when `slow`, down when
/// `down`.
fn instance(workers: u32, busy: f64, slow: bool, down: bool) -> InstanceSummary {
    let timeline = (0..60u32)
        .map(|t| {
            let pinned = slow && (20..40).contains(&t);
            let up = !(down && (45..55).contains(&t));
            InstancePoint {
                t_s: f64::from(t),
                max_inflight: if pinned {
                    workers
                } else if up {
                    3 + t % 4
                } else {
                    0
                },
                max_queue: if pinned {
                    40 + t % 20
                } else if up {
                    t % 3
                } else {
                    0
                },
                utilisation: if pinned {
                    1.0
                } else if up {
                    busy + f64::from(t % 5) * 0.01
                } else {
                    0.0
                },
                up,
                healthy: up.then_some(!pinned),
            }
        })
        .collect();
    InstanceSummary { workers, timeline }
}

fn instances(extra: usize) -> BTreeMap<String, InstanceSummary> {
    let mut out = BTreeMap::new();
    out.insert(
        "api.webhook[0]".to_string(),
        instance(64, 0.10, false, false),
    );
    out.insert(
        "api.webhook[1]".to_string(),
        instance(64, 0.11, false, false),
    );
    out.insert(
        "service.auth[0]".to_string(),
        instance(32, 0.05, false, false),
    );
    out.insert(
        "service.auth[1]".to_string(),
        instance(32, 0.05, false, true),
    );
    for i in 0..4 {
        out.insert(
            format!("service.webhook[{i}]"),
            instance(16, 0.22 + f64::from(i) * 0.04, i == 1, false),
        );
    }
    out.insert("service.db[0]".to_string(), instance(64, 0.2, false, false));
    for i in 0..extra {
        out.insert(
            format!("service.leaf[{i:02}]"),
            instance(8, 0.05 + i as f64 * 0.01, false, false),
        );
    }
    out
}

/// A webhook stack with a slow instance and a crash; `slower` scales the slow window's latency.
fn webhook_run(seed: u64, slower: f64) -> Summary {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let webhooks = load(
        &mut rng,
        &LoadShape {
            rate_per_s: 200,
            mean_ms: 8.0,
            slow_factor: 20.0 * slower,
        },
    );
    let accounts = load(
        &mut rng,
        &LoadShape {
            rate_per_s: 50,
            mean_ms: 3.0,
            slow_factor: 2.0,
        },
    );
    let mut routes = BTreeMap::new();
    routes.insert("webhooks".to_string(), webhooks.clone());
    routes.insert("accounts".to_string(), accounts);
    let mut endpoints = BTreeMap::new();
    endpoints.insert("api.webhook.deliver".to_string(), webhooks);
    let checks = [
        ("late_ok", 0),
        ("late_work", 3),
        ("orphaned_work", 0),
        ("orphaned_work_ms", 0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Summary {
        scenario: "webhook-slow-instance".to_string(),
        description:
            "One of four webhook instances turns 20x slower at 20 s; p99 must stay under 300 ms."
                .to_string(),
        seed,
        sim_seconds: 60.0,
        wall_seconds: 2.5,
        speedup: 24.0,
        skipped_seconds: 0.0,
        skip_spoiled_at: None,
        fingerprint: format!("{:016x}", seed.wrapping_mul(0xC6B7_A97B)),
        events: 288_984,
        bucket_seconds: 1.0,
        faults: vec![
            FaultWindow {
                label: "slow service.webhook[1] x20".to_string(),
                start_s: 20.0,
                end_s: 40.0,
            },
            FaultWindow {
                label: "crash service.auth[1]".to_string(),
                start_s: 45.0,
                end_s: 55.0,
            },
        ],
        loads: routes,
        endpoints,
        instances: instances(0),
        checks,
        business: BTreeMap::new(),
        invariants: Vec::new(),
        assertions: vec![
            AssertionResult {
                that: "p99(latency) < 300ms".to_string(),
                scope: "load webhooks".to_string(),
                window: "20s..40s".to_string(),
                observed: 412.0,
                verdict: "p99(latency) < 300ms: observed 412ms, fails".to_string(),
                passed: false,
            },
            AssertionResult {
                that: "orphaned_work == 0".to_string(),
                scope: "all loads".to_string(),
                window: "whole run".to_string(),
                observed: 0.0,
                verdict: "orphaned_work == 0: observed 0, holds".to_string(),
                passed: true,
            },
        ],
        passed: false,
        traces: Vec::new(),
    }
}

/// The webhook run as its services report it: deliveries counted (fewer while an instance is
/// slow), payload sizes as a histogram, and two invariants of which `no_lost_writes` fails.
fn webhook_run_with_business(seed: u64) -> Summary {
    let mut run = webhook_run(seed, 1.0);
    let delivered: Vec<i64> = (0..60)
        .map(|t| if (20..40).contains(&t) { 150 } else { 195 })
        .collect();
    run.business.insert(
        "webhooks.delivered".to_string(),
        BusinessSummary {
            kind: "counter".to_string(),
            total: delivered.iter().sum(),
            records: delivered.iter().sum::<i64>() as u64,
            timeline: delivered,
            values: None,
        },
    );
    let bytes: Vec<i64> = (0..60).map(|t| 195 * (900 + t % 7 * 40)).collect();
    run.business.insert(
        "webhook.payload_bytes".to_string(),
        BusinessSummary {
            kind: "histogram".to_string(),
            total: bytes.iter().sum(),
            records: 60 * 195,
            timeline: bytes,
            values: Some(ValueStats {
                p50: 1_020,
                p90: 1_140,
                p99: 1_180,
                max: 1_203,
                mean: 1_019.6,
            }),
        },
    );
    let figures = |pairs: &[(&str, i64)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect::<BTreeMap<_, _>>()
    };
    run.invariants = vec![
        Invariant {
            name: "no_lost_writes".to_string(),
            holds: false,
            detail: "3 of 10800 acknowledged deliveries are not in any webhook database"
                .to_string(),
            figures: figures(&[("webhook_acknowledged", 10_800), ("webhook_lost", 3)]),
        },
        Invariant {
            name: "no_unauthenticated_calls".to_string(),
            holds: true,
            detail: "no request reached a service before service.auth accepted its token"
                .to_string(),
            figures: figures(&[("unauthenticated_calls", 0)]),
        },
    ];
    run
}

/// Measurements of a run that recorded nothing: `write_report` needs them for `.hgrm` files.
fn no_measurements() -> Measurements {
    let run = Duration::from_secs(60);
    Recorder::new(RecorderConfig {
        run,
        bucket_width: Duration::from_secs(1),
        hop_allowance: Duration::from_millis(2),
        instances: Vec::new(),
        authenticator: None,
    })
    .finish(run)
}

/// The whole report of `run` (no `.hgrm` files: nothing was measured) written into `dir`, as
/// `windtunnel run` writes it; returns index.html's path.
fn whole_report(run: &Summary, dir: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    write_report(run, &no_measurements(), dir).map_err(|e| -> Box<dyn std::error::Error> { e })
}

/// A run that sent nothing: no loads, no instances.
fn empty_run() -> Summary {
    Summary {
        loads: BTreeMap::new(),
        endpoints: BTreeMap::new(),
        instances: BTreeMap::new(),
        faults: Vec::new(),
        assertions: Vec::new(),
        ..webhook_run(1, 1.0)
    }
}

/// Fails unless `path` is a PNG (by its signature) of at least `min_bytes`.
fn assert_png(path: &Path, min_bytes: u64) -> TestResult {
    let bytes = std::fs::read(path)?;
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
    assert!(
        bytes.len() as u64 >= min_bytes,
        "{} is only {} bytes",
        path.display(),
        bytes.len()
    );
    Ok(())
}

#[test]
fn plots_are_pngs_named_as_documented() -> TestResult {
    let dir = scratch("plots")?;
    let files = plots::write_plots(&webhook_run(1, 1.0), &dir)?;
    let names: Vec<String> = files
        .iter()
        .filter_map(|f| f.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "latency.png",
            "throughput.png",
            "distribution.png",
            "instances.png",
            "trace.png"
        ]
    );
    for f in &files {
        assert!(
            f.starts_with(&dir),
            "{} is outside the report folder",
            f.display()
        );
        assert_png(f, 20_000)?;
    }
    Ok(())
}

#[test]
fn a_single_load_run_plots_too() -> TestResult {
    let dir = scratch("plots-single")?;
    let mut run = webhook_run(2, 1.0);
    run.loads.remove("accounts");
    for f in plots::write_plots(&run, &dir)? {
        assert_png(&f, 20_000)?;
    }
    Ok(())
}

#[test]
fn an_empty_run_still_gives_valid_pngs() -> TestResult {
    let dir = scratch("plots-empty")?;
    let files = plots::write_plots(&empty_run(), &dir)?;
    assert_eq!(files.len(), 5);
    for f in &files {
        assert_png(f, 5_000)?;
    }
    Ok(())
}

#[test]
fn a_run_with_no_answers_plots_without_panicking() -> TestResult {
    let dir = scratch("plots-no-answers")?;
    let mut run = webhook_run(3, 1.0);
    for r in run.loads.values_mut() {
        r.ok = 0;
        r.spectrum.clear();
        r.latency_ms = LatencyMs::default();
        for b in &mut r.timeline {
            b.ok = 0;
            b.latency_ms = None;
        }
    }
    for f in plots::write_plots(&run, &dir)? {
        assert_png(&f, 5_000)?;
    }
    Ok(())
}

#[test]
fn many_instances_are_cut_to_the_twelve_that_matter() -> TestResult {
    let dir = scratch("plots-many")?;
    let mut run = webhook_run(4, 1.0);
    run.instances = instances(30);
    let files = plots::write_plots(&run, &dir)?;
    assert_png(&files[3], 20_000)?;
    Ok(())
}

/// One span of a hand-built trace; `times` are CS, SR, SS, CR in ms since the run started.
fn span(id: &str, parent: Option<&str>, name: &str, times: [Option<f64>; 4]) -> Span {
    Span {
        span_id: id.to_string(),
        parent_span_id: parent.map(str::to_string),
        name: name.to_string(),
        caller: "api.webhook[0]".to_string(),
        callee: format!("{name}[1]"),
        cs_ms: times[0],
        sr_ms: times[1],
        ss_ms: times[2],
        cr_ms: times[3],
        ws_ms: None,
        outcome: "ok".to_string(),
        handler: "ended".to_string(),
    }
}

/// The slow request of the webhook fixture: the edge call, an auth check, a webhook delivery
/// that hit its deadline (its handler cancelled), and a retry to another instance.
fn slow_trace() -> Trace {
    let t = |ms: f64| Some(30_000.0 + ms);
    let edge = span(
        "e0",
        None,
        "api.webhook",
        [t(0.0), t(1.0), t(290.0), t(291.0)],
    );
    let auth = span(
        "a1",
        Some("e0"),
        "service.auth.check",
        [t(2.0), t(3.0), t(4.0), t(5.0)],
    );
    let mut slow = span(
        "w1",
        Some("e0"),
        "service.webhook.deliver",
        [t(6.0), t(8.0), t(258.0), t(256.0)],
    );
    slow.outcome = "deadline_exceeded".to_string();
    slow.handler = "cancelled".to_string();
    let retry = span(
        "w2",
        Some("e0"),
        "service.webhook.deliver",
        [t(257.0), t(258.0), t(288.0), t(289.0)],
    );
    Trace {
        trace_id: "00c0ffee00000001".to_string(),
        kept_because: "slowest".to_string(),
        latency_ms: 291.0,
        outcome: "ok".to_string(),
        spans: vec![edge, auth, slow, retry],
    }
}

/// The path named `name` among those `write_plots` returned.
fn plot_named<'a>(files: &'a [PathBuf], name: &str) -> Option<&'a PathBuf> {
    files
        .iter()
        .find(|f| f.file_name().is_some_and(|n| n == name))
}

#[test]
fn the_slowest_trace_is_drawn_as_a_waterfall() -> TestResult {
    // Goal: a run with a kept trace gets a trace.png worth looking at. Method: a hand-built
    // four-span trace (one span cancelled), then check the PNG's signature and size.
    let dir = scratch("plots-trace")?;
    let mut run = webhook_run(5, 1.0);
    run.traces = vec![slow_trace()];
    let files = plots::write_plots(&run, &dir)?;
    let trace = plot_named(&files, "trace.png").ok_or("write_plots returned no trace.png")?;
    assert_eq!(trace, &dir.join("trace.png"));
    assert_png(trace, 15_000)?;
    Ok(())
}

#[test]
fn a_run_without_traces_still_gets_a_valid_trace_png() -> TestResult {
    // Goal: no kept trace is a note, not an error or a missing file.
    let dir = scratch("plots-trace-none")?;
    let files = plots::write_plots(&empty_run(), &dir)?;
    let trace = plot_named(&files, "trace.png").ok_or("write_plots returned no trace.png")?;
    assert_png(trace, 5_000)?;
    Ok(())
}

#[test]
fn a_trace_with_missing_times_and_many_spans_draws_without_panicking() -> TestResult {
    // Goal: spans that never arrived or never ended, and a trace too long to show whole, are
    // drawn from what exists. Method: a sampled trace (no slowest one) with 60 spans, some
    // without times or parents, and check the PNG.
    let dir = scratch("plots-trace-partial")?;
    let mut trace = slow_trace();
    trace.kept_because = "sampled".to_string();
    trace.spans[0].cs_ms = None;
    trace.spans[2].ss_ms = None;
    trace.spans[2].cr_ms = None;
    trace.spans[3].callee = String::new();
    trace.spans[3].sr_ms = None;
    for k in 0..56 {
        let t = 30_010.0 + f64::from(k) * 4.0;
        let times = match k % 3 {
            0 => [Some(t), Some(t + 1.0), Some(t + 2.0), Some(t + 3.0)],
            1 => [None, None, None, None],
            _ => [None, Some(t), None, None],
        };
        let parent = (k % 5 != 0).then_some("a1");
        trace
            .spans
            .push(span(&format!("x{k}"), parent, "db.query", times));
    }
    let mut run = webhook_run(6, 1.0);
    run.traces = vec![trace];
    let files = plots::write_plots(&run, &dir)?;
    let trace = plot_named(&files, "trace.png").ok_or("write_plots returned no trace.png")?;
    assert_png(trace, 15_000)?;
    Ok(())
}

#[test]
fn business_counters_far_apart_or_silent_plot_without_panicking() -> TestResult {
    // Goal: counters of very different sizes (pence next to payments) and a counter that never
    // moved still give a business.png. Method: add both to the fixture and check the PNG.
    let dir = scratch("plots-business-scales")?;
    let mut run = webhook_run_with_business(7);
    let counter = |timeline: Vec<i64>| BusinessSummary {
        kind: "counter".to_string(),
        total: timeline.iter().sum(),
        records: timeline.len() as u64,
        timeline,
        values: None,
    };
    run.business.insert(
        "money.moved".to_string(),
        counter((0..60).map(|t| 240_000 + t * 1_000).collect()),
    );
    run.business
        .insert("refunds.issued".to_string(), counter(vec![0; 60]));
    let files = plots::write_plots(&run, &dir)?;
    let business =
        plot_named(&files, "business.png").ok_or("write_plots returned no business.png")?;
    assert_png(business, 15_000)?;
    Ok(())
}

/// The `href` and `src` attribute values of an HTML text.
fn links(page: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href=\"", "src=\""] {
        let mut rest = page;
        while let Some(at) = rest.find(attr) {
            rest = &rest[at + attr.len()..];
            let end = rest.find('"').unwrap_or(rest.len());
            out.push(rest[..end].to_string());
        }
    }
    out
}

/// Fails unless every link is relative and names a file in `dir`.
fn assert_links_exist(dir: &Path, linked: &[String]) {
    for l in linked {
        assert!(
            !l.contains("://") && !l.starts_with('/'),
            "{l} is not a relative link"
        );
        assert!(
            dir.join(l).is_file(),
            "index.html links {l}, which does not exist"
        );
    }
}

#[test]
fn index_links_only_files_that_exist() -> TestResult {
    let dir = scratch("index")?;
    let run = webhook_run(5, 1.0);
    let mut files = plots::write_plots(&run, &dir)?;
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&run)?,
    )?;
    std::fs::write(dir.join("webhooks.hgrm"), hgrm::render(&histogram()))?;
    files.extend([
        dir.join("summary.json"),
        PathBuf::from("webhooks.hgrm"),
        dir.join("trace.json"),
        PathBuf::from("../outside.txt"),
    ]);
    let index = html::write_index(&run, &dir, &files)?;
    assert_eq!(index, dir.join("index.html"));
    let page = std::fs::read_to_string(&index)?;
    let linked = links(&page);
    assert_links_exist(&dir, &linked);
    for expected in [
        "latency.png",
        "instances.png",
        "summary.json",
        "webhooks.hgrm",
    ] {
        assert!(
            linked.iter().any(|l| l == expected),
            "index.html does not link {expected}"
        );
    }
    assert!(
        !page.contains("trace.json"),
        "a missing trace file is linked"
    );
    for fact in [
        "webhook-slow-instance",
        &run.fingerprint,
        "p99(latency) &lt; 300ms",
        "deadline_exceeded",
    ] {
        assert!(page.contains(fact), "index.html does not say {fact}");
    }
    Ok(())
}

/// The table row of `page` that mentions `needle`.
fn row_with<'a>(page: &'a str, needle: &str) -> Option<&'a str> {
    let at = page.find(needle)?;
    let start = page[..at].rfind("<tr>")?;
    let end = at + page[at..].find("</tr>")?;
    Some(&page[start..end])
}

#[test]
fn business_metrics_and_invariants_reach_the_report() -> TestResult {
    // Goal: a run whose services record business metrics and whose invariants were checked
    // gets business.png and both sections on index.html, with a failing invariant marked as
    // such. Method: write the whole report from the webhook fixture with one counter, one
    // histogram and two invariants, then read the files back.
    let dir = scratch("report-business")?;
    let run = webhook_run_with_business(10);
    let index = whole_report(&run, &dir)?;
    assert_png(&dir.join("business.png"), 15_000)?;
    let page = std::fs::read_to_string(index)?;
    let linked = links(&page);
    assert_links_exist(&dir, &linked);
    assert!(
        linked.iter().any(|l| l == "business.png"),
        "index.html does not show business.png"
    );
    for section in ["<h2>Invariants</h2>", "<h2>Business metrics</h2>"] {
        assert!(page.contains(section), "index.html has no {section}");
    }
    let invariants_at = page.find("<h2>Invariants</h2>").unwrap_or(usize::MAX);
    let assertions_at = page.find("<h2>Assertions</h2>").unwrap_or(0);
    assert!(
        invariants_at < assertions_at,
        "the invariants come after the assertions"
    );
    let lost = row_with(&page, "no_lost_writes").ok_or("no row for no_lost_writes")?;
    assert!(
        lost.contains("class=\"fail\"") && lost.contains("FAIL") && !lost.contains("PASS"),
        "the failing invariant is not marked as failing: {lost}"
    );
    assert!(lost.contains("webhook_lost=3"), "figures missing: {lost}");
    let auth = row_with(&page, "no_unauthenticated_calls").ok_or("no row for the holding one")?;
    assert!(
        auth.contains("PASS") && !auth.contains("FAIL"),
        "the holding invariant is not marked as holding: {auth}"
    );
    let delivered = row_with(&page, "webhooks.delivered").ok_or("no row for the counter")?;
    assert!(
        delivered.contains(">counter<") && delivered.contains(">10800<"),
        "the counter's total is missing: {delivered}"
    );
    assert!(
        delivered.contains(">180<"),
        "the counter's rate (10800 over 60 s) is missing: {delivered}"
    );
    let bytes = row_with(&page, "webhook.payload_bytes").ok_or("no row for the histogram")?;
    assert!(
        bytes.contains(">histogram<") && bytes.contains(">1140<") && bytes.contains(">1203<"),
        "the histogram's percentiles are missing: {bytes}"
    );
    Ok(())
}

#[test]
fn a_run_without_business_metrics_has_no_business_plot_or_sections() -> TestResult {
    // Goal: the business plot and sections are there only when there is something to show.
    // Method: write the whole report of the plain webhook fixture (no business metrics, no
    // invariants) and check that no business.png exists nor is linked, and no section is empty.
    // The folder held a report with business metrics first: its plot must not linger.
    let dir = scratch("report-no-business")?;
    whole_report(&webhook_run_with_business(11), &dir)?;
    assert!(dir.join("business.png").exists());
    let index = whole_report(&webhook_run(11, 1.0), &dir)?;
    assert!(
        !dir.join("business.png").exists(),
        "business.png was written for a run without business metrics"
    );
    let page = std::fs::read_to_string(index)?;
    assert_links_exist(&dir, &links(&page));
    assert!(
        !page.contains("business.png"),
        "index.html names business.png"
    );
    assert!(!page.contains("<h2>Business metrics</h2>"));
    assert!(!page.contains("<h2>Invariants</h2>"));
    assert_png(&dir.join("latency.png"), 20_000)?;
    Ok(())
}

#[test]
fn index_escapes_text_from_the_scenario() -> TestResult {
    let dir = scratch("index-escape")?;
    let mut run = webhook_run(6, 1.0);
    run.description = "<script>alert('x')</script> & more".to_string();
    run.scenario = "a<b>".to_string();
    let page = std::fs::read_to_string(html::write_index(&run, &dir, &[])?)?;
    assert!(
        !page.contains("<script"),
        "a script tag from the description survived"
    );
    assert!(!page.contains("a<b>"), "the scenario name is not escaped");
    assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more"));
    Ok(())
}

/// Parsed `.hgrm` rows' value at the first percentile row at or past `q`.
fn row_at(rows: &[(f64, f64, u64)], q: f64) -> Option<(f64, f64)> {
    rows.iter().find(|r| r.1 >= q - 1e-12).map(|r| (r.0, r.1))
}

#[test]
fn hgrm_reads_back_to_the_histograms_percentiles() -> TestResult {
    // 100,000 values: 1..=100_000 us, so percentiles are known in closed form.
    let mut h = histogram();
    for v in 1..=100_000u64 {
        h.record(v)?;
    }
    let text = hgrm::render(&h);
    let rows = hgrm::parse(&text)?;
    for q in [0.5, 0.9, 0.99, 0.999] {
        let (value_ms, at) = row_at(&rows, q).ok_or("no row at or past the quantile")?;
        let expected_ms = h.value_at_quantile(q) as f64 / 1000.0;
        if (at - q).abs() < 1e-9 {
            assert!(
                (value_ms - expected_ms).abs() < 0.0015,
                "p{q}: {value_ms} ms, expected {expected_ms} ms"
            );
        } else {
            // Between ticks, the next tick's value bounds the histogram's own.
            let next_ms = h.value_at_quantile(at) as f64 / 1000.0;
            assert!(value_ms >= expected_ms - 0.0015 && (value_ms - next_ms).abs() < 0.0015);
        }
    }
    let last = rows.last().ok_or("no rows")?;
    assert_eq!(
        (last.1, last.2),
        (1.0, 100_000),
        "the last row is the 100% one with every value"
    );
    assert!((last.0 - h.max() as f64 / 1000.0).abs() < 0.0015);
    Ok(())
}

#[test]
fn hgrm_is_laid_out_as_hdrhistogram_prints_it() -> TestResult {
    let mut h = histogram();
    for v in [1_000u64, 2_000, 3_000, 4_000, 100_000] {
        h.record(v)?;
    }
    let text = hgrm::render(&h);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "       Value     Percentile TotalCount 1/(1-Percentile)"
    );
    assert_eq!(lines[1], "");
    assert_eq!(
        lines[2],
        "       1.000 0.000000000000          1           1.00"
    );
    let footer = &lines[lines.len() - 3..];
    assert!(
        footer[0].starts_with("#[Mean    =       22.000, StdDeviation   ="),
        "{}",
        footer[0]
    );
    assert!(
        footer[1].starts_with("#[Max     =      100.031, Total count    =            5]"),
        "{}",
        footer[1]
    );
    assert!(
        footer[2].ends_with("SubBuckets     =         2048]"),
        "{}",
        footer[2]
    );
    let last_row = lines[lines.len() - 4];
    assert_eq!(
        last_row.split_whitespace().count(),
        3,
        "the 100% row has no 1/(1-p): {last_row}"
    );
    assert!(hgrm::parse("not a histogram").is_err());
    assert_eq!(hgrm::parse(&hgrm::render(&histogram()))?, Vec::new());
    Ok(())
}

#[test]
fn compare_writes_its_files_and_tells_both_runs_apart() -> TestResult {
    let root = scratch("compare")?;
    let (a_dir, b_dir, out) = (root.join("before"), root.join("after"), root.join("out"));
    for (dir, run) in [(&a_dir, webhook_run(7, 1.0)), (&b_dir, webhook_run(8, 2.0))] {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("summary.json"), serde_json::to_string(&run)?)?;
    }
    let report = compare::compare(&a_dir, &b_dir, &out)?;
    println!("{}", report.table);
    assert_png(&out.join("compare.png"), 20_000)?;
    assert_eq!(report.png, out.join("compare.png"));
    let page = std::fs::read_to_string(out.join("compare.html"))?;
    assert!(page.contains("compare.png") && page.contains("before") && page.contains("after"));
    for needle in [
        "before",
        "after",
        "load webhooks",
        "load accounts",
        "p99.9 ms",
        "error rate",
    ] {
        assert!(
            report.table.contains(needle),
            "the table does not mention {needle}:\n{}",
            report.table
        );
    }
    assert_eq!(report.loads.len(), 2);
    Ok(())
}

#[test]
fn compare_shows_business_totals_and_invariants_of_both_runs() -> TestResult {
    // Goal: when both runs recorded business metrics and invariants, compare says how the
    // totals moved and which invariant stopped or started holding. Method: B delivers fewer
    // webhooks and loses none; compare and read the table and the page.
    let root = scratch("compare-business")?;
    let (a_dir, b_dir, out) = (root.join("before"), root.join("after"), root.join("out"));
    let a = webhook_run_with_business(12);
    let mut b = webhook_run_with_business(13);
    if let Some(d) = b.business.get_mut("webhooks.delivered") {
        d.total = 9_720;
    }
    b.invariants[0].holds = true;
    b.business.remove("webhook.payload_bytes");
    for (dir, run) in [(&a_dir, &a), (&b_dir, &b)] {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("summary.json"), serde_json::to_string(run)?)?;
    }
    let report = compare::compare(&a_dir, &b_dir, &out)?;
    println!("{}", report.table);
    let table = &report.table;
    let delivered = table
        .lines()
        .find(|l| l.contains("webhooks.delivered"))
        .ok_or("no line for webhooks.delivered")?;
    for figure in ["10800", "9720", "-10.0%"] {
        assert!(delivered.contains(figure), "{figure} missing: {delivered}");
    }
    assert!(
        !table.contains("webhook.payload_bytes"),
        "a metric only A recorded is compared:\n{table}"
    );
    let lost = table
        .lines()
        .find(|l| l.contains("no_lost_writes"))
        .ok_or("no line for no_lost_writes")?;
    assert!(
        lost.contains("FAILS") && lost.contains("holds") && lost.contains("now holds"),
        "{lost}"
    );
    let page = std::fs::read_to_string(&report.html)?;
    for needle in [
        "business metrics (totals)",
        "webhooks.delivered",
        "no_lost_writes",
    ] {
        assert!(page.contains(needle), "compare.html does not say {needle}");
    }
    Ok(())
}

#[test]
fn compare_names_the_folder_without_a_summary() -> TestResult {
    let root = scratch("compare-missing")?;
    let (a_dir, b_dir) = (root.join("a"), root.join("b"));
    std::fs::create_dir_all(&a_dir)?;
    std::fs::create_dir_all(&b_dir)?;
    std::fs::write(
        a_dir.join("summary.json"),
        serde_json::to_string(&webhook_run(9, 1.0))?,
    )?;
    let missing = compare::compare(&a_dir, &b_dir, &root.join("out"))
        .err()
        .ok_or("compare did not fail")?;
    assert!(
        missing.to_string().contains(&b_dir.display().to_string()),
        "{missing}"
    );
    std::fs::write(b_dir.join("summary.json"), "{\"scenario\": 3}")?;
    let malformed = compare::compare(&a_dir, &b_dir, &root.join("out"))
        .err()
        .ok_or("compare did not fail")?;
    assert!(
        malformed.to_string().contains("summary.json"),
        "{malformed}"
    );
    Ok(())
}
