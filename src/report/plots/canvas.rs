//! The drawing kit the plots share: the 1200x700 page, charts, fault shading, lines and legend.
//!
//! Every chart is a [`Chart`] over two [`Axis`] (see `axis.rs`). The legend lives in a panel to
//! the right of the plot so it never hides data; fault labels sit in a band the axes leave free
//! at the top, on a white backing, so they hide no data and stay readable.

use std::path::Path;

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

pub(super) use super::axis::{number, Axis};
use crate::report::summary::FaultWindow;

/// What the drawing functions return; the caller attaches the file's path.
pub(super) type DrawResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The font family every text uses; `plots::register_font` binds it to the bundled TTF.
pub(super) const FONT: &str = "sans-serif";
/// Page width, pixels.
const WIDTH: u32 = 1200;
/// Page height, pixels.
const HEIGHT: u32 = 700;
/// Width of the legend panel on the right, pixels.
const LEGEND_WIDTH: u32 = 250;
/// Rows that window labels are staggered over.
pub(super) const LABEL_ROWS: usize = 4;
/// Legend row height, pixels.
const ROW: i32 = 24;

/// A drawing area on the PNG.
pub(super) type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
/// Every chart is linear over plot coordinates (log axes are pre-transformed).
pub(super) type Chart<'a, 'b> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<Axis, Axis>>;

/// Fill of a fault window.
const FAULT_FILL: RGBAColor = RGBAColor(110, 110, 130, 0.16);
/// Edges and labels of a fault window.
const FAULT_INK: RGBColor = RGBColor(70, 70, 90);

/// Twelve colours that stay apart on white (matplotlib's tab10 plus two darks).
const PALETTE: [RGBColor; 12] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(57, 59, 121),
    RGBColor(99, 121, 57),
];

/// The `i`th colour of the palette, cycling.
pub(super) fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// A page: the root (for presenting), the plot area and the legend panel beside it.
pub(super) struct Page<'a> {
    root: Area<'a>,
    body: Area<'a>,
    /// Where the chart goes.
    pub plot: Area<'a>,
    /// The legend panel on the right.
    pub legend: Area<'a>,
}

/// Opens a white 1200x700 page at `path` with `title` on top.
pub(super) fn page<'a>(path: &'a Path, title: &str) -> DrawResult<Page<'a>> {
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let style = (FONT, 26).into_font().color(&BLACK);
    let title = fit(&root, title, &style, WIDTH as i32 - 40)?;
    let body = root.margin(10, 0, 0, 0).titled(&title, style)?;
    let (plot, legend) = body.split_horizontally(WIDTH - LEGEND_WIDTH);
    Ok(Page {
        root,
        body,
        plot,
        legend,
    })
}

impl Page<'_> {
    /// Writes `text` in the middle of the page instead of a chart (for runs with no data).
    pub fn note(&self, text: &str) -> DrawResult {
        note(&self.body, text)
    }

    /// Writes the PNG.
    pub fn finish(&self) -> DrawResult {
        self.root.present()?;
        Ok(())
    }
}

/// `text`, cut with an ellipsis so that it is at most `max_px` wide in `style`.
pub(super) fn fit<CT: CoordTranslate>(
    area: &DrawingArea<BitMapBackend<'_>, CT>,
    text: &str,
    style: &TextStyle,
    max_px: i32,
) -> DrawResult<String> {
    let width = |s: &str| -> DrawResult<i32> { Ok(area.estimate_text_size(s, style)?.0 as i32) };
    if width(text)? <= max_px {
        return Ok(text.to_string());
    }
    let mut chars: Vec<char> = text.chars().collect();
    while !chars.is_empty() {
        chars.pop();
        let cut: String = chars.iter().collect::<String>() + "…";
        if width(&cut)? <= max_px {
            return Ok(cut);
        }
    }
    Ok("…".to_string())
}

