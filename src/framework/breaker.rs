//! Circuit breakers: a client stops calling an instance that keeps failing, then probes it.
//!
//! Each client keeps one circuit per instance it calls. A closed circuit counts failures (a
//! timeout, an unavailable instance, an internal error or a refusal for load, as
//! [`crate::framework::eject::is_failure`] says): it opens after `consecutive_failures` in a
//! row, or when failures reach `failure_rate` of at least `min_requests` calls in the last
//! `window`. An open circuit sends nothing for a jittered backoff that doubles with each time it
//! opens in a row (from `open_base` to `open_max`); then it is half open: the next call is a
//! probe, and the others still stay away. A probe that succeeds closes the circuit; one that
//! fails opens it again, for longer. When every instance of a service is open, a call fails at
//! once with `unavailable.circuit_open` instead of waiting for its timeout.
//!
//! Time is tokio's and the jitter comes from the client's seeded stream, so a run replays.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

/// When a circuit opens and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Breaker {
    /// Failures in a row that open the circuit.
    pub consecutive_failures: u32,
    /// The share of failed calls in `window` that opens it (`None`: only consecutive failures).
    pub failure_rate: Option<f64>,
    /// The window the failure rate is measured over.
    pub window: Duration,
    /// Calls the window must hold before the failure rate counts.
    pub min_requests: u32,
    /// How long the circuit first stays open; it doubles each time a probe fails.
    pub open_base: Duration,
    /// The longest it stays open.
    pub open_max: Duration,
}

impl Default for Breaker {
    /// 5 failures in a row, or half of at least 20 calls in 10 s; open 1 s at first, at most
    /// 30 s.
    fn default() -> Breaker {
        Breaker {
            consecutive_failures: 5,
            failure_rate: Some(0.5),
            window: Duration::from_secs(10),
            min_requests: 20,
            open_base: Duration::from_secs(1),
            open_max: Duration::from_secs(30),
        }
    }
}

/// A circuit's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Calls flow.
    Closed,
    /// No calls until `until`.
    Open {
        /// When the next probe may go.
        until: Instant,
    },
    /// One probe is out; other calls stay away until it answers.
    HalfOpen,
}

/// A change of state, for the client to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The circuit opened (or opened again after a failed probe).
    Opened,
    /// A probe went out.
    HalfOpened,
    /// A probe succeeded: calls flow again.
    Closed,
}

impl Transition {
    /// The counter the client reports this transition as.
    pub fn metric(self) -> &'static str {
        match self {
            Transition::Opened => "breaker.opened",
            Transition::HalfOpened => "breaker.probes",
            Transition::Closed => "breaker.closed",
        }
    }
}

/// One instance's circuit.
#[derive(Debug, Clone)]
struct Circuit {
    state: State,
    consecutive: u32,
    /// Times opened in a row without closing: the backoff's exponent.
    opened: u32,
    /// Calls and failures in the current and the previous half-window.
    window: [(u32, u32); 2],
    window_start: Instant,
}

impl Circuit {
    fn new(now: Instant) -> Circuit {
        Circuit {
            state: State::Closed,
            consecutive: 0,
            opened: 0,
            window: [(0, 0); 2],
            window_start: now,
        }
    }

    /// Rolls the two half-windows forward to `now`.
    fn roll(&mut self, policy: &Breaker, now: Instant) {
        let half = (policy.window / 2).max(Duration::from_millis(1));
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= half * 2 {
            self.window = [(0, 0); 2];
            self.window_start = now;
        } else if elapsed >= half {
            self.window = [self.window[1], (0, 0)];
            self.window_start += half;
        }
    }
}

/// The circuits of every instance a client calls.
#[derive(Debug)]
pub struct Breakers {
    circuits: BTreeMap<Arc<str>, Circuit>,
    rng: ChaCha8Rng,
}

impl Breakers {
    /// No circuits yet; backoffs are jittered from `rng`.
    pub fn new(rng: ChaCha8Rng) -> Breakers {
        Breakers {
            circuits: BTreeMap::new(),
            rng,
        }
    }

    /// The state of `instance`'s circuit (closed if never called).
    pub fn state(&self, instance: &str) -> State {
        self.circuits
            .get(instance)
            .map_or(State::Closed, |c| c.state)
    }

    /// Whether a call may go to `instance` at `now`: closed, or open with its backoff over (the
    /// call will be the probe).
    pub fn allows(&self, instance: &str, now: Instant) -> bool {
        match self.state(instance) {
            State::Closed => true,
            State::Open { until } => until <= now,
            State::HalfOpen => false,
        }
    }

    /// Notes that a call goes to `instance`: an open circuit whose backoff is over becomes half
    /// open, with this call as its probe.
    pub fn on_send(&mut self, instance: &Arc<str>, now: Instant) -> Option<Transition> {
        let circuit = self.circuits.get_mut(instance)?;
        match circuit.state {
            State::Open { until } if until <= now => {
                circuit.state = State::HalfOpen;
                Some(Transition::HalfOpened)
            }
            _ => None,
        }
    }

    /// Lets the next call probe `instance` when its probe was dropped unanswered.
    pub fn abandon_probe(&mut self, instance: &str, now: Instant) {
        if let Some(circuit) = self.circuits.get_mut(instance) {
            if circuit.state == State::HalfOpen {
                circuit.state = State::Open { until: now };
            }
        }
    }

