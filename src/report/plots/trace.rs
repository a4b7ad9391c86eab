//! `trace.png`: the slowest request's trace as a waterfall, one row per call (Zipkin's and
//! Jaeger's view).
//!
//! Each row shows a call twice: a thin bar from client-send to client-receive (how long the
//! caller waited) and a thick bar from server-receive to server-send (the callee's time), pale
//! until a worker took the request (time spent waiting in the queue) and solid from then on
//! (time spent working); the gaps between the bars are the network. Times are read relative to the
//! edge call's client-send. A trace's times may be missing (a call that never arrived, a handler
//! that never ended): only the annotations that exist are drawn, never guessed. A trace of more
//! than [`MAX_ROWS`] spans shows its first ones by client-send, and its title says so.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::canvas::{self, Area, Axis, Chart, DrawResult, Entry, Stroke};
use crate::metrics::{Span, Trace};
use crate::report::summary::Summary;

/// Most spans drawn; the title says when there were more.
const MAX_ROWS: usize = 40;
/// Tallest row, pixels: a trace of a few spans is drawn at the top of the page, not stretched.
const MAX_ROW_PX: u32 = 56;
/// Height of the x axis' labels and title under the rows, plus the chart's margins, pixels.
const CHART_CHROME_PX: u32 = 58 + 2 * 12;
/// Width of the span-label column left of the bars, pixels.
const LABEL_PX: u32 = 400;
/// Indentation per level of the call tree, pixels.
const INDENT_PX: i32 = 14;
/// Deepest indentation drawn, so a deep tree leaves room for its labels.
const MAX_INDENT: usize = 8;
/// Calls that ended badly (an error, a cancelled or timed-out handler).
const BAD_INK: RGBColor = RGBColor(214, 39, 40);
/// The CS/SR/SS/CR marks.
const MARK_INK: RGBColor = RGBColor(30, 30, 30);

/// Calls that ended well: the palette's first colour, as in the other plots.
fn ok_ink() -> RGBColor {
    canvas::color(0)
}

/// The trace to draw: the slowest request kept, else the first trace.
fn pick(summary: &Summary) -> Option<&Trace> {
    summary
        .traces
        .iter()
        .find(|t| t.kept_because == "slowest")
        .or_else(|| summary.traces.first())
}

/// Whether a call ended badly: an outcome other than `ok`, or a handler that was stopped.
fn is_bad(span: &Span) -> bool {
    span.outcome != "ok" || matches!(span.handler.as_str(), "cancelled" | "timed_out")
}

/// The four annotations in time order: CS, SR, SS, CR.
fn times(span: &Span) -> [Option<f64>; 4] {
    [span.cs_ms, span.sr_ms, span.ss_ms, span.cr_ms]
}

/// The earliest annotation the span has, for ordering rows.
fn start_ms(span: &Span) -> Option<f64> {
    times(span).into_iter().flatten().reduce(f64::min)
}

/// A span's row: the span and its depth in the call tree (0 for the edge call).
struct Row<'a> {
    span: &'a Span,
    depth: usize,
}

/// Depth of `span` in the call tree, following parents (bounded, so a cycle cannot hang us).
fn depth(span: &Span, by_id: &BTreeMap<&str, &Span>) -> usize {
    let mut depth = 0;
    let mut parent = span.parent_span_id.as_deref();
    while let Some(p) = parent.and_then(|id| by_id.get(id)) {
        depth += 1;
        if depth >= by_id.len() {
            break;
        }
        parent = p.parent_span_id.as_deref();
    }
    depth
}

/// Every span of the trace with its depth, by client-send time (spans without times last).
fn rows(trace: &Trace) -> Vec<Row<'_>> {
    let by_id: BTreeMap<&str, &Span> = trace
        .spans
        .iter()
        .map(|s| (s.span_id.as_str(), s))
        .collect();
    let mut rows: Vec<Row> = trace
        .spans
        .iter()
        .map(|span| Row {
            span,
            depth: depth(span, &by_id),
        })
        .collect();
    let key = |r: &Row| r.span.cs_ms.or_else(|| start_ms(r.span));
    rows.sort_by(|a, b| match (key(a), key(b)) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (a, b) => b.is_some().cmp(&a.is_some()),
    });
    rows
}

/// Time zero: the edge call's client-send, else the earliest annotation of the trace.
fn origin_ms(trace: &Trace) -> f64 {
    let edge = trace.spans.iter().find(|s| s.parent_span_id.is_none());
    edge.and_then(|s| s.cs_ms)
        .or_else(|| trace.spans.iter().filter_map(start_ms).reduce(f64::min))
        .unwrap_or(0.0)
}

