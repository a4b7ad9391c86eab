//! Load shedding at the server: a limit on the requests an instance holds at once (running or
//! waiting for a worker), fixed or adaptive. A request over the limit is refused at once with
//! `rate_limited.concurrency_limit`, before it waits or works, so an overloaded instance keeps
//! serving the requests it accepted within their deadlines instead of queueing every request
//! until all of them are late.
//!
//! The adaptive limit follows the gradient of Netflix's concurrency-limits (Gradient2) and
//! Envoy's adaptive concurrency filter: it compares the time each request spent in the instance
//! (waiting plus working) with a long-run average of the time requests spend working. While a
//! request takes less than `tolerance` times that average, no queue is building and, if the
//! limit is what holds requests back, it grows by about its square root (the headroom a queue
//! needs). When requests take longer, they are queueing, and the limit shrinks in proportion (by
//! at most half per step). A request that ran out of time or was cancelled in the instance
//! shrinks it by 10%. Steps are smoothed, and the limit stays between `min` and `max`. Because
//! the baseline is the work time, not the lowest round trip, it is not inflated by the queue it
//! is meant to keep short. Time is tokio's, so it is virtual in the simulation.

use std::time::Duration;

/// A concurrency limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// At most this many requests at once.
    Fixed(u32),
    /// A limit that follows the latency gradient.
    Adaptive(Gradient),
}

/// The adaptive limit's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gradient {
    /// The limit at start.
    pub initial: u32,
    /// The lowest limit.
    pub min: u32,
    /// The highest limit.
    pub max: u32,
    /// How much longer than the average work time a request may take before the limit shrinks.
    pub tolerance: f64,
    /// The weight of each new estimate (0 to 1).
    pub smoothing: f64,
}

impl Default for Gradient {
    /// Starts at 20, between 4 and 1,000, tolerance 2, smoothing 0.2.
    fn default() -> Gradient {
        Gradient {
            initial: 20,
            min: 4,
            max: 1000,
            tolerance: 2.0,
            smoothing: 0.2,
        }
    }
}

/// The limit's running state on one instance.
#[derive(Debug)]
pub struct Limiter {
    policy: Limit,
    limit: f64,
    inflight: u32,
    /// Long-run average work time, in seconds.
    baseline: Option<f64>,
}

impl Limiter {
    /// A limiter under `policy`, holding nothing.
    pub fn new(policy: Limit) -> Limiter {
        let limit = match policy {
            Limit::Fixed(n) => f64::from(n.max(1)),
            Limit::Adaptive(g) => {
                let lo = g.min.max(1);
                f64::from(g.initial.clamp(lo, g.max.max(lo)))
            }
        };
        Limiter {
            policy,
            limit,
            inflight: 0,
            baseline: None,
        }
    }

    /// The current limit, rounded down.
    pub fn limit(&self) -> u32 {
        self.limit as u32
    }

    /// Requests held now.
    pub fn inflight(&self) -> u32 {
        self.inflight
    }

    /// Takes a place for one request; `false` when the instance is at its limit.
    pub fn try_acquire(&mut self) -> bool {
        if f64::from(self.inflight) + 1.0 > self.limit.floor().max(1.0) {
            return false;
        }
        self.inflight += 1;
        true
    }

    /// Gives back a place: the request spent `rtt` in the instance, `work` of it working, and
    /// `dropped` says it ran out of time or was cancelled there.
    pub fn release(&mut self, rtt: Duration, work: Duration, dropped: bool) {
        let held = self.inflight;
        self.inflight = self.inflight.saturating_sub(1);
        let Limit::Adaptive(g) = self.policy else {
            return;
        };
        let (lo, hi) = (f64::from(g.min.max(1)), f64::from(g.max.max(g.min).max(1)));
        if dropped {
            self.limit = (self.limit * 0.9).clamp(lo, hi);
            return;
        }
        let work_s = work.as_secs_f64();
        let baseline = match self.baseline {
            Some(b) => b + (work_s - b) * BASELINE_WEIGHT,
            None => work_s,
        };
        self.baseline = Some(baseline);
        let rtt_s = rtt.as_secs_f64();
        // No wait beyond the work (or no time at all): nothing is queueing.
        let gradient = if rtt_s <= baseline || baseline <= 0.0 {
            1.0
        } else {
            (g.tolerance * baseline / rtt_s).clamp(0.5, 1.0)
        };
        // Growing is only earned while the limit is what holds requests back.
        let headroom = if f64::from(held) * 2.0 >= self.limit {
            self.limit.sqrt()
        } else {
            0.0
        };
        let target = self.limit * gradient + headroom;
        let smoothing = g.smoothing.clamp(0.0, 1.0);
        self.limit = (self.limit * (1.0 - smoothing) + target * smoothing).clamp(lo, hi);
    }
}

/// The weight of one request in the average work time: about the last hundred count.
const BASELINE_WEIGHT: f64 = 0.01;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_limit_refuses_the_request_over_it() {
        let mut l = Limiter::new(Limit::Fixed(2));
        assert!(l.try_acquire() && l.try_acquire());
        assert!(!l.try_acquire());
        l.release(Duration::from_millis(5), Duration::from_millis(5), false);
        assert!(l.try_acquire());
        assert_eq!(l.limit(), 2);
    }

    #[test]
    fn the_adaptive_limit_grows_while_fast_and_shrinks_when_queueing_builds() {
        let mut l = Limiter::new(Limit::Adaptive(Gradient::default()));
        for _ in 0..200 {
            while l.try_acquire() {}
            l.release(Duration::from_millis(10), Duration::from_millis(10), false);
        }
        let grown = l.limit();
        assert!(grown > 100, "fast and full: grows, to {grown}");
        for _ in 0..200 {
            while l.try_acquire() {}
            l.release(Duration::from_millis(100), Duration::from_millis(10), false);
        }
        let shrunk = l.limit();
        assert!(
            shrunk < grown / 4,
            "waiting 9x its work: shrinks, to {shrunk}"
        );
        for _ in 0..100 {
            l.release(Duration::from_millis(100), Duration::from_millis(10), true);
        }
        assert_eq!(l.limit(), 4, "never below the minimum");
    }
}
