//! How much memory hostile peers can make a server hold, on real TCP (loopback).
//!
//! Two attacks on one service port, each measured as the growth of this process's resident set
//! (VmRSS, Linux) from just before it to its peak while it lasts:
//! - **partial frames**: 100 connections each declare a 4 MiB frame and send all of it but one
//!   byte, then wait;
//! - **never reading**: one connection writes 20,000 small requests whose answers are 16 KiB
//!   each, and reads none of them.
//!
//! Both attackers hold the deployment's key (a service gone wrong, not a stranger: a stranger
//! never gets past the handshake).
//!
//! Usage: `cargo bench --bench memory`. Prints one line per attack with the growth in MB.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use windtunnel::framework::transport::frame::encode_frame;
use windtunnel::framework::transport::{
    Frame, Headers, RequestFrame, TcpTransport, Tokio, TransportConfig,
};
use windtunnel::framework::{Endpoint, Listen, NullSink, Server, ServiceConfig};

/// This process's resident set in bytes (0 where /proc is not there).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Samples the resident set every 50 ms for `span`; returns the peak.
async fn peak_over(span: Duration) -> u64 {
    let mut peak = rss();
    let end = tokio::time::Instant::now() + span;
    while tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
        peak = peak.max(rss());
    }
    peak
}

async fn start() -> Result<(Server, String), Box<dyn std::error::Error>> {
    let transport = Arc::new(TcpTransport::<Tokio>::new(TransportConfig {
        credential: Some(credential()),
        ..TransportConfig::default()
    }));
    let mut config = ServiceConfig::new("svc.target", "memory bench");
    config.instance = Some("svc.target[0]".into());
    let server = Server::with(config, Arc::new(NullSink), None);
    server.add_endpoints([Endpoint::raw("read", |_ctx, _body: Bytes| async move {
        Ok(Bytes::from(vec![b'x'; 16 * 1024]))
    })]);
    let addr = server.start(transport, &Listen::on("127.0.0.1:0")).await?;
    Ok((server, addr))
}

async fn partial_frames(addr: &str) -> Result<f64, Box<dyn std::error::Error>> {
    let before = rss();
    let declared: u32 = 4 * 1024 * 1024;
    let body = vec![0u8; declared as usize - 1];
    let mut held = Vec::new();
    for _ in 0..100 {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        credential()
            .client_handshake(&mut s, Duration::from_secs(5))
            .await?;
        s.write_all(&declared.to_be_bytes()).await?;
        // The server may refuse the frame and close: that is the defence, not an error here.
        let _ = tokio::time::timeout(Duration::from_millis(200), s.write_all(&body)).await;
        held.push(s);
    }
    let peak = peak_over(Duration::from_secs(2)).await;
    drop(held);
    Ok(peak.saturating_sub(before) as f64 / 1e6)
}

async fn never_reading(addr: &str) -> Result<f64, Box<dyn std::error::Error>> {
    let before = rss();
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    credential()
        .client_handshake(&mut s, Duration::from_secs(5))
        .await?;
    let mut buf = BytesMut::new();
    for id in 1..=20_000 {
        let request = Frame::Request(RequestFrame {
            id,
            service: "svc.target".into(),
            endpoint: "read".into(),
            headers: Headers::default(),
            body: Bytes::from_static(b"{}"),
        });
        encode_frame(&request, &mut buf, 1 << 20)?;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), s.write_all(&buf)).await;
    let peak = peak_over(Duration::from_secs(2)).await;
    drop(s);
    Ok(peak.saturating_sub(before) as f64 / 1e6)
}

/// The allocator `windtunnel` installs, so this measures what a run of the binary holds
/// (src/alloc.rs).
#[global_allocator]
static ALLOC: windtunnel::alloc::MallocAligned = windtunnel::alloc::MallocAligned;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (server, addr) = start().await?;
        let partial = partial_frames(&addr).await?;
        println!(
            "partial frames: 100 connections x 4 MiB declared, 1 byte short: RSS +{partial:.1} MB"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let unread = never_reading(&addr).await?;
        println!(
            "never reading: 20,000 requests for 16 KiB answers, none read: RSS +{unread:.1} MB"
        );
        server.stop().await;
        Ok(())
    })
}

/// The deployment's key: here a fixed one, held by the server and by both attackers.
fn credential() -> windtunnel::framework::Credential {
    windtunnel::framework::Credential::with_os_nonces(
        windtunnel::framework::DeploymentKey::from_seed(1),
        "bench",
    )
}