/// `name @ callee`, and what went wrong (if anything) to append to it.
fn label_parts(span: &Span) -> (String, Option<String>) {
    let callee = if span.callee.is_empty() {
        "(never arrived)"
    } else {
        span.callee.as_str()
    };
    let mut wrong = Vec::new();
    if span.outcome != "ok" {
        wrong.push(span.outcome.clone());
    }
    if matches!(span.handler.as_str(), "cancelled" | "timed_out") {
        wrong.push(format!("handler {}", span.handler));
    }
    let head = format!("{} @ {callee}", span.name);
    (head, (!wrong.is_empty()).then(|| wrong.join(", ")))
}

/// How long the call took: the caller's wait, else the callee's work, else nothing.
fn duration_text(span: &Span) -> Option<String> {
    match (span.cs_ms, span.cr_ms, span.sr_ms, span.ss_ms) {
        (Some(cs), Some(cr), _, _) => Some(format!("{} ms", canvas::number(cr - cs))),
        (_, _, Some(sr), Some(ss)) => Some(format!("callee {} ms", canvas::number(ss - sr))),
        _ => None,
    }
}

fn title(summary: &Summary, trace: &Trace, shown: usize) -> String {
    let why = if trace.kept_because.is_empty() {
        "kept"
    } else {
        trace.kept_because.as_str()
    };
    let mut title = format!(
        "{}: {why} request, trace {} ({} ms, {})",
        summary.scenario,
        trace.trace_id,
        canvas::number(trace.latency_ms),
        trace.outcome
    );
    if shown < trace.spans.len() {
        title += &format!(", first {shown} of {} spans", trace.spans.len());
    }
    title
}

/// A chart with the x axis in ms and a wide, label-free y axis: the span labels are written
/// into its label area by [`draw_labels`], indented by depth.
fn chart<'a, 'b>(area: &'a Area<'b>, x: &Axis, y: &Axis) -> DrawResult<Chart<'a, 'b>> {
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(58)
        .y_label_area_size(LABEL_PX)
        .build_cartesian_2d(x.clone(), y.clone())?;
    let x_fmt = |t: &f64| x.label(*t);
    let no_label = |_: &f64| String::new();
    chart
        .configure_mesh()
        .x_desc("ms since the request started")
        .axis_desc_style((canvas::FONT, 19))
        .label_style((canvas::FONT, 16))
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&no_label)
        .bold_line_style(RGBColor(225, 225, 225))
        .light_line_style(RGBColor(245, 245, 245))
        .axis_style(RGBColor(60, 60, 60))
        .draw()?;
    Ok(chart)
}

/// Where rows go and how big their parts are: sizes in y-axis units (one row is one unit).
struct Geometry {
    /// Rows the y axis holds.
    slots: usize,
    row_px: f64,
    thin: f64,
    thick: f64,
    caller_mark: f64,
    callee_mark: f64,
    font_px: u32,
}

impl Geometry {
    /// Bars as tall as fits the row, but no taller than a readable waterfall's.
    fn new(chart: &Chart, slots: usize) -> Geometry {
        let row_px = f64::from(chart.plotting_area().dim_in_pixel().1) / slots.max(1) as f64;
        let thick_px = (row_px * 0.3).min(12.0);
        let unit = |px: f64| px / row_px.max(1.0);
        Geometry {
            slots,
            row_px,
            thin: unit((thick_px * 0.3).max(1.5)),
            thick: unit(thick_px),
            caller_mark: unit((thick_px * 1.5).min(row_px * 0.46)),
            callee_mark: unit(thick_px),
            font_px: (row_px * 0.7).clamp(10.0, 15.0) as u32,
        }
    }

    /// The y-axis coordinate of the centre of row `k`, row 0 at the top.
    fn centre(&self, k: usize) -> f64 {
        self.slots as f64 - k as f64 - 0.5
    }
}

/// A filled bar between `ends` (ms since the origin), `half` units above and below `yc`.
fn bar(
    chart: &mut Chart,
    x: &Axis,
    ends: (Option<f64>, Option<f64>),
    yc: f64,
    half: f64,
    color: RGBAColor,
) -> DrawResult {
    if let (Some(a), Some(b)) = ends {
        let rect = Rectangle::new([(x.at(a), yc - half), (x.at(b), yc + half)], color.filled());
        chart.draw_series(std::iter::once(rect))?;
    }
    Ok(())
}

