//! Distributed traces (the talk's phosphor, slides 128-138): the spans of a sampled share of edge
//! requests, and always of failed and of the slowest ones.
//!
//! Events of a trace are buffered while its edge request is in flight and turned into spans when
//! it ends; the trace is then kept or dropped. Only traces whose edge call was seen starting are
//! buffered, and each keeps at most [`MAX_EVENTS_PER_TRACE`] events, so memory is bounded by the
//! requests in flight. Events that arrive after a trace was decided (a handler that outlived its
//! caller) are not added to it: the orphaned-work check counts those.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::framework::{Event, EventKind};

/// Events kept per trace at most.
pub const MAX_EVENTS_PER_TRACE: usize = 2000;
/// Failed traces kept.
const KEEP_FAILED: usize = 10;
/// Sampled traces kept.
const KEEP_SAMPLED: usize = 10;
/// Slowest traces kept.
const KEEP_SLOWEST: usize = 5;
/// One trace in this many is sampled (by trace id).
const SAMPLE_ONE_IN: u64 = 64;

/// One call within a trace, with its four annotations (client-send, server-recv, server-send,
/// client-recv), in milliseconds since the start of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// Span id, hex.
    pub span_id: String,
    /// Parent span id, hex; `None` for the edge call.
    pub parent_span_id: Option<String>,
    /// `service.endpoint`.
    pub name: String,
    /// The calling instance or client.
    pub caller: String,
    /// The instance that served it (empty if it never arrived).
    pub callee: String,
    /// Client-send.
    pub cs_ms: Option<f64>,
    /// Server-recv.
    pub sr_ms: Option<f64>,
    /// Worker-start: when a worker took the request, after any wait in the queue (absent in
    /// reports written before it was recorded).
    #[serde(default)]
    pub ws_ms: Option<f64>,
    /// Server-send.
    pub ss_ms: Option<f64>,
    /// Client-recv.
    pub cr_ms: Option<f64>,
    /// `ok`, or the error code the caller saw.
    pub outcome: String,
    /// How the handler ended: `ended`, `cancelled`, `timed_out`, or empty if unknown.
    pub handler: String,
}

/// A kept trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// Trace id, hex.
    pub trace_id: String,
    /// Why it was kept: `failed`, `slowest` or `sampled`.
    pub kept_because: String,
    /// The edge request's latency, ms.
    pub latency_ms: f64,
    /// The edge request's outcome.
    pub outcome: String,
    /// Its spans, by client-send time.
    pub spans: Vec<Span>,
}

