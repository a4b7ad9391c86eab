//! Example services written on the framework: what a user copies, and the built-in services a
//! scenario names with `builtin = "..."`.
//!
//! Layout: [`account`] (the talk's `main`), [`auth`] (bearer tokens and scopes), [`store`] (the
//! key-value database, over [`disk`]), [`bus`] (the event bus), [`webhook`] (the webhook stack),
//! [`card`] (the card-payments pipeline); [`kit`] is what an instance runs with, [`workload`]
//! the requests the wind tunnel sends them, and [`invariants`] what must hold after a run.

pub mod account;
pub mod auth;
pub mod bus;
pub mod card;
pub mod disk;
pub mod invariants;
pub mod kit;
pub mod store;
pub mod webhook;
pub mod workload;

pub use kit::{Built, Kit};

use crate::scenario::Catalog;

/// A built-in service: its catalog name, its endpoints, the services it calls (which a
/// scenario using it must declare), and how to build one instance.
struct Builtin {
    name: &'static str,
    endpoints: &'static [&'static str],
    calls: &'static [&'static str],
    build: fn(&Kit) -> Built,
}

const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "account",
        endpoints: &["create", "read", "list"],
        calls: &[],
        build: |_| Built::endpoints(account::endpoints()),
    },
    Builtin {
        name: "auth",
        endpoints: &[auth::CHECK, auth::AUTHORIZE],
        calls: &[],
        build: |_| Built::endpoints(auth::endpoints(demo_tokens())),
    },
    Builtin {
        name: "store",
        endpoints: &["write", "get", "scan"],
        calls: &[],
        build: |kit| Built::endpoints(store::endpoints(kit.disk("data"))),
    },
    Builtin {
        name: "bus",
        endpoints: &["publish", "poll", "ack", "stats"],
        calls: &[],
        build: |kit| Built::endpoints(bus::endpoints(kit.disk("log"))),
    },
    Builtin {
        name: "webhook-api",
        endpoints: &["deliver", "read"],
        calls: &[auth::NAME, webhook::SERVICE],
        build: webhook::api,
    },
    Builtin {
        name: "webhook",
        endpoints: &["deliver", "read"],
        calls: &[webhook::DB],
        build: webhook::service,
    },
    Builtin {
        name: "card-api",
        endpoints: &["authorise"],
        calls: &[auth::NAME, card::PROCESSING],
        build: card::processing::api,
    },
    Builtin {
        name: "card-processing",
        endpoints: &["authorise"],
        calls: &[
            card::CARDS,
            card::MERCHANT,
            card::BALANCE,
            card::TRANSACTIONS,
        ],
        build: card::processing::processing,
    },
    Builtin {
        name: "cards",
        endpoints: &["read"],
        calls: &[],
        build: card::processing::cards,
    },
    Builtin {
        name: "merchant",
        endpoints: &["read"],
        calls: &[],
        build: card::processing::merchants,
    },
    Builtin {
        name: "transactions",
        endpoints: &["create", "read"],
        calls: &[card::TX_DB, card::BUS],
        build: card::ledger::transactions,
    },
    Builtin {
        name: "balance",
        endpoints: &["read"],
        calls: &[card::BALANCE_DB, card::BUS],
        build: card::ledger::balance,
    },
    Builtin {
        name: "transaction-enrichment",
        endpoints: &["enrich"],
        calls: &[card::MERCHANT],
        build: card::feed::enrichment,
    },
    Builtin {
        name: "feed-generator",
        endpoints: &[],
        calls: &[card::BUS, card::ENRICHMENT, card::FEED, card::APNS],
        build: card::feed::generator,
    },
    Builtin {
        name: "feed",
        endpoints: &["add", "list"],
        calls: &[card::FEED_DB],
        build: card::feed::feed,
    },
    Builtin {
        name: "apns",
        endpoints: &["push"],
        calls: &[],
        build: card::feed::apns,
    },
];

fn find(builtin: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == builtin)
}

/// The built-in services of this crate, for scenario files.
#[derive(Debug, Clone, Copy, Default)]
pub struct Builtins;

impl Catalog for Builtins {
    fn builtin_endpoints(&self, builtin: &str) -> Option<Vec<String>> {
        find(builtin).map(|b| b.endpoints.iter().map(|n| n.to_string()).collect())
    }

    fn builtin_calls(&self, builtin: &str) -> Vec<String> {
        find(builtin)
            .map(|b| b.calls.iter().map(|n| n.to_string()).collect())
            .unwrap_or_default()
    }
}

/// One instance of built-in service `builtin`, fresh (each instance keeps its own state; the
/// ones with a database replay its disk). `None` if there is no such builtin.
pub fn build(builtin: &str, kit: &Kit) -> Option<Built> {
    find(builtin).map(|b| (b.build)(kit))
}

/// The tokens the built-in auth service accepts: `token-alice` (user alice) and `token-bob`
/// (user bob), with the `accounts`, `webhooks` and `cards` scopes, and `token-eve` (user eve)
/// with `accounts` only. For examples and tests, not for production.
pub fn demo_tokens() -> auth::Tokens {
    let all: &[&str] = &["accounts", webhook::SCOPE, card::SCOPE];
    [
        ("token-alice", "alice", all),
        ("token-bob", "bob", all),
        ("token-eve", "eve", &["accounts"][..]),
    ]
    .into_iter()
    .map(|(token, user, scopes)| (token.to_string(), auth::Identity::new(user, scopes)))
    .collect()
}
