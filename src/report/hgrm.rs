//! `.hgrm` files: a latency histogram as HdrHistogram's percentile distribution text.
//!
//! The layout is byte-for-byte what HdrHistogram's Java `outputPercentileDistribution` prints
//! (and wrk2's `--latency` output mirrors): five ticks per half distance to 100%, values scaled
//! from the recorded microseconds to milliseconds, and the `#[Mean ...]` footer. Keeping it exact
//! is the point: HdrHistogram's own plotter (and every tool that reads its files) loads these
//! files as they are. [`parse`] reads the rows back, for tests and for `compare`.

use hdrhistogram::Histogram;

/// Recorded values are microseconds; the file speaks milliseconds.
const SCALE_US_PER_MS: f64 = 1000.0;
/// Ticks per half distance to 100%, as the Java default.
const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// A row of a `.hgrm` file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HgrmError {
    /// A row does not have 3 or 4 columns.
    #[error("line {line}: expected `value percentile count [1/(1-p)]`, found {found:?}")]
    Shape {
        /// 1-based line number.
        line: usize,
        /// The line.
        found: String,
    },
    /// A column is not a number.
    #[error("line {line}: {column} {found:?} is not a number")]
    Number {
        /// 1-based line number.
        line: usize,
        /// Which column.
        column: &'static str,
        /// The text found.
        found: String,
    },
    /// Neither the header nor any row: not a `.hgrm` text.
    #[error("no `Value Percentile TotalCount` header and no percentile rows: not a .hgrm text")]
    NotHgrm,
}

/// Decimal places of values: the histogram's significant digits, as Java prints them.
fn decimals(h: &Histogram<u64>) -> usize {
    usize::from(h.sigfig())
}

/// Java's `subBucketCount`: the power of two holding `2 * 10^sigfig` (the Rust crate keeps it
/// private, but derives it the same way).
fn sub_bucket_count(h: &Histogram<u64>) -> u64 {
    let largest = 2.0 * 10f64.powi(i32::from(h.sigfig()));
    1u64 << (largest.log2().ceil() as u32)
}

fn rows(h: &Histogram<u64>, d: usize) -> String {
    let mut out = String::new();
    let mut total = 0u64;
    for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        total += v.count_since_last_iteration();
        let value = v.value_iterated_to() as f64 / SCALE_US_PER_MS;
        let q = v.quantile_iterated_to();
        if q < 1.0 {
            let inverse = 1.0 / (1.0 - q);
            out.push_str(&format!(
                "{value:12.d$} {q:2.12} {total:10} {inverse:14.2}\n"
            ));
        } else {
            out.push_str(&format!("{value:12.d$} {q:2.12} {total:10}\n"));
        }
    }
    out
}

fn footer(h: &Histogram<u64>, d: usize) -> String {
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (
            h.mean() / SCALE_US_PER_MS,
            h.stdev() / SCALE_US_PER_MS,
            h.max() as f64 / SCALE_US_PER_MS,
        )
    };
    format!(
        "#[Mean    = {mean:12.d$}, StdDeviation   = {stdev:12.d$}]\n\
         #[Max     = {max:12.d$}, Total count    = {total:12}]\n\
         #[Buckets = {buckets:12}, SubBuckets     = {sub:12}]\n",
        total = h.len(),
        buckets = h.buckets(),
        sub = sub_bucket_count(h),
    )
}

/// The percentile distribution of `h` (values in microseconds) as HdrHistogram prints it, in
/// milliseconds.
pub fn render(h: &Histogram<u64>) -> String {
    let d = decimals(h);
    let mut out = format!(
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if !h.is_empty() {
        out.push_str(&rows(h, d));
    }
    out.push_str(&footer(h, d));
    out
}

fn number<T: std::str::FromStr>(
    text: &str,
    line: usize,
    column: &'static str,
) -> Result<T, HgrmError> {
    text.parse().map_err(|_| HgrmError::Number {
        line,
        column,
        found: text.to_string(),
    })
}

/// One row: `(value_ms, percentile as a fraction 0..=1, total count)`; `None` for the header,
/// blank lines and `#` footers.
fn parse_row(line_no: usize, line: &str) -> Result<Option<(f64, f64, u64)>, HgrmError> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') || line.starts_with("Value") {
        return Ok(None);
    }
    let columns: Vec<&str> = line.split_whitespace().collect();
    if !(3..=4).contains(&columns.len()) {
        return Err(HgrmError::Shape {
            line: line_no,
            found: line.to_string(),
        });
    }
    Ok(Some((
        number(columns[0], line_no, "value")?,
        number(columns[1], line_no, "percentile")?,
        number(columns[2], line_no, "total count")?,
    )))
}

/// Reads the rows of a `.hgrm` text: `(value_ms, percentile as a fraction 0..=1, total count)`.
/// An empty histogram's file (header and footer only) gives no rows.
pub fn parse(text: &str) -> Result<Vec<(f64, f64, u64)>, HgrmError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(row) = parse_row(i + 1, line)? {
            out.push(row);
        }
    }
    let has_header = text.lines().any(|l| l.trim_start().starts_with("Value"));
    if out.is_empty() && !has_header {
        return Err(HgrmError::NotHgrm);
    }
    Ok(out)
}
