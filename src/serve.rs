//! `windtunnel serve`: a scenario's topology on the real network of this machine.
//!
//! Every instance of every service listens on its own 127.0.0.1 port over tokio's TCP, with the
//! same endpoints the simulation runs (built in or synthetic, service times as real sleeps), and
//! the gateway answers HTTP on the address asked for, with the scenario's routes. No fault, no
//! network model and no load: this is the system as it would ship, to try with curl. The
//! built-in databases keep their logs in memory here: they survive nothing but the process.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use crate::framework::{ids, Client, ClientConfig, Listen, NullSink, Registry};
use crate::gateway::{Gateway, GatewayConfig, Route, Routes};
use crate::scenario::Scenario;
use crate::services::disk::Disks;
use crate::sim::faults::FaultBoard;
use crate::sim::netmodel::Party;
use crate::sim::synthetic::InstanceKit;
use crate::sim::world::{instance_server, sizes, spawn_background, InstanceHost};
use crate::transport::{TcpTransport, Tokio};

/// Why the topology could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A service could not start.
    #[error("cannot start {instance}: {reason}")]
    Instance {
        /// The instance.
        instance: String,
        /// Why.
        reason: String,
    },
    /// A route is not valid for the gateway.
    #[error("route {route}: {reason}")]
    Route {
        /// The route.
        route: String,
        /// Why.
        reason: String,
    },
    /// The gateway's address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Starts every instance and the gateway; calls `ready` with the gateway's address, then serves
/// until the future is dropped.
pub async fn serve(
    scenario: &Scenario,
    listen: &str,
    ready: impl FnOnce(&str),
) -> Result<(), ServeError> {
    let registry = Registry::new();
    let host = InstanceHost {
        events: Arc::new(NullSink),
        registry: registry.clone(),
        disks: Disks::new(),
        sizes: sizes(scenario),
    };
    for spec in &scenario.services {
        for i in 0..spec.instances {
            let id = format!("{}[{i}]", spec.name);
            let transport = Arc::new(TcpTransport::<Tokio>::default());
            let kit = InstanceKit {
                client: client(scenario, &id, transport.clone(), &registry),
                party: Party::Instance {
                    service: spec.name.as_str().into(),
                    index: i,
                },
                faults: FaultBoard::new(),
                rng: Arc::new(Mutex::new(ids::stream(
                    scenario.seed,
                    &format!("{id}/time"),
                ))),
                rotation: Arc::new(AtomicUsize::new(0)),
            };
            let failed = |reason: String| ServeError::Instance {
                instance: id.clone(),
                reason,
            };
            let (server, background) =
                instance_server(spec, &id, kit, &host).map_err(|e| failed(e.to_string()))?;
            server
                .start(transport, &Listen::on("127.0.0.1:0"))
                .await
                .map_err(|e| failed(e.to_string()))?;
            spawn_background(&server, background);
        }
    }
    let transport = Arc::new(TcpTransport::<Tokio>::default());
    let gateway = gateway(scenario, client(scenario, "gateway", transport, &registry))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: listen.to_string(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: listen.to_string(),
        source,
    })?;
    ready(&addr.to_string());
    crate::gateway::serve(listener, Arc::new(gateway)).await;
    Ok(())
}

fn client(
    scenario: &Scenario,
    name: &str,
    transport: Arc<TcpTransport<Tokio>>,
    registry: &Arc<Registry>,
) -> Client {
    let mut config = ClientConfig::new(name);
    config.seed = scenario.seed;
    Client::new(config, transport, registry.clone())
}

/// Whether the scenario has the built-in auth service for the gateway to check tokens with.
pub fn has_auth(scenario: &Scenario) -> bool {
    scenario.services.iter().any(|s| {
        s.name.as_str() == crate::services::auth::NAME
            && matches!(&s.body, crate::scenario::ServiceBody::Builtin { builtin, .. } if builtin.as_str() == "auth")
    })
}

/// The gateway for a scenario's routes, calling through `client`. It checks bearer tokens with
/// service.auth when the scenario has one, and lets every request through otherwise.
pub fn gateway(scenario: &Scenario, client: Client) -> Result<Gateway, ServeError> {
    let mut routes = Routes::new();
    for r in &scenario.routes {
        let bad = |reason: String| ServeError::Route {
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
    let mut config = GatewayConfig::new("gateway");
    config.seed = scenario.seed;
    if !has_auth(scenario) {
        config.auth_service = None;
    }
    Gateway::new(config, routes, client).map_err(|e| ServeError::Route {
        route: "(gateway)".into(),
        reason: e.to_string(),
    })
}