/// A centred note on an empty plot, so an empty run still gives a readable PNG.
fn note(area: &Area, text: &str) -> DrawResult {
    let (w, h) = area.dim_in_pixel();
    let style = (FONT, 24)
        .into_font()
        .color(&RGBColor(90, 90, 90))
        .pos(Pos::new(HPos::Center, VPos::Center));
    area.draw(&Text::new(
        text.to_string(),
        (w as i32 / 2, h as i32 / 2),
        style,
    ))?;
    Ok(())
}

/// Builds a chart over `x` and `y` in `area` and draws its grid, ticks and axis titles.
pub(super) fn chart<'a, 'b>(
    area: &'a Area<'b>,
    x: &Axis,
    y: &Axis,
    x_desc: &str,
    y_desc: &str,
) -> DrawResult<Chart<'a, 'b>> {
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(if x_desc.is_empty() { 32 } else { 58 })
        .y_label_area_size(84)
        .build_cartesian_2d(x.clone(), y.clone())?;
    let x_fmt = |t: &f64| x.label(*t);
    let y_fmt = |t: &f64| y.label(*t);
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .axis_desc_style((FONT, 19))
        .label_style((FONT, 16))
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .bold_line_style(RGBColor(205, 205, 205))
        .light_line_style(RGBColor(238, 238, 238))
        .axis_style(RGBColor(60, 60, 60))
        .draw()?;
    Ok(chart)
}

/// How a line is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Stroke {
    /// Solid, this many pixels wide.
    Solid(u32),
    /// Dashed, this many pixels wide.
    Dashed(u32),
    /// Dots.
    Dotted,
}

/// Draws `points` (plot coordinates) as one line; a lone point becomes a dot.
pub(super) fn line(
    chart: &mut Chart,
    points: &[(f64, f64)],
    color: RGBColor,
    stroke: Stroke,
) -> DrawResult {
    if points.len() == 1 {
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
        return Ok(());
    }
    let it = points.iter().copied();
    match stroke {
        Stroke::Solid(w) => {
            chart.draw_series(LineSeries::new(it, color.stroke_width(w)))?;
        }
        Stroke::Dashed(w) => {
            chart.draw_series(DashedLineSeries::new(it, 9, 6, color.stroke_width(w)))?;
        }
        Stroke::Dotted => {
            chart.draw_series(DottedLineSeries::new(it, 0, 7, move |c| {
                Circle::new(c, 2, color.filled())
            }))?;
        }
    }
    Ok(())
}

/// Splits a sequence with gaps (`None`) into the runs of points between them.
pub(super) fn runs(points: impl IntoIterator<Item = Option<(f64, f64)>>) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for p in points {
        match p {
            Some(p) => out.last_mut().map_or((), |run| run.push(p)),
            None if out.last().is_some_and(|r| !r.is_empty()) => out.push(Vec::new()),
            None => {}
        }
    }
    out.retain(|r| !r.is_empty());
    out
}

/// Shades a time window over the whole height of the chart (under the data).
pub(super) fn shade(chart: &mut Chart, x0: f64, x1: f64, y: &Axis, fill: RGBAColor) -> DrawResult {
    let rect = Rectangle::new([(x0, y.lo()), (x1, y.hi())], fill.filled());
    chart.draw_series(std::iter::once(rect))?;
    Ok(())
}

/// Fault windows clipped to the time axis, in plot coordinates.
fn fault_spans<'f>(faults: &'f [FaultWindow], x: &Axis) -> Vec<(f64, f64, &'f FaultWindow)> {
    faults
        .iter()
        .map(|f| (x.at(f.start_s), x.at(f.end_s.max(f.start_s)), f))
        .collect()
}

