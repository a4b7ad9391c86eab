//! How services enter a run: the public seam between the wind tunnel and the code it flies.
//!
//! A [`System`] is a set of services that belong together (a webhook stack, a card pipeline,
//! your own two services): it defines each service ([`ServiceDef`]: a builtin name, a builder,
//! the services it calls), may shape the requests a load sends them and remember what they
//! acknowledged ([`Notes`]), and may check [`Invariant`]s once the run is over ([`Verifier`]).
//! A [`Catalog`] holds the registered systems; a scenario file names a service's builtin with
//! `builtin = "..."`, and both `check` and `run` validate against the same catalog.
//!
//! The one thing to know: a builder turns an [`Env`] into endpoints and background work
//! ([`Built`]) and must do nothing else. The catalog builds every service once with
//! [`Env::detached`] to learn its endpoint names, so the endpoints a file may name come from the
//! code that serves them, not from a list kept beside it. Work that runs (a writer task, an
//! event consumer) goes in [`Built::background`], started once the server is up.

pub mod disk;
mod env;
pub mod sabotage;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures::future::BoxFuture;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::framework::{Client, Context, Endpoint};

pub use disk::{Disk, Disks};
pub use env::{instance_id, slowed, Clock, Env, EnvParts, Slowdown};

/// Work an instance runs beside its endpoints (an event consumer, an outbox relay, a writer),
/// started once the server is up with a context that records the server's business metrics.
pub type Background = Box<dyn FnOnce(Context) -> BoxFuture<'static, ()> + Send>;

/// Wraps an async closure as [`Background`] work.
pub fn background<F, Fut>(f: F) -> Background
where
    F: FnOnce(Context) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Box::new(move |ctx| Box::pin(f(ctx)))
}

/// One built instance: its endpoints and its background work.
#[derive(Default)]
pub struct Built {
    /// Endpoints to add to the server.
    pub endpoints: Vec<Endpoint>,
    /// Work to spawn once the server has started.
    pub background: Vec<Background>,
}

impl Built {
    /// Just endpoints.
    pub fn endpoints(endpoints: Vec<Endpoint>) -> Built {
        Built {
            endpoints,
            background: Vec::new(),
        }
    }

    /// These, and `work` started once the server is up.
    pub fn with_background(mut self, work: Background) -> Built {
        self.background.push(work);
        self
    }
}

type Build = Arc<dyn Fn(&Env) -> Built + Send + Sync>;

/// The bearer tokens a load sends through the gateway when its service authenticates users:
/// one it accepts (`token = "valid"`) and one it refuses (`token = "invalid"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadTokens {
    /// A token the authenticator accepts, with every scope the system's routes need.
    pub valid: String,
    /// A token it refuses.
    pub invalid: String,
}

/// One service a system provides: its builtin name (what a scenario's `builtin = "..."` says),
/// how to build an instance, and what it needs around it.
#[derive(Clone)]
pub struct ServiceDef {
    builtin: String,
    calls: Vec<String>,
    authenticator: Option<LoadTokens>,
    build: Build,
}

impl std::fmt::Debug for ServiceDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceDef")
            .field("builtin", &self.builtin)
            .field("calls", &self.calls)
            .finish()
    }
}

impl ServiceDef {
    /// A service named `builtin` in scenario files, built by `build` once per instance (and
    /// once with [`Env::detached`] to list its endpoints: `build` must only build).
    pub fn new(builtin: &str, build: impl Fn(&Env) -> Built + Send + Sync + 'static) -> ServiceDef {
        ServiceDef {
            builtin: builtin.to_string(),
            calls: Vec::new(),
            authenticator: None,
            build: Arc::new(build),
        }
    }

