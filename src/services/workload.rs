//! What the wind tunnel's loads send to built-in services, and what they remember of the
//! answers: each load request to a built-in endpoint gets a realistic, unique body (a webhook
//! delivery, a card authorisation, an account), and each acknowledged write is kept so that
//! [`invariants`](super::invariants) can look for it after the run.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::lock::lock;
use crate::services::card;

/// A kind of write the invariants check, with what identifies one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WriteKind {
    /// A webhook delivery acknowledged by `api.webhook` (its id).
    Webhook,
    /// A card payment approved by `api.card` (its transaction id).
    Transaction,
}

impl WriteKind {
    /// Its name in summary.json.
    pub fn name(self) -> &'static str {
        match self {
            WriteKind::Webhook => "webhook",
            WriteKind::Transaction => "transaction",
        }
    }
}

/// The body of request `n` of load `load` to endpoint `endpoint` of built-in `builtin`, or
/// `None` if the builtin takes any body (the load's padding is sent then).
pub fn request_body(
    builtin: &str,
    endpoint: &str,
    load: &str,
    n: u64,
    rng: &mut ChaCha8Rng,
) -> Option<Bytes> {
    let body = match (builtin, endpoint) {
        ("webhook-api" | "webhook", "deliver") => json!({
            "id": format!("{load}-{n}"),
            "account": format!("acct-{}", n % card::CARD_COUNT),
            "url": format!("https://hooks.example.com/{}", n % 50),
            "event": card::TOPIC,
        }),
        ("webhook-api" | "webhook", "read") => json!({ "id": format!("{load}-{n}") }),
        ("card-api" | "card-processing", "authorise") => json!({
            "idempotency_key": format!("{load}-{n}"),
            "card": format!("card-{}", rng.random_range(0..card::CARD_COUNT)),
            "merchant": format!("merchant-{}", rng.random_range(0..card::MERCHANT_COUNT)),
            "amount": rng.random_range(100..=5_000i64),
        }),
        ("account", "create") => json!({
            "id": format!("{load}-{n}"),
            "owner": "alice",
            "name": format!("Account {n}"),
        }),
        ("account", "read") => json!({ "id": format!("{load}-{n}") }),
        ("account", "list") => json!({ "owner": "alice" }),
        _ => return None,
    };
    serde_json::to_vec(&body).ok().map(Bytes::from)
}

/// The write an ok answer of `builtin`'s `endpoint` acknowledges, if it is one the invariants
/// check: `(kind, id)`.
pub fn acknowledged(builtin: &str, endpoint: &str, response: &[u8]) -> Option<(WriteKind, String)> {
    let v: serde_json::Value = serde_json::from_slice(response).ok()?;
    match (builtin, endpoint) {
        ("webhook-api", "deliver") => {
            let id = v.get("id")?.as_str()?;
            Some((WriteKind::Webhook, id.to_string()))
        }
        ("card-api", "authorise") => {
            let approved = v.get("approved")?.as_bool()?;
            let id = v.get("transaction")?.as_str()?;
            approved.then(|| (WriteKind::Transaction, id.to_string()))
        }
        _ => None,
    }
}

/// Writes acknowledged to load generators during a run, by kind, in the order they came.
#[derive(Debug, Default)]
pub struct Acknowledged {
    writes: Mutex<BTreeMap<WriteKind, Vec<String>>>,
}

impl Acknowledged {
    /// Notes one acknowledged write.
    pub fn add(&self, kind: WriteKind, id: String) {
        lock(&self.writes).entry(kind).or_default().push(id);
    }

    /// The ids acknowledged of `kind`.
    pub fn of(&self, kind: WriteKind) -> Vec<String> {
        lock(&self.writes).get(&kind).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_unique_per_request_and_answers_name_their_write() {
        let mut rng = crate::framework::ids::stream(1, "t");
        let a = request_body("card-api", "authorise", "cards", 1, &mut rng);
        let b = request_body("card-api", "authorise", "cards", 2, &mut rng);
        assert!(a.is_some() && a != b);
        assert_eq!(request_body("store", "write", "l", 1, &mut rng), None);
        let ok = br#"{"approved":true,"transaction":"cards-1"}"#;
        assert_eq!(
            acknowledged("card-api", "authorise", ok),
            Some((WriteKind::Transaction, "cards-1".to_string()))
        );
        let declined = br#"{"approved":false,"reason":"insufficient_funds"}"#;
        assert_eq!(acknowledged("card-api", "authorise", declined), None);
    }
}
