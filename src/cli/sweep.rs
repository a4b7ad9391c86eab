//! `windtunnel sweep` and `windtunnel merge`: one scenario at many seeds, to find the seed that
//! breaks it, on one machine or split into shards across many.
//!
//! Each seed is a full run; only its verdicts and headline figures are kept (sweep.json, whose
//! format is `src/report/sweep.rs`), so a sweep of thousands of seeds stays small. Seeds run on
//! `--jobs` threads at once, each its own simulation; the results are ordered by seed, so
//! sweep.json does not depend on the threads. `--shard K/N` runs only every N-th seed of the
//! range, and `merge` joins the shards' files into the sweep.json one machine would have
//! written. A failing seed is replayed bit for bit with `windtunnel run FILE --seed N`.

use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::{load, EXIT_FAILED, EXIT_INVALID, EXIT_OK};
use crate::lock::lock;
use crate::report::sweep::{self as format, SeedResult, Shard, SweepReport};
use crate::scenario::Scenario;
use crate::system::Catalog;
use crate::tunnel::Tunnel;

/// The most seeds one sweep runs.
const MAX_SEEDS: u64 = 100_000;

/// Which seeds `--seeds` names: a count from `--first` (`20`), or an inclusive range (`1..200`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seeds {
    /// This many seeds from `--first`.
    Count(u64),
    /// From the first to the last, both included.
    Range(u64, u64),
}

/// Reads `--seeds`: `N` (1 to 100,000) or `A..B` (A ≤ B, at most 100,000 seeds).
pub(super) fn parse_seeds(text: &str) -> Result<Seeds, String> {
    let number = |t: &str| {
        t.trim()
            .parse::<u64>()
            .map_err(|_| format!("`{text}` is not a seed count (20) nor a range of seeds (1..200)"))
    };
    let seeds = match text.split_once("..") {
        Some((a, b)) => {
            let (a, b) = (number(a)?, number(b.strip_prefix('=').unwrap_or(b))?);
            if a > b {
                return Err(format!("`{text}`: the range ends before it starts"));
            }
            Seeds::Range(a, b)
        }
        None => Seeds::Count(number(text)?),
    };
    if let Seeds::Range(_, b) = seeds {
        if b > i64::MAX as u64 {
            return Err(format!("`{text}`: seeds go up to {}", i64::MAX));
        }
    }
    let n = match seeds {
        Seeds::Count(n) => n,
        Seeds::Range(a, b) => (b - a).saturating_add(1),
    };
    if !(1..=MAX_SEEDS).contains(&n) {
        return Err(format!(
            "`{text}`: a sweep runs 1 to {MAX_SEEDS} seeds, not {n}"
        ));
    }
    Ok(seeds)
}

/// Reads `--shard K/N` (see [`Shard::parse`]).
pub(super) fn parse_shard(text: &str) -> Result<Shard, String> {
    Shard::parse(text)
}

/// Which seeds a sweep runs, and how.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// The range, both ends included.
    pub seeds: (u64, u64),
    /// This machine's share of it, if it is one of several.
    pub shard: Option<Shard>,
    /// Seeds run at once.
    pub jobs: usize,
    /// Whether each seed draws its own fault schedule (see `src/tunnel/swarm.rs`).
    pub swarm: bool,
}

