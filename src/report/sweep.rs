//! sweep.json: what `windtunnel sweep` writes for one scenario at many seeds, how shards'
//! files are merged into the file one sweep over all their seeds would have written, and the
//! spread of the headline figures across seeds (min / median / p90 / max).
//!
//! The command line runs the seeds (`src/cli/sweep.rs`); this module only reads, checks and
//! writes the results, so that a sweep and a merge of shards share one format and one summary.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::framework::ids::Fnv1a;

/// The windtunnel version that writes sweep.json; `merge` refuses to mix versions.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// One seed's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedResult {
    /// The seed.
    pub seed: u64,
    /// Whether every assertion held and every invariant was kept.
    pub passed: bool,
    /// The run's fingerprint: equal fingerprints, equal histories.
    pub fingerprint: String,
    /// p99 latency per load, ms.
    pub p99_ms: BTreeMap<String, f64>,
    /// Error rate per load.
    pub error_rate: BTreeMap<String, f64>,
    /// Goodput per load: requests answered ok per simulated second.
    pub goodput_per_s: BTreeMap<String, f64>,
    /// Verdicts of the assertions that failed (each with its scope and window) and details of
    /// the invariants broken.
    pub failed: Vec<String>,
    /// Names of the invariants that did not hold.
    pub broken_invariants: Vec<String>,
    /// For a failing seed, the command that replays it bit for bit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<String>,
}

/// Which share of a sweep's seeds one run took: shard `index` of `count`, 1-based. The seed at
/// position `i` (from 0) of the range belongs to shard `i % count + 1`, so neighbouring seeds,
/// and the slow ones among them, spread over the shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This shard, 1 to `count`.
    pub index: u64,
    /// How many shards the range is split into.
    pub count: u64,
}

impl Shard {
    /// Reads `K/N`, with 1 ≤ K ≤ N.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || format!("`{text}` is not a shard: write K/N, e.g. 1/4 (K from 1 to N)");
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let index: u64 = k.trim().parse().map_err(|_| bad())?;
        let count: u64 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(format!("`{text}`: the number of shards must be at least 1"));
        }
        if index == 0 || index > count {
            return Err(format!(
                "`{text}`: the shard must be from 1 to {count} (shards are counted from 1; \
                 from a 0-based index such as JOB_COMPLETION_INDEX, add 1)"
            ));
        }
        Ok(Shard { index, count })
    }

    /// The seeds of `first..=last` that belong to this shard, in order.
    pub fn seeds(&self, first: u64, last: u64) -> Vec<u64> {
        (first..=last)
            .enumerate()
            .filter(|(i, _)| *i as u64 % self.count == self.index - 1)
            .map(|(_, s)| s)
            .collect()
    }
}

/// What sweep.json holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepReport {
    /// The windtunnel version that ran the seeds.
    pub windtunnel_version: String,
    /// The scenario's name.
    pub scenario: String,
    /// The scenario file as it was given on the command line.
    pub scenario_file: String,
    /// FNV-1a (64 bits, 16 hex digits) of the scenario file's bytes: shards of one sweep agree.
    pub scenario_hash: String,
    /// The first seed of the range swept.
    pub first_seed: u64,
    /// The last seed of the range swept (inclusive).
    pub last_seed: u64,
    /// This run's share of the range, if it was one shard of several.
    pub shard: Option<Shard>,
    /// Whether each seed ran a fault schedule drawn for it (`sweep --swarm`), judged by the
    /// invariants, instead of the file's own faults and assertions.
    #[serde(default)]
    pub swarm: bool,
    /// How many seeds this file holds results for.
    pub seeds: u64,
    /// How many of them passed.
    pub passed: u64,
    /// The seeds that failed, ascending.
    pub failed_seeds: Vec<u64>,
    /// One result per seed, ascending by seed.
    pub results: Vec<SeedResult>,
}

