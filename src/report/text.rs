//! The run in a few lines of text: what the command line prints after a run, and what an
//! [`Outcome`](crate::tunnel::Outcome) displays in a test's output.
//!
//! The headline (speed, fingerprint), then per load its counts and latency percentiles, the
//! checks and business metrics, then one line per invariant (`HOLDS`/`BROKEN`) and per
//! assertion (`PASS`/`FAIL`). The verdict lines come last so they are what a reader sees.

use crate::framework::client::MECHANISM_COUNTERS;
use std::fmt::Write;

use crate::report::summary::Summary;

/// The full text: figures, then verdicts; every line ends with a newline.
pub fn render(s: &Summary) -> String {
    let mut out = figures(s);
    out.push_str(&verdicts(s));
    out
}

/// The headline and the figures: per load, the checks, business metrics.
pub fn figures(s: &Summary) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail; the results are dropped for that reason.
    let skipped = if s.skipped_seconds >= 1.0 {
        format!(" ({:.0} s of it idle, skipped)", s.skipped_seconds)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "{} (seed {}): {:.0} s simulated{skipped} in {:.2} s wall, {:.1}x real time, fingerprint {}",
        s.scenario, s.seed, s.sim_seconds, s.wall_seconds, s.speedup, s.fingerprint
    );
    if let Some(at) = s.skip_spoiled_at {
        let _ = writeln!(
            out,
            "  idle time not skipped: a host woke inside the skip that began at {at:.3} s, from \
             a timer windtunnel cannot see (tokio's own, in a service), so the run stepped \
             every tick; make services' timers with windtunnel::framework::timer \
             (docs/own-services.md)"
        );
    }
    for (name, r) in &s.loads {
        let errors: Vec<String> = r.errors.iter().map(|(c, n)| format!("{c} {n}")).collect();
        let detail = if errors.is_empty() {
            String::new()
        } else {
            format!(" ({})", errors.join(", "))
        };
        let total: u64 = r.errors.values().sum();
        let _ = writeln!(
            out,
            "  {name}: sent {}, ok {}, dropped {}, errors {total}{detail}",
            r.sent, r.ok, r.dropped
        );
        let l = &r.latency_ms;
        let _ = writeln!(
            out,
            "    latency ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        );
    }
    let checks: Vec<String> = s.checks.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(out, "  checks: {}", checks.join(", "));
    for (label, mechanisms) in [("business", false), ("mechanisms", true)] {
        let metrics: Vec<String> = s
            .business
            .iter()
            .filter(|(k, _)| MECHANISM_COUNTERS.contains(&k.as_str()) == mechanisms)
            .map(|(k, b)| match &b.values {
                Some(v) => format!("{k} p50 {} p99 {}", v.p50, v.p99),
                None => format!("{k} {}", b.total),
            })
            .collect();
        if !metrics.is_empty() {
            let _ = writeln!(out, "  {label}: {}", metrics.join(", "));
        }
    }
    out
}

/// One line per invariant, then one per assertion.
pub fn verdicts(s: &Summary) -> String {
    let mut out = String::new();
    for i in &s.invariants {
        let mark = if i.holds { "HOLDS" } else { "BROKEN" };
        let _ = writeln!(out, "  {mark} {}: {}", i.name, i.detail);
    }
    for a in &s.assertions {
        let mark = if a.passed { "PASS" } else { "FAIL" };
        let _ = writeln!(out, "  {mark} {} [{}, {}]", a.verdict, a.scope, a.window);
    }
    out
}
