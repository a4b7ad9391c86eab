//! `capacity.png`: p99, error rate and goodput against the offered rate, one curve per
//! searched scenario, with each capacity (the knee) marked by a vertical line.

use std::path::Path;

use super::canvas::{self, Axis, DrawResult, Entry, Stroke};
use super::{CapacityCurve, CapacityPoint};

/// One of the three panels: its axis title and the figure it reads from a probe.
type View = (&'static str, fn(&CapacityPoint) -> f64);

/// Draws the curves at `path`.
pub(super) fn draw(title: &str, curves: &[CapacityCurve], path: &Path) -> DrawResult {
    let page = canvas::page(path, title)?;
    let points = || curves.iter().flat_map(|c| c.points.iter());
    let max_rate = points().map(|p| p.rate).fold(0.0f64, f64::max);
    if max_rate <= 0.0 {
        page.note("no probe ran: nothing to plot")?;
        return page.finish();
    }
    let panels = page.plot.split_evenly((3, 1));
    let x = Axis::from_zero(max_rate);
    let views: [View; 3] = [
        ("p99 latency (ms)", |p| p.p99_ms),
        ("error rate (%)", |p| p.error_rate * 100.0),
        ("goodput (requests/s)", |p| p.goodput_per_s),
    ];
    for (i, (panel, (label, value))) in panels.iter().zip(views).enumerate() {
        let peak = points().map(value).fold(0.0f64, f64::max).max(1e-9);
        let y = Axis::from_zero(peak);
        let x_desc = if i == 2 {
            "offered rate (requests/s)"
        } else {
            ""
        };
        let mut chart = canvas::chart(panel, &x, &y, x_desc, label)?;
        for (c, curve) in curves.iter().enumerate() {
            let color = canvas::color(c);
            let mut sorted: Vec<&CapacityPoint> = curve.points.iter().collect();
            sorted.sort_by(|a, b| a.rate.total_cmp(&b.rate));
            let line: Vec<(f64, f64)> = sorted
                .iter()
                .map(|p| (x.at(p.rate), y.at(value(p))))
                .collect();
            canvas::line(&mut chart, &line, color, Stroke::Solid(2))?;
            for probe in &line {
                canvas::line(&mut chart, &[*probe], color, Stroke::Solid(2))?; // a dot per probe
            }
            if let Some(knee) = curve.capacity {
                let mark = [(x.at(knee), y.lo()), (x.at(knee), y.hi())];
                canvas::line(&mut chart, &mark, color, Stroke::Dashed(2))?;
            }
        }
    }
    let mut entries = vec![Entry::Heading("scenario".to_string())];
    for (c, curve) in curves.iter().enumerate() {
        let color = canvas::color(c);
        entries.push(Entry::Line(color, Stroke::Solid(2), curve.label.clone()));
        let knee = curve
            .capacity
            .map_or("none passed".to_string(), |r| format!("{r}/s"));
        entries.push(Entry::Line(
            color,
            Stroke::Dashed(2),
            format!("capacity {knee}"),
        ));
    }
    canvas::legend(&page.legend, &entries)?;
    page.finish()
}