/// A vertical tick at `t` (ms since the origin), if the annotation exists.
fn mark(chart: &mut Chart, x: &Axis, t: Option<f64>, yc: f64, half: f64) -> DrawResult {
    if let Some(t) = t {
        let tick = PathElement::new(
            vec![(x.at(t), yc - half), (x.at(t), yc + half)],
            MARK_INK.stroke_width(2),
        );
        chart.draw_series(std::iter::once(tick))?;
    }
    Ok(())
}

/// The call's duration in grey, just right of its last annotation.
fn duration(chart: &mut Chart, span: &Span, end: Option<f64>, yc: f64, g: &Geometry) -> DrawResult {
    let (Some(end), Some(text)) = (end, duration_text(span)) else {
        return Ok(());
    };
    let style = (canvas::FONT, g.font_px.min(14))
        .into_font()
        .color(&RGBColor(90, 90, 90))
        .pos(Pos::new(HPos::Left, VPos::Center));
    let element = EmptyElement::at((end, yc)) + Text::new(text, (8, 0), style);
    chart.draw_series(std::iter::once(element))?;
    Ok(())
}

/// One span's bars, marks and duration on row `k`.
fn draw_span(chart: &mut Chart, row: &Row, k: usize, at: (&Axis, f64), g: &Geometry) -> DrawResult {
    let (x, origin) = at;
    let yc = g.centre(k);
    let [cs, sr, ss, cr] = times(row.span).map(|t| t.map(|t| t - origin));
    let ink = if is_bad(row.span) { BAD_INK } else { ok_ink() };
    bar(chart, x, (cs, cr), yc, g.thin, ink.mix(0.8))?;
    match row.span.ws_ms.map(|t| t - origin) {
        Some(ws) => {
            bar(chart, x, (sr, Some(ws)), yc, g.thick, ink.mix(0.25))?;
            bar(chart, x, (Some(ws), ss), yc, g.thick, ink.mix(0.85))?;
        }
        None => bar(chart, x, (sr, ss), yc, g.thick, ink.mix(0.85))?,
    }
    for t in [cs, cr] {
        mark(chart, x, t, yc, g.caller_mark)?;
    }
    for t in [sr, ss] {
        mark(chart, x, t, yc, g.callee_mark)?;
    }
    let end = [cs, sr, ss, cr].into_iter().flatten().reduce(f64::max);
    duration(chart, row.span, end.map(|t| x.at(t)), yc, g)
}

/// Writes one row's label at pixel `(x_px, y_px)` of `area`: on one line if it fits, else
/// with what went wrong on a second line if the row is tall enough, else cut.
fn draw_label(area: &Area, span: &Span, at: (i32, i32), g: &Geometry) -> DrawResult {
    let (x_px, y_px) = at;
    let ink = if is_bad(span) { BAD_INK } else { BLACK };
    let style = (canvas::FONT, g.font_px)
        .into_font()
        .color(&ink)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let max_px = LABEL_PX as i32 - x_px;
    let (head, wrong) = label_parts(span);
    let one_line = match &wrong {
        Some(w) => format!("{head}: {w}"),
        None => head.clone(),
    };
    let fits = area.estimate_text_size(&one_line, &style)?.0 as i32 <= max_px;
    let lines = match wrong {
        Some(w) if !fits && g.row_px >= 2.4 * f64::from(g.font_px) => vec![head, w],
        _ => vec![one_line],
    };
    let gap = g.font_px as i32 * 6 / 10;
    for (i, line) in lines.iter().enumerate() {
        let dy = if lines.len() == 2 {
            (2 * i as i32 - 1) * gap
        } else {
            0
        };
        let text = canvas::fit(area, line, &style, max_px)?;
        area.draw(&Text::new(text, (x_px, y_px + dy), style.clone()))?;
    }
    Ok(())
}

/// Writes each row's label left-aligned in the chart's label area, indented by depth.
fn draw_labels(area: &Area, chart: &Chart, rows: &[Row], g: &Geometry) -> DrawResult {
    let base = area.get_base_pixel();
    let x_lo = chart.as_coord_spec().x_spec().range().start;
    for (k, row) in rows.iter().enumerate() {
        let (_, y_px) = chart.backend_coord(&(x_lo, g.centre(k)));
        let x_px = 16 + INDENT_PX * row.depth.min(MAX_INDENT) as i32;
        draw_label(area, row.span, (x_px, y_px - base.1), g)?;
    }
    Ok(())
}

