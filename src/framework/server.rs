//! A running service: endpoints, middleware, admission control and graceful stop (slide 78).
//!
//! Each request runs in its own task. The task selects between the handler, the caller's
//! cancellation and the request's deadline: whichever comes first wins, and a lost handler future
//! is dropped on the spot, so a cancelled request stops doing work (and cancels its own calls).
//! A bounded pool of workers and a bounded queue model an instance's capacity: beyond both, a
//! request is refused with `rate_limited.queue_full`. A concurrency limit, fixed or adaptive
//! (see [`crate::framework::limit`]), can shed load before the queue: a request over it is
//! refused at once with `rate_limited.concurrency_limit`.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::framework::context::{Context, RequestInfo};
use crate::framework::discovery::Registry;
use crate::framework::error::Error;
use crate::framework::event::{Event, EventKind, EventRef, EventSink, NullSink};
use crate::framework::guard::Guard;
use crate::framework::health::{self, CheckResult, Checker, HealthReport, HEALTH_ENDPOINT};
use crate::framework::limit::{Limit, Limiter};
use crate::framework::metrics::Metrics;
use crate::framework::middleware::{ServerMiddleware, ServerNext, ServerRequest};
use crate::framework::service::Endpoint;
use crate::framework::sleep_until_opt;
use crate::framework::timer;
use crate::framework::transport::{Inbound, Inlet, ListenError, Transport};
use crate::lock::{lock, read, write};

/// How a service is set up (the talk's `service.Config`).
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The service's name, e.g. `service.account`.
    pub name: String,
    /// What it does.
    pub description: String,
    /// This instance's id; default `<name>[0]`.
    pub instance: Option<String>,
    /// Handlers allowed to run at once; `None` for no limit.
    pub workers: Option<usize>,
    /// Requests allowed to wait for a worker; more are refused. Ignored without `workers`.
    pub queue: usize,
    /// How long `stop` waits for in-flight handlers before dropping them. Default 5 s.
    pub grace: Duration,
    /// How often to run the health checks out of band and report them as events; `None`: only
    /// in band, through the `health` endpoint.
    pub health_interval: Option<Duration>,
    /// A limit on the requests held at once (running or queued); `None`: only workers and
    /// queue bound them.
    pub limit: Option<Limit>,
}

impl ServiceConfig {
    /// A config with a name and description and default limits (no worker limit).
    pub fn new(name: &str, description: &str) -> ServiceConfig {
        ServiceConfig {
            name: name.to_string(),
            description: description.to_string(),
            instance: None,
            workers: None,
            queue: 0,
            grace: Duration::from_secs(5),
            health_interval: None,
            limit: None,
        }
    }
}

/// Where a server listens, and the address it gives discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// The address to bind, e.g. `0.0.0.0:7000`.
    pub bind: String,
    /// The address callers should use; `None` for the bound address.
    pub advertise: Option<String>,
}

impl Listen {
    /// Bind `addr` and advertise what was bound (real network; port 0 picks a free port).
    pub fn on(addr: &str) -> Listen {
        Listen {
            bind: addr.to_string(),
            advertise: None,
        }
    }

