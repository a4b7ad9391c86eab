//! `latency.png`: p50, p90, p99 and max of each time bucket, per load, fault windows shaded.
//!
//! With one load, colour tells the percentile; with several, colour tells the load and the line
//! style tells the percentile. The y axis turns logarithmic when the slowest request is over 20
//! times the median, so that a fault's tail and the healthy body both stay readable.

use std::path::Path;

use plotters::style::RGBColor;

use super::canvas::{self, Axis, Chart, DrawResult, Entry, Stroke};
use crate::report::summary::{LatencyMs, Summary, TrafficSummary};

/// The percentiles drawn, in legend order.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pct {
    P50,
    P90,
    P99,
    Max,
}

const PCTS: [Pct; 4] = [Pct::P50, Pct::P90, Pct::P99, Pct::Max];

impl Pct {
    fn of(self, l: &LatencyMs) -> f64 {
        match self {
            Pct::P50 => l.p50,
            Pct::P90 => l.p90,
            Pct::P99 => l.p99,
            Pct::Max => l.max,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Pct::P50 => "p50",
            Pct::P90 => "p90",
            Pct::P99 => "p99",
            Pct::Max => "max",
        }
    }

    /// Its colour when only one load is drawn.
    fn color(self) -> RGBColor {
        match self {
            Pct::P50 => canvas::color(0),
            Pct::P90 => canvas::color(2),
            Pct::P99 => canvas::color(1),
            Pct::Max => canvas::color(3),
        }
    }

    /// Its line style when several loads share the plot.
    fn stroke(self) -> Stroke {
        match self {
            Pct::P50 => Stroke::Solid(1),
            Pct::P90 => Stroke::Dashed(2),
            Pct::P99 => Stroke::Solid(3),
            Pct::Max => Stroke::Dotted,
        }
    }
}

/// One percentile of one load: data values, `None` for buckets with no answer.
struct Curve {
    route: usize,
    pct: Pct,
    points: Vec<Option<(f64, f64)>>,
}

fn curves(summary: &Summary) -> Vec<Curve> {
    let half = summary.bucket_seconds / 2.0;
    let mut out = Vec::new();
    for (route, r) in summary.loads.values().enumerate() {
        for pct in PCTS {
            let points = r
                .timeline
                .iter()
                .map(|b| b.latency_ms.as_ref().map(|l| (b.t_s + half, pct.of(l))))
                .collect();
            out.push(Curve { route, pct, points });
        }
    }
    out
}

fn y_axis(summary: &Summary, curves: &[Curve]) -> Axis {
    let values = curves
        .iter()
        .flat_map(|c| c.points.iter().flatten().map(|p| p.1));
    let (min, max) = values.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (if v > 0.0 { lo.min(v) } else { lo }, hi.max(v))
    });
    let typical = summary
        .loads
        .values()
        .map(|r| r.latency_ms.p50)
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    Axis::latency(min, typical, max)
}

fn style(single: bool, c: &Curve) -> (RGBColor, Stroke) {
    if single {
        let width = if c.pct == Pct::P99 { 3 } else { 2 };
        (c.pct.color(), Stroke::Solid(width))
    } else {
        (canvas::color(c.route), c.pct.stroke())
    }
}

fn legend(summary: &Summary) -> Vec<Entry> {
    let names: Vec<&String> = summary.loads.keys().collect();
    let mut entries = Vec::new();
    if let [only] = names.as_slice() {
        entries.push(Entry::Heading(format!("load {only}")));
        for pct in PCTS {
            let (color, stroke) = style(
                true,
                &Curve {
                    route: 0,
                    pct,
                    points: Vec::new(),
                },
            );
            entries.push(Entry::Line(color, stroke, pct.name().to_string()));
        }
    } else {
        entries.push(Entry::Heading("loads".to_string()));
        for (i, name) in names.iter().enumerate() {
            entries.push(Entry::Line(
                canvas::color(i),
                Stroke::Solid(3),
                name.to_string(),
            ));
        }
        entries.push(Entry::Heading("percentiles".to_string()));
        for pct in PCTS {
            entries.push(Entry::Line(
                RGBColor(60, 60, 60),
                pct.stroke(),
                pct.name().to_string(),
            ));
        }
    }
    entries.extend(canvas::fault_entry(&summary.faults));
    entries
}

fn has_answers(r: &TrafficSummary) -> bool {
    r.timeline.iter().any(|b| b.latency_ms.is_some())
}

fn draw_curves(
    chart: &mut Chart,
    curves: &[Curve],
    single: bool,
    x: &Axis,
    y: &Axis,
) -> DrawResult {
    for c in curves {
        let (color, stroke) = style(single, c);
        let plotted = c.points.iter().map(|p| p.map(|(t, v)| (x.at(t), y.at(v))));
        for run in canvas::runs(plotted) {
            canvas::line(chart, &run, color, stroke)?;
        }
    }
    Ok(())
}

/// Draws `latency.png` at `path`.
pub(super) fn draw(summary: &Summary, path: &Path) -> DrawResult {
    let title = format!(
        "{}: latency percentiles per {} s bucket",
        summary.scenario,
        canvas::number(summary.bucket_seconds)
    );
    let page = canvas::page(path, &title)?;
    if !summary.loads.values().any(has_answers) {
        page.note("no request was answered in this run: no latency to plot")?;
        return page.finish();
    }
    let curves = curves(summary);
    let x = Axis::time(end_seconds(summary));
    let plot_px = page.plot.dim_in_pixel().1.saturating_sub(90);
    let y = y_axis(summary, &curves).with_label_band(summary.faults.len(), plot_px);
    let y_desc = if y.is_log() {
        "latency (ms, log scale)"
    } else {
        "latency (ms)"
    };
    let mut chart = canvas::chart(&page.plot, &x, &y, "time since start (s)", y_desc)?;
    canvas::shade_faults(&mut chart, &summary.faults, &x, &y)?;
    draw_curves(&mut chart, &curves, summary.loads.len() == 1, &x, &y)?;
    canvas::label_faults(&mut chart, &summary.faults, &x, &y)?;
    canvas::legend(&page.legend, &legend(summary))?;
    page.finish()
}

/// The end of the time axis: the run, or the last bucket if it reaches further.
pub(super) fn end_seconds(summary: &Summary) -> f64 {
    let last_bucket = summary
        .loads
        .values()
        .filter_map(|r| r.timeline.last())
        .map(|b| b.t_s + summary.bucket_seconds)
        .fold(0.0f64, f64::max);
    summary.sim_seconds.max(last_bucket)
}
