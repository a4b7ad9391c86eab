//! Retries and hedged requests: which calls may go again, when, and how much extra load a
//! client may add doing it.
//!
//! A call is retried or hedged only when its endpoint is idempotent (the client's config lists
//! it for the service, or the call says so with [`crate::framework::Call::idempotent`]): a copy
//! of a write could apply it twice. A retry also needs an error that says the request can succeed
//! elsewhere (`unavailable.*` or `rate_limited.*`: the instance was down, or refused it for load).
//! Retries wait an exponential backoff with full jitter, go to another instance when there is
//! one, never past the caller's deadline, and each one draws on a retry budget: tower's
//! `TpsBudget`, Finagle's design, allowing a share of recent requests plus a floor per second.
//! Without a budget, retries multiply the load on a failing dependency; with it, they add at most
//! that share.
//!
//! A hedged call sends another copy to another instance when the first has not answered after a
//! delay (fixed, or a percentile of the latencies this client observed from the service); the
//! first success wins and the others are cancelled. Hedges draw on a budget of their own, so
//! they add at most `max_extra` of the requests.

use std::time::Duration;

use tower::retry::budget::{Budget, TpsBudget};

use crate::framework::error::{Error, ErrorKind};

/// A retry budget: a share of the requests in the last `ttl`, plus a floor per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudget {
    /// The window deposits count over, 1 s to 60 s.
    pub ttl: Duration,
    /// Retries allowed per second whatever the traffic.
    pub min_per_sec: u32,
    /// Retries allowed per request, 0 to 1 (0.2: one retry per five requests).
    pub percent: f32,
}

impl Default for RetryBudget {
    /// Finagle's and tower's default: 20% of the requests of the last 10 s, plus 10 per second.
    fn default() -> RetryBudget {
        RetryBudget {
            ttl: Duration::from_secs(10),
            min_per_sec: 10,
            percent: 0.2,
        }
    }
}

impl RetryBudget {
    /// A fresh budget (tower's bucket), with its arguments held to what tower accepts.
    pub fn bucket(&self) -> Bucket {
        let ttl = self
            .ttl
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        let percent = if self.percent.is_finite() {
            self.percent.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let min = self.min_per_sec.min(1_000_000);
        Bucket(TpsBudget::new(ttl, min, percent))
    }
}

/// A budget's running balance.
#[derive(Debug)]
pub struct Bucket(TpsBudget);

impl Bucket {
    /// One request made: the budget grows by its share.
    pub fn deposit(&self) {
        self.0.deposit();
    }

    /// Takes one retry (or hedge) from the budget; `false` when it is spent.
    pub fn withdraw(&self) -> bool {
        self.0.withdraw()
    }
}

/// When and how a client retries calls to one service.
#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// The first backoff's ceiling; it doubles with each retry. Each wait is drawn uniformly
    /// below its ceiling (full jitter).
    pub backoff: Duration,
    /// The highest ceiling.
    pub max_backoff: Duration,
    /// The budget retries draw on; `None` retries every failure up to `attempts` (the storm
    /// the budget exists to prevent).
    pub budget: Option<RetryBudget>,
}

impl Default for Retry {
    /// 3 attempts, backoff 10 ms doubling to at most 1 s, the default budget.
    fn default() -> Retry {
        Retry {
            attempts: 3,
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(1),
            budget: Some(RetryBudget::default()),
        }
    }
}

impl Retry {
    /// The ceiling of the wait before retry number `retry` (1 for the first retry).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(20);
        self.backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff)
    }
}

/// Whether an error says the same request may succeed if sent again: the instance was
/// unreachable or unavailable, or refused it for load before doing any work.
pub fn is_retryable(error: &Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Unavailable | ErrorKind::RateLimited
    ) && !error.matches("unavailable.circuit_open")
}

/// When a hedge goes out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HedgeDelay {
    /// A fixed time after the previous copy.
    Fixed(Duration),
    /// This percentile (0 to 1) of the latencies observed from the service; no hedging until
    /// enough have been observed.
    Percentile(f64),
}

/// How a client hedges calls to one service.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hedge {
    /// When each extra copy goes out, after the one before.
    pub delay: HedgeDelay,
    /// Copies in all, the first included (at least 2 to hedge at all).
    pub attempts: u32,
    /// The most extra copies, as a share of requests (0.1: one per ten), over 10 s.
    pub max_extra: f32,
}

