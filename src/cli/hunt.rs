//! `windtunnel shrink` and `windtunnel capacity`: hunting with many deterministic runs.
//!
//! Both run the scenario again and again in this process, one run after another (each run is
//! aligned to a fresh process's task numbering, so each replays exactly what `run` would), and
//! write a file a person reads: the shrunk scenario, or the capacity table and its plot.

use std::path::{Path, PathBuf};

use super::{load, EXIT_FAILED, EXIT_INVALID, EXIT_OK};
use crate::report::plots::{write_capacity, CapacityCurve, CapacityPoint};
use crate::system::Catalog;
use crate::tunnel::capacity::{self, Capacity, CapacityOptions};
use crate::tunnel::shrink::{self, ShrinkOptions};

/// Reads a scenario file's text after validating it, so errors carry locations.
fn read(catalog: &Catalog, file: &Path) -> Result<(crate::scenario::Scenario, String), u8> {
    let scenario = load(catalog, file)?;
    std::fs::read_to_string(file)
        .map(|text| (scenario, text))
        .map_err(|e| {
            eprintln!("error: cannot read {}: {e}", file.display());
            EXIT_INVALID
        })
}

/// `shrink FILE`: writes the smallest file found that fails the same way; exit 0 when one
/// was written, 2 when the file does not fail or cannot run.
pub fn shrink(
    catalog: &Catalog,
    file: &Path,
    seed: Option<u64>,
    failure: Option<String>,
    max_runs: u32,
    out: Option<PathBuf>,
) -> u8 {
    let (scenario, text) = match read(catalog, file) {
        Ok(read) => read,
        Err(code) => return code,
    };
    let options = ShrinkOptions {
        seed: seed.unwrap_or(scenario.seed),
        failure,
        max_runs,
    };
    eprintln!(
        "shrinking {} at seed {} (at most {max_runs} runs)",
        file.display(),
        options.seed
    );
    let name = file.display().to_string();
    let mut progress = |step: &str| eprintln!("  kept: {step}");
    let shrunk = match shrink::shrink(&text, &name, catalog, &options, &mut progress) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_INVALID;
        }
    };
    let out =
        out.unwrap_or_else(|| Path::new("reports").join(format!("{}-shrunk.toml", scenario.name)));
    if let Err(e) = out
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&out, &shrunk.text))
    {
        eprintln!("error: cannot write {}: {e}", out.display());
        return EXIT_INVALID;
    }
    say!(
        "{}: still fails {} with {} of {} faults ({} runs, {} changes kept)",
        scenario.name,
        shrunk.failure,
        shrunk.faults.1,
        shrunk.faults.0,
        shrunk.runs,
        shrunk.steps.len()
    );
    say!("  shrunk: {}", out.display());
    say!("  replay: {} run {}", super::program(), out.display());
    EXIT_OK
}

/// What `capacity` was asked.
pub struct CapacityArgs {
    /// The scenario files (the second, if any, side by side: a policy on and off).
    pub files: Vec<PathBuf>,
    /// The load whose rate is searched.
    pub load: String,
    /// The precision, as a fraction.
    pub precision: f64,
    /// Most probes per file.
    pub max_probes: u32,
    /// Where to write capacity.json and capacity.png.
    pub out: Option<PathBuf>,
}

/// `capacity FILE... --load NAME`: each file's capacity, side by side; exit 0 when every file
/// has one, 1 when one fails even at the lowest rate probed.
pub fn capacity(catalog: &Catalog, args: CapacityArgs) -> u8 {
    let mut results: Vec<Capacity> = Vec::new();
    for file in &args.files {
        let (scenario, text) = match read(catalog, file) {
            Ok(read) => read,
            Err(code) => return code,
        };
        let options = CapacityOptions {
            load: args.load.clone(),
            precision: args.precision,
            max_probes: args.max_probes,
            seed: scenario.seed,
        };
        eprintln!("capacity of load {} in {}", args.load, file.display());
        let mut progress = |p: &capacity::Probe| {
            let verdict = if p.passed { "holds" } else { "FAILS" };
            eprintln!(
                "  {:>10.2}/s: {verdict} (p99 {:.1} ms, errors {:.2}%, goodput {:.1}/s)",
                p.rate,
                p.p99_ms,
                p.error_rate * 100.0,
                p.goodput_per_s
            );
        };
        let name = file.display().to_string();
        match capacity::capacity(&text, &name, catalog, &options, &mut progress) {
            Ok(c) => results.push(c),
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_INVALID;
            }
        }
    }
    let first = results
        .first()
        .map_or("capacity".to_string(), |c| c.scenario.clone());
    let dir = args
        .out
        .unwrap_or_else(|| Path::new("reports").join(format!("{first}-capacity")));
    if let Err(e) = write(&dir, &results) {
        eprintln!("error: cannot write into {}: {e}", dir.display());
        return EXIT_INVALID;
    }
    let mut code = EXIT_OK;
    for c in &results {
        match (c.rate, c.failing) {
            (Some(rate), Some(failing)) => say!(
                "{}: capacity of load {} is {rate}/s (fails at {failing}/s; {} probes)",
                c.scenario,
                c.load,
                c.probes.len()
            ),
            (Some(rate), None) => say!(
                "{}: load {} holds at every rate probed, up to {rate}/s ({} probes)",
                c.scenario,
                c.load,
                c.probes.len()
            ),
            (None, _) => {
                code = EXIT_FAILED;
                let low = c.probes.iter().map(|p| p.rate).fold(f64::MAX, f64::min);
                say!(
                    "{}: load {} fails even at {low}/s: no capacity",
                    c.scenario,
                    c.load
                );
            }
        }
    }
    say!("  plot: {}", dir.join("capacity.png").display());
    code
}

fn write(dir: &Path, results: &[Capacity]) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("capacity.json"),
        serde_json::to_string_pretty(results)? + "\n",
    )?;
    let curves: Vec<CapacityCurve> = results
        .iter()
        .map(|c| CapacityCurve {
            label: c.scenario.clone(),
            capacity: c.rate,
            points: c
                .probes
                .iter()
                .map(|p| CapacityPoint {
                    rate: p.rate,
                    p99_ms: p.p99_ms,
                    error_rate: p.error_rate,
                    goodput_per_s: p.goodput_per_s,
                })
                .collect(),
        })
        .collect();
    let title = match results {
        [one] => format!("{}: load {} against offered rate", one.scenario, one.load),
        _ => "capacity side by side".to_string(),
    };
    write_capacity(&title, &curves, &dir.join("capacity.png"))?;
    Ok(())
}
