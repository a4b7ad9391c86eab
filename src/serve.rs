//! `windtunnel serve`: a scenario's topology on the real network of this machine.
//!
//! Every instance of every service listens on its own 127.0.0.1 port over tokio's TCP, with the
//! same endpoints the simulation runs (built in or synthetic, service times as real sleeps), and
//! the gateway answers HTTP on the address asked for, with the scenario's routes. No fault, no
//! network model and no load: this is the system as it would ship, to try with curl. Instances
//! are assembled by the same [`Deployment`] as in the simulation, each with its own
//! [`Env`](crate::system::Env). Disks are in memory, or with `--data DIR` files in `DIR` that
//! are fsynced before a write is acknowledged and replayed at the next start, so a restart (or
//! a `kill -9`) loses no acknowledged write.
//!
//! Service ports are closed to anyone without the deployment's key ([`crate::framework::trust`]):
//! the key comes from `--key-file` (to let services of other processes in), or is drawn afresh
//! from the operating system at each start and known to this process only.

use std::sync::Arc;

use crate::framework::transport::{TcpTransport, Tokio};
use crate::framework::trust::{Credential, DeploymentKey};
use crate::framework::{Listen, NullSink};
use crate::scenario::Scenario;
use crate::system::{Catalog, Clock, Disks};
use crate::topology::{AssembleError, Deployment};

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
    /// The topology could not be assembled (a route the gateway cannot serve, an unknown
    /// builtin).
    #[error(transparent)]
    Assemble(#[from] AssembleError),
    /// The data directory could not be made or used.
    #[error("cannot keep data in {dir}: {source}")]
    Data {
        /// The directory.
        dir: String,
        /// The cause.
        source: std::io::Error,
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

/// A seed no earlier start of this process or another drew: the file's seed mixed with the
/// wall clock and the process id. Only `serve` reads the wall clock for this; runs in the
/// simulation keep the file's seed.
fn fresh_seed(seed: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut h = crate::framework::ids::Fnv1a::default();
    h.write_u64(seed);
    h.write_u64(nanos);
    h.write_u64(u64::from(std::process::id()));
    h.finish()
}

/// The deployment's key: the one in `file` (its contents, at least 16 bytes, are the secret),
/// or without one a fresh key from the operating system that only this process will know.
pub fn deployment_key(
    file: Option<&std::path::Path>,
) -> Result<DeploymentKey, crate::framework::trust::KeyError> {
    match file {
        Some(path) => DeploymentKey::from_file(path),
        None => Ok(DeploymentKey::generate()),
    }
}

/// Where a served topology listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The gateway's HTTP address.
    pub gateway: String,
    /// Each instance and its service port (open only to holders of the deployment's key), in
    /// file order.
    pub instances: Vec<(String, String)>,
}

/// Starts every instance (builtins from `catalog`) and the gateway, every service port open
/// only to holders of `key`, every disk a file in `data` when given (else in memory); calls
/// `ready` with where they listen, then serves until the future is dropped.
pub async fn serve(
    scenario: &Scenario,
    catalog: &Catalog,
    listen: &str,
    key: DeploymentKey,
    data: Option<&std::path::Path>,
    ready: impl FnOnce(&Served),
) -> Result<(), ServeError> {
    let credential = Credential::with_os_nonces(key, "serve");
    // On the real network nothing is replayed: request and trace ids are seeded afresh at each
    // start, so they do not repeat across restarts.
    let mut fresh = scenario.clone();
    fresh.seed = fresh_seed(scenario.seed);
    let mut deployment = Deployment::new(Arc::new(fresh), catalog.clone(), Arc::new(NullSink));
    deployment.buggify = false; // fault points are for the simulation only
    deployment.disks = Disks::new(); // real time: no simulated sync times, no disk faults
    if let Some(dir) = data {
        let unusable = |source| ServeError::Data {
            dir: dir.display().to_string(),
            source,
        };
        deployment.disks = Disks::in_dir(dir).map_err(|e| ServeError::Data {
            dir: dir.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
        // Fail now, with the reason, rather than when a service first opens its disk.
        let probe = dir.join(".windtunnel-probe");
        std::fs::write(&probe, b"").map_err(unusable)?;
        let _ = std::fs::remove_file(&probe);
    }
    let clock = Clock::current();
    for spec in &scenario.services {
        for i in 0..spec.instances {
            let id = crate::system::instance_id(spec.name.as_str(), i);
            let transport = Arc::new(TcpTransport::<Tokio>::with_credential(
                credential.named(&id),
            ));
            let client = deployment.client(&id, transport.clone());
            let instance = deployment.instance(spec, i, client, Arc::new(|| 1.0), clock)?;
            instance
                .start(transport, &Listen::on("127.0.0.1:0"))
                .await
                .map_err(|e| ServeError::Instance {
                    instance: id.clone(),
                    reason: e.to_string(),
                })?;
        }
    }
    let transport = Arc::new(TcpTransport::<Tokio>::with_credential(
        credential.named("gateway"),
    ));
    let gateway = deployment.gateway(deployment.client("gateway", transport))?;
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
    let instances = scenario
        .services
        .iter()
        .flat_map(|spec| deployment.registry.instances(spec.name.as_str()))
        .map(|i| (i.id.to_string(), i.addr.to_string()))
        .collect();
    ready(&Served {
        gateway: addr.to_string(),
        instances,
    });
    crate::gateway::serve(listener, Arc::new(gateway)).await;
    Ok(())
}