    /// Inside turmoil: bind every address of the host on `port`, advertise `host:port`.
    pub fn host(host: &str, port: u16) -> Listen {
        Listen {
            bind: format!("0.0.0.0:{port}"),
            advertise: Some(format!("{host}:{port}")),
        }
    }
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// It is already running.
    #[error("server {0} is already running")]
    AlreadyRunning(String),
    /// The transport could not listen.
    #[error(transparent)]
    Listen(#[from] ListenError),
}

struct Running {
    transport: Arc<dyn Transport>,
    addr: String,
    /// Fires when the server starts draining: new requests are refused.
    draining: CancellationToken,
    /// Fires when the grace period is over: remaining handlers are dropped.
    abort: CancellationToken,
    /// Fires when the server has stopped.
    stopped: CancellationToken,
    tracker: TaskTracker,
}

struct Inner {
    config: ServiceConfig,
    name: Arc<str>,
    instance: Arc<str>,
    /// Shared, so a request takes its endpoint without copying it.
    endpoints: RwLock<BTreeMap<String, Arc<Endpoint>>>,
    middleware: RwLock<Arc<[Arc<dyn ServerMiddleware>]>>,
    events: Arc<dyn EventSink>,
    registry: Option<Arc<Registry>>,
    workers: Option<Arc<Semaphore>>,
    waiting: AtomicUsize,
    limiter: Option<Mutex<Limiter>>,
    running: Mutex<Option<Running>>,
    checkers: RwLock<BTreeMap<String, Checker>>,
    metrics: RwLock<Option<Metrics>>,
}

/// A service: its endpoints and middleware, and once started, its listener and handlers.
/// Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("instance", &self.inner.instance)
            .finish()
    }
}

impl Server {
    /// A server for `config` that reports nothing and registers nowhere.
    pub fn new(config: ServiceConfig) -> Server {
        Server::with(config, Arc::new(NullSink), None)
    }

    /// A server that reports to `events` and, when started, registers in `registry`.
    pub fn with(
        config: ServiceConfig,
        events: Arc<dyn EventSink>,
        registry: Option<Arc<Registry>>,
    ) -> Server {
        let instance = config
            .instance
            .clone()
            .unwrap_or_else(|| format!("{}[0]", config.name));
        let workers = config.workers.map(|n| Arc::new(Semaphore::new(n.max(1))));
        let limiter = config.limit.map(|l| Mutex::new(Limiter::new(l)));
        Server {
            inner: Arc::new(Inner {
                name: config.name.as_str().into(),
                instance: instance.into(),
                config,
                endpoints: RwLock::new(BTreeMap::new()),
                middleware: RwLock::new(Arc::from(Vec::new())),
                events,
                registry,
                workers,
                waiting: AtomicUsize::new(0),
                limiter,
                running: Mutex::new(None),
                checkers: RwLock::new(BTreeMap::new()),
                metrics: RwLock::new(None),
            }),
        }
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// This instance's id.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// What the service does.
    pub fn description(&self) -> &str {
        &self.inner.config.description
    }

    /// Adds endpoints (replacing any of the same name); takes effect for the next request.
    pub fn add_endpoints(&self, eps: impl IntoIterator<Item = Endpoint>) {
        let mut table = write(&self.inner.endpoints);
        for ep in eps {
            table.insert(ep.name().to_string(), Arc::new(ep));
        }
    }

    /// Removes endpoints by name.
    pub fn remove_endpoints<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let mut table = write(&self.inner.endpoints);
        for n in names {
            table.remove(n);
        }
    }

    /// The endpoint named `name`.
    pub fn endpoint(&self, name: &str) -> Option<Endpoint> {
        read(&self.inner.endpoints)
            .get(name)
            .map(|e| Endpoint::clone(e))
    }

