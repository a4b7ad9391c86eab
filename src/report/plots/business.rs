//! `business.png`: what the system did for its users, per second, fault windows shaded; and
//! `mechanisms.png`: what the degradation mechanisms did (circuits opened and closed, ejections,
//! retries, hedges, requests refused by a concurrency limit), drawn the same way.
//!
//! One line per business *counter* (`authorisations.approved`, `money.moved`, ...): its sum per
//! time bucket divided by the bucket width, so the axis reads per second whatever the bucket.
//! Histograms are not drawn here (their percentiles are in index.html's table). Counters of very
//! different sizes share the plot (pence moved next to payments made), so the y axis turns
//! logarithmic when the largest counter's peak is over 20 times the smallest one's; a bucket with
//! nothing recorded then sits on the axis floor. Each file is written only when there is a
//! counter to draw (see [`has_counters`]).

use std::path::Path;

use plotters::style::RGBColor;

use super::canvas::{self, Axis, DrawResult, Entry, Stroke};
use crate::framework::client::MECHANISM_COUNTERS;
use crate::report::summary::{BusinessSummary, Summary};

/// Which counters a plot draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Counters {
    /// The services' own counters: `business.png`.
    Business,
    /// The framework's mechanisms' counters ([`MECHANISM_COUNTERS`]): `mechanisms.png`.
    Mechanisms,
}

impl Counters {
    fn includes(self, name: &str) -> bool {
        MECHANISM_COUNTERS.contains(&name) == (self == Counters::Mechanisms)
    }
}

/// The `kind` of a business metric drawn here.
const COUNTER: &str = "counter";
/// Peak ratio between counters above which the y axis is logarithmic.
const LOG_RATIO: f64 = 20.0;

/// One counter's line.
struct Counter<'a> {
    name: &'a str,
    /// Per second, per bucket index.
    rates: Vec<f64>,
}

impl Counter<'_> {
    fn peak(&self) -> f64 {
        self.rates.iter().copied().fold(0.0, f64::max)
    }
}

fn is_counter(b: &BusinessSummary) -> bool {
    b.kind == COUNTER
}

/// Whether `summary` has a counter of `which`, i.e. whether its plot is drawn.
pub(super) fn has_counters(summary: &Summary, which: Counters) -> bool {
    summary
        .business
        .iter()
        .any(|(name, b)| is_counter(b) && which.includes(name))
}

fn counters(summary: &Summary, which: Counters) -> Vec<Counter<'_>> {
    let width = summary.bucket_seconds.max(f64::MIN_POSITIVE);
    summary
        .business
        .iter()
        .filter(|(name, b)| is_counter(b) && which.includes(name))
        .map(|(name, b)| Counter {
            name,
            rates: b.timeline.iter().map(|v| *v as f64 / width).collect(),
        })
        .collect()
}

/// Colours before `canvas::color` cycles.
const PALETTE_LEN: usize = 12;

/// Colour and stroke of the `i`th counter: the palette solid, then again dashed.
fn style(i: usize) -> (RGBColor, Stroke) {
    let stroke = if (i / PALETTE_LEN).is_multiple_of(2) {
        Stroke::Solid(2)
    } else {
        Stroke::Dashed(2)
    };
    (canvas::color(i), stroke)
}

/// Linear from zero, or logarithmic when the counters' peaks are far apart.
fn y_axis(counters: &[Counter]) -> Axis {
    let peaks: Vec<f64> = counters
        .iter()
        .map(Counter::peak)
        .filter(|p| *p > 0.0)
        .collect();
    let highest = peaks.iter().copied().fold(0.0, f64::max);
    let lowest_peak = peaks.iter().copied().fold(f64::INFINITY, f64::min);
    if highest / lowest_peak <= LOG_RATIO {
        return Axis::from_zero(highest);
    }
    let lowest = counters
        .iter()
        .flat_map(|c| c.rates.iter().copied())
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    Axis::log(lowest, highest)
}

/// The end of the time axis: the run, or the last bucket of any load or counter.
fn end_seconds(summary: &Summary, counters: &[Counter]) -> f64 {
    let buckets = counters.iter().map(|c| c.rates.len()).max().unwrap_or(0);
    let last_bucket = buckets as f64 * summary.bucket_seconds;
    super::latency::end_seconds(summary).max(last_bucket)
}

/// Draws the plot of `which` at `path`; call only when [`has_counters`] holds.
pub(super) fn draw(summary: &Summary, which: Counters, path: &Path) -> DrawResult {
    let what = match which {
        Counters::Business => "Business metrics",
        Counters::Mechanisms => "Degradation mechanisms",
    };
    let title = format!("{}: {what}, counters per second", summary.scenario);
    let page = canvas::page(path, &title)?;
    let counters = counters(summary, which);
    if !counters.iter().any(|c| c.peak() > 0.0) {
        page.note("no counter recorded anything in this run")?;
        return page.finish();
    }
    let x = Axis::time(end_seconds(summary, &counters));
    let plot_px = page.plot.dim_in_pixel().1.saturating_sub(90);
    let y = y_axis(&counters).with_label_band(summary.faults.len(), plot_px);
    let y_desc = if y.is_log() {
        "per second (log scale, 0 on the floor)"
    } else {
        "per second"
    };
    let mut chart = canvas::chart(&page.plot, &x, &y, "time since start (s)", y_desc)?;
    canvas::shade_faults(&mut chart, &summary.faults, &x, &y)?;
    let half = summary.bucket_seconds / 2.0;
    for (i, c) in counters.iter().enumerate() {
        let points: Vec<(f64, f64)> = c
            .rates
            .iter()
            .enumerate()
            .map(|(k, v)| (x.at(k as f64 * summary.bucket_seconds + half), y.at(*v)))
            .collect();
        let (color, stroke) = style(i);
        canvas::line(&mut chart, &points, color, stroke)?;
    }
    canvas::label_faults(&mut chart, &summary.faults, &x, &y)?;
    let mut entries = vec![Entry::Heading("counters".to_string())];
    entries.extend(counters.iter().enumerate().map(|(i, c)| {
        let (color, stroke) = style(i);
        Entry::Line(color, stroke, c.name.to_string())
    }));
    entries.extend(canvas::fault_entry(&summary.faults));
    canvas::legend(&page.legend, &entries)?;
    page.finish()
}
