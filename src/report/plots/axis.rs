//! Axes for the report's plots, with ticks we choose ourselves.
//!
//! plotters' automatic ticks read badly on log scales, so a log axis is drawn as a linear axis
//! over `log10(value)` with ticks at 1-2-5 steps (and the spectrum's `1/(1-p)` axis is labelled
//! as percentiles). Every chart thus has one coordinate type, and [`Axis`] implements plotters'
//! `Ranged` itself: values handed to a chart are already in plot coordinates (see [`Axis::at`]).

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};

use super::canvas::LABEL_ROWS;

/// Linear or logarithmic (base 10).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scale {
    Linear,
    Log,
}

/// How tick values are written.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Labels {
    /// The value itself, e.g. `0.5`, `20`, `1500`.
    Plain,
    /// `x = 1/(1-p)` written as the percentile `p`: `90%`, `99.9%`.
    Percentile,
}

/// One axis: its scale, range and ticks, all kept in plot coordinates.
#[derive(Debug, Clone)]
pub(super) struct Axis {
    scale: Scale,
    labels: Labels,
    lo: f64,
    hi: f64,
    bold: Vec<f64>,
    light: Vec<f64>,
}

/// A round step (1, 2 or 5 times a power of ten) close to `raw`.
fn nice_step(raw: f64) -> f64 {
    let raw = if raw > 0.0 && raw.is_finite() {
        raw
    } else {
        1.0
    };
    let decade = 10f64.powf(raw.log10().floor());
    let m = raw / decade;
    let nice = if m < 1.5 {
        1.0
    } else if m < 3.5 {
        2.0
    } else if m < 7.5 {
        5.0
    } else {
        10.0
    };
    nice * decade
}