    /// Every endpoint, by name.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        read(&self.inner.endpoints)
            .values()
            .map(|e| Endpoint::clone(e))
            .collect()
    }

    /// The server middleware, outermost first.
    pub fn middleware(&self) -> Vec<Arc<dyn ServerMiddleware>> {
        read(&self.inner.middleware).to_vec()
    }

    /// Replaces the server middleware.
    pub fn set_middleware(&self, mw: Vec<Arc<dyn ServerMiddleware>>) {
        *write(&self.inner.middleware) = Arc::from(mw);
    }

    /// Appends one middleware (innermost).
    pub fn add_middleware(&self, mw: Arc<dyn ServerMiddleware>) {
        let mut v = self.middleware();
        v.push(mw);
        self.set_middleware(v);
    }

    /// Requests waiting for a worker right now.
    pub fn queue_depth(&self) -> usize {
        self.inner.waiting.load(Ordering::Relaxed)
    }

    /// Registers a health check under `name` (replacing one of the same name).
    pub fn add_checker(&self, name: &str, checker: Checker) {
        write(&self.inner.checkers).insert(name.to_string(), checker);
    }

    /// Registers the `queue` check: unhealthy while the queue of requests waiting for a worker
    /// is full, so requests are being refused.
    pub fn add_queue_checker(&self) {
        let inner = Arc::downgrade(&self.inner);
        self.add_checker(
            "queue",
            Arc::new(move || {
                let Some(inner) = inner.upgrade() else {
                    return CheckResult::unhealthy("server gone", BTreeMap::new());
                };
                let depth = inner.waiting.load(Ordering::Relaxed);
                let limit = inner.config.queue;
                let details = BTreeMap::from([
                    ("queue_depth".to_string(), depth.to_string()),
                    ("queue_limit".to_string(), limit.to_string()),
                ]);
                if inner.workers.is_some() && depth >= limit {
                    CheckResult::unhealthy("queue full: new requests are refused", details)
                } else {
                    CheckResult::healthy(details)
                }
            }),
        );
    }

    /// Runs every check now.
    pub fn health(&self) -> HealthReport {
        health::report(&self.inner.instance, &read(&self.inner.checkers))
    }

    /// The `health` endpoint: the checks, in band. Holds the server weakly (no cycle).
    fn health_endpoint(&self) -> Endpoint {
        let inner = Arc::downgrade(&self.inner);
        Endpoint::new(
            HEALTH_ENDPOINT,
            move |_ctx: Context, _req: serde_json::Value| {
                let report = inner
                    .upgrade()
                    .map(|inner| health::report(&inner.instance, &read(&inner.checkers)));
                async move { report.ok_or_else(|| Error::unavailable("stopping", "server stopped")) }
            },
        )
    }

    /// Where this instance records business metrics, once started (`None` before).
    pub fn metrics(&self) -> Option<Metrics> {
        read(&self.inner.metrics).clone()
    }

    /// Starts listening and serving; returns the advertised address once the listener is bound.
    pub async fn start(
        &self,
        transport: Arc<dyn Transport>,
        listen: &Listen,
    ) -> Result<String, StartError> {
        if lock(&self.inner.running).is_some() {
            return Err(StartError::AlreadyRunning(self.inner.instance.to_string()));
        }
        transport.ready().await;
        let zero = timer::now()
            .checked_sub(transport.elapsed())
            .unwrap_or_else(timer::now);
        *write(&self.inner.metrics) = Some(Metrics::new(
            self.inner.events.clone(),
            &self.inner.name,
            &self.inner.instance,
            zero,
        ));
        let (draining, abort) = (CancellationToken::new(), CancellationToken::new());
        let tracker = TaskTracker::new();
        let dispatch = Dispatch {
            serving: Arc::new(Serving {
                inner: self.inner.clone(),
                // Handlers record business metrics only when someone listens for events.
                metrics: self
                    .inner
                    .events
                    .enabled()
                    .then(|| self.metrics())
                    .flatten(),
                transport: transport.clone(),
                draining: draining.clone(),
                abort: abort.clone(),
                no_peer: Arc::from(""),
            }),
            tracker: tracker.clone(),
        };
        // The transport starts each request's task as it reads the request: no queue and no
        // task in between. Closed when the server aborts, which closes its connections.
        let inlet = Inlet::new(move |inbound| dispatch.dispatch(inbound), abort.clone());
        let bound = transport.listen(&listen.bind, inlet).await?;
        let advertised = listen.advertise.clone().unwrap_or_else(|| bound.clone());
        let running = Running {
            transport: transport.clone(),
            addr: bound.clone(),
            draining,
            abort,
            stopped: CancellationToken::new(),
            tracker,
        };
        if self.endpoint(HEALTH_ENDPOINT).is_none() {
            self.add_endpoints([self.health_endpoint()]);
        }
        if let Some(every) = self.inner.config.health_interval {
            crate::framework::task::spawn(out_of_band_health(
                Arc::downgrade(&self.inner),
                running.transport.clone(),
                every,
                running.stopped.clone(),
            ));
        }
        *lock(&self.inner.running) = Some(running);
        if let Some(reg) = &self.inner.registry {
            reg.register(&self.inner.name, &self.inner.instance, &advertised);
        }
        Ok(advertised)
    }

    /// Starts, then serves until [`Server::stop`] completes.
    pub async fn run(
        &self,
        transport: Arc<dyn Transport>,
        listen: &Listen,
    ) -> Result<(), StartError> {
        self.start(transport, listen).await?;
        let stopped = lock(&self.inner.running)
            .as_ref()
            .map(|r| r.stopped.clone());
        if let Some(stopped) = stopped {
            stopped.cancelled().await;
        }
        Ok(())
    }

    /// Graceful stop: deregister, stop accepting, refuse new requests, let in-flight handlers
    /// finish for up to the grace period, then drop the rest and close connections.
    pub async fn stop(&self) {
        let Some(running) = lock(&self.inner.running).take() else {
            return;
        };
        if let Some(reg) = &self.inner.registry {
            reg.deregister(&self.inner.name, &self.inner.instance);
        }
        running.transport.stop_listening(&running.addr);
        running.draining.cancel();
        running.tracker.close();
        if crate::framework::timer::timeout(self.inner.config.grace, running.tracker.wait())
            .await
            .is_err()
        {
            running.abort.cancel();
            running.tracker.wait().await;
        }
        running.abort.cancel();
        running.stopped.cancel();
    }
}

