//! [`Transport`] over TCP: one connection per peer, requests multiplexed by frame id.
//!
//! Each connection has a reader task and a writer task. A frame sent while nothing waits in the
//! connection's outbox is written at once by the task that sends it (a call, or a handler's
//! answer), which wakes no other task, once an instant; a frame sent while others wait, later in
//! the same instant, or that the socket does not take whole, is queued, and the writer writes
//! everything queued as the socket takes it (a burst in one write).
//! A server's reader hands each request to the server's [`Inlet`], which starts the request's
//! task then and there (no queue and no dispatching task in between).
//!
//! A call that is dropped before its answer arrives (deadline, cancellation, a decided fanout)
//! sends a Cancel frame from its drop guard, so cancellation reaches the callee however the
//! caller gave up.
//!
//! A server's side is bounded whoever connects: at most `max_connections` connections per
//! listener (more are closed at once), a frame that stays incomplete for `partial_frame_timeout`
//! closes its connection, a frame's buffer grows as its bytes arrive (not to the length its
//! header declares), at most `max_inflight_per_connection` requests per connection run at once
//! (more are refused with `rate_limited.connection_inflight`), and while more than
//! `max_outbox_bytes` of answers wait to be written the connection is not read (backpressure:
//! a caller that never reads its answers stops being served, instead of filling memory). Frames
//! over 64 KiB draw on one budget per transport while they arrive (`large_frames_budget`), so
//! many peers each sending most of a large frame hold that budget and no more.
//!
//! Nobody is served without the deployment's key: every connection starts with the handshake
//! of [`crate::framework::trust`] (the server proves itself, then the caller), and a listener or
//! a call on a transport without a [`Credential`] is refused. Handshakes in progress are
//! bounded on their own (`max_handshakes`, and `max_handshakes_per_peer` per IP, each at most
//! `handshake_timeout` long): a connection takes one of `max_connections` only once it proved
//! itself, so peers without the key cannot crowd out those with it. A request's user identity is
//! checked as it arrives, and removed when the gateway's signature does not hold.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use std::future::Future;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, Notify, OnceCell};
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use super::by_id::ById;
use super::frame::{
    encode_frame, encode_request_frame, encode_response_frame, Frame, FrameCodec, LargeFrames,
    RequestFrame, ResponseFrame, DEFAULT_MAX_FRAME_BYTES,
};
use super::net::Network;
use super::{BoxFuture, Inbound, Inlet, ListenError, SendError, Transport};
use crate::framework::error::Error;
use crate::framework::guard::Guard;
use crate::framework::timer;
use crate::framework::trust::Credential;
use crate::lock::lock;

/// Settings of a [`TcpTransport`].
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Largest frame payload read or written; a larger one closes the connection (read) or
    /// fails the call (write). Default 4 MiB.
    pub max_frame_bytes: usize,
    /// Asked before a Cancel frame is written to an address; `false` loses it. The wind tunnel's
    /// network model uses it so a partition stops cancellations too. Default: always send.
    pub cancel_gate: Option<CancelGate>,
    /// Connections a listener holds at once; more are closed as they arrive. Default 1024.
    pub max_connections: usize,
    /// How long a frame may stay incomplete before its connection is closed. Default 10 s.
    pub partial_frame_timeout: Duration,
    /// Requests one connection may have running at once; more are refused. Default 1024.
    pub max_inflight_per_connection: usize,
    /// Answers waiting to be written on one connection, in bytes, beyond which the server
    /// stops reading it until they drain. Default 8 MiB.
    pub max_outbox_bytes: usize,
    /// Bytes of frames over 64 KiB that a server's connections may be receiving at once, all
    /// together; a large frame beyond it closes its connection. Default 16 MiB.
    pub large_frames_budget: usize,
    /// What this party proves itself with, and checks peers against. Without one the transport
    /// neither listens nor connects. Default: none.
    pub credential: Option<Credential>,
    /// How long a new connection's handshake may take before it is closed. Default 2 s.
    pub handshake_timeout: Duration,
    /// Connections a listener lets handshake at once; more are closed as they arrive. A
    /// connection takes one of `max_connections` only once its handshake succeeded, so peers
    /// without the key cannot hold those. Default 128.
    pub max_handshakes: usize,
    /// Of those, how many one peer address (IP) may have at once. Default 16.
    pub max_handshakes_per_peer: usize,
}

/// Decides whether a Cancel frame to an address gets through.
#[derive(Clone)]
pub struct CancelGate(pub Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl std::fmt::Debug for CancelGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CancelGate")
    }
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            cancel_gate: None,
            max_connections: 1024,
            partial_frame_timeout: Duration::from_secs(10),
            max_inflight_per_connection: 1024,
            max_outbox_bytes: 8 * 1024 * 1024,
            large_frames_budget: 16 * 1024 * 1024,
            credential: None,
            handshake_timeout: Duration::from_secs(2),
            max_handshakes: 128,
            max_handshakes_per_peer: 16,
        }
    }
}

/// A connection's write half, type-erased so client and server connections share one outbox
/// type whatever the network.
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// Frames waiting to be written on one connection, and the connection's write half.
///
/// A frame sent while nothing is queued is written at once by the task that sends it (a
/// simulated or real socket write does not wait when the socket has room), so the common case
/// wakes no writer task. Only the first frame of an instant goes out that way: later frames of
/// the same instant are queued, so that a burst (many calls on one connection at once) still
/// costs one write of them all, not one each. Whatever does not go out at once stays queued, and
/// the connection's writer task writes it, with everything queued behind it, as the socket
/// takes it.
struct Outbox {
    state: Mutex<OutState>,
    notify: Notify,
    /// Signalled each time the writer empties the queue. `notify_one` keeps a permit when
    /// nobody waits, so a reader that checks the queue and then waits cannot miss a drain.
    drained: Notify,
    /// Cancelled when the connection closes, for the tasks that wait for it. Only
    /// [`Outbox::close`] cancels it.
    closed: CancellationToken,
    /// Both ends on one host: the network carries no latency of a frame's own there.
    loopback: bool,
}

