//! What a run produced: the verdict, the summary, the report writer, and on failure a message
//! that names what broke and how to replay it bit for bit.

use std::path::{Path, PathBuf};

use crate::metrics::Measurements;
use crate::report::summary::{Summary, TrafficSummary};
use crate::scenario::Scenario;
use crate::system::Invariant;

use super::SEED_VAR;

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the report in {dir}: {source}")]
pub struct ReportError {
    /// The folder.
    pub dir: String,
    /// The cause.
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// A finished run. It displays as the command line's summary: the figures per load, the
/// checks, and a line per invariant and assertion.
#[derive(Debug)]
pub struct Outcome {
    scenario: Scenario,
    summary: Summary,
    measurements: Measurements,
}

impl Outcome {
    pub(super) fn new(scenario: Scenario, summary: Summary, measurements: Measurements) -> Outcome {
        Outcome {
            scenario,
            summary,
            measurements,
        }
    }

    /// Whether every assertion and every invariant holds.
    pub fn passed(&self) -> bool {
        self.summary.passed
    }

    /// The scenario as run (with the seed used).
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// The seed the run used.
    pub fn seed(&self) -> u64 {
        self.scenario.seed
    }

    /// Everything summary.json holds.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// What load `name` saw (sent, ok, errors, latency), if the scenario has that load.
    pub fn load(&self, name: &str) -> Option<&TrafficSummary> {
        self.summary.loads.get(name)
    }

    /// The value of check `name` (e.g. `orphaned_work`), if it is one.
    pub fn check(&self, name: &str) -> Option<u64> {
        self.summary.checks.get(name).copied()
    }

    /// The verdict on invariant `name`, if a system checked it.
    pub fn invariant(&self, name: &str) -> Option<&Invariant> {
        self.summary.invariants.iter().find(|i| i.name == name)
    }

    /// One line per broken assertion and invariant; empty when the run passed.
    pub fn failures(&self) -> Vec<String> {
        let assertions = self
            .summary
            .assertions
            .iter()
            .filter(|a| !a.passed)
            .map(|a| format!("FAIL {} [{}, {}]", a.verdict, a.scope, a.window));
        let invariants = self
            .summary
            .invariants
            .iter()
            .filter(|i| !i.holds)
            .map(|i| format!("BROKEN {}: {}", i.name, i.detail));
        assertions.chain(invariants).collect()
    }

    /// What failed, one stable key per failure: `invariant <name>`, or `assert <that> [<scope>,
    /// <window>]`. The observed values are left out, so the same failure in a changed run (a
    /// shrunk file, another rate) has the same key.
    pub fn failure_keys(&self) -> Vec<String> {
        failure_keys(&self.summary)
    }

    /// How to run this again, bit for bit: inside a test, the test with the seed in
    /// `WINDTUNNEL_SEED` (which overrides every other seed); elsewhere, the same program with it.
    pub fn replay(&self) -> String {
        let seed = self.seed();
        match std::thread::current().name().filter(|n| *n != "main") {
            Some(test) => format!("{SEED_VAR}={seed} cargo test {test} -- --exact"),
            None => format!("{SEED_VAR}={seed} and the same command"),
        }
    }

    /// What broke and how to replay it, or `None` when the run passed.
    pub fn failure_message(&self) -> Option<String> {
        if self.passed() {
            return None;
        }
        let mut text = format!(
            "scenario {} failed at seed {}:\n",
            self.summary.scenario, self.summary.seed
        );
        for line in self.failures() {
            text.push_str(&format!("  {line}\n"));
        }
        text.push_str(&format!("replay bit for bit: {}", self.replay()));
        Some(text)
    }

    /// Panics with [`Outcome::failure_message`] unless the run passed: the one line a test needs.
    #[track_caller]
    pub fn assert_passed(&self) {
        if let Some(message) = self.failure_message() {
            panic!("{message}");
        }
    }

    /// Writes the report (summary.json, plots, spectra, traces, index.html) into `dir`;
    /// returns index.html's path.
    pub fn write_report(&self, dir: &Path) -> Result<PathBuf, ReportError> {
        crate::report::write_report(&self.summary, &self.measurements, dir).map_err(|source| {
            ReportError {
                dir: dir.display().to_string(),
                source,
            }
        })
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::report::text::render(&self.summary))
    }
}

/// The stable keys of what failed in `summary` (see [`Outcome::failure_keys`]).
pub fn failure_keys(summary: &Summary) -> Vec<String> {
    let assertions = summary
        .assertions
        .iter()
        .filter(|a| !a.passed)
        .map(|a| format!("assert {} [{}, {}]", a.that, a.scope, a.window));
    let invariants = summary
        .invariants
        .iter()
        .filter(|i| !i.holds)
        .map(|i| format!("invariant {}", i.name));
    invariants.chain(assertions).collect()
}