/// What the dispatcher and every request's task in one run of a server share, held once behind
/// one `Arc` (a request's task clones a single pointer, not each of these).
struct Serving {
    /// The server itself.
    inner: Arc<Inner>,
    /// Where handlers record business metrics; `None` when nobody listens for events.
    metrics: Option<Metrics>,
    /// The transport requests arrive on and answers leave by.
    transport: Arc<dyn Transport>,
    /// Fires when the server starts draining: the dispatcher refuses new requests.
    draining: CancellationToken,
    /// Fires when the grace period is over: handlers still running are dropped.
    abort: CancellationToken,
    /// The peer of events of requests that name no calling service (made once, not per event).
    no_peer: Arc<str>,
}

/// What starts a task for each request the transport reads.
struct Dispatch {
    serving: Arc<Serving>,
    tracker: TaskTracker,
}

impl Dispatch {
    /// Starts `inbound`'s task, or refuses it while the server is stopping.
    fn dispatch(&self, inbound: Inbound) {
        if self.serving.draining.is_cancelled() {
            self.serving.transport.respond(
                &inbound.responder,
                Err(Error::unavailable("stopping", "server is stopping")),
            );
            return;
        }
        let task = RequestTask {
            serving: self.serving.clone(),
            inbound,
        };
        // Boxed: the task then holds a pointer, not a large future copied at every move. The
        // block owns the request once; `run` borrows it (a `run(self)` would hold two copies).
        crate::framework::task::spawn(self.tracker.track_future(crate::framework::task::boxed(
            move || async move { task.run().await },
        )));
    }
}

/// Where a request sits in the tree of calls, from its headers (for its handler's context).
fn request_info(inbound: &Inbound) -> RequestInfo {
    let r = &inbound.request;
    let h = &r.headers;
    RequestInfo {
        request_id: h.request_id,
        parent_request_id: h.parent_request_id,
        service: r.service.clone(),
        endpoint: r.endpoint.clone(),
        origin_service: h.origin_service.clone(),
        origin_endpoint: h.origin_endpoint.clone(),
        span_id: h.span_id,
        parent_span_id: h.parent_span_id,
    }
}

