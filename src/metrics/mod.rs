//! What a run measured: latency and outcomes per load and per endpoint, instance load over time,
//! the checks, and the run's fingerprint.
//!
//! The [`Recorder`] is the framework's [`EventSink`] in the wind tunnel: it folds every event,
//! as it happens, into bounded state (histograms, per-bucket counters, maps of requests still in
//! flight), and into a stable hash of the whole event log. Nothing here reaches into a service.

pub mod business;
pub mod eventlog;
pub mod fingerprint;
pub mod series;
pub mod traces;

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::framework::{Event, EventKind, EventRef, EventSink};
use crate::lock::lock;
pub use business::BusinessMetric;
pub use eventlog::{Divergence, EventDescription, EventLog, Side};
pub use fingerprint::WordHash;
pub use series::{Counts, Outcome, Series, WindowStats};
pub use traces::{Span, Trace, TraceStore};

/// Hashes the random 64-bit ids (spans, traces) that key the maps of calls, requests and traces
/// in flight: they are uniform already, so one multiply spreads them. Those maps are looked up,
/// and iterated only where the order cannot matter (a `retain`) or after sorting by id, so no
/// order of theirs can reach a result.
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(*b));
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map keyed by id whose order never reaches a result (see [`IdHasher`]).
type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// How many distinct name pointers the recorder remembers (see `State::seen_names`): a
/// run's instances and clients, with room for names made again on restarts. Past it, a name
/// is found by comparing strings.
const SEEN_NAMES: usize = 256;

/// How long the record of an abandoned call is kept while waiting for its handler to end.
const ABANDON_HORIZON: Duration = Duration::from_secs(120);

/// Load on one instance during one bucket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceBucket {
    /// Most requests held at once (queued or running).
    pub max_inflight: u32,
    /// Most requests waiting for a worker at once.
    pub max_queue: u32,
    /// Handler-time spent, in nanoseconds (utilisation = busy / (workers x bucket)).
    pub busy_ns: u128,
    /// Whether the instance was up for the whole bucket.
    pub up: bool,
    /// Whether its out-of-band health checks all passed in this bucket (`None`: none ran).
    pub healthy: Option<bool>,
}

/// Load on one instance over the run.
#[derive(Debug, Clone)]
pub struct InstanceTrack {
    /// Workers (for utilisation).
    pub workers: u32,
    /// Per bucket.
    pub buckets: Vec<InstanceBucket>,
    inflight: u32,
    queued: u32,
    busy: u32,
    last_change: Duration,
}

/// Counts computed from events that say whether the system wasted or misplaced work.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checks {
    /// Handlers that kept running more than one network hop after their caller gave up.
    pub orphaned_work: u64,
    /// Handler time spent after the caller gave up, beyond the hop allowance, in ms.
    pub orphaned_work_ms: u64,
    /// Handlers started after their request's deadline.
    pub late_work: u64,
    /// Load requests answered ok after their deadline.
    pub late_ok: u64,
    /// Calls the gateway made to a service other than the authenticator for an edge request
    /// whose token the authenticator had not accepted first.
    pub unauthenticated_calls: u64,
}

/// The verdict on the gateway's `unauthenticated_calls` check, for a topology whose gateway
/// asks `authenticator` about tokens.
pub fn no_unauthenticated_calls(calls: u64, authenticator: &str) -> crate::system::Invariant {
    let detail = if calls == 0 {
        format!("no request reached a service before {authenticator} accepted its token")
    } else {
        format!(
            "the gateway called services {calls} time(s) for requests whose token {authenticator} had not accepted"
        )
    };
    crate::system::Invariant::new(
        "no_unauthenticated_calls",
        calls == 0,
        detail,
        &[("unauthenticated_calls", calls as i64)],
    )
}

