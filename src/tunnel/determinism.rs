//! The determinism check: a scenario run twice at one seed must give the same event log, event
//! for event; where it does not, the first event that differs is named from both runs.
//!
//! The first run keeps one hash per event (and per load result); the second compares each of
//! its own hashes as it goes and describes its own event at the first that differs, with the
//! last one both agree on. Only then does a third run replay the first, to describe the first
//! run's event at that index (checking on the way that it reproduces the first run, or saying
//! that it did not). Memory is one `u64` per event.

use std::fmt;
use std::sync::Arc;

use crate::metrics::{Divergence, EventLog, Side};
use crate::scenario::Scenario;
use crate::sim::{self, NoProgress, Progress, RunError, Stepping};
use crate::system::Catalog;

use super::Outcome;

/// What a determinism check found.
// One per check: the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Determinism {
    /// Both runs had the same events, in the same order.
    Identical {
        /// Events (and load results) each run had.
        events: u64,
    },
    /// The runs parted: the first event that differs, from both sides.
    Diverged(Divergence),
}

impl Determinism {
    /// Whether the two runs agreed event for event.
    pub fn passed(&self) -> bool {
        matches!(self, Determinism::Identical { .. })
    }

    /// Where the runs parted, if they did.
    pub fn divergence(&self) -> Option<&Divergence> {
        match self {
            Determinism::Identical { .. } => None,
            Determinism::Diverged(d) => Some(d),
        }
    }
}

impl fmt::Display for Determinism {
    /// `determinism: PASS (N events identical)`, or `determinism: FAIL, ...` with the event
    /// from each run on lines of their own.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Determinism::Identical { events } => {
                write!(f, "determinism: PASS ({events} events identical)")
            }
            Determinism::Diverged(d) => {
                write!(f, "determinism: FAIL, two runs at one seed differ: {d}")
            }
        }
    }
}

/// A run judged as usual, and whether a second run at the same seed replayed it.
#[derive(Debug)]
pub struct DeterminismCheck {
    /// The first run: its verdict, summary and report.
    pub outcome: Outcome,
    /// Whether the second run had the same event log.
    pub determinism: Determinism,
}

/// Runs `scenario` twice (three times when the runs differ) and compares the event logs.
/// Returns the first run's measurements and wall time with the verdict.
///
/// The first run advances time as `stepping` says and the second tick by tick, so the check
/// also proves that skipping idle time changed nothing: a skip that was not exact shows as a
/// divergence like any other.
pub(super) fn check(
    scenario: &Scenario,
    catalog: &Catalog,
    progress: &mut dyn Progress,
    stepping: Stepping,
) -> Result<(sim::RunOutput, Determinism), RunError> {
    let keep = EventLog::Keep(Vec::new());
    let (first, log) = sim::run_stepped(scenario, catalog, progress, keep, stepping)?;
    let expected = Arc::new(log.hashes());
    let compare = EventLog::Compare {
        expected: expected.clone(),
        seen: 0,
        previous: None,
        divergence: None,
    };
    let every_tick = Stepping::EveryTick;
    let (_, log) = sim::run_stepped(scenario, catalog, &mut NoProgress, compare, every_tick)?;
    let Some(mut divergence) = log.divergence() else {
        let events = expected.len() as u64;
        return Ok((first, Determinism::Identical { events }));
    };
    divergence.first = if divergence.index >= expected.len() as u64 {
        Side::Ended {
            events: expected.len() as u64,
        }
    } else {
        let capture = EventLog::Capture {
            expected,
            index: divergence.index,
            seen: 0,
            found: None,
        };
        let (_, log) = sim::run_stepped(scenario, catalog, &mut NoProgress, capture, stepping)?;
        log.captured().unwrap_or(Side::Unknown {
            at_index: divergence.index,
        })
    };
    Ok((first, Determinism::Diverged(divergence)))
}