    /// The services (by name) this one calls: a scenario that uses it must declare them.
    pub fn calls(mut self, services: &[&str]) -> ServiceDef {
        self.calls = services.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Marks this service as the authenticator: it answers the framework's
    /// [`identity::CHECK`](crate::framework::identity::CHECK), the gateway asks it about every
    /// bearer token, and loads send `tokens`.
    pub fn authenticates(mut self, tokens: LoadTokens) -> ServiceDef {
        self.authenticator = Some(tokens);
        self
    }

    /// Its builtin name.
    pub fn builtin(&self) -> &str {
        &self.builtin
    }

    /// The services it calls.
    pub fn needs(&self) -> &[String] {
        &self.calls
    }

    /// The tokens loads send, when it is the authenticator.
    pub fn authenticator(&self) -> Option<&LoadTokens> {
        self.authenticator.as_ref()
    }

    /// Builds one instance in `env`.
    pub fn build(&self, env: &Env) -> Built {
        (self.build)(env)
    }
}

/// Where a load's requests end up: the load, and the builtin service and endpoint that serve
/// them (through the gateway or directly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadEnd<'a> {
    /// The load's name.
    pub load: &'a str,
    /// The builtin name of the service at the end.
    pub builtin: &'a str,
    /// The endpoint.
    pub endpoint: &'a str,
}

/// A set of services that belong together, as the wind tunnel sees it.
///
/// Only [`System::name`] and [`System::services`] are required; the rest shape loads and check
/// the outcome. A system holds no state of a run: one value serves every run of a sweep, on
/// several threads at once. What a run must remember goes in its [`Env`]s (per instance) or its
/// [`Notes`] (what loads were told).
pub trait System: Send + Sync + 'static {
    /// A short name, e.g. `webhooks`, used in messages.
    fn name(&self) -> &str;

    /// The services it provides.
    fn services(&self) -> Vec<ServiceDef>;

    /// The body of request `n` (unique within the run) of a load that ends at one of this
    /// system's endpoints; `rng` is the load's own body stream. `None` sends the load's padding.
    fn request(&self, _to: LoadEnd<'_>, _n: u64, _rng: &mut ChaCha8Rng) -> Option<Bytes> {
        None
    }

    /// Reads the ok answer to one of those requests, and may note what it acknowledged in
    /// `notes` for the invariants to look for after the run.
    fn answered(&self, _to: LoadEnd<'_>, _answer: &[u8], _notes: &Notes) {}

    /// What to check once the load has stopped and settled, given the run's topology; `None`
    /// when there is nothing to check in it.
    fn verifier(&self, _topology: &Topology) -> Option<Verifier> {
        None
    }
}

/// What a verifier works with: a client of its own (it reads the system back through the
/// transport, as any service would), the run's topology and what the loads noted.
pub struct Verify {
    /// A client on the verifier's host.
    pub client: Client,
    /// The services of the run.
    pub topology: Arc<Topology>,
    /// What the loads were told.
    pub notes: Arc<Notes>,
}

/// The check a system runs after the load, Jepsen style: it reads the system back and returns
/// one [`Invariant`] verdict per property. It runs with a budget of simulated time (see
/// [`VERIFY_BUDGET`]); past it, the run reports that the invariants could not be checked.
pub struct Verifier {
    run: Box<dyn FnOnce(Verify) -> BoxFuture<'static, Vec<Invariant>> + Send>,
}

/// Simulated time a run gives its verifiers after the load has settled.
pub const VERIFY_BUDGET: std::time::Duration = std::time::Duration::from_secs(90);

impl Verifier {
    /// A verifier running `check`.
    pub fn new<F, Fut>(check: F) -> Verifier
    where
        F: FnOnce(Verify) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<Invariant>> + Send + 'static,
    {
        Verifier {
            run: Box::new(move |v| Box::pin(check(v))),
        }
    }

    /// Runs it.
    pub async fn verify(self, with: Verify) -> Vec<Invariant> {
        (self.run)(with).await
    }
}

/// One service of a run's topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    /// Its name.
    pub name: String,
    /// Its builtin name, for services built by a system (not synthetic ones).
    pub builtin: Option<String>,
    /// How many instances it has.
    pub instances: u32,
}

