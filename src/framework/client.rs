//! The client: one call, with discovery, balancing, deadlines and cancellation.
//!
//! A call derives a context of its own (its deadline never later than its caller's; without
//! client middleware its cancellation is the caller's, so cancelling the caller ends it; with
//! middleware, a child of the caller's that the middleware may cancel), picks an instance from the
//! registry (round robin, power of two choices on in-flight calls, or on peak-EWMA latency;
//! skipping instances that recently refused connections, ejected outliers and open circuits),
//! and hands the request to the transport through the client middleware. A
//! call dropped before its answer (a decided fanout, a cancelled parent, a hedge that lost)
//! reports that it was abandoned and the transport sends a Cancel frame.
//!
//! Per service, a client may also break circuits ([`crate::framework::breaker`]), eject
//! outliers ([`crate::framework::eject`]), retry idempotent calls under a budget and hedge slow
//! ones ([`crate::framework::retry`]). Every such mechanism is off unless configured, and each
//! reports what it does as a counter event (see [`MECHANISM_COUNTERS`]). Retries and hedges
//! run under the call's context, so none outlives its caller's deadline or cancellation.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;

use crate::framework::balance::PeakEwma;
use crate::framework::breaker::{Breaker, Breakers};
use crate::framework::context::Context;
use crate::framework::discovery::{InstanceInfo, Registry};
use crate::framework::eject::{self, Ejection, Outliers};
use crate::framework::error::Error;
use crate::framework::event::{Event, EventKind, EventRef, EventSink, NullSink};
use crate::framework::ids::{self, IdGen, RequestId, SpanId, TraceId};
use crate::framework::middleware::{ClientMiddleware, ClientNext, OutboundCall};
use crate::framework::retry::{self, Bucket, Hedge, HedgeDelay, LatencyWindow, Retry};
use crate::framework::sleep_until_opt;
use crate::framework::timer;
use crate::framework::transport::{BoxFuture, Headers, RequestFrame, SendError, Transport};
use crate::lock::lock;

/// The counters the client's mechanisms report, as business-metric events named so: circuits
/// opened, probed and closed, calls failed at once because every circuit was open, instances
/// ejected, retries sent and refused by the budget, hedges sent, won and refused by the budget.
/// The server's concurrency limit adds `limit.refused`.
pub const MECHANISM_COUNTERS: [&str; 11] = [
    "breaker.opened",
    "breaker.probes",
    "breaker.closed",
    "breaker.fast_failed",
    "eject.ejected",
    "retry.sent",
    "retry.budget_exhausted",
    "hedge.sent",
    "hedge.won",
    "hedge.budget_exhausted",
    "limit.refused",
];

/// How a client picks one instance of a service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Balance {
    /// Each instance in turn.
    #[default]
    RoundRobin,
    /// Two instances at random; the one with fewer calls in flight from this client.
    PowerOfTwo,
    /// Two instances at random; the one with the lower peak-EWMA round-trip time times one more
    /// than its calls in flight (see [`crate::framework::balance`]).
    PeakEwma,
}

/// How a client is set up.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Who is calling: an instance id or a load generator's name; used as the origin of calls
    /// made outside a handler, and in events.
    pub name: String,
    /// Root seed of this client's id and balancer streams.
    pub seed: u64,
    /// How long an instance that refused a connection is skipped. Default 1 s.
    pub unreachable_backoff: Duration,
    /// Balancing per service; others use round robin.
    pub balance: BTreeMap<String, Balance>,
    /// How fast [`Balance::PeakEwma`] forgets a round trip: its time constant. Default 10 s
    /// (Finagle's and Linkerd's).
    pub ewma_decay: Duration,
    /// The round trip [`Balance::PeakEwma`] assumes for an instance not yet heard from.
    /// Default 10 ms.
    pub ewma_default_rtt: Duration,
    /// Outlier ejection per service (see [`crate::framework::eject`]); none by default.
    pub eject: BTreeMap<String, Ejection>,
    /// Circuit breakers per service (see [`crate::framework::breaker`]); none by default.
    pub breaker: BTreeMap<String, Breaker>,
    /// Retries per service (see [`crate::framework::retry`]); none by default.
    pub retry: BTreeMap<String, Retry>,
    /// Hedging per service (see [`crate::framework::retry`]); none by default.
    pub hedge: BTreeMap<String, Hedge>,
    /// Per service, the endpoints safe to call twice: only these are retried or hedged (and
    /// calls marked with [`Call::idempotent`]).
    pub idempotent: BTreeMap<String, BTreeSet<String>>,
}

