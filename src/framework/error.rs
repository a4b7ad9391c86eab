//! Typed errors that cross the wire intact.
//!
//! An error is a dotted code (`bad_request.missing_param`), a message and string params, as in
//! mercury's `terrors`. The first segment of the code is its [`ErrorKind`]: callers branch on the
//! kind, the gateway maps it to an HTTP status, and the harness counts errors by code.

use std::collections::BTreeMap;
use std::fmt;

/// The top-level class of an error: the first segment of its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// The request was malformed or named something that does not exist.
    BadRequest,
    /// The caller is not authenticated.
    Unauthorized,
    /// The caller is authenticated but may not do this.
    Forbidden,
    /// The thing asked for does not exist.
    NotFound,
    /// A precondition of the request does not hold.
    PreconditionFailed,
    /// The callee is shedding load.
    RateLimited,
    /// The deadline passed before an answer came.
    Timeout,
    /// The callee could not be reached, or refused work.
    Unavailable,
    /// The callee failed.
    Internal,
    /// The caller gave up (its own caller went away, or a fanout was decided).
    Cancelled,
}

impl ErrorKind {
    /// Every kind, in code order.
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::BadRequest,
        ErrorKind::Unauthorized,
        ErrorKind::Forbidden,
        ErrorKind::NotFound,
        ErrorKind::PreconditionFailed,
        ErrorKind::RateLimited,
        ErrorKind::Timeout,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
        ErrorKind::Cancelled,
    ];

    /// The code's first segment, as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not_found",
            ErrorKind::PreconditionFailed => "precondition_failed",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
            ErrorKind::Cancelled => "cancelled",
        }
    }

    /// The kind named by a code's first segment; unknown prefixes are `Internal`, so a newer
    /// peer's code still reads as a failure.
    pub fn from_code(code: &str) -> ErrorKind {
        let head = code.split('.').next().unwrap_or(code);
        ErrorKind::ALL
            .into_iter()
            .find(|k| k.as_str() == head)
            .unwrap_or(ErrorKind::Internal)
    }
}

/// A typed error: code, message and params. Cheap to clone; crosses the wire unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    code: String,
    message: String,
    params: BTreeMap<String, String>,
}

impl Error {
    /// An error with a full dotted code such as `bad_request.missing_param`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Error {
        Error {
            code: code.into(),
            message: message.into(),
            params: BTreeMap::new(),
        }
    }

    /// An error of a kind with a sub-code (`""` for none).
    pub fn of(kind: ErrorKind, sub: &str, message: impl Into<String>) -> Error {
        let code = if sub.is_empty() {
            kind.as_str().to_string()
        } else {
            format!("{}.{}", kind.as_str(), sub)
        };
        Error::new(code, message)
    }

    /// `bad_request[.sub]`.
    pub fn bad_request(sub: &str, message: impl Into<String>) -> Error {
        Error::of(ErrorKind::BadRequest, sub, message)
    }

    /// `not_found[.sub]`.
    pub fn not_found(sub: &str, message: impl Into<String>) -> Error {
        Error::of(ErrorKind::NotFound, sub, message)
    }

    /// `internal[.sub]`.
    pub fn internal(sub: &str, message: impl Into<String>) -> Error {
        Error::of(ErrorKind::Internal, sub, message)
    }

    /// `timeout[.sub]`.
    pub fn timeout(sub: &str, message: impl Into<String>) -> Error {
        Error::of(ErrorKind::Timeout, sub, message)
    }

    /// `unavailable[.sub]`.
    pub fn unavailable(sub: &str, message: impl Into<String>) -> Error {
        Error::of(ErrorKind::Unavailable, sub, message)
    }

    /// `cancelled[.sub]`.
    pub fn cancelled(sub: &str, message: impl Into<String>) -> Error {
        Error::of(ErrorKind::Cancelled, sub, message)
    }

    /// Adds a param; params travel with the error.
    pub fn with_param(mut self, key: impl Into<String>, value: impl Into<String>) -> Error {
        self.params.insert(key.into(), value.into());
        self
    }

    /// The full dotted code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The kind named by the code's first segment.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::from_code(&self.code)
    }

    /// Whether the code is `prefix` or starts with `prefix.`.
    pub fn matches(&self, prefix: &str) -> bool {
        self.code == prefix
            || (self.code.starts_with(prefix)
                && self.code.as_bytes().get(prefix.len()) == Some(&b'.'))
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The params, ordered by key.
    pub fn params(&self) -> &BTreeMap<String, String> {
        &self.params
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        for (k, v) in &self.params {
            write!(f, " {k}={v}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_is_read_from_the_first_segment_of_the_code() {
        let e = Error::bad_request("missing_param", "no id");
        assert_eq!(e.code(), "bad_request.missing_param");
        assert_eq!(e.kind(), ErrorKind::BadRequest);
        assert!(e.matches("bad_request"));
        assert!(!e.matches("bad_req"));
        assert_eq!(ErrorKind::from_code("weird.thing"), ErrorKind::Internal);
    }
}
