//! The example systems as the wind tunnel sees them: which services each provides under which
//! builtin name, the realistic, unique request bodies a load sends them, what an answer
//! acknowledges, and the invariants checked after a run.
//!
//! Each is a plain [`System`] written against the public API, registered by the command line
//! the same way a user registers their own.

use bytes::Bytes;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::system::{
    Built, Env, LoadEnd, LoadTokens, Notes, ServiceDef, System, Topology, Verifier,
};

use super::invariants::{self, TRANSACTION_WRITES, WEBHOOK_WRITES};
use super::{account, auth, bus, card, store, webhook};

/// The token loads send when they send a valid one: alice's, which holds every scope.
pub const DEMO_TOKEN: &str = "token-alice";

/// The user [`DEMO_TOKEN`] names.
pub const DEMO_USER: &str = "alice";

/// The tokens the example auth service accepts: `token-alice` (user alice) and `token-bob`
/// (user bob), with the `accounts`, `webhooks` and `cards` scopes, and `token-eve` (user eve)
/// with `accounts` only. For examples and tests, not for production.
pub fn demo_tokens() -> auth::Tokens {
    let all: &[&str] = &["accounts", webhook::SCOPE, card::SCOPE];
    [
        (DEMO_TOKEN, DEMO_USER, all),
        ("token-bob", "bob", all),
        ("token-eve", "eve", &["accounts"][..]),
    ]
    .into_iter()
    .map(|(token, user, scopes)| (token.to_string(), auth::Identity::new(user, scopes)))
    .collect()
}

/// Serialises a JSON body.
fn body(value: serde_json::Value) -> Option<Bytes> {
    serde_json::to_vec(&value).ok().map(Bytes::from)
}

/// The shared platform: `auth` (bearer tokens; the gateway's authenticator), `store` (the
/// key-value database) and `bus` (the event bus).
#[derive(Debug, Clone, Copy, Default)]
pub struct Platform;

impl System for Platform {
    fn name(&self) -> &str {
        "platform"
    }

    fn services(&self) -> Vec<ServiceDef> {
        vec![
            ServiceDef::new("auth", |_env: &Env| {
                Built::endpoints(auth::endpoints(demo_tokens()))
            })
            .authenticates(LoadTokens {
                valid: DEMO_TOKEN.to_string(),
                invalid: "token-nobody".to_string(),
            }),
            ServiceDef::new("store", store::service_in),
            ServiceDef::new("bus", |env: &Env| {
                Built::endpoints(bus::endpoints(env.disk("log")))
            }),
        ]
    }
}

/// The talk's `service.account`: Create, Read and List.
#[derive(Debug, Clone, Copy, Default)]
pub struct Accounts;

impl System for Accounts {
    fn name(&self) -> &str {
        "accounts"
    }

    fn services(&self) -> Vec<ServiceDef> {
        vec![ServiceDef::new("account", |_env: &Env| {
            Built::endpoints(account::endpoints())
        })]
    }

    fn request(&self, to: LoadEnd<'_>, n: u64, _rng: &mut ChaCha8Rng) -> Option<Bytes> {
        let load = to.load;
        match to.endpoint {
            "create" => body(json!({
                "id": format!("{load}-{n}"),
                "owner": DEMO_USER,
                "name": format!("Account {n}"),
            })),
            "read" => body(json!({ "id": format!("{load}-{n}") })),
            "list" => body(json!({ "owner": DEMO_USER })),
            _ => None,
        }
    }
}

/// The webhook stack: `webhook-api` fans each delivery out to every `webhook` instance and
/// answers when a majority stored it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Webhooks;

impl System for Webhooks {
    fn name(&self) -> &str {
        "webhooks"
    }

    fn services(&self) -> Vec<ServiceDef> {
        vec![
            ServiceDef::new("webhook-api", webhook::api).calls(&[auth::NAME, webhook::SERVICE]),
            ServiceDef::new("webhook", webhook::service).calls(&[webhook::DB]),
        ]
    }

