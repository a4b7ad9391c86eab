//! The load generators' HTTP client: requests to the gateway over turmoil's TCP, on a pool of
//! keep-alive HTTP/1.1 connections (one request at a time per connection, as HTTP/1.1 allows).
//!
//! A request that misses its deadline is dropped mid-flight; hyper then closes its connection,
//! which is never returned to the pool.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::lock::lock;
use crate::metrics::Outcome;

/// Connections to one gateway, reused between requests.
#[derive(Clone)]
pub struct HttpPool {
    addr: Arc<str>,
    idle: Arc<Mutex<Vec<SendRequest<Full<Bytes>>>>>,
}

impl HttpPool {
    /// A pool of connections to `addr` (`host:port`).
    pub fn new(addr: &str) -> HttpPool {
        HttpPool {
            addr: addr.into(),
            idle: Arc::default(),
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let stream = turmoil::net::TcpStream::connect(self.addr.to_string())
            .await
            .map_err(|e| e.to_string())?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        crate::framework::task::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    async fn sender(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        loop {
            let Some(mut s) = lock(&self.idle).pop() else {
                return self.connect().await;
            };
            if !s.is_closed() && s.ready().await.is_ok() {
                return Ok(s);
            }
        }
    }

    /// Sends one request and reads the whole answer. A 2xx is ok (with its body); anything
    /// else is the error code of the gateway's JSON error body, or `http_<status>` without one.
    pub async fn send(&self, request: Request<Full<Bytes>>) -> (Outcome, Option<Bytes>) {
        let lost = || {
            (
                Outcome::Error("unavailable.connection_lost".to_string()),
                None,
            )
        };
        let mut sender = match self.sender().await {
            Ok(s) => s,
            Err(_) => return (Outcome::Error("unavailable.unreachable".to_string()), None),
        };
        let response = match sender.send_request(request).await {
            Ok(r) => r,
            Err(_) => return lost(),
        };
        let status = response.status();
        let body = match response.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return lost(),
        };
        lock(&self.idle).push(sender);
        let outcome = outcome(status, &body);
        let body = (outcome == Outcome::Ok).then_some(body);
        (outcome, body)
    }
}

fn outcome(status: StatusCode, body: &[u8]) -> Outcome {
    if status.is_success() {
        return Outcome::Ok;
    }
    let code = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("code").and_then(|c| c.as_str()).map(str::to_string));
    Outcome::Error(code.unwrap_or_else(|| format!("http_{}", status.as_u16())))
}
