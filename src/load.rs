//! Open-loop load: requests arrive on a schedule, whatever state the system is in.
//!
//! Each load runs on its client hosts (turmoil's cost grows with hosts, so loads are multiplexed
//! on few). A generator draws arrival times from its own seeded stream, at the rate the load's
//! stages give at that moment, and sleeps until each one, scheduling by absolute instants so that
//! timer rounding never accumulates. Latency is measured from the intended start, so a stall
//! cannot hide behind the requests it delayed (coordinated omission). A request that cannot
//! start on time, because it would start past its deadline or the generator already holds its
//! limit of requests in flight, is counted as dropped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

mod http;

pub use self::http::HttpPool;

use crate::framework::ids;
use crate::framework::timer;
use crate::framework::{Call, Client, Context};
use crate::metrics::{Outcome, Recorder};
use crate::scenario::{Arrival, Load, LoadTarget};
use crate::system::{Clock, LoadEnd, Notes, System};

/// Requests one generator may hold in flight; beyond it new arrivals are dropped.
pub const MAX_INFLIGHT: usize = 100_000;

/// One generator: a share of one load, on one client host.
pub struct Generator {
    /// The load.
    pub load: Load,
    /// How many client hosts share the load.
    pub share: u32,
    /// This generator's index among them.
    pub index: u32,
    /// The client it sends through.
    pub client: Client,
    /// Where results go.
    pub recorder: Arc<Recorder>,
    /// The run's root seed.
    pub seed: u64,
    /// The gateway, for loads that enter on a route.
    pub gateway: Option<Gateway>,
    /// The built-in endpoint the load reaches, if it is one: for realistic bodies and to note
    /// acknowledged writes.
    pub workload: Option<Workload>,
}

/// The builtin endpoint a load's requests end up at, the system that serves it (it shapes
/// the bodies and reads the answers), and where it notes what was acknowledged.
#[derive(Clone)]
pub struct Workload {
    /// The system.
    pub system: Arc<dyn System>,
    /// The builtin's name.
    pub builtin: String,
    /// The endpoint.
    pub endpoint: String,
    /// Where acknowledged writes are noted.
    pub notes: Arc<Notes>,
}

impl Workload {
    fn end<'a>(&'a self, load: &'a str) -> LoadEnd<'a> {
        LoadEnd {
            load,
            builtin: &self.builtin,
            endpoint: &self.endpoint,
        }
    }
}

/// Where route loads enter, and how they authenticate.
#[derive(Clone)]
pub struct Gateway {
    /// Connections to the gateway.
    pub pool: HttpPool,
    /// The bearer token to send, when the gateway checks tokens.
    pub token: Option<String>,
}

/// How one load's requests are sent.
enum Sender {
    Rpc {
        client: Client,
        /// The names every request shares (made once, not per request).
        service: Arc<str>,
        endpoint: Arc<str>,
        /// The context every request's own derives from: a root never cancelled, made once
        /// (each request's context is its child, with the request's deadline).
        root: Context,
    },
    Http {
        gateway: Gateway,
        method: http_crate::Method,
        path: String,
    },
}

use ::http as http_crate;

impl Sender {
    /// Sends request number `seq` with `body` and `deadline` (a host instant); how it ended,
    /// and the answer's body when ok.
    async fn send(&self, seq: u64, body: Bytes, deadline: Instant) -> (Outcome, Option<Bytes>) {
        match self {
            Sender::Rpc {
                client,
                service,
                endpoint,
                root,
            } => {
                let ctx = root.with_deadline(deadline);
                let call = Call::shared(service.clone(), endpoint.clone()).bytes(body);
                // The call's future is boxed on its own (under a kilobyte), and so is the
                // request's (a few hundred bytes): each fits the allocator's per-size caches,
                // where the request's future holding the call (over a kilobyte) did not.
                let send = crate::framework::task::boxed(|| client.send(&ctx, call));
                match send.await {
                    Ok(reply) => (Outcome::Ok, Some(reply.body)),
                    Err(e) => (Outcome::Error(e.code().to_string()), None),
                }
            }
            Sender::Http {
                gateway,
                method,
                path,
            } => {
                let budget = deadline.saturating_duration_since(timer::now());
                let mut request = http_crate::Request::builder()
                    .method(method.clone())
                    .uri(fill_params(path, seq))
                    .header("content-type", "application/json")
                    .header("x-deadline-ms", budget.as_millis().to_string());
                if let Some(token) = &gateway.token {
                    request = request.header("authorization", format!("Bearer {token}"));
                }
                let Ok(request) = request.body(http_body_util::Full::new(body)) else {
                    return (Outcome::Error("bad_request.route".to_string()), None);
                };
                // Boxed for the same reason as the RPC call's: hyper's future is large, and held
                // here it would make every request's task (RPC ones too) large.
                let send = crate::framework::task::boxed(|| gateway.pool.send(request));
                match crate::framework::timer::timeout_at(deadline, send).await {
                    Ok(answer) => answer,
                    Err(_) => (Outcome::Error("timeout".to_string()), None),
                }
            }
        }
    }
}