fn legend(rows: &[Row]) -> Vec<Entry> {
    let mut entries = vec![
        Entry::Heading("bars".to_string()),
        Entry::Line(
            ok_ink(),
            Stroke::Solid(3),
            "caller waits: CS..CR".to_string(),
        ),
        Entry::Shade(ok_ink().mix(0.25), "callee queued".to_string()),
        Entry::Line(ok_ink(), Stroke::Solid(14), "callee works".to_string()),
    ];
    if rows.iter().any(|r| is_bad(r.span)) {
        entries.push(Entry::Line(
            BAD_INK,
            Stroke::Solid(14),
            "error, cancelled, timed out".to_string(),
        ));
    }
    entries.push(Entry::Heading("marks".to_string()));
    entries
}

/// The marks' legend rows, under the `top` pixels [`canvas::legend`] used.
fn legend_marks(area: &Area, top: i32) -> DrawResult {
    let marks = [
        (11, "CS send, CR answer (caller)"),
        (7, "SR get, SS reply (callee)"),
    ];
    let style = (canvas::FONT, 16)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let width = area.dim_in_pixel().0 as i32;
    for (i, (half, text)) in marks.into_iter().enumerate() {
        let y = top + 24 * i as i32;
        area.draw(&PathElement::new(
            vec![(26, y - half), (26, y + half)],
            MARK_INK.stroke_width(2),
        ))?;
        let text = canvas::fit(area, text, &style, width - 60)?;
        area.draw(&Text::new(text, (52, y), style.clone()))?;
    }
    Ok(())
}

/// Splits the plot area into the chart, as tall as `rows` rows of at most [`MAX_ROW_PX`] need,
/// and the space left under it, if any.
fn rows_area<'a>(plot: &Area<'a>, rows: usize) -> (Area<'a>, Option<Area<'a>>) {
    let height = plot.dim_in_pixel().1;
    let wanted = (rows as u32).saturating_mul(MAX_ROW_PX) + CHART_CHROME_PX;
    if wanted >= height {
        return (plot.clone(), None);
    }
    let (chart, rest) = plot.split_vertically(wanted);
    (chart, Some(rest))
}

/// How to read the bars, under a short waterfall where there is room for it.
const HOW_TO_READ: [&str; 3] = [
    "Thin bar: how long the caller waited for the answer (CS to CR). Thick bar: the callee's time (SR to SS),",
    "pale while the request waited in the callee's queue for a worker, solid while a worker ran it.",
    "The gaps between the thin and the thick bar are time on the network.",
];

/// Writes [`HOW_TO_READ`] in grey at the top of `area`, if it has room.
fn how_to_read(area: &Area) -> DrawResult {
    if area.dim_in_pixel().1 < 80 {
        return Ok(());
    }
    let style = (canvas::FONT, 15)
        .into_font()
        .color(&RGBColor(90, 90, 90))
        .pos(Pos::new(HPos::Left, VPos::Top));
    let width = area.dim_in_pixel().0 as i32;
    for (i, line) in HOW_TO_READ.iter().enumerate() {
        let text = canvas::fit(area, line, &style, width - 40)?;
        area.draw(&Text::new(text, (24, 24 + 22 * i as i32), style.clone()))?;
    }
    Ok(())
}

/// Draws `trace.png` at `path`.
pub(super) fn draw(summary: &Summary, path: &Path) -> DrawResult {
    let Some(trace) = pick(summary) else {
        let page = canvas::page(path, &format!("{}: slowest request", summary.scenario))?;
        page.note("no trace was kept in this run: no waterfall to draw")?;
        return page.finish();
    };
    let mut rows = rows(trace);
    rows.truncate(MAX_ROWS);
    let page = canvas::page(path, &title(summary, trace, rows.len()))?;
    if rows.is_empty() {
        page.note("this trace has no spans")?;
        return page.finish();
    }
    let origin = origin_ms(trace);
    let end = rows
        .iter()
        .flat_map(|r| times(r.span).into_iter().flatten())
        .map(|t| t - origin)
        .fold(0.0, f64::max);
    // Room on the right for the last row's duration.
    let x = Axis::from_zero(end * 1.15);
    let slots = rows.len();
    let y = Axis::fixed(0.0, slots as f64, 1.0);
    let (area, rest) = rows_area(&page.plot, slots);
    let mut chart = chart(&area, &x, &y)?;
    let g = Geometry::new(&chart, slots);
    for (k, row) in rows.iter().enumerate() {
        draw_span(&mut chart, row, k, (&x, origin), &g)?;
    }
    draw_labels(&area, &chart, &rows, &g)?;
    if let Some(rest) = rest {
        how_to_read(&rest)?;
    }
    let entries = legend(&rows);
    let used = canvas::legend(&page.legend, &entries)?;
    legend_marks(&page.legend, used)?;
    page.finish()
}
