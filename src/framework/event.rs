//! What the framework reports about its own work, for the harness, the checks and tracing.
//!
//! The simulation never reaches into services: it sees only these events, emitted to an
//! [`EventSink`] passed in when a client or server is built. Each event carries the simulated
//! time, where it happened, the call it belongs to and the deadline that call carried. Clients
//! and servers lend theirs ([`EventRef`], [`EventSink::emit_ref`]) rather than build them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::framework::ids::{RequestId, SpanId, TraceId};
use crate::lock::lock;

/// Whether a metric is a running total or a distribution of values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MetricKind {
    /// Values are added up: webhooks delivered, authorisations declined, pence moved.
    Counter,
    /// Each value is one observation: an authorisation's amount, a batch's size.
    Histogram,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A client wrote a request to an instance.
    CallSent,
    /// A client got an answer (ok or a typed error from the callee).
    CallAnswered {
        /// `None` for ok, else the error code.
        error: Option<Arc<str>>,
    },
    /// A client gave up on a call: its deadline passed, it was cancelled, or the connection
    /// failed. `reason` is the error code returned to the caller.
    CallAbandoned {
        /// The error code returned to the caller.
        reason: Arc<str>,
    },
    /// A client sent a Cancel frame for a call it abandoned.
    CancelSent,
    /// A server read a request off the wire.
    RequestReceived,
    /// A server refused a request because its queue was full.
    RequestRejected,
    /// A handler began running (it had a worker).
    HandlerStarted,
    /// A handler returned (ok or a typed error, panics included).
    HandlerEnded {
        /// `None` for ok, else the error code.
        error: Option<Arc<str>>,
    },
    /// A handler future was dropped because its caller cancelled or went away.
    HandlerCancelled,
    /// A handler future was dropped because the request's deadline passed.
    HandlerTimedOut,
    /// A server wrote a response.
    ResponseSent,
    /// A server read a Cancel frame for a request it holds.
    CancelReceived,
    /// A server ran its health checks out of band.
    HealthChecked {
        /// Whether every check passed.
        healthy: bool,
    },
    /// A service recorded a business metric.
    Metric {
        /// The metric's name, e.g. `webhooks.delivered`.
        name: Arc<str>,
        /// Counter or histogram.
        kind: MetricKind,
        /// The amount added (counter) or the value observed (histogram).
        value: i64,
    },
}

impl EventKind {
    /// A short stable name, used in logs and fingerprints.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::CallSent => "call_sent",
            EventKind::CallAnswered { .. } => "call_answered",
            EventKind::CallAbandoned { .. } => "call_abandoned",
            EventKind::CancelSent => "cancel_sent",
            EventKind::RequestReceived => "request_received",
            EventKind::RequestRejected => "request_rejected",
            EventKind::HandlerStarted => "handler_started",
            EventKind::HandlerEnded { .. } => "handler_ended",
            EventKind::HandlerCancelled => "handler_cancelled",
            EventKind::HandlerTimedOut => "handler_timed_out",
            EventKind::ResponseSent => "response_sent",
            EventKind::CancelReceived => "cancel_received",
            EventKind::HealthChecked { healthy: true } => "healthy",
            EventKind::HealthChecked { healthy: false } => "unhealthy",
            EventKind::Metric { .. } => "metric",
        }
    }

    /// The error code the event carries, if any.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            EventKind::CallAnswered { error } | EventKind::HandlerEnded { error } => {
                error.as_deref()
            }
            EventKind::CallAbandoned { reason } => Some(reason),
            _ => None,
        }
    }
}

/// One thing that happened, with where, when and to which call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Time since the start of the run (simulated time inside turmoil).
    pub at: Duration,
    /// What happened.
    pub kind: EventKind,
    /// Where it happened: an instance id such as `service.webhook[2]`, or a client's name.
    pub instance: Arc<str>,
    /// The other side: the callee instance for client events, the calling service for server
    /// events (empty when unknown).
    pub peer: Arc<str>,
    /// The service called.
    pub service: Arc<str>,
    /// The endpoint called.
    pub endpoint: Arc<str>,
    /// The call's request id.
    pub request_id: RequestId,
    /// The request whose handler made the call, if any.
    pub parent_request_id: Option<RequestId>,
    /// The call's trace.
    pub trace_id: TraceId,
    /// The call's span.
    pub span_id: SpanId,
    /// The caller's span, if any.
    pub parent_span_id: Option<SpanId>,
    /// The call's deadline, as time since the start of the run, if it had one.
    pub deadline: Option<Duration>,
}

