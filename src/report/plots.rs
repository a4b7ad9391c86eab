//! The report's PNG plots, drawn from a [`Summary`] alone.
//!
//! Five views, after the tools people already trust: `latency.png` (percentiles over time with
//! the fault windows shaded, as Jepsen draws them), `throughput.png` (ok / errors / dropped per
//! second, Gatling's page), `distribution.png` (the percentile spectrum on wrk2's and
//! HdrHistogram's `1/(1-p)` axis), `instances.png` (per-instance utilisation and queue depth,
//! so a slow or crashed instance stands out) and `trace.png` (the slowest request's trace as a
//! waterfall, as Zipkin and Jaeger draw it). A sixth, `business.png` (the services' business
//! counters per second), is drawn only for runs whose services record any, and a seventh,
//! `mechanisms.png` (circuits opened, ejections, retries, hedges, refusals per second), only for
//! runs where a degradation mechanism acted. `compare` overlays two runs' spectra, and `sweep`
//! and `merge` draw `sweep.png` (p99 and error rate across seeds).
//!
//! Text is drawn with the bundled DejaVu Sans through plotters' `ab_glyph` backend, so no system
//! font library is needed; the font is registered once, before the first plot. Every plot is
//! 1200x700 and carries the scenario's name in its title; empty data gives a valid PNG with a note.

mod axis;
mod business;
mod canvas;
mod capacity;
mod distribution;
mod instances;
mod latency;
mod sweep;
mod throughput;
mod trace;

use business::Counters;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::report::summary::Summary;
use crate::report::sweep::SweepReport;

/// DejaVu Sans (licence in `assets/DejaVuSans-LICENSE.txt`), the only font the plots use.
static FONT_TTF: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Why a plot could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The output folder could not be created.
    #[error("cannot create the plot folder {}: {source}", path.display())]
    Folder {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The bundled font did not parse (a broken build, not bad input).
    #[error("the bundled font assets/DejaVuSans.ttf does not load")]
    Font,
    /// Drawing or encoding the PNG failed.
    #[error("cannot draw {}: {source}", path.display())]
    Draw {
        /// The PNG being written.
        path: PathBuf,
        /// The backend's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Registers the bundled font under plotters' `sans-serif` family, once per process.
fn register_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(canvas::FONT, plotters::style::FontStyle::Normal, FONT_TTF)
            .is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(PlotError::Font)
    }
}

/// Runs one drawing function for `path`, naming the file in any error.
fn draw_one(
    path: PathBuf,
    draw: impl FnOnce(&Path) -> canvas::DrawResult,
) -> Result<PathBuf, PlotError> {
    match draw(&path) {
        Ok(()) => Ok(path),
        Err(source) => Err(PlotError::Draw { path, source }),
    }
}

/// Writes `latency.png`, `throughput.png`, `distribution.png`, `instances.png`, `trace.png`,
/// `business.png` when the run recorded a business counter and `mechanisms.png` when a
/// degradation mechanism acted, into `dir` (created if missing), and returns their paths in
/// that order.
pub fn write_plots(summary: &Summary, dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    register_font()?;
    std::fs::create_dir_all(dir).map_err(|source| PlotError::Folder {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut written = vec![
        draw_one(dir.join("latency.png"), |p| latency::draw(summary, p))?,
        draw_one(dir.join("throughput.png"), |p| throughput::draw(summary, p))?,
        draw_one(dir.join("distribution.png"), |p| {
            distribution::draw(summary, p)
        })?,
        draw_one(dir.join("instances.png"), |p| instances::draw(summary, p))?,
        draw_one(dir.join("trace.png"), |p| trace::draw(summary, p))?,
    ];
    for (which, file) in [
        (Counters::Business, "business.png"),
        (Counters::Mechanisms, "mechanisms.png"),
    ] {
        if business::has_counters(summary, which) {
            written.push(draw_one(dir.join(file), |p| {
                business::draw(summary, which, p)
            })?);
        }
    }
    Ok(written)
}

/// Writes the percentile spectra of two runs overlaid in one PNG at `path`: each route keeps one
/// colour, run A drawn solid and run B dashed, labelled `label_a` and `label_b`.
pub fn write_overlay(
    a: &Summary,
    b: &Summary,
    label_a: &str,
    label_b: &str,
    path: &Path,
) -> Result<(), PlotError> {
    register_font()?;
    let runs = [
        distribution::Run {
            label: label_a,
            summary: a,
        },
        distribution::Run {
            label: label_b,
            summary: b,
        },
    ];
    draw_one(path.to_path_buf(), |p| distribution::draw_overlay(&runs, p)).map(|_| ())
}

/// One probe of a capacity search, as the capacity plot needs it.
#[derive(Debug, Clone)]
pub struct CapacityPoint {
    /// Offered requests per second.
    pub rate: f64,
    /// p99 latency, ms.
    pub p99_ms: f64,
    /// Fraction of requests that failed.
    pub error_rate: f64,
    /// Successful requests per second.
    pub goodput_per_s: f64,
}

/// One scenario's capacity search: its probes and the capacity found.
#[derive(Debug, Clone)]
pub struct CapacityCurve {
    /// What to call it in the legend.
    pub label: String,
    /// The probes.
    pub points: Vec<CapacityPoint>,
    /// The highest passing rate, if any passed.
    pub capacity: Option<f64>,
}

/// Writes `capacity.png` at `path`: p99, error rate and goodput against rate for each curve,
/// each capacity marked.
pub fn write_capacity(title: &str, curves: &[CapacityCurve], path: &Path) -> Result<(), PlotError> {
    register_font()?;
    draw_one(path.to_path_buf(), |p| capacity::draw(title, curves, p)).map(|_| ())
}

/// Writes `sweep.png` at `path`: p99 and error rate per load across a sweep's seeds, sorted
/// (see `src/report/plots/sweep.rs`).
pub fn write_sweep(report: &SweepReport, path: &Path) -> Result<(), PlotError> {
    register_font()?;
    draw_one(path.to_path_buf(), |p| sweep::draw(report, p)).map(|_| ())
}