/// The path with each `:param` segment replaced by a value for request `seq`.
fn fill_params(path: &str, seq: u64) -> String {
    path.split('/')
        .map(|seg| match seg.strip_prefix(':') {
            Some(name) => format!("{name}-{seq}"),
            None => seg.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A JSON object of about `bytes` bytes.
fn json_body(bytes: u32) -> Bytes {
    let pad = (bytes as usize).saturating_sub(10);
    Bytes::from(format!("{{\"pad\":\"{}\"}}", ".".repeat(pad)))
}

impl Generator {
    /// The gap to the next arrival at run time `t`, or `None` while the rate is zero.
    fn gap(&self, t: Duration, rng: &mut ChaCha8Rng) -> Option<Duration> {
        let elapsed = t.saturating_sub(self.load.start);
        let per_second = self.load.rate_at(elapsed).as_per_second() / f64::from(self.share.max(1));
        if per_second <= 0.0 || !per_second.is_finite() {
            return None;
        }
        let mean = 1.0 / per_second;
        let secs = match self.load.arrival {
            Arrival::Uniform => mean,
            Arrival::Poisson => -mean * (1.0 - rng.random::<f64>()).ln(),
        };
        Some(Duration::from_secs_f64(secs.clamp(0.0, 3600.0)))
    }

    fn sender(&self) -> Option<Sender> {
        match &self.load.target {
            LoadTarget::Rpc(target) => Some(Sender::Rpc {
                client: self.client.clone(),
                service: Arc::from(target.service.as_str()),
                endpoint: Arc::from(target.endpoint.as_str()),
                root: Context::background(),
            }),
            LoadTarget::Route(key) => Some(Sender::Http {
                gateway: self.gateway.clone()?,
                method: http_crate::Method::from_bytes(key.method.as_str().as_bytes()).ok()?,
                path: key.path.clone(),
            }),
        }
    }

    /// The padding body sent when the target takes any body.
    fn padding(&self) -> Bytes {
        match &self.load.target {
            LoadTarget::Rpc(_) => Bytes::from(vec![b'.'; self.load.body_bytes as usize]),
            LoadTarget::Route(_) => json_body(self.load.body_bytes),
        }
    }

    /// Sends the load's requests until its stop time, then waits for those in flight.
    pub async fn run(self) {
        let Some(sender) = self.sender() else {
            return; // a route load without a gateway: the runner places one for every route
        };
        let sender = Arc::new(sender);
        let padding = self.padding();
        let clock = Clock::current();
        let name: Arc<str> = self.load.name.as_str().into();
        let mut rng = ids::stream(self.seed, &format!("load/{name}/{}", self.index));
        let mut body_rng = ids::stream(self.seed, &format!("load/{name}/{}/body", self.index));
        let workload = self.workload.clone().map(Arc::new);
        let mut seq = 0u64;
        let inflight = Arc::new(AtomicUsize::new(0));
        let tasks = TaskTracker::new();
        let deadline = self.load.deadline;
        let mut t = self.load.start;
        loop {
            t = match self.gap(t, &mut rng) {
                Some(gap) => t + gap,
                // No traffic at this rate: look again a little later.
                None => t + Duration::from_millis(10),
            };
            if t >= self.load.stop {
                break;
            }
            if self
                .load
                .rate_at(t.saturating_sub(self.load.start))
                .as_per_second()
                <= 0.0
            {
                continue;
            }
            crate::framework::timer::idle_until(clock.at(t)).await;
            let late = clock.now() > t + deadline;
            if late || inflight.load(Ordering::Relaxed) >= MAX_INFLIGHT {
                self.recorder
                    .record_load(&name, t, t, Outcome::Dropped, deadline);
                continue;
            }
            let (sender, recorder, name, inflight, workload) = (
                sender.clone(),
                self.recorder.clone(),
                name.clone(),
                inflight.clone(),
                workload.clone(),
            );
            inflight.fetch_add(1, Ordering::Relaxed);
            seq += 1;
            let n = seq * u64::from(self.share.max(1)) + u64::from(self.index);
            let body = workload
                .as_ref()
                .and_then(|w| w.system.request(w.end(&name), n, &mut body_rng))
                .unwrap_or_else(|| padding.clone());
            // Boxed: tokio moves a task's future more than once as it spawns and ends it; a box
            // moves as a pointer.
            crate::framework::task::spawn(tasks.track_future(crate::framework::task::boxed(
                move || async move {
                    let (outcome, answer) = sender.send(n, body, clock.at(t + deadline)).await;
                    if let (Some(w), Some(answer)) = (&workload, &answer) {
                        w.system.answered(w.end(&name), answer, &w.notes);
                    }
                    recorder.record_load(&name, t, clock.now(), outcome, deadline);
                    inflight.fetch_sub(1, Ordering::Relaxed);
                },
            )));
        }
        tasks.close();
        tasks.wait().await;
    }
}
