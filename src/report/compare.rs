//! `windtunnel compare A B`: two runs' summaries side by side.
//!
//! Works from the two report folders' `summary.json` alone, so it can compare runs made at
//! different times, seeds or versions. It answers "what changed": per load, the counts, error
//! rate and tail latencies of A and B with the change; the totals of the business metrics both
//! runs recorded; and whether each invariant held in A and in B. It writes them as a plain-text
//! table (for the terminal and CI logs), `compare.html` and `compare.png` (the two percentile
//! spectra overlaid).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::report::html;
use crate::report::plots::{self, PlotError};
use crate::report::summary::{Summary, TrafficSummary};

/// Why two runs could not be compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// A folder has no summary.json.
    #[error("no summary.json in {}: is it a report folder written by `windtunnel run`?", dir.display())]
    Missing {
        /// The folder.
        dir: PathBuf,
    },
    /// summary.json could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// summary.json is not a summary.
    #[error("{} is not a windtunnel summary: {source}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Where and why it does not parse.
        source: serde_json::Error,
    },
    /// An output file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The overlay plot could not be drawn.
    #[error(transparent)]
    Plot(#[from] PlotError),
}

/// What one run measured on one load, the figures compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// Requests issued.
    pub sent: u64,
    /// Answered ok.
    pub ok: u64,
    /// (sent - ok) / sent.
    pub error_rate: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
}

impl From<&TrafficSummary> for Figures {
    fn from(r: &TrafficSummary) -> Figures {
        Figures {
            sent: r.sent,
            ok: r.ok,
            error_rate: r.error_rate,
            p50_ms: r.latency_ms.p50,
            p99_ms: r.latency_ms.p99,
            p999_ms: r.latency_ms.p999,
            max_ms: r.latency_ms.max,
        }
    }
}

/// One load in both runs; `None` where a run has no such load.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadComparison {
    /// The load's name.
    pub load: String,
    /// Run A's figures.
    pub a: Option<Figures>,
    /// Run B's figures.
    pub b: Option<Figures>,
}

/// The outcome of [`compare`].
#[derive(Debug, Clone)]
pub struct CompareReport {
    /// How run A is named (its folder).
    pub label_a: String,
    /// How run B is named.
    pub label_b: String,
    /// Per load, in name order.
    pub loads: Vec<LoadComparison>,
    /// The side-by-side table, plain text, for the terminal.
    pub table: String,
    /// The overlaid spectra, `compare.png`.
    pub png: PathBuf,
    /// The page, `compare.html`.
    pub html: PathBuf,
}

/// Reads `dir/summary.json`.
pub fn read_summary(dir: &Path) -> Result<Summary, CompareError> {
    let path = dir.join("summary.json");
    let text = std::fs::read_to_string(&path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => CompareError::Missing {
            dir: dir.to_path_buf(),
        },
        _ => CompareError::Read {
            path: path.clone(),
            source,
        },
    })?;
    serde_json::from_str(&text).map_err(|source| CompareError::Malformed { path, source })
}

/// Names for the two runs: their folder names, or whole paths when those are equal.
fn labels(a_dir: &Path, b_dir: &Path) -> (String, String) {
    let name = |d: &Path| d.file_name().map(|n| n.to_string_lossy().into_owned());
    match (name(a_dir), name(b_dir)) {
        (Some(a), Some(b)) if a != b => (a, b),
        _ => (a_dir.display().to_string(), b_dir.display().to_string()),
    }
}

fn load_comparisons(a: &Summary, b: &Summary) -> Vec<LoadComparison> {
    let names: BTreeSet<&String> = a.loads.keys().chain(b.loads.keys()).collect();
    names
        .into_iter()
        .map(|name| LoadComparison {
            load: name.clone(),
            a: a.loads.get(name).map(Figures::from),
            b: b.loads.get(name).map(Figures::from),
        })
        .collect()
}

/// The relative change from `a` to `b`, e.g. `+12.5%`; `new` when `a` is zero and `b` is not.
fn change(a: f64, b: f64) -> String {
    if a == b {
        "same".to_string()
    } else if a == 0.0 {
        "new".to_string()
    } else {
        format!("{:+.1}%", (b - a) / a * 100.0)
    }
}

/// The change of a rate, in percentage points.
fn change_points(a: f64, b: f64) -> String {
    if a == b {
        "same".to_string()
    } else {
        format!("{:+.2} pp", (b - a) * 100.0)
    }
}

