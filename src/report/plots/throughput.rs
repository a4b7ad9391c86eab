//! `throughput.png`: requests per second of all loads together, by outcome, per time bucket.
//!
//! Offered load (dashed) against what came back ok, each error code, and what was dropped
//! (never sent on time): Gatling's responses-per-second page. Counts are divided by the bucket
//! width, so the axis reads in requests per second whatever the bucket.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::style::RGBColor;

use super::canvas::{self, Axis, DrawResult, Entry, Stroke};
use crate::report::summary::Summary;

/// Colours for error codes, in code order (reds and browns, apart from ok's green).
const ERROR_COLORS: [usize; 6] = [3, 1, 5, 6, 8, 10];

/// One outcome's line.
struct Outcome {
    name: String,
    color: RGBColor,
    stroke: Stroke,
    /// Requests per second, per bucket index.
    rates: BTreeMap<u64, f64>,
}

/// Counts of all loads per bucket index, by outcome: `sent`, `ok`, `dropped`, `error <code>`.
fn totals(summary: &Summary) -> BTreeMap<String, BTreeMap<u64, u64>> {
    let width = summary.bucket_seconds.max(f64::MIN_POSITIVE);
    let mut out: BTreeMap<String, BTreeMap<u64, u64>> = BTreeMap::new();
    let mut add = |key: &str, bucket: u64, n: u64| {
        *out.entry(key.to_string())
            .or_default()
            .entry(bucket)
            .or_default() += n;
    };
    for r in summary.loads.values() {
        for b in &r.timeline {
            let i = (b.t_s / width).round().max(0.0) as u64;
            add("sent", i, b.sent);
            add("ok", i, b.ok);
            add("dropped", i, b.dropped);
            for (code, n) in &b.errors {
                add(&format!("error {code}"), i, *n);
            }
        }
    }
    out
}

fn outcomes(summary: &Summary) -> Vec<Outcome> {
    let width = summary.bucket_seconds.max(f64::MIN_POSITIVE);
    let mut totals = totals(summary);
    // Every bucket of every outcome, zeros included, so a line never bridges a quiet stretch.
    let buckets: Vec<u64> = totals
        .get("sent")
        .map(|m| m.keys().copied().collect())
        .unwrap_or_default();
    let errors: Vec<String> = totals
        .keys()
        .filter(|k| k.starts_with("error "))
        .cloned()
        .collect();
    let mut take = |key: &str| -> BTreeMap<u64, f64> {
        let counts = totals.remove(key).unwrap_or_default();
        buckets
            .iter()
            .map(|i| (*i, counts.get(i).copied().unwrap_or(0) as f64 / width))
            .collect()
    };
    let mut out = vec![
        Outcome {
            name: "offered (sent)".to_string(),
            color: RGBColor(70, 70, 70),
            stroke: Stroke::Dashed(2),
            rates: take("sent"),
        },
        Outcome {
            name: "ok".to_string(),
            color: canvas::color(2),
            stroke: Stroke::Solid(3),
            rates: take("ok"),
        },
    ];
    let dropped = take("dropped");
    for (k, key) in errors.iter().enumerate() {
        let color = canvas::color(ERROR_COLORS[k % ERROR_COLORS.len()]);
        out.push(Outcome {
            name: key.clone(),
            color,
            stroke: Stroke::Solid(2),
            rates: take(key),
        });
    }
    if dropped.values().any(|v| *v > 0.0) {
        out.push(Outcome {
            name: "dropped (never sent)".to_string(),
            color: canvas::color(4),
            stroke: Stroke::Solid(2),
            rates: dropped,
        });
    }
    out
}

/// Draws `throughput.png` at `path`.
pub(super) fn draw(summary: &Summary, path: &Path) -> DrawResult {
    let title = format!(
        "{}: requests per second, all loads, by outcome",
        summary.scenario
    );
    let page = canvas::page(path, &title)?;
    let outcomes = outcomes(summary);
    let peak = outcomes
        .iter()
        .flat_map(|o| o.rates.values())
        .fold(0.0f64, |a, b| a.max(*b));
    if peak <= 0.0 {
        page.note("no request was sent in this run: no throughput to plot")?;
        return page.finish();
    }
    let x = Axis::time(super::latency::end_seconds(summary));
    let plot_px = page.plot.dim_in_pixel().1.saturating_sub(90);
    let y = Axis::from_zero(peak).with_label_band(summary.faults.len(), plot_px);
    let mut chart = canvas::chart(
        &page.plot,
        &x,
        &y,
        "time since start (s)",
        "requests per second",
    )?;
    canvas::shade_faults(&mut chart, &summary.faults, &x, &y)?;
    let half = summary.bucket_seconds / 2.0;
    // Offered load last: its dashes stay visible where everything offered came back ok.
    for o in outcomes.iter().skip(1).chain(outcomes.first()) {
        let points: Vec<(f64, f64)> = o
            .rates
            .iter()
            .map(|(i, v)| (x.at(*i as f64 * summary.bucket_seconds + half), y.at(*v)))
            .collect();
        canvas::line(&mut chart, &points, o.color, o.stroke)?;
    }
    canvas::label_faults(&mut chart, &summary.faults, &x, &y)?;
    let mut entries = vec![Entry::Heading("all loads".to_string())];
    entries.extend(
        outcomes
            .iter()
            .map(|o| Entry::Line(o.color, o.stroke, o.name.clone())),
    );
    entries.extend(canvas::fault_entry(&summary.faults));
    canvas::legend(&page.legend, &entries)?;
    page.finish()
}