    fn request(&self, to: LoadEnd<'_>, n: u64, _rng: &mut ChaCha8Rng) -> Option<Bytes> {
        let id = format!("{}-{n}", to.load);
        match to.endpoint {
            "deliver" => body(json!({
                "id": id,
                "account": format!("acct-{}", n % card::CARD_COUNT),
                "url": format!("https://hooks.example.com/{}", n % 50),
                "event": card::TOPIC,
            })),
            "read" => body(json!({ "id": id })),
            _ => None,
        }
    }

    fn answered(&self, to: LoadEnd<'_>, answer: &[u8], notes: &Notes) {
        if (to.builtin, to.endpoint) != ("webhook-api", "deliver") {
            return;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(answer) else {
            return;
        };
        if let Some(id) = v.get("id").and_then(|id| id.as_str()) {
            notes.add(WEBHOOK_WRITES, id.to_string());
        }
    }

    fn verifier(&self, topology: &Topology) -> Option<Verifier> {
        invariants::webhook_verifier(topology)
    }
}

/// The card-payments pipeline (slides 140-146).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cards;

impl System for Cards {
    fn name(&self) -> &str {
        "cards"
    }

    fn services(&self) -> Vec<ServiceDef> {
        use card::{feed, ledger, processing};
        vec![
            ServiceDef::new("card-api", processing::api).calls(&[auth::NAME, card::PROCESSING]),
            ServiceDef::new("card-processing", processing::processing).calls(&[
                card::CARDS,
                card::MERCHANT,
                card::BALANCE,
                card::TRANSACTIONS,
            ]),
            ServiceDef::new("cards", processing::cards),
            ServiceDef::new("merchant", processing::merchants),
            ServiceDef::new("transactions", ledger::transactions).calls(&[card::TX_DB, card::BUS]),
            ServiceDef::new("balance", ledger::balance).calls(&[card::BALANCE_DB, card::BUS]),
            ServiceDef::new("transaction-enrichment", feed::enrichment).calls(&[card::MERCHANT]),
            ServiceDef::new("feed-generator", feed::generator).calls(&[
                card::BUS,
                card::ENRICHMENT,
                card::FEED,
                card::APNS,
            ]),
            ServiceDef::new("feed", feed::feed).calls(&[card::FEED_DB]),
            ServiceDef::new("apns", feed::apns),
        ]
    }

    fn request(&self, to: LoadEnd<'_>, n: u64, rng: &mut ChaCha8Rng) -> Option<Bytes> {
        if to.endpoint != "authorise" {
            return None;
        }
        body(json!({
            "idempotency_key": format!("{}-{n}", to.load),
            "card": format!("card-{}", rng.random_range(0..card::CARD_COUNT)),
            "merchant": format!("merchant-{}", rng.random_range(0..card::MERCHANT_COUNT)),
            "amount": rng.random_range(100..=5_000i64),
        }))
    }

    fn answered(&self, to: LoadEnd<'_>, answer: &[u8], notes: &Notes) {
        if (to.builtin, to.endpoint) != ("card-api", "authorise") {
            return;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(answer) else {
            return;
        };
        let approved = v.get("approved").and_then(|a| a.as_bool()) == Some(true);
        if let (true, Some(id)) = (approved, v.get("transaction").and_then(|t| t.as_str())) {
            notes.add(TRANSACTION_WRITES, id.to_string());
        }
    }

    fn verifier(&self, topology: &Topology) -> Option<Verifier> {
        invariants::card_verifier(topology)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_unique_per_request_and_answers_note_their_write() {
        let mut rng = crate::framework::ids::stream(1, "t");
        let to = LoadEnd {
            load: "cards",
            builtin: "card-api",
            endpoint: "authorise",
        };
        let a = Cards.request(to, 1, &mut rng);
        let b = Cards.request(to, 2, &mut rng);
        assert!(a.is_some() && a != b);
        let notes = Notes::default();
        Cards.answered(to, br#"{"approved":true,"transaction":"cards-1"}"#, &notes);
        Cards.answered(
            to,
            br#"{"approved":false,"reason":"insufficient_funds"}"#,
            &notes,
        );
        assert_eq!(notes.of(TRANSACTION_WRITES), vec!["cards-1".to_string()]);
    }
}
