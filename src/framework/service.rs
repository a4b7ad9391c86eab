//! Endpoints: a name, a typed request, a typed response and an async handler (slides 72-75).
//!
//! The handler is written against serde types; the endpoint erases them to bytes so a server can
//! hold endpoints of every type in one table. A body that does not decode is the caller's
//! mistake (`bad_request.invalid_body`); a response that does not encode is the service's
//! (`internal.encode`).

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::framework::context::Context;
use crate::framework::error::Error;
use crate::framework::transport::BoxFuture;

type ErasedHandler =
    dyn Fn(Context, Bytes) -> BoxFuture<'static, Result<Bytes, Error>> + Send + Sync;

/// Who may call an endpoint: calling services and the user's scopes, carried from the gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// Services allowed to call; empty: any service.
    pub services: Vec<String>,
    /// A scope the user must hold (metadata `scopes`, space-separated); `None`: no scope needed.
    pub scope: Option<String>,
    /// Whether the request must act for a user the gateway authenticated (implied by `scope`).
    pub user: bool,
}

impl Access {
    /// Whether a call from `origin` (the calling service, if known) for `user` holding `scopes`
    /// may go on; the error says who was refused and why. The user and scopes are the ones the
    /// server verified as the request arrived.
    pub fn check(
        &self,
        origin: Option<&str>,
        user: Option<&str>,
        scopes: Option<&str>,
    ) -> Result<(), Error> {
        if !self.services.is_empty()
            && !origin.is_some_and(|o| self.services.iter().any(|s| s == o))
        {
            return Err(Error::of(
                crate::framework::ErrorKind::Forbidden,
                "caller",
                format!(
                    "{} may not call this endpoint",
                    origin.unwrap_or("an unknown caller")
                ),
            )
            .with_param("allowed", self.services.join(" ")));
        }
        if (self.user || self.scope.is_some()) && user.is_none() {
            return Err(Error::of(
                crate::framework::ErrorKind::Unauthorized,
                "no_user",
                "this endpoint acts for a user, and the request carries no authenticated user",
            ));
        }
        if let Some(scope) = &self.scope {
            if !scopes.is_some_and(|held| held.split(' ').any(|s| s == scope)) {
                return Err(Error::of(
                    crate::framework::ErrorKind::Forbidden,
                    "scope",
                    format!("this endpoint needs the scope {scope}"),
                )
                .with_param("scope", scope.clone()));
            }
        }
        Ok(())
    }
}

/// A named operation of a service.
#[derive(Clone)]
pub struct Endpoint {
    name: Arc<str>,
    request_type: &'static str,
    response_type: &'static str,
    handler: Arc<ErasedHandler>,
    access: Access,
    idempotent: bool,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("request", &self.request_type)
            .field("response", &self.response_type)
            .finish()
    }
}

impl Endpoint {
    /// An endpoint whose handler takes and returns serde types (JSON on the wire).
    pub fn new<Req, Resp, F, Fut>(name: &str, handler: F) -> Endpoint
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
        F: Fn(Context, Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, Error>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased = move |ctx: Context, body: Bytes| -> BoxFuture<'static, Result<Bytes, Error>> {
            let handler = handler.clone();
            crate::framework::task::boxed(move || async move {
                let req: Req = serde_json::from_slice(&body)
                    .map_err(|e| Error::bad_request("invalid_body", e.to_string()))?;
                let resp = handler(ctx, req).await?;
                serde_json::to_vec(&resp)
                    .map(Bytes::from)
                    .map_err(|e| Error::internal("encode", e.to_string()))
            })
        };
        Endpoint {
            name: name.into(),
            request_type: std::any::type_name::<Req>(),
            response_type: std::any::type_name::<Resp>(),
            handler: Arc::new(erased),
            access: Access::default(),
            idempotent: false,
        }
    }

    /// An endpoint whose handler works on raw bytes (synthetic services, proxies).
    pub fn raw<F, Fut>(name: &str, handler: F) -> Endpoint
    where
        F: Fn(Context, Bytes) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Bytes, Error>> + Send + 'static,
    {
        Endpoint {
            name: name.into(),
            request_type: "bytes",
            response_type: "bytes",
            handler: Arc::new(move |ctx, body| {
                crate::framework::task::boxed(|| handler(ctx, body)) as BoxFuture<'static, _>
            }),
            access: Access::default(),
            idempotent: false,
        }
    }

    /// Only these services may call it (others get `forbidden.caller`).
    pub fn allow_services(mut self, services: &[&str]) -> Endpoint {
        self.access.services = services.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Only users holding `scope` may call it (others get `forbidden.scope`).
    pub fn require_scope(mut self, scope: &str) -> Endpoint {
        self.access.scope = Some(scope.to_string());
        self
    }

    /// Only requests acting for a user the gateway authenticated may call it (others get
    /// `unauthorized.no_user`); [`Endpoint::require_scope`] implies it.
    pub fn require_user(mut self) -> Endpoint {
        self.access.user = true;
        self
    }

    /// Marks it safe to call twice with the same request: callers with a retry policy for
    /// this service may retry it (see [`crate::framework::retry`]).
    pub fn idempotent(mut self) -> Endpoint {
        self.idempotent = true;
        self
    }

    /// Whether it is marked safe to call twice.
    pub fn is_idempotent(&self) -> bool {
        self.idempotent
    }

    /// Who may call it.
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// The endpoint's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Rust type name of the request.
    pub fn request_type(&self) -> &'static str {
        self.request_type
    }

    /// The Rust type name of the response.
    pub fn response_type(&self) -> &'static str {
        self.response_type
    }

    /// Runs the handler on a serialized body.
    pub fn invoke(&self, ctx: Context, body: Bytes) -> BoxFuture<'static, Result<Bytes, Error>> {
        (self.handler)(ctx, body)
    }
}
