//! windtunnel: a microservice framework in the spirit of Mondo's mercury/typhon, and a
//! deterministic wind tunnel that runs it inside turmoil's simulated network under load and
//! failure.
//!
//! # Layout
//!
//! In the order data flows:
//!
//! - [`scenario`]: scenario files, parsed into raw TOML and validated into a [`scenario::Scenario`]
//!   ([`units`] and [`dist`] are its quantities and distributions).
//! - [`sim`]: the simulated world built from a scenario: turmoil hosts, placement, the network
//!   model, the fault schedule, synthetic services, and the step loop.
//! - [`load`]: open-loop load generators.
//! - [`framework`], [`transport`], [`services`]: the system under test: services, client,
//!   context, errors, events, the TCP transport over turmoil or tokio, and example services.
//! - [`metrics`]: events and load results folded into histograms, series and checks.
//! - [`report`]: summary.json, assertions and the terminal summary.
//! - [`cli`]: the `windtunnel` command.
#![warn(missing_docs)]

pub mod cli;
pub mod dist;
pub mod framework;
pub mod gateway;
pub mod load;
mod lock;
pub mod metrics;
pub mod report;
pub mod scenario;
pub mod serve;
pub mod services;
pub mod sim;
pub mod transport;
pub mod units;
