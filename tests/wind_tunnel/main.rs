//! The wind tunnel, end to end: scenario files in, verdicts and summary.json out.

mod balancing;
mod cli;
mod determinism;
mod faults;
mod hunt;
mod invariants;
mod library;
mod queueing;
mod scenarios;
mod skip;
mod support;
mod sweeps;
