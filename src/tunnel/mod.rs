//! The wind tunnel as a library: build a run from a scenario, register the systems it flies,
//! run it, read the [`Outcome`].
//!
//! In the shape of turmoil's `Builder` -> `Sim`: a [`Tunnel`] collects the scenario (a file, TOML
//! written in Rust, or a parsed [`Scenario`]), the seed and the [`System`]s; [`Tunnel::run`]
//! validates the scenario against exactly those systems (so what `check` accepts, `run`
//! accepts), runs it deterministically, and returns the verdict with everything measured. A
//! user's test reads: load, register, run, assert.
//!
//! ```no_run
//! use windtunnel::tunnel::Tunnel;
//!
//! let outcome = Tunnel::file("scenarios/webhook-steady.toml")
//!     .systems(windtunnel::services::systems())
//!     .run()
//!     .expect("the scenario is valid and runs");
//! outcome.assert_passed(); // on failure: what broke, and the command that replays it
//! ```
//!
//! The seed is the file's, unless [`Tunnel::seed`] sets one, unless the environment variable
//! [`SEED_VAR`] (`WINDTUNNEL_SEED`) is set: that is how a failure's replay command reruns the
//! failing seed bit for bit.

pub mod capacity;
pub mod cost;
pub mod determinism;
mod outcome;
pub mod shrink;
pub mod swarm;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::report::summary;
use crate::scenario::{self, Scenario, ScenarioError};
use crate::sim::{self, NoProgress};
use crate::system::{Catalog, CatalogError, ServiceDef, System};

pub use crate::sim::{Progress, RunError, Status};
pub use cost::Estimate;
pub use determinism::{Determinism, DeterminismCheck};
pub use outcome::{Outcome, ReportError};

/// What a run of `scenario` is estimated to cost (hosts, calls per simulated second, wall
/// time); see [`cost`].
pub fn estimate(scenario: &Scenario, catalog: &Catalog) -> Estimate {
    let authenticated = crate::topology::authenticator(scenario, catalog).is_some();
    cost::estimate(scenario, authenticated)
}

/// What `check` says about who guards a scenario's routes: the service that checks bearer
/// tokens, or why nobody does. `None` for a file without routes.
pub fn gateway_guard(scenario: &Scenario, catalog: &Catalog) -> Option<String> {
    if scenario.routes.is_empty() {
        return None;
    }
    let auth = crate::topology::authenticator(scenario, catalog);
    Some(match (auth, &scenario.gateway_auth) {
        (Some((name, _)), _) => format!("gateway: bearer tokens checked by {name}"),
        (None, crate::scenario::GatewayAuth::Open) => {
            "gateway: `auth = \"none\"`: every route is open to requests without a token".into()
        }
        (None, _) => "warning: no service checks bearer tokens, so every route is open to requests without a token (add an authenticator, or say so with `[gateway] auth = \"none\"`)".into(),
    })
}

/// The environment variable that overrides every other seed: set it to replay a failure.
pub const SEED_VAR: &str = "WINDTUNNEL_SEED";

