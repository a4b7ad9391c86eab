//! Who a request is for: the user and scopes the gateway authenticated, carried in a request's
//! context to every hop, and the protocol the gateway uses to learn them from a bearer token.
//!
//! This is framework vocabulary, not the gateway's or an example service's: the gateway writes
//! it, signed ([`Context::with_identity`](crate::framework::Context::with_identity)), every
//! server verifies the signature as a request arrives, any service reads it
//! ([`Context::user`](crate::framework::Context::user)), and an authenticator service
//! answers [`CHECK`] with an [`Identity`]. Which service authenticates is configuration.

use serde::{Deserialize, Serialize};

/// The metadata key carrying the authenticated user to every service.
pub const META_USER: &str = "user";

/// The metadata key carrying the user's scopes, space-separated (OAuth 2.0's `scope` form).
pub const META_SCOPES: &str = "scopes";

/// The metadata key carrying the gateway's signature over the user, the scopes and the trace
/// (see [`crate::framework::trust`]); a user without a valid one is removed on arrival.
pub const META_USER_SIG: &str = "user-sig";

/// The endpoint an authenticator service answers: [`CheckRequest`] in, [`Identity`] out.
pub const CHECK: &str = "check";

/// Who holds a token, and the scopes it grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The user the token belongs to.
    pub user: String,
    /// What the token allows, e.g. `accounts`.
    pub scopes: Vec<String>,
}

impl Identity {
    /// An identity for `user` with `scopes`.
    pub fn new(user: &str, scopes: &[&str]) -> Identity {
        Identity {
            user: user.to_string(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// The [`CHECK`] request: who holds this bearer token?
#[derive(Clone, Serialize, Deserialize)]
pub struct CheckRequest {
    /// The bearer token to check.
    pub token: String,
}

impl std::fmt::Debug for CheckRequest {
    // A token is a secret: it must not end up in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckRequest")
            .field("token", &"<redacted>")
            .finish()
    }
}
