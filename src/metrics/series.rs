//! Latency and outcome counts for one route, load or endpoint: overall and per time bucket.
//!
//! Memory is bounded by histograms, never by per-request lists: an overall HdrHistogram (3
//! significant digits) and one histogram (2 digits) per bucket that saw traffic. A bucket's
//! histogram is dense (26 KB, cheap to record into) only while requests may still end in it:
//! once the run is a few buckets past it, it is packed to its nonzero counters (about a byte
//! each), so a long run holds a few open buckets per series and packed ones for the rest. A late
//! request into a packed bucket unpacks it again; packing is lossless, so windows, merged from
//! buckets, and the per-bucket timeline read exactly what dense buckets would give. A bucket's
//! error counts name their codes by index into the series' own list of codes, not by a map of
//! strings each. A series' memory is thus bounded by its bucket count (at most 3,600), whatever
//! the run's length.

mod packed;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
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

/// One bucket's outcome counts: a [`Counts`] whose error codes are indices into the series'
/// list of codes (a few bytes a code, where a map of strings takes hundreds).
#[derive(Debug, Clone, Default)]
struct BucketCounts {
    sent: u64,
    ok: u64,
    dropped: u64,
    /// (code, count), in the order codes first failed here.
    errors: Vec<(u32, u64)>,
}

impl BucketCounts {
    fn add(&mut self, outcome: &Outcome, codes: &mut Vec<Arc<str>>) {
        self.sent += 1;
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::Dropped => self.dropped += 1,
            Outcome::Error(code) => self.add_error(intern(codes, code), 1),
        }
    }

    fn add_error(&mut self, code: u32, n: u64) {
        match self.errors.iter_mut().find(|(c, _)| *c == code) {
            Some((_, count)) => *count += n,
            None => self.errors.push((code, n)),
        }
    }

    /// Adds these counts to `to`, naming codes from `codes`.
    fn add_to(&self, to: &mut Counts, codes: &[Arc<str>]) {
        to.sent += self.sent;
        to.ok += self.ok;
        to.dropped += self.dropped;
        for (code, n) in &self.errors {
            let name = codes.get(*code as usize).map_or("", |c| &**c);
            *to.errors.entry(name.to_string()).or_insert(0) += n;
        }
    }

    /// Adds `other`'s counts, whose codes index `theirs`, to these, whose codes index `mine`.
    fn merge(&mut self, other: &BucketCounts, mine: &mut Vec<Arc<str>>, theirs: &[Arc<str>]) {
        self.sent += other.sent;
        self.ok += other.ok;
        self.dropped += other.dropped;
        for (code, n) in &other.errors {
            let name = theirs.get(*code as usize).map_or("", |c| &**c);
            self.add_error(intern(mine, name), *n);
        }
    }
}

/// The index of `code` in `codes`, added at the end if it is not there.
fn intern(codes: &mut Vec<Arc<str>>, code: &str) -> u32 {
    let i = codes.iter().position(|c| &**c == code).unwrap_or_else(|| {
        codes.push(Arc::from(code));
        codes.len() - 1
    });
    u32::try_from(i).unwrap_or(u32::MAX)
}

fn micros(latency: Duration) -> u64 {
    u64::try_from(latency.as_micros())
        .unwrap_or(MAX_MICROS)
        .clamp(1, MAX_MICROS)
}

fn new_hist(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, sigfig).expect("constant histogram bounds are valid")
}

/// How many buckets behind the latest one a request of the series ended in stay open (dense):
/// older ones are packed. Requests are bucketed by when they start and recorded when they end,
/// so a bucket takes records for as long as its slowest request lasts; past this, the rare late
/// one unpacks it again.
const OPEN_BUCKETS: usize = 3;

