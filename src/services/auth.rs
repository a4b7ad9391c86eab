//! `service.auth`: says who holds a bearer token and what they may do.
//!
//! The gateway asks it once per edge request (`check`) before routing anything, so a request
//! with a bad token never reaches another service. Tokens live in a table given at
//! construction; a real deployment would look them up in a store, behind the same endpoint.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::framework::{Context, Endpoint, Error, ErrorKind, Server, ServiceConfig};

/// The service's name.
pub const NAME: &str = "service.auth";

/// The endpoint that checks a token (the framework's authenticator protocol).
pub use crate::framework::identity::CHECK;

/// The endpoint that says whether a user holds a scope.
pub const AUTHORIZE: &str = "authorize";

pub use crate::framework::identity::{CheckRequest, Identity};

/// `authorize` request: may `user` do what `scope` covers?
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthorizeRequest {
    /// The user, as the gateway authenticated them.
    pub user: String,
    /// The scope needed.
    pub scope: String,
}

/// `check` response: the token's identity.
pub type CheckResponse = Identity;

/// Known tokens and whom they name, ordered by token.
pub type Tokens = BTreeMap<String, Identity>;

/// The service's endpoints over the token table `tokens`.
pub fn endpoints(tokens: Tokens) -> Vec<Endpoint> {
    let tokens = Arc::new(tokens);
    let t2 = tokens.clone();
    vec![
        Endpoint::new(CHECK, move |_ctx: Context, req: CheckRequest| {
            let tokens = tokens.clone();
            async move { check(&tokens, &req) }
        }),
        Endpoint::new(AUTHORIZE, move |_ctx: Context, req: AuthorizeRequest| {
            let tokens = t2.clone();
            async move { authorize(&tokens, &req).map(|()| serde_json::Value::Null) }
        }),
    ]
}

fn authorize(tokens: &Tokens, req: &AuthorizeRequest) -> Result<(), Error> {
    if req.user.is_empty() {
        return Err(Error::of(
            ErrorKind::Unauthorized,
            "no_user",
            "the request carries no authenticated user",
        ));
    }
    let granted = tokens
        .values()
        .any(|id| id.user == req.user && id.scopes.contains(&req.scope));
    if granted {
        Ok(())
    } else {
        Err(Error::of(
            ErrorKind::Forbidden,
            "scope",
            format!("{} may not use {}", req.user, req.scope),
        )
        .with_param("scope", req.scope.as_str()))
    }
}

fn check(tokens: &Tokens, req: &CheckRequest) -> Result<CheckResponse, Error> {
    if req.token.is_empty() {
        return Err(Error::of(
            ErrorKind::Unauthorized,
            "missing_token",
            "no token given",
        ));
    }
    tokens
        .get(&req.token)
        .cloned()
        .ok_or_else(|| Error::of(ErrorKind::Unauthorized, "invalid_token", "unknown token"))
}

/// The service's config.
pub fn config() -> ServiceConfig {
    ServiceConfig::new(NAME, "Check bearer tokens")
}

/// A server for `service.auth` over `tokens`, with its endpoint added.
pub fn server(tokens: Tokens) -> Server {
    let srv = Server::new(config());
    srv.add_endpoints(endpoints(tokens));
    srv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_tokens_name_their_user_and_others_are_unauthorized() {
        let mut tokens = Tokens::new();
        tokens.insert("t1".into(), Identity::new("alice", &["accounts:write"]));
        let ok = check(&tokens, &CheckRequest { token: "t1".into() });
        assert_eq!(ok.map(|i| i.user).as_deref(), Ok("alice"));
        let bad = check(&tokens, &CheckRequest { token: "t2".into() });
        assert_eq!(
            bad.map_err(|e| e.code().to_string()),
            Err("unauthorized.invalid_token".to_string())
        );
    }
}
