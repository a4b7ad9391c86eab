//! Latency-aware balancing: a peak-sensitive moving average of each instance's round-trip time,
//! as Finagle, Linkerd and tower's `PeakEwma` keep it.
//!
//! A new round trip longer than the average replaces it at once (the peak); a shorter one is
//! blended in with a weight that grows with the time since the last update, and the estimate
//! also decays toward zero while no answer arrives, so an instance that turned slow is avoided
//! at once and probed again some seconds after it stops being chosen. The cost of sending to an
//! instance is its estimate times one more than the calls already in flight to it; power of two
//! choices picks the cheaper of two. Time is tokio's, so it is virtual in the simulation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// One instance's round-trip estimate.
#[derive(Debug, Clone, Copy)]
struct Estimate {
    rtt_ns: f64,
    at: Instant,
}

/// The round-trip estimates of every instance a client has called.
#[derive(Debug)]
pub struct PeakEwma {
    decay_ns: f64,
    default_rtt_ns: f64,
    estimates: BTreeMap<Arc<str>, Estimate>,
}

impl PeakEwma {
    /// Estimates that decay with time constant `decay` (10 s in Finagle and Linkerd), starting
    /// each instance at `default_rtt` until its first answer.
    pub fn new(decay: Duration, default_rtt: Duration) -> PeakEwma {
        PeakEwma {
            decay_ns: (decay.as_nanos() as f64).max(1.0),
            default_rtt_ns: default_rtt.as_nanos() as f64,
            estimates: BTreeMap::new(),
        }
    }

    /// The estimate of `instance` at `now`, decayed since its last update.
    fn decayed(&self, instance: &str, now: Instant) -> f64 {
        match self.estimates.get(instance) {
            Some(e) => {
                let elapsed = now.saturating_duration_since(e.at).as_nanos() as f64;
                e.rtt_ns * (-elapsed / self.decay_ns).exp()
            }
            None => self.default_rtt_ns,
        }
    }

    /// Notes a round trip of `rtt` to `instance`, finished at `now`.
    pub fn observe(&mut self, instance: &Arc<str>, rtt: Duration, now: Instant) {
        let rtt_ns = rtt.as_nanos() as f64;
        let rtt_ns = match self.estimates.get(instance) {
            Some(e) => {
                let elapsed = now.saturating_duration_since(e.at).as_nanos() as f64;
                let w = (-elapsed / self.decay_ns).exp();
                let current = e.rtt_ns * w;
                if rtt_ns > current {
                    rtt_ns
                } else {
                    current + rtt_ns * (1.0 - w)
                }
            }
            None => rtt_ns,
        };
        self.estimates
            .insert(instance.clone(), Estimate { rtt_ns, at: now });
    }

    /// The cost of one more call to `instance` with `inflight` calls already out to it.
    pub fn cost(&self, instance: &str, inflight: usize, now: Instant) -> f64 {
        self.decayed(instance, now) * (inflight as f64 + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_answer_counts_at_once_and_fades_when_no_more_come() {
        let (fast, slow): (Arc<str>, Arc<str>) = ("a[0]".into(), "a[1]".into());
        let mut e = PeakEwma::new(Duration::from_secs(10), Duration::from_millis(1));
        let t0 = Instant::now();
        for i in 0..10 {
            let now = t0 + Duration::from_millis(100 * i);
            e.observe(&fast, Duration::from_millis(20), now);
            e.observe(&slow, Duration::from_millis(20), now);
        }
        let now = t0 + Duration::from_secs(1);
        e.observe(&slow, Duration::from_secs(2), now);
        assert_eq!(
            e.cost(&slow, 0, now),
            2e9,
            "a peak replaces the average at once"
        );
        assert!(e.cost(&fast, 0, now) < 2.1e7);
        assert!(
            e.cost(&fast, 9, now) < e.cost(&slow, 0, now),
            "even ten in flight"
        );
        let later = now + Duration::from_secs(30);
        assert!(
            e.cost(&slow, 0, later) < 2e9 * 0.06,
            "it fades to be tried again"
        );
        assert_eq!(
            e.cost("never[0]", 0, now),
            1e6,
            "an unknown instance costs the default"
        );
        e.observe(
            &fast,
            Duration::from_millis(10),
            now + Duration::from_millis(1),
        );
        assert!(
            e.cost(&fast, 0, now) > 1e7,
            "a shorter round trip is blended in, not taken"
        );
    }
}
