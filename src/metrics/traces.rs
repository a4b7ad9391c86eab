//! Distributed traces (the talk's phosphor, slides 128-138): the spans of a sampled share of edge
//! requests, and always of failed and of the slowest ones.
//!
//! The events of a trace are folded into its spans as they arrive while its edge request is in
//! flight (a span refers to its names in a table of the store's, nothing is copied or counted
//! per event), and when the edge request ends the trace is kept, its spans written out, or
//! dropped. Only traces whose edge call was seen starting are buffered, and each takes at most
//! [`MAX_EVENTS_PER_TRACE`] events, so memory is bounded by the requests in flight. Events that
//! arrive after a trace was decided (a handler that outlived its caller) are not added to it:
//! the orphaned-work check counts those.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::framework::{EventKind, EventRef};

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
/// Names held for spans in flight at most (see [`Names`]).
const MAX_NAMES: usize = 4096;
/// Addresses noted per held name at most, its own included (see [`Names`]).
const MAX_ADDRESSES_PER_NAME: u8 = 16;

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
    /// Traces in flight, by trace id (looked up, never iterated).
    building: super::IdMap<Building>,
    /// The names their spans refer to.
    names: Names,
    failed: Vec<Trace>,
    sampled: Vec<Trace>,
    slowest: Vec<Trace>,
}

/// What is kept of a trace in flight: its spans as its events fill them in, not the events
/// themselves, so an event costs a field update and nothing is copied per event. A span's
/// names stay in the store's [`Names`] until the trace is kept.
#[derive(Debug)]
struct Building {
    /// Events taken so far (at most [`MAX_EVENTS_PER_TRACE`]).
    events: usize,
    /// When the edge call was sent (the event that started the buffer).
    sent: Duration,
    /// The spans seen so far, in the order their first event came.
    spans: Vec<PartialSpan>,
}

/// The instance, service and endpoint names that spans in flight refer to, each held here once:
/// folding an event into a span then takes no reference count (two atomic instructions each,
/// about five a span, for every request while at most 25 traces are kept). Most names are
/// shared by every call that uses them (the topology's, a load's) and are found by the address
/// of their text. One text can come at a few addresses (the registry's copy of an instance's
/// name, the instance's own, each connection's decoded one): a name found by its text at a new
/// address keeps that copy too and notes its address, up to [`MAX_ADDRESSES_PER_NAME`]; past
/// that (a name made afresh for every call, as a gateway route's or a `Client::call`'s) it is
/// found by its text each time. A kept copy cannot be freed, so its address cannot come to
/// stand for another name. At most [`MAX_NAMES`] distinct texts are held; past that a span keeps
/// its own count of a name.
#[derive(Debug, Default)]
struct Names {
    /// Index in `held`, by the address of a kept copy's text (looked up, never iterated).
    by_address: super::IdMap<u32>,
    /// Index in `held`, by text.
    by_text: BTreeMap<Arc<str>, u32>,
    held: Vec<Arc<str>>,
    /// Per held name, how many addresses are noted for it.
    addresses: Vec<u8>,
    /// The other copies whose addresses are noted, kept so they are not freed.
    copies: Vec<Arc<str>>,
}

/// A name as a span in flight keeps it.
#[derive(Debug)]
enum Name {
    /// Held in the store's [`Names`], at this index.
    Held(u32),
    /// Not held there (the table was full): the span's own count of it.
    Own(Arc<str>),
}

impl Names {
    /// `text` as a span keeps it.
    fn name(&mut self, text: &Arc<str>) -> Name {
        let address = Arc::as_ptr(text).cast::<u8>() as usize as u64;
        if let Some(&index) = self.by_address.get(&address) {
            return Name::Held(index);
        }
        if let Some(&index) = self.by_text.get(&**text) {
            if let Some(noted) = self.addresses.get_mut(index as usize) {
                if *noted < MAX_ADDRESSES_PER_NAME {
                    *noted += 1;
                    self.copies.push(text.clone());
                    self.by_address.insert(address, index);
                }
            }
            return Name::Held(index);
        }
        match u32::try_from(self.held.len()) {
            Ok(index) if self.held.len() < MAX_NAMES => {
                self.held.push(text.clone());
                self.addresses.push(1);
                self.by_text.insert(text.clone(), index);
                self.by_address.insert(address, index);
                Name::Held(index)
            }
            _ => Name::Own(text.clone()),
        }
    }

