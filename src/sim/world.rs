//! Placement: which turmoil host runs which instances, on which ports, and how each instance is
//! assembled (transport with the network model, server, client, endpoints, fault middleware).
//!
//! turmoil's cost grows with hosts times ticks (DESIGN.md), so a service may pack several
//! instances onto one node (`nodes` in the file): instance `i` runs on node `i % nodes`, on port
//! `7000 + i / nodes`. A crash takes down a whole node.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use crate::framework::ids;
use crate::framework::{
    Balance, Client, ClientConfig, Context, Listen, Registry, Server, ServiceConfig,
};
use crate::metrics::Recorder;
use crate::scenario::{Balancer, Scenario, Service, ServiceBody};
use crate::services::disk::Disks;
use crate::services::kit::{Background, Kit};
use crate::sim::faults::{FaultBoard, InjectErrors};
use crate::sim::netmodel::{ModelTransport, NetModel, Party};
use crate::sim::synthetic::{self, InstanceKit};

/// First port instances listen on.
const BASE_PORT: u16 = 7000;

/// One instance's place in the world.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The service.
    pub service: String,
    /// Its index.
    pub index: u32,
    /// `service[index]`.
    pub id: String,
    /// The turmoil host it runs on.
    pub node: String,
    /// Its port there.
    pub port: u16,
}

impl Placement {
    /// The address callers use.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.node, self.port)
    }

    /// The instance as a network party.
    pub fn party(&self) -> Party {
        Party::Instance {
            service: self.service.as_str().into(),
            index: self.index,
        }
    }
}

/// The turmoil host name of node `n` of `service` (dots are not host-name friendly).
pub fn node_name(service: &str, n: u32) -> String {
    format!("{}-n{n}", service.replace('.', "-"))
}

/// Every instance of every service, placed, in scenario order.
pub fn place(scenario: &Scenario) -> Vec<Placement> {
    let mut out = Vec::new();
    for s in &scenario.services {
        let nodes = s.nodes.max(1);
        for i in 0..s.instances {
            let slot = u16::try_from(i / nodes).unwrap_or(u16::MAX - BASE_PORT);
            out.push(Placement {
                service: s.name.as_str().to_string(),
                index: i,
                id: format!("{}[{i}]", s.name),
                node: node_name(s.name.as_str(), i % nodes),
                port: BASE_PORT.saturating_add(slot),
            });
        }
    }
    out
}

/// Placements grouped by node, nodes in first-seen order.
pub fn by_node(placements: &[Placement]) -> Vec<(String, Vec<Placement>)> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<String, Vec<Placement>> = BTreeMap::new();
    for p in placements {
        if !groups.contains_key(&p.node) {
            order.push(p.node.clone());
        }
        groups.entry(p.node.clone()).or_default().push(p.clone());
    }
    order
        .into_iter()
        .map(|n| {
            let g = groups.remove(&n).unwrap_or_default();
            (n, g)
        })
        .collect()
}

/// What every host of a run shares.
#[derive(Clone)]
pub struct Shared {
    /// The scenario.
    pub scenario: Arc<Scenario>,
    /// Discovery.
    pub registry: Arc<Registry>,
    /// Metrics and checks.
    pub recorder: Arc<Recorder>,
    /// The network model.
    pub model: Arc<NetModel>,
    /// In-instance faults.
    pub faults: Arc<FaultBoard>,
    /// The disks of built-in databases; they outlive crashes.
    pub disks: Arc<Disks>,
    /// Instances per service.
    pub sizes: Arc<BTreeMap<String, u32>>,
    /// Writes acknowledged to the load, for the invariants.
    pub acknowledged: Arc<crate::services::workload::Acknowledged>,
}

impl Shared {
    /// How callers balance over each service.
    pub fn balance(&self) -> BTreeMap<String, Balance> {
        self.scenario
            .services
            .iter()
            .map(|s| {
                let b = match s.balancer {
                    Balancer::RoundRobin => Balance::RoundRobin,
                    Balancer::PowerOfTwoChoices => Balance::PowerOfTwo,
                };
                (s.name.as_str().to_string(), b)
            })
            .collect()
    }

    /// A client for `party` named `name`, over its own transport.
    pub fn client(&self, party: Party, name: &str) -> (Client, Arc<ModelTransport>) {
        let seed = self.scenario.seed;
        let transport = Arc::new(ModelTransport::new(self.model.clone(), party, seed, name));
        let mut config = ClientConfig::new(name);
        config.seed = seed;
        config.balance = self.balance();
        let client = Client::with_events(
            config,
            transport.clone(),
            self.registry.clone(),
            self.recorder.clone(),
        );
        (client, transport)
    }