    /// Notes how a call to `instance` ended: `Some(failed)`, or `None` when the caller gave it
    /// up itself. `probe` says it was the half-open probe ([`Breakers::on_send`] opened it):
    /// only the probe's answer decides a half-open circuit, and an answer to a call sent before
    /// the circuit opened changes nothing.
    pub fn on_result(
        &mut self,
        policy: &Breaker,
        instance: &Arc<str>,
        probe: bool,
        failed: Option<bool>,
        now: Instant,
    ) -> Option<Transition> {
        let circuit = self
            .circuits
            .entry(instance.clone())
            .or_insert_with(|| Circuit::new(now));
        let Some(failed) = failed else {
            if probe && circuit.state == State::HalfOpen {
                circuit.state = State::Open { until: now };
            }
            return None;
        };
        match circuit.state {
            State::HalfOpen if !probe => None,
            State::HalfOpen if failed => Some(self.open(policy, instance, now)),
            State::HalfOpen => {
                let circuit = self.circuits.get_mut(instance)?;
                *circuit = Circuit::new(now);
                Some(Transition::Closed)
            }
            // An answer to a call sent before the circuit opened changes nothing.
            State::Open { .. } => None,
            State::Closed => {
                circuit.roll(policy, now);
                circuit.window[1].0 += 1;
                if failed {
                    circuit.window[1].1 += 1;
                    circuit.consecutive = circuit.consecutive.saturating_add(1);
                } else {
                    circuit.consecutive = 0;
                }
                let (calls, failures) = (
                    circuit.window[0].0 + circuit.window[1].0,
                    circuit.window[0].1 + circuit.window[1].1,
                );
                let by_rate = policy.failure_rate.is_some_and(|rate| {
                    calls >= policy.min_requests.max(1)
                        && f64::from(failures) >= rate * f64::from(calls)
                });
                let trip =
                    failed && (circuit.consecutive >= policy.consecutive_failures || by_rate);
                trip.then(|| self.open(policy, instance, now))
            }
        }
    }

    /// Opens `instance`'s circuit for its next backoff, jittered by ±20%.
    fn open(&mut self, policy: &Breaker, instance: &Arc<str>, now: Instant) -> Transition {
        let jitter = self.rng.random_range(0.8..1.2);
        let Some(circuit) = self.circuits.get_mut(instance) else {
            return Transition::Opened;
        };
        let doublings = circuit.opened.min(20);
        circuit.opened = circuit.opened.saturating_add(1);
        let backoff = policy
            .open_base
            .saturating_mul(1u32 << doublings)
            .min(policy.open_max)
            .mul_f64(jitter);
        circuit.state = State::Open {
            until: now + backoff,
        };
        circuit.consecutive = 0;
        circuit.window = [(0, 0); 2];
        circuit.window_start = now;
        Transition::Opened
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::ids;

    fn policy() -> Breaker {
        Breaker {
            failure_rate: None,
            ..Breaker::default()
        }
    }

    #[test]
    fn five_failures_open_a_probe_half_opens_and_a_success_closes() {
        let p = policy();
        let a: Arc<str> = "s[0]".into();
        let mut b = Breakers::new(ids::stream(1, "test"));
        let t0 = Instant::now();
        for _ in 0..4 {
            assert_eq!(b.on_result(&p, &a, false, Some(true), t0), None);
        }
        assert_eq!(
            b.on_result(&p, &a, false, Some(true), t0),
            Some(Transition::Opened)
        );
        assert!(!b.allows("s[0]", t0 + Duration::from_millis(700)));
        let State::Open { until } = b.state("s[0]") else {
            panic!("open expected");
        };
        let open = until - t0;
        assert!(open >= Duration::from_millis(800) && open <= Duration::from_millis(1200));
        assert!(b.allows("s[0]", until));
        assert_eq!(b.on_send(&a, until), Some(Transition::HalfOpened));
        assert!(!b.allows("s[0]", until), "one probe at a time");
        assert_eq!(
            b.on_result(&p, &a, false, Some(false), until),
            None,
            "a late answer to an older call is not the probe's"
        );
        assert_eq!(
            b.on_result(&p, &a, true, Some(true), until),
            Some(Transition::Opened),
            "a failed probe opens again"
        );
        let State::Open { until: again } = b.state("s[0]") else {
            panic!("open expected");
        };
        assert!(again - until >= Duration::from_millis(1600), "for longer");
        b.on_send(&a, again);
        b.abandon_probe("s[0]", again);
        assert!(
            b.allows("s[0]", again),
            "a dropped probe lets the next call probe"
        );
        b.on_send(&a, again);
        assert_eq!(
            b.on_result(&p, &a, true, Some(false), again),
            Some(Transition::Closed)
        );
        assert!(b.allows("s[0]", again));
    }

    #[test]
    fn a_failure_rate_over_the_window_opens_and_a_cancel_says_nothing() {
        let p = Breaker::default();
        let a: Arc<str> = "s[0]".into();
        let mut b = Breakers::new(ids::stream(1, "test"));
        let t0 = Instant::now();
        let mut opened = None;
        for i in 0..22 {
            let failed = i % 2 == 0;
            let at = t0 + Duration::from_millis(i * 10);
            if let Some(t) = b.on_result(&p, &a, false, Some(failed), at) {
                opened = Some((i, t));
            }
        }
        assert_eq!(opened, Some((20, Transition::Opened)), "11 of 21 failed");
        let mut c = Breakers::new(ids::stream(1, "test"));
        for _ in 0..10 {
            assert_eq!(c.on_result(&p, &a, false, None, t0), None);
        }
        assert_eq!(c.state("s[0]"), State::Closed);
    }
}