/// Shades each fault window and marks its edges; call before drawing data.
pub(super) fn shade_faults(
    chart: &mut Chart,
    faults: &[FaultWindow],
    x: &Axis,
    y: &Axis,
) -> DrawResult {
    for (x0, x1, _) in fault_spans(faults, x) {
        shade(chart, x0, x1, y, FAULT_FILL)?;
        let edge = FAULT_INK.mix(0.6).stroke_width(1);
        for xe in [x0, x1] {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(xe, y.lo()), (xe, y.hi())],
                edge,
            )))?;
        }
    }
    Ok(())
}

/// A text to write at the top of a time window.
pub(super) struct Label {
    /// Window start, plot coordinates.
    pub x0: f64,
    /// Window end, plot coordinates.
    pub x1: f64,
    /// What to write.
    pub text: String,
    /// Its colour.
    pub ink: RGBColor,
}

/// The labels of the fault windows.
pub(super) fn fault_labels(faults: &[FaultWindow], x: &Axis) -> Vec<Label> {
    fault_spans(faults, x)
        .into_iter()
        .map(|(x0, x1, f)| Label {
            x0,
            x1,
            text: f.label.clone(),
            ink: FAULT_INK,
        })
        .collect()
}

/// Writes each fault's label at the top of its window; call after the data.
pub(super) fn label_faults(
    chart: &mut Chart,
    faults: &[FaultWindow],
    x: &Axis,
    y: &Axis,
) -> DrawResult {
    label_windows(chart, &fault_labels(faults, x), x, y)
}

/// Writes labels at the top of their windows on a white backing, staggered in four rows so that
/// neighbouring windows do not print over each other; a window starting in the right third of
/// the plot is labelled right-aligned to its end so the text stays inside.
pub(super) fn label_windows(chart: &mut Chart, labels: &[Label], x: &Axis, y: &Axis) -> DrawResult {
    let width_px = chart.plotting_area().dim_in_pixel().0 as i32;
    for (i, l) in labels.iter().enumerate() {
        let dy = 6 + (i % LABEL_ROWS) as i32 * 22;
        let right = (l.x0 - x.lo()) > (x.hi() - x.lo()) * 0.66;
        let style = (FONT, 15)
            .into_font()
            .color(&l.ink)
            .pos(Pos::new(HPos::Left, VPos::Top));
        let text = fit(chart.plotting_area(), &l.text, &style, width_px / 2)?;
        let (w, h) = chart.plotting_area().estimate_text_size(&text, &style)?;
        let (w, h) = (w as i32, h as i32);
        let (anchor, dx) = if right {
            ((l.x1, y.hi()), -6 - w)
        } else {
            ((l.x0, y.hi()), 6)
        };
        let backing = Rectangle::new(
            [(dx - 3, dy - 2), (dx + w + 3, dy + h + 4)],
            WHITE.mix(0.85).filled(),
        );
        let element = EmptyElement::at(anchor) + backing + Text::new(text, (dx, dy), style);
        chart.draw_series(std::iter::once(element))?;
    }
    Ok(())
}

/// One legend row.
pub(super) enum Entry {
    /// A group title.
    Heading(String),
    /// A line sample and its name.
    Line(RGBColor, Stroke, String),
    /// A shaded box and what it means.
    Shade(RGBAColor, String),
}

/// The shading legend entry for fault windows, if there are any.
pub(super) fn fault_entry(faults: &[FaultWindow]) -> Option<Entry> {
    (!faults.is_empty()).then(|| Entry::Shade(FAULT_FILL, "fault window".to_string()))
}

