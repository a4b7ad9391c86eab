//! One instance's environment: everything a service instance is built from, the same in the
//! simulation and on the real network.
//!
//! An [`Env`] names the instance (service, index, id), gives it its framework [`Client`], its
//! own seeded random streams, its disks (which outlive it), its [`Clock`], the topology it runs
//! in, its business [`Metrics`] and the slowdown a fault imposes on its work. The harness makes
//! one per instance; a service's builder reads what it needs and keeps clones. Nothing in it is
//! global: two runs in one process never share a stream, a disk or a clock.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

use crate::dist::Dist;
use crate::framework::ids;
use crate::framework::transport::{TcpTransport, Tokio};
use crate::framework::{Client, ClientConfig, Metrics, Registry};
use crate::system::disk::{Disk, Disks};
use crate::system::Topology;

/// Time since the start of a run: in the simulation, turmoil's virtual time since the run
/// began; on the real network, time since the process started serving.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    zero: Instant,
}

impl Clock {
    /// A clock whose zero is `zero`.
    pub fn starting_at(zero: Instant) -> Clock {
        Clock { zero }
    }

    /// The clock of the current host: inside a turmoil simulation its zero is the start of the
    /// run; outside one, it is now.
    pub fn current() -> Clock {
        let since_start = turmoil::sim_elapsed().unwrap_or_default();
        Clock {
            zero: Instant::now() - since_start,
        }
    }

    /// Time since the zero.
    pub fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.zero)
    }

    /// The host instant of run time `t`.
    pub fn at(&self, t: Duration) -> Instant {
        self.zero + t
    }
}

/// How slow an instance is right now: 1 unless a fault slows it.
pub type Slowdown = Arc<dyn Fn() -> f64 + Send + Sync>;

/// The parts an [`Env`] is made of; the harness fills them (see [`Env::new`]).
pub struct EnvParts {
    /// The service's name, e.g. `service.webhook`.
    pub service: String,
    /// The instance's index among its service's instances.
    pub index: u32,
    /// The instance's client, for calls to other services.
    pub client: Client,
    /// The run's root seed: the instance's streams are derived from it and the instance id.
    pub seed: u64,
    /// Where its disks are (they outlive it).
    pub disks: Arc<Disks>,
    /// The services of the run and their sizes.
    pub topology: Arc<Topology>,
    /// The current slowdown of this instance.
    pub slowdown: Slowdown,
    /// The run's clock.
    pub clock: Clock,
    /// Whether fault points may fire ([`Env::buggify`]): only in a simulated run that asks for
    /// it (`buggify = true`, or a swarm seed that drew it); never under `serve`.
    pub buggify: bool,
}

/// The chance that a fault point is enabled for a run (FoundationDB's is one in four).
const BUGGIFY_ENABLED: f64 = 0.25;
/// The chance that an enabled fault point fires on a call.
const BUGGIFY_FIRES: f64 = 0.05;

/// Everything one instance runs with. Cheap to clone: clones share the instance.
#[derive(Clone)]
pub struct Env {
    inner: Arc<Inner>,
}

struct Inner {
    service: String,
    index: u32,
    id: String,
    client: Client,
    seed: u64,
    work: Mutex<ChaCha8Rng>,
    disks: Arc<Disks>,
    topology: Arc<Topology>,
    slowdown: Slowdown,
    clock: Clock,
    metrics: OnceLock<Metrics>,
    buggify: bool,
    /// Per fault point: whether it is enabled this run, and its stream of draws.
    points: Mutex<BTreeMap<String, (bool, ChaCha8Rng)>>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env").field("id", &self.inner.id).finish()
    }
}

impl Env {
    /// The environment of instance `parts.index` of `parts.service`. The harness makes these
    /// (in the simulation and under `serve`); a user needs it only to build an instance by hand,
    /// outside a run.
    pub fn new(parts: EnvParts) -> Env {
        let id = instance_id(&parts.service, parts.index);
        Env {
            inner: Arc::new(Inner {
                work: Mutex::new(ids::stream(parts.seed, &format!("{id}/time"))),
                service: parts.service,
                index: parts.index,
                id,
                client: parts.client,
                seed: parts.seed,
                disks: parts.disks,
                topology: parts.topology,
                slowdown: parts.slowdown,
                clock: parts.clock,
                metrics: OnceLock::new(),
                buggify: parts.buggify,
                points: Mutex::default(),
            }),
        }
    }

    /// An environment connected to nothing, for looking at what a builder builds (its
    /// endpoints) without running it: a client that reaches no one, fresh disks, an empty
    /// topology. Needs no runtime.
    pub fn detached(service: &str) -> Env {
        let transport = Arc::new(TcpTransport::<Tokio>::default());
        let client = Client::new(ClientConfig::new(service), transport, Registry::new());
        Env::new(EnvParts {
            service: service.to_string(),
            index: 0,
            client,
            seed: 0,
            disks: Disks::new(),
            topology: Arc::new(Topology::default()),
            slowdown: Arc::new(|| 1.0),
            clock: Clock::current(),
            buggify: false,
        })
    }

