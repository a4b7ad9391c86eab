//! The `intruder` fault: a host that knows where every service port is but not the deployment's
//! key, and tries to be served anyway.
//!
//! Each attempt opens a connection to an instance of the target (its instances by turns) and
//! sends a request that claims a user and a calling service, by turns without a handshake and
//! after a handshake it cannot complete (a hello, then a proof it had to guess, then frames
//! regardless). An attempt counts as served when any answer frame comes back. The verdict
//! [`served`] must say 0: what an intruder sends is never read as a request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::FramedRead;

use crate::framework::identity::{META_SCOPES, META_USER, META_USER_SIG};
use crate::framework::transport::frame::{encode_frame, FrameCodec, DEFAULT_MAX_FRAME_BYTES};
use crate::framework::transport::{Frame, Headers, RequestFrame};
use crate::scenario::{Fault, FaultKind};
use crate::sim::world::Placement;
use crate::system::{Clock, Invariant};

/// The intruder's turmoil host.
pub const HOST: &str = "intruder";
/// Connections the intruder has waiting to be accepted, at most.
const MAX_CONNECTING: usize = 32;
/// How long an attempt waits for an answer before it counts as refused.
const PATIENCE: Duration = Duration::from_secs(1);

/// What the intruder tried and what it got.
#[derive(Debug, Default)]
pub struct Tally {
    /// Attempts made.
    pub attempts: AtomicU64,
    /// Attempts that got an answer frame back.
    pub served: AtomicU64,
}

/// The verdict `intruder_requests_served`: none of the intruder's attempts may be answered.
pub fn served(tally: &Tally) -> Invariant {
    let attempts = tally.attempts.load(Ordering::Relaxed);
    let served = tally.served.load(Ordering::Relaxed);
    let detail = if served == 0 {
        format!("none of {attempts} requests from a host without the deployment key was served")
    } else {
        format!(
            "{served} of {attempts} requests from a host without the deployment key were served"
        )
    };
    Invariant::new(
        "intruder_requests_served",
        served == 0,
        detail,
        &[
            ("intruder_requests_served", served as i64),
            ("intruder_attempts", attempts as i64),
        ],
    )
}

/// Whether the scenario has an intruder at all.
pub fn present(faults: &[Fault]) -> bool {
    faults
        .iter()
        .any(|f| matches!(f.kind, FaultKind::Intruder { .. }))
}

/// The intruder's life: every intruder fault at once, each over its window at its rate.
pub async fn run(
    faults: Vec<Fault>,
    placements: Vec<Placement>,
    run: Duration,
    tally: Arc<Tally>,
) -> turmoil::Result {
    // turmoil holds at most 64 connections waiting to be accepted per listener (and panics
    // beyond): the intruder keeps fewer than that connecting at once, whatever its rate and
    // the tick.
    let connecting = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTING));
    let mut windows = Vec::new();
    for fault in faults {
        let FaultKind::Intruder { target, rate } = &fault.kind else {
            continue;
        };
        let Some(interval) = rate.mean_interval() else {
            continue;
        };
        let targets: Vec<Placement> = placements
            .iter()
            .filter(|p| p.party().is(target))
            .cloned()
            .collect();
        let (start, end) = (fault.at, fault.end(run));
        let (tally, connecting) = (tally.clone(), connecting.clone());
        windows.push(tokio::task::spawn_local(async move {
            let clock = Clock::current();
            let mut attempts = tokio::task::JoinSet::new();
            let mut at = start;
            let mut n = 0usize;
            while at < end && !targets.is_empty() {
                crate::framework::timer::idle_until(clock.at(at)).await;
                while attempts.try_join_next().is_some() {}
                let victim = &targets[n % targets.len()];
                tally.attempts.fetch_add(1, Ordering::Relaxed);
                attempts.spawn_local(attempt(
                    victim.addr(),
                    victim.service.clone(),
                    n % 2 == 1,
                    tally.clone(),
                    connecting.clone(),
                ));
                n += 1;
                at = at.saturating_add(interval);
            }
            // Each attempt ends within its patience (twice: to be heard, then answered).
            attempts.join_all().await;
        }));
    }
    for window in windows {
        let _ = window.await;
    }
    // Done: the host ends, so a run whose loads are over is not held open for the intruder.
    Ok(())
}

/// One attempt on `addr`; counts it as served if an answer comes back.
async fn attempt(
    addr: String,
    service: String,
    handshake: bool,
    tally: Arc<Tally>,
    connecting: Arc<tokio::sync::Semaphore>,
) {
    let Ok(permit) = connecting.acquire_owned().await else {
        return;
    };
    let connected = turmoil::net::TcpStream::connect(addr).await;
    drop(permit);
    let Ok(mut stream) = connected else {
        return;
    };
    let Ok(request) = forged(&service) else {
        return;
    };
    let tried = async {
        if handshake {
            // A hello that claims to be a service, then a guessed proof.
            let mut hello = b"WTA1".to_vec();
            hello.extend_from_slice(&[0x5a; 16]);
            let name = b"service.card-processing";
            hello.push(name.len() as u8);
            hello.extend_from_slice(name);
            stream.write_all(&hello).await?;
            let mut challenge = [0u8; 52];
            stream.read_exact(&mut challenge).await?;
            stream.write_all(&[0u8; 32]).await?;
        }
        stream.write_all(&request).await
    };
    if !matches!(
        crate::framework::timer::timeout(PATIENCE, tried).await,
        Ok(Ok(()))
    ) {
        return;
    }
    let mut frames = FramedRead::new(stream, FrameCodec::new(DEFAULT_MAX_FRAME_BYTES));
    if let Ok(Some(Ok(Frame::Response(_)))) =
        crate::framework::timer::timeout(PATIENCE, frames.next()).await
    {
        tally.served.fetch_add(1, Ordering::Relaxed);
    }
}

/// A request to `service` that claims an admin user and another service as its caller.
fn forged(service: &str) -> Result<Bytes, crate::framework::transport::FrameError> {
    let mut headers = Headers {
        origin_service: Some("service.card-processing".into()),
        ..Headers::default()
    };
    headers.meta.insert(META_USER.into(), "alice".into());
    headers
        .meta
        .insert(META_SCOPES.into(), "accounts cards admin".into());
    headers.meta.insert(META_USER_SIG.into(), "00".repeat(32));
    let frame = Frame::Request(RequestFrame {
        id: 1,
        service: service.into(),
        endpoint: "read".into(),
        headers,
        body: Bytes::from_static(b"{}"),
    });
    let mut buf = BytesMut::new();
    encode_frame(&frame, &mut buf, DEFAULT_MAX_FRAME_BYTES)?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_breaks_on_a_single_served_request() {
        let tally = Tally::default();
        tally.attempts.store(10, Ordering::Relaxed);
        assert!(served(&tally).holds);
        tally.served.store(1, Ordering::Relaxed);
        let verdict = served(&tally);
        assert!(!verdict.holds);
        assert_eq!(
            verdict.detail,
            "1 of 10 requests from a host without the deployment key were served"
        );
    }
}
