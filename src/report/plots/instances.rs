//! `instances.png`: each instance's utilisation (top) and queue depth (bottom) over time.
//!
//! A slow instance shows as the one line pinned near 100% with a queue; a crashed one as a red
//! band (buckets where it was down). Past twelve instances the lines stop being told apart, so
//! the plot keeps the twelve that matter most: those that went down, then the highest peak queue,
//! then the highest peak utilisation; the title says so. A triangle on a line marks a second in
//! which that instance's out-of-band health checks failed.

use std::path::Path;

use plotters::prelude::*;

use super::canvas::{self, Axis, Chart, DrawResult, Entry, Label, Stroke};
use crate::report::summary::{InstanceSummary, Summary};

/// Most instances drawn.
const MAX_SHOWN: usize = 12;
/// Fill of a bucket where an instance was down.
const DOWN_FILL: RGBAColor = RGBAColor(214, 39, 40, 0.13);
/// Label colour of a down window.
const DOWN_INK: RGBColor = RGBColor(170, 20, 20);

/// An instance to draw, with its colour.
struct Shown<'a> {
    name: &'a str,
    inst: &'a InstanceSummary,
    color: RGBColor,
}

fn ever_down(i: &InstanceSummary) -> bool {
    i.timeline.iter().any(|p| !p.up)
}

fn peak_queue(i: &InstanceSummary) -> u32 {
    i.timeline.iter().map(|p| p.max_queue).max().unwrap_or(0)
}

fn peak_utilisation(i: &InstanceSummary) -> f64 {
    i.timeline.iter().map(|p| p.utilisation).fold(0.0, f64::max)
}

/// The instances to draw, in name order: all of them, or the twelve that matter most.
fn pick(summary: &Summary) -> Vec<Shown<'_>> {
    let mut ranked: Vec<(&String, &InstanceSummary)> = summary
        .instances
        .iter()
        .filter(|(_, i)| !i.timeline.is_empty())
        .collect();
    ranked.sort_by(|a, b| {
        (ever_down(b.1), peak_queue(b.1))
            .cmp(&(ever_down(a.1), peak_queue(a.1)))
            .then(peak_utilisation(b.1).total_cmp(&peak_utilisation(a.1)))
            .then(a.0.cmp(b.0))
    });
    ranked.truncate(MAX_SHOWN);
    ranked.sort_by(|a, b| a.0.cmp(b.0));
    ranked
        .into_iter()
        .enumerate()
        .map(|(k, (name, inst))| Shown {
            name,
            inst,
            color: canvas::color(k),
        })
        .collect()
}

/// The `(start, end)` seconds of each stretch of buckets where the instance was down.
fn down_windows(inst: &InstanceSummary, bucket: f64) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    let mut previous_down = false;
    for p in &inst.timeline {
        match out.last_mut() {
            Some(w) if !p.up && previous_down => w.1 = p.t_s + bucket,
            _ if !p.up => out.push((p.t_s, p.t_s + bucket)),
            _ => {}
        }
        previous_down = !p.up;
    }
    out
}

/// Shades down buckets and fault windows under the data of one panel.
fn shade(chart: &mut Chart, summary: &Summary, shown: &[Shown], x: &Axis, y: &Axis) -> DrawResult {
    canvas::shade_faults(chart, &summary.faults, x, y)?;
    for s in shown {
        for (a, b) in down_windows(s.inst, summary.bucket_seconds) {
            canvas::shade(chart, x.at(a), x.at(b), y, DOWN_FILL)?;
        }
    }
    Ok(())
}

fn labels(summary: &Summary, shown: &[Shown], x: &Axis) -> Vec<Label> {
    let mut out = canvas::fault_labels(&summary.faults, x);
    for s in shown {
        for (a, b) in down_windows(s.inst, summary.bucket_seconds) {
            let text = format!("{} down", s.name);
            out.push(Label {
                x0: x.at(a),
                x1: x.at(b),
                text,
                ink: DOWN_INK,
            });
        }
    }
    out
}