/// Why a request never reached its handler.
enum Admission {
    Admitted(OwnedSemaphorePermit),
    Refused(Error),
    Cancelled,
}

/// One request, from arrival to answer. Its events' fields are read from the request's own
/// headers as each event is made, not copied into the task: the task stays small enough for
/// the allocator's per-size caches.
struct RequestTask {
    serving: Arc<Serving>,
    inbound: Inbound,
}

/// What ended a handler before it returned.
enum Stop {
    /// Its caller cancelled or went away.
    Cancelled,
    /// Its deadline passed.
    Late,
    /// The server is stopping.
    Stopping,
}

impl RequestTask {
    fn emit(&self, kind: EventKind) {
        self.emit_at(self.clock(), kind);
    }

    /// Reports `kind` as happening at `at`, a time read from [`RequestTask::clock`] in the same
    /// instant (events of one instant share one clock read); `None` when events are off.
    fn emit_at(&self, at: Option<Duration>, kind: EventKind) {
        let Some(at) = at else {
            return;
        };
        // Lent, not built: the names stay the request's own (no reference counts touched).
        let r = &self.inbound.request;
        let h = &r.headers;
        self.serving.inner.events.emit_ref(EventRef {
            at,
            kind: &kind,
            instance: &self.serving.inner.instance,
            peer: h.origin_service.as_ref().unwrap_or(&self.serving.no_peer),
            service: &r.service,
            endpoint: &r.endpoint,
            request_id: h.request_id,
            parent_request_id: h.parent_request_id,
            trace_id: h.trace_id,
            span_id: h.span_id,
            parent_span_id: h.parent_span_id,
            deadline: h.deadline_remaining.map(|d| self.inbound.received_at + d),
        });
    }

    /// Time since the start of the run, read only when events are wanted (`None` otherwise).
    fn clock(&self) -> Option<Duration> {
        self.serving
            .inner
            .events
            .enabled()
            .then(|| self.serving.transport.elapsed())
    }

    fn answer(&self, result: Result<Bytes, Error>) {
        self.answer_at(self.clock(), result);
    }

    /// Answers, reporting the answer as sent at `at` (read in this instant).
    fn answer_at(&self, at: Option<Duration>, result: Result<Bytes, Error>) {
        self.serving
            .transport
            .respond(&self.inbound.responder, result);
        self.emit_at(at, EventKind::ResponseSent);
    }

