//! `index.html`: one self-contained page tying a run's report together.
//!
//! Inline CSS, no script, relative links only, so the folder can be opened from disk, zipped or
//! attached to a ticket and still read. Every text that comes from the scenario file (name,
//! description, labels, assertion text) or from the services (business metric and invariant
//! names, invariant details) is HTML-escaped; a link is written only for a file that exists in
//! the report folder, so the page never points at nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use crate::report::summary::{BusinessSummary, Invariant, Summary, TrafficSummary};

/// The business plot: shown in the business section rather than with the other plots.
const BUSINESS_PNG: &str = "business.png";

/// The page's style: readable tables, pass/fail colours, images scaled to the page.
const CSS: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1260px;\
padding:0 1em;color:#222;line-height:1.4}\
h1{margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}\
table{border-collapse:collapse;margin:.5em 0;font-size:.92em}\
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}\
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.pass{color:#176f2c;font-weight:bold}.fail{color:#b00020;font-weight:bold}\
.badge{display:inline-block;padding:.1em .6em;border-radius:.3em;color:#fff;font-size:.8em;\
vertical-align:middle}.badge.pass{background:#2e7d32;color:#fff}.badge.fail{background:#c62828;color:#fff}\
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #ddd}\
code{background:#f5f5f5;padding:0 .2em}.muted{color:#666}";

/// `text` with `&`, `<`, `>`, `"` and `'` escaped, safe in element text and quoted attributes.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A relative path as a URL path: each byte outside the unreserved set percent-encoded.
fn url_path(relative: &Path) -> String {
    let text = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/");
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// A whole HTML document with the shared style.
pub(crate) fn document(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape(title)
    )
}

/// `file` relative to `dir` if it is inside it and exists; plain relative paths are taken as
/// relative to `dir`. Paths that climb out (`..`) are refused.
pub(crate) fn relative_existing(dir: &Path, file: &Path) -> Option<PathBuf> {
    let relative = if file.is_absolute() || file.starts_with(dir) {
        inside(dir, file)?
    } else {
        file.to_path_buf()
    };
    let plain = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    (plain && !relative.as_os_str().is_empty() && dir.join(&relative).is_file()).then_some(relative)
}

/// `file` without the `dir` prefix, comparing canonical paths when the plain ones differ.
fn inside(dir: &Path, file: &Path) -> Option<PathBuf> {
    if let Ok(rest) = file.strip_prefix(dir) {
        return Some(rest.to_path_buf());
    }
    let (dir, file) = (dir.canonicalize().ok()?, file.canonicalize().ok()?);
    file.strip_prefix(dir).ok().map(Path::to_path_buf)
}

/// A number of milliseconds for a table cell.
pub(crate) fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A fraction as a percentage for a table cell.
pub(crate) fn percent(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

/// `code n, code n`, or `none`.
fn errors_by_code(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "none".to_string();
    }
    errors
        .iter()
        .map(|(c, n)| format!("{} {n}", escape(c)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn heading(summary: &Summary) -> String {
    let (class, word) = if summary.passed {
        ("pass", "PASS")
    } else {
        ("fail", "FAIL")
    };
    format!(
        "<h1>{} <span class=\"badge {class}\">{word}</span></h1>\n<p>{}</p>\n",
        escape(&summary.scenario),
        escape(&summary.description)
    )
}

fn facts(summary: &Summary) -> String {
    let rows = [
        ("seed", summary.seed.to_string()),
        (
            "fingerprint",
            format!("<code>{}</code>", escape(&summary.fingerprint)),
        ),
        ("simulated", format!("{:.1} s", summary.sim_seconds)),
        ("wall clock", format!("{:.2} s", summary.wall_seconds)),
        ("speedup", format!("{:.1}x real time", summary.speedup)),
        ("events", summary.events.to_string()),
        ("time bucket", format!("{} s", summary.bucket_seconds)),
    ];
    let mut out = String::from("<table>\n");
    for (k, v) in rows {
        let _ = writeln!(out, "<tr><th>{k}</th><td>{v}</td></tr>");
    }
    out.push_str("</table>\n<p class=\"muted\">Latency is measured in the simulation with 1 ms resolution, from each request's intended start.</p>\n");
    out
}

fn assertions(summary: &Summary) -> String {
    let mut out = String::from("<h2>Assertions</h2>\n");
    if summary.assertions.is_empty() {
        out.push_str("<p class=\"muted\">The scenario makes no assertion.</p>\n");
        return out;
    }
    out.push_str(
        "<table>\n<tr><th></th><th>assertion</th><th>on</th><th>window</th><th>verdict</th></tr>\n",
    );
    for a in &summary.assertions {
        let (class, mark) = if a.passed {
            ("pass", "&#10004; pass")
        } else {
            ("fail", "&#10008; fail")
        };
        let _ = writeln!(
            out,
            "<tr><td class=\"{class}\">{mark}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&a.that),
            escape(&a.scope),
            escape(&a.window),
            escape(&a.verdict)
        );
    }
    out.push_str("</table>\n");
    out
}

/// The pass/fail cell of a verdict, styled as in the assertions table.
fn verdict_cell(holds: bool) -> &'static str {
    if holds {
        "<td class=\"pass\">&#10004; PASS</td>"
    } else {
        "<td class=\"fail\">&#10008; FAIL</td>"
    }
}

/// `k=v, k=v`, escaped, or nothing.
fn figures_list(figures: &BTreeMap<String, i64>) -> String {
    figures
        .iter()
        .map(|(k, v)| format!("{}={v}", escape(k)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn invariant_row(i: &Invariant) -> String {
    format!(
        "<tr>{}<td><code>{}</code></td><td>{}</td><td>{}</td></tr>\n",
        verdict_cell(i.holds),
        escape(&i.name),
        escape(&i.detail),
        figures_list(&i.figures)
    )
}

/// The invariants checked after the run; nothing when none apply.
fn invariants(summary: &Summary) -> String {
    if summary.invariants.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<h2>Invariants</h2>\n<table>\n<tr><th></th><th>invariant</th><th>found</th><th>figures</th></tr>\n",
    );
    for i in &summary.invariants {
        out.push_str(&invariant_row(i));
    }
    out.push_str("</table>\n");
    out
}

/// A rate per second for a table cell.
fn per_second(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn business_row(name: &str, b: &BusinessSummary, sim_seconds: f64) -> String {
    let mut numbers = vec![
        b.total.to_string(),
        per_second(b.total as f64 / sim_seconds.max(f64::MIN_POSITIVE)),
    ];
    match &b.values {
        Some(v) => numbers.extend([
            v.p50.to_string(),
            v.p90.to_string(),
            v.p99.to_string(),
            v.max.to_string(),
            format!("{:.1}", v.mean),
        ]),
        None => numbers.extend(std::iter::repeat_n(String::new(), 5)),
    }
    let cells: String = numbers
        .iter()
        .map(|n| format!("<td class=\"n\">{n}</td>"))
        .collect();
    format!(
        "<tr><td>{}</td><td>{}</td>{cells}</tr>\n",
        escape(name),
        escape(&b.kind)
    )
}

/// The business metrics table and, if it was written, their plot; nothing when there are none.
fn business(summary: &Summary, plot: Option<&Path>) -> String {
    if summary.business.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<h2>Business metrics</h2>\n<table>\n<tr><th>name</th><th>kind</th><th>total</th>\
         <th>per second</th><th>p50</th><th>p90</th><th>p99</th><th>max</th><th>mean</th></tr>\n",
    );
    for (name, b) in &summary.business {
        out.push_str(&business_row(name, b, summary.sim_seconds));
    }
    out.push_str(
        "</table>\n<p class=\"muted\">Per second is the total over the simulated run; \
         percentiles are of the values recorded (histograms only).</p>\n",
    );
    if let Some(plot) = plot {
        out.push_str(&figure(plot));
    }
    out
}

fn faults(summary: &Summary) -> String {
    let mut out = String::from("<h2>Faults</h2>\n");
    if summary.faults.is_empty() {
        out.push_str("<p class=\"muted\">No fault was injected.</p>\n");
        return out;
    }
    out.push_str("<table>\n<tr><th>fault</th><th>from (s)</th><th>to (s)</th></tr>\n");
    for f in &summary.faults {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"n\">{:.1}</td><td class=\"n\">{:.1}</td></tr>",
            escape(&f.label),
            f.start_s,
            f.end_s
        );
    }
    out.push_str("</table>\n");
    out
}

fn route_row(name: &str, r: &TrafficSummary) -> String {
    let l = &r.latency_ms;
    let numbers = [
        r.sent.to_string(),
        r.ok.to_string(),
        r.dropped.to_string(),
        percent(r.error_rate),
        format!("{:.1}", r.goodput_per_s),
        ms(l.p50),
        ms(l.p90),
        ms(l.p99),
        ms(l.p999),
        ms(l.max),
        ms(l.mean),
    ];
    let cells: String = numbers
        .iter()
        .map(|n| format!("<td class=\"n\">{n}</td>"))
        .collect();
    format!(
        "<tr><td>{}</td><td>{}</td>{cells}</tr>\n",
        escape(name),
        errors_by_code(&r.errors)
    )
}

fn traffic_table(title: &str, what: &str, routes: &BTreeMap<String, TrafficSummary>) -> String {
    let mut out = format!("<h2>{title}</h2>\n");
    if routes.is_empty() {
        let _ = writeln!(out, "<p class=\"muted\">No {what} in this run.</p>");
        return out;
    }
    out.push_str(
        "<table>\n<tr><th>name</th><th>errors by code</th><th>sent</th><th>ok</th><th>dropped</th>\
         <th>error rate</th><th>goodput /s</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th>\
         <th>p99.9 ms</th><th>max ms</th><th>mean ms</th></tr>\n",
    );
    for (name, r) in routes {
        out.push_str(&route_row(name, r));
    }
    out.push_str("</table>\n");
    out
}

fn checks(summary: &Summary) -> String {
    let mut out = String::from("<h2>Checks</h2>\n<table>\n<tr><th>check</th><th>value</th></tr>\n");
    for (name, v) in &summary.checks {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"n\">{v}</td></tr>",
            escape(name)
        );
    }
    out.push_str("</table>\n");
    out
}

/// One plot, linked to itself, with its file name as caption.
fn figure(image: &Path) -> String {
    let name = escape(&image.to_string_lossy());
    format!(
        "<figure><a href=\"{url}\"><img src=\"{url}\" alt=\"{name}\" width=\"1200\" height=\"700\"></a>\
         <figcaption>{name}</figcaption></figure>\n",
        url = escape(&url_path(image))
    )
}

fn figures(images: &[&PathBuf]) -> String {
    let mut out = String::from("<h2>Plots</h2>\n");
    if images.is_empty() {
        out.push_str("<p class=\"muted\">No plot was written.</p>\n");
    }
    for image in images {
        out.push_str(&figure(image));
    }
    out
}

/// A few words on what a linked file is and how to open it.
fn describe_file(f: &Path) -> &'static str {
    let name = f
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match f.extension().and_then(|e| e.to_str()) {
        _ if name == "summary.json" => ": every figure on this page, machine-readable",
        Some("hgrm") => ": percentile spectrum in HdrHistogram's format (loads in its plotter)",
        _ if name.contains("trace") => {
            ": kept request traces (open in Perfetto or chrome://tracing)"
        }
        Some("png") => ": plot",
        _ => "",
    }
}

fn file_list(links: &[PathBuf]) -> String {
    let mut out = String::from("<h2>Files</h2>\n<ul>\n");
    for f in links {
        let _ = writeln!(
            out,
            "<li><a href=\"{}\">{}</a>{}</li>",
            escape(&url_path(f)),
            escape(&f.to_string_lossy()),
            describe_file(f)
        );
    }
    out.push_str("</ul>\n");
    out
}

/// Writes `index.html` into `dir` and returns its path. `files` are the report's other files
/// (plots, summary.json, .hgrm, traces), absolute or relative to `dir`: those that exist are
/// linked, PNGs are also shown inline (`business.png` beside the business metrics table); the
/// others are left out. The invariants and business metrics sections appear only when the
/// summary has some.
pub fn write_index(
    summary: &Summary,
    dir: &Path,
    files: &[PathBuf],
) -> Result<PathBuf, std::io::Error> {
    let mut links: Vec<PathBuf> = Vec::new();
    for f in files.iter().filter_map(|f| relative_existing(dir, f)) {
        if !links.contains(&f) {
            links.push(f);
        }
    }
    let (business_plot, images): (Vec<&PathBuf>, Vec<&PathBuf>) = links
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")))
        .partition(|f| f.as_path() == Path::new(BUSINESS_PNG));
    let body = [
        heading(summary),
        invariants(summary),
        facts(summary),
        assertions(summary),
        faults(summary),
        traffic_table("Loads", "load", &summary.loads),
        traffic_table(
            "Endpoints (as their callers saw them)",
            "endpoint",
            &summary.endpoints,
        ),
        checks(summary),
        business(summary, business_plot.first().map(|p| p.as_path())),
        figures(&images),
        file_list(&links),
    ]
    .concat();
    let path = dir.join("index.html");
    std::fs::write(
        &path,
        document(&format!("windtunnel: {}", summary.scenario), &body),
    )?;
    Ok(path)
}
