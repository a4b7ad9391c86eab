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

use crate::framework::ids;
use crate::framework::{Call, Client, Context};
use crate::metrics::{Outcome, Recorder};
use crate::scenario::{Arrival, Load, LoadTarget};

/// Requests one generator may hold in flight; beyond it new arrivals are dropped.
pub const MAX_INFLIGHT: usize = 100_000;

/// Simulated time on the current host, as time since the start of the run.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    zero: Instant,
}

impl RunClock {
    /// The clock of the current turmoil host.
    pub fn current() -> RunClock {
        let since_start = turmoil::sim_elapsed().unwrap_or_default();
        RunClock {
            zero: Instant::now() - since_start,
        }
    }

    /// Time since the start of the run.
    pub fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.zero)
    }

    /// The host instant of run time `t`.
    pub fn at(&self, t: Duration) -> Instant {
        self.zero + t
    }
}

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

    /// Sends the load's requests until its stop time, then waits for those in flight.
    pub async fn run(self) {
        let LoadTarget::Rpc(target) = &self.load.target else {
            return; // routes need the HTTP gateway; the runner refuses them before starting
        };
        let clock = RunClock::current();
        let name: Arc<str> = self.load.name.as_str().into();
        let mut rng = ids::stream(self.seed, &format!("load/{name}/{}", self.index));
        let body = Bytes::from(vec![b'.'; self.load.body_bytes as usize]);
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
            tokio::time::sleep_until(clock.at(t)).await;
            let late = clock.now() > t + deadline;
            if late || inflight.load(Ordering::Relaxed) >= MAX_INFLIGHT {
                self.recorder
                    .record_load(&name, t, t, Outcome::Dropped, deadline);
                continue;
            }
            let call =
                Call::new(target.service.as_str(), target.endpoint.as_str()).bytes(body.clone());
            let ctx = Context::background().with_deadline(clock.at(t + deadline));
            let (client, recorder, name, inflight) = (
                self.client.clone(),
                self.recorder.clone(),
                name.clone(),
                inflight.clone(),
            );
            inflight.fetch_add(1, Ordering::Relaxed);
            tasks.spawn(async move {
                let result = client.send(&ctx, call).await;
                let outcome = match result {
                    Ok(_) => Outcome::Ok,
                    Err(e) => Outcome::Error(e.code().to_string()),
                };
                recorder.record_load(&name, t, clock.now(), outcome, deadline);
                inflight.fetch_sub(1, Ordering::Relaxed);
            });
        }
        tasks.close();
        tasks.wait().await;
    }
}
