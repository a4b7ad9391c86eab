//! windtunnel: a microservice framework in the spirit of Mondo's mercury/typhon, and a
//! deterministic wind tunnel that runs it inside turmoil's simulated network under load and
//! failure.
//!
//! # Layout
//!
//! In the order data flows (each layer imports only the ones listed before it; a test,
//! `tests/layers.rs`, fails on an import that runs back up):
//!
//! - [`framework`]: the system under test's building blocks: server, client, context, typed
//!   errors, fanout, discovery, middleware, events, identity, and the [`framework::transport`]
//!   (TCP over turmoil or tokio). [`gateway`]: HTTP in front of it.
//! - [`scenario`]: scenario files, parsed into raw TOML and validated into a
//!   [`scenario::Scenario`] ([`units`] and [`dist`] are its quantities and distributions).
//! - [`system`]: how services enter a run: [`system::System`], [`system::ServiceDef`], the
//!   per-instance [`system::Env`], the [`system::Catalog`] scenario files are checked against.
//! - [`topology`]: a scenario's services assembled into instances and a gateway, the same in
//!   the simulation and on the real network.
//! - [`sim`]: the simulated world: placement on turmoil hosts, the network model, faults, the
//!   step loop. [`load`]: open-loop load generators.
//! - [`metrics`]: events and load results folded into histograms, series and checks.
//! - [`report`]: summary.json, assertions, plots, the terminal summary.
//! - [`tunnel`]: the public way to run a scenario from Rust (builder -> run -> [`tunnel::Outcome`]).
//! - [`serve`]: a scenario's services on the real network.
//! - [`services`]: the example systems (accounts, webhooks, card payments), written against the
//!   public API only, as a user's own are.
//! - `cli`: the `windtunnel` command (feature `cli`).
//! - [`alloc`]: the global allocator the binary and the benches install (spawning a task then
//!   costs a cached `malloc`).
#![warn(missing_docs)]

pub mod alloc;
#[cfg(feature = "cli")]
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
pub mod system;
pub mod topology;
pub mod tunnel;
pub mod units;

pub use system::{Env, ServiceDef, System};
pub use tunnel::{Outcome, Tunnel};

/// The copy of turmoil windtunnel runs on: 0.7.2 with the changes described in
/// vendor/turmoil/PATCH.md (a step longer than a tick, cheaper bookkeeping, a clock epoch). A
/// crate of yours that needs turmoil itself (a hand-wired test beside windtunnel's runs) names
/// it through this path: a `turmoil` dependency of its own would be the published crate, a
/// second copy with a world of its own, which windtunnel's hosts cannot see.
pub use turmoil;