impl Default for Hedge {
    /// One extra copy at the observed p95, at most 10% extra.
    fn default() -> Hedge {
        Hedge {
            delay: HedgeDelay::Percentile(0.95),
            attempts: 2,
            max_extra: 0.1,
        }
    }
}

impl Hedge {
    /// The budget extra copies draw on: `max_extra` of the requests, no floor.
    pub fn bucket(&self) -> Bucket {
        RetryBudget {
            ttl: Duration::from_secs(10),
            min_per_sec: 0,
            percent: self.max_extra,
        }
        .bucket()
    }
}

/// Observed latencies of one service: the last [`LatencyWindow::CAPACITY`], with percentiles
/// recomputed every [`LatencyWindow::REFRESH`] observations.
#[derive(Debug, Clone, Default)]
pub struct LatencyWindow {
    ring: Vec<Duration>,
    next: usize,
    since_sorted: usize,
    sorted: Vec<Duration>,
}

impl LatencyWindow {
    /// How many latencies are kept.
    pub const CAPACITY: usize = 1000;
    /// How many observations between recomputations of the percentiles.
    pub const REFRESH: usize = 50;
    /// How many observations before a percentile is given.
    pub const MIN_SAMPLES: usize = 100;

    /// Notes one latency.
    pub fn observe(&mut self, latency: Duration) {
        if self.ring.len() < Self::CAPACITY {
            self.ring.push(latency);
        } else {
            self.ring[self.next] = latency;
            self.next = (self.next + 1) % Self::CAPACITY;
        }
        self.since_sorted += 1;
        if self.since_sorted >= Self::REFRESH || self.ring.len() <= Self::MIN_SAMPLES {
            self.since_sorted = 0;
            self.sorted.clone_from(&self.ring);
            self.sorted.sort_unstable();
        }
    }

    /// The `q` quantile (0 to 1) of the kept latencies, once enough were observed.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.ring.len() < Self::MIN_SAMPLES || self.sorted.is_empty() {
            return None;
        }
        let last = self.sorted.len() - 1;
        let rank = ((q.clamp(0.0, 1.0) * last as f64).round() as usize).min(last);
        self.sorted.get(rank).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_that_can_succeed_elsewhere_are_retried() {
        assert!(is_retryable(&Error::unavailable("down", "")));
        assert!(is_retryable(&Error::of(
            ErrorKind::RateLimited,
            "limit",
            ""
        )));
        assert!(!is_retryable(&Error::unavailable("circuit_open", "")));
        assert!(!is_retryable(&Error::timeout("", "")));
        assert!(!is_retryable(&Error::bad_request("x", "")));
        assert!(!is_retryable(&Error::internal("x", "")));
    }

    #[test]
    fn the_backoff_ceiling_doubles_up_to_its_cap() {
        let r = Retry::default();
        assert_eq!(r.ceiling(1), Duration::from_millis(10));
        assert_eq!(r.ceiling(2), Duration::from_millis(20));
        assert_eq!(r.ceiling(8), Duration::from_secs(1));
        assert_eq!(r.ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_budget_allows_its_share_plus_its_floor() {
        let b = RetryBudget {
            ttl: Duration::from_secs(10),
            min_per_sec: 0,
            percent: 0.2,
        }
        .bucket();
        for _ in 0..100 {
            b.deposit();
        }
        let allowed = (0..100).filter(|_| b.withdraw()).count();
        assert_eq!(allowed, 20);
        let floor = RetryBudget::default().bucket();
        let allowed = (0..1000).filter(|_| floor.withdraw()).count();
        assert_eq!(allowed, 100, "10 per second over 10 s with no requests");
    }

    #[test]
    fn a_percentile_needs_enough_samples() {
        let mut w = LatencyWindow::default();
        for i in 1..=99 {
            w.observe(Duration::from_millis(i));
        }
        assert_eq!(w.quantile(0.95), None);
        w.observe(Duration::from_millis(100));
        let p95 = w.quantile(0.95).map(|d| d.as_millis());
        assert!(matches!(p95, Some(94..=96)), "{p95:?}");
    }
}