    async fn run(&self) {
        let received = self.clock();
        self.emit_at(received, EventKind::RequestReceived);
        let deadline = self
            .inbound
            .request
            .headers
            .deadline_remaining
            .map(|d| timer::now() + d);
        let Some(endpoint) = read(&self.serving.inner.endpoints)
            .get(&*self.inbound.request.endpoint)
            .cloned()
        else {
            let msg = format!(
                "{} has no endpoint {:?}",
                self.serving.inner.name, self.inbound.request.endpoint
            );
            self.answer_at(received, Err(Error::bad_request("endpoint_not_found", msg)));
            return;
        };
        let headers = &self.inbound.request.headers;
        let origin = headers.origin_service.as_deref();
        let meta = |key| headers.meta.get(key).map(String::as_str);
        let user = meta(crate::framework::identity::META_USER);
        let scopes = meta(crate::framework::identity::META_SCOPES);
        if let Err(refused) = endpoint.access().check(origin, user, scopes) {
            self.answer_at(received, Err(refused));
            return;
        }
        let mut held = match self.hold(received) {
            Ok(held) => held,
            Err(refused) => {
                self.answer_at(received, Err(refused));
                return;
            }
        };
        // A worker free on arrival starts the handler in the instant the request arrived.
        let (_permit, started) = match self.try_admit() {
            Ok(p) => (p, received),
            Err(workers) => match self.admit(workers, deadline).await {
                Admission::Admitted(p) => (Some(p), self.clock()),
                Admission::Refused(e) => {
                    self.answer(Err(e));
                    return;
                }
                Admission::Cancelled => return,
            },
        };
        self.emit_at(started, EventKind::HandlerStarted);
        if let Some(held) = &mut held {
            held.working = Some(timer::now());
        }
        let ctx = Context::for_request(
            deadline,
            self.inbound.cancel.clone(),
            request_info(&self.inbound),
            self.inbound.request.headers.trace_id,
            self.inbound.request.headers.meta.clone(),
            self.serving.metrics.clone(),
        );
        let req = ServerRequest {
            service: self.inbound.request.service.clone(),
            endpoint: self.inbound.request.endpoint.clone(),
            body: self.inbound.request.body.clone(),
        };
        let chain = read(&self.serving.inner.middleware).clone();
        let handler =
            AssertUnwindSafe(ServerNext::new(&chain, &endpoint).run(ctx, req)).catch_unwind();
        // What can end the handler early, polled only when one of them woke the task (the
        // handler's own wakes, its calls' legs and answers, skip them).
        let stops = async {
            tokio::select! {
                biased;
                _ = self.inbound.cancel.cancelled() => Stop::Cancelled,
                _ = sleep_until_opt(deadline) => Stop::Late,
                _ = self.serving.abort.cancelled() => Stop::Stopping,
            }
        };
        tokio::pin!(stops);
        let result = tokio::select! {
            biased;
            r = handler => {
                if let Some(held) = &mut held {
                    held.dropped = false;
                }
                r.unwrap_or_else(|panic| Err(panic_error(panic)))
            }
            stop = Guard::new(stops.as_mut()) => {
                match stop {
                    Stop::Cancelled => {
                        self.note_cancel();
                        self.emit(EventKind::HandlerCancelled);
                    }
                    Stop::Late => {
                        let at = self.clock();
                        self.emit_at(at, EventKind::HandlerTimedOut);
                        self.answer_at(at, Err(Error::timeout("", "deadline exceeded in handler")));
                    }
                    Stop::Stopping => {
                        let at = self.clock();
                        self.emit_at(at, EventKind::HandlerCancelled);
                        self.answer_at(at, Err(Error::unavailable(
                            "stopping",
                            "server stopped before the handler finished",
                        )));
                    }
                }
                return;
            }
        };
        let error = result.as_ref().err().map(|e| Arc::<str>::from(e.code()));
        let ended = self.clock();
        self.emit_at(ended, EventKind::HandlerEnded { error });
        self.answer_at(ended, result);
    }

    fn note_cancel(&self) {
        if self.inbound.cancelled_by_peer.load(Ordering::Relaxed) {
            self.emit(EventKind::CancelReceived);
        }
    }