/// The queue and the write half, under one lock so writes keep the order frames were queued in.
struct OutState {
    buf: BytesMut,
    /// Taken out by the writer task when the connection closes.
    writer: Option<Writer>,
    /// When a sending task last wrote a frame itself.
    wrote_directly: Option<Instant>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("queued", &self.queued())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl OutState {
    /// Writes what is queued until it is all written (`Ready(Ok)`), the socket is full
    /// (`Pending`, `cx` woken when it has room) or the write fails.
    fn write_queued(&mut self, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
        let Some(writer) = self.writer.as_mut() else {
            return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
        };
        while !self.buf.is_empty() {
            match std::pin::Pin::new(&mut *writer).poll_write(cx, &self.buf) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(n)) => self.buf.advance(n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl Outbox {
    fn new(writer: Writer, loopback: bool) -> Arc<Outbox> {
        Arc::new(Outbox {
            state: Mutex::new(OutState {
                buf: BytesMut::new(),
                writer: Some(writer),
                wrote_directly: None,
            }),
            notify: Notify::new(),
            drained: Notify::new(),
            closed: CancellationToken::new(),
            loopback,
        })
    }

    /// Closes the connection's queue: frames put from now on are refused, and the tasks that
    /// wait for `closed` end.
    fn close(&self) {
        self.closed.cancel();
    }

    /// Whether the queue was closed (one atomic load with the patched token,
    /// vendor/tokio-util/PATCH.md).
    fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Bytes queued and not yet written.
    fn queued(&self) -> usize {
        lock(&self.state).buf.len()
    }

    /// Queues `frame` for the writer task. For frames sent where the write half may not be
    /// usable (a drop guard may run outside the task's runtime).
    fn push(&self, frame: &Frame, max_frame_bytes: usize) -> Result<(), super::FrameError> {
        self.put(|buf| encode_frame(frame, buf, max_frame_bytes), false, None)
            .map(drop)
    }

    /// Sends `frame` now if nothing is queued before it and the socket takes it whole;
    /// otherwise queues it for the writer task. Called from a task of the connection's runtime.
    fn send(&self, frame: &Frame, max_frame_bytes: usize) -> Result<(), super::FrameError> {
        self.put(|buf| encode_frame(frame, buf, max_frame_bytes), true, None)
            .map(drop)
    }

    /// [`Outbox::send`] for a response that is to arrive `latency` after it leaves (a simulated
    /// network's model of the message, [`turmoil::set_next_message_latency`]): sent now if it
    /// can go out at once; `Ok(false)`, with nothing sent or queued, if it cannot (frames are
    /// queued before it, the socket is full, or the peer is on this host), for the caller to
    /// wait the latency out and send it plainly.
    fn send_response_after(
        &self,
        response: &ResponseFrame,
        max_frame_bytes: usize,
        latency: Duration,
    ) -> Result<bool, super::FrameError> {
        self.put(
            |buf| encode_response_frame(response, buf, max_frame_bytes),
            true,
            Some(latency),
        )
    }

    /// [`Outbox::send`] for a request frame, encoded from where the call keeps it.
    fn send_request(
        &self,
        request: &RequestFrame,
        max_frame_bytes: usize,
        latency: Option<Duration>,
    ) -> Result<bool, super::FrameError> {
        self.put(
            |buf| encode_request_frame(request, buf, max_frame_bytes),
            true,
            latency,
        )
    }

    /// Whether a frame sent now with a latency of its own would likely go out at once with it:
    /// nothing is queued, and the peer is on another host. (It may still not: the socket can be
    /// full, and then [`Outbox::send_request`] or [`Outbox::send_response_after`] says so.)
    fn takes_latency(&self) -> bool {
        self.takes_latency_in(&lock(&self.state))
    }

    /// [`Outbox::takes_latency`] with the state already locked.
    fn takes_latency_in(&self, state: &OutState) -> bool {
        !self.loopback && state.buf.is_empty() && state.writer.is_some()
    }

    /// Encodes a frame into the queue with `encode`; with `may_write`, writes it at once when
    /// the queue was empty and no frame was written that way this instant. Wakes the writer
    /// for whatever is left queued. A frame with a `latency` of its own is written at once or
    /// not at all: `Ok(false)`, nothing left encoded, when the queue holds frames before it,
    /// the socket has no room, or the peer is on this host.
    fn put(
        &self,
        encode: impl FnOnce(&mut BytesMut) -> Result<(), super::FrameError>,
        may_write: bool,
        latency: Option<Duration>,
    ) -> Result<bool, super::FrameError> {
        if self.is_closed() {
            return Err(super::FrameError::Io(std::io::ErrorKind::BrokenPipe.into()));
        }
        let mut state = lock(&self.state);
        if latency.is_some() && !self.takes_latency_in(&state) {
            return Ok(false);
        }
        // Only when nothing is queued: then the writer task waits on `notify`, not on the
        // socket, and a write here cannot take its place as the socket's waiter. And only once
        // an instant: the rest of a burst is left for the writer to send in one write (a frame
        // with its own latency goes alone, whenever it is sent).
        let direct = (may_write && state.buf.is_empty())
            .then(timer::now)
            .filter(|now| latency.is_some() || state.wrote_directly != Some(*now));
        encode(&mut state.buf)?;
        if let Some(now) = direct {
            state.wrote_directly = Some(now);
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            turmoil::set_next_message_latency(latency);
            let wrote = state.write_queued(&mut cx);
            turmoil::set_next_message_latency(None);
            match wrote {
                Poll::Ready(Ok(())) => return Ok(true),
                // The socket has no room (its flow-control window is full): nothing of the
                // frame went out (turmoil takes a write whole or not at all), so it is taken
                // back, not left to leave later without its latency.
                Poll::Pending if latency.is_some() => {
                    state.buf.clear();
                    state.wrote_directly = None;
                    return Ok(false);
                }
                Poll::Ready(Err(e)) => {
                    tracing::debug!(error = %e, "write failed; closing connection");
                    drop(state);
                    self.close();
                    return Ok(true);
                }
                Poll::Pending => {}
            }
        }
        drop(state);
        self.notify.notify_one();
        Ok(true)
    }
}

/// Writes what [`Outbox::push`] and [`Outbox::send`] leave queued, until the connection
/// closes; then shuts the write half down.
async fn write_loop(outbox: Arc<Outbox>) {
    // Made once for the connection, not once per wait: its place among the waiters is taken
    // once.
    let closed = outbox.closed.cancelled();
    tokio::pin!(closed);
    // Guarded: polled only when the connection closes, not at every wake of the writer.
    let mut closed = Guard::new(closed.as_mut());
    loop {
        let wrote = std::future::poll_fn(|cx| {
            let mut state = lock(&outbox.state);
            if state.buf.is_empty() {
                return Poll::Ready(Ok(false));
            }
            state.write_queued(cx).map_ok(|()| true)
        })
        .await;
        match wrote {
            Ok(true) => {
                outbox.drained.notify_one();
                continue;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::debug!(error = %e, "write failed; closing connection");
                break;
            }
        }
        tokio::select! {
            biased;
            _ = outbox.notify.notified() => {}
            _ = &mut closed => break,
        }
    }
    outbox.close();
    let writer = lock(&outbox.state).writer.take();
    if let Some(mut w) = writer {
        let _ = w.shutdown().await;
    }
}

/// The caller's side of one connection.
#[derive(Debug)]
struct ClientConn {
    addr: String,
    cancel_gate: Option<CancelGate>,
    outbox: Arc<Outbox>,
    pending: Mutex<ById<oneshot::Sender<ResponseFrame>>>,
    next_id: AtomicU64,
    max_frame_bytes: usize,
}

impl ClientConn {
    fn close(&self) {
        self.outbox.close();
        // Dropping the senders wakes every waiting call with "connection lost".
        lock(&self.pending).clear();
    }
}

async fn client_read_loop<R: AsyncRead + Unpin>(r: R, conn: Arc<ClientConn>) {
    let mut frames = FramedRead::new(r, FrameCodec::new(conn.max_frame_bytes));
    let closed = conn.outbox.closed.cancelled();
    tokio::pin!(closed);
    // Guarded: polled only when the connection closes, not at every answer read.
    let mut closed = Guard::new(closed.as_mut());
    loop {
        let next = tokio::select! {
            biased;
            f = frames.next() => f,
            _ = &mut closed => break,
        };
        match next {
            Some(Ok(Frame::Response(resp))) => {
                if let Some(tx) = lock(&conn.pending).remove(resp.id) {
                    let _ = tx.send(resp);
                }
            }
            Some(Ok(other)) => {
                tracing::warn!(addr = %conn.addr, frame = ?other, "unexpected frame from a server; closing connection");
                break;
            }
            Some(Err(e)) => {
                tracing::warn!(addr = %conn.addr, error = %e, "bad frame from a server; closing connection");
                break;
            }
            None => break,
        }
    }
    conn.close();
}

/// Removes a call from its connection and sends a Cancel frame if it is dropped before its
/// answer arrived.
struct PendingCall<'a> {
    conn: &'a ClientConn,
    id: u64,
    /// Whether the call's answer (or its connection's end) reached it: the reader took the call
    /// out of `pending` before it sent either, so there is nothing left to remove.
    answered: bool,
}

impl Drop for PendingCall<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        // A call the reader removed meanwhile asks the gate nothing.
        if lock(&self.conn.pending).remove(self.id).is_none() {
            return;
        }
        let gate_open = self
            .conn
            .cancel_gate
            .as_ref()
            .is_none_or(|g| (g.0)(&self.conn.addr));
        if gate_open {
            let _ = self
                .conn
                .outbox
                .push(&Frame::Cancel { id: self.id }, self.conn.max_frame_bytes);
        }
    }
}

/// The server's side of one connection: where answers go, and the requests still running.
#[derive(Debug)]
struct ServerConn {
    outbox: Arc<Outbox>,
    /// The name the caller proved itself under in the handshake.
    peer_name: Arc<str>,
    /// Its requests, under one lock: each request's arrival and each cancel looks at both.
    requests: Mutex<Requests>,
    max_frame_bytes: usize,
    /// What a transport wrapping this one made of `peer_name`, once for the connection (see
    /// [`Responder::peer_resolved`]).
    peer_resolved: std::sync::OnceLock<Box<dyn std::any::Any + Send + Sync>>,
}

/// The requests of one server connection.
#[derive(Debug, Default)]
struct Requests {
    /// The requests running: each one's cancellation, and whether its caller cancelled it.
    running: ById<(CancellationToken, Arc<AtomicBool>)>,
    /// Ids of cancels for requests not seen (yet): a request may arrive after its cancel when
    /// the network carries each message for its own latency. Bounded by
    /// `max_inflight_per_connection`, the lowest (oldest) id forgotten first. A cancel that
    /// crossed its answer stays here until forgotten, so the lookup is a set's.
    early_cancels: std::collections::BTreeSet<u64>,
}

impl ServerConn {
    fn cancel_all(&self) {
        let inflight = lock(&self.requests).running.take_all();
        for (token, _) in inflight {
            token.cancel();
        }
    }
}

/// Where the answer to one inbound request goes.
#[derive(Debug, Clone)]
pub struct Responder {
    conn: Arc<ServerConn>,
    id: u64,
}

impl Responder {
    /// What `resolve` makes of the name the caller proved itself under when it connected,
    /// made at the connection's first answer and kept with the connection: a transport that
    /// wraps this one (the simulation's network model, which finds the party behind a name)
    /// pays for the lookup once per connection, not once per answer. A connection keeps one
    /// value, of the first type asked for; a value of another type is made afresh at each call.
    pub(crate) fn peer_resolved<T: Clone + Send + Sync + 'static>(
        &self,
        resolve: impl FnOnce(&str) -> T,
    ) -> T {
        if let Some(kept) = self.conn.peer_resolved.get() {
            return match kept.downcast_ref::<T>() {
                Some(value) => value.clone(),
                None => resolve(&self.conn.peer_name),
            };
        }
        let value = resolve(&self.conn.peer_name);
        let _ = self.conn.peer_resolved.set(Box::new(value.clone()));
        value
    }
}