/// Runs `file` at the seeds of `first..=last` (this shard's share of them, if `shard`) on
/// `jobs` threads; exit 1 if any seed fails an assertion or breaks an invariant.
pub fn sweep(catalog: &Catalog, file: &Path, plan: Plan, out: Option<PathBuf>, quiet: bool) -> u8 {
    let Plan {
        seeds: (first, last),
        shard,
        jobs,
        swarm,
    } = plan;
    let scenario = match load(catalog, file) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let hash = match std::fs::read(file) {
        Ok(bytes) => format::hash_bytes(&bytes),
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return EXIT_INVALID;
        }
    };
    let seeds: Vec<u64> = match shard {
        Some(s) => s.seeds(first, last),
        None => (first..=last).collect(),
    };
    if seeds.is_empty() {
        let n = last - first + 1;
        eprintln!(
            "error: --shard {}/{}: seeds {first}..{last} are only {n}, so this shard has none \
             (use at most {n} shards)",
            shard.map_or(0, |s| s.index),
            shard.map_or(0, |s| s.count),
        );
        return EXIT_INVALID;
    }
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<Result<SeedResult, String>>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, 64) {
            scope.spawn(|| loop {
                let Some(&seed) = seeds.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    return;
                };
                let outcome = run_seed(file, seed, swarm);
                let failed = outcome.is_err();
                if !quiet {
                    let mark = match &outcome {
                        Ok(r) if r.passed => "pass",
                        Ok(_) => "FAIL",
                        Err(_) => "error",
                    };
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    eprintln!("  seed {seed}: {mark} ({n} of {} done)", seeds.len());
                }
                lock(&outcomes).push(outcome);
                if failed {
                    next.store(seeds.len(), Ordering::Relaxed); // an error is the same at every seed
                }
            });
        }
    });
    let dir = out.unwrap_or_else(|| Path::new("reports").join(format!("{}-sweep", scenario.name)));
    let mut results = Vec::new();
    for outcome in std::mem::take(&mut *lock(&outcomes)) {
        match outcome {
            Ok(mut r) => {
                if !r.passed {
                    r.replay = Some(if swarm {
                        match write_swarm_file(catalog, file, &scenario, r.seed, &dir) {
                            Ok(path) => format!("{} run {}", super::program(), path.display()),
                            Err(e) => {
                                eprintln!("error: {e}");
                                return EXIT_INVALID;
                            }
                        }
                    } else {
                        format!(
                            "{} run {} --seed {}",
                            super::program(),
                            file.display(),
                            r.seed
                        )
                    });
                }
                results.push(r);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_INVALID;
            }
        }
    }
    let mut report = SweepReport::new(
        scenario.name.as_str(),
        &file.display().to_string(),
        &hash,
        first,
        last,
        shard,
        results,
    );
    report.swarm = swarm;
    finish(&report, &dir)
}

/// Writes sweep.json and sweep.png into `dir`, prints the summary, and gives the exit code:
/// what `sweep` and `merge` end with.
fn finish(report: &SweepReport, dir: &Path) -> u8 {
    let json = match format::write(dir, report) {
        Ok(path) => path,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_INVALID;
        }
    };
    if let Err(e) = crate::report::plots::write_sweep(report, &dir.join("sweep.png")) {
        eprintln!("error: {e}");
        return EXIT_INVALID;
    }
    for line in format::summary_lines(report, &json) {
        say!("{line}");
    }
    if report.failed_seeds.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

/// Joins the sweep.json files that `paths` name (files, or folders searched for them) into one
/// report in `out` (default `reports/<scenario>-merged/`): exit 2 if they are not shards of one
/// sweep or share a seed, else 1 if any seed failed, 0 if none did.
pub fn merge(paths: &[PathBuf], out: Option<PathBuf>) -> u8 {
    let files = match format::find_files(paths, out.as_deref()) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_INVALID;
        }
    };
    let mut reports = Vec::with_capacity(files.len());
    for f in files {
        match format::read(&f) {
            Ok(r) => reports.push((f, r)),
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_INVALID;
            }
        }
    }
    let report = match format::merge(&reports) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_INVALID;
        }
    };
    let missing = format::missing_seeds(&report);
    if let Some(seed) = missing.first() {
        eprintln!(
            "note: {} of seeds {}..{} have no result (the first is {seed}): is a shard missing?",
            missing.len(),
            report.first_seed,
            report.last_seed
        );
    }
    let dir =
        out.unwrap_or_else(|| Path::new("reports").join(format!("{}-merged", report.scenario)));
    finish(&report, &dir)
}