    /// Takes a place under the concurrency limit, if there is one; refuses the request at
    /// once when the instance is at its limit (reported at `now`, the arrival's clock read).
    fn hold(&self, now: Option<Duration>) -> Result<Option<Held<'_>>, Error> {
        let Some(limiter) = &self.serving.inner.limiter else {
            return Ok(None);
        };
        if lock(limiter).try_acquire() {
            return Ok(Some(Held {
                limiter,
                arrived: timer::now(),
                working: None,
                dropped: true,
            }));
        }
        self.emit_at(now, EventKind::RequestRejected);
        if let Some(now) = now {
            self.serving.inner.events.emit(Event::outside_calls(
                now,
                EventKind::Metric {
                    name: "limit.refused".into(),
                    kind: crate::framework::MetricKind::Counter,
                    value: 1,
                },
                self.serving.inner.instance.clone(),
                self.serving.inner.name.clone(),
                self.inbound.request.endpoint.clone(),
            ));
        }
        Err(Error::of(
            crate::framework::error::ErrorKind::RateLimited,
            "concurrency_limit",
            format!(
                "{} is at its concurrency limit",
                self.serving.inner.instance
            ),
        ))
    }

    /// A worker at once, if one is free (`Ok(None)` when the server has no worker limit), or
    /// the workers' semaphore to wait on in [`RequestTask::admit`] when none is.
    fn try_admit(&self) -> Result<Option<OwnedSemaphorePermit>, &Arc<Semaphore>> {
        match &self.serving.inner.workers {
            None => Ok(None),
            Some(sem) => match sem.clone().try_acquire_owned() {
                Ok(permit) => Ok(Some(permit)),
                Err(_) => Err(sem),
            },
        }
    }

    /// Waits for one of `workers`, none being free, unless the queue is full, the caller gives
    /// up or the deadline passes.
    async fn admit(&self, workers: &Arc<Semaphore>, deadline: Option<Instant>) -> Admission {
        let waiting = &self.serving.inner.waiting;
        if waiting.fetch_add(1, Ordering::Relaxed) >= self.serving.inner.config.queue {
            waiting.fetch_sub(1, Ordering::Relaxed);
            self.emit(EventKind::RequestRejected);
            return Admission::Refused(Error::of(
                crate::framework::error::ErrorKind::RateLimited,
                "queue_full",
                format!("{} is at capacity", self.serving.inner.instance),
            ));
        }
        let outcome = tokio::select! {
            biased;
            p = workers.clone().acquire_owned() => match p {
                Ok(p) => Admission::Admitted(p),
                Err(_) => Admission::Refused(Error::unavailable("stopping", "server stopped")),
            },
            _ = self.inbound.cancel.cancelled() => {
                self.note_cancel();
                self.emit(EventKind::HandlerCancelled);
                Admission::Cancelled
            }
            _ = sleep_until_opt(deadline) => {
                self.emit(EventKind::HandlerTimedOut);
                Admission::Refused(Error::timeout("queued", "deadline exceeded while queued"))
            }
            _ = self.serving.abort.cancelled() => Admission::Refused(Error::unavailable("stopping", "server stopped")),
        };
        waiting.fetch_sub(1, Ordering::Relaxed);
        outcome
    }
}

/// A request's place under the concurrency limit, given back when the request ends however it
/// ends, with the time it spent in the instance and how much of it was work.
struct Held<'a> {
    limiter: &'a Mutex<Limiter>,
    arrived: Instant,
    /// When a worker took it, if one did.
    working: Option<Instant>,
    /// Whether it ended without its handler returning (deadline, cancel, refusal, stop).
    dropped: bool,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let now = timer::now();
        let rtt = now.saturating_duration_since(self.arrived);
        let work = self
            .working
            .map_or(rtt, |w| now.saturating_duration_since(w));
        // A request refused by the queue never worked: it says nothing of the work time.
        let dropped = self.dropped || self.working.is_none();
        lock(self.limiter).release(rtt, work, dropped);
    }
}

/// Runs the checks every `every` until the server stops, reporting each round as an event.
async fn out_of_band_health(
    inner: std::sync::Weak<Inner>,
    clock: Arc<dyn Transport>,
    every: Duration,
    stopped: CancellationToken,
) {
    let mut next = timer::now() + every;
    loop {
        tokio::select! {
            _ = crate::framework::timer::idle_until(next) => {}
            _ = stopped.cancelled() => return,
        }
        next += every;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if !inner.events.enabled() {
            continue;
        }
        let report = health::report(&inner.instance, &read(&inner.checkers));
        inner.events.emit(Event::outside_calls(
            clock.elapsed(),
            EventKind::HealthChecked {
                healthy: report.healthy,
            },
            inner.instance.clone(),
            inner.name.clone(),
            Arc::from(HEALTH_ENDPOINT),
        ));
    }
}

fn panic_error(panic: Box<dyn std::any::Any + Send>) -> Error {
    let msg = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "handler panicked".to_string());
    Error::internal("panic", msg)
}