/// One panel: a value per bucket for each shown instance.
fn panel(
    area: &canvas::Area,
    summary: &Summary,
    shown: &[Shown],
    axes: (&Axis, &Axis),
    descs: (&str, &str),
    value: impl Fn(&crate::report::summary::InstancePoint) -> f64,
) -> DrawResult<()> {
    let (x, y) = axes;
    let mut chart = canvas::chart(area, x, y, descs.0, descs.1)?;
    shade(&mut chart, summary, shown, x, y)?;
    let half = summary.bucket_seconds / 2.0;
    for s in shown {
        let points: Vec<(f64, f64)> = s
            .inst
            .timeline
            .iter()
            .map(|p| (x.at(p.t_s + half), y.at(value(p))))
            .collect();
        canvas::line(&mut chart, &points, s.color, Stroke::Solid(2))?;
        unhealthy_marks(&mut chart, summary, s, (x, y), &value)?;
    }
    if descs.0.is_empty() {
        canvas::label_windows(&mut chart, &labels(summary, shown, x), x, y)?;
    }
    Ok(())
}

/// A triangle on the line at each bucket where the instance's health checks failed.
fn unhealthy_marks(
    chart: &mut Chart,
    summary: &Summary,
    s: &Shown,
    axes: (&Axis, &Axis),
    value: &impl Fn(&crate::report::summary::InstancePoint) -> f64,
) -> DrawResult<()> {
    let (x, y) = axes;
    let half = summary.bucket_seconds / 2.0;
    let marks = s
        .inst
        .timeline
        .iter()
        .filter(|p| p.healthy == Some(false))
        .map(|p| TriangleMarker::new((x.at(p.t_s + half), y.at(value(p))), 6, s.color.filled()));
    chart.draw_series(marks)?;
    Ok(())
}

fn ever_unhealthy(i: &InstanceSummary) -> bool {
    i.timeline.iter().any(|p| p.healthy == Some(false))
}

fn title(summary: &Summary, shown: usize) -> String {
    let total = summary.instances.len();
    if shown < total {
        format!(
            "{}: load per instance (top {shown} of {total}: down, then peak queue, then utilisation)",
            summary.scenario
        )
    } else {
        format!("{}: load per instance", summary.scenario)
    }
}

fn legend(summary: &Summary, shown: &[Shown]) -> Vec<Entry> {
    let mut entries = vec![Entry::Heading("instances".to_string())];
    entries.extend(
        shown
            .iter()
            .map(|s| Entry::Line(s.color, Stroke::Solid(3), s.name.to_string())),
    );
    entries.extend(canvas::fault_entry(&summary.faults));
    if shown.iter().any(|s| ever_down(s.inst)) {
        entries.push(Entry::Shade(DOWN_FILL, "instance down".to_string()));
    }
    if shown.iter().any(|s| ever_unhealthy(s.inst)) {
        entries.push(Entry::Heading(
            "triangles: health check failing".to_string(),
        ));
    }
    entries
}

/// Draws `instances.png` at `path`.
pub(super) fn draw(summary: &Summary, path: &Path) -> DrawResult {
    let shown = pick(summary);
    let page = canvas::page(path, &title(summary, shown.len()))?;
    if shown.is_empty() {
        page.note("no instance was measured in this run")?;
        return page.finish();
    }
    let x = Axis::time(super::latency::end_seconds(summary).max(instances_end(summary)));
    let height = page.plot.dim_in_pixel().1;
    let (top, bottom) = page.plot.split_vertically(height * 52 / 100);
    let label_rows = labels(summary, &shown, &x).len();
    let utilisation =
        Axis::fixed(0.0, 104.0, 20.0).with_label_band(label_rows, top.dim_in_pixel().1 - 60);
    let peak = shown.iter().map(|s| peak_queue(s.inst)).max().unwrap_or(0);
    let queue = Axis::from_zero(f64::from(peak.max(5)));
    let busy = |p: &crate::report::summary::InstancePoint| p.utilisation * 100.0;
    panel(
        &top,
        summary,
        &shown,
        (&x, &utilisation),
        ("", "utilisation (% of workers busy)"),
        busy,
    )?;
    let depth = |p: &crate::report::summary::InstancePoint| f64::from(p.max_queue);
    let descs = ("time since start (s)", "max queue (requests waiting)");
    panel(&bottom, summary, &shown, (&x, &queue), descs, depth)?;
    canvas::legend(&page.legend, &legend(summary, &shown))?;
    page.finish()
}

fn instances_end(summary: &Summary) -> f64 {
    summary
        .instances
        .values()
        .filter_map(|i| i.timeline.last())
        .map(|p| p.t_s + summary.bucket_seconds)
        .fold(0.0, f64::max)
}
