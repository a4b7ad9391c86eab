//! The context a request carries from hop to hop: deadline, cancellation, request tree, trace.
//!
//! Go's `context.Context` (the talk's slide 113) in Rust. A handler receives the context of its
//! request; every call it makes derives a context from it, whose deadline is never later than
//! the parent's, and cancelling the parent cancels every call still in flight.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::framework::ids::{RequestId, SpanId, TraceId};
use crate::framework::metrics::Metrics;
use crate::framework::timer;

/// Request-scoped state. Cheap to clone (a token's count and an `Arc`'s).
///
/// A context derived with another deadline or cancellation ([`Context::child`],
/// [`Context::with_timeout`], [`Context::with_deadline`]) shares its parent's request, trace,
/// metadata and metrics: it allocates only its token's node. [`Context::with_trace`],
/// [`Context::with_meta`] and [`Context::with_metrics`] copy what they change. The context the
/// client makes for a call without middleware shares its caller's token too, and allocates
/// nothing.
#[derive(Debug, Clone)]
pub struct Context {
    deadline: Option<Instant>,
    cancel: CancellationToken,
    shared: Arc<Shared>,
}

/// What a context's children share with it unless they change it.
#[derive(Debug, Clone, Default)]
struct Shared {
    request: Option<RequestInfo>,
    trace_id: Option<TraceId>,
    meta: BTreeMap<String, String>,
    metrics: Option<Metrics>,
}

/// Where a request sits in the tree of calls, as seen by its handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// This request's id.
    pub request_id: RequestId,
    /// The request whose handler made this one, if any.
    pub parent_request_id: Option<RequestId>,
    /// The service handling this request.
    pub service: Arc<str>,
    /// The endpoint handling this request.
    pub endpoint: Arc<str>,
    /// The calling service, if known.
    pub origin_service: Option<Arc<str>>,
    /// The calling endpoint, if known.
    pub origin_endpoint: Option<Arc<str>>,
    /// This request's span.
    pub span_id: SpanId,
    /// The caller's span, if any.
    pub parent_span_id: Option<SpanId>,
}

impl Default for Context {
    fn default() -> Self {
        Context::background()
    }
}

impl Context {
    /// A root context: no deadline, not cancelled, no request, no trace yet.
    pub fn background() -> Context {
        Context {
            deadline: None,
            cancel: CancellationToken::new(),
            shared: Arc::default(),
        }
    }

    /// The context a server builds for an inbound request.
    pub(crate) fn for_request(
        deadline: Option<Instant>,
        cancel: CancellationToken,
        request: RequestInfo,
        trace_id: TraceId,
        meta: BTreeMap<String, String>,
        metrics: Option<Metrics>,
    ) -> Context {
        Context {
            deadline,
            cancel,
            shared: Arc::new(Shared {
                request: Some(request),
                trace_id: Some(trace_id),
                meta,
                metrics,
            }),
        }
    }

    /// The context of one call made under this one, expiring `timeout` from now (or when this
    /// one does, if sooner; with no timeout, when this one does): the client's, for a call
    /// without middleware. It shares this one's cancellation, not a child of it, so no token
    /// node is made and unlinked per call: nothing cancels a call's context alone (a call ends
    /// early by being dropped). Never cancel it: that would cancel this one, and every call
    /// made under it.
    pub(crate) fn for_call(&self, timeout: Option<Duration>) -> Context {
        let deadline = match timeout {
            Some(t) => Some(self.sooner(timer::now() + t)),
            None => self.deadline,
        };
        Context {
            deadline,
            cancel: self.cancel.clone(),
            shared: self.shared.clone(),
        }
    }

    /// `deadline`, or this context's deadline if that is sooner.
    fn sooner(&self, deadline: Instant) -> Instant {
        self.deadline
            .map_or(deadline, |parent| parent.min(deadline))
    }

