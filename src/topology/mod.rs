//! A scenario's services assembled into instances and a gateway: the part the simulation and
//! `windtunnel serve` share, so what was tested is what ships.
//!
//! A [`Deployment`] holds what every instance of a topology is assembled with (the catalog of
//! systems, discovery, the disks, the sizes, where events go). [`Deployment::instance`] turns
//! one placed instance into a server with its endpoints, built in (from the catalog) or
//! synthetic ([`synthetic`]), and [`Deployment::gateway`] builds the HTTP gateway for the
//! file's routes, asking the authenticator the catalog names. The network under it is the
//! caller's: the simulation passes its modelled transport, `serve` real TCP.

pub mod mechanisms;
pub mod synthetic;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use crate::framework::eject::Ejection;
use crate::framework::transport::Transport;
use crate::framework::{
    Balance, Client, ClientConfig, Context, EventSink, Listen, Registry, Server, ServiceConfig,
    StartError,
};
use crate::gateway::{Gateway, GatewayConfig, Route, Routes};
use crate::scenario::{Balancer, Scenario, Service, ServiceBody};
use crate::system::{
    Background, Catalog, Clock, Deployed, Disks, Env, EnvParts, LoadTokens, Slowdown, Topology,
};

/// Why part of a topology could not be assembled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssembleError {
    /// A service names a builtin no registered system provides.
    #[error("service {service} is builtin {builtin:?}, which no registered system provides")]
    UnknownBuiltin {
        /// The service.
        service: String,
        /// The builtin.
        builtin: String,
    },
    /// A route is not valid for the gateway.
    #[error("route {route}: {reason}")]
    Route {
        /// The route.
        route: String,
        /// Why.
        reason: String,
    },
}

/// What every instance of a topology is assembled with, in the simulation or for real.
#[derive(Clone)]
pub struct Deployment {
    /// The scenario.
    pub scenario: Arc<Scenario>,
    /// The registered systems.
    pub catalog: Catalog,
    /// Discovery.
    pub registry: Arc<Registry>,
    /// Every instance's disks; they outlive crashes.
    pub disks: Arc<Disks>,
    /// Whether the services' fault points may fire (the scenario's `buggify`; `serve` turns
    /// it off).
    pub buggify: bool,
    /// The services and their sizes.
    pub topology: Arc<Topology>,
    /// Where servers and clients report what they do.
    pub events: Arc<dyn EventSink>,
}

/// One instance, assembled and not yet started.
pub struct Instance {
    /// Its server, endpoints added.
    pub server: Server,
    /// Its environment.
    pub env: Env,
    background: Vec<Background>,
}

impl Instance {
    /// Starts the server on `transport` at `listen`, then the instance's background work with
    /// a context that records the server's business metrics.
    pub async fn start(
        self,
        transport: Arc<dyn Transport>,
        listen: &Listen,
    ) -> Result<Server, StartError> {
        self.server.start(transport, listen).await?;
        let ctx = match self.server.metrics() {
            Some(m) => {
                self.env.set_metrics(m.clone());
                Context::background().with_metrics(m)
            }
            None => Context::background(),
        };
        for work in self.background {
            crate::framework::task::spawn(work(ctx.clone()));
        }
        Ok(self.server)
    }
}

impl Deployment {
    /// The deployment of `scenario`'s services from `catalog`, reporting to `events`.
    pub fn new(
        scenario: Arc<Scenario>,
        catalog: Catalog,
        events: Arc<dyn EventSink>,
    ) -> Deployment {
        let topology = Arc::new(topology(&scenario));
        let disks = Disks::simulated(scenario.seed, scenario.disk_sync.clone());
        let buggify = scenario.buggify;
        Deployment {
            scenario,
            catalog,
            registry: Registry::new(),
            buggify,
            disks,
            topology,
            events,
        }
    }

    /// How callers balance over each service.
    fn balance(&self) -> BTreeMap<String, Balance> {
        self.scenario
            .services
            .iter()
            .map(|s| {
                let b = match s.balancer {
                    Balancer::RoundRobin => Balance::RoundRobin,
                    Balancer::PowerOfTwoChoices => Balance::PowerOfTwo,
                    Balancer::PeakEwma => Balance::PeakEwma,
                };
                (s.name.as_str().to_string(), b)
            })
            .collect()
    }

    /// The endpoints of `spec` callers may retry or hedge: synthetic ones marked `idempotent`,
    /// or the builtin's endpoints its code marks idempotent.
    fn idempotent(&self, spec: &Service) -> BTreeSet<String> {
        match &spec.body {
            ServiceBody::Synthetic { endpoints } => endpoints
                .iter()
                .filter(|e| e.idempotent)
                .map(|e| e.name.as_str().to_string())
                .collect(),
            ServiceBody::Builtin { builtin, .. } => self
                .catalog
                .idempotent(builtin.as_str())
                .iter()
                .cloned()
                .collect(),
        }
    }

    /// A client named `name` over `transport`, seeded, with the balancing and the mechanisms
    /// (ejection, breakers, retries, hedging) the scenario gives each service.
    pub fn client(&self, name: &str, transport: Arc<dyn Transport>) -> Client {
        let mut config = ClientConfig::new(name);
        config.seed = self.scenario.seed;
        config.balance = self.balance();
        for s in &self.scenario.services {
            let name = s.name.as_str().to_string();
            if s.eject {
                config.eject.insert(name.clone(), Ejection::envoy());
            }
            if let Some(spec) = &s.breaker {
                config
                    .breaker
                    .insert(name.clone(), mechanisms::breaker(spec));
            }
            if let Some(spec) = &s.retry {
                config.retry.insert(name.clone(), mechanisms::retry(spec));
            }
            if let Some(spec) = &s.hedge {
                config.hedge.insert(name.clone(), mechanisms::hedge(spec));
            }
            let idempotent = self.idempotent(s);
            if !idempotent.is_empty() {
                config.idempotent.insert(name, idempotent);
            }
        }
        Client::with_events(
            config,
            transport,
            self.registry.clone(),
            self.events.clone(),
        )
    }