impl SweepReport {
    /// A report of `results` (sorted here by seed), with the counts filled in.
    pub fn new(
        scenario: &str,
        scenario_file: &str,
        scenario_hash: &str,
        first_seed: u64,
        last_seed: u64,
        shard: Option<Shard>,
        mut results: Vec<SeedResult>,
    ) -> SweepReport {
        results.sort_by_key(|r| r.seed);
        let failed_seeds: Vec<u64> = results
            .iter()
            .filter(|r| !r.passed)
            .map(|r| r.seed)
            .collect();
        SweepReport {
            windtunnel_version: VERSION.to_string(),
            scenario: scenario.to_string(),
            scenario_file: scenario_file.to_string(),
            scenario_hash: scenario_hash.to_string(),
            first_seed,
            last_seed,
            shard,
            swarm: false,
            seeds: results.len() as u64,
            passed: (results.len() - failed_seeds.len()) as u64,
            failed_seeds,
            results,
        }
    }
}

/// FNV-1a of `bytes`, as 16 hex digits.
pub fn hash_bytes(bytes: &[u8]) -> String {
    let mut h = Fnv1a::default();
    h.write(bytes);
    format!("{:016x}", h.finish())
}

/// Why sweep.json files could not be read or merged. Every message names the file(s).
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// A file or folder could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not a sweep.json of this format.
    #[error("{}: not a sweep.json written by windtunnel {VERSION}: {why}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// Two files disagree on what they are results of.
    #[error("{} and {} {why}: they are not shards of one sweep", a.display(), b.display())]
    Mismatch {
        /// The first file.
        a: PathBuf,
        /// The second file.
        b: PathBuf,
        /// How they differ.
        why: String,
    },
    /// Two files hold results for the same seed.
    #[error("{} and {} both hold seed {seed} (and {more} more in common): each seed must come \
             from one shard only", a.display(), b.display())]
    Overlap {
        /// The first file.
        a: PathBuf,
        /// The second file.
        b: PathBuf,
        /// The first seed both hold.
        seed: u64,
        /// How many other seeds both hold.
        more: usize,
    },
    /// Nothing to merge.
    #[error("no sweep.json found in {0}")]
    Empty(String),
}

/// Reads one sweep.json and checks that its results are ordered by seed, once each.
pub fn read(path: &Path) -> Result<SweepReport, SweepError> {
    let text = std::fs::read_to_string(path).map_err(|source| SweepError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let report: SweepReport = serde_json::from_str(&text).map_err(|e| SweepError::Format {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    if report.results.windows(2).any(|w| w[0].seed >= w[1].seed) {
        return Err(SweepError::Format {
            path: path.to_path_buf(),
            why: "its results are not in ascending order of seed, each seed once".to_string(),
        });
    }
    Ok(report)
}

/// The sweep.json files `paths` name: a file as it is, a folder's sweep.json files at any depth
/// (as a CI job's downloaded artifacts lie, one folder each), sorted; files in `skip` (the
/// merge's own output folder) are left out.
pub fn find_files(paths: &[PathBuf], skip: Option<&Path>) -> Result<Vec<PathBuf>, SweepError> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), SweepError> {
        let io = |source| SweepError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        entries.sort();
        for p in entries {
            // A link to a folder is not followed: a link back up would never end.
            let is_dir = std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir());
            if is_dir {
                walk(&p, out)?;
            } else if p.file_name().is_some_and(|n| n == "sweep.json") {
                out.push(p);
            }
        }
        Ok(())
    }
    let skip = skip.and_then(|d| std::fs::canonicalize(d).ok());
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found)?;
            found.retain(|f| {
                let parent = f.parent().and_then(|d| std::fs::canonicalize(d).ok());
                skip.is_none() || parent != skip
            });
            if found.is_empty() {
                return Err(SweepError::Empty(p.display().to_string()));
            }
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    // A file named twice (`merge shards shards/1/sweep.json`) is read once.
    let mut seen = BTreeSet::new();
    files.retain(|f| seen.insert(std::fs::canonicalize(f).unwrap_or_else(|_| f.clone())));
    Ok(files)
}

