//! The event log a determinism check compares: one hash per event (and per load result), kept
//! by a first run, compared online by a second, and the first event where they part described
//! in words.
//!
//! A run may have millions of events, so nothing but a `u64` per event is kept; an event is
//! described (time, host, kind, `service.endpoint`) only at the index where two runs differ and
//! the one before it. The hashes cover the same fields as the run's fingerprint, so two runs
//! with the same fingerprint never differ here.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::fingerprint::WordHash;
use crate::framework::EventRef;

/// One event (or load result) of a run, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDescription {
    /// Its place in the run's log, from 0 (events and load results together, in order).
    pub index: u64,
    /// When it happened, in simulated time.
    pub at: Duration,
    /// Where: the instance or client that emitted it, or `load <name>` for a load result.
    pub host: String,
    /// What: the event kind (`HandlerStarted`, `CallAnswered`...) or `load result <outcome>`.
    pub kind: String,
    /// The `service.endpoint` called (for a load result: the load's name).
    pub target: String,
}

impl fmt::Display for EventDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "event #{} at {:.6}s: {} {} {}",
            self.index,
            self.at.as_secs_f64(),
            self.host,
            self.kind,
            self.target
        )
    }
}

/// What one run had at the index where two runs part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    /// This event.
    Event(EventDescription),
    /// No event: the run ended after this many.
    Ended {
        /// Events the run had in all.
        events: u64,
    },
    /// The event could not be described: the run that was replayed to describe it did not
    /// reproduce the run it stood for (it parted from it at `at_index`).
    Unknown {
        /// Where the replay itself parted.
        at_index: u64,
    },
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Side::Event(e) => write!(f, "{e}"),
            Side::Ended { events } => write!(f, "no event: the run ended after {events} events"),
            Side::Unknown { at_index } => write!(
                f,
                "not described: a third run, replayed to describe it, parted from it at event #{at_index}"
            ),
        }
    }
}

/// Where a second run parted from the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// Index of the first event that differs.
    pub index: u64,
    /// The first run's event there.
    pub first: Side,
    /// The second run's event there.
    pub second: Side,
    /// The last event both runs agree on (`None` when they differ from the first event).
    pub last_agreed: Option<EventDescription>,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "first difference at event #{}", self.index)?;
        writeln!(f, "    run 1: {}", self.first)?;
        write!(f, "    run 2: {}", self.second)?;
        if let Some(last) = &self.last_agreed {
            write!(f, "\n    last event both agree on: {last}")?;
        }
        Ok(())
    }
}

/// What a recorder does with each event's hash.
// One per run: the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Default)]
pub enum EventLog {
    /// Nothing (an ordinary run).
    #[default]
    Off,
    /// Keeps every hash, in order (the first run of a check).
    Keep(Vec<u64>),
    /// Compares each hash with the first run's, describing its own event at the first that
    /// differs (the second run of a check).
    Compare {
        /// The first run's hashes.
        expected: Arc<Vec<u64>>,
        /// Events seen so far.
        seen: u64,
        /// The event before the current one, kept to describe the last agreed event.
        previous: Option<EventDescription>,
        /// Where this run parted from the first, once it has.
        divergence: Option<Divergence>,
    },
    /// Describes the event at `index`, checking that every hash up to it matches `expected`
    /// (the replay that describes the first run's side).
    Capture {
        /// The first run's hashes.
        expected: Arc<Vec<u64>>,
        /// The index to describe.
        index: u64,
        /// Events seen so far.
        seen: u64,
        /// What was found: the event, or where this replay parted from the first run first.
        found: Option<Side>,
    },
}

impl EventLog {
    /// Whether this log looks at events at all.
    pub fn is_on(&self) -> bool {
        !matches!(self, EventLog::Off)
    }

    /// Takes one event's hash; `describe` is called only when its description is needed.
    pub(super) fn observe(&mut self, hash: u64, describe: impl FnOnce(u64) -> EventDescription) {
        match self {
            EventLog::Off => {}
            EventLog::Keep(hashes) => hashes.push(hash),
            EventLog::Compare {
                expected,
                seen,
                previous,
                divergence,
            } => {
                let index = *seen;
                *seen += 1;
                if divergence.is_some() {
                    return;
                }
                let own = describe(index);
                match expected.get(index_usize(index)) {
                    Some(h) if *h == hash => *previous = Some(own),
                    other => {
                        let first = match other {
                            Some(_) => Side::Unknown { at_index: index },
                            None => Side::Ended {
                                events: expected.len() as u64,
                            },
                        };
                        *divergence = Some(Divergence {
                            index,
                            first,
                            second: Side::Event(own),
                            last_agreed: previous.take(),
                        });
                    }
                }
            }
            EventLog::Capture {
                expected,
                index,
                seen,
                found,
            } => {
                let i = *seen;
                *seen += 1;
                if found.is_some() || i > *index {
                    return;
                }
                let same = expected.get(index_usize(i)) == Some(&hash);
                *found = match (i == *index, same) {
                    (true, true) => Some(Side::Event(describe(i))),
                    (_, false) => Some(Side::Unknown { at_index: i }),
                    (false, true) => None,
                };
            }
        }
    }

    /// Closes a second run's comparison: a run that ended before the first did parts from it
    /// at its last event. `None` when the runs agree event for event.
    pub fn divergence(self) -> Option<Divergence> {
        let EventLog::Compare {
            expected,
            seen,
            previous,
            divergence,
        } = self
        else {
            return None;
        };
        if divergence.is_some() {
            return divergence;
        }
        ((expected.len() as u64) > seen).then_some(Divergence {
            index: seen,
            first: Side::Unknown { at_index: seen },
            second: Side::Ended { events: seen },
            last_agreed: previous,
        })
    }

    /// What a capture found (`None` for another log, or when the run never reached the index).
    pub fn captured(self) -> Option<Side> {
        match self {
            EventLog::Capture { found, seen, .. } => {
                found.or(Some(Side::Unknown { at_index: seen }))
            }
            _ => None,
        }
    }

    /// The hashes a first run kept (empty for another log).
    pub fn hashes(self) -> Vec<u64> {
        match self {
            EventLog::Keep(hashes) => hashes,
            _ => Vec::new(),
        }
    }
}

fn index_usize(i: u64) -> usize {
    usize::try_from(i).unwrap_or(usize::MAX)
}

/// The hash of one event, over the same fields the run's fingerprint takes from it.
pub(super) fn write_event(h: &mut WordHash, e: &EventRef<'_>) {
    h.write_u64(super::nanos(e.at));
    h.write_str(e.kind.name());
    h.write_str(e.kind.error_code().unwrap_or(""));
    h.write_str(e.instance);
    h.write_str(e.peer);
    h.write_str(e.service);
    h.write_str(e.endpoint);
    h.write_u64(e.request_id.0);
    h.write_u64(e.span_id.0);
    h.write_u64(e.trace_id.0);
    if let crate::framework::EventKind::Metric { name, value, .. } = &e.kind {
        h.write_str(name);
        h.write_u64(*value as u64);
    }
}

/// An event in words.
pub(super) fn describe_event(index: u64, e: &EventRef<'_>) -> EventDescription {
    let kind = match e.kind.error_code() {
        Some(code) => format!("{} ({code})", e.kind.name()),
        None => e.kind.name().to_string(),
    };
    EventDescription {
        index,
        at: e.at,
        host: e.instance.to_string(),
        kind,
        target: format!("{}.{}", e.service, e.endpoint),
    }
}
