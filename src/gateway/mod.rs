//! The gateway: the talk's "HTTP API & routing layer", where HTTP becomes RPC.
//!
//! Each edge request is handled in one fixed order: start a trace and a deadline, authenticate
//! (with the configured authenticator), resolve the route, read the body under a limit, merge it with the path
//! parameters, and make the route's RPC with a context that carries the deadline, the trace and
//! the user. Whatever fails along the way answers a JSON error whose status follows the error's
//! kind ([`errors`]); every answer carries `X-Request-Id` and `X-Trace-Id`. The gateway is
//! generic over the network: [`serve_connection`] takes any tokio-style byte stream.
//!
//! - [`routes`]: the route table. [`auth`]: bearer tokens. [`body`]: the request body.
//! - [`errors`]: typed failures and their statuses. [`http`]: hyper, connections, accept loop.

pub mod auth;
pub mod body;
pub mod errors;
pub mod http;
pub mod routes;

use std::time::Duration;

use ::http::header::{HeaderName, HeaderValue, ALLOW, CONTENT_TYPE};
use ::http::{HeaderMap, Request, Response, StatusCode};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Body;

use crate::framework::ids::{IdGen, RequestId, TraceId};
use crate::framework::{Client, Context};

pub use self::http::{serve, serve_connection};
pub use errors::{status_for, GatewayError};
pub use routes::{Resolution, Route, RouteError, Routes};

/// The header carrying the id the gateway gave a request.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The header carrying the trace id of a request.
pub const TRACE_ID: HeaderName = HeaderName::from_static("x-trace-id");

/// The header a client sets to ask for a shorter (or, up to the cap, longer) deadline.
pub const DEADLINE_MS: HeaderName = HeaderName::from_static("x-deadline-ms");

/// How a gateway is set up; [`GatewayConfig::new`] gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Root seed of the request-id stream.
    pub seed: u64,
    /// The gateway's name: names its id stream.
    pub name: String,
    /// The service that checks bearer tokens before any routing (it answers the framework's
    /// [`crate::framework::identity::CHECK`]); `None` lets every request through
    /// unauthenticated. No default: [`GatewayConfig::new`] makes the caller say which.
    pub auth_service: Option<String>,
    /// The largest body accepted. Default 1 MiB.
    pub max_body_bytes: usize,
    /// A request's deadline when it asks for none. Default 5 s.
    pub deadline_default: Duration,
    /// The most a request may ask for with `X-Deadline-Ms`; more is cut to this. Default 30 s.
    pub deadline_max: Duration,
    /// How long a client may take to send a request's headers. Default 10 s.
    pub header_read_timeout: Duration,
    /// Connections [`serve`] handles at once. Default 1024.
    pub max_connections: usize,
}

impl GatewayConfig {
    /// A config named `name` whose bearer tokens `auth_service` checks (`None`: nobody does, and
    /// every request goes through unauthenticated), with the defaults above.
    pub fn new(name: &str, auth_service: Option<&str>) -> GatewayConfig {
        GatewayConfig {
            seed: 0,
            name: name.to_string(),
            auth_service: auth_service.map(str::to_string),
            max_body_bytes: 1 << 20,
            deadline_default: Duration::from_secs(5),
            deadline_max: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes == 0 {
            return Err(ConfigError::ZeroBodyLimit);
        }
        if self.max_connections == 0 {
            return Err(ConfigError::ZeroConnections);
        }
        if self.deadline_default.is_zero() || self.deadline_default > self.deadline_max {
            return Err(ConfigError::DeadlineOutOfRange {
                default: self.deadline_default,
                max: self.deadline_max,
            });
        }
        Ok(())
    }
}

/// Why a gateway config was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `max_body_bytes` is zero.
    #[error("max_body_bytes must be above zero")]
    ZeroBodyLimit,
    /// `max_connections` is zero.
    #[error("max_connections must be above zero")]
    ZeroConnections,
    /// The default deadline is zero or above the cap.
    #[error("deadline_default {default:?} must be above zero and at most deadline_max {max:?}")]
    DeadlineOutOfRange {
        /// The default asked for.
        default: Duration,
        /// The cap.
        max: Duration,
    },
}

/// Turns HTTP requests into RPCs over a route table.
#[derive(Debug)]
pub struct Gateway {
    config: GatewayConfig,
    routes: Routes,
    client: Client,
    ids: IdGen,
}

/// What the gateway answers: a whole JSON body.
pub type HttpResponse = Response<Full<Bytes>>;

