//! Outlier ejection: an instance that fails too many calls in a row stops being picked for a
//! while, as Envoy's outlier detection does it.
//!
//! Each client keeps, per instance, its consecutive failures (a timeout, an unavailable instance,
//! an internal error or a refusal for load; any answer that is not a failure resets the count). At the threshold
//! the instance is ejected for the base time times the number of times it has been ejected (up
//! to a cap), unless that would eject more than the allowed share of the service's instances
//! (always at least one may be). Once its time is up it is picked again; it fails its way out
//! again if it is still sick. Time is tokio's, so it is virtual in the simulation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::framework::error::{Error, ErrorKind};

/// When instances are ejected. [`Ejection::envoy`] gives Envoy's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ejection {
    /// Consecutive failures that eject an instance.
    pub consecutive_failures: u32,
    /// How long a first ejection lasts; the n-th lasts n times this.
    pub base: Duration,
    /// The longest an ejection lasts.
    pub max: Duration,
    /// The most of a service's instances ejected at once, in percent (at least one may be).
    pub max_percent: u8,
}

impl Ejection {
    /// Envoy's defaults: 5 consecutive failures, 30 s growing with each ejection up to 300 s, at
    /// most 10% of the instances.
    pub fn envoy() -> Ejection {
        Ejection {
            consecutive_failures: 5,
            base: Duration::from_secs(30),
            max: Duration::from_secs(300),
            max_percent: 10,
        }
    }
}

/// Whether an answer counts against the instance that gave it (`Some(true)`), for it
/// (`Some(false)`), or says nothing of it (`None`: the caller cancelled the call itself, as a
/// fanout does with the calls it no longer needs).
pub fn is_failure(result: &Result<impl Sized, Error>) -> Option<bool> {
    match result {
        Ok(_) => Some(false),
        Err(e) if e.kind() == ErrorKind::Cancelled => None,
        Err(e) => Some(matches!(
            e.kind(),
            ErrorKind::Timeout
                | ErrorKind::Unavailable
                | ErrorKind::Internal
                | ErrorKind::RateLimited
        )),
    }
}

/// One instance's record.
#[derive(Debug, Clone, Copy, Default)]
struct Record {
    consecutive: u32,
    ejections: u32,
    until: Option<Instant>,
}

/// The records of every instance a client has called, by service.
#[derive(Debug, Default)]
pub struct Outliers {
    records: BTreeMap<Arc<str>, BTreeMap<Arc<str>, Record>>,
}

impl Outliers {
    /// Notes how a call to `instance` of `service` (which has `instances` instances) ended at
    /// `now`; returns how long the instance is ejected for, when this call ejects it.
    pub fn observe(
        &mut self,
        policy: &Ejection,
        service: &Arc<str>,
        instance: &Arc<str>,
        instances: usize,
        failed: bool,
        now: Instant,
    ) -> Option<Duration> {
        let records = self.records.entry(service.clone()).or_default();
        let ejected = records
            .values()
            .filter(|r| r.until.is_some_and(|u| u > now))
            .count();
        let record = records.entry(instance.clone()).or_default();
        if !failed {
            record.consecutive = 0;
            return None;
        }
        record.consecutive = record.consecutive.saturating_add(1);
        let already = record.until.is_some_and(|u| u > now);
        let allowed = (instances * usize::from(policy.max_percent) / 100).max(1);
        if already || record.consecutive < policy.consecutive_failures || ejected >= allowed {
            return None;
        }
        record.consecutive = 0;
        record.ejections = record.ejections.saturating_add(1);
        let time = policy.base.saturating_mul(record.ejections).min(policy.max);
        record.until = Some(now + time);
        Some(time)
    }

    /// Whether `instance` of `service` is ejected at `now`.
    pub fn is_ejected(&self, service: &str, instance: &str, now: Instant) -> bool {
        self.records
            .get(service)
            .and_then(|r| r.get(instance))
            .and_then(|r| r.until)
            .is_some_and(|until| until > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_instances_own_failures_count_and_a_cancel_says_nothing() {
        let of = |e: Error| is_failure(&Err::<(), Error>(e));
        assert_eq!(is_failure(&Ok::<(), Error>(())), Some(false));
        assert_eq!(of(Error::timeout("", "late")), Some(true));
        assert_eq!(of(Error::unavailable("x", "down")), Some(true));
        assert_eq!(of(Error::not_found("x", "no")), Some(false));
        assert_eq!(
            of(Error::of(ErrorKind::RateLimited, "concurrency_limit", "")),
            Some(true)
        );
        assert_eq!(of(Error::cancelled("", "by caller")), None);
    }

    #[test]
    fn five_failures_in_a_row_eject_for_longer_each_time_within_the_share() {
        let policy = Ejection::envoy();
        let (svc, a, b): (Arc<str>, Arc<str>, Arc<str>) =
            ("s".into(), "s[0]".into(), "s[1]".into());
        let mut o = Outliers::default();
        let t0 = Instant::now();
        let fail = |o: &mut Outliers, who: &Arc<str>, n: u32, at: Instant| {
            (0..n)
                .filter_map(|_| o.observe(&policy, &svc, who, 11, true, at))
                .last()
        };
        assert_eq!(fail(&mut o, &a, 4, t0), None, "four are not enough");
        o.observe(&policy, &svc, &a, 11, false, t0);
        assert_eq!(
            fail(&mut o, &a, 4, t0),
            None,
            "a success starts the count again"
        );
        assert_eq!(fail(&mut o, &a, 1, t0), Some(Duration::from_secs(30)));
        assert!(o.is_ejected("s", "s[0]", t0 + Duration::from_secs(29)));
        assert!(!o.is_ejected("s", "s[0]", t0 + Duration::from_secs(30)));
        assert_eq!(
            fail(&mut o, &b, 5, t0),
            None,
            "10% of 11 is one instance at a time"
        );
        let t1 = t0 + Duration::from_secs(31);
        assert_eq!(
            fail(&mut o, &a, 5, t1),
            Some(Duration::from_secs(60)),
            "longer the second time"
        );
    }
}