/// A [`Transport`] over TCP on network `N` ([`super::Turmoil`] or [`super::Tokio`]).
#[derive(Debug)]
pub struct TcpTransport<N: Network> {
    inner: Arc<Inner>,
    _net: PhantomData<fn() -> N>,
}

impl<N: Network> Clone for TcpTransport<N> {
    fn clone(&self) -> Self {
        TcpTransport {
            inner: self.inner.clone(),
            _net: PhantomData,
        }
    }
}

type ConnSlot = Arc<OnceCell<Arc<ClientConn>>>;

#[derive(Debug)]
struct Inner {
    /// (host clock, run clock) read together once; see [`TcpTransport::now`].
    clock_base: std::sync::OnceLock<(Instant, Duration)>,
    config: TransportConfig,
    /// What the server's connections may buffer of large frames, together.
    large_frames: Arc<LargeFrames>,
    pool: Mutex<BTreeMap<String, ConnSlot>>,
    listeners: Mutex<BTreeMap<String, CancellationToken>>,
    handshakes_refused: AtomicU64,
    identities_removed: AtomicU64,
}

/// What a transport has refused so far (see [`TcpTransport::refusals`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refusals {
    /// Connections closed because their handshake failed (no key, a wrong key, not the
    /// handshake at all, too slow).
    pub handshakes: u64,
    /// Requests whose user identity was removed because its signature did not verify.
    pub identities: u64,
}