impl ClientConfig {
    /// A config named `name` with seed 0 and defaults.
    pub fn new(name: &str) -> ClientConfig {
        ClientConfig {
            name: name.to_string(),
            seed: 0,
            unreachable_backoff: Duration::from_secs(1),
            balance: BTreeMap::new(),
            ewma_decay: Duration::from_secs(10),
            ewma_default_rtt: Duration::from_millis(10),
            eject: BTreeMap::new(),
            breaker: BTreeMap::new(),
            retry: BTreeMap::new(),
            hedge: BTreeMap::new(),
            idempotent: BTreeMap::new(),
        }
    }
}

/// One call to make.
#[derive(Debug, Clone)]
pub struct Call {
    service: Arc<str>,
    endpoint: Arc<str>,
    body: Bytes,
    timeout: Option<Duration>,
    instance: Option<Arc<str>>,
    idempotent: bool,
}

impl Call {
    /// A call to `service`'s `endpoint` with an empty JSON object body.
    pub fn new(service: &str, endpoint: &str) -> Call {
        Call::shared(service.into(), endpoint.into())
    }

    /// A call to `service`'s `endpoint` with names already shared: a caller that makes the
    /// same call again and again builds its names once, and every call's events share them.
    pub fn shared(service: Arc<str>, endpoint: Arc<str>) -> Call {
        Call {
            service,
            endpoint,
            body: Bytes::from_static(b"{}"),
            timeout: None,
            instance: None,
            idempotent: false,
        }
    }

    /// Sets a serde body (JSON).
    pub fn json<T: Serialize>(mut self, body: &T) -> Result<Call, Error> {
        self.body = serde_json::to_vec(body)
            .map(Bytes::from)
            .map_err(|e| Error::bad_request("encode", e.to_string()))?;
        Ok(self)
    }

    /// Sets a raw body.
    pub fn bytes(mut self, body: Bytes) -> Call {
        self.body = body;
        self
    }

    /// Limits this call to `timeout` (and still to the caller's deadline).
    pub fn timeout(mut self, timeout: Duration) -> Call {
        self.timeout = Some(timeout);
        self
    }

    /// Sends to this instance only, instead of balancing.
    pub fn instance(mut self, id: &str) -> Call {
        self.instance = Some(id.into());
        self
    }

    /// Marks this call safe to make twice, so a retry or hedging policy may send it again even
    /// if its endpoint is not listed as idempotent.
    pub fn idempotent(mut self) -> Call {
        self.idempotent = true;
        self
    }

    /// The target service.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The target endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

/// A successful answer, with the instance that gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The serialized response.
    pub body: Bytes,
    /// The instance that served the call.
    pub instance: Arc<str>,
}

impl Reply {
    /// Decodes the body as JSON.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| Error::internal("decode", e.to_string()))
    }
}

struct Inner {
    name: Arc<str>,
    config: ClientConfig,
    transport: Arc<dyn Transport>,
    registry: Arc<Registry>,
    events: Arc<dyn EventSink>,
    ids: IdGen,
    rng: Mutex<ChaCha8Rng>,
    round_robin: Mutex<BTreeMap<Arc<str>, usize>>,
    inflight: Mutex<BTreeMap<Arc<str>, usize>>,
    down_until: Mutex<BTreeMap<Arc<str>, Instant>>,
    latency: Mutex<PeakEwma>,
    outliers: Mutex<Outliers>,
    breakers: Mutex<Breakers>,
    /// Retry and hedge budgets per service, made at first use.
    budgets: Mutex<BTreeMap<Arc<str>, Budgets>>,
    /// Observed latencies per service, for hedging at a percentile.
    observed: Mutex<BTreeMap<Arc<str>, LatencyWindow>>,
    middleware: RwLock<Arc<[Arc<dyn ClientMiddleware>]>>,
    /// Whether `middleware` holds any: a call reads this (an atomic load) and takes the
    /// read lock only when it does.
    has_middleware: AtomicBool,
}

/// One service's budgets.
#[derive(Default)]
struct Budgets {
    retry: Option<Arc<Bucket>>,
    hedge: Option<Arc<Bucket>>,
}

/// How a client picks and watches the instances of one service, from its config, and what a
/// call's middleware is given: what each attempt reads. (A call's retry and hedge settings are
/// not kept here: a call's future holds this across its awaits, and stays small enough for the
/// allocator's per-size caches, under 1,032 bytes, only without them.)
struct Policy<'a> {
    balance: Balance,
    eject: Option<&'a Ejection>,
    breaker: Option<&'a Breaker>,
    /// Whether the client had middleware as the call began: the call's context then has a
    /// token of its own, which the middleware is given (and may cancel, ending the call and
    /// its retries and hedges). A middleware added later is given a child of the caller's.
    own_token: bool,
}