/// One seed's run, judged.
///
/// Each seed runs in a process of its own (this program, `sweep-seed FILE SEED`): runs on
/// threads of one process share tokio's task numbering, which decides the order a crashed
/// host's tasks spawned with `tokio::spawn` directly (by a service of a user's) are dropped in
/// (the framework's own are dropped in spawn order: `framework::task`), so only a process per
/// run replays exactly what `run --seed` does for every service (see `sim::run`).
fn run_seed(file: &Path, seed: u64, swarm: bool) -> Result<SeedResult, String> {
    let program = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut command = std::process::Command::new(program);
    command.arg("sweep-seed").arg(file).arg(seed.to_string());
    if swarm {
        command.arg("--swarm");
    }
    let out = command
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run seed {seed}: {e}"))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        return Err(format!("seed {seed}: {}", why.trim()));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("seed {seed}: unreadable result: {e}"))
}

/// The scenario `file` with the fault schedule drawn for `seed` (see `src/tunnel/swarm.rs`),
/// as TOML text, and parsed.
fn swarm_scenario(
    catalog: &Catalog,
    file: &Path,
    scenario: &Scenario,
    seed: u64,
) -> Result<(String, Scenario), String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let drawn = crate::tunnel::swarm::draw(&text, scenario, seed).map_err(|e| e.to_string())?;
    let name = format!("{} (swarm seed {seed})", file.display());
    let parsed = crate::scenario::parse_str(&drawn, &name, catalog).map_err(|e| e.to_string())?;
    Ok((drawn, parsed))
}

/// Writes the drawn file of a failing swarm seed into `dir` as `swarm-seed-<seed>.toml`: a
/// plain scenario that replays it.
fn write_swarm_file(
    catalog: &Catalog,
    file: &Path,
    scenario: &Scenario,
    seed: u64,
    dir: &Path,
) -> Result<PathBuf, String> {
    let (mut text, _) = swarm_scenario(catalog, file, scenario, seed)?;
    if let Ok(value) = std::env::var(crate::system::sabotage::SABOTAGE_VAR) {
        let var = crate::system::sabotage::SABOTAGE_VAR;
        text = format!("# Drawn with {var}={value}: replay it with the same setting.\n{text}");
    }
    let path = dir.join(format!("swarm-seed-{seed}.toml"));
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&path, text))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// Runs `file` at `seed` in this process (with a drawn fault schedule if `swarm`) and prints
/// its result as JSON, for `sweep`.
pub fn sweep_seed(catalog: &Catalog, file: &Path, seed: u64, swarm: bool) -> u8 {
    let scenario = match load(catalog, file) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let scenario = if swarm {
        match swarm_scenario(catalog, file, &scenario, seed) {
            Ok((_, drawn)) => drawn,
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_INVALID;
            }
        }
    } else {
        scenario
    };
    match seed_result(catalog, &scenario, seed, swarm) {
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
fn seed_result(
    catalog: &Catalog,
    scenario: &Scenario,
    seed: u64,
    swarm: bool,
) -> Result<SeedResult, String> {
    let outcome = Tunnel::scenario(scenario.clone())
        .with_catalog(catalog.clone())
        .seed_from_env(false)
        .seed(seed)
        .run()
        .map_err(|e| e.to_string())?;
    let s = outcome.summary();
    if swarm && s.invariants.is_empty() {
        // A swarm seed is judged by the invariants alone: without any, "pass" would mean nothing.
        return Err(format!(
            "nothing judges a swarm seed of {}: its services check no invariants, and a swarm \
             run sets the file's assertions aside (use a plain sweep, or services with invariants)",
            scenario.name
        ));
    }
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
        goodput_per_s: s
            .loads
            .iter()
            .map(|(k, r)| (k.clone(), r.goodput_per_s))
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
        replay: None,
    })
}