impl<N: Network> Default for TcpTransport<N> {
    fn default() -> Self {
        TcpTransport::new(TransportConfig::default())
    }
}

impl<N: Network> TcpTransport<N> {
    /// A transport with the default settings that proves itself with `credential`.
    pub fn with_credential(credential: Credential) -> TcpTransport<N> {
        TcpTransport::new(TransportConfig {
            credential: Some(credential),
            ..TransportConfig::default()
        })
    }

    /// What it has refused: handshakes that failed, and user identities removed for want of
    /// a valid signature.
    pub fn refusals(&self) -> Refusals {
        Refusals {
            handshakes: self.inner.handshakes_refused.load(Ordering::Relaxed),
            identities: self.inner.identities_removed.load(Ordering::Relaxed),
        }
    }

    /// A transport with `config`. Create it on the host (turmoil) or runtime that uses it: its
    /// connection tasks are spawned there.
    pub fn new(config: TransportConfig) -> TcpTransport<N> {
        TcpTransport {
            inner: Arc::new(Inner {
                clock_base: std::sync::OnceLock::new(),
                large_frames: LargeFrames::new(config.large_frames_budget),
                config,
                pool: Mutex::new(BTreeMap::new()),
                listeners: Mutex::new(BTreeMap::new()),
                handshakes_refused: AtomicU64::new(0),
                identities_removed: AtomicU64::new(0),
            }),
            _net: PhantomData,
        }
    }

    /// Time since the start of the run. The network's clock is read once; after that the
    /// runtime's clock, which advances in step with it, gives the rest (turmoil's own lookup
    /// hashes the host name on every call, and this sits on every event's path).
    fn now(&self) -> Duration {
        let (instant0, run0) = *self
            .inner
            .clock_base
            .get_or_init(|| (timer::now(), N::elapsed()));
        run0 + timer::since(instant0)
    }