/// Makes calls to services. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.inner.name)
            .finish()
    }
}

impl Client {
    /// A client that reports nothing.
    pub fn new(
        config: ClientConfig,
        transport: Arc<dyn Transport>,
        registry: Arc<Registry>,
    ) -> Client {
        Client::with_events(config, transport, registry, Arc::new(NullSink))
    }

    /// A client that reports its calls to `events`.
    pub fn with_events(
        config: ClientConfig,
        transport: Arc<dyn Transport>,
        registry: Arc<Registry>,
        events: Arc<dyn EventSink>,
    ) -> Client {
        let ids = IdGen::new(config.seed, &format!("{}/ids", config.name));
        let latency = PeakEwma::new(config.ewma_decay, config.ewma_default_rtt);
        let rng = ids::stream(config.seed, &format!("{}/balance", config.name));
        let breakers = Breakers::new(ids::stream(
            config.seed,
            &format!("{}/breaker", config.name),
        ));
        Client {
            inner: Arc::new(Inner {
                name: config.name.as_str().into(),
                config,
                transport,
                registry,
                events,
                ids,
                rng: Mutex::new(rng),
                round_robin: Mutex::new(BTreeMap::new()),
                inflight: Mutex::new(BTreeMap::new()),
                down_until: Mutex::new(BTreeMap::new()),
                latency: Mutex::new(latency),
                outliers: Mutex::new(Outliers::default()),
                breakers: Mutex::new(breakers),
                budgets: Mutex::new(BTreeMap::new()),
                observed: Mutex::new(BTreeMap::new()),
                middleware: RwLock::new(Arc::from(Vec::new())),
                has_middleware: AtomicBool::new(false),
            }),
        }
    }

