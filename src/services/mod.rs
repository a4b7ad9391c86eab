//! Example services written on the framework: what a user copies, and the built-in services a
//! scenario names with `builtin = "..."`.

pub mod account;
pub mod auth;

use crate::framework::Endpoint;
use crate::scenario::Catalog;

/// The built-in services: `account` (service.account's Create, Read, List) and `auth`
/// (bearer-token checks over [`demo_tokens`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Builtins;

impl Catalog for Builtins {
    fn builtin_endpoints(&self, builtin: &str) -> Option<Vec<String>> {
        let names: &[&str] = match builtin {
            "account" => &["create", "read", "list"],
            "auth" => &[auth::CHECK],
            _ => return None,
        };
        Some(names.iter().map(|n| n.to_string()).collect())
    }
}

/// The endpoints of built-in service `builtin`, fresh for one instance (each instance keeps
/// its own state).
pub fn builtin_endpoints(builtin: &str) -> Option<Vec<Endpoint>> {
    match builtin {
        "account" => Some(account::endpoints()),
        "auth" => Some(auth::endpoints(demo_tokens())),
        _ => None,
    }
}

/// The tokens the built-in auth service accepts: `token-alice` (user alice) and `token-bob`
/// (user bob), both with the `accounts` scope. For examples and tests, not for production.
pub fn demo_tokens() -> auth::Tokens {
    [("token-alice", "alice"), ("token-bob", "bob")]
        .into_iter()
        .map(|(token, user)| (token.to_string(), auth::Identity::new(user, &["accounts"])))
        .collect()
}
