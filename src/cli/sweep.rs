//! `windtunnel sweep`: one scenario at many seeds, to find the seed that breaks it.
//!
//! Each seed is a full run; only its verdicts and headline figures are kept (sweep.json), so a
//! sweep of thousands of seeds stays small. Seeds run on `--jobs` threads at once, each its own
//! simulation; the results are ordered by seed, so sweep.json does not depend on the threads.
//! A failing seed is replayed bit for bit with `windtunnel run FILE --seed N`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{load, EXIT_FAILED, EXIT_INVALID, EXIT_OK};
use crate::lock::lock;
use crate::scenario::Scenario;
use crate::system::Catalog;
use crate::tunnel::Tunnel;

/// One seed's outcome.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SeedResult {
    seed: u64,
    passed: bool,
    fingerprint: String,
    /// p99 latency per load, ms.
    p99_ms: BTreeMap<String, f64>,
    /// Error rate per load.
    error_rate: BTreeMap<String, f64>,
    /// Verdicts of the assertions that failed and details of the invariants broken.
    failed: Vec<String>,
    /// Names of the invariants that did not hold.
    broken_invariants: Vec<String>,
}

/// What sweep.json holds.
#[derive(Debug, Serialize)]
struct SweepReport {
    scenario: String,
    first_seed: u64,
    seeds: u64,
    passed: u64,
    failed_seeds: Vec<u64>,
    results: Vec<SeedResult>,
}

/// Runs `file` at seeds `first..first + seeds` on `jobs` threads; exit 1 if any seed fails an
/// assertion or breaks an invariant.
pub fn sweep(
    catalog: &Catalog,
    file: &Path,
    first: u64,
    seeds: u64,
    jobs: usize,
    out: Option<PathBuf>,
    quiet: bool,
) -> u8 {
    let scenario = match load(catalog, file) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let next = AtomicU64::new(first);
    let end = first.saturating_add(seeds);
    let done = AtomicU64::new(0);
    let outcomes: Mutex<Vec<Result<SeedResult, String>>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, 64) {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= end {
                    return;
                }
                let outcome = run_seed(file, seed);
                let failed = outcome.is_err();
                if !quiet {
                    let mark = match &outcome {
                        Ok(r) if r.passed => "pass",
                        Ok(_) => "FAIL",
                        Err(_) => "error",
                    };
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    eprintln!("  seed {seed}: {mark} ({n} of {seeds} done)");
                }
                lock(&outcomes).push(outcome);
                if failed {
                    next.store(end, Ordering::Relaxed); // an error is the same at every seed
                }
            });
        }
    });
    let mut results = Vec::new();
    for outcome in std::mem::take(&mut *lock(&outcomes)) {
        match outcome {
            Ok(r) => results.push(r),
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_INVALID;
            }
        }
    }
    results.sort_by_key(|r| r.seed);
    let failed_seeds: Vec<u64> = results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| r.seed)
        .collect();
    let report = SweepReport {
        scenario: scenario.name.as_str().to_string(),
        first_seed: first,
        seeds,
        passed: seeds - failed_seeds.len() as u64,
        failed_seeds,
        results,
    };
    let dir = out.unwrap_or_else(|| Path::new("reports").join(format!("{}-sweep", scenario.name)));
    if let Err(e) = write(&dir, &report) {
        eprintln!(
            "error: cannot write {}: {e}",
            dir.join("sweep.json").display()
        );
        return EXIT_INVALID;
    }
    print_report(&report, file, &dir);
    if report.failed_seeds.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

/// One seed's run, judged.
///
/// Each seed runs in a process of its own (this program, `sweep-seed FILE SEED`): runs on
/// threads of one process share tokio's task numbering, which decides the order a crashed
/// host's tasks are dropped in, so only a process per run replays exactly what `run --seed`
/// does (see `sim::run`).
fn run_seed(file: &Path, seed: u64) -> Result<SeedResult, String> {
    let program = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let out = std::process::Command::new(program)
        .arg("sweep-seed")
        .arg(file)
        .arg(seed.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run seed {seed}: {e}"))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        return Err(format!("seed {seed}: {}", why.trim()));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("seed {seed}: unreadable result: {e}"))
}

/// Runs `file` at `seed` in this process and prints its result as JSON, for `sweep`.
pub fn sweep_seed(catalog: &Catalog, file: &Path, seed: u64) -> u8 {
    let scenario = match load(catalog, file) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match seed_result(catalog, &scenario, seed) {
        Ok(result) => match serde_json::to_string(&result) {
            Ok(json) => {
                say!("{json}");
                EXIT_OK
            }
            Err(e) => {
                eprintln!("error: {e}");
                EXIT_INVALID
            }
        },
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_INVALID
        }
    }
}

/// One seed's run, judged, in this process.
fn seed_result(catalog: &Catalog, scenario: &Scenario, seed: u64) -> Result<SeedResult, String> {
    let outcome = Tunnel::scenario(scenario.clone())
        .with_catalog(catalog.clone())
        .seed_from_env(false)
        .seed(seed)
        .run()
        .map_err(|e| e.to_string())?;
    let s = outcome.summary();
    Ok(SeedResult {
        seed,
        passed: s.passed,
        fingerprint: s.fingerprint.clone(),
        p99_ms: s
            .loads
            .iter()
            .map(|(k, r)| (k.clone(), r.latency_ms.p99))
            .collect(),
        error_rate: s
            .loads
            .iter()
            .map(|(k, r)| (k.clone(), r.error_rate))
            .collect(),
        failed: s
            .assertions
            .iter()
            .filter(|a| !a.passed)
            .map(|a| format!("{} [{}, {}]", a.verdict, a.scope, a.window))
            .chain(
                s.invariants
                    .iter()
                    .filter(|i| !i.holds)
                    .map(|i| format!("invariant {} broken: {}", i.name, i.detail)),
            )
            .collect(),
        broken_invariants: s
            .invariants
            .iter()
            .filter(|i| !i.holds)
            .map(|i| i.name.clone())
            .collect(),
    })
}

fn write(dir: &Path, report: &SweepReport) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("sweep.json"),
        serde_json::to_string_pretty(report)? + "\n",
    )?;
    Ok(())
}

fn print_report(report: &SweepReport, file: &Path, dir: &Path) {
    say!(
        "{}: {} of {} seeds pass (seeds {}..{})",
        report.scenario,
        report.passed,
        report.seeds,
        report.first_seed,
        report.first_seed + report.seeds - 1
    );
    for r in report.results.iter().filter(|r| !r.passed) {
        for v in &r.failed {
            say!("  FAIL seed {}: {v}", r.seed);
        }
        say!(
            "    replay: {} run {} --seed {}",
            super::program(),
            file.display(),
            r.seed
        );
    }
    say!("  results: {}", dir.join("sweep.json").display());
}
