//! How requests travel between services: the [`Transport`] trait (the talk's slide 79) and its
//! TCP implementation over either network.
//!
//! Layout: [`frame`] is the wire format shared by both networks; [`net`] is the network
//! abstraction (turmoil's simulated TCP or tokio's real TCP); [`tcp`] multiplexes requests over
//! one connection per peer and turns Cancel frames into dropped handlers; `by_id` keeps each
//! connection's calls and requests in flight by frame id.

mod by_id;
pub mod frame;
pub mod net;
pub mod tcp;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::framework::error::{Error, ErrorKind};
pub use frame::{Frame, FrameError, Headers, RequestFrame, ResponseFrame};
pub use net::{Network, Tokio, Turmoil};
pub use tcp::{CancelGate, Refusals, Responder, TcpTransport, TransportConfig};

/// A boxed, sendable future: what the dyn-compatible traits of this crate return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A request read off the wire, handed to the server that listens for it.
#[derive(Debug)]
pub struct Inbound {
    /// The request as it arrived.
    pub request: RequestFrame,
    /// Cancelled when the caller sends a Cancel frame or its connection drops.
    pub cancel: CancellationToken,
    /// Set before `cancel` fires when the cause was a Cancel frame (not a lost connection).
    pub cancelled_by_peer: Arc<AtomicBool>,
    /// Where the answer goes.
    pub responder: Responder,
    /// The caller's address (shared by the requests of one connection).
    pub peer: Arc<str>,
    /// When it arrived (time since the start of the run).
    pub received_at: Duration,
}

/// Where a listener hands each request it reads: the serving side of [`Transport::listen`].
///
/// The listener calls [`Inlet::deliver`] on the connection's reader task, so what it runs must
/// not wait: a server starts a task for the request and returns (no queue between the two, and
/// no task of its own in between). Once the inlet is closed the listener's connections close,
/// and a request still arriving is answered "stopping".
#[derive(Clone)]
pub struct Inlet {
    deliver: Arc<dyn Fn(Inbound) + Send + Sync>,
    closed: CancellationToken,
}

impl std::fmt::Debug for Inlet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inlet")
            .field("closed", &self.closed.is_cancelled())
            .finish()
    }
}

impl Inlet {
    /// An inlet that passes each request to `deliver` until `closed` is cancelled.
    pub fn new(
        deliver: impl Fn(Inbound) + Send + Sync + 'static,
        closed: CancellationToken,
    ) -> Inlet {
        Inlet {
            deliver: Arc::new(deliver),
            closed,
        }
    }

    /// Hands `inbound` to the server; false (and `inbound` dropped, unanswered) when the inlet
    /// is closed.
    pub fn deliver(&self, inbound: Inbound) -> bool {
        if self.closed.is_cancelled() {
            return false;
        }
        (self.deliver)(inbound);
        true
    }

    /// Resolves once the inlet is closed (the server stopped).
    pub async fn closed(&self) {
        self.closed.cancelled().await
    }
}

/// Why a send did not produce the callee's answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The callee answered with a typed error.
    #[error("{0}")]
    Remote(Error),
    /// No connection could be made: nothing was sent, so another instance may be tried.
    #[error("cannot connect to {addr}: {reason}")]
    Unreachable {
        /// The address tried.
        addr: String,
        /// What the network said.
        reason: String,
    },
    /// The connection failed after the request was written: it may have run.
    #[error("connection to {addr} lost")]
    ConnectionLost {
        /// The peer's address.
        addr: String,
    },
    /// The deadline passed first.
    #[error("deadline exceeded")]
    Timeout,
    /// The caller cancelled first.
    #[error("cancelled")]
    Cancelled,
    /// The request does not fit in a frame.
    #[error("{0}")]
    TooLarge(String),
}

impl SendError {
    /// The typed error a caller sees.
    pub fn into_error(self) -> Error {
        match self {
            SendError::Remote(e) => e,
            SendError::Unreachable { addr, reason } => {
                Error::unavailable("unreachable", reason).with_param("addr", addr)
            }
            SendError::ConnectionLost { addr } => {
                Error::unavailable("connection_lost", "connection lost").with_param("addr", addr)
            }
            SendError::Timeout => Error::timeout("", "deadline exceeded"),
            SendError::Cancelled => Error::cancelled("", "call cancelled by caller"),
            SendError::TooLarge(m) => Error::of(ErrorKind::BadRequest, "too_large", m),
        }
    }
}

/// Why a listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Binding the address failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Something already listens there through this transport.
    #[error("already listening on {0}")]
    AlreadyListening(String),
    /// The transport has no credential, so it would serve anyone: it does not listen.
    #[error("cannot listen on {0}: the transport has no credential (the deployment's key)")]
    NoCredential(String),
}

/// Moves requests and responses between services (the talk's `Transport` interface).
pub trait Transport: Send + Sync + 'static {
    /// Accepts connections on `addr`; each request read is handed to `inlet`. Returns the
    /// address actually bound (the real port when port 0 was asked for).
    fn listen(&self, addr: &str, inlet: Inlet) -> BoxFuture<'_, Result<String, ListenError>>;
    /// Stops accepting on `addr`, an address [`Transport::listen`] returned; returns whether it
    /// was listening. Open connections stay open until the listen's [`Inlet`] is closed.
    fn stop_listening(&self, addr: &str) -> bool;
    /// Answers a request. An answer to a request the caller already cancelled is dropped.
    fn respond(&self, responder: &Responder, result: Result<Bytes, Error>);
    /// Sends `request` to `addr` and waits for the answer, until `deadline` or until `cancel`
    /// fires. Giving up (or dropping the future) sends a Cancel frame. `cancel` may be the
    /// caller's own token (a call without client middleware shares it): wait on it, never
    /// cancel it.
    fn send(
        &self,
        addr: &str,
        request: RequestFrame,
        deadline: Option<Instant>,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Result<Bytes, SendError>>;
    /// Resolves once the transport can send and receive.
    fn ready(&self) -> BoxFuture<'static, ()>;
    /// Time since the start of the run, on this transport's clock.
    fn elapsed(&self) -> Duration;
    /// What this transport proves itself with, if anything: the gateway signs the identities
    /// it authenticates with it.
    fn credential(&self) -> Option<&crate::framework::trust::Credential> {
        None
    }
}