/// Buffers in-flight traces and keeps the interesting ones.
#[derive(Debug, Default)]
pub struct TraceStore {
    building: BTreeMap<u64, Vec<Event>>,
    failed: Vec<Trace>,
    sampled: Vec<Trace>,
    slowest: Vec<Trace>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl TraceStore {
    /// Takes one event.
    pub fn observe(&mut self, e: &Event) {
        let trace = e.trace_id.0;
        let is_edge = e.parent_span_id.is_none() && e.parent_request_id.is_none();
        if is_edge && e.kind == EventKind::CallSent {
            self.building.entry(trace).or_default();
        }
        let Some(events) = self.building.get_mut(&trace) else {
            return;
        };
        if events.len() < MAX_EVENTS_PER_TRACE {
            events.push(e.clone());
        }
        let edge_ended = is_edge
            && matches!(
                e.kind,
                EventKind::CallAnswered { .. } | EventKind::CallAbandoned { .. }
            );
        if edge_ended {
            if let Some(events) = self.building.remove(&trace) {
                self.decide(trace, &events);
            }
        }
    }

    /// Keeps the trace if it failed, is sampled, or is among the slowest. The edge call's own
    /// events give its latency and outcome; spans are built only for a trace that is kept.
    fn decide(&mut self, trace: u64, events: &[Event]) {
        let edge = |k: fn(&EventKind) -> bool| {
            events
                .iter()
                .find(|e| e.parent_span_id.is_none() && e.parent_request_id.is_none() && k(&e.kind))
        };
        let (Some(sent), Some(ended)) = (
            edge(|k| *k == EventKind::CallSent),
            edge(|k| {
                matches!(
                    k,
                    EventKind::CallAnswered { .. } | EventKind::CallAbandoned { .. }
                )
            }),
        ) else {
            return;
        };
        let latency_ms = ms(ended.at.saturating_sub(sent.at));
        let outcome = ended.kind.error_code().unwrap_or("ok").to_string();
        let failed = outcome != "ok" && self.failed.len() < KEEP_FAILED;
        let sampled =
            !failed && trace.is_multiple_of(SAMPLE_ONE_IN) && self.sampled.len() < KEEP_SAMPLED;
        let floor = self
            .slowest
            .iter()
            .map(|t| t.latency_ms)
            .fold(f64::INFINITY, f64::min);
        let slow = self.slowest.len() < KEEP_SLOWEST || latency_ms > floor;
        if !(failed || sampled || slow) {
            return;
        }
        let spans = spans(events);
        let make = |why: &str| Trace {
            trace_id: format!("{trace:016x}"),
            kept_because: why.to_string(),
            latency_ms,
            outcome: outcome.clone(),
            spans: spans.clone(),
        };
        if failed {
            self.failed.push(make("failed"));
        } else if sampled {
            self.sampled.push(make("sampled"));
        }
        if slow {
            self.slowest.push(make("slowest"));
            self.slowest
                .sort_by(|a, b| b.latency_ms.total_cmp(&a.latency_ms));
            self.slowest.truncate(KEEP_SLOWEST);
        }
    }

    /// The kept traces: slowest first, then failed, then sampled.
    pub fn kept(&self) -> Vec<Trace> {
        self.slowest
            .iter()
            .chain(&self.failed)
            .chain(&self.sampled)
            .cloned()
            .collect()
    }
}

/// Folds a trace's events into spans, ordered by client-send.
fn spans(events: &[Event]) -> Vec<Span> {
    let mut by_span: BTreeMap<u64, Span> = BTreeMap::new();
    for e in events {
        let s = by_span.entry(e.span_id.0).or_insert_with(|| Span {
            span_id: format!("{:016x}", e.span_id.0),
            parent_span_id: e.parent_span_id.map(|p| format!("{:016x}", p.0)),
            name: format!("{}.{}", e.service, e.endpoint),
            caller: String::new(),
            callee: String::new(),
            cs_ms: None,
            sr_ms: None,
            ws_ms: None,
            ss_ms: None,
            cr_ms: None,
            outcome: String::new(),
            handler: String::new(),
        });
        let at = Some(ms(e.at));
        match &e.kind {
            EventKind::CallSent => {
                s.cs_ms = at;
                s.caller = e.instance.to_string();
                s.callee = e.peer.to_string();
            }
            EventKind::CallAnswered { error } => {
                s.cr_ms = at;
                s.outcome = error.as_deref().unwrap_or("ok").to_string();
            }
            EventKind::CallAbandoned { reason } => {
                s.cr_ms = at;
                s.outcome = reason.to_string();
            }
            EventKind::RequestReceived => {
                s.sr_ms = at;
                s.callee = e.instance.to_string();
            }
            EventKind::ResponseSent => s.ss_ms = at,
            EventKind::HandlerStarted => s.ws_ms = at,
            EventKind::HandlerEnded { .. } => s.handler = "ended".into(),
            EventKind::HandlerCancelled => {
                s.handler = "cancelled".into();
                s.ss_ms = s.ss_ms.or(at);
            }
            EventKind::HandlerTimedOut => s.handler = "timed_out".into(),
            _ => {}
        }
    }
    let mut out: Vec<Span> = by_span.into_values().collect();
    out.sort_by(|a, b| {
        a.cs_ms
            .unwrap_or(f64::MAX)
            .total_cmp(&b.cs_ms.unwrap_or(f64::MAX))
    });
    out
}

/// The kept traces in Chrome's trace-event format (opens in Perfetto or chrome://tracing): one
/// process per trace, one thread per instance, a complete event for each side of each span.
pub fn chrome_trace_json(traces: &[Trace]) -> serde_json::Value {
    let mut events = Vec::new();
    for (pid, t) in traces.iter().enumerate() {
        events.push(serde_json::json!({
            "name": "process_name", "ph": "M", "pid": pid,
            "args": { "name": format!("{} trace {} ({:.1} ms, {})", t.kept_because, t.trace_id, t.latency_ms, t.outcome) }
        }));
        for s in &t.spans {
            let args = serde_json::json!({
                "span": s.span_id, "parent": s.parent_span_id, "outcome": s.outcome, "handler": s.handler,
                "caller": s.caller, "callee": s.callee,
            });
            if let (Some(cs), Some(cr)) = (s.cs_ms, s.cr_ms) {
                events.push(serde_json::json!({
                    "name": format!("call {}", s.name), "cat": "client", "ph": "X", "pid": pid, "tid": s.caller,
                    "ts": cs * 1000.0, "dur": (cr - cs) * 1000.0, "args": args,
                }));
            }
            if let (Some(sr), Some(ss)) = (s.sr_ms, s.ss_ms) {
                events.push(serde_json::json!({
                    "name": format!("serve {}", s.name), "cat": "server", "ph": "X", "pid": pid, "tid": s.callee,
                    "ts": sr * 1000.0, "dur": (ss - sr) * 1000.0, "args": args,
                }));
            }
        }
    }
    serde_json::json!({ "traceEvents": events, "displayTimeUnit": "ms" })
}