    /// The client's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The registry this client reads.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.inner.registry
    }

    /// What this client's transport proves itself with, if anything (the gateway signs the
    /// identities it authenticates with it).
    pub fn credential(&self) -> Option<&crate::framework::trust::Credential> {
        self.inner.transport.credential()
    }

    /// A fresh trace id from this client's stream, for an edge request.
    pub fn new_trace(&self) -> TraceId {
        self.inner.ids.trace_id()
    }

    /// Appends a client middleware (innermost).
    pub fn add_middleware(&self, mw: Arc<dyn ClientMiddleware>) {
        let mut guard = crate::lock::write(&self.inner.middleware);
        let mut v = guard.to_vec();
        v.push(mw);
        *guard = Arc::from(v);
        self.inner.has_middleware.store(true, Ordering::Release);
    }

    /// Calls `service.endpoint` with a serde request and decodes the serde response.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        ctx: &Context,
        service: &str,
        endpoint: &str,
        req: &Req,
    ) -> Result<Resp, Error> {
        let call = Call::new(service, endpoint).json(req)?;
        self.send(ctx, call).await?.decode()
    }

    /// Makes one call: with the service's retries and hedging, when it has them.
    // Not an `async fn`: an `async fn` would hold the call twice in its future (the argument,
    // and the binding it is moved into), which makes every caller's future larger.
    #[allow(clippy::manual_async_fn)]
    pub fn send<'a>(
        &'a self,
        ctx: &'a Context,
        call: Call,
    ) -> impl Future<Output = Result<Reply, Error>> + 'a {
        async move {
            // With middleware, which may cancel it, the call's context has a token of its own;
            // without, it shares its caller's (`Context::for_call`).
            let own_token = self.inner.has_middleware.load(Ordering::Acquire);
            let ctx = match (own_token, call.timeout) {
                (true, Some(t)) => ctx.with_timeout(t),
                (true, None) => ctx.child(),
                (false, timeout) => ctx.for_call(timeout),
            };
            let policy = self.policy(&call.service, own_token);
            let config = &self.inner.config;
            let service = &*call.service;
            let idempotent = call.idempotent
                || config
                    .idempotent
                    .get(service)
                    .is_some_and(|e| e.contains(&*call.endpoint));
            let retry = config.retry.get(service).filter(|_| idempotent);
            let hedge = config.hedge.get(service).filter(|_| idempotent);
            if retry.is_none() && hedge.is_none() {
                return self.attempt(&ctx, &call, &policy, None).await;
            }
            let (retry_budget, hedge_budget) = self.budgets(&call.service, retry, hedge);
            if let Some(b) = &retry_budget {
                b.deposit();
            }
            if let Some(b) = &hedge_budget {
                b.deposit();
            }
            // Instances already used by this call: retries and hedges go elsewhere when they can.
            let used = Mutex::new(Vec::new());
            let mut attempt = 1u32;
            loop {
                let result = match hedge {
                    Some(hedge) => {
                        self.hedged(&ctx, &call, &policy, hedge, hedge_budget.as_deref(), &used)
                            .await
                    }
                    None => self.attempt(&ctx, &call, &policy, Some(&used)).await,
                };
                let (policy_retry, error) = match (retry, result) {
                    (Some(r), Err(e)) if attempt < r.attempts && retry::is_retryable(&e) => (r, e),
                    (_, other) => return other,
                };
                let ceiling = policy_retry.ceiling(attempt);
                let wait = ceiling.mul_f64(lock(&self.inner.rng).random_range(0.0..=1.0));
                if ctx.is_cancelled() || ctx.remaining().is_some_and(|left| wait >= left) {
                    return Err(error);
                }
                if retry_budget.as_ref().is_some_and(|b| !b.withdraw()) {
                    self.count("retry.budget_exhausted", &call.service, "");
                    return Err(error);
                }
                self.count("retry.sent", &call.service, "");
                tokio::select! {
                    _ = crate::framework::timer::sleep(wait) => {}
                    _ = ctx.token().cancelled() => return Err(error),
                }
                attempt += 1;
            }
        }
    }

    /// The retry and hedge budgets of `service`, made at first use.
    fn budgets(
        &self,
        service: &Arc<str>,
        retry: Option<&Retry>,
        hedge: Option<&Hedge>,
    ) -> (Option<Arc<Bucket>>, Option<Arc<Bucket>>) {
        let mut budgets = lock(&self.inner.budgets);
        let entry = budgets.entry(service.clone()).or_default();
        if let Some(budget) = retry.and_then(|r| r.budget) {
            entry.retry.get_or_insert_with(|| Arc::new(budget.bucket()));
        }
        if let Some(hedge) = hedge {
            entry.hedge.get_or_insert_with(|| Arc::new(hedge.bucket()));
        }
        (
            retry.and(entry.retry.clone()),
            hedge.and(entry.hedge.clone()),
        )
    }

    /// One attempt, hedged: another copy goes out each time the delay passes without an
    /// answer, up to the policy's copies and the hedge budget. The first success wins and the
    /// other copies are dropped (cancelled); a failure waits for the copies still out.
    async fn hedged(
        &self,
        ctx: &Context,
        call: &Call,
        policy: &Policy<'_>,
        hedge: &Hedge,
        budget: Option<&Bucket>,
        used: &Mutex<Vec<Arc<str>>>,
    ) -> Result<Reply, Error> {
        let delay = match hedge.delay {
            HedgeDelay::Fixed(d) => Some(d),
            HedgeDelay::Percentile(q) => lock(&self.inner.observed)
                .get(&call.service)
                .and_then(|w| w.quantile(q)),
        };
        let timed = |copy: u32, fut| async move {
            let started = timer::now();
            (copy, fut.await, started)
        };
        let mut copies = FuturesUnordered::new();
        copies.push(timed(1, self.attempt(ctx, call, policy, Some(used))));
        let mut sent = 1u32;
        let mut next = delay.map(|d| timer::now() + d);
        loop {
            let may_hedge = sent < hedge.attempts && next.is_some();
            tokio::select! {
                biased;
                Some((copy, result, started)) = copies.next() => {
                    if let Ok(reply) = &result {
                        if matches!(hedge.delay, HedgeDelay::Percentile(_)) {
                            lock(&self.inner.observed)
                                .entry(call.service.clone())
                                .or_default()
                                .observe(timer::now() - started);
                        }
                        if copy > 1 {
                            self.count("hedge.won", &call.service, &reply.instance);
                        }
                        return result;
                    }
                    if copies.is_empty() {
                        return result;
                    }
                }
                _ = sleep_until_opt(next), if may_hedge => {
                    if budget.is_some_and(|b| !b.withdraw()) {
                        self.count("hedge.budget_exhausted", &call.service, "");
                        next = None;
                        continue;
                    }
                    sent += 1;
                    self.count("hedge.sent", &call.service, "");
                    copies.push(timed(sent, self.attempt(ctx, call, policy, Some(used))));
                    next = next.zip(delay).map(|(at, d)| at + d);
                }
            }
        }
    }

    /// One attempt: a balanced (or pinned) instance, another one when an instance cannot be
    /// reached. With `used` (a call that may retry or hedge), the instances it picks are added
    /// to it, and it avoids those already there while others are left.
    fn attempt<'a>(
        &'a self,
        ctx: &'a Context,
        call: &'a Call,
        policy: &'a Policy<'_>,
        used: Option<&'a Mutex<Vec<Arc<str>>>>,
    ) -> impl Future<Output = Result<Reply, Error>> + 'a {
        async move {
            let mut tried: Vec<Arc<str>> = Vec::new();
            loop {
                let instance = match used {
                    Some(used) => {
                        let mut used = lock(used);
                        let instance = self.pick(call, policy, &tried, &used)?;
                        used.push(instance.id.clone());
                        instance
                    }
                    None => self.pick(call, policy, &tried, &[])?,
                };
                match self.send_to(ctx, call, policy, &instance).await {
                    Err(e) if e.matches("unavailable.unreachable") && call.instance.is_none() => {
                        self.mark_down(&instance.id);
                        tried.push(instance.id.clone());
                        let left = self.inner.registry.snapshot(&call.service).len();
                        if tried.len() >= left || ctx.is_cancelled() {
                            return Err(e);
                        }
                    }
                    other => return other,
                }
            }
        }
    }

    /// The instance to try: the pinned one, or a balanced pick among those not yet tried,
    /// preferring instances not marked down.
    fn pick(
        &self,
        call: &Call,
        policy: &Policy<'_>,
        tried: &[Arc<str>],
        avoid: &[Arc<str>],
    ) -> Result<InstanceInfo, Error> {
        let all = self.inner.registry.snapshot(&call.service);
        if let Some(id) = &call.instance {
            let pinned = all.iter().find(|i| i.id == *id).cloned().ok_or_else(|| {
                Error::unavailable(
                    "no_instance",
                    format!("{} has no instance {id}", call.service),
                )
            })?;
            if policy.breaker.is_some()
                && !lock(&self.inner.breakers).allows(&pinned.id, timer::now())
            {
                return Err(self.circuit_open(call));
            }
            return Ok(pinned);
        }
        // The registry's list itself, copied only when a step below leaves some out (most
        // calls: none does).
        let mut candidates = Cow::Borrowed(&all[..]);
        if !tried.is_empty() {
            keep_only(&mut candidates, |i| !tried.contains(&i.id));
        }
        if candidates.is_empty() {
            return Err(Error::unavailable(
                "no_instances",
                format!("no reachable instance of {}", call.service),
            ));
        }
        // An open circuit is a hard no; what follows only steers among what is left.
        if policy.breaker.is_some() {
            let now = timer::now();
            let breakers = lock(&self.inner.breakers);
            keep_only(&mut candidates, |i| breakers.allows(&i.id, now));
            if candidates.is_empty() {
                drop(breakers);
                return Err(self.circuit_open(call));
            }
        }
        if !avoid.is_empty() && candidates.iter().any(|i| !avoid.contains(&i.id)) {
            keep_only(&mut candidates, |i| !avoid.contains(&i.id));
        }
        {
            let down = lock(&self.inner.down_until);
            if !down.is_empty() {
                let now = timer::now();
                let is_up = |i: &InstanceInfo| down.get(&i.id).is_none_or(|until| *until <= now);
                if candidates.iter().any(is_up) {
                    keep_only(&mut candidates, is_up);
                }
            }
        }
        if policy.eject.is_some() {
            let now = timer::now();
            let outliers = lock(&self.inner.outliers);
            let kept = |i: &InstanceInfo| !outliers.is_ejected(&call.service, &i.id, now);
            // Ejection only steers: with every candidate ejected, they are all still tried.
            if candidates.iter().any(kept) {
                keep_only(&mut candidates, kept);
            }
        }
        let idx = match policy.balance {
            Balance::RoundRobin => {
                let mut rr = lock(&self.inner.round_robin);
                // The service's name is copied (a count) only at its first call.
                let n = match rr.get_mut(&call.service) {
                    Some(n) => {
                        *n = n.wrapping_add(1);
                        *n
                    }
                    None => {
                        rr.insert(call.service.clone(), 1);
                        1
                    }
                };
                n.wrapping_sub(1) % candidates.len()
            }
            Balance::PowerOfTwo => self.power_of_two(&candidates, false),
            Balance::PeakEwma => self.power_of_two(&candidates, true),
        };
        Ok(candidates[idx].clone())
    }

    /// The error of a call with every circuit it could use open, counted as fast failed.
    fn circuit_open(&self, call: &Call) -> Error {
        self.count("breaker.fast_failed", &call.service, "");
        Error::unavailable(
            "circuit_open",
            format!("every circuit to {} is open", call.service),
        )
    }

    /// How this client balances over `service`, and whether it ejects outliers and breaks
    /// circuits, for a call whose context has a token of its own or not: looked up once per
    /// call.
    fn policy(&self, service: &str, own_token: bool) -> Policy<'_> {
        let config = &self.inner.config;
        Policy {
            balance: config.balance.get(service).copied().unwrap_or_default(),
            eject: config.eject.get(service),
            breaker: config.breaker.get(service),
            own_token,
        }
    }

    /// Time since the start of the run on this client's transport, read only when events are
    /// wanted (`None` otherwise): the times events report, and nothing else.
    fn clock(&self) -> Option<Duration> {
        self.inner
            .events
            .enabled()
            .then(|| self.inner.transport.elapsed())
    }

    /// Reports one use of a mechanism, as the counter `name` (a business-metric event of this
    /// client).
    fn count(&self, name: &'static str, service: &Arc<str>, instance: &str) {
        let Some(at) = self.clock() else {
            return;
        };
        self.inner.events.emit(Event::outside_calls(
            at,
            EventKind::Metric {
                name: name.into(),
                kind: crate::framework::MetricKind::Counter,
                value: 1,
            },
            self.inner.name.clone(),
            service.clone(),
            instance.into(),
        ));
    }

    /// Two distinct candidates at random; the cheaper: by calls in flight, or by peak-EWMA
    /// round trip times one more than the calls in flight when `by_latency`.
    fn power_of_two(&self, candidates: &[InstanceInfo], by_latency: bool) -> usize {
        let n = candidates.len();
        if n == 1 {
            return 0;
        }
        let (a, b) = {
            let mut rng = lock(&self.inner.rng);
            let a = rng.random_range(0..n);
            let b = (a + rng.random_range(1..n)) % n;
            (a, b)
        };
        let inflight = lock(&self.inner.inflight);
        let load = |i: usize| inflight.get(&candidates[i].id).copied().unwrap_or(0);
        let b_cheaper = if by_latency {
            let now = timer::now();
            let latency = lock(&self.inner.latency);
            let cost = |i: usize| latency.cost(&candidates[i].id, load(i), now);
            cost(b) < cost(a)
        } else {
            load(b) < load(a)
        };
        if b_cheaper {
            b
        } else {
            a
        }
    }

    fn mark_down(&self, id: &Arc<str>) {
        let until = timer::now() + self.inner.config.unreachable_backoff;
        lock(&self.inner.down_until).insert(id.clone(), until);
    }

    /// Calls in flight from this client to `instance`.
    pub fn inflight(&self, instance: &str) -> usize {
        lock(&self.inner.inflight)
            .get(instance)
            .copied()
            .unwrap_or(0)
    }

    async fn send_to(
        &self,
        ctx: &Context,
        call: &Call,
        policy: &Policy<'_>,
        instance: &InstanceInfo,
    ) -> Result<Reply, Error> {
        let headers = self.headers(ctx);
        // Only peak-EWMA balancing reads the clock per call: other balancers pay nothing.
        let timed = policy.balance == Balance::PeakEwma;
        let mut probe = false;
        if policy.breaker.is_some() {
            let sent = lock(&self.inner.breakers).on_send(&instance.id, timer::now());
            if let Some(t) = sent {
                probe = true;
                self.count(t.metric(), &call.service, &instance.id);
            }
        }
        let mut guard = CallGuard::new(self, call, instance, &headers, timed);
        guard.probe = probe;
        guard.emit_at(guard.sent, EventKind::CallSent);
        let transport = &self.inner.transport;
        // How the last transport attempt failed locally, if it did: `Some(true)` when a Cancel
        // frame went out for it.
        let local = LocalFailure::default();
        let local_ref = &local;
        let send = |ctx: &Context, addr: &str, request: RequestFrame| {
            transport.send(addr, request, ctx.deadline(), ctx.token().clone())
        };
        let chain = self
            .inner
            .has_middleware
            .load(Ordering::Acquire)
            .then(|| crate::lock::read(&self.inner.middleware).clone())
            .filter(|chain| !chain.is_empty());
        let result = if let Some(chain) = chain {
            let outbound = OutboundCall {
                service: call.service.clone(),
                endpoint: call.endpoint.clone(),
                instance: instance.id.clone(),
                addr: instance.addr.clone(),
                body: call.body.clone(),
            };
            let headers = &headers;
            // A middleware may send more than once: each send gets its own frame.
            let end = |ctx: Context, out: OutboundCall| -> BoxFuture<'_, Result<Bytes, Error>> {
                let request = RequestFrame {
                    id: 0,
                    service: out.service,
                    endpoint: out.endpoint,
                    headers: headers.clone(),
                    body: out.body,
                };
                let fut = send(&ctx, &out.addr, request);
                Box::pin(async move { fut.await.map_err(|e| note_local(local_ref, e)) })
            };
            // A middleware's context has a token of its own: cancelling it ends this call, not
            // its caller (see `Policy::own_token`).
            let mw_ctx = if policy.own_token {
                ctx.clone()
            } else {
                ctx.child()
            };
            ClientNext::new(&chain, &end).run(mw_ctx, outbound).await
        } else {
            // No middleware: the frame takes the call's headers (not a copy of them) and the
            // instance's address by reference, and the transport's future is awaited here,
            // not boxed once more.
            let request = RequestFrame {
                id: 0,
                service: call.service.clone(),
                endpoint: call.endpoint.clone(),
                headers,
                body: call.body.clone(),
            };
            let answer = send(ctx, &instance.addr, request).await;
            answer.map_err(|e| note_local(local_ref, e))
        };
        guard.finish(&result, local.get());
        let failed = eject::is_failure(&result);
        if let Some(ejection) = policy.eject {
            self.note_outcome(ejection, &call.service, &instance.id, failed);
        }
        if let Some(breaker) = policy.breaker {
            let changed = lock(&self.inner.breakers).on_result(
                breaker,
                &instance.id,
                probe,
                failed,
                timer::now(),
            );
            if let Some(t) = changed {
                self.count(t.metric(), &call.service, &instance.id);
            }
        }
        result.map(|body| Reply {
            body,
            instance: instance.id.clone(),
        })
    }

    /// Feeds outlier ejection under `policy` with how a call ended (see
    /// [`eject::is_failure`]); an ejection is reported as the counter `eject.ejected`.
    fn note_outcome(
        &self,
        policy: &Ejection,
        service: &Arc<str>,
        instance: &Arc<str>,
        failed: Option<bool>,
    ) {
        let Some(failed) = failed else {
            return;
        };
        let instances = self.inner.registry.snapshot(service).len();
        let now = timer::now();
        let ejected =
            lock(&self.inner.outliers).observe(policy, service, instance, instances, failed, now);
        if ejected.is_some() {
            self.count("eject.ejected", service, instance);
        }
    }

    fn headers(&self, ctx: &Context) -> Headers {
        let (parent_request_id, parent_span_id, origin_endpoint) = match ctx.request() {
            Some(r) => (
                Some(r.request_id),
                Some(r.span_id),
                Some(r.endpoint.clone()),
            ),
            None => (None, None, None),
        };
        let origin_service = match ctx.request() {
            Some(r) => r.service.clone(),
            None => self.inner.name.clone(),
        };
        let (request_id, trace_id, span_id) = self.inner.ids.call_ids(ctx.trace_id());
        Headers {
            deadline_remaining: ctx.remaining(),
            request_id,
            parent_request_id,
            origin_service: Some(origin_service),
            origin_endpoint,
            trace_id,
            span_id,
            parent_span_id,
            meta: ctx.meta_all().clone(),
        }
    }
}

