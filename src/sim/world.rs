//! Placement: which turmoil host runs which instances, on which ports, and how each instance is
//! assembled (transport with the network model, server, client, endpoints, fault middleware).
//!
//! turmoil's cost grows with hosts times ticks (docs/design.md), so a service may pack several
//! instances onto one node (`nodes` in the file): instance `i` runs on node `i % nodes`, on port
//! `7000 + i / nodes`. A crash takes down a whole node.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::framework::ids;
use crate::framework::{Client, Listen};
use crate::metrics::Recorder;
use crate::scenario::Scenario;
use crate::sim::faults::{FaultBoard, InjectErrors};
use crate::sim::netmodel::{ModelTransport, NetModel, Party};
use crate::system::{Clock, Notes};
use crate::topology::Deployment;

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

/// What every host of a run shares: the deployment (the same assembly `serve` uses), and the
/// simulation's own parts around it.
#[derive(Clone)]
pub struct World {
    /// The services, their catalog, discovery and disks.
    pub deployment: Deployment,
    /// Metrics and checks; also the deployment's event sink.
    pub recorder: Arc<Recorder>,
    /// The network model.
    pub model: Arc<NetModel>,
    /// In-instance faults.
    pub faults: Arc<FaultBoard>,
    /// What loads were told, for the verifiers.
    pub notes: Arc<Notes>,
}

impl World {
    /// The scenario.
    pub fn scenario(&self) -> &Scenario {
        &self.deployment.scenario
    }

    /// A transport for `party` named `name`, through the network model.
    fn transport(&self, party: Party, name: &str) -> Arc<ModelTransport> {
        let seed = self.scenario().seed;
        Arc::new(ModelTransport::new(self.model.clone(), party, seed, name))
    }

    /// A client for `party` named `name`, over its own transport.
    pub fn client(&self, party: Party, name: &str) -> Client {
        self.deployment.client(name, self.transport(party, name))
    }

    /// Starts one instance on the current host.
    pub async fn start_instance(&self, p: &Placement) -> Result<(), Box<dyn std::error::Error>> {
        let spec = self
            .scenario()
            .services
            .iter()
            .find(|s| s.name.as_str() == p.service)
            .ok_or("placement names a service the scenario does not have")?;
        let transport = self.transport(p.party(), &p.id);
        let client = self.deployment.client(&p.id, transport.clone());
        let slowdown = {
            let (faults, party) = (self.faults.clone(), p.party());
            Arc::new(move || faults.slow_factor(&party))
        };
        let instance =
            self.deployment
                .instance(spec, p.index, client, slowdown, Clock::current())?;
        let seed = self.scenario().seed;
        // Only a scenario with error faults pays for a check on every request; the draws come
        // from the instance's own stream, so leaving it out moves no other stream.
        let injects = self
            .scenario()
            .faults
            .iter()
            .any(|f| matches!(f.kind, crate::scenario::FaultKind::Errors { .. }));
        if injects {
            instance.server.add_middleware(Arc::new(InjectErrors {
                board: self.faults.clone(),
                party: p.party(),
                rng: Mutex::new(ids::stream(seed, &format!("{}/errors", p.id))),
            }));
        }
        instance
            .start(transport, &Listen::host(&p.node, p.port))
            .await?;
        Ok(())
    }
}