    /// Instance `index` of `spec`, calling out through `client`, slowed by `slowdown`: its
    /// server with its endpoints (built in or synthetic), workers, queue and health checks.
    pub fn instance(
        &self,
        spec: &Service,
        index: u32,
        client: Client,
        slowdown: Slowdown,
        clock: Clock,
    ) -> Result<Instance, AssembleError> {
        let env = Env::new(EnvParts {
            service: spec.name.as_str().to_string(),
            index,
            client,
            seed: self.scenario.seed,
            disks: self.disks.clone(),
            topology: self.topology.clone(),
            slowdown,
            clock,
            buggify: self.buggify,
        });
        let mut config = ServiceConfig::new(spec.name.as_str(), "scenario service");
        config.instance = Some(env.id().to_string());
        config.workers = Some(spec.workers.max(1) as usize);
        config.queue = spec.queue as usize;
        config.health_interval = Some(Duration::from_secs(1));
        config.limit = spec.limit.as_ref().map(mechanisms::limit);
        let server = Server::with(config, self.events.clone(), Some(self.registry.clone()));
        server.add_queue_checker();
        let mut background = Vec::new();
        match &spec.body {
            ServiceBody::Builtin { builtin, .. } => {
                let def = self.catalog.service(builtin.as_str()).ok_or_else(|| {
                    AssembleError::UnknownBuiltin {
                        service: spec.name.to_string(),
                        builtin: builtin.to_string(),
                    }
                })?;
                let built = def.build(&env);
                server.add_endpoints(built.endpoints);
                background = built.background;
            }
            ServiceBody::Synthetic { endpoints } => {
                let rotation = Arc::new(AtomicUsize::new(0));
                server.add_endpoints(
                    endpoints
                        .iter()
                        .map(|e| synthetic::endpoint(e, env.clone(), rotation.clone())),
                );
            }
        }
        Ok(Instance {
            server,
            env,
            background,
        })
    }

    /// The service the gateway asks about bearer tokens, and the tokens loads send: the first
    /// service (in file order) whose builtin is registered as an authenticator.
    pub fn authenticator(&self) -> Option<(&str, &LoadTokens)> {
        authenticator(&self.scenario, &self.catalog)
    }

    /// The gateway for the scenario's routes, calling through `client`. It checks bearer
    /// tokens with the authenticator when the topology has one, and lets every request through
    /// otherwise.
    pub fn gateway(&self, client: Client) -> Result<Gateway, AssembleError> {
        let mut routes = Routes::new();
        for r in &self.scenario.routes {
            let bad = |reason: String| AssembleError::Route {
                route: r.key.to_string(),
                reason,
            };
            let method = http::Method::from_bytes(r.key.method.as_str().as_bytes())
                .map_err(|e| bad(e.to_string()))?;
            let status = http::StatusCode::from_u16(r.status).map_err(|e| bad(e.to_string()))?;
            let route = Route::new(
                method,
                &r.key.path,
                r.to.service.as_str(),
                r.to.endpoint.as_str(),
            )
            .and_then(|route| route.with_status(status))
            .map_err(|e| bad(e.to_string()))?;
            routes.add(route).map_err(|e| bad(e.to_string()))?;
        }
        let auth_service = self.authenticator().map(|(name, _)| name);
        let mut config = GatewayConfig::new("gateway", auth_service);
        config.seed = self.scenario.seed;
        Gateway::new(config, routes, client).map_err(|e| AssembleError::Route {
            route: "(gateway)".into(),
            reason: e.to_string(),
        })
    }
}

/// The service of `scenario` the gateway asks about bearer tokens, and the tokens loads send:
/// the one `[gateway] auth` names, none for `"none"`, and without the key the service whose
/// builtin `catalog` registers as an authenticator (validation allows at most one).
pub fn authenticator<'a>(
    scenario: &'a Scenario,
    catalog: &'a Catalog,
) -> Option<(&'a str, &'a LoadTokens)> {
    let named = match &scenario.gateway_auth {
        crate::scenario::GatewayAuth::Open => return None,
        crate::scenario::GatewayAuth::Service(name) => Some(name),
        crate::scenario::GatewayAuth::Found => None,
    };
    scenario
        .services
        .iter()
        .filter(|s| named.is_none_or(|n| *n == s.name))
        .find_map(|s| match &s.body {
            ServiceBody::Builtin { builtin, .. } => {
                let tokens = catalog.service(builtin.as_str())?.authenticator()?;
                Some((s.name.as_str(), tokens))
            }
            ServiceBody::Synthetic { .. } => None,
        })
}

/// The services of `scenario` and their sizes.
pub fn topology(scenario: &Scenario) -> Topology {
    Topology::new(
        scenario
            .services
            .iter()
            .map(|s| Deployed {
                name: s.name.as_str().to_string(),
                builtin: match &s.body {
                    ServiceBody::Builtin { builtin, .. } => Some(builtin.as_str().to_string()),
                    ServiceBody::Synthetic { .. } => None,
                },
                instances: s.instances,
            })
            .collect(),
    )
}
