//! The two networks a transport can run on: turmoil's simulated TCP and tokio's real TCP.
//!
//! Both expose the same four operations (bind, accept, connect, split) and a clock, so the
//! transport above them is written once. Inside turmoil the clock is the simulation's; on the
//! real network it is the process's monotonic clock (the only place real time is read).

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

/// A TCP-like network.
pub trait Network: Send + Sync + 'static {
    /// A connected stream.
    type Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static;
    /// The read half of a stream.
    type ReadHalf: AsyncRead + Send + Unpin + 'static;
    /// The write half of a stream.
    type WriteHalf: AsyncWrite + Send + Unpin + 'static;
    /// A bound listener.
    type Listener: Send + Sync + 'static;

    /// Binds a listener to `addr` (`host:port`).
    fn bind(addr: &str) -> impl Future<Output = io::Result<Self::Listener>> + Send;
    /// The address a listener is bound to (with the real port when 0 was asked for).
    fn local_addr(listener: &Self::Listener) -> io::Result<String>;
    /// Accepts one connection; returns the stream and the peer's address.
    fn accept(
        listener: &Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Stream, String)>> + Send;
    /// Connects to `addr` (`host:port`).
    fn connect(addr: &str) -> impl Future<Output = io::Result<Self::Stream>> + Send;
    /// Splits a stream into halves that can be used from two tasks.
    fn split(stream: Self::Stream) -> (Self::ReadHalf, Self::WriteHalf);
    /// Whether both ends of `stream` are on one host (false unless the network says so).
    fn is_loopback(_stream: &Self::Stream) -> bool {
        false
    }
    /// Time since the start of the run: simulated inside turmoil, monotonic outside.
    fn elapsed() -> Duration;
}

/// turmoil's simulated TCP. Every call must run on a turmoil host.
#[derive(Debug, Default, Clone, Copy)]
pub struct Turmoil;

impl Network for Turmoil {
    type Stream = turmoil::net::TcpStream;
    type ReadHalf = turmoil::net::tcp::OwnedReadHalf;
    type WriteHalf = turmoil::net::tcp::OwnedWriteHalf;
    type Listener = turmoil::net::TcpListener;

    async fn bind(addr: &str) -> io::Result<Self::Listener> {
        turmoil::net::TcpListener::bind(addr.to_string()).await
    }

    fn local_addr(listener: &Self::Listener) -> io::Result<String> {
        Ok(listener.local_addr()?.to_string())
    }

    async fn accept(listener: &Self::Listener) -> io::Result<(Self::Stream, String)> {
        let (s, peer) = listener.accept().await?;
        Ok((s, peer.to_string()))
    }

    async fn connect(addr: &str) -> io::Result<Self::Stream> {
        turmoil::net::TcpStream::connect(addr.to_string()).await
    }

    fn split(stream: Self::Stream) -> (Self::ReadHalf, Self::WriteHalf) {
        stream.into_split()
    }

    /// turmoil carries a message between two ends on one host itself, a tick later, without
    /// a latency of its own (`set_next_message_latency` applies to links between hosts).
    fn is_loopback(stream: &Self::Stream) -> bool {
        match (stream.local_addr(), stream.peer_addr()) {
            (Ok(local), Ok(peer)) => local.ip() == peer.ip(),
            _ => false,
        }
    }

    fn elapsed() -> Duration {
        turmoil::sim_elapsed().unwrap_or_default()
    }
}

/// tokio's real TCP.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tokio;

static REAL_START: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();

impl Network for Tokio {
    type Stream = tokio::net::TcpStream;
    type ReadHalf = tokio::net::tcp::OwnedReadHalf;
    type WriteHalf = tokio::net::tcp::OwnedWriteHalf;
    type Listener = tokio::net::TcpListener;

    async fn bind(addr: &str) -> io::Result<Self::Listener> {
        tokio::net::TcpListener::bind(addr).await
    }

    fn local_addr(listener: &Self::Listener) -> io::Result<String> {
        Ok(listener.local_addr()?.to_string())
    }

    async fn accept(listener: &Self::Listener) -> io::Result<(Self::Stream, String)> {
        let (s, peer) = listener.accept().await?;
        s.set_nodelay(true)?;
        Ok((s, peer.to_string()))
    }

    async fn connect(addr: &str) -> io::Result<Self::Stream> {
        let s = tokio::net::TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(s)
    }

    fn split(stream: Self::Stream) -> (Self::ReadHalf, Self::WriteHalf) {
        stream.into_split()
    }

    fn elapsed() -> Duration {
        // Real network only: tokio's clock is the process's monotonic clock here.
        REAL_START.get_or_init(tokio::time::Instant::now).elapsed()
    }
}