/// Turns a transport error into the call's error, noting in `local` how the attempt failed
/// locally: `Some(true)` when a Cancel frame went out for it.
fn note_local(local: &LocalFailure, e: SendError) -> Error {
    local.set(match &e {
        SendError::Remote(_) => None,
        SendError::Timeout | SendError::Cancelled => Some(true),
        _ => Some(false),
    });
    e.into_error()
}

/// How a call's last transport attempt failed locally, if it did: `None`, or whether a Cancel
/// frame went out for it. A byte read and written with plain loads and stores (a lock here cost
/// two atomic instructions a call, though only this call's own futures touch it).
#[derive(Default)]
struct LocalFailure(AtomicU8);

impl LocalFailure {
    fn set(&self, failure: Option<bool>) {
        let byte = match failure {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        };
        self.0.store(byte, Ordering::Relaxed);
    }

    fn get(&self) -> Option<bool> {
        match self.0.load(Ordering::Relaxed) {
            1 => Some(false),
            2 => Some(true),
            _ => None,
        }
    }
}

/// Leaves out of `candidates` those `keep` refuses; copies the list only when it does.
fn keep_only(candidates: &mut Cow<'_, [InstanceInfo]>, keep: impl Fn(&InstanceInfo) -> bool) {
    if !candidates.iter().all(&keep) {
        candidates.to_mut().retain(|i| keep(i));
    }
}