    /// A fault point, after FoundationDB's BUGGIFY: whether to take a rare path here now (a
    /// delay, an error, a skipped step) that the code must survive. Mark places where a rare
    /// event is legal but seldom seen; the simulation then makes it common.
    ///
    /// Always false unless the run asks for fault points (`buggify = true` in the scenario, or
    /// a swarm seed that drew them), so never outside the simulation. In such a run each point
    /// of each instance is enabled or not for the whole run (one in four, from the seed), and an
    /// enabled point fires on one call in twenty, each from its own stream `<id>/buggify/<point>`.
    pub fn buggify(&self, point: &str) -> bool {
        use rand::Rng;
        if !self.inner.buggify {
            return false;
        }
        let mut points = crate::lock::lock(&self.inner.points);
        let (enabled, rng) = points.entry(point.to_string()).or_insert_with(|| {
            let mut rng = ids::stream(
                self.inner.seed,
                &format!("{}/buggify/{point}", self.inner.id),
            );
            (rng.random_bool(BUGGIFY_ENABLED), rng)
        });
        *enabled && rng.random_bool(BUGGIFY_FIRES)
    }

    /// The service's name.
    pub fn service(&self) -> &str {
        &self.inner.service
    }

    /// The instance's index among its service's instances, from 0.
    pub fn index(&self) -> u32 {
        self.inner.index
    }

    /// The instance id, `service[index]`, e.g. `service.webhook[2]`.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The instance's client: deadlines, cancellation, tracing and discovery come with it.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// A random stream of this instance's own, named `purpose`: the same for the same seed,
    /// instance and purpose, and independent of every other stream (the harness's own streams
    /// are named apart: `<id>/env/<purpose>` is the service's).
    pub fn stream(&self, purpose: &str) -> ChaCha8Rng {
        ids::stream(self.inner.seed, &format!("{}/env/{purpose}", self.inner.id))
    }

    /// The instance's disk for `purpose` (e.g. `data`): it outlives the instance, and a crash
    /// keeps what was synced.
    pub fn disk(&self, purpose: &str) -> Arc<Disk> {
        self.inner
            .disks
            .open(&format!("{}/{purpose}", self.inner.id))
    }

    /// The services of the run and how many instances each has.
    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// Instances of `service` in the run (0 if it has none).
    pub fn instances_of(&self, service: &str) -> u32 {
        self.inner.topology.instances(service)
    }

    /// The run's clock.
    pub fn clock(&self) -> Clock {
        self.inner.clock
    }

    /// Time since the start of the run.
    pub fn now(&self) -> Duration {
        self.inner.clock.now()
    }

    /// How many times slower than normal this instance works right now (1 unless a `slow`
    /// fault acts on it).
    pub fn slowdown(&self) -> f64 {
        (self.inner.slowdown)()
    }

    /// Draws from `dist` on the instance's service-time stream.
    pub fn draw(&self, dist: &Dist) -> Duration {
        let mut rng = self
            .inner
            .work
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        dist.sample(&mut *rng)
    }

    /// Simulated work: sleeps for a time drawn from `dist`, times the slowdown (as a synthetic
    /// endpoint's service time is). Under `serve` it is a real sleep.
    pub async fn work(&self, dist: &Dist) {
        let d = slowed(self.draw(dist), self.slowdown());
        if !d.is_zero() {
            crate::framework::timer::sleep(d).await;
        }
    }

    /// Simulated work of exponential duration with mean `mean`.
    pub async fn work_mean(&self, mean: Duration) {
        self.work(&Dist::Exponential { mean }).await;
    }

    /// Where this instance records business metrics from background work (handlers use
    /// `ctx.count`); `None` before its server started or when the run records no events.
    pub fn metrics(&self) -> Option<Metrics> {
        self.inner.metrics.get().cloned()
    }

    /// Set once the instance's server has started.
    pub(crate) fn set_metrics(&self, metrics: Metrics) {
        // A second start of the same Env would be a harness bug; the first handle stays.
        let _ = self.inner.metrics.set(metrics);
    }
}

/// `work` made `factor` times longer, saturating: overlapping slow faults multiply, and a
/// product past what a `Duration` holds means "never finishes", not a panic.
pub fn slowed(work: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(work.as_secs_f64() * factor).unwrap_or(if factor > 0.0 {
        Duration::MAX
    } else {
        Duration::ZERO
    })
}

/// The id of instance `index` of `service`: `service[index]`.
pub fn instance_id(service: &str, index: u32) -> String {
    format!("{service}[{index}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slowing_saturates_instead_of_overflowing() {
        let hour = Duration::from_secs(3600);
        assert_eq!(
            slowed(Duration::from_millis(2), 20.0),
            Duration::from_millis(40)
        );
        assert_eq!(
            slowed(hour, 1e16),
            Duration::MAX,
            "four faults of 10,000x on an hour"
        );
        assert_eq!(slowed(hour, f64::INFINITY), Duration::MAX);
        assert_eq!(slowed(hour, 0.0), Duration::ZERO);
    }
}