    /// Starts one instance on the current host.
    pub async fn start_instance(&self, p: &Placement) -> Result<(), Box<dyn std::error::Error>> {
        let spec: &Service = self
            .scenario
            .services
            .iter()
            .find(|s| s.name.as_str() == p.service)
            .ok_or("placement names a service the scenario does not have")?;
        let (client, transport) = self.client(p.party(), &p.id);
        let seed = self.scenario.seed;
        let kit = InstanceKit {
            client,
            party: p.party(),
            faults: self.faults.clone(),
            rng: Arc::new(Mutex::new(ids::stream(seed, &format!("{}/time", p.id)))),
            rotation: Arc::new(AtomicUsize::new(0)),
        };
        let host = InstanceHost {
            events: self.recorder.clone(),
            registry: self.registry.clone(),
            disks: self.disks.clone(),
            sizes: self.sizes.clone(),
        };
        let (server, background) = instance_server(spec, &p.id, kit, &host)?;
        server.add_middleware(Arc::new(InjectErrors {
            board: self.faults.clone(),
            party: p.party(),
            rng: Mutex::new(ids::stream(seed, &format!("{}/errors", p.id))),
        }));
        server
            .start(transport, &Listen::host(&p.node, p.port))
            .await?;
        spawn_background(&server, background);
        Ok(())
    }
}

/// Instances per service, by name.
pub fn sizes(scenario: &Scenario) -> Arc<BTreeMap<String, u32>> {
    Arc::new(
        scenario
            .services
            .iter()
            .map(|s| (s.name.as_str().to_string(), s.instances))
            .collect(),
    )
}

/// What every instance of a topology is assembled with, in the simulation or for real.
#[derive(Clone)]
pub struct InstanceHost {
    /// Where events go.
    pub events: Arc<dyn crate::framework::EventSink>,
    /// Discovery.
    pub registry: Arc<Registry>,
    /// The disks of built-in databases.
    pub disks: Arc<Disks>,
    /// Instances per service.
    pub sizes: Arc<BTreeMap<String, u32>>,
}

/// Starts an instance's background work (consumers, relays) once its server is up, with a
/// context that records the server's business metrics.
pub fn spawn_background(server: &Server, background: Vec<Background>) {
    let ctx = match server.metrics() {
        Some(m) => Context::background().with_metrics(m),
        None => Context::background(),
    };
    for work in background {
        tokio::spawn(work(ctx.clone()));
    }
}

/// The server of one instance of `spec`, with its endpoints (built in or synthetic), its
/// workers and its queue, not yet started, and the background work to spawn once it is:
/// shared by the simulation and `windtunnel serve`.
pub fn instance_server(
    spec: &Service,
    id: &str,
    kit: InstanceKit,
    host: &InstanceHost,
) -> Result<(Server, Vec<Background>), &'static str> {
    let mut config = ServiceConfig::new(spec.name.as_str(), "scenario service");
    config.instance = Some(id.to_string());
    config.workers = Some(spec.workers.max(1) as usize);
    config.queue = spec.queue as usize;
    config.health_interval = Some(std::time::Duration::from_secs(1));
    let server = Server::with(config, host.events.clone(), Some(host.registry.clone()));
    server.add_queue_checker();
    let mut background = Vec::new();
    match &spec.body {
        ServiceBody::Builtin { builtin, .. } => {
            let services_kit = Kit {
                client: kit.client.clone(),
                instance: id.to_string(),
                index: kit.party.index().unwrap_or(0),
                disks: host.disks.clone(),
                sizes: host.sizes.clone(),
                rng: kit.rng.clone(),
                slow: {
                    let (faults, party) = (kit.faults.clone(), kit.party.clone());
                    Arc::new(move || faults.slow_factor(&party))
                },
            };
            let built = crate::services::build(builtin.as_str(), &services_kit)
                .ok_or("the scenario names a builtin this build does not have")?;
            server.add_endpoints(built.endpoints);
            background = built.background;
        }
        ServiceBody::Synthetic { endpoints } => {
            server.add_endpoints(
                endpoints
                    .iter()
                    .map(|e| synthetic::endpoint(e, kit.clone())),
            );
        }
    }
    Ok((server, background))
}