/// Merges shards' reports (`(file, report)` pairs) into the report one sweep over all their
/// seeds would have written. Refuses reports of another scenario file (by hash), of another
/// windtunnel version, and two reports holding the same seed. The range is the shards' own
/// when they agree on it, else from the smallest seed to the largest.
pub fn merge(reports: &[(PathBuf, SweepReport)]) -> Result<SweepReport, SweepError> {
    let Some((first_path, first)) = reports.first() else {
        return Err(SweepError::Empty("the files given".to_string()));
    };
    let mut owner: BTreeMap<u64, &PathBuf> = BTreeMap::new();
    let mut results = Vec::new();
    for (path, r) in reports {
        let mismatch = |why: String| SweepError::Mismatch {
            a: first_path.clone(),
            b: path.clone(),
            why,
        };
        if r.scenario_hash != first.scenario_hash {
            return Err(mismatch(format!(
                "are results of different scenario files (hash {} and {})",
                first.scenario_hash, r.scenario_hash
            )));
        }
        if r.swarm != first.swarm {
            return Err(mismatch(
                "are one swarm sweep and one plain sweep (`--swarm` on one only)".to_string(),
            ));
        }
        if r.windtunnel_version != first.windtunnel_version {
            return Err(mismatch(format!(
                "were written by different windtunnel versions ({} and {})",
                first.windtunnel_version, r.windtunnel_version
            )));
        }
        // Every seed is checked against the earlier files before any is taken, so the error
        // names the first file that holds a seed of this one.
        let common: Vec<(u64, &PathBuf)> = r
            .results
            .iter()
            .filter_map(|s| owner.get(&s.seed).map(|p| (s.seed, *p)))
            .collect();
        if let Some((seed, other)) = common.first() {
            return Err(SweepError::Overlap {
                a: (*other).clone(),
                b: path.clone(),
                seed: *seed,
                more: common.len() - 1,
            });
        }
        for s in &r.results {
            owner.insert(s.seed, path);
            results.push(s.clone());
        }
    }
    let same_range = reports
        .iter()
        .all(|(_, r)| (r.first_seed, r.last_seed) == (first.first_seed, first.last_seed));
    let (lo, hi) = if same_range {
        (first.first_seed, first.last_seed)
    } else {
        let lo = owner.keys().next().copied().unwrap_or(first.first_seed);
        let hi = owner.keys().next_back().copied().unwrap_or(first.last_seed);
        (lo, hi)
    };
    let mut merged = SweepReport::new(
        &first.scenario,
        &first.scenario_file,
        &first.scenario_hash,
        lo,
        hi,
        None,
        results,
    );
    merged.windtunnel_version = first.windtunnel_version.clone();
    merged.swarm = first.swarm;
    Ok(merged)
}

/// The seeds of the report's range that it holds no result for (a shard not merged).
pub fn missing_seeds(report: &SweepReport) -> Vec<u64> {
    let have: BTreeSet<u64> = report.results.iter().map(|r| r.seed).collect();
    (report.first_seed..=report.last_seed)
        .filter(|s| !have.contains(s))
        .collect()
}

/// Writes `report` as `dir/sweep.json` (creating `dir`) and returns the file's path.
pub fn write(dir: &Path, report: &SweepReport) -> Result<PathBuf, SweepError> {
    let path = dir.join("sweep.json");
    let io = |source| SweepError::Write {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let json = serde_json::to_string_pretty(report).map_err(|e| SweepError::Format {
        path: path.clone(),
        why: e.to_string(),
    })?;
    std::fs::write(&path, json + "\n").map_err(io)?;
    Ok(path)
}

/// min / median / p90 / max of one figure across seeds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// The smallest.
    pub min: f64,
    /// The median (nearest rank).
    pub median: f64,
    /// The 90th percentile (nearest rank).
    pub p90: f64,
    /// The largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
            v[i - 1]
        };
        Some(Spread {
            min: *v.first()?,
            median: rank(0.5),
            p90: rank(0.9),
            max: *v.last()?,
        })
    }
}

/// Which figure of a seed result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    /// p99 latency, ms.
    P99,
    /// Error rate, a fraction.
    ErrorRate,
    /// Goodput, requests per simulated second.
    Goodput,
}

impl Figure {
    /// All three, in the order they are printed.
    pub const ALL: [Figure; 3] = [Figure::P99, Figure::ErrorRate, Figure::Goodput];

