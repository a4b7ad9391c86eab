//! Latency and outcome counts for one route, load or endpoint: overall and per time bucket.
//!
//! Memory is bounded by histograms, never by per-request lists: an overall HdrHistogram (3
//! significant digits) and one small histogram (2 digits) per bucket, created only for buckets
//! that saw traffic. Windows of the run are answered by merging buckets.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Largest latency recorded, in microseconds (one hour); longer ones are clamped.
const MAX_MICROS: u64 = 3_600_000_000;

/// What happened to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered successfully.
    Ok,
    /// Failed with this error code.
    Error(String),
    /// Never started: the load generator could not send it on time.
    Dropped,
}

/// Counts of outcomes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests issued (dropped ones included).
    pub sent: u64,
    /// Answered successfully.
    pub ok: u64,
    /// Could not be sent on time.
    pub dropped: u64,
    /// Failed, by error code.
    pub errors: BTreeMap<String, u64>,
}

impl Counts {
    fn add(&mut self, outcome: &Outcome) {
        self.sent += 1;
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::Dropped => self.dropped += 1,
            Outcome::Error(code) => *self.errors.entry(code.clone()).or_insert(0) += 1,
        }
    }

    fn merge(&mut self, other: &Counts) {
        self.sent += other.sent;
        self.ok += other.ok;
        self.dropped += other.dropped;
        for (code, n) in &other.errors {
            *self.errors.entry(code.clone()).or_insert(0) += n;
        }
    }

    /// Failed requests (all codes).
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }
}

fn micros(latency: Duration) -> u64 {
    u64::try_from(latency.as_micros())
        .unwrap_or(MAX_MICROS)
        .clamp(1, MAX_MICROS)
}

fn new_hist(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, sigfig).expect("constant histogram bounds are valid")
}

#[derive(Debug, Clone, Default)]
struct Bucket {
    counts: Counts,
    latency: Option<Histogram<u64>>,
}

/// Outcomes and latencies of one stream of requests over the run.
#[derive(Debug, Clone)]
pub struct Series {
    bucket_width: Duration,
    overall: Histogram<u64>,
    totals: Counts,
    buckets: Vec<Bucket>,
}

/// A window's figures, merged from buckets.
#[derive(Debug, Clone)]
pub struct WindowStats {
    /// Outcome counts in the window.
    pub counts: Counts,
    /// Latency of answered requests (ok and failed), in microseconds.
    pub latency: Histogram<u64>,
    /// The window's length.
    pub span: Duration,
}

impl Series {
    /// A series with `buckets` buckets of `bucket_width`.
    pub fn new(bucket_width: Duration, buckets: usize) -> Series {
        Series {
            bucket_width,
            overall: new_hist(3),
            totals: Counts::default(),
            buckets: vec![Bucket::default(); buckets.max(1)],
        }
    }

    fn index(&self, at: Duration) -> usize {
        let i = at.as_nanos() / self.bucket_width.as_nanos().max(1);
        usize::try_from(i)
            .unwrap_or(usize::MAX)
            .min(self.buckets.len() - 1)
    }

    /// Records one request that started at `start` and ended `latency` later (ignored for
    /// dropped requests).
    pub fn record(&mut self, start: Duration, latency: Duration, outcome: &Outcome) {
        self.totals.add(outcome);
        let i = self.index(start);
        let bucket = &mut self.buckets[i];
        bucket.counts.add(outcome);
        if *outcome != Outcome::Dropped {
            let us = micros(latency);
            self.overall.saturating_record(us);
            bucket
                .latency
                .get_or_insert_with(|| new_hist(2))
                .saturating_record(us);
        }
    }

    /// Counts over the whole run.
    pub fn totals(&self) -> &Counts {
        &self.totals
    }

    /// Latency over the whole run, in microseconds.
    pub fn overall(&self) -> &Histogram<u64> {
        &self.overall
    }

    /// The width of one bucket.
    pub fn bucket_width(&self) -> Duration {
        self.bucket_width
    }

    /// Per-bucket counts, in time order.
    pub fn bucket_counts(&self) -> impl Iterator<Item = &Counts> {
        self.buckets.iter().map(|b| &b.counts)
    }

    /// Per-bucket latency histograms (None where nothing was answered), in time order.
    pub fn bucket_latency(&self) -> impl Iterator<Item = Option<&Histogram<u64>>> {
        self.buckets.iter().map(|b| b.latency.as_ref())
    }

    /// The figures of requests that started within `window`. The whole run uses the overall
    /// histogram (3 digits); other windows merge bucket histograms (2 digits).
    pub fn window(&self, window: &Range<Duration>, run: Duration) -> WindowStats {
        let span = window.end.saturating_sub(window.start);
        if window.start.is_zero() && window.end >= run {
            return WindowStats {
                counts: self.totals.clone(),
                latency: self.overall.clone(),
                span,
            };
        }
        let mut counts = Counts::default();
        let mut latency = new_hist(2);
        let first = self.index(window.start);
        let last = self.index(window.end.saturating_sub(Duration::from_nanos(1)));
        for b in &self.buckets[first..=last] {
            counts.merge(&b.counts);
            if let Some(h) = &b.latency {
                // Same bounds by construction: adding cannot fail.
                let _ = latency.add(h);
            }
        }
        WindowStats {
            counts,
            latency,
            span,
        }
    }

    /// Merges another series of the same shape into this one.
    pub fn merge(&mut self, other: &Series) {
        let _ = self.overall.add(&other.overall);
        self.totals.merge(&other.totals);
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            mine.counts.merge(&theirs.counts);
            if let Some(h) = &theirs.latency {
                let _ = mine.latency.get_or_insert_with(|| new_hist(2)).add(h);
            }
        }
    }
}
