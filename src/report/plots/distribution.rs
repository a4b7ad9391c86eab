//! `distribution.png` and `compare.png`: the latency percentile spectrum, wrk2's view.
//!
//! The x axis is `1/(1-p)` on a log scale, labelled as percentiles (50%, 90%, 99%, 99.9%...), so
//! every "nine" gets the same width and the tail is as visible as the median. A run only knows
//! about `n` requests, so each curve stops at `1/(1-p) = n` (beyond that every percentile is the
//! maximum) and ends with a dot at the slowest request.

use std::collections::BTreeSet;
use std::path::Path;

use plotters::prelude::*;

use super::canvas::{self, Axis, Chart, DrawResult, Entry, Stroke};
use crate::report::summary::{Summary, TrafficSummary};

/// One run to draw, with the name it goes by in the legend.
pub(super) struct Run<'a> {
    /// Its name, e.g. the report folder.
    pub label: &'a str,
    /// Its summary.
    pub summary: &'a Summary,
}

/// One curve: data points `(1/(1-p), ms)`, its colour and stroke.
struct Curve {
    points: Vec<(f64, f64)>,
    color: RGBColor,
    stroke: Stroke,
}

/// Requests whose latency was measured: the answered ones.
fn answered(r: &TrafficSummary) -> u64 {
    r.ok + r.errors.values().sum::<u64>()
}

/// The spectrum as `(1/(1-p), ms)`, cut where the run runs out of requests, ending at the max.
fn spectrum_points(r: &TrafficSummary) -> Vec<(f64, f64)> {
    let Some(last) = r.spectrum.last() else {
        return Vec::new();
    };
    let limit = (answered(r) as f64).max(10.0);
    let mut points: Vec<(f64, f64)> = r
        .spectrum
        .iter()
        .filter(|s| s.percentile < 100.0)
        .map(|s| (1.0 / (1.0 - s.percentile / 100.0), s.value_ms))
        .filter(|(x, _)| *x < limit)
        .collect();
    points.push((limit, last.value_ms.max(r.latency_ms.max)));
    points
}

fn axes(curves: &[Curve]) -> (Axis, Axis) {
    let all = || curves.iter().flat_map(|c| c.points.iter().copied());
    let max_x = all().map(|p| p.0).fold(1.0f64, f64::max);
    let max_y = all().map(|p| p.1).fold(0.0f64, f64::max);
    let min_y = all()
        .map(|p| p.1)
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    let typical = curves
        .iter()
        .filter_map(|c| c.points.iter().find(|p| p.0 >= 2.0).map(|p| p.1))
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    (
        Axis::percentile(max_x),
        Axis::latency(min_y, typical, max_y),
    )
}

fn draw_curves(chart: &mut Chart, curves: &[Curve], x: &Axis, y: &Axis) -> DrawResult {
    for c in curves {
        let points: Vec<(f64, f64)> = c
            .points
            .iter()
            .map(|(px, py)| (x.at(*px), y.at(*py)))
            .collect();
        canvas::line(chart, &points, c.color, c.stroke)?;
        if let Some(end) = points.last() {
            chart.draw_series(std::iter::once(Circle::new(*end, 5, c.color.filled())))?;
        }
    }
    Ok(())
}

/// Draws the curves on a page titled `title`, or `empty` when there is nothing to draw.
fn draw_page(
    path: &Path,
    title: &str,
    curves: &[Curve],
    mut legend: Vec<Entry>,
    empty: &str,
) -> DrawResult {
    let page = canvas::page(path, title)?;
    if curves.is_empty() {
        page.note(empty)?;
        return page.finish();
    }
    let (x, y) = axes(curves);
    let y_desc = if y.is_log() {
        "latency (ms, log scale)"
    } else {
        "latency (ms)"
    };
    let x_desc = "percentile (log scale of 1/(1-p): each nine gets equal width)";
    let mut chart = canvas::chart(&page.plot, &x, &y, x_desc, y_desc)?;
    draw_curves(&mut chart, curves, &x, &y)?;
    legend.push(Entry::Heading("dot: slowest request".to_string()));
    canvas::legend(&page.legend, &legend)?;
    page.finish()
}

/// Draws `distribution.png` at `path`: one curve per load.
pub(super) fn draw(summary: &Summary, path: &Path) -> DrawResult {
    let title = format!("{}: latency percentile spectrum per load", summary.scenario);
    let mut curves = Vec::new();
    let mut legend = vec![Entry::Heading("loads (requests)".to_string())];
    for (i, (name, r)) in summary.loads.iter().enumerate() {
        let points = spectrum_points(r);
        if points.is_empty() {
            continue;
        }
        let (color, stroke) = (canvas::color(i), Stroke::Solid(3));
        legend.push(Entry::Line(
            color,
            stroke,
            format!("{name} ({})", answered(r)),
        ));
        curves.push(Curve {
            points,
            color,
            stroke,
        });
    }
    draw_page(
        path,
        &title,
        &curves,
        legend,
        "no request was answered in this run: no spectrum to plot",
    )
}

/// Draws the spectra of several runs over each other at `path`: one colour per load, one
/// stroke per run (solid, then dashed).
pub(super) fn draw_overlay(runs: &[Run], path: &Path) -> DrawResult {
    let labels: Vec<&str> = runs.iter().map(|r| r.label).collect();
    let title = format!(
        "compare {}: latency percentile spectra",
        labels.join(" vs ")
    );
    let names: BTreeSet<&String> = runs.iter().flat_map(|r| r.summary.loads.keys()).collect();
    let mut curves = Vec::new();
    let mut legend = Vec::new();
    for (k, run) in runs.iter().enumerate() {
        let stroke = if k == 0 {
            Stroke::Solid(3)
        } else {
            Stroke::Dashed(3)
        };
        let kind = if k == 0 { "solid" } else { "dashed" };
        legend.push(Entry::Heading(format!("{} ({kind})", run.label)));
        for (i, name) in names.iter().enumerate() {
            let Some(r) = run.summary.loads.get(*name) else {
                continue;
            };
            let points = spectrum_points(r);
            if points.is_empty() {
                continue;
            }
            let color = canvas::color(i);
            legend.push(Entry::Line(color, stroke, name.to_string()));
            curves.push(Curve {
                points,
                color,
                stroke,
            });
        }
    }
    draw_page(
        path,
        &title,
        &curves,
        legend,
        "no request was answered in either run: no spectrum to plot",
    )
}