    /// A child with its own cancellation (cancelled also when this one is), expiring at
    /// `deadline`, sharing everything else.
    fn child_until(&self, deadline: Option<Instant>) -> Context {
        Context {
            deadline,
            cancel: self.cancel.child_token(),
            shared: self.shared.clone(),
        }
    }

    /// A child whose shared part is this one's, changed by `f` (a copy of it).
    fn derive_shared(&self, f: impl FnOnce(&mut Shared)) -> Context {
        let mut shared = (*self.shared).clone();
        f(&mut shared);
        Context {
            deadline: self.deadline,
            cancel: self.cancel.child_token(),
            shared: Arc::new(shared),
        }
    }

    /// A child that expires `timeout` from now, or at this context's deadline if sooner.
    pub fn with_timeout(&self, timeout: Duration) -> Context {
        self.with_deadline(timer::now() + timeout)
    }

    /// A child that expires at `deadline`, or at this context's deadline if sooner.
    pub fn with_deadline(&self, deadline: Instant) -> Context {
        self.child_until(Some(self.sooner(deadline)))
    }

    /// A child with its own cancellation, cancelled also when this one is.
    pub fn child(&self) -> Context {
        self.child_until(self.deadline)
    }

    /// A child that carries `trace_id` (for an edge request that starts a trace).
    pub fn with_trace(&self, trace_id: TraceId) -> Context {
        self.derive_shared(|s| s.trace_id = Some(trace_id))
    }

    /// A child carrying one more piece of metadata; metadata travels to every callee.
    pub fn with_meta(&self, key: impl Into<String>, value: impl Into<String>) -> Context {
        let (k, v) = (key.into(), value.into());
        self.derive_shared(|s| {
            s.meta.insert(k, v);
        })
    }