    /// The text of `name`.
    fn text<'a>(&'a self, name: &'a Name) -> &'a str {
        match name {
            Name::Held(index) => self.held.get(*index as usize).map_or("", |t| t),
            Name::Own(text) => text,
        }
    }
}

/// A span in flight: [`Span`] with times still as durations and names as [`Names`] keeps them.
#[derive(Debug)]
struct PartialSpan {
    span_id: u64,
    parent_span_id: Option<u64>,
    service: Name,
    endpoint: Name,
    caller: Option<Name>,
    callee: Option<Name>,
    cs: Option<Duration>,
    sr: Option<Duration>,
    ws: Option<Duration>,
    ss: Option<Duration>,
    cr: Option<Duration>,
    outcome: SpanOutcome,
    handler: &'static str,
}

/// What the caller saw of a span, while its trace is in flight.
#[derive(Debug)]
enum SpanOutcome {
    /// Not known yet (an empty string in the kept span).
    Unknown,
    /// `ok`.
    Ok,
    /// This error code.
    Error(Arc<str>),
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl TraceStore {
    /// Takes one event.
    pub fn observe(&mut self, e: &EventRef<'_>) {
        let trace = e.trace_id.0;
        let is_edge = e.parent_span_id.is_none() && e.parent_request_id.is_none();
        if is_edge && *e.kind == EventKind::CallSent {
            self.building.entry(trace).or_insert_with(|| Building {
                events: 0,
                sent: e.at,
                spans: Vec::new(),
            });
        }
        let Some(building) = self.building.get_mut(&trace) else {
            return;
        };
        let taken = building.events < MAX_EVENTS_PER_TRACE;
        if taken {
            building.events += 1;
            building.take(e, &mut self.names);
        }
        let edge_ended = is_edge
            && matches!(
                e.kind,
                EventKind::CallAnswered { .. } | EventKind::CallAbandoned { .. }
            );
        if edge_ended {
            if let Some(building) = self.building.remove(&trace) {
                // An edge end past the cap was not taken: without it the trace has no end.
                if taken {
                    self.decide(trace, building, e);
                }
            }
        }
    }

    /// Keeps the trace if it failed, is sampled, or is among the slowest. The edge call's own
    /// events give its latency and outcome; spans are built only for a trace that is kept.
    fn decide(&mut self, trace: u64, building: Building, ended: &EventRef<'_>) {
        let latency_ms = ms(ended.at.saturating_sub(building.sent));
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
        let spans = building.spans(&self.names);
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

impl Building {
    /// Folds one event into its span (made by the span's first event).
    fn take(&mut self, e: &EventRef<'_>, names: &mut Names) {
        let span = e.span_id.0;
        // Spans are few and the latest is the likeliest: search from the end.
        let i = match self.spans.iter().rposition(|s| s.span_id == span) {
            Some(i) => i,
            None => {
                self.spans.push(PartialSpan {
                    span_id: span,
                    parent_span_id: e.parent_span_id.map(|p| p.0),
                    service: names.name(e.service),
                    endpoint: names.name(e.endpoint),
                    caller: None,
                    callee: None,
                    cs: None,
                    sr: None,
                    ws: None,
                    ss: None,
                    cr: None,
                    outcome: SpanOutcome::Unknown,
                    handler: "",
                });
                self.spans.len() - 1
            }
        };
        let s = &mut self.spans[i];
        let at = Some(e.at);
        match &e.kind {
            EventKind::CallSent => {
                s.cs = at;
                s.caller = Some(names.name(e.instance));
                s.callee = Some(names.name(e.peer));
            }
            EventKind::CallAnswered { error } => {
                s.cr = at;
                s.outcome = match error {
                    Some(code) => SpanOutcome::Error(code.clone()),
                    None => SpanOutcome::Ok,
                };
            }
            EventKind::CallAbandoned { reason } => {
                s.cr = at;
                s.outcome = SpanOutcome::Error(reason.clone());
            }
            EventKind::RequestReceived => {
                s.sr = at;
                s.callee = Some(names.name(e.instance));
            }
            EventKind::ResponseSent => s.ss = at,
            EventKind::HandlerStarted => s.ws = at,
            EventKind::HandlerEnded { .. } => s.handler = "ended",
            EventKind::HandlerCancelled => {
                s.handler = "cancelled";
                s.ss = s.ss.or(at);
            }
            EventKind::HandlerTimedOut => s.handler = "timed_out",
            _ => {}
        }
    }

    /// The trace's spans, ordered by client-send (by span id where that ties).
    fn spans(&self, names: &Names) -> Vec<Span> {
        let mut partial: Vec<&PartialSpan> = self.spans.iter().collect();
        partial.sort_by_key(|s| s.span_id);
        let text = |s: &Option<Name>| s.as_ref().map_or("", |n| names.text(n)).to_string();
        let mut out: Vec<Span> = partial
            .into_iter()
            .map(|s| Span {
                span_id: format!("{:016x}", s.span_id),
                parent_span_id: s.parent_span_id.map(|p| format!("{p:016x}")),
                name: format!("{}.{}", names.text(&s.service), names.text(&s.endpoint)),
                caller: text(&s.caller),
                callee: text(&s.callee),
                cs_ms: s.cs.map(ms),
                sr_ms: s.sr.map(ms),
                ws_ms: s.ws.map(ms),
                ss_ms: s.ss.map(ms),
                cr_ms: s.cr.map(ms),
                outcome: match &s.outcome {
                    SpanOutcome::Unknown => String::new(),
                    SpanOutcome::Ok => "ok".to_string(),
                    SpanOutcome::Error(code) => code.to_string(),
                },
                handler: s.handler.to_string(),
            })
            .collect();
        out.sort_by(|a, b| {
            a.cs_ms
                .unwrap_or(f64::MAX)
                .total_cmp(&b.cs_ms.unwrap_or(f64::MAX))
        });
        out
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_held_once_found_by_its_address_or_its_text() {
        // Goal: spans in flight find a shared name by its address and a name made afresh by
        // its text (held once either way), and a full table hands out the span's own count.
        let mut names = Names::default();
        let shared: Arc<str> = Arc::from("service.webhook");
        let first = names.name(&shared);
        let again = names.name(&shared.clone());
        assert!(matches!((&first, &again), (Name::Held(0), Name::Held(0))));
        // Another copy of the same text: found by its text, then kept and found by its address.
        let copy: Arc<str> = Arc::from("service.webhook");
        assert!(matches!(names.name(&copy), Name::Held(0)));
        assert!(matches!(names.name(&copy), Name::Held(0)));
        assert_eq!(
            Arc::strong_count(&copy),
            2,
            "a copy is kept once, when first seen"
        );
        // Copies made afresh for every call: past the per-name bound, found by text, not kept.
        for _ in 0..2 * MAX_ADDRESSES_PER_NAME {
            let afresh: Arc<str> = Arc::from("service.webhook");
            assert!(matches!(names.name(&afresh), Name::Held(0)));
        }
        assert_eq!(names.copies.len(), usize::from(MAX_ADDRESSES_PER_NAME) - 1);
        assert_eq!(names.held.len(), 1);
        assert_eq!(names.text(&first), "service.webhook");
        assert_eq!(
            Arc::strong_count(&shared),
            3,
            "held once (and once by text), not per look"
        );
        for i in names.held.len()..MAX_NAMES {
            names.name(&Arc::from(format!("name-{i}").as_str()));
        }
        let late: Arc<str> = Arc::from("api.late");
        let kept = names.name(&late);
        assert!(matches!(kept, Name::Own(_)), "the table is bounded");
        assert_eq!(names.text(&kept), "api.late");
        assert_eq!(names.held.len(), MAX_NAMES);
    }
}