/// The services of a run, in the order the scenario declares them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    services: Vec<Deployed>,
}

impl Topology {
    /// A topology of `services`.
    pub fn new(services: Vec<Deployed>) -> Topology {
        Topology { services }
    }

    /// Every service.
    pub fn services(&self) -> &[Deployed] {
        &self.services
    }

    /// Instances of `service` (0 if the run has no such service).
    pub fn instances(&self, service: &str) -> u32 {
        self.services
            .iter()
            .find(|s| s.name == service)
            .map_or(0, |s| s.instances)
    }

    /// Whether some service of the run is built from `builtin`.
    pub fn has_builtin(&self, builtin: &str) -> bool {
        self.services
            .iter()
            .any(|s| s.builtin.as_deref() == Some(builtin))
    }
}

/// What loads were told during a run (acknowledged writes, by kind), for the invariants.
#[derive(Debug, Default)]
pub struct Notes {
    writes: Mutex<BTreeMap<String, Vec<String>>>,
}

impl Notes {
    /// Notes that `id` of `kind` (e.g. `webhook`) was acknowledged.
    pub fn add(&self, kind: &str, id: String) {
        self.writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(kind.to_string())
            .or_default()
            .push(id);
    }

    /// The ids noted of `kind`, in the order they came.
    pub fn of(&self, kind: &str) -> Vec<String> {
        self.writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(kind)
            .cloned()
            .unwrap_or_default()
    }
}

/// One invariant's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invariant {
    /// Its name, e.g. `ledger_conserved`.
    pub name: String,
    /// Whether it holds.
    pub holds: bool,
    /// What was found, in a sentence.
    pub detail: String,
    /// The figures behind the verdict.
    pub figures: BTreeMap<String, i64>,
}

impl Invariant {
    /// The verdict on `name`: whether it `holds`, what was found, and the figures behind it.
    pub fn new(name: &str, holds: bool, detail: String, figures: &[(&str, i64)]) -> Invariant {
        Invariant {
            name: name.to_string(),
            holds,
            detail,
            figures: figures.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    /// The invariant `name` failed because what it needs could not be read.
    pub fn unreadable(name: &str, why: &str) -> Invariant {
        Invariant::new(name, false, format!("could not be checked: {why}"), &[])
    }
}

/// Why a system could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// Two services share a builtin name.
    #[error("builtin {builtin:?} is defined by both system {first:?} and system {second:?}")]
    Duplicate {
        /// The name.
        builtin: String,
        /// The system that registered it first.
        first: String,
        /// The one that tried again.
        second: String,
    },
    /// Building a service to list its endpoints panicked.
    #[error(
        "building builtin {builtin:?} (system {system:?}) to list its endpoints panicked \
         ({reason}): a builder must only build endpoints and background work (spawn nothing, \
         do no I/O; put running work in Built::background)"
    )]
    BuilderPanicked {
        /// The builtin.
        builtin: String,
        /// Its system.
        system: String,
        /// The panic's message.
        reason: String,
    },
    /// A service marked as the authenticator does not answer the authenticator protocol.
    #[error(
        "builtin {builtin:?} (system {system:?}) is marked as the authenticator but has no \
         {endpoint:?} endpoint"
    )]
    NotAnAuthenticator {
        /// The builtin.
        builtin: String,
        /// Its system.
        system: String,
        /// The endpoint it lacks.
        endpoint: &'static str,
    },
}

/// A registered service, with its endpoints as its builder makes them.
struct Entry {
    def: ServiceDef,
    system: usize,
    endpoints: Vec<String>,
    idempotent: Vec<String>,
}

