//! Shared set-up: a turmoil sim, a registry and event sink shared by its hosts, and helpers
//! that start a server or a client on the current host.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use windtunnel::framework::transport::{TcpTransport, Transport, TransportConfig, Turmoil};
use windtunnel::framework::trust::{Credential, DeploymentKey};
use windtunnel::framework::{
    Client, ClientConfig, Endpoint, Event, Listen, MemorySink, Registry, Server, ServiceConfig,
};

pub const PORT: u16 = 7000;

/// Everything the hosts of one test share.
#[derive(Clone)]
pub struct World {
    pub registry: Arc<Registry>,
    pub events: Arc<MemorySink>,
}

impl World {
    pub fn new() -> World {
        World {
            registry: Registry::new(),
            events: MemorySink::new(),
        }
    }

    /// Starts `service` instance `instance` with `endpoints` on the current turmoil host and
    /// serves until the host ends.
    pub async fn serve(
        &self,
        host: &str,
        service: &str,
        instance: usize,
        endpoints: Vec<Endpoint>,
    ) -> turmoil::Result {
        let mut config = ServiceConfig::new(service, "test service");
        config.instance = Some(format!("{service}[{instance}]"));
        let server = Server::with(config, self.events.clone(), Some(self.registry.clone()));
        server.add_endpoints(endpoints);
        server.run(transport(), &Listen::host(host, PORT)).await?;
        Ok(())
    }

    /// A client on the current turmoil host.
    pub fn client(&self, name: &str) -> Client {
        let mut config = ClientConfig::new(name);
        config.seed = 1;
        Client::with_events(
            config,
            transport(),
            self.registry.clone(),
            self.events.clone(),
        )
    }

    /// Events of `kind` (by name) at `instance`.
    pub fn events_at(&self, instance: &str, kind: &str) -> Vec<Event> {
        self.events
            .events()
            .into_iter()
            .filter(|e| &*e.instance == instance && e.kind.name() == kind)
            .collect()
    }
}

/// The key every transport of these tests holds (a deployment of one seed).
pub fn credential(name: &str) -> Credential {
    Credential::new(
        DeploymentKey::from_seed(1),
        name,
        windtunnel::framework::ids::stream(1, name),
    )
}

pub fn transport() -> Arc<dyn Transport> {
    Arc::new(TcpTransport::<Turmoil>::with_credential(credential("test")))
}

/// A sim with fixed 2 ms one-way latency and 1 ms ticks.
pub fn sim<'a>(seed: u64) -> turmoil::Sim<'a> {
    turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(60))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(2))
        .max_message_latency(Duration::from_millis(2))
        .rng_seed(seed)
        .build()
}

/// Simulated time now.
pub fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// Records when a handler's future was dropped and whether it ran to its end: observed at the
/// callee, not assumed.
#[derive(Debug, Default, Clone)]
pub struct Probe {
    inner: Arc<Mutex<ProbeState>>,
}

#[derive(Debug, Default, Clone)]
pub struct ProbeState {
    pub started: Vec<(String, Duration)>,
    pub finished: Vec<(String, Duration)>,
    pub dropped: Vec<(String, Duration)>,
}

impl Probe {
    pub fn state(&self) -> ProbeState {
        self.inner.lock().unwrap().clone()
    }

    /// A guard for one handler run named `who`; marks it finished with `done()`.
    pub fn enter(&self, who: &str) -> ProbeGuard {
        self.inner
            .lock()
            .unwrap()
            .started
            .push((who.to_string(), now()));
        ProbeGuard {
            probe: self.clone(),
            who: who.to_string(),
            done: false,
        }
    }
}

pub struct ProbeGuard {
    probe: Probe,
    who: String,
    done: bool,
}

impl ProbeGuard {
    pub fn done(mut self) {
        self.done = true;
        self.probe
            .inner
            .lock()
            .unwrap()
            .finished
            .push((self.who.clone(), now()));
    }
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        if !self.done {
            self.probe
                .inner
                .lock()
                .unwrap()
                .dropped
                .push((self.who.clone(), now()));
        }
    }
}

/// Places host `h`, serving `svc.h` with a transport of `config` that holds the test key,
/// answering `work` with `reply` bytes after `delay`.
pub fn host_h(
    sim: &mut turmoil::Sim<'_>,
    world: &World,
    config: TransportConfig,
    delay: Duration,
    reply: usize,
) {
    let w = world.clone();
    sim.host("h", move || {
        let (w, config) = (w.clone(), config.clone());
        async move { serve(w, config, delay, reply).await }
    });
}

/// Serves `svc.h` on this host with a transport of `config` (given the test key), answering
/// `work` with `reply` bytes after `delay`.
async fn serve(
    w: World,
    config: TransportConfig,
    delay: Duration,
    reply: usize,
) -> turmoil::Result {
    let config = TransportConfig {
        credential: Some(credential("h")),
        ..config
    };
    let transport: Arc<dyn Transport> = Arc::new(TcpTransport::<Turmoil>::new(config));
    let mut sc = ServiceConfig::new("svc.h", "raw peers");
    sc.instance = Some("svc.h[0]".into());
    let server = Server::with(sc, w.events.clone(), Some(w.registry.clone()));
    server.add_endpoints([Endpoint::raw(
        "work",
        move |_ctx, _body: Bytes| async move {
            tokio::time::sleep(delay).await;
            Ok(Bytes::from(vec![b'x'; reply]))
        },
    )]);
    server.run(transport, &Listen::host("h", PORT)).await?;
    Ok(())
}

/// A raw connection to `h` past the handshake, as a peer holding the key (a service gone
/// wrong) would have.
pub async fn keyed() -> Result<turmoil::net::TcpStream, Box<dyn std::error::Error>> {
    let mut raw = turmoil::net::TcpStream::connect(("h", PORT)).await?;
    credential("client")
        .client_handshake(&mut raw, Duration::from_secs(1))
        .await?;
    Ok(raw)
}