/// One compared figure: its name, A's and B's cells, and the change.
pub(crate) struct Line {
    /// The figure, e.g. `p99 ms`, `money.moved` or `ledger_conserved`.
    pub metric: String,
    /// A's value.
    pub a: String,
    /// B's value.
    pub b: String,
    /// The change from A to B.
    pub change: String,
}

type Metric = (&'static str, fn(&Figures) -> f64, bool);

/// Metrics compared: name, value, and whether the value is a rate (compared in points).
const METRICS: [Metric; 7] = [
    ("sent", |f| f.sent as f64, false),
    ("ok", |f| f.ok as f64, false),
    ("error rate", |f| f.error_rate, true),
    ("p50 ms", |f| f.p50_ms, false),
    ("p99 ms", |f| f.p99_ms, false),
    ("p99.9 ms", |f| f.p999_ms, false),
    ("max ms", |f| f.max_ms, false),
];

fn cell(v: f64, rate: bool, metric: &str) -> String {
    if rate {
        html::percent(v)
    } else if metric.ends_with("ms") {
        html::ms(v)
    } else {
        format!("{v:.0}")
    }
}

/// The lines of one load's comparison.
pub(crate) fn lines(r: &LoadComparison) -> Vec<Line> {
    METRICS
        .iter()
        .map(|(metric, value, rate)| {
            let a = r.a.as_ref().map(value);
            let b = r.b.as_ref().map(value);
            let change = match (a, b) {
                (Some(a), Some(b)) if *rate => change_points(a, b),
                (Some(a), Some(b)) => change(a, b),
                (Some(_), None) => "only in A".to_string(),
                _ => "only in B".to_string(),
            };
            let show = |v: Option<f64>| v.map_or("-".to_string(), |v| cell(v, *rate, metric));
            Line {
                metric: metric.to_string(),
                a: show(a),
                b: show(b),
                change,
            }
        })
        .collect()
}

/// The totals of the business metrics both runs recorded, in name order.
fn business_lines(a: &Summary, b: &Summary) -> Vec<Line> {
    a.business
        .iter()
        .filter_map(|(name, in_a)| {
            let in_b = b.business.get(name)?;
            Some(Line {
                metric: name.clone(),
                a: in_a.total.to_string(),
                b: in_b.total.to_string(),
                change: change(in_a.total as f64, in_b.total as f64),
            })
        })
        .collect()
}

/// Whether each invariant held in A and in B: A's in its order, then those only B checked.
fn invariant_lines(a: &Summary, b: &Summary) -> Vec<Line> {
    let holds = |s: &Summary, name: &str| {
        s.invariants
            .iter()
            .find(|i| i.name == name)
            .map(|i| i.holds)
    };
    let mut names: Vec<&str> = a.invariants.iter().map(|i| i.name.as_str()).collect();
    for i in &b.invariants {
        if !names.contains(&i.name.as_str()) {
            names.push(&i.name);
        }
    }
    let show = |h: Option<bool>| match h {
        Some(true) => "holds",
        Some(false) => "FAILS",
        None => "-",
    };
    names
        .into_iter()
        .map(|name| {
            let (in_a, in_b) = (holds(a, name), holds(b, name));
            let change = match (in_a, in_b) {
                (Some(x), Some(y)) if x == y => "same",
                (Some(_), Some(true)) => "now holds",
                (Some(_), Some(_)) => "now fails",
                (Some(_), None) => "only in A",
                (None, _) => "only in B",
            };
            Line {
                metric: name.to_string(),
                a: show(in_a).to_string(),
                b: show(in_b).to_string(),
                change: change.to_string(),
            }
        })
        .collect()
}

/// One titled block of the comparison.
struct Section {
    title: String,
    lines: Vec<Line>,
}

/// Every block, in the order shown: each load, then business totals and invariants if any.
fn sections(a: &Summary, b: &Summary, loads: &[LoadComparison]) -> Vec<Section> {
    let mut out: Vec<Section> = loads
        .iter()
        .map(|r| Section {
            title: format!("load {}", r.load),
            lines: lines(r),
        })
        .collect();
    for (title, lines) in [
        ("business metrics (totals)", business_lines(a, b)),
        ("invariants", invariant_lines(a, b)),
    ] {
        if !lines.is_empty() {
            out.push(Section {
                title: title.to_string(),
                lines,
            });
        }
    }
    out
}

fn run_line(tag: &str, label: &str, s: &Summary) -> String {
    format!(
        "{tag} = {label}: scenario {}, seed {}, {:.0} s simulated, fingerprint {}, {}\n",
        s.scenario,
        s.seed,
        s.sim_seconds,
        s.fingerprint,
        if s.passed { "passed" } else { "FAILED" }
    )
}

fn text_table(
    label_a: &str,
    label_b: &str,
    a: &Summary,
    b: &Summary,
    loads: &[LoadComparison],
) -> String {
    let mut out = run_line("A", label_a, a) + &run_line("B", label_b, b);
    if a.fingerprint == b.fingerprint {
        out.push_str("the fingerprints are equal: the two runs saw the same events\n");
    }
    let width = label_a
        .chars()
        .count()
        .max(label_b.chars().count())
        .clamp(10, 28);
    for section in sections(a, b, loads) {
        let names = section
            .lines
            .iter()
            .map(|l| l.metric.chars().count())
            .fold(12, usize::max);
        let _ = writeln!(out, "\n{}", section.title);
        let _ = writeln!(
            out,
            "  {:<names$} {:>width$} {:>width$} {:>10}",
            "", label_a, label_b, "change"
        );
        for l in section.lines {
            let _ = writeln!(
                out,
                "  {:<names$} {:>width$} {:>width$} {:>10}",
                l.metric, l.a, l.b, l.change
            );
        }
    }
    if loads.is_empty() {
        out.push_str("\nneither run has a load to compare\n");
    }
    out
}

fn html_page(report: &CompareReport, a: &Summary, b: &Summary) -> String {
    let e = html::escape;
    let mut body = format!(
        "<h1>compare {} vs {}</h1>\n<table>\n",
        e(&report.label_a),
        e(&report.label_b)
    );
    body.push_str(
        "<tr><th></th><th>scenario</th><th>seed</th><th>fingerprint</th><th>verdict</th></tr>\n",
    );
    for (tag, label, s) in [("A", &report.label_a, a), ("B", &report.label_b, b)] {
        let verdict = if s.passed {
            "<span class=\"pass\">pass</span>"
        } else {
            "<span class=\"fail\">fail</span>"
        };
        let _ = writeln!(
            body,
            "<tr><th>{tag}: {}</th><td>{}</td><td>{}</td><td><code>{}</code></td><td>{verdict}</td></tr>",
            e(label),
            e(&s.scenario),
            s.seed,
            e(&s.fingerprint)
        );
    }
    body.push_str("</table>\n");
    for section in sections(a, b, &report.loads) {
        let _ = write!(
            body,
            "<h2>{}</h2>\n<table>\n<tr><th></th><th>{}</th><th>{}</th><th>change</th></tr>\n",
            e(&section.title),
            e(&report.label_a),
            e(&report.label_b)
        );
        for l in section.lines {
            let _ = writeln!(
                body,
                "<tr><th>{}</th><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                e(&l.metric),
                e(&l.a),
                e(&l.b),
                e(&l.change)
            );
        }
        body.push_str("</table>\n");
    }
    body.push_str(
        "<h2>Latency percentile spectra</h2>\n<figure><img src=\"compare.png\" alt=\"percentile spectra of both runs\" \
         width=\"1200\" height=\"700\"></figure>\n",
    );
    html::document(
        &format!("compare {} vs {}", report.label_a, report.label_b),
        &body,
    )
}

/// Compares the runs whose reports are in `a_dir` and `b_dir`, writes `compare.png` and
/// `compare.html` into `out_dir` (created if missing), and returns the comparison.
pub fn compare(a_dir: &Path, b_dir: &Path, out_dir: &Path) -> Result<CompareReport, CompareError> {
    let a = read_summary(a_dir)?;
    let b = read_summary(b_dir)?;
    let (label_a, label_b) = labels(a_dir, b_dir);
    std::fs::create_dir_all(out_dir).map_err(|source| CompareError::Write {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let png = out_dir.join("compare.png");
    plots::write_overlay(&a, &b, &label_a, &label_b, &png)?;
    let loads = load_comparisons(&a, &b);
    let table = text_table(&label_a, &label_b, &a, &b, &loads);
    let html_path = out_dir.join("compare.html");
    let report = CompareReport {
        label_a,
        label_b,
        loads,
        table,
        png,
        html: html_path.clone(),
    };
    std::fs::write(&html_path, html_page(&report, &a, &b)).map_err(|source| {
        CompareError::Write {
            path: html_path,
            source,
        }
    })?;
    Ok(report)
}
