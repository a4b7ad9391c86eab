//! Scenario files: the wind tunnel's input, read in two steps like ripgrep's flags.
//!
//! First serde reads the TOML into raw structs that mirror the file (`raw`, the "low args"), which
//! catches syntax errors, wrong types and unknown keys with their location. Then validation turns
//! them into a [`Scenario`] ([`model`], the "high args") that cannot be invalid: every reference
//! resolves, every window fits the run, every quantity is typed. All the problems found are
//! returned at once as [`Diagnostic`]s, printed `file:line:col: error: message`.
//!
//! Layout: [`error`] diagnostics; `raw` the file's shape; [`names`] typed identifiers; [`model`] the
//! validated scenario; [`assertion`] what must hold; `validate` with `index`, `services`,
//! `traffic`, `faults` and `asserts` the checks. The format is documented for users in
//! `docs/scenarios.md`.

pub mod assertion;
pub mod error;
pub mod model;
pub mod names;

mod asserts;
mod faults;
mod index;
pub mod mechanisms;
mod raw;
mod services;
mod traffic;
mod validate;

use std::path::Path;

pub use assertion::{Assertion, Bound, LatencyStat, Metric, MetricUnit, Op, Scope, Window};
pub use error::{Diagnostic, ScenarioError};
pub use model::{
    limits, Arrival, Balancer, Call, DiskEffect, Endpoint, Fanout, Fault, FaultKind, GatewayAuth,
    Heal, Link, Load, LoadTarget, Network, OnError, Route, Scenario, Service, ServiceBody,
    SlowFactor, Stage, SwarmBounds, TokenUse, Wait, SWARM_KINDS,
};
pub use names::{
    BuiltinName, EndpointName, EndpointRef, ErrorCode, LoadName, Method, RouteKey, ScenarioName,
    ServiceName, Target,
};

use error::Locator;
pub(crate) use traffic::load_name;

/// The built-in (Rust) services a scenario may name with `builtin = "..."`.
///
/// [`crate::system::Catalog`] implements it over the registered systems; parsing only needs each
/// builtin's endpoint names, to check the calls, routes and loads that reach it, and the
/// services it calls.
pub trait Builtins {
    /// The endpoints of a built-in service, or `None` if there is no such builtin.
    fn builtin_endpoints(&self, builtin: &str) -> Option<Vec<String>>;

    /// The services a built-in service calls, which a scenario using it must declare (by
    /// name). None by default.
    fn builtin_calls(&self, _builtin: &str) -> Vec<String> {
        Vec::new()
    }

    /// Whether a built-in service checks bearer tokens for the gateway (answers the
    /// framework's `check`). None does by default.
    fn builtin_authenticates(&self, _builtin: &str) -> bool {
        false
    }
}

/// No builtins at all: every `builtin = "..."` is an error. For tests and tools that only
/// read synthetic scenarios.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBuiltins;

impl Builtins for NoBuiltins {
    fn builtin_endpoints(&self, _builtin: &str) -> Option<Vec<String>> {
        None
    }
}

/// Parses and validates a scenario from its text; `file_name` is used in diagnostics.
pub fn parse_str(
    text: &str,
    file_name: &str,
    builtins: &dyn Builtins,
) -> Result<Scenario, ScenarioError> {
    let locator = Locator::new(text, file_name);
    let raw: raw::RawScenario = toml::from_str(text).map_err(|error| ScenarioError::Invalid {
        diagnostics: vec![
            locator.diagnostic(error.span().unwrap_or(0..0), error.message().to_string())
        ],
    })?;
    validate::scenario(&raw, locator, builtins)
}

/// The largest scenario file read: far above any real one, and a bound on what reading a wrong
/// path (`/dev/zero`, a log) can cost.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Reads, parses and validates a scenario file; diagnostics name the path as given.
pub fn load_file(path: &Path, builtins: &dyn Builtins) -> Result<Scenario, ScenarioError> {
    use std::io::Read;
    let file = path.display().to_string();
    let read_error = |source| ScenarioError::Read {
        file: file.clone(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ScenarioError::TooLarge {
            file,
            limit_bytes: MAX_FILE_BYTES,
        });
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        read_error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            e.utf8_error(),
        ))
    })?;
    parse_str(&text, &file, builtins)
}