/// One bucket's latency histogram (2 digits), in whichever form it is kept.
#[derive(Debug, Clone, Default)]
enum Latency {
    /// Nothing answered in the bucket.
    #[default]
    Empty,
    /// Dense, to record into.
    Open(Box<Histogram<u64>>),
    /// Packed: closed, or not yet reopened by a late request.
    Packed(packed::Packed),
}

impl Latency {
    /// Adds this bucket's counts to `h` (a 2-digit histogram).
    fn add_to(&self, h: &mut Histogram<u64>) {
        match self {
            Latency::Empty => {}
            // Same bounds by construction: adding cannot fail.
            Latency::Open(open) => {
                let _ = h.add(&**open);
            }
            Latency::Packed(p) => p.add_to(h),
        }
    }

    /// The histogram, borrowed when open, unpacked when packed.
    fn histogram(&self) -> Option<Cow<'_, Histogram<u64>>> {
        match self {
            Latency::Empty => None,
            Latency::Open(h) => Some(Cow::Borrowed(&**h)),
            Latency::Packed(p) => {
                let mut h = new_hist(2);
                p.add_to(&mut h);
                Some(Cow::Owned(h))
            }
        }
    }

    /// Packs an open histogram (an empty one becomes `Empty`).
    fn close(&mut self) {
        if let Latency::Open(h) = self {
            *self = if h.is_empty() {
                Latency::Empty
            } else {
                Latency::Packed(packed::Packed::pack(h))
            };
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Bucket {
    counts: BucketCounts,
    latency: Latency,
}

/// Outcomes and latencies of one stream of requests over the run.
#[derive(Debug, Clone)]
pub struct Series {
    bucket_width: Duration,
    overall: Histogram<u64>,
    totals: Counts,
    buckets: Vec<Bucket>,
    /// The error codes buckets name, in the order they first failed.
    codes: Vec<Arc<str>>,
    /// The buckets whose histogram is open, in the order they were opened.
    open: Vec<usize>,
    /// The latest bucket a request of the series ended in.
    latest: usize,
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
            codes: Vec::new(),
            open: Vec::new(),
            latest: 0,
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
        self.buckets[i].counts.add(outcome, &mut self.codes);
        if *outcome != Outcome::Dropped {
            let us = micros(latency);
            self.overall.saturating_record(us);
            self.record_latency(i, us);
        }
        let ended = self.index(start.saturating_add(latency));
        if ended > self.latest {
            self.latest = ended;
            self.close_old();
        }
    }

    /// Records `us` in bucket `i`'s histogram, opening it (created, or unpacked) if it was not.
    fn record_latency(&mut self, i: usize, us: u64) {
        match &mut self.buckets[i].latency {
            Latency::Open(h) => h.saturating_record(us),
            latency => {
                let mut h = new_hist(2);
                latency.add_to(&mut h);
                h.saturating_record(us);
                *latency = Latency::Open(Box::new(h));
                self.open.push(i);
            }
        }
    }

    /// Packs the open buckets more than [`OPEN_BUCKETS`] behind the latest.
    fn close_old(&mut self) {
        let keep_from = self.latest.saturating_sub(OPEN_BUCKETS);
        let buckets = &mut self.buckets;
        self.open.retain(|&i| {
            if i >= keep_from {
                return true;
            }
            buckets[i].latency.close();
            false
        });
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
    pub fn bucket_counts(&self) -> impl Iterator<Item = Counts> + '_ {
        self.buckets.iter().map(|b| {
            let mut counts = Counts::default();
            b.counts.add_to(&mut counts, &self.codes);
            counts
        })
    }

    /// Per-bucket latency histograms (None where nothing was answered), in time order: borrowed
    /// where a bucket is open, unpacked (one at a time, as the iterator goes) where it is packed.
    pub fn bucket_latency(&self) -> impl Iterator<Item = Option<Cow<'_, Histogram<u64>>>> {
        self.buckets.iter().map(|b| b.latency.histogram())
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
            b.counts.add_to(&mut counts, &self.codes);
            b.latency.add_to(&mut latency);
        }
        WindowStats {
            counts,
            latency,
            span,
        }
    }

    /// Merges another series of the same shape into this one. A bucket open in this series stays
    /// open; any other that gains counts is packed.
    pub fn merge(&mut self, other: &Series) {
        let _ = self.overall.add(&other.overall);
        self.totals.merge(&other.totals);
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            mine.counts
                .merge(&theirs.counts, &mut self.codes, &other.codes);
            if matches!(theirs.latency, Latency::Empty) {
                continue;
            }
            if let Latency::Open(h) = &mut mine.latency {
                theirs.latency.add_to(h);
                continue;
            }
            let mut h = new_hist(2);
            mine.latency.add_to(&mut h);
            theirs.latency.add_to(&mut h);
            mine.latency = Latency::Packed(packed::Packed::pack(&h));
        }
        self.latest = self.latest.max(other.latest);
        self.close_old();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Buckets as series kept them before packing: a dense histogram and a `Counts` each.
    struct Dense {
        width: Duration,
        buckets: Vec<Histogram<u64>>,
        counts: Vec<Counts>,
    }

    impl Dense {
        fn new(width: Duration, n: usize) -> Dense {
            Dense {
                width,
                buckets: (0..n).map(|_| new_hist(2)).collect(),
                counts: vec![Counts::default(); n],
            }
        }

        fn record(&mut self, start: Duration, latency: Duration, outcome: &Outcome) {
            let i = (start.as_nanos() / self.width.as_nanos()) as usize;
            let i = i.min(self.buckets.len() - 1);
            self.counts[i].add(outcome);
            if *outcome != Outcome::Dropped {
                self.buckets[i].saturating_record(micros(latency));
            }
        }

        fn window(&self, window: &Range<Duration>) -> Histogram<u64> {
            self.window_stats(window).1
        }

        fn window_stats(&self, window: &Range<Duration>) -> (Counts, Histogram<u64>) {
            let (mut counts, mut h) = (Counts::default(), new_hist(2));
            for (i, b) in self.buckets.iter().enumerate() {
                let start = self.width * i as u32;
                if start + self.width > window.start && start < window.end {
                    h.add(b).expect("same bounds");
                    counts.merge(&self.counts[i]);
                }
            }
            (counts, h)
        }

        /// Checks every window and bucket of `series` against these buckets.
        fn check(&self, series: &Series, run: Duration) {
            for w in windows() {
                let got = series.window(&w, run);
                let (counts, latency) = self.window_stats(&w);
                assert_eq!(got.counts, counts, "window {w:?}");
                assert!(got.latency == latency, "window {w:?}");
            }
            for (i, (c, h)) in series
                .bucket_counts()
                .zip(series.bucket_latency())
                .enumerate()
            {
                assert_eq!(c, self.counts[i], "bucket {i}");
                let h = h.map(Cow::into_owned).unwrap_or_else(|| new_hist(2));
                assert!(h == self.buckets[i], "bucket {i}");
            }
        }
    }

    /// Deterministic requests: one every 7 ms, latencies from 0.2 ms to about 100 ms; one in
    /// fifty times out, one in fifty is dropped, one in 150 is refused as unavailable.
    fn requests(seconds: u64) -> Vec<(Duration, Duration, Outcome)> {
        let mut out = Vec::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for ms in (0..seconds * 1000).step_by(7) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let latency = Duration::from_micros(200 + x % 1_000 * (1 + x % 97));
            let outcome = match x % 50 {
                0 => Outcome::Error("timeout".into()),
                1 => Outcome::Dropped,
                2 if ms % 3 == 0 => Outcome::Error("unavailable".into()),
                _ => Outcome::Ok,
            };
            out.push((Duration::from_millis(ms), latency, outcome));
        }
        out
    }

    fn windows() -> Vec<Range<Duration>> {
        let s = Duration::from_secs;
        vec![
            s(0)..s(1),
            s(3)..s(4),
            s(2)..s(9),
            s(10)..s(20),
            s(0)..s(19),
            Duration::from_millis(2_500)..Duration::from_millis(17_500),
        ]
    }

    #[test]
    fn packed_buckets_answer_windows_exactly_as_dense_ones() {
        let (width, n, run) = (Duration::from_secs(1), 20, Duration::from_secs(20));
        let mut series = Series::new(width, n);
        let mut dense = Dense::new(width, n);
        for (start, latency, outcome) in requests(20) {
            series.record(start, latency, &outcome);
            dense.record(start, latency, &outcome);
        }
        // A late request into a bucket packed long ago, and one far past the others' ends.
        let late = [
            (Duration::from_millis(1_200), Duration::from_secs(15)),
            (Duration::from_millis(4_000), Duration::from_secs(3_000)),
        ];
        assert!(matches!(series.buckets[1].latency, Latency::Packed(_)));
        for (start, latency) in late {
            let outcome = Outcome::Error("late".into());
            series.record(start, latency, &outcome);
            dense.record(start, latency, &outcome);
        }
        assert!(
            series.open.len() <= OPEN_BUCKETS + 1 + late.len(),
            "open: {:?}",
            series.open
        );
        let packed = series
            .buckets
            .iter()
            .filter(|b| matches!(b.latency, Latency::Packed(_)))
            .count();
        assert!(
            packed >= n - OPEN_BUCKETS - 1 - late.len(),
            "{packed} packed"
        );
        dense.check(&series, run);
        for w in windows() {
            let got = series.window(&w, run).latency;
            let want = dense.window(&w);
            assert!(got == want, "window {w:?}");
            assert_eq!(
                (got.value_at_quantile(0.99), got.max(), got.mean().to_bits()),
                (
                    want.value_at_quantile(0.99),
                    want.max(),
                    want.mean().to_bits()
                ),
            );
        }
        // Whole-run figures come from the overall histogram, untouched by packing.
        assert!(series.window(&(Duration::ZERO..run), run).latency == *series.overall());
    }

    #[test]
    fn merged_series_answer_windows_as_their_dense_buckets_added() {
        let (width, n, run) = (Duration::from_secs(1), 20, Duration::from_secs(20));
        let mut a = Series::new(width, n);
        let mut b = Series::new(width, n);
        // `b` fails with a code `a` never sees, so their lists of codes differ.
        b.record(
            Duration::ZERO,
            Duration::from_millis(1),
            &Outcome::Error("refused".into()),
        );
        let mut dense = Dense::new(width, n);
        dense.record(
            Duration::ZERO,
            Duration::from_millis(1),
            &Outcome::Error("refused".into()),
        );
        for (k, (start, latency, outcome)) in requests(20).into_iter().enumerate() {
            // `b` only sees the first half of the run: merged into `a`, its buckets meet packed
            // ones there, and open ones when `a` is merged into it.
            let to = if k % 3 == 0 && start < Duration::from_secs(10) {
                &mut b
            } else {
                &mut a
            };
            to.record(start, latency, &outcome);
            dense.record(start, latency, &outcome);
        }
        let mut merged = a.clone();
        merged.merge(&b);
        assert_eq!(merged.totals().sent, a.totals().sent + b.totals().sent);
        dense.check(&merged, run);
        let mut other_way = b.clone();
        assert!(!other_way.open.is_empty());
        other_way.merge(&a);
        dense.check(&other_way, run);
        // And into a series with nothing yet.
        let mut empty = Series::new(width, n);
        empty.merge(&a);
        empty.merge(&b);
        dense.check(&empty, run);
        // A record after the merge lands in the right bucket, packed or not.
        let (start, late) = (Duration::from_millis(500), Outcome::Error("late".into()));
        merged.record(start, Duration::from_secs(30), &late);
        dense.record(start, Duration::from_secs(30), &late);
        dense.check(&merged, run);
    }
}
