//! HTTP/1.1 at the edge (hyper 1.x), over any byte stream.
//!
//! [`serve_connection`] takes anything that reads and writes like a tokio stream, so the same
//! gateway serves tokio's TCP on a real network and turmoil's inside the simulation; [`serve`]
//! is the accept loop for tokio's listener. One connection's failure (a reset, a malformed
//! request hyper refuses, a slow client timing out) is logged and ends that connection only.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::gateway::Gateway;

/// How long to wait before accepting again after `accept` failed (e.g. out of descriptors),
/// so a persistent failure does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves HTTP/1.1 requests on `io` until the client closes it or it fails.
pub async fn serve_connection<IO>(io: IO, gateway: Arc<Gateway>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = gateway.config().header_read_timeout;
    let service = service_fn(move |req: Request<Incoming>| {
        let gateway = gateway.clone();
        async move { Ok::<_, Infallible>(gateway.handle(req).await) }
    });
    let result = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        // A client may shut down its sending side once its request is written and then wait
        // for the answer (`nc -N`, some proxies): that end of input is not the end of the
        // exchange.
        .half_close(true)
        .serve_connection(TokioIo::new(io), service)
        .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "gateway connection ended with an error");
    }
}

/// Accepts connections on `listener` forever, each served in its own task. At most the
/// gateway's `max_connections` are served at once; more wait in the listen backlog.
pub async fn serve(listener: TcpListener, gateway: Arc<Gateway>) {
    let slots = Arc::new(Semaphore::new(gateway.config().max_connections));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            // The semaphore is never closed; were it, serving could not go on.
            tracing::error!("gateway connection limit closed: accept loop ends");
            return;
        };
        match listener.accept().await {
            Ok((stream, peer)) => {
                tracing::trace!(%peer, "gateway connection accepted");
                let gateway = gateway.clone();
                tokio::spawn(async move {
                    serve_connection(stream, gateway).await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "gateway accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}