    async fn connection(&self, addr: &str) -> Result<Arc<ClientConn>, SendError> {
        for _ in 0..2 {
            let slot = {
                let mut pool = lock(&self.inner.pool);
                match pool.get(addr) {
                    Some(s) => s.clone(),
                    None => pool.entry(addr.to_string()).or_default().clone(),
                }
            };
            let conn = slot.get_or_try_init(|| self.connect(addr)).await?.clone();
            if !conn.outbox.is_closed() {
                return Ok(conn);
            }
            // A dead connection: forget it (unless another caller already replaced it).
            let mut pool = lock(&self.inner.pool);
            if pool.get(addr).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                pool.remove(addr);
            }
        }
        Err(SendError::ConnectionLost {
            addr: addr.to_string(),
        })
    }

    /// The pooled connection to `addr`, if there is one and it is open.
    fn pooled(&self, addr: &str) -> Option<Arc<ClientConn>> {
        let pool = lock(&self.inner.pool);
        let conn = pool.get(addr)?.get()?;
        (!conn.outbox.is_closed()).then(|| conn.clone())
    }

    async fn connect(&self, addr: &str) -> Result<Arc<ClientConn>, SendError> {
        let unreachable = |reason: String| SendError::Unreachable {
            addr: addr.to_string(),
            reason,
        };
        let config = &self.inner.config;
        let credential = config
            .credential
            .as_ref()
            .ok_or_else(|| unreachable(NO_CREDENTIAL.into()))?;
        let mut stream = N::connect(addr)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        credential
            .client_handshake(&mut stream, config.handshake_timeout)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let loopback = N::is_loopback(&stream);
        let (r, w) = N::split(stream);
        let conn = Arc::new(ClientConn {
            addr: addr.to_string(),
            cancel_gate: self.inner.config.cancel_gate.clone(),
            outbox: Outbox::new(Box::new(w), loopback),
            pending: Mutex::new(ById::default()),
            next_id: AtomicU64::new(1),
            max_frame_bytes: self.inner.config.max_frame_bytes,
        });
        crate::framework::task::spawn(write_loop(conn.outbox.clone()));
        crate::framework::task::spawn(client_read_loop(r, conn.clone()));
        Ok(conn)
    }

    /// The call behind [`Transport::send`]: nothing happens until it is polled.
    // Not an `async fn`: one would keep a second copy of the request in its future.
    #[allow(clippy::manual_async_fn)]
    fn send_inner(
        self,
        addr: String,
        mut request: RequestFrame,
        deadline: Option<Instant>,
        cancel: CancellationToken,
    ) -> impl Future<Output = Result<Bytes, SendError>> {
        async move {
            let cancelled = cancel.cancelled();
            tokio::pin!(cancelled);
            let kept_timer: timer::Kept = None;
            tokio::pin!(kept_timer);
            self.call(&addr, &mut request, deadline, cancelled, kept_timer, None)
                .await
        }
    }

    /// One call to `addr`, given up when `deadline` passes or `cancelled` (the wait on this
    /// call's own cancellation token) completes. The caller keeps the request (this future
    /// holds a reference, not a second copy; the call sets its `id` and its headers'
    /// `deadline_remaining`) and the wait: a caller that also waits for the cancellation while
    /// the call travels (the simulation's network model) makes one wait, not two, and holds
    /// this future in its own instead of in a box of its own. The deadline is waited for on
    /// `kept_timer` ([`timer::Kept`]), which the caller may move on to its own waits after
    /// this one.
    pub(crate) async fn call(
        &self,
        addr: &str,
        request: &mut RequestFrame,
        deadline: Option<Instant>,
        mut cancelled: Pin<&mut WaitForCancellationFuture<'_>>,
        kept_timer: Pin<&mut timer::Kept>,
        latency: Option<Duration>,
    ) -> Result<Bytes, SendError> {
        let expired = timer::sleep_on(kept_timer, deadline);
        tokio::pin!(expired);
        // A live pooled connection is taken without the connecting path's large future in this
        // one (which would size every call's future for the rare call that connects).
        let pooled = self.pooled(addr);
        let connecting = async {
            match pooled {
                Some(conn) => Ok(conn),
                None => Box::pin(self.connection(addr)).await,
            }
        };
        let conn = tokio::select! {
            c = connecting => c?,
            _ = &mut expired => return Err(SendError::Timeout),
            _ = cancelled.as_mut() => return Err(SendError::Cancelled),
        };
        // A request with a latency of its own leaves now and the network carries it that long,
        // unless it cannot go out at once with it (frames queued before it, or a peer on this
        // host): then it waits its latency out here and leaves plainly.
        let mut latency = latency;
        if let Some(wait) = latency.filter(|_| !conn.outbox.takes_latency()) {
            latency = None;
            wait_out(wait, expired.as_mut(), cancelled.as_mut()).await?;
        }
        let id = conn.next_id.fetch_add(1, Ordering::Relaxed);
        request.id = id;
        // What is left of the deadline when the request arrives.
        let arrives = timer::now() + latency.unwrap_or_default();
        request.headers.deadline_remaining = deadline.map(|d| d.saturating_duration_since(arrives));
        let (tx, rx) = oneshot::channel();
        lock(&conn.pending).insert(id, tx);
        let mut guard = PendingCall {
            conn: &conn,
            id,
            answered: false,
        };
        let sent = match conn
            .outbox
            .send_request(request, conn.max_frame_bytes, latency)
        {
            // Not taken with its latency (the socket's window is full): it waits the latency
            // out here and leaves plainly. Given up meanwhile, it was never sent, so no cancel
            // follows it.
            Ok(false) => {
                let wait = latency.unwrap_or_default();
                if let Err(e) = wait_out(wait, expired.as_mut(), cancelled.as_mut()).await {
                    guard.answered = true;
                    lock(&conn.pending).remove(id);
                    return Err(e);
                }
                conn.outbox
                    .send_request(request, conn.max_frame_bytes, None)
            }
            other => other,
        };
        if let Err(e) = sent {
            lock(&conn.pending).remove(id);
            return Err(match e {
                super::FrameError::TooLarge { .. } => SendError::TooLarge(e.to_string()),
                _ => SendError::ConnectionLost {
                    addr: addr.to_string(),
                },
            });
        }
        let answer = tokio::select! {
            biased;
            r = rx => r,
            _ = &mut expired => return Err(SendError::Timeout),
            _ = cancelled => return Err(SendError::Cancelled),
        };
        guard.answered = true;
        drop(guard);
        match answer {
            Ok(resp) => resp.result.map_err(SendError::Remote),
            Err(_) => Err(SendError::ConnectionLost {
                addr: addr.to_string(),
            }),
        }
    }
}

