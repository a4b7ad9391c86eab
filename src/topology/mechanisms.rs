//! A scenario's degradation mechanisms as the framework's policies: what callers of each
//! service do (breaker, retry, hedge) and each instance's concurrency limit. A field a file
//! leaves out takes the framework's default, so the defaults live in one place.

use crate::framework::breaker::Breaker;
use crate::framework::limit::{Gradient, Limit};
use crate::framework::retry::{Hedge, HedgeDelay, Retry, RetryBudget};
use crate::scenario::model::{
    BreakerSpec, BudgetSpec, HedgeAfter, HedgeSpec, LimitSpec, RetrySpec,
};

/// Callers' circuit breakers.
pub fn breaker(spec: &BreakerSpec) -> Breaker {
    let d = Breaker::default();
    Breaker {
        consecutive_failures: spec.failures.unwrap_or(d.consecutive_failures),
        failure_rate: spec.rate.map(|r| r.value()).or(d.failure_rate),
        window: spec.window.unwrap_or(d.window),
        min_requests: spec.min_requests.unwrap_or(d.min_requests),
        open_base: spec.open.unwrap_or(d.open_base),
        open_max: spec.max_open.unwrap_or(d.open_max),
    }
}

/// Callers' retries.
pub fn retry(spec: &RetrySpec) -> Retry {
    let d = Retry::default();
    Retry {
        attempts: spec.attempts.unwrap_or(d.attempts),
        backoff: spec.backoff.unwrap_or(d.backoff),
        max_backoff: spec.max_backoff.unwrap_or(d.max_backoff),
        budget: match spec.budget {
            None => None,
            Some(None) => Some(RetryBudget::default()),
            Some(Some(b)) => Some(budget(&b)),
        },
    }
}

fn budget(spec: &BudgetSpec) -> RetryBudget {
    let d = RetryBudget::default();
    RetryBudget {
        ttl: spec.ttl.unwrap_or(d.ttl),
        min_per_sec: spec.min_per_sec.unwrap_or(d.min_per_sec),
        percent: spec.percent.map_or(d.percent, |r| r.value() as f32),
    }
}

/// Callers' hedging.
pub fn hedge(spec: &HedgeSpec) -> Hedge {
    let d = Hedge::default();
    Hedge {
        delay: match spec.after {
            None => d.delay,
            Some(HedgeAfter::Fixed(after)) => HedgeDelay::Fixed(after),
            Some(HedgeAfter::Percentile(q)) => HedgeDelay::Percentile(q),
        },
        attempts: spec.copies.unwrap_or(d.attempts),
        max_extra: spec.max_extra.map_or(d.max_extra, |r| r.value() as f32),
    }
}

/// An instance's concurrency limit.
pub fn limit(spec: &LimitSpec) -> Limit {
    match *spec {
        LimitSpec::Fixed(n) => Limit::Fixed(n),
        LimitSpec::Adaptive { initial, min, max } => {
            let d = Gradient::default();
            let min = min.unwrap_or(d.min).min(max.unwrap_or(u32::MAX));
            let max = max.unwrap_or(d.max).max(min);
            Limit::Adaptive(Gradient {
                initial: initial.unwrap_or(d.initial).clamp(min, max),
                min,
                max,
                ..d
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::mechanisms::defaults;

    #[test]
    fn the_defaults_validation_assumes_are_the_frameworks() {
        let (b, r, g) = (Breaker::default(), Retry::default(), Gradient::default());
        assert_eq!(defaults::BREAKER_OPEN, b.open_base);
        assert_eq!(defaults::BREAKER_MAX_OPEN, b.open_max);
        assert_eq!(defaults::RETRY_BACKOFF, r.backoff);
        assert_eq!(defaults::RETRY_MAX_BACKOFF, r.max_backoff);
        assert_eq!((defaults::LIMIT_MIN, defaults::LIMIT_MAX), (g.min, g.max));
    }

    #[test]
    fn an_adaptive_limit_keeps_its_bounds_in_order_whatever_is_left_out() {
        let spec = LimitSpec::Adaptive {
            initial: None,
            min: None,
            max: Some(3),
        };
        let Limit::Adaptive(g) = limit(&spec) else {
            panic!("adaptive expected");
        };
        assert!(
            g.min <= g.max && (g.min..=g.max).contains(&g.initial),
            "{g:?}"
        );
    }
}