/// Why a run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// A system could not be registered.
    #[error(transparent)]
    Registration(#[from] CatalogError),
    /// The scenario is invalid; the diagnostics say where and what.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// A parsed scenario names a builtin that is not registered, or registered with other
    /// endpoints than it was parsed with.
    #[error("service {service} is builtin {builtin:?}, which no registered system provides with the endpoints the scenario was checked against")]
    Unregistered {
        /// The service.
        service: String,
        /// Its builtin.
        builtin: String,
    },
    /// `WINDTUNNEL_SEED` is set but is not a seed.
    #[error("{SEED_VAR}={value:?} is not a seed: expected a whole number from 0 to 18446744073709551615")]
    BadSeed {
        /// What it held.
        value: String,
    },
    /// The simulation could not run.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// Where the scenario comes from.
#[derive(Debug, Clone)]
enum Source {
    File(PathBuf),
    Text { text: String, name: String },
    Parsed(Box<Scenario>),
}

/// A run being put together. Nothing happens until [`Tunnel::run`].
#[derive(Debug)]
pub struct Tunnel {
    source: Source,
    seed: Option<u64>,
    env_seed: bool,
    catalog: Catalog,
    problems: Vec<CatalogError>,
    stepping: sim::Stepping,
}

impl Tunnel {
    fn from(source: Source) -> Tunnel {
        Tunnel {
            source,
            seed: None,
            env_seed: true,
            catalog: Catalog::new(),
            problems: Vec::new(),
            stepping: sim::Stepping::default(),
        }
    }

    /// A run of the scenario file at `path`.
    pub fn file(path: impl AsRef<Path>) -> Tunnel {
        Tunnel::from(Source::File(path.as_ref().to_path_buf()))
    }

    /// A run of a scenario written as TOML text in Rust; `name` stands for the file in
    /// diagnostics (e.g. `"my_test.toml"`).
    pub fn toml(text: &str, name: &str) -> Tunnel {
        Tunnel::from(Source::Text {
            text: text.to_string(),
            name: name.to_string(),
        })
    }

    /// A run of a scenario already parsed; its builtins are checked again against the
    /// registered systems (that each is registered, with the endpoints it was parsed with).
    pub fn scenario(scenario: Scenario) -> Tunnel {
        Tunnel::from(Source::Parsed(Box::new(scenario)))
    }

    /// Runs with `seed` instead of the scenario's (`WINDTUNNEL_SEED` still wins when set).
    pub fn seed(mut self, seed: u64) -> Tunnel {
        self.seed = Some(seed);
        self
    }

    /// Whether `WINDTUNNEL_SEED` may override the seed (default true; the command line turns it
    /// off, since its `--seed` says what it means).
    pub fn seed_from_env(mut self, read: bool) -> Tunnel {
        self.env_seed = read;
        self
    }

    /// Registers `system`: its services become builtins the scenario may name.
    pub fn system(self, system: impl System) -> Tunnel {
        self.register(Arc::new(system))
    }

    /// Registers every system of `systems`, in order.
    pub fn systems(self, systems: impl IntoIterator<Item = Arc<dyn System>>) -> Tunnel {
        systems.into_iter().fold(self, Tunnel::register)
    }

    /// Uses `catalog`'s systems, as registered there (instead of registering them again).
    pub fn with_catalog(mut self, catalog: Catalog) -> Tunnel {
        self.catalog = catalog;
        self
    }

    /// Registers one service on its own (a system of one, named after its builtin).
    pub fn service(self, def: ServiceDef) -> Tunnel {
        self.register(Arc::new(Lone(def)))
    }

    fn register(mut self, system: Arc<dyn System>) -> Tunnel {
        if let Err(e) = self.catalog.add(system) {
            self.problems.push(e);
        }
        self
    }

    /// The registered systems.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Reads and validates the scenario against the registered systems, with the seed this run
    /// would use, without running it.
    pub fn check(&self) -> Result<Scenario, TunnelError> {
        if let Some(problem) = self.problems.first() {
            return Err(problem.clone().into());
        }
        let mut scenario = match &self.source {
            Source::File(path) => scenario::load_file(path, &self.catalog)?,
            Source::Text { text, name } => scenario::parse_str(text, name, &self.catalog)?,
            Source::Parsed(s) => {
                registered(s, &self.catalog)?;
                (**s).clone()
            }
        };
        if let Some(seed) = self.seed {
            scenario.seed = seed;
        }
        if self.env_seed {
            if let Ok(value) = std::env::var(SEED_VAR) {
                scenario.seed = value
                    .trim()
                    .parse()
                    .map_err(|_| TunnelError::BadSeed { value })?;
            }
        }
        Ok(scenario)
    }

    /// Advances simulated time as `stepping` says: by default time in which nothing can
    /// happen is skipped ([`sim::Stepping::SkipIdle`]); [`sim::Stepping::EveryTick`] steps
    /// every tick, the reference.
    pub fn stepping(mut self, stepping: sim::Stepping) -> Tunnel {
        self.stepping = stepping;
        self
    }

    /// Runs the scenario and judges it.
    pub fn run(self) -> Result<Outcome, TunnelError> {
        self.run_with(&mut NoProgress)
    }

    /// Runs the scenario, reporting progress about every simulated second.
    pub fn run_with(self, progress: &mut dyn Progress) -> Result<Outcome, TunnelError> {
        let scenario = self.check()?;
        let log = crate::metrics::EventLog::Off;
        let (output, _) = sim::run_stepped(&scenario, &self.catalog, progress, log, self.stepping)?;
        Ok(outcome(scenario, output))
    }

    /// Runs the scenario twice at its seed and compares the two event logs event for event
    /// (see [`determinism`]); the first run is judged and reported as [`Tunnel::run`] would.
    pub fn check_determinism(self) -> Result<DeterminismCheck, TunnelError> {
        self.check_determinism_with(&mut NoProgress)
    }

    /// [`Tunnel::check_determinism`], reporting the first run's progress.
    pub fn check_determinism_with(
        self,
        progress: &mut dyn Progress,
    ) -> Result<DeterminismCheck, TunnelError> {
        let scenario = self.check()?;
        let (output, determinism) =
            determinism::check(&scenario, &self.catalog, progress, self.stepping)?;
        Ok(DeterminismCheck {
            outcome: outcome(scenario, output),
            determinism,
        })
    }
}

/// A run's outcome: its measurements judged, with how it stepped through time.
fn outcome(scenario: Scenario, output: sim::RunOutput) -> Outcome {
    let mut summary = summary::build(&scenario, &output.measurements, output.wall);
    summary.skipped_seconds = output.skipped.as_secs_f64();
    summary.skip_spoiled_at = output.skip_spoiled.map(|at| at.as_secs_f64());
    Outcome::new(scenario, summary, output.measurements)
}

/// Checks that every builtin of a parsed `scenario` is in `catalog`, with the endpoints it was
/// parsed with.
fn registered(scenario: &Scenario, catalog: &Catalog) -> Result<(), TunnelError> {
    use crate::scenario::{Builtins, ServiceBody};
    for service in &scenario.services {
        let ServiceBody::Builtin { builtin, endpoints } = &service.body else {
            continue;
        };
        let mut parsed: Vec<String> = endpoints.iter().map(|e| e.to_string()).collect();
        parsed.sort();
        if catalog.builtin_endpoints(builtin.as_str()) != Some(parsed) {
            return Err(TunnelError::Unregistered {
                service: service.name.to_string(),
                builtin: builtin.to_string(),
            });
        }
    }
    Ok(())
}

/// One service registered on its own.
struct Lone(ServiceDef);

impl System for Lone {
    fn name(&self) -> &str {
        self.0.builtin()
    }

    fn services(&self) -> Vec<ServiceDef> {
        vec![self.0.clone()]
    }
}
