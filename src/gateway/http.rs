//! HTTP/1.1 at the edge (hyper 1.x), over any byte stream.
//!
//! [`serve_connection`] takes anything that reads and writes like a tokio stream, so the same
//! gateway serves tokio's TCP on a real network and turmoil's inside the simulation; [`serve`]
//! is the accept loop for tokio's listener. One connection's failure (a reset, a malformed
//! request hyper refuses, a slow client timing out) is logged and ends that connection only.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};

use crate::lock::lock;

use crate::gateway::Gateway;

/// How long to wait before accepting again after `accept` failed (e.g. out of descriptors),
/// so a persistent failure does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves HTTP/1.1 requests on `io` until the client closes it or it fails.
pub async fn serve_connection<IO>(io: IO, gateway: Arc<Gateway>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    serve_until_evicted(io, gateway, &Notify::new()).await;
}

/// Serves `io` as [`serve_connection`] does; once `evict` is notified the connection closes as
/// soon as no request is in progress on it (at once if it is idle).
async fn serve_until_evicted<IO>(io: IO, gateway: Arc<Gateway>, evict: &Notify)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = gateway.config().header_read_timeout;
    let service = service_fn(move |req: Request<Incoming>| {
        let gateway = gateway.clone();
        async move { Ok::<_, Infallible>(gateway.handle(req).await) }
    });
    let builder = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        // A client may shut down its sending side once its request is written and then wait
        // for the answer (`nc -N`, some proxies): that end of input is not the end of the
        // exchange.
        .half_close(true)
        .to_owned();
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = evict.notified() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "gateway connection ended with an error");
    }
}

/// The connections being served, oldest first, each with the signal that evicts it.
#[derive(Default)]
struct Open {
    next: u64,
    by_age: BTreeMap<u64, Arc<Notify>>,
}

/// Accepts connections on `listener` forever, each served in its own task. At most the
/// gateway's `max_connections` are served at once. When all are taken, a new connection evicts
/// the oldest: it closes at once if idle, or once its request in progress is answered. So
/// clients that open connections and leave them idle cannot keep others out; they only lose
/// their own idle connections.
pub async fn serve(listener: TcpListener, gateway: Arc<Gateway>) {
    let slots = Arc::new(Semaphore::new(gateway.config().max_connections));
    let open: Arc<Mutex<Open>> = Arc::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "gateway accept failed");
                crate::framework::timer::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if slots.available_permits() == 0 {
            if let Some((_, oldest)) = lock(&open).by_age.pop_first() {
                oldest.notify_one();
            }
        }
        let Ok(permit) = slots.clone().acquire_owned().await else {
            // The semaphore is never closed; were it, serving could not go on.
            tracing::error!("gateway connection limit closed: accept loop ends");
            return;
        };
        tracing::trace!(%peer, "gateway connection accepted");
        let evict = Arc::new(Notify::new());
        let id = {
            let mut open = lock(&open);
            let id = open.next;
            open.next += 1;
            open.by_age.insert(id, evict.clone());
            id
        };
        let (gateway, open) = (gateway.clone(), open.clone());
        crate::framework::task::spawn(async move {
            serve_until_evicted(stream, gateway, &evict).await;
            lock(&open).by_age.remove(&id);
            drop(permit);
        });
    }
}