/// The registered systems and their services, by builtin name: the one source scenario
/// files are checked against and runs are built from.
#[derive(Default, Clone)]
pub struct Catalog {
    systems: Vec<Arc<dyn System>>,
    entries: BTreeMap<String, Arc<Entry>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("builtins", &self.entries.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Catalog {
    /// An empty catalog: only synthetic services.
    pub fn new() -> Catalog {
        Catalog::default()
    }

    /// Registers `system` and its services.
    pub fn add(&mut self, system: Arc<dyn System>) -> Result<(), CatalogError> {
        let index = self.systems.len();
        let mut added = BTreeMap::new();
        for def in system.services() {
            let builtin = def.builtin().to_string();
            let taken = self.entries.get(&builtin).map(|e| e.system);
            if let Some(first) = taken.or_else(|| added.contains_key(&builtin).then_some(index)) {
                return Err(CatalogError::Duplicate {
                    builtin,
                    first: self.system_name(first, &*system),
                    second: system.name().to_string(),
                });
            }
            let (endpoints, idempotent) =
                endpoint_names(&def).map_err(|reason| CatalogError::BuilderPanicked {
                    builtin: builtin.clone(),
                    system: system.name().to_string(),
                    reason,
                })?;
            let check = crate::framework::identity::CHECK;
            if def.authenticator().is_some() && !endpoints.iter().any(|e| e == check) {
                return Err(CatalogError::NotAnAuthenticator {
                    builtin,
                    system: system.name().to_string(),
                    endpoint: check,
                });
            }
            added.insert(
                builtin,
                Arc::new(Entry {
                    def,
                    system: index,
                    endpoints,
                    idempotent,
                }),
            );
        }
        self.entries.extend(added);
        self.systems.push(system);
        Ok(())
    }

    fn system_name(&self, index: usize, adding: &dyn System) -> String {
        self.systems
            .get(index)
            .map_or_else(|| adding.name().to_string(), |s| s.name().to_string())
    }

    /// The service registered as `builtin`.
    pub fn service(&self, builtin: &str) -> Option<&ServiceDef> {
        self.entries.get(builtin).map(|e| &e.def)
    }

    /// The endpoints of `builtin` marked idempotent ([`crate::framework::Endpoint::idempotent`]),
    /// sorted: the ones callers with a retry policy may retry.
    pub fn idempotent(&self, builtin: &str) -> &[String] {
        self.entries
            .get(builtin)
            .map_or(&[], |e| e.idempotent.as_slice())
    }

    /// The system that registered `builtin`.
    pub fn system_of(&self, builtin: &str) -> Option<&Arc<dyn System>> {
        let entry = self.entries.get(builtin)?;
        self.systems.get(entry.system)
    }

    /// Every registered system, in registration order.
    pub fn systems(&self) -> &[Arc<dyn System>] {
        &self.systems
    }

    /// Every builtin name, sorted.
    pub fn builtins(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }
}

impl crate::scenario::Builtins for Catalog {
    fn builtin_endpoints(&self, builtin: &str) -> Option<Vec<String>> {
        self.entries.get(builtin).map(|e| e.endpoints.clone())
    }

    fn builtin_calls(&self, builtin: &str) -> Vec<String> {
        self.service(builtin)
            .map(|d| d.needs().to_vec())
            .unwrap_or_default()
    }

    fn builtin_authenticates(&self, builtin: &str) -> bool {
        self.service(builtin)
            .is_some_and(|d| d.authenticator().is_some())
    }
}

/// The endpoint names `def` builds, and those of them marked idempotent, from one detached
/// instance built on a thread of its own (outside any runtime, so a builder that spawns fails
/// here, wherever the catalog is made); the panic's message if building panicked.
fn endpoint_names(def: &ServiceDef) -> Result<(Vec<String>, Vec<String>), String> {
    let def = def.clone();
    let probe = std::thread::spawn(move || {
        let built = def.build(&Env::detached(def.builtin()));
        let names = |only_idempotent: bool| {
            let mut names: Vec<String> = built
                .endpoints
                .iter()
                .filter(|e| !only_idempotent || e.is_idempotent())
                .map(|e| e.name().to_string())
                .collect();
            names.sort();
            names
        };
        (names(false), names(true))
    });
    probe.join().map_err(|panic| {
        panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_string())
    })
}
