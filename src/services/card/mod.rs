//! The card-payments pipeline (the talk's slides 140-146): a card authorisation enters at
//! `api.card`, `service.card-processing` checks the card (`service.cards`), the merchant
//! (`service.merchant`) and the balance (`service.balance`), and `service.transactions` records
//! the transaction and publishes `transaction.created` on the event bus (`service.bus`).
//! `service.balance` consumes it and moves the money; `service.feed-generator` consumes it,
//! has it described by `service.transaction-enrichment`, adds it to the account's feed
//! (`service.feed`) and sends a push notification (`service.apns`).
//!
//! Layout: this module holds the names, the messages and the reference data (cards,
//! merchants, opening balances); [`processing`] the authorisation path; [`ledger`] the
//! transactions and balances; [`feed`] the feed side. Money is in pence.

pub mod feed;
pub mod ledger;
pub mod processing;

use serde::{Deserialize, Serialize};

/// The edge service.
pub const API: &str = "api.card";
/// Decides authorisations.
pub const PROCESSING: &str = "service.card-processing";
/// Knows the cards.
pub const CARDS: &str = "service.cards";
/// Knows the merchants.
pub const MERCHANT: &str = "service.merchant";
/// Holds the balances.
pub const BALANCE: &str = "service.balance";
/// Records transactions.
pub const TRANSACTIONS: &str = "service.transactions";
/// Describes transactions for people.
pub const ENRICHMENT: &str = "service.transaction-enrichment";
/// Builds the feed from transactions.
pub const FEED_GENERATOR: &str = "service.feed-generator";
/// Holds each account's feed.
pub const FEED: &str = "service.feed";
/// Sends push notifications.
pub const APNS: &str = "service.apns";
/// The event bus.
pub const BUS: &str = "service.bus";
/// The transactions database.
pub const TX_DB: &str = "store.transactions";
/// The balances database.
pub const BALANCE_DB: &str = "store.balance";
/// The feed database.
pub const FEED_DB: &str = "store.feed";
/// The topic a new transaction is published on.
pub const TOPIC: &str = "transaction.created";
/// The scope a user needs to authorise card payments.
pub const SCOPE: &str = "cards";

/// Cards issued: `card-0` .. `card-99`, card `i` drawing on account `acct-i`.
pub const CARD_COUNT: u64 = 100;
/// Merchants: `merchant-0` .. `merchant-19`, each paid into an account of the same name.
pub const MERCHANT_COUNT: u64 = 20;
/// Every cardholder's opening balance: £10,000.
pub const OPENING_BALANCE: i64 = 1_000_000;
/// The largest single authorisation: £10,000.
pub const MAX_AMOUNT: i64 = 1_000_000;

/// The money in the system at the start: every cardholder's opening balance.
pub fn initial_funds() -> i64 {
    OPENING_BALANCE * CARD_COUNT as i64
}

/// An authorisation request, as a card network sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorisation {
    /// The network's id for it: a retry carries the same, and becomes the transaction's id.
    pub idempotency_key: String,
    /// The card, e.g. `card-7`.
    pub card: String,
    /// The merchant, e.g. `merchant-3`.
    pub merchant: String,
    /// Pence.
    pub amount: i64,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Whether the payment may go ahead.
    pub approved: bool,
    /// The transaction recorded, when approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<String>,
    /// Why it was declined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A recorded card transaction: `amount` moves from `account` to `merchant_account`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// Unique; the authorisation's idempotency key.
    pub id: String,
    /// The card used.
    pub card: String,
    /// The cardholder's account (debited).
    pub account: String,
    /// The merchant.
    pub merchant: String,
    /// The merchant's account (credited).
    pub merchant_account: String,
    /// Pence.
    pub amount: i64,
}

/// A card, as `service.cards` knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    /// The card id.
    pub card: String,
    /// The account it draws on.
    pub account: String,
    /// Whether its owner froze it (frozen cards are declined).
    pub frozen: bool,
}

/// A merchant, as `service.merchant` knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merchant {
    /// The merchant id.
    pub merchant: String,
    /// Its trading name.
    pub name: String,
    /// What it sells.
    pub category: String,
    /// The account it is paid into.
    pub account: String,
}

/// The card `card`, if issued: every 25th is frozen.
pub fn card(card: &str) -> Option<Card> {
    let i: u64 = card.strip_prefix("card-")?.parse().ok()?;
    (i < CARD_COUNT).then(|| Card {
        card: card.to_string(),
        account: format!("acct-{i}"),
        frozen: i % 25 == 24,
    })
}

/// The merchant `merchant`, if known.
pub fn merchant(merchant: &str) -> Option<Merchant> {
    const CATEGORIES: [&str; 5] = ["groceries", "eating_out", "transport", "shopping", "bills"];
    let j: u64 = merchant.strip_prefix("merchant-")?.parse().ok()?;
    (j < MERCHANT_COUNT).then(|| Merchant {
        merchant: merchant.to_string(),
        name: format!("Merchant {j}"),
        category: CATEGORIES[(j % 5) as usize].to_string(),
        account: merchant.to_string(),
    })
}

/// Every account with its opening balance: cardholders, then merchants (who start at zero).
pub fn opening_balances() -> Vec<(String, i64)> {
    let holders = (0..CARD_COUNT).map(|i| (format!("acct-{i}"), OPENING_BALANCE));
    let merchants = (0..MERCHANT_COUNT).map(|j| (format!("merchant-{j}"), 0));
    holders.chain(merchants).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_data_is_fixed_and_bounded() {
        assert_eq!(card("card-3").map(|c| c.account), Some("acct-3".into()));
        assert_eq!(card("card-24").map(|c| c.frozen), Some(true));
        assert_eq!(card("card-100"), None);
        assert_eq!(card("x"), None);
        assert_eq!(
            merchant("merchant-7").map(|m| m.category),
            Some("transport".into())
        );
        assert_eq!(merchant("merchant-20"), None);
        let total: i64 = opening_balances().iter().map(|(_, b)| b).sum();
        assert_eq!(total, initial_funds());
    }
}