/// Waits `wait` out (a request's latency, at its sender); `Err` when the call's deadline
/// (`expired`) or cancellation comes first.
async fn wait_out(
    wait: Duration,
    expired: Pin<&mut impl Future<Output = ()>>,
    cancelled: Pin<&mut WaitForCancellationFuture<'_>>,
) -> Result<(), SendError> {
    tokio::select! {
        _ = timer::sleep(wait) => Ok(()),
        _ = expired => Err(SendError::Timeout),
        _ = cancelled => Err(SendError::Cancelled),
    }
}

/// Why a transport without a credential does nothing.
const NO_CREDENTIAL: &str =
    "this transport has no credential: set TransportConfig::credential to the deployment's key";

/// A connection's place among the handshakes in progress: one of the listener's, and one of
/// its peer's; both are given back when it is dropped.
struct Handshaking {
    _permit: tokio::sync::OwnedSemaphorePermit,
    per_peer: Arc<Mutex<BTreeMap<String, usize>>>,
    ip: String,
}

impl Handshaking {
    /// A place for a connection from `peer`, or `None` when the listener or that peer already
    /// has its share of handshakes in progress.
    fn try_new(
        all: &Arc<tokio::sync::Semaphore>,
        per_peer: &Arc<Mutex<BTreeMap<String, usize>>>,
        peer: &str,
        per_peer_limit: usize,
    ) -> Option<Handshaking> {
        let ip = peer.rsplit_once(':').map_or(peer, |(ip, _)| ip).to_string();
        let permit = all.clone().try_acquire_owned().ok()?;
        let mut counts = lock(per_peer);
        let count = counts.entry(ip.clone()).or_default();
        if *count >= per_peer_limit.max(1) {
            return None;
        }
        *count += 1;
        drop(counts);
        Some(Handshaking {
            _permit: permit,
            per_peer: per_peer.clone(),
            ip,
        })
    }
}