    /// The deadline, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left before the deadline (zero once passed); `None` without a deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(timer::now()))
    }

    /// Cancels this context and every context derived from it.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Whether this context was cancelled (directly or through a parent).
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves when this context is cancelled.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// Resolves when this context is cancelled or its deadline passes, whichever is first.
    pub async fn done(&self) {
        match self.deadline {
            Some(d) => {
                tokio::select! {
                    _ = self.cancel.cancelled() => {}
                    _ = crate::framework::timer::sleep_until(d) => {}
                }
            }
            None => self.cancel.cancelled().await,
        }
    }

    /// The cancellation token, for code that selects on it.
    pub fn token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The request this context belongs to, inside a handler.
    pub fn request(&self) -> Option<&RequestInfo> {
        self.shared.request.as_ref()
    }

    /// The trace this context belongs to, once one was started.
    pub fn trace_id(&self) -> Option<TraceId> {
        self.shared.trace_id
    }

    /// A piece of metadata carried from upstream.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.shared.meta.get(key).map(String::as_str)
    }

    /// A child carrying `identity` to every callee, under
    /// [`META_USER`](crate::framework::identity::META_USER) and
    /// [`META_SCOPES`](crate::framework::identity::META_SCOPES), signed by `signer` for this
    /// context's trace ([`META_USER_SIG`](crate::framework::identity::META_USER_SIG)). Start
    /// the trace first: servers refuse a signature made for another trace.
    pub fn with_identity(
        &self,
        identity: &crate::framework::identity::Identity,
        signer: &crate::framework::trust::Credential,
    ) -> Context {
        use crate::framework::identity::{META_SCOPES, META_USER, META_USER_SIG};
        let scopes = identity.scopes.join(" ");
        let trace = self.trace_id().unwrap_or_default();
        let sig = signer.sign_identity(trace, &identity.user, &scopes);
        self.with_meta(META_USER, identity.user.as_str())
            .with_meta(META_SCOPES, scopes)
            .with_meta(META_USER_SIG, sig)
    }

    /// The user the gateway authenticated for this request, carried under
    /// [`META_USER`](crate::framework::identity::META_USER); `None` for a call made on no
    /// user's behalf. Inside a handler it is always one the gateway signed: the server removes
    /// a user whose signature does not verify before the handler runs.
    pub fn user(&self) -> Option<&str> {
        self.meta(crate::framework::identity::META_USER)
    }

    /// A child that records business metrics to `metrics` (background work that is not a
    /// handler, such as an event consumer, uses its server's handle this way).
    pub fn with_metrics(&self, metrics: Metrics) -> Context {
        self.derive_shared(|s| s.metrics = Some(metrics))
    }

    /// Adds `by` to the business counter `name` of the service handling this request; does
    /// nothing outside a server.
    pub fn count(&self, name: &str, by: i64) {
        if let Some(m) = &self.shared.metrics {
            m.count(name, by);
        }
    }

    /// Records `value` in the business histogram `name`; does nothing outside a server.
    pub fn observe(&self, name: &str, value: i64) {
        if let Some(m) = &self.shared.metrics {
            m.observe(name, value);
        }
    }

    /// All metadata, ordered by key.
    pub fn meta_all(&self) -> &BTreeMap<String, String> {
        &self.shared.meta
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn child_deadline_is_never_later_than_the_parent() {
        let parent = Context::background().with_timeout(Duration::from_millis(100));
        let child = parent.with_timeout(Duration::from_secs(5));
        assert_eq!(child.deadline(), parent.deadline());
        let tighter = parent.with_timeout(Duration::from_millis(10));
        assert!(tighter.deadline() < parent.deadline());
    }

    #[tokio::test(start_paused = true)]
    async fn a_calls_context_takes_the_sooner_deadline_and_shares_its_callers_cancellation() {
        let caller = Context::background()
            .with_timeout(Duration::from_millis(100))
            .with_trace(TraceId(7));
        let call = caller.for_call(Some(Duration::from_secs(5)));
        assert_eq!(call.deadline(), caller.deadline());
        let tighter = caller.for_call(Some(Duration::from_millis(10)));
        assert!(tighter.deadline() < caller.deadline());
        assert_eq!(caller.for_call(None).deadline(), caller.deadline());
        let unbounded = Context::background().for_call(Some(Duration::from_millis(10)));
        assert!(unbounded.deadline().is_some());
        assert_eq!(call.trace_id(), Some(TraceId(7)));
        assert!(!call.is_cancelled());
        caller.cancel();
        assert!(call.is_cancelled() && tighter.is_cancelled());
        // The other way too: the two share one token (why a call's context is never cancelled).
        let caller = Context::background();
        caller.for_call(None).cancel();
        assert!(caller.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn cancelling_the_parent_cancels_children_but_not_the_reverse() {
        let parent = Context::background();
        let child = parent.child();
        child.cancel();
        assert!(!parent.is_cancelled());
        let other = parent.child();
        parent.cancel();
        assert!(other.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancellation_reaches_every_descendant_left_after_clones_and_middles_are_dropped() {
        // Goal: the token's handle count and flag (vendor/tokio-util/PATCH.md: counted and read
        // without the token's lock) still detach a dropped context from the tree and still
        // carry a cancellation down it. Method: a root, a middle and a leaf context; clones of
        // the middle's token made and dropped, then the middle itself dropped while a task waits
        // on the leaf; the root cancelled.
        let root = Context::background();
        let middle = root.child();
        let leaf = middle.with_timeout(Duration::from_secs(60));
        let clones: Vec<CancellationToken> = (0..3).map(|_| middle.token().clone()).collect();
        drop(clones);
        assert!(!leaf.is_cancelled());
        drop(middle);
        let waiter = {
            let leaf = leaf.clone();
            tokio::spawn(async move { leaf.token().cancelled().await })
        };
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "the leaf's wait ended before any cancellation"
        );
        root.cancel();
        assert!(
            leaf.is_cancelled(),
            "the dropped middle cut the leaf off the root"
        );
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("the leaf's waiter was not woken")
            .expect("the waiter panicked");
        // A context derived from a cancelled one starts cancelled.
        assert!(leaf.child().is_cancelled());
    }
}
