//! Business metrics: what a service counts about its own work ("monitor your business logic",
//! as the talk says), next to the latency the framework measures by itself.
//!
//! A handler records through its [`Context`](crate::framework::Context) (`ctx.count(..)`,
//! `ctx.observe(..)`); background work records through the [`Metrics`] handle of its server.
//! Each record is an [`EventKind::Metric`] event on the server's sink, so the wind tunnel folds
//! them into summary.json and the report, and a real deployment can forward them anywhere.

use std::sync::Arc;

use tokio::time::Instant;

pub use crate::framework::event::MetricKind;
use crate::framework::event::{Event, EventKind, EventSink};
use crate::framework::timer;

/// Where one service instance records its business metrics. Cheap to clone (one `Arc`): every
/// request's context carries a clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    sink: Arc<dyn EventSink>,
    service: Arc<str>,
    instance: Arc<str>,
    zero: Instant,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("instance", &self.inner.instance)
            .finish()
    }
}

impl Metrics {
    /// Metrics of `instance` (of `service`) going to `sink`, timed from `zero` (the instant the
    /// run, or the process, started).
    pub fn new(sink: Arc<dyn EventSink>, service: &str, instance: &str, zero: Instant) -> Metrics {
        Metrics {
            inner: Arc::new(Inner {
                sink,
                service: service.into(),
                instance: instance.into(),
                zero,
            }),
        }
    }

    /// Adds `by` to counter `name`.
    pub fn count(&self, name: &str, by: i64) {
        self.record(name, MetricKind::Counter, by);
    }

    /// Records one observation `value` of histogram `name` (negative values count as zero).
    pub fn observe(&self, name: &str, value: i64) {
        self.record(name, MetricKind::Histogram, value);
    }

    fn record(&self, name: &str, kind: MetricKind, value: i64) {
        let m = &self.inner;
        if !m.sink.enabled() {
            return;
        }
        m.sink.emit(Event::outside_calls(
            timer::now().saturating_duration_since(m.zero),
            EventKind::Metric {
                name: name.into(),
                kind,
                value,
            },
            m.instance.clone(),
            m.service.clone(),
            Arc::from(""),
        ));
    }
}