/// The gateway's own name in events (the harness names its gateway so).
const GATEWAY: &str = "gateway";
/// How long an accepted token is remembered for its trace when the request has no deadline;
/// with one, it is remembered until the deadline.
const AUTH_HORIZON: Duration = Duration::from_secs(60);
/// How often remembered tokens past their time are forgotten.
const AUTH_SWEEP: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
struct ServerRequest {
    instance: Arc<str>,
    started: Option<Duration>,
    /// Arrived while every worker was busy, so it waits in the queue.
    waiting: bool,
}

/// The state behind a [`Recorder`].
#[derive(Debug)]
struct State {
    run: Duration,
    bucket_width: Duration,
    buckets: usize,
    hop_allowance: Duration,
    authenticator: Option<Arc<str>>,
    fingerprint: WordHash,
    events: u64,
    loads: BTreeMap<String, Series>,
    /// Per endpoint (`service.endpoint`), in the order first called; a series is made when
    /// the first call to it ends.
    endpoints: Vec<(String, Option<Series>)>,
    /// Which entry of `endpoints` each (service, endpoint) pair seen goes to.
    endpoint_names: Vec<(Arc<str>, Arc<str>, usize)>,
    /// Calls in flight: span -> (sent at, index in `endpoints`).
    calls: IdMap<(Duration, usize)>,
    /// Server requests held, by span (iterated only in span order, see `Recorder::finish`).
    server: IdMap<ServerRequest>,
    abandoned: BTreeMap<u64, Duration>,
    abandon_sweep: Duration,
    /// Per instance, sorted by name.
    instances: Vec<(Arc<str>, InstanceTrack)>,
    /// The names events have carried so far, each with its entry in `instances` (`None`: no
    /// such instance), matched by pointer: an instance's events share its one name, so an
    /// event finds its track without comparing strings. At most [`SEEN_NAMES`].
    seen_names: Vec<(Arc<str>, Option<usize>)>,
    checks: Checks,
    traces: TraceStore,
    business: BTreeMap<Arc<str>, BusinessMetric>,
    /// Edge traces whose token the auth service accepted, and until when they may still make
    /// calls (the request's deadline), so a routed call retried on another instance still
    /// finds its trace.
    authenticated: BTreeMap<u64, Duration>,
    auth_sweep: Duration,
    /// The per-event hashes a determinism check keeps or compares (off in an ordinary run).
    log: EventLog,
    /// Set by `Recorder::finish`: what comes after (calls and load requests dropped as the
    /// simulation shuts down) is past the run, and counted nowhere.
    finished: bool,
}

/// Folds events and load results into metrics. Shared by every host of a run.
#[derive(Debug)]
pub struct Recorder {
    state: Mutex<State>,
}

/// Settings of a [`Recorder`].
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// The run's length (the last bucket also takes what happens after it).
    pub run: Duration,
    /// Width of one time bucket.
    pub bucket_width: Duration,
    /// How long after a caller gives up a handler may still run before it counts as orphaned
    /// work: one network hop and a tick.
    pub hop_allowance: Duration,
    /// Every instance, with its worker count.
    pub instances: Vec<(String, u32)>,
    /// The service the gateway asks about bearer tokens, if it asks one: calls to any other
    /// service before it accepted the trace's token count as unauthenticated calls.
    pub authenticator: Option<String>,
}

