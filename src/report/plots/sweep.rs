//! `sweep.png`: how p99 latency and the error rate spread across a sweep's seeds, per load.
//!
//! Each load's values, one per seed, are sorted and drawn against the share of seeds at or below
//! them (an empirical distribution: the line's right end is the worst seed, its middle the
//! median seed). p99 on top, the error rate below; drawn from sweep.json alone (see
//! `src/report/sweep.rs`), so a merge of shards draws what one sweep would have.

use std::collections::BTreeMap;
use std::path::Path;

use super::canvas::{self, Area, Axis, DrawResult, Entry, Stroke};
use crate::report::sweep::{Figure, SweepReport};

/// Each load's values sorted, as (share of seeds at or below, %; value) points.
fn sorted(values: &BTreeMap<String, Vec<f64>>) -> BTreeMap<&String, Vec<(f64, f64)>> {
    values
        .iter()
        .map(|(load, v)| {
            let mut v = v.clone();
            v.sort_by(f64::total_cmp);
            let n = v.len() as f64;
            let points = v
                .iter()
                .enumerate()
                .map(|(i, y)| (100.0 * (i as f64 + 1.0) / n, *y))
                .collect();
            (load, points)
        })
        .collect()
}

/// One panel: every load's sorted values of `figure`, `scale` times each value.
fn panel(
    area: &Area,
    report: &SweepReport,
    figure: Figure,
    scale: f64,
    descs: (&str, &str),
) -> DrawResult {
    let values = figure.per_load(report);
    let lines = sorted(&values);
    let peak = lines
        .values()
        .flatten()
        .map(|(_, y)| y * scale)
        .fold(0.0f64, f64::max);
    let x = Axis::fixed(0.0, 100.0, 20.0);
    let y = Axis::from_zero(peak);
    let mut chart = canvas::chart(area, &x, &y, descs.0, descs.1)?;
    for (i, points) in lines.values().enumerate() {
        let points: Vec<(f64, f64)> = points
            .iter()
            .map(|(p, v)| (x.at(*p), y.at(v * scale)))
            .collect();
        canvas::line(&mut chart, &points, canvas::color(i), Stroke::Solid(2))?;
    }
    Ok(())
}

/// Draws `sweep.png` at `path`.
pub(super) fn draw(report: &SweepReport, path: &Path) -> DrawResult {
    let title = format!(
        "{}: p99 and error rate across {} seeds, each seed one point, sorted",
        report.scenario, report.seeds
    );
    let page = canvas::page(path, &title)?;
    let loads: Vec<String> = Figure::P99.per_load(report).into_keys().collect();
    if loads.is_empty() {
        page.note("no seed measured a load: nothing to plot")?;
        return page.finish();
    }
    let height = page.plot.dim_in_pixel().1;
    let (top, bottom) = page.plot.split_vertically(height / 2);
    panel(&top, report, Figure::P99, 1.0, ("", "p99 latency (ms)"))?;
    let descs = ("seeds at or below the value (%)", "error rate (%)");
    panel(&bottom, report, Figure::ErrorRate, 100.0, descs)?;
    let mut entries = vec![Entry::Heading(format!("{} seeds", report.seeds))];
    entries.extend(
        loads
            .iter()
            .enumerate()
            .map(|(i, l)| Entry::Line(canvas::color(i), Stroke::Solid(2), l.clone())),
    );
    canvas::legend(&page.legend, &entries)?;
    page.finish()
}
