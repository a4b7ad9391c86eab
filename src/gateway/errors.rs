//! Why an edge request failed, and the HTTP status and JSON body that say so.
//!
//! Two sources: the gateway's own checks (no route, a body too large or not JSON) and the typed
//! [`Error`]s that come back over RPC. Both end as `{"code", "message", "params"}`; an RPC
//! error's status comes from its [`ErrorKind`] alone, so a service decides the class of its
//! failure and the gateway only translates it.

use std::collections::BTreeMap;

use http::{Method, StatusCode};
use serde::Serialize;

use crate::framework::{Error, ErrorKind};

/// An edge request that could not be answered with a success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// No `Authorization` header.
    #[error("no Authorization header")]
    MissingToken,
    /// An `Authorization` header that is not `Bearer <token>`.
    #[error("Authorization header is not 'Bearer <token>'")]
    MalformedToken,
    /// No route's pattern matches the path.
    #[error("no route for {path}")]
    NoRoute {
        /// The path asked for.
        path: String,
    },
    /// The path matches routes of other methods only.
    #[error("{method} is not allowed here")]
    MethodNotAllowed {
        /// The method used.
        method: Method,
        /// The methods that would work.
        allow: Vec<Method>,
    },
    /// The body is longer than the limit.
    #[error("body is over {limit_bytes} bytes")]
    BodyTooLarge {
        /// The limit.
        limit_bytes: usize,
    },
    /// The body did not arrive before the request's deadline.
    #[error("body did not arrive before the deadline")]
    BodyTimeout,
    /// The body could not be read off the connection.
    #[error("body could not be read: {0}")]
    BodyUnreadable(String),
    /// The body is not JSON.
    #[error("body is not valid JSON: {0}")]
    InvalidJson(String),
    /// The body is JSON but not an object.
    #[error("body must be a JSON object")]
    NotAnObject,
    /// The body sets a field to another value than the path parameter of the same name.
    #[error("body field {param:?} conflicts with the path parameter")]
    ParamConflict {
        /// The parameter's name.
        param: String,
    },
    /// `X-Deadline-Ms` is not a whole number of milliseconds above zero.
    #[error("X-Deadline-Ms must be a whole number of milliseconds above zero")]
    InvalidDeadline,
    /// The gateway's transport has no credential, so it cannot vouch for the user it
    /// authenticated (and could reach no service anyway).
    #[error("the gateway has no deployment key to sign identities with")]
    NoCredential,
    /// The RPC (to the auth service or the route's service) failed.
    #[error(transparent)]
    Rpc(#[from] Error),
}

/// The HTTP status of an RPC error of `kind`.
pub fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        // The edge caller did not cancel: something behind the gateway gave up.
        ErrorKind::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl GatewayError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::MissingToken | GatewayError::MalformedToken => StatusCode::UNAUTHORIZED,
            GatewayError::NoRoute { .. } => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            GatewayError::BodyUnreadable(_)
            | GatewayError::InvalidJson(_)
            | GatewayError::NotAnObject
            | GatewayError::ParamConflict { .. }
            | GatewayError::InvalidDeadline => StatusCode::BAD_REQUEST,
            GatewayError::NoCredential => StatusCode::INTERNAL_SERVER_ERROR,
            GatewayError::Rpc(e) => status_for(e.kind()),
        }
    }

    /// The typed error the JSON body carries: an RPC error as it came, the gateway's own
    /// under codes of the same shape.
    pub fn to_error(&self) -> Error {
        let msg = self.to_string();
        match self {
            GatewayError::MissingToken => Error::of(ErrorKind::Unauthorized, "missing_token", msg),
            GatewayError::MalformedToken => {
                Error::of(ErrorKind::Unauthorized, "malformed_token", msg)
            }
            GatewayError::NoRoute { path } => {
                Error::not_found("route", msg).with_param("path", path.clone())
            }
            GatewayError::MethodNotAllowed { method, .. } => {
                Error::bad_request("method_not_allowed", msg).with_param("method", method.as_str())
            }
            GatewayError::BodyTooLarge { limit_bytes } => Error::bad_request("body_too_large", msg)
                .with_param("limit_bytes", limit_bytes.to_string()),
            GatewayError::BodyTimeout => Error::timeout("body", msg),
            GatewayError::BodyUnreadable(_) => Error::bad_request("body_unreadable", msg),
            GatewayError::InvalidJson(_) => Error::bad_request("invalid_json", msg),
            GatewayError::NotAnObject => Error::bad_request("not_an_object", msg),
            GatewayError::ParamConflict { param } => {
                Error::bad_request("param_conflict", msg).with_param("param", param.clone())
            }
            GatewayError::InvalidDeadline => Error::bad_request("invalid_deadline", msg),
            GatewayError::NoCredential => Error::internal("no_credential", msg),
            GatewayError::Rpc(e) => e.clone(),
        }
    }

    /// The JSON error body: `{"code": .., "message": .., "params": {..}}`.
    pub fn body(&self) -> Vec<u8> {
        error_body(&self.to_error())
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
    params: &'a BTreeMap<String, String>,
}

/// `error` as the gateway's JSON error body.
pub fn error_body(error: &Error) -> Vec<u8> {
    let body = ErrorBody {
        code: error.code(),
        message: error.message(),
        params: error.params(),
    };
    // Strings and a string map always serialize; the fallback only keeps this total.
    serde_json::to_vec(&body).unwrap_or_else(|_| br#"{"code":"internal"}"#.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_errors_take_their_status_from_their_kind() {
        let cases = [
            ("bad_request.x", 400),
            ("unauthorized", 401),
            ("forbidden.scope", 403),
            ("not_found.account", 404),
            ("precondition_failed.exists", 412),
            ("rate_limited.queue_full", 429),
            ("internal.panic", 500),
            ("unavailable.unreachable", 503),
            ("timeout", 504),
            ("cancelled", 503),
            ("from_the_future.x", 500),
        ];
        for (code, status) in cases {
            let e = GatewayError::Rpc(Error::new(code, "m"));
            assert_eq!(e.status().as_u16(), status, "{code}");
        }
    }

    #[test]
    fn the_error_body_carries_code_message_and_params() {
        let e = GatewayError::ParamConflict { param: "id".into() };
        let v: serde_json::Value = serde_json::from_slice(&e.body()).expect("JSON");
        assert_eq!(v["code"], "bad_request.param_conflict");
        assert_eq!(v["params"]["param"], "id");
        assert!(v["message"].is_string());
    }
}