impl Drop for Handshaking {
    fn drop(&mut self) {
        let mut counts = lock(&self.per_peer);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

async fn accept_loop<N: Network>(
    transport: TcpTransport<N>,
    listener: N::Listener,
    inlet: Inlet,
    stop: CancellationToken,
) {
    let config = &transport.inner.config;
    // `listen` refuses a transport without a credential; this is only its type's way of saying so.
    let Some(credential) = config.credential.clone() else {
        return;
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(config.max_connections.max(1)));
    let handshakes = Arc::new(tokio::sync::Semaphore::new(config.max_handshakes.max(1)));
    let per_peer: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    loop {
        let accepted = tokio::select! {
            a = N::accept(&listener) => a,
            _ = stop.cancelled() => return,
            _ = inlet.closed() => return,
        };
        let (mut stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let limit = config.max_handshakes_per_peer;
        let Some(handshaking) = Handshaking::try_new(&handshakes, &per_peer, &peer, limit) else {
            tracing::warn!(%peer, "too many handshakes in progress; closing the new connection");
            transport
                .inner
                .handshakes_refused
                .fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let (transport, inlet, slots) = (transport.clone(), inlet.clone(), slots.clone());
        let credential = credential.clone();
        crate::framework::task::spawn(async move {
            let shook = handshake(&transport, &credential, &mut stream, &peer).await;
            drop(handshaking);
            let Some(peer_name) = shook else {
                return;
            };
            let Ok(slot) = slots.try_acquire_owned() else {
                tracing::warn!(%peer, "connection limit reached; closing the new connection");
                return;
            };
            serve_conn(transport, &credential, stream, peer, peer_name, inlet).await;
            drop(slot);
        });
    }
}

/// The server's side of the handshake: the name the peer proved itself under, or `None` (the
/// refusal counted and logged) when it did not prove it holds the key.
async fn handshake<N: Network>(
    transport: &TcpTransport<N>,
    credential: &Credential,
    stream: &mut N::Stream,
    peer: &str,
) -> Option<Arc<str>> {
    let timeout = transport.inner.config.handshake_timeout;
    match credential.server_handshake(stream, timeout).await {
        Ok(name) => Some(name.into()),
        Err(e) => {
            transport
                .inner
                .handshakes_refused
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, error = %e, "handshake refused; closing connection");
            None
        }
    }
}

/// Serves one connection whose peer has proved it holds the key; `credential` checks the user
/// identity of each request.
async fn serve_conn<N: Network>(
    transport: TcpTransport<N>,
    credential: &Credential,
    stream: N::Stream,
    peer: String,
    peer_name: Arc<str>,
    inlet: Inlet,
) {
    let config = &transport.inner.config;
    let max_frame_bytes = config.max_frame_bytes;
    let peer: Arc<str> = peer.into();
    let loopback = N::is_loopback(&stream);
    let (r, w) = N::split(stream);
    let conn = Arc::new(ServerConn {
        outbox: Outbox::new(Box::new(w), loopback),
        peer_name,
        requests: Mutex::default(),
        max_frame_bytes,
        peer_resolved: std::sync::OnceLock::new(),
    });
    crate::framework::task::spawn(write_loop(conn.outbox.clone()));
    let codec = FrameCodec::with_budget(max_frame_bytes, transport.inner.large_frames.clone());
    let mut frames = FramedRead::new(r, codec);
    // Made once for the connection, not once per frame, and guarded: polled only when the
    // connection closes or the server stops, not at every request read.
    let closed = conn.outbox.closed.cancelled();
    tokio::pin!(closed);
    let mut closed = Guard::new(closed.as_mut());
    let server_gone = inlet.closed();
    tokio::pin!(server_gone);
    let mut server_gone = Guard::new(server_gone.as_mut());
    loop {
        // Backpressure: while answers back up, read nothing more from this caller.
        while conn.outbox.queued() > config.max_outbox_bytes {
            tokio::select! {
                _ = conn.outbox.drained.notified() => {}
                _ = &mut closed => break,
            }
        }
        let next = tokio::select! {
            biased;
            f = next_frame(&mut frames, config.partial_frame_timeout) => f,
            _ = &mut server_gone => break,
            _ = &mut closed => break,
        };
        let Some(next) = next else {
            tracing::warn!(%peer, "a frame stayed incomplete too long; closing connection");
            break;
        };
        match next {
            Some(Ok(Frame::Request(mut request))) => {
                if !credential.verify_identity(&mut request.headers) {
                    transport
                        .inner
                        .identities_removed
                        .fetch_add(1, Ordering::Relaxed);
                }
                let limit = config.max_inflight_per_connection;
                if !deliver(&conn, &peer, request, &inlet, transport.now(), limit) {
                    break;
                }
                // A burst of requests already buffered is read without waiting on the socket:
                // this yields every so often (tokio's task budget) so the requests' tasks run
                // and answer before more arrive than a connection may have in flight.
                tokio::task::consume_budget().await;
            }
            Some(Ok(Frame::Cancel { id })) => {
                let mut requests = lock(&conn.requests);
                if let Some((token, by_peer)) = requests.running.remove(id) {
                    drop(requests);
                    by_peer.store(true, Ordering::Relaxed);
                    token.cancel();
                } else {
                    let early = &mut requests.early_cancels;
                    if early.len() >= config.max_inflight_per_connection.max(1) {
                        early.pop_first();
                    }
                    early.insert(id);
                }
            }
            Some(Ok(Frame::Response(_))) => {
                tracing::warn!(%peer, "response frame sent to a server; closing connection");
                break;
            }
            Some(Err(e)) => {
                tracing::warn!(%peer, error = %e, "bad frame; closing connection");
                break;
            }
            None => break,
        }
    }
    // The caller is gone: nothing it asked for is still wanted.
    conn.cancel_all();
    conn.outbox.close();
}

/// The next frame, or `None` when part of one has waited `timeout` for the rest. The timer is
/// armed only once bytes of an incomplete frame are buffered, so an idle connection costs no
/// timer and a frame that arrives whole costs nothing at all.
async fn next_frame<R: AsyncRead + Unpin>(
    frames: &mut FramedRead<R, FrameCodec>,
    timeout: Duration,
) -> Option<Option<Result<Frame, super::FrameError>>> {
    let mut stall = None;
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(next) = frames.poll_next_unpin(cx) {
            return std::task::Poll::Ready(Some(next));
        }
        if frames.read_buffer().is_empty() {
            stall = None;
            return std::task::Poll::Pending;
        }
        let sleep = stall.get_or_insert_with(|| Box::pin(crate::framework::timer::sleep(timeout)));
        match sleep.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => std::task::Poll::Ready(None),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    })
    .await
}

/// Hands one request to the server, or refuses it at once when `max_inflight` requests of this
/// connection already run; false when the server is gone.
fn deliver(
    conn: &Arc<ServerConn>,
    peer: &Arc<str>,
    request: RequestFrame,
    inlet: &Inlet,
    received_at: Duration,
    max_inflight: usize,
) -> bool {
    let id = request.id;
    let cancel = CancellationToken::new();
    let by_peer = Arc::new(AtomicBool::new(false));
    {
        let mut requests = lock(&conn.requests);
        if requests.early_cancels.remove(&id) {
            return true; // cancelled before it arrived
        }
        if requests.running.len() >= max_inflight {
            drop(requests);
            let frame = Frame::Response(ResponseFrame {
                id,
                result: Err(Error::of(
                    crate::framework::error::ErrorKind::RateLimited,
                    "connection_inflight",
                    "too many requests in flight on this connection",
                )),
            });
            let _ = conn.outbox.push(&frame, conn.max_frame_bytes);
            return true;
        }
        requests
            .running
            .insert(id, (cancel.clone(), by_peer.clone()));
    }
    let msg = Inbound {
        request,
        cancel,
        cancelled_by_peer: by_peer,
        responder: Responder {
            conn: conn.clone(),
            id,
        },
        peer: peer.clone(),
        received_at,
    };
    if !inlet.deliver(msg) {
        lock(&conn.requests).running.remove(id);
        let frame = Frame::Response(ResponseFrame {
            id,
            result: Err(Error::unavailable("stopping", "server is stopping")),
        });
        let _ = conn.outbox.push(&frame, conn.max_frame_bytes);
        return false;
    }
    true
}

impl<N: Network> TcpTransport<N> {
    /// Answers a request with a frame that arrives `latency` after it leaves (a simulated
    /// network's model of the message). When it cannot go out at once with its latency
    /// (frames queued before it, a full socket, a peer on this host), nothing is done (the
    /// request stays running) and the answer comes back (`Err`): the caller waits the latency
    /// out and answers with [`Transport::respond`].
    pub(crate) fn respond_after(
        &self,
        responder: &Responder,
        result: Result<Bytes, Error>,
        latency: Duration,
    ) -> Result<(), Result<Bytes, Error>> {
        let conn = &responder.conn;
        if !conn.outbox.takes_latency() {
            return Err(result);
        }
        // Held while the answer is sent, so that no Cancel or closing connection sees the
        // request gone before its answer has left (sending takes only the outbox's own lock).
        let mut requests = lock(&conn.requests);
        let Some(running) = requests.running.remove(responder.id) else {
            return Ok(()); // cancelled: the caller no longer waits for this answer
        };
        let response = ResponseFrame {
            id: responder.id,
            result,
        };
        match conn
            .outbox
            .send_response_after(&response, conn.max_frame_bytes, latency)
        {
            // Not sent: the request is still running until the answer leaves plainly (the
            // entries are kept sorted by id, so it goes back where it was).
            Ok(false) => {
                requests.running.insert(responder.id, running);
                Err(response.result)
            }
            sent => {
                drop(requests);
                answer_failed(conn, responder.id, sent.map(drop));
                Ok(())
            }
        }
    }