/// Draws the legend rows top-down in the panel; rows that do not fit are counted in a last row.
/// A name too long for the panel wraps onto further lines (at a dot, underscore or space where
/// it can), so no entry is cut off. Returns the height used, for what is drawn below.
pub(super) fn legend(area: &Area, entries: &[Entry]) -> DrawResult<i32> {
    let (width, height) = area.dim_in_pixel();
    let style = legend_style();
    let mut laid = Vec::with_capacity(entries.len());
    for e in entries {
        let (x_text, text) = entry_text(e);
        laid.push(wrap(area, text, &style, width as i32 - x_text - 8)?);
    }
    let rows = |lines: &[String]| ROW + (lines.len().max(1) as i32 - 1) * WRAP_LINE;
    let bottom = height as i32 - 16;
    let mut y = 24;
    for (k, (e, lines)) in entries.iter().zip(&laid).enumerate() {
        let last = k + 1 == entries.len();
        let room_for_more = y + rows(lines) + ROW <= bottom;
        if !(room_for_more || last && y + rows(lines) <= bottom) {
            let more = Entry::Heading(format!("… and {} more", entries.len() - k));
            legend_row(area, &more, y, &[entry_text(&more).1.clone()])?;
            return Ok(y + ROW);
        }
        legend_row(area, e, y, lines)?;
        y += rows(lines);
    }
    Ok(y)
}

/// Extra height of each wrapped line of a legend name, pixels.
const WRAP_LINE: i32 = 18;

fn legend_style() -> TextStyle<'static> {
    (FONT, 16)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center))
}

/// Where an entry's name starts, and the name.
fn entry_text(entry: &Entry) -> (i32, &String) {
    match entry {
        Entry::Heading(t) => (6, t),
        Entry::Line(_, _, t) | Entry::Shade(_, t) => (52, t),
    }
}

/// `text` in lines of at most `max_px`, broken after a dot, underscore, space or slash when one
/// is in reach, else between characters.
fn wrap(area: &Area, text: &str, style: &TextStyle, max_px: i32) -> DrawResult<Vec<String>> {
    let width = |s: &str| -> DrawResult<i32> { Ok(area.estimate_text_size(s, style)?.0 as i32) };
    let mut lines = Vec::new();
    let mut rest: Vec<char> = text.chars().collect();
    while !rest.is_empty() {
        let mut take = rest.len();
        while take > 1 && width(&rest[..take].iter().collect::<String>())? > max_px {
            take -= 1;
        }
        if take < rest.len() {
            if let Some(at) = rest[..take]
                .iter()
                .rposition(|c| matches!(c, '.' | '_' | ' ' | '/'))
                .filter(|at| *at > 0)
            {
                take = at + 1;
            }
        }
        lines.push(
            rest[..take]
                .iter()
                .collect::<String>()
                .trim_end()
                .to_string(),
        );
        rest.drain(..take);
    }
    Ok(lines)
}

fn legend_row(area: &Area, entry: &Entry, y: i32, lines: &[String]) -> DrawResult {
    let style = legend_style();
    let x_text = entry_text(entry).0;
    match entry {
        Entry::Heading(_) => {}
        Entry::Line(color, stroke, _) => sample(area, *color, *stroke, y)?,
        Entry::Shade(fill, _) => {
            area.draw(&Rectangle::new([(8, y - 8), (44, y + 8)], fill.filled()))?;
            area.draw(&Rectangle::new(
                [(8, y - 8), (44, y + 8)],
                FAULT_INK.mix(0.5),
            ))?;
        }
    }
    for (i, line) in lines.iter().enumerate() {
        let at = (x_text, y + i as i32 * WRAP_LINE);
        area.draw(&Text::new(line.clone(), at, style.clone()))?;
    }
    Ok(())
}

fn sample(area: &Area, color: RGBColor, stroke: Stroke, y: i32) -> DrawResult {
    let ends = [(8, y), (44, y)];
    match stroke {
        Stroke::Solid(w) => area.draw(&PathElement::new(ends.to_vec(), color.stroke_width(w)))?,
        Stroke::Dashed(w) => {
            area.draw(&DashedPathElement::new(ends, 9, 6, color.stroke_width(w)))?
        }
        Stroke::Dotted => {
            for x in (10..44).step_by(7) {
                area.draw(&Circle::new((x, y), 2, color.filled()))?;
            }
        }
    }
    Ok(())
}