/// Counts a call in flight and reports how it ended, including when it is dropped unfinished.
struct CallGuard<'a> {
    client: &'a Client,
    // Borrowed from the call and its instance, which outlive it: no counts taken per call.
    instance: &'a Arc<str>,
    service: &'a Arc<str>,
    endpoint: &'a Arc<str>,
    request_id: RequestId,
    parent_request_id: Option<RequestId>,
    trace_id: TraceId,
    span_id: SpanId,
    parent_span_id: Option<SpanId>,
    deadline: Option<Duration>,
    /// When the call went out, when its round trip feeds the peak-EWMA estimates.
    started: Option<Instant>,
    /// When the call went out, as time since the start of the run (`None` without events).
    sent: Option<Duration>,
    /// Whether this call is its circuit's half-open probe.
    probe: bool,
    done: bool,
}

impl<'a> CallGuard<'a> {
    /// The guard of a call with headers `h`, made in the same instant as `h` (their deadline is
    /// read off the clock once for both).
    fn new(
        client: &'a Client,
        call: &'a Call,
        instance: &'a InstanceInfo,
        h: &Headers,
        timed: bool,
    ) -> CallGuard<'a> {
        {
            // The instance's id is copied (a count) only at its first call.
            let mut inflight = lock(&client.inner.inflight);
            match inflight.get_mut(&instance.id) {
                Some(n) => *n += 1,
                None => {
                    inflight.insert(instance.id.clone(), 1);
                }
            }
        }
        // The times are only reported in events: skip the clock read when nobody listens.
        let sent = client.clock();
        let deadline = sent.and_then(|at| h.deadline_remaining.map(|r| at + r));
        let started = timed.then(timer::now);
        CallGuard {
            client,
            started,
            sent,
            probe: false,
            instance: &instance.id,
            service: &call.service,
            endpoint: &call.endpoint,
            request_id: h.request_id,
            parent_request_id: h.parent_request_id,
            trace_id: h.trace_id,
            span_id: h.span_id,
            parent_span_id: h.parent_span_id,
            deadline,
            done: false,
        }
    }

    fn emit(&self, kind: EventKind) {
        self.emit_at(self.client.clock(), kind);
    }

    /// Reports `kind` as happening at `at`, a time read from [`Client::clock`] in the same
    /// instant; `None` when events are off.
    fn emit_at(&self, at: Option<Duration>, kind: EventKind) {
        let Some(at) = at else {
            return;
        };
        let inner = &self.client.inner;
        // Lent, not built: the names stay the call's own (no reference counts touched).
        inner.events.emit_ref(EventRef {
            at,
            kind: &kind,
            instance: &inner.name,
            peer: self.instance,
            service: self.service,
            endpoint: self.endpoint,
            request_id: self.request_id,
            parent_request_id: self.parent_request_id,
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent_span_id: self.parent_span_id,
            deadline: self.deadline,
        });
    }

    /// Reports the end of the call. `local` says the transport gave up itself (and whether it
    /// sent a Cancel frame) rather than the callee answering.
    fn finish(&mut self, result: &Result<Bytes, Error>, local: Option<bool>) {
        self.done = true;
        let kind = match (result, local) {
            (Ok(_), _) => EventKind::CallAnswered { error: None },
            (Err(e), Some(cancel_sent)) => {
                if cancel_sent {
                    self.emit(EventKind::CancelSent);
                }
                EventKind::CallAbandoned {
                    reason: e.code().into(),
                }
            }
            (Err(e), None) => EventKind::CallAnswered {
                error: Some(e.code().into()),
            },
        };
        self.emit(kind);
    }
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if let Some(n) = lock(&self.client.inner.inflight).get_mut(self.instance) {
            *n = n.saturating_sub(1);
        }
        // Answered, failed or given up: the time it took is what the caller saw of the instance.
        if let Some(started) = self.started {
            let now = timer::now();
            lock(&self.client.inner.latency).observe(self.instance, now - started, now);
        }
        if !self.done && self.probe {
            // A probe given up unanswered says nothing of the instance: the next call probes.
            lock(&self.client.inner.breakers).abandon_probe(self.instance, timer::now());
        }
        if !self.done {
            self.emit(EventKind::CancelSent);
            self.emit(EventKind::CallAbandoned {
                reason: "cancelled".into(),
            });
        }
    }
}