    /// Whether the caller still waits for this request's answer (not cancelled, connection
    /// open).
    pub(crate) fn is_wanted(&self, responder: &Responder) -> bool {
        let conn = &responder.conn;
        !conn.outbox.is_closed() && lock(&conn.requests).running.contains(responder.id)
    }

    /// Ends a request whose answer the network loses: it no longer counts as in flight, and
    /// nothing is sent.
    pub(crate) fn drop_response(&self, responder: &Responder) {
        lock(&responder.conn.requests).running.remove(responder.id);
    }
}

/// After an answer to request `id` was sent (`sent`): one too large to send becomes an error
/// that says so.
fn answer_failed(conn: &ServerConn, id: u64, sent: Result<(), super::FrameError>) {
    if let Err(e) = sent {
        let fallback = Frame::Response(ResponseFrame {
            id,
            result: Err(Error::internal("response_too_large", e.to_string())),
        });
        let _ = conn.outbox.send(&fallback, conn.max_frame_bytes);
    }
}

impl<N: Network> Transport for TcpTransport<N> {
    fn listen(&self, addr: &str, inlet: Inlet) -> BoxFuture<'_, Result<String, ListenError>> {
        let addr = addr.to_string();
        Box::pin(async move {
            if self.inner.config.credential.is_none() {
                return Err(ListenError::NoCredential(addr));
            }
            let listener = N::bind(&addr).await.map_err(|source| ListenError::Bind {
                addr: addr.clone(),
                source,
            })?;
            let bound = N::local_addr(&listener).map_err(|source| ListenError::Bind {
                addr: addr.clone(),
                source,
            })?;
            let stop = CancellationToken::new();
            // Keyed by the bound address: two listens on port 0 get two ports.
            if lock(&self.inner.listeners).contains_key(&bound) {
                return Err(ListenError::AlreadyListening(bound));
            }
            lock(&self.inner.listeners).insert(bound.clone(), stop.clone());
            crate::framework::task::spawn(accept_loop(self.clone(), listener, inlet, stop));
            Ok(bound)
        })
    }

    fn stop_listening(&self, addr: &str) -> bool {
        match lock(&self.inner.listeners).remove(addr) {
            Some(stop) => {
                stop.cancel();
                true
            }
            None => false,
        }
    }

    fn respond(&self, responder: &Responder, result: Result<Bytes, Error>) {
        let conn = &responder.conn;
        if lock(&conn.requests).running.remove(responder.id).is_none() {
            return; // cancelled: the caller no longer waits for this answer
        }
        let frame = Frame::Response(ResponseFrame {
            id: responder.id,
            result,
        });
        let sent = conn.outbox.send(&frame, conn.max_frame_bytes);
        answer_failed(conn, responder.id, sent);
    }

    fn send(
        &self,
        addr: &str,
        request: RequestFrame,
        deadline: Option<Instant>,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Result<Bytes, SendError>> {
        let (transport, addr) = (self.clone(), addr.to_string());
        crate::framework::task::boxed(move || transport.send_inner(addr, request, deadline, cancel))
    }

    fn ready(&self) -> BoxFuture<'static, ()> {
        // TCP needs no broker or handshake before the first send: ready at once.
        Box::pin(std::future::ready(()))
    }

    fn elapsed(&self) -> Duration {
        self.now()
    }

    fn credential(&self) -> Option<&Credential> {
        self.inner.config.credential.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn responder(peer: &str, id: u64) -> Responder {
        let conn = Arc::new(ServerConn {
            outbox: Outbox::new(Box::new(tokio::io::sink()), false),
            peer_name: peer.into(),
            requests: Mutex::default(),
            max_frame_bytes: 1024,
            peer_resolved: std::sync::OnceLock::new(),
        });
        Responder { conn, id }
    }

    #[test]
    fn a_connection_resolves_its_callers_name_once_for_all_its_answers() {
        // Goal: what a wrapping transport makes of the caller's name is made at the first
        // answer and reused by every later answer on the connection; another connection makes
        // its own, and a value of another type is made afresh, never mistaken for the kept one.
        let first = responder("svc.a[0]", 1);
        let second = Responder {
            conn: first.conn.clone(),
            id: 2,
        };
        let made = Cell::new(0);
        let resolve = |name: &str| {
            made.set(made.get() + 1);
            format!("party of {name}")
        };
        assert_eq!(first.peer_resolved(resolve), "party of svc.a[0]");
        assert_eq!(second.peer_resolved(resolve), "party of svc.a[0]");
        assert_eq!(made.get(), 1, "resolved once for the connection");
        assert_eq!(second.peer_resolved(|name: &str| name.len()), 8);
        assert_eq!(second.peer_resolved(|name: &str| name.len()), 8);
        assert_eq!(first.peer_resolved(resolve), "party of svc.a[0]");
        assert_eq!(made.get(), 1);
        let other = responder("svc.b[1]", 1);
        assert_eq!(other.peer_resolved(resolve), "party of svc.b[1]");
        assert_eq!(made.get(), 2);
    }
}