/// Multiples of `step` from `lo` to `hi` inclusive.
fn multiples(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let first = (lo / step).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// `m x 10^k` for each `m` in `mantissas`, every decade covering `lo..=hi`, within it.
fn decade_ticks(lo: f64, hi: f64, mantissas: &[f64]) -> Vec<f64> {
    let first = lo.log10().floor() as i32;
    let last = hi.log10().ceil() as i32;
    let mut out = Vec::new();
    for k in first..=last {
        for m in mantissas {
            let v = m * 10f64.powi(k);
            if v >= lo * (1.0 - 1e-9) && v <= hi * (1.0 + 1e-9) {
                out.push(v);
            }
        }
    }
    out
}

/// The largest 1-2-5 value at or below `v` (`up == false`) or the smallest at or above it.
fn round_125(v: f64, up: bool) -> f64 {
    let candidates = decade_ticks(v / 10.0, v * 10.0, &[1.0, 2.0, 5.0]);
    let pick = if up {
        candidates.into_iter().find(|c| *c >= v * (1.0 - 1e-9))
    } else {
        candidates
            .into_iter()
            .rev()
            .find(|c| *c <= v * (1.0 + 1e-9))
    };
    pick.unwrap_or(v)
}

impl Axis {
    /// Linear from 0 to a round number above `max`.
    pub fn from_zero(max: f64) -> Axis {
        let max = if max > 0.0 && max.is_finite() {
            max
        } else {
            1.0
        };
        let step = nice_step(max * 1.05 / 5.0);
        let hi = (max * 1.05 / step).ceil() * step;
        Axis {
            scale: Scale::Linear,
            labels: Labels::Plain,
            lo: 0.0,
            hi,
            bold: multiples(0.0, hi, step),
            light: multiples(0.0, hi, step / 2.0),
        }
    }

    /// Linear over exactly `lo..=hi`, with a tick every `step`.
    pub fn fixed(lo: f64, hi: f64, step: f64) -> Axis {
        Axis {
            scale: Scale::Linear,
            labels: Labels::Plain,
            lo,
            hi,
            bold: multiples(lo, hi, step),
            light: multiples(lo, hi, step / 2.0),
        }
    }

    /// Linear over `0..=end` exactly (time), with round ticks inside.
    pub fn time(end: f64) -> Axis {
        let end = if end > 0.0 && end.is_finite() {
            end
        } else {
            1.0
        };
        let step = nice_step(end / 8.0);
        Axis {
            scale: Scale::Linear,
            labels: Labels::Plain,
            lo: 0.0,
            hi: end,
            bold: multiples(0.0, end, step),
            light: multiples(0.0, end, step / 2.0),
        }
    }

    /// Logarithmic from a 1-2-5 value below `min` to one above `max` (`0 < min <= max`).
    pub fn log(min: f64, max: f64) -> Axis {
        let lo = round_125(min, false);
        let hi = round_125(max.max(min * 2.0), true);
        let mut bold = decade_ticks(lo, hi, &[1.0, 2.0, 5.0]);
        if bold.len() > 12 {
            bold = decade_ticks(lo, hi, &[1.0]);
        }
        let light = decade_ticks(lo, hi, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
        Axis {
            scale: Scale::Log,
            labels: Labels::Plain,
            lo: lo.log10(),
            hi: hi.log10(),
            bold: bold.into_iter().map(f64::log10).collect(),
            light: light.into_iter().map(f64::log10).collect(),
        }
    }

    /// A latency axis in ms: logarithmic when `max` is over 20 times `typical` (the median),
    /// so both the body and the tail stay readable; linear from 0 otherwise.
    pub fn latency(min: f64, typical: f64, max: f64) -> Axis {
        let min = if min > 0.0 { min } else { typical.min(max) };
        if min > 0.0 && typical > 0.0 && max / typical > 20.0 {
            Axis::log(min, max)
        } else {
            Axis::from_zero(max)
        }
    }

    /// The spectrum's x axis: `1/(1-p)` on a log scale from 1 (0%) to a power of ten at or
    /// above `max_x`, labelled as percentiles.
    pub fn percentile(max_x: f64) -> Axis {
        let decades = max_x.max(100.0).log10().ceil().min(7.0) as i32;
        let hi = 10f64.powi(decades);
        let mut bold = vec![1.0, 2.0];
        bold.extend((1..=decades).map(|k| 10f64.powi(k)));
        let light = decade_ticks(1.0, hi, &[2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
        Axis {
            scale: Scale::Log,
            labels: Labels::Percentile,
            lo: 0.0,
            hi: hi.log10(),
            bold: bold.into_iter().map(f64::log10).collect(),
            light: light.into_iter().map(f64::log10).collect(),
        }
    }

    /// The same axis reaching `rows` label rows (22 px each, of a ~`plot_px` high plot) higher,
    /// without ticks there: a clear band at the top for window labels, so they hide no data.
    pub fn with_label_band(mut self, rows: usize, plot_px: u32) -> Axis {
        if rows > 0 {
            let band_px = 10.0 + 22.0 * rows.min(LABEL_ROWS) as f64;
            let share = (band_px / f64::from(plot_px.max(100))).min(0.4);
            self.hi += (self.hi - self.lo) * share / (1.0 - share);
        }
        self
    }

    /// Whether the axis is logarithmic (said in axis titles).
    pub fn is_log(&self) -> bool {
        self.scale == Scale::Log
    }

    /// Plot coordinate of a data value (clamped into the axis).
    pub fn at(&self, v: f64) -> f64 {
        let t = match self.scale {
            Scale::Linear => v,
            Scale::Log if v > 0.0 => v.log10(),
            Scale::Log => self.lo,
        };
        t.clamp(self.lo, self.hi)
    }

    /// Lowest plot coordinate.
    pub fn lo(&self) -> f64 {
        self.lo
    }

    /// Highest plot coordinate.
    pub fn hi(&self) -> f64 {
        self.hi
    }

    fn value(&self, t: f64) -> f64 {
        match self.scale {
            Scale::Linear => t,
            Scale::Log => 10f64.powf(t),
        }
    }

    /// The tick label at plot coordinate `t`.
    pub(super) fn label(&self, t: f64) -> String {
        let v = self.value(t);
        match self.labels {
            Labels::Plain => number(v),
            Labels::Percentile => percentile_label(v),
        }
    }
}

/// plotters draws an [`Axis`] directly: values are already in plot coordinates, mapped linearly,
/// with our ticks (bold for labels and grid, light for the fine grid).
impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = self.hi - self.lo;
        let share = if span > 0.0 {
            (value - self.lo) / span
        } else {
            0.0
        };
        let pixels = f64::from(limit.1 - limit.0);
        limit.0 + (pixels * share + 1e-3).floor() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.light.clone()
        } else {
            self.bold.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

/// A number for a tick: no trailing zeros, at most three decimals.
pub(super) fn number(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// `x = 1/(1-p)` as a percentile: 1 -> `0%`, 10 -> `90%`, 1000 -> `99.9%`.
fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 1.0 / x.max(1.0));
    let decimals = (x.log10().round() as i64 - 2).max(0) as usize;
    format!("{p:.decimals$}%")
}