impl Event {
    /// An event that belongs to no call (a health round, a business metric): ids and deadline
    /// empty.
    pub fn outside_calls(
        at: Duration,
        kind: EventKind,
        instance: Arc<str>,
        service: Arc<str>,
        endpoint: Arc<str>,
    ) -> Event {
        Event {
            at,
            kind,
            instance,
            peer: Arc::from(""),
            service,
            endpoint,
            request_id: RequestId::default(),
            parent_request_id: None,
            trace_id: TraceId::default(),
            span_id: SpanId::default(),
            parent_span_id: None,
            deadline: None,
        }
    }

    /// This event lent, as [`EventSink::emit_ref`] takes it.
    pub fn view(&self) -> EventRef<'_> {
        EventRef {
            at: self.at,
            kind: &self.kind,
            instance: &self.instance,
            peer: &self.peer,
            service: &self.service,
            endpoint: &self.endpoint,
            request_id: self.request_id,
            parent_request_id: self.parent_request_id,
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent_span_id: self.parent_span_id,
            deadline: self.deadline,
        }
    }
}

/// An [`Event`] lent by its emitter: the same fields, its names borrowed from the call or the
/// request they belong to instead of copied into it.
///
/// The framework's clients and servers emit their events this way. Building an owned event
/// takes a reference-count increment for each of its four names, and dropping it a decrement:
/// atomic instructions, eight an event, two dozen events a request. A sink that keeps nothing
/// of most events (windtunnel's recorder) reads them here and takes a name only when it keeps
/// one.
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a> {
    /// Time since the start of the run (simulated time inside turmoil).
    pub at: Duration,
    /// What happened.
    pub kind: &'a EventKind,
    /// Where it happened (see [`Event::instance`]).
    pub instance: &'a Arc<str>,
    /// The other side (see [`Event::peer`]).
    pub peer: &'a Arc<str>,
    /// The service called.
    pub service: &'a Arc<str>,
    /// The endpoint called.
    pub endpoint: &'a Arc<str>,
    /// The call's request id.
    pub request_id: RequestId,
    /// The request whose handler made the call, if any.
    pub parent_request_id: Option<RequestId>,
    /// The call's trace.
    pub trace_id: TraceId,
    /// The call's span.
    pub span_id: SpanId,
    /// The caller's span, if any.
    pub parent_span_id: Option<SpanId>,
    /// The call's deadline, as time since the start of the run, if it had one.
    pub deadline: Option<Duration>,
}

impl EventRef<'_> {
    /// An owned copy.
    pub fn to_event(&self) -> Event {
        Event {
            at: self.at,
            kind: self.kind.clone(),
            instance: self.instance.clone(),
            peer: self.peer.clone(),
            service: self.service.clone(),
            endpoint: self.endpoint.clone(),
            request_id: self.request_id,
            parent_request_id: self.parent_request_id,
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent_span_id: self.parent_span_id,
            deadline: self.deadline,
        }
    }
}

/// Where events go. Implementations must be cheap: they sit on every message's path.
pub trait EventSink: Send + Sync {
    /// Records one event.
    fn emit(&self, event: Event);

    /// Records one event lent by its emitter, as the framework's clients and servers emit
    /// theirs. By default an owned copy goes to [`EventSink::emit`]; a sink that keeps little
    /// of each event can read it in place instead.
    fn emit_ref(&self, event: EventRef<'_>) {
        self.emit(event.to_event());
    }

    /// Whether events are wanted at all; when false, emitters skip building them.
    fn enabled(&self) -> bool {
        true
    }
}

/// A sink that drops everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl EventSink for NullSink {
    fn emit(&self, _event: Event) {}

    fn emit_ref(&self, _event: EventRef<'_>) {}

    fn enabled(&self) -> bool {
        false
    }
}

/// A sink that keeps every event in order; for tests and small runs.
#[derive(Debug, Default)]
pub struct MemorySink {
    events: Mutex<Vec<Event>>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Arc<MemorySink> {
        Arc::new(MemorySink::default())
    }

    /// A copy of everything recorded so far, in order.
    pub fn events(&self) -> Vec<Event> {
        lock(&self.events).clone()
    }
}

impl EventSink for MemorySink {
    fn emit(&self, event: Event) {
        lock(&self.events).push(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lent_event_reaches_a_sink_of_owned_events_unchanged() {
        // Goal: a sink that keeps owned events (the default `emit_ref`) gets from a lent event
        // exactly the event it lends, and `NullSink` takes one without copying it.
        let event = Event {
            deadline: Some(Duration::from_millis(40)),
            parent_span_id: Some(SpanId(3)),
            ..Event::outside_calls(
                Duration::from_millis(7),
                EventKind::CallAnswered {
                    error: Some("unavailable.overloaded".into()),
                },
                "service.a[0]".into(),
                "service.b".into(),
                "get".into(),
            )
        };
        let sink = MemorySink::new();
        sink.emit_ref(event.view());
        NullSink.emit_ref(event.view());
        assert_eq!(sink.events(), vec![event]);
    }
}
