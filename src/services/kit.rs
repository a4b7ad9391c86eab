//! What a built-in service instance is given to run with, in the wind tunnel or for real: its
//! client, who it is, its disks, the topology's sizes, a service-time stream, and the way a
//! slow fault reaches it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use rand_chacha::ChaCha8Rng;

use crate::dist::Dist;
use crate::framework::{Client, Context, Endpoint};
use crate::lock::lock;
use crate::services::disk::{Disk, Disks};

/// Everything one instance of a built-in service runs with. Cheap to clone.
#[derive(Clone)]
pub struct Kit {
    /// The instance's client, for calls to other services.
    pub client: Client,
    /// The instance id, e.g. `service.webhook[2]`.
    pub instance: String,
    /// Its index among its service's instances.
    pub index: u32,
    /// Where its disks are (they outlive it).
    pub disks: Arc<Disks>,
    /// Instances per service in the topology, by service name.
    pub sizes: Arc<BTreeMap<String, u32>>,
    /// The instance's service-time stream.
    pub rng: Arc<Mutex<ChaCha8Rng>>,
    /// The current slowdown of this instance (1 unless a slow fault acts on it).
    pub slow: Arc<dyn Fn() -> f64 + Send + Sync>,
}

impl std::fmt::Debug for Kit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kit")
            .field("instance", &self.instance)
            .finish()
    }
}

impl Kit {
    /// The instance's disk for `purpose` (e.g. `data`).
    pub fn disk(&self, purpose: &str) -> Arc<Disk> {
        self.disks.open(&format!("{}/{purpose}", self.instance))
    }

    /// Instances of `service` in the topology (0 if it has none).
    pub fn instances_of(&self, service: &str) -> u32 {
        self.sizes.get(service).copied().unwrap_or(0)
    }

    /// Simulated work: sleeps for an exponential time of mean `mean`, times any slowdown (as
    /// a synthetic endpoint's service time is).
    pub async fn work(&self, mean: Duration) {
        let drawn = Dist::Exponential { mean }.sample(&mut *lock(&self.rng));
        let d = drawn.mul_f64((self.slow)());
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }
}

/// Work an instance runs beside its endpoints (an event consumer, an outbox relay), started
/// once the server is up with a context that records the server's business metrics.
pub type Background = Box<dyn FnOnce(Context) -> BoxFuture<'static, ()> + Send>;

/// Wraps an async closure as [`Background`] work.
pub fn background<F, Fut>(f: F) -> Background
where
    F: FnOnce(Context) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Box::new(move |ctx| Box::pin(f(ctx)))
}

/// A built-in service instance: its endpoints and its background work.
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
}