    /// The figure's values per load, one per seed that measured it, in seed order.
    pub fn per_load(self, report: &SweepReport) -> BTreeMap<String, Vec<f64>> {
        let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for r in &report.results {
            let values = match self {
                Figure::P99 => &r.p99_ms,
                Figure::ErrorRate => &r.error_rate,
                Figure::Goodput => &r.goodput_per_s,
            };
            for (load, v) in values {
                out.entry(load.clone()).or_default().push(*v);
            }
        }
        out
    }

    /// The figure's value written with its unit.
    pub fn show(self, v: f64) -> String {
        match self {
            Figure::P99 => format!("{v:.1}ms"),
            Figure::ErrorRate => format!("{:.2}%", v * 100.0),
            Figure::Goodput => format!("{v:.1}/s"),
        }
    }

    /// Its name in the printed lines.
    pub fn name(self) -> &'static str {
        match self {
            Figure::P99 => "p99",
            Figure::ErrorRate => "error rate",
            Figure::Goodput => "goodput",
        }
    }
}

/// The spread lines across seeds, per load and figure: `gets p99: min 4.1ms, median ...`.
pub fn spread_lines(report: &SweepReport) -> Vec<String> {
    let mut lines = Vec::new();
    let figures: Vec<(Figure, BTreeMap<String, Vec<f64>>)> = Figure::ALL
        .iter()
        .map(|f| (*f, f.per_load(report)))
        .collect();
    let loads: BTreeSet<&String> = figures.iter().flat_map(|(_, m)| m.keys()).collect();
    for load in loads {
        for (figure, values) in &figures {
            let Some(s) = values.get(load).and_then(|v| Spread::of(v)) else {
                continue;
            };
            lines.push(format!(
                "{load} {}: min {}, median {}, p90 {}, max {}",
                figure.name(),
                figure.show(s.min),
                figure.show(s.median),
                figure.show(s.p90),
                figure.show(s.max)
            ));
        }
    }
    lines
}

/// The summary printed after a sweep or a merge: seeds passed, each failing seed's verdicts and
/// replay command, the spread across seeds, and where sweep.json is.
pub fn summary_lines(report: &SweepReport, json: &Path) -> Vec<String> {
    let shard = report
        .shard
        .map(|s| format!(", shard {}/{}", s.index, s.count))
        .unwrap_or_default();
    let mut lines = vec![format!(
        "{}: {} of {} seeds pass (seeds {}..{}{shard})",
        report.scenario, report.passed, report.seeds, report.first_seed, report.last_seed
    )];
    for r in report.results.iter().filter(|r| !r.passed) {
        for v in &r.failed {
            lines.push(format!("  FAIL seed {}: {v}", r.seed));
        }
        if let Some(replay) = &r.replay {
            lines.push(format!("    replay: {replay}"));
        }
    }
    let spread = spread_lines(report);
    if !spread.is_empty() {
        lines.push(format!("  across {} seeds:", report.seeds));
        lines.extend(spread.into_iter().map(|l| format!("    {l}")));
    }
    lines.push(format!("  results: {}", json.display()));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_a_range_round_robin_and_cover_it_once() {
        // Goal: K/N shards partition the range. Method: three shards of 1..=7, joined.
        let shards: Vec<Vec<u64>> = (1..=3)
            .map(|k| Shard { index: k, count: 3 }.seeds(1, 7))
            .collect();
        assert_eq!(shards, vec![vec![1, 4, 7], vec![2, 5], vec![3, 6]]);
        assert!(Shard::parse("0/3").is_err());
        assert!(Shard::parse("4/3").is_err());
        assert!(Shard::parse("1/0").is_err());
        assert!(Shard::parse("x").is_err());
        assert_eq!(Shard::parse("2/3"), Ok(Shard { index: 2, count: 3 }));
    }

    #[test]
    fn spread_takes_nearest_ranks() {
        // Goal: min / median / p90 / max as a reader computes them. Method: ten known values.
        let v: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        let s = Spread::of(&v).expect("values");
        assert_eq!((s.min, s.median, s.p90, s.max), (1.0, 5.0, 9.0, 10.0));
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(hash_bytes(b""), "cbf29ce484222325");
    }
}
