//! What a run leaves behind: summary.json, plots, percentile spectra, traces and index.html.
//!
//! Everything is drawn from the [`summary::Summary`] (and, for `.hgrm` files, the histograms it
//! was built from), never from the running system.

#[cfg(feature = "plots")]
pub mod compare;
pub mod hgrm;
pub mod html;
#[cfg(feature = "plots")]
pub mod plots;
pub mod summary;
pub mod sweep;
pub mod text;

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::metrics::Measurements;
use summary::Summary;

/// A file name for a route or endpoint: anything but letters, digits, `.`, `-` and `_` becomes
/// `_`.
pub fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes a run's report into `dir`: summary.json, plots (with feature `plots`), a percentile
/// spectrum per load (`<load>.hgrm`), traces (`trace.json`) and index.html. Returns
/// index.html's path.
pub fn write_report(
    summary: &Summary,
    measurements: &Measurements,
    dir: &Path,
) -> Result<PathBuf, Box<dyn std::error::Error + Send + Sync>> {
    std::fs::create_dir_all(dir)?;
    let mut files = Vec::new();
    // Streamed: a long run's summary is tens of MB of JSON.
    let path = dir.join("summary.json");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    serde_json::to_writer_pretty(&mut out, summary)?;
    out.write_all(b"\n")?;
    out.flush()?;
    files.push(path);
    for (name, series) in &measurements.loads {
        let path = dir.join(format!("{}.hgrm", file_stem(name)));
        std::fs::write(&path, hgrm::render(series.overall()))?;
        files.push(path);
    }
    let path = dir.join("trace.json");
    let traces = crate::metrics::traces::chrome_trace_json(&summary.traces);
    std::fs::write(&path, serde_json::to_string(&traces)? + "\n")?;
    files.push(path);
    #[cfg(feature = "plots")]
    files.extend(plots::write_plots(summary, dir)?);
    remove_stale(dir, &files)?;
    Ok(html::write_index(summary, dir, &files)?)
}

/// The plots a report may hold; one of them this run did not draw is left from an earlier run.
const PLOT_FILES: [&str; 6] = [
    "latency.png",
    "throughput.png",
    "distribution.png",
    "instances.png",
    "trace.png",
    "business.png",
];

/// Removes what an earlier report in the same folder left that this one did not write (a
/// plot it had no data for, the `.hgrm` of a load it does not have), so the folder shows one
/// run. Other files are not touched.
fn remove_stale(dir: &Path, written: &[PathBuf]) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let ours = PLOT_FILES.contains(&name) || name.ends_with(".hgrm");
        if ours && !written.contains(&path) {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}