impl Gateway {
    /// A gateway serving `routes` through `client`.
    pub fn new(
        config: GatewayConfig,
        routes: Routes,
        client: Client,
    ) -> Result<Gateway, ConfigError> {
        config.validate()?;
        let ids = IdGen::new(config.seed, &format!("{}/request-ids", config.name));
        Ok(Gateway {
            config,
            routes,
            client,
            ids,
        })
    }

    /// The config.
    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// The route table.
    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    /// Answers one HTTP request; never fails: every failure is a JSON error response.
    pub async fn handle<B>(&self, req: Request<B>) -> HttpResponse
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let request_id = self.ids.request_id();
        let trace_id = self.client.new_trace();
        let mut resp = match self.respond(req, trace_id).await {
            Ok(resp) => resp,
            Err(e) => {
                log_failure(&e, request_id, trace_id);
                error_response(&e)
            }
        };
        set_header(&mut resp, REQUEST_ID, &request_id.to_string());
        set_header(&mut resp, TRACE_ID, &trace_id.to_string());
        resp
    }

    async fn respond<B>(
        &self,
        req: Request<B>,
        trace_id: TraceId,
    ) -> Result<HttpResponse, GatewayError>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let deadline = self.deadline(&parts.headers)?;
        let ctx = Context::background()
            .with_trace(trace_id)
            .with_timeout(deadline);
        let ctx = match &self.config.auth_service {
            Some(auth_service) => {
                let token = auth::bearer_token(&parts.headers)?;
                let identity = auth::check(&self.client, &ctx, auth_service, token).await?;
                let signer = self.client.credential().ok_or(GatewayError::NoCredential)?;
                ctx.with_identity(&identity, signer)
            }
            None => ctx,
        };
        let (route, params) = match self.routes.resolve(&parts.method, parts.uri.path()) {
            Resolution::Found { route, params } => (route, params),
            Resolution::MethodNotAllowed(allow) => {
                return Err(GatewayError::MethodNotAllowed {
                    method: parts.method,
                    allow,
                })
            }
            Resolution::NotFound => {
                return Err(GatewayError::NoRoute {
                    path: parts.uri.path().to_string(),
                })
            }
        };
        let read = body::read_limited(body, &parts.headers, self.config.max_body_bytes);
        // A client trickling its body must not hold a connection past the request's deadline.
        let raw = match ctx.deadline() {
            Some(at) => crate::framework::timer::timeout_at(at, read)
                .await
                .map_err(|_| GatewayError::BodyTimeout)??,
            None => read.await?,
        };
        let rpc_body = body::rpc_body(&raw, &params)?;
        let call = route.call().bytes(rpc_body);
        let reply = self.client.send(&ctx, call).await?;
        Ok(json_response(route.status(), reply.body))
    }

    /// The request's deadline: `X-Deadline-Ms` cut to the cap, or the default.
    fn deadline(&self, headers: &HeaderMap) -> Result<Duration, GatewayError> {
        let Some(value) = headers.get(DEADLINE_MS) else {
            return Ok(self.config.deadline_default);
        };
        let ms: u64 = value
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .filter(|ms| *ms > 0)
            .ok_or(GatewayError::InvalidDeadline)?;
        Ok(Duration::from_millis(ms).min(self.config.deadline_max))
    }
}

/// Server-side failures are worth a warning; the client's own mistakes only a debug line.
fn log_failure(e: &GatewayError, request_id: RequestId, trace_id: TraceId) {
    if e.status().is_server_error() {
        tracing::warn!(%request_id, %trace_id, error = %e, "gateway request failed");
    } else {
        tracing::debug!(%request_id, %trace_id, error = %e, "gateway request refused");
    }
}

/// A JSON response with `status`.
fn json_response(status: StatusCode, body: Bytes) -> HttpResponse {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The JSON error response for `e`, with `Allow` on a 405.
fn error_response(e: &GatewayError) -> HttpResponse {
    let mut resp = json_response(e.status(), Bytes::from(e.body()));
    if let GatewayError::MethodNotAllowed { allow, .. } = e {
        let methods: Vec<&str> = allow.iter().map(|m| m.as_str()).collect();
        set_header(&mut resp, ALLOW, &methods.join(", "));
    }
    resp
}

fn set_header(resp: &mut HttpResponse, name: HeaderName, value: &str) {
    // Ids are hex and methods are tokens: always valid header values.
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}