impl Recorder {
    /// A recorder for a run.
    pub fn new(config: RecorderConfig) -> Arc<Recorder> {
        let buckets = bucket_count(config.run, config.bucket_width);
        let instances: BTreeMap<Arc<str>, InstanceTrack> = config
            .instances
            .iter()
            .map(|(id, workers)| {
                let track = InstanceTrack {
                    workers: *workers,
                    buckets: vec![
                        InstanceBucket {
                            up: true,
                            ..InstanceBucket::default()
                        };
                        buckets
                    ],
                    inflight: 0,
                    queued: 0,
                    busy: 0,
                    last_change: Duration::ZERO,
                };
                (Arc::<str>::from(id.as_str()), track)
            })
            .collect();
        Arc::new(Recorder {
            state: Mutex::new(State {
                run: config.run,
                bucket_width: config.bucket_width,
                buckets,
                hop_allowance: config.hop_allowance,
                authenticator: config.authenticator.map(Arc::from),
                fingerprint: WordHash::default(),
                events: 0,
                loads: BTreeMap::new(),
                endpoints: Vec::new(),
                endpoint_names: Vec::new(),
                calls: IdMap::default(),
                server: IdMap::default(),
                abandoned: BTreeMap::new(),
                abandon_sweep: Duration::ZERO,
                instances: instances.into_iter().collect(),
                seen_names: Vec::new(),
                checks: Checks::default(),
                traces: TraceStore::default(),
                business: BTreeMap::new(),
                authenticated: BTreeMap::new(),
                auth_sweep: Duration::ZERO,
                log: EventLog::Off,
                finished: false,
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Records one load request: intended start, when it ended, and how.
    pub fn record_load(
        &self,
        load: &str,
        start: Duration,
        end: Duration,
        outcome: Outcome,
        deadline: Duration,
    ) {
        let mut s = self.state();
        if s.finished {
            return;
        }
        write_load(&mut s.fingerprint, load, start, end, &outcome);
        if s.log.is_on() {
            let mut one = WordHash::default();
            write_load(&mut one, load, start, end, &outcome);
            s.log.observe(one.finish(), |index| EventDescription {
                index,
                at: end,
                host: format!("load {load}"),
                kind: format!("load result {}", outcome_code(&outcome)),
                target: load.to_string(),
            });
        }
        if outcome == Outcome::Ok && end > start + deadline {
            s.checks.late_ok += 1;
        }
        let (width, buckets) = (s.bucket_width, s.buckets);
        s.loads
            .entry(load.to_string())
            .or_insert_with(|| Series::new(width, buckets))
            .record(start, end.saturating_sub(start), &outcome);
    }

    /// Sets what the recorder does with each event's hash (see [`EventLog`]); call it before
    /// the run starts.
    pub fn set_log(&self, log: EventLog) {
        self.state().log = log;
    }

    /// Takes the event log back once the run is over (leaving it off).
    pub fn take_log(&self) -> EventLog {
        std::mem::take(&mut self.state().log)
    }

    /// Load requests finished so far and how many of them failed or were dropped.
    pub fn load_progress(&self) -> (u64, u64) {
        let s = self.state();
        s.loads.values().fold((0, 0), |(done, bad), series| {
            let t = series.totals();
            (done + t.sent, bad + t.sent.saturating_sub(t.ok))
        })
    }

    /// Marks instances of a node down (crash) or up (restart) from `at`.
    pub fn set_up(&self, instance: &str, up: bool, at: Duration) {
        let mut s = self.state();
        let width = s.bucket_width;
        let from = bucket_index(at, width, s.buckets);
        if let Some(track) = s.instance_by_name(instance) {
            for b in &mut track.buckets[from..] {
                b.up = up;
            }
            if !up {
                // Whatever it held is gone with it.
                accumulate_busy(track, at, width);
                track.inflight = 0;
                track.queued = 0;
                track.busy = 0;
            }
        }
        if !up {
            s.server.retain(|_, r| &*r.instance != instance);
        }
    }

    /// Everything measured, once the run is over. The load and endpoint series move out (they
    /// are most of a long run's memory): a second call finds them empty. Events and load
    /// results that come after are not recorded.
    pub fn finish(&self, end: Duration) -> Measurements {
        let mut s = self.state();
        s.finished = true;
        let width = s.bucket_width;
        let allowance = s.hop_allowance;
        // Handlers still running at the end whose callers gave up count as orphaned until now.
        let mut running: Vec<(u64, Option<Duration>)> = s
            .server
            .iter()
            .map(|(span, r)| (*span, r.started))
            .collect();
        running.sort_unstable_by_key(|(span, _)| *span);
        for (span, started) in running {
            if let (Some(started), Some(gave_up)) = (started, s.abandoned.get(&span).copied()) {
                orphan(&mut s.checks, started, gave_up + allowance, end);
            }
        }
        for (_, track) in &mut s.instances {
            accumulate_busy(track, end, width);
        }
        Measurements {
            run: s.run,
            bucket_width: s.bucket_width,
            fingerprint: s.fingerprint.finish(),
            events: s.events,
            loads: std::mem::take(&mut s.loads),
            endpoints: std::mem::take(&mut s.endpoints)
                .into_iter()
                .filter_map(|(name, series)| Some((name, series?)))
                .collect(),
            instances: s.instances.iter().cloned().collect(),
            checks: s.checks.clone(),
            traces: s.traces.kept(),
            business: s.business.clone(),
            invariants: Vec::new(),
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Measurements {
    /// The run's length.
    pub run: Duration,
    /// Width of a bucket.
    pub bucket_width: Duration,
    /// The [`WordHash`] of the ordered event log and load results.
    pub fingerprint: u64,
    /// Events seen.
    pub events: u64,
    /// Per load, by name.
    pub loads: BTreeMap<String, Series>,
    /// Per endpoint (`service.endpoint`), as its callers saw it.
    pub endpoints: BTreeMap<String, Series>,
    /// Per instance.
    pub instances: BTreeMap<Arc<str>, InstanceTrack>,
    /// The checks.
    pub checks: Checks,
    /// Kept traces: slowest, failed, sampled.
    pub traces: Vec<Trace>,
    /// Business metrics, by name.
    pub business: BTreeMap<Arc<str>, BusinessMetric>,
    /// The registered systems' invariants, checked after the run (empty when none apply).
    pub invariants: Vec<crate::system::Invariant>,
}

fn bucket_count(run: Duration, width: Duration) -> usize {
    let n = run.as_nanos().div_ceil(width.as_nanos().max(1));
    usize::try_from(n).unwrap_or(usize::MAX).max(1)
}

fn bucket_index(at: Duration, width: Duration, buckets: usize) -> usize {
    let i = at.as_nanos() / width.as_nanos().max(1);
    usize::try_from(i)
        .unwrap_or(usize::MAX)
        .min(buckets.saturating_sub(1))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Feeds one load result into `h`: what the fingerprint takes from it.
fn write_load(h: &mut WordHash, load: &str, start: Duration, end: Duration, outcome: &Outcome) {
    h.write_str(load);
    h.write_u64(nanos(start));
    h.write_u64(nanos(end));
    h.write_str(outcome_code(outcome));
}

fn outcome_code(o: &Outcome) -> &str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Dropped => "dropped",
        Outcome::Error(code) => code,
    }
}

/// Adds handler time from the last change to `now`, split over the buckets it spans.
fn accumulate_busy(track: &mut InstanceTrack, now: Duration, width: Duration) {
    let n = track.buckets.len();
    let mut t = track.last_change;
    if track.busy > 0 {
        while t < now {
            let i = bucket_index(t, width, n);
            let bucket_end = if i + 1 == n {
                now
            } else {
                width * (i as u32 + 1)
            };
            let until = bucket_end.min(now);
            track.buckets[i].busy_ns += (until - t).as_nanos() * u128::from(track.busy);
            if until <= t {
                break;
            }
            t = until;
        }
    }
    track.last_change = track.last_change.max(now);
}

fn orphan(checks: &mut Checks, started: Duration, allowed_until: Duration, ended: Duration) {
    let from = started.max(allowed_until);
    if ended > from {
        checks.orphaned_work += 1;
        checks.orphaned_work_ms += u64::try_from((ended - from).as_millis()).unwrap_or(u64::MAX);
    }
}

impl State {
    fn hash(&mut self, e: &EventRef<'_>) {
        eventlog::write_event(&mut self.fingerprint, e);
        if self.log.is_on() {
            let mut one = WordHash::default();
            eventlog::write_event(&mut one, e);
            self.log
                .observe(one.finish(), |index| eventlog::describe_event(index, e));
        }
    }

    /// The track of the instance an event names (see `seen_names`).
    fn instance(&mut self, name: &Arc<str>) -> Option<&mut InstanceTrack> {
        let index = match self.seen_names.iter().find(|(n, _)| Arc::ptr_eq(n, name)) {
            Some((_, index)) => *index,
            None => {
                let index = self.index_of(name);
                if self.seen_names.len() < SEEN_NAMES {
                    self.seen_names.push((name.clone(), index));
                }
                index
            }
        };
        Some(&mut self.instances[index?].1)
    }

    /// The track of the instance called `name`, found by comparing strings.
    fn instance_by_name(&mut self, name: &str) -> Option<&mut InstanceTrack> {
        let index = self.index_of(name)?;
        Some(&mut self.instances[index].1)
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.instances
            .binary_search_by(|(n, _)| (**n).cmp(name))
            .ok()
    }

    /// Applies `f` to an instance's counters at `at`. The bucket's maxima are taken after every
    /// event but an arrival: an arrival is followed at the same instant by its start or its
    /// refusal, so a request refused for a full queue never counts as waiting in it.
    fn track(&mut self, instance: &Arc<str>, at: Duration, f: impl FnOnce(&mut InstanceTrack)) {
        self.track_with(instance, at, true, f);
    }

    fn track_with(
        &mut self,
        instance: &Arc<str>,
        at: Duration,
        update_max: bool,
        f: impl FnOnce(&mut InstanceTrack),
    ) {
        let width = self.bucket_width;
        if let Some(track) = self.instance(instance) {
            accumulate_busy(track, at, width);
            f(track);
            if !update_max {
                return;
            }
            let i = bucket_index(at, width, track.buckets.len());
            let b = &mut track.buckets[i];
            b.max_inflight = b.max_inflight.max(track.inflight);
            b.max_queue = b.max_queue.max(track.queued);
        }
    }

    /// A server request is over (answered, dropped or refused).
    fn finish_server(&mut self, e: &EventRef<'_>) {
        let Some(req) = self.server.remove(&e.span_id.0) else {
            return;
        };
        let started = req.started;
        let waiting = req.waiting && started.is_none();
        self.track(e.instance, e.at, |t| {
            t.inflight = t.inflight.saturating_sub(1);
            if started.is_some() {
                t.busy = t.busy.saturating_sub(1);
            }
            if waiting {
                t.queued = t.queued.saturating_sub(1);
            }
        });
        if let (Some(started), Some(gave_up)) = (started, self.abandoned.remove(&e.span_id.0)) {
            let allowance = self.hop_allowance;
            orphan(&mut self.checks, started, gave_up + allowance, e.at);
        }
    }

    fn call_ended(&mut self, e: &EventRef<'_>, outcome: Outcome) {
        let Some((sent, index)) = self.calls.remove(&e.span_id.0) else {
            return;
        };
        let (width, buckets) = (self.bucket_width, self.buckets);
        self.endpoints[index]
            .1
            .get_or_insert_with(|| Series::new(width, buckets))
            .record(sent, e.at.saturating_sub(sent), &outcome);
    }

    /// Where calls to `service.endpoint` are counted: an index in `endpoints`, found by the
    /// names themselves (a handful of pairs, the same shared names call after call) and made
    /// at the first call.
    fn endpoint_index(&mut self, service: &Arc<str>, endpoint: &Arc<str>) -> usize {
        let same = |a: &Arc<str>, b: &Arc<str>| Arc::ptr_eq(a, b) || **a == **b;
        if let Some((_, _, i)) = self
            .endpoint_names
            .iter()
            .find(|(s, e, _)| same(s, service) && same(e, endpoint))
        {
            return *i;
        }
        let name = format!("{service}.{endpoint}");
        let index = match self.endpoints.iter().position(|(n, _)| *n == name) {
            Some(i) => i,
            None => {
                self.endpoints.push((name, None));
                self.endpoints.len() - 1
            }
        };
        self.endpoint_names
            .push((service.clone(), endpoint.clone(), index));
        index
    }

    fn sweep_abandoned(&mut self, now: Duration) {
        if now < self.abandon_sweep + ABANDON_HORIZON {
            return;
        }
        self.abandon_sweep = now;
        let horizon = now.saturating_sub(ABANDON_HORIZON);
        let server = &self.server;
        self.abandoned
            .retain(|span, at| *at >= horizon || server.contains_key(span));
    }

    fn is_authenticator(&self, service: &str) -> bool {
        self.authenticator.as_deref() == Some(service)
    }

    fn apply(&mut self, e: &EventRef<'_>) {
        match &e.kind {
            EventKind::CallSent => {
                if &**e.instance == GATEWAY && !self.is_authenticator(e.service) {
                    // An edge request reaches a service only after auth accepted its token.
                    if !self.authenticated.contains_key(&e.trace_id.0) {
                        self.checks.unauthenticated_calls += 1;
                    }
                }
                let index = self.endpoint_index(e.service, e.endpoint);
                self.calls.insert(e.span_id.0, (e.at, index));
            }
            EventKind::CallAnswered { error } => {
                if error.is_none() && &**e.instance == GATEWAY && self.is_authenticator(e.service) {
                    let until = e.deadline.unwrap_or(e.at + AUTH_HORIZON).max(e.at);
                    self.authenticated.insert(e.trace_id.0, until);
                    if e.at >= self.auth_sweep + AUTH_SWEEP {
                        self.auth_sweep = e.at;
                        let now = e.at;
                        self.authenticated.retain(|_, until| *until >= now);
                    }
                }
                let outcome = error
                    .as_ref()
                    .map_or(Outcome::Ok, |c| Outcome::Error(c.to_string()));
                self.call_ended(e, outcome);
            }
            EventKind::CallAbandoned { reason } => {
                self.call_ended(e, Outcome::Error(reason.to_string()));
                self.abandoned.insert(e.span_id.0, e.at);
                self.sweep_abandoned(e.at);
            }
            EventKind::RequestReceived => {
                // A server starts a handler in the same poll when a worker is free, so a
                // request waits exactly when every worker is busy as it arrives.
                let waiting = self
                    .instance(e.instance)
                    .is_some_and(|t| t.busy >= t.workers);
                self.server.insert(
                    e.span_id.0,
                    ServerRequest {
                        instance: e.instance.clone(),
                        started: None,
                        waiting,
                    },
                );
                self.track_with(e.instance, e.at, false, |t| {
                    t.inflight += 1;
                    if waiting {
                        t.queued += 1;
                    }
                });
            }
            EventKind::HandlerStarted => {
                let mut was_waiting = false;
                if let Some(r) = self.server.get_mut(&e.span_id.0) {
                    r.started = Some(e.at);
                    was_waiting = r.waiting;
                }
                if e.deadline.is_some_and(|d| e.at > d) {
                    self.checks.late_work += 1;
                }
                self.track(e.instance, e.at, |t| {
                    if was_waiting {
                        t.queued = t.queued.saturating_sub(1);
                    }
                    t.busy += 1;
                });
            }
            EventKind::HandlerEnded { .. }
            | EventKind::HandlerCancelled
            | EventKind::HandlerTimedOut
            | EventKind::RequestRejected
            | EventKind::ResponseSent => self.finish_server(e),
            EventKind::HealthChecked { healthy } => {
                let width = self.bucket_width;
                if let Some(track) = self.instance(e.instance) {
                    let i = bucket_index(e.at, width, track.buckets.len());
                    let b = &mut track.buckets[i];
                    b.healthy = Some(b.healthy.unwrap_or(true) && *healthy);
                }
            }
            EventKind::Metric { name, kind, value } => {
                let (width, buckets) = (self.bucket_width, self.buckets);
                let i = bucket_index(e.at, width, buckets);
                self.business
                    .entry(name.clone())
                    .or_insert_with(|| BusinessMetric::new(*kind, buckets))
                    .record(i, *value);
            }
            EventKind::CancelSent | EventKind::CancelReceived => {}
        }
    }
}

impl EventSink for Recorder {
    fn emit(&self, event: Event) {
        self.emit_ref(event.view());
    }

    fn emit_ref(&self, event: EventRef<'_>) {
        let mut s = self.state();
        if s.finished {
            return;
        }
        s.events += 1;
        s.hash(&event);
        s.apply(&event);
        s.traces.observe(&event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::ids::{RequestId, SpanId, TraceId};

    fn ev(
        at_ms: u64,
        kind: EventKind,
        instance: &str,
        span: u64,
        deadline_ms: Option<u64>,
    ) -> Event {
        Event {
            at: Duration::from_millis(at_ms),
            kind,
            instance: instance.into(),
            peer: "".into(),
            service: "svc.a".into(),
            endpoint: "get".into(),
            request_id: RequestId(span),
            parent_request_id: None,
            trace_id: TraceId(1),
            span_id: SpanId(span),
            parent_span_id: None,
            deadline: deadline_ms.map(Duration::from_millis),
        }
    }

    fn recorder() -> Arc<Recorder> {
        Recorder::new(RecorderConfig {
            run: Duration::from_secs(10),
            bucket_width: Duration::from_secs(1),
            hop_allowance: Duration::from_millis(5),
            instances: vec![("svc.a[0]".to_string(), 2)],
            authenticator: Some("svc.login".to_string()),
        })
    }

    #[test]
    fn calls_that_end_after_the_run_is_finished_are_counted_nowhere() {
        // Goal: the calls a simulation drops as it shuts down, after the recorder has handed
        // its series over, change nothing and do not panic. Method: two calls sent, one
        // answered in the run; finish; then the other ends, and a third is sent and answered.
        let r = recorder();
        r.emit(ev(0, EventKind::CallSent, "client", 1, Some(100)));
        r.emit(ev(0, EventKind::CallSent, "client", 2, Some(100)));
        r.emit(ev(
            5,
            EventKind::CallAnswered { error: None },
            "client",
            1,
            Some(100),
        ));
        let m = r.finish(Duration::from_secs(10));
        assert_eq!(m.endpoints["svc.a.get"].totals().ok, 1);
        r.emit(ev(
            10_001,
            EventKind::CallAnswered { error: None },
            "client",
            2,
            Some(100),
        ));
        r.emit(ev(10_002, EventKind::CallSent, "client", 3, Some(100)));
        r.emit(ev(
            10_003,
            EventKind::CallAnswered { error: None },
            "client",
            3,
            Some(100),
        ));
        let again = r.finish(Duration::from_secs(10));
        assert_eq!((again.events, again.fingerprint), (m.events, m.fingerprint));
    }

    #[test]
    fn a_handler_that_outlives_its_abandoned_caller_by_more_than_a_hop_is_orphaned_work() {
        let r = recorder();
        r.emit(ev(0, EventKind::CallSent, "client", 7, Some(100)));
        r.emit(ev(1, EventKind::RequestReceived, "svc.a[0]", 7, Some(100)));
        r.emit(ev(1, EventKind::HandlerStarted, "svc.a[0]", 7, Some(100)));
        r.emit(ev(
            100,
            EventKind::CallAbandoned {
                reason: "timeout".into(),
            },
            "client",
            7,
            Some(100),
        ));
        // Dropped 3 ms after the caller gave up: within the 5 ms hop allowance.
        r.emit(ev(
            103,
            EventKind::HandlerCancelled,
            "svc.a[0]",
            7,
            Some(100),
        ));
        // A second call whose handler runs on 400 ms after its caller gave up.
        r.emit(ev(200, EventKind::CallSent, "client", 8, Some(300)));
        r.emit(ev(
            201,
            EventKind::RequestReceived,
            "svc.a[0]",
            8,
            Some(300),
        ));
        r.emit(ev(201, EventKind::HandlerStarted, "svc.a[0]", 8, Some(300)));
        r.emit(ev(
            300,
            EventKind::CallAbandoned {
                reason: "timeout".into(),
            },
            "client",
            8,
            Some(300),
        ));
        r.emit(ev(
            700,
            EventKind::HandlerEnded { error: None },
            "svc.a[0]",
            8,
            Some(300),
        ));
        let m = r.finish(Duration::from_secs(10));
        assert_eq!(m.checks.orphaned_work, 1);
        assert_eq!(m.checks.orphaned_work_ms, 395);
    }

    #[test]
    fn a_handler_started_after_its_deadline_is_late_work() {
        let r = recorder();
        r.emit(ev(0, EventKind::RequestReceived, "svc.a[0]", 9, Some(10)));
        r.emit(ev(20, EventKind::HandlerStarted, "svc.a[0]", 9, Some(10)));
        r.emit(ev(
            21,
            EventKind::HandlerEnded { error: None },
            "svc.a[0]",
            9,
            Some(10),
        ));
        let m = r.finish(Duration::from_secs(1));
        assert_eq!(m.checks.late_work, 1);
    }

    #[test]
    fn utilisation_is_handler_time_over_worker_time_per_bucket() {
        let r = recorder();
        r.emit(ev(0, EventKind::RequestReceived, "svc.a[0]", 1, None));
        r.emit(ev(500, EventKind::HandlerStarted, "svc.a[0]", 1, None));
        r.emit(ev(500, EventKind::RequestReceived, "svc.a[0]", 2, None));
        r.emit(ev(500, EventKind::HandlerStarted, "svc.a[0]", 2, None));
        r.emit(ev(500, EventKind::RequestReceived, "svc.a[0]", 3, None));
        r.emit(ev(
            500,
            EventKind::HandlerEnded { error: None },
            "svc.a[0]",
            2,
            None,
        ));
        r.emit(ev(500, EventKind::HandlerCancelled, "svc.a[0]", 3, None));
        r.emit(ev(
            1500,
            EventKind::HandlerEnded { error: None },
            "svc.a[0]",
            1,
            None,
        ));
        let m = r.finish(Duration::from_secs(10));
        let t = &m.instances["svc.a[0]"];
        assert_eq!(t.buckets[0].busy_ns, 500_000_000);
        assert_eq!(t.buckets[1].busy_ns, 500_000_000);
        assert_eq!(
            t.buckets[0].max_queue, 1,
            "the third request found both workers busy"
        );
        assert_eq!(
            t.buckets[0].max_inflight, 2,
            "the third was only held at the instant it arrived"
        );
    }

    /// A gateway event of trace `trace` calling `service`.
    fn gateway(at_ms: u64, kind: EventKind, service: &str, trace: u64) -> Event {
        Event {
            service: service.into(),
            trace_id: TraceId(trace),
            ..ev(at_ms, kind, "gateway", trace * 10 + at_ms, Some(500))
        }
    }

    #[test]
    fn a_gateway_call_past_a_token_auth_did_not_accept_is_counted() {
        let r = recorder();
        // Trace 1: auth accepts, then the routed call (and its retry elsewhere): fine.
        r.emit(gateway(0, EventKind::CallSent, "svc.login", 1));
        r.emit(gateway(
            2,
            EventKind::CallAnswered { error: None },
            "svc.login",
            1,
        ));
        r.emit(gateway(3, EventKind::CallSent, "api.pay", 1));
        r.emit(gateway(9, EventKind::CallSent, "api.pay", 1));
        // Trace 2: auth refuses, the gateway calls anyway: counted.
        r.emit(gateway(0, EventKind::CallSent, "svc.login", 2));
        let refused = EventKind::CallAnswered {
            error: Some("unauthorized.invalid_token".into()),
        };
        r.emit(gateway(2, refused, "svc.login", 2));
        r.emit(gateway(3, EventKind::CallSent, "api.pay", 2));
        // Trace 3: no auth at all: counted.
        r.emit(gateway(4, EventKind::CallSent, "api.pay", 3));
        let m = r.finish(Duration::from_secs(1));
        assert_eq!(m.checks.unauthenticated_calls, 2);
    }
}
