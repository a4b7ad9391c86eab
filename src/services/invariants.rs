//! What must hold at the end of every run that uses the example services, checked Jepsen-style:
//! once the load has stopped and the faults have healed, a verifier waits for the system to go
//! quiet, then reads the databases and the bus through the same client and transport as any
//! service, and compares them with what the load was told.
//!
//! - `no_lost_writes`: every webhook delivery and every payment acknowledged to a caller is in
//!   the database (a webhook in at least one of the webhook databases).
//! - `ledger_conserved`: the balances add up to the opening funds, and every account holds
//!   exactly its opening balance plus the transactions applied to it (none twice, none
//!   unknown); transactions recorded but not yet applied are reported as money in flight.
//! - `events_consumed`: every recorded transaction was published, every consumer group
//!   acknowledged every event, and each transaction reached the balances and the feed.
//!
//! Each system's [`Verifier`] checks what applies to the run's topology: the webhook stack its
//! deliveries, the card pipeline its payments, ledger and events.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::framework::{Client, Context, Error};
use crate::services::bus::{StatsRequest, StatsResponse};
use crate::services::card::{self, feed, ledger, Transaction};
use crate::services::store::StoreClient;
use crate::services::webhook;
use crate::system::{Invariant, Topology, Verifier, Verify};

/// The kind under which acknowledged webhook deliveries are noted (their ids).
pub const WEBHOOK_WRITES: &str = "webhook";
/// The kind under which approved card payments are noted (their transaction ids).
pub const TRANSACTION_WRITES: &str = "transaction";

/// How long the verifier waits for consumers and relays to catch up before it judges.
pub const QUIESCE_LIMIT: Duration = Duration::from_secs(30);
/// Attempts at each read before the verifier gives up on it.
const READ_ATTEMPTS: u32 = 5;

/// Which example systems a topology runs, by the builtins it declares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Systems {
    /// Webhook instances with their databases.
    pub webhooks: bool,
    /// Transactions (with their database and the bus).
    pub transactions: bool,
    /// Balances consuming transactions.
    pub balances: bool,
    /// The feed generator consuming transactions.
    pub feed: bool,
}

impl Systems {
    /// The systems of `topology`, by the builtins it runs.
    pub fn of(topology: &Topology) -> Systems {
        let has = |b: &str| topology.has_builtin(b);
        Systems {
            webhooks: has("webhook"),
            transactions: has("transactions"),
            balances: has("balance") && has("transactions"),
            feed: has("feed-generator") && has("transactions"),
        }
    }
}

/// The webhook stack's check, when the topology has webhook instances: `no_lost_writes` over
/// the acknowledged deliveries.
pub fn webhook_verifier(topology: &Topology) -> Option<Verifier> {
    Systems::of(topology).webhooks.then(|| {
        Verifier::new(|v: Verify| async move {
            let ctx = Context::background();
            let dbs = v.topology.instances(webhook::DB);
            let acked = v.notes.of(WEBHOOK_WRITES);
            vec![lost_writes(
                webhooks_kept(&v.client, &ctx, dbs, &acked).await,
            )]
        })
    })
}

/// The card pipeline's checks, when the topology records transactions: once the outbox and
/// the bus have drained, `no_lost_writes` over approved payments, `ledger_conserved` (with
/// balances) and `events_consumed`.
pub fn card_verifier(topology: &Topology) -> Option<Verifier> {
    let systems = Systems::of(topology);
    systems.transactions.then(|| {
        Verifier::new(move |v: Verify| async move {
            let acked = v.notes.of(TRANSACTION_WRITES);
            verify_cards(&v.client, systems, &acked).await
        })
    })
}

/// Waits (up to [`QUIESCE_LIMIT`]) until the outbox is empty and every consumer group has
/// acknowledged everything, then checks the card pipeline's invariants.
async fn verify_cards(client: &Client, systems: Systems, acked: &[String]) -> Vec<Invariant> {
    let ctx = Context::background();
    let quiet = quiesce(client, &ctx, systems).await;
    match CardState::read(client, &ctx, systems).await {
        Ok(state) => {
            let mut out = vec![lost_writes(Ok(state.lost(acked)))];
            if systems.balances {
                out.push(match &quiet {
                    Ok(()) => state.ledger(),
                    Err(left) => ledger_while_moving(client, &ctx, systems, &state, left).await,
                });
            }
            out.push(state.consumed(systems));
            out
        }
        Err(e) => {
            let why = e.to_string();
            let mut out = vec![lost_writes(Err(why.clone()))];
            if systems.balances {
                out.push(Invariant::unreadable("ledger_conserved", &why));
            }
            out.push(Invariant::unreadable("events_consumed", &why));
            out
        }
    }
}

/// `ledger_conserved` when the pipeline did not go quiet. Balances read while consumers still
/// apply transactions are no snapshot (an account read before a transfer and its marker read
/// after it would "differ" though nothing is wrong), so the state is read again: if balances
/// and markers did not move in between, the first reading is one and is judged; otherwise the
/// verdict says it could not be checked, rather than judge a blur.
async fn ledger_while_moving(
    client: &Client,
    ctx: &Context,
    systems: Systems,
    first: &CardState,
    left: &str,
) -> Invariant {
    let again = CardState::read(client, ctx, systems).await;
    match again {
        Ok(again) if again.balances == first.balances && again.applied == first.applied => {
            first.ledger()
        }
        _ => Invariant::unreadable(
            "ledger_conserved",
            &format!(
                "the pipeline had not gone quiet after {} s ({left}) and its balances kept moving, so they could not be read as one snapshot",
                QUIESCE_LIMIT.as_secs()
            ),
        ),
    }
}

/// Acknowledged and lost writes of one kind, or why they could not be read.
type Lost = Result<LostPart, String>;

/// Acknowledged and lost writes of one kind.
struct LostPart {
    kind: &'static str,
    acked: u64,
    lost: Vec<String>,
    /// More figures to report (e.g. databases that could not be read).
    notes: Vec<(String, i64)>,
}

/// The `no_lost_writes` verdict on one kind of write.
fn lost_writes(part: Lost) -> Invariant {
    let LostPart {
        kind,
        acked,
        lost,
        notes,
    } = match part {
        Ok(part) => part,
        Err(why) => return Invariant::unreadable("no_lost_writes", &why),
    };
    let mut figures = vec![
        (format!("{kind}_acknowledged"), acked as i64),
        (format!("{kind}_lost"), lost.len() as i64),
    ];
    figures.extend(notes);
    let detail = if lost.is_empty() {
        format!("all {acked} acknowledged writes are readable")
    } else {
        let shown: Vec<&str> = lost.iter().take(5).map(String::as_str).collect();
        format!(
            "{} acknowledged {kind} write(s) missing, e.g. {}",
            lost.len(),
            shown.join(", ")
        )
    };
    let figures: Vec<(&str, i64)> = figures.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    Invariant::new("no_lost_writes", lost.is_empty(), detail, &figures)
}

/// Reads every key under `prefix`, retrying a failed read a few times.
async fn scan(
    db: &StoreClient,
    ctx: &Context,
    prefix: &str,
) -> Result<Vec<(String, Value)>, Error> {
    let mut last = None;
    for _ in 0..READ_ATTEMPTS {
        let call = ctx.with_timeout(Duration::from_secs(5));
        match db.scan_all(&call, prefix).await {
            Ok(items) => return Ok(items),
            Err(e) => last = Some(e),
        }
        crate::framework::timer::sleep(Duration::from_millis(200)).await;
    }
    Err(last.unwrap_or_else(|| Error::unavailable("unread", "no attempt made")))
}

async fn bus_stats(
    client: &Client,
    ctx: &Context,
    groups: Vec<String>,
) -> Result<StatsResponse, Error> {
    let req = StatsRequest {
        topic: card::TOPIC.to_string(),
        groups,
    };
    let call = ctx.with_timeout(Duration::from_secs(5));
    client.call(&call, card::BUS, "stats", &req).await
}

fn groups(systems: Systems) -> Vec<String> {
    let mut g = Vec::new();
    if systems.balances {
        g.push(ledger::BALANCE_GROUP.to_string());
    }
    if systems.feed {
        g.push(feed::FEED_GROUP.to_string());
    }
    g
}

async fn quiesce(client: &Client, ctx: &Context, systems: Systems) -> Result<(), String> {
    let start = tokio::time::Instant::now();
    let outbox = StoreClient::new(client.clone(), card::TX_DB);
    let mut last = String::from("the outbox and the bus could not be read");
    while start.elapsed() < QUIESCE_LIMIT {
        let call = ctx.with_timeout(Duration::from_secs(2));
        let (pending_outbox, more) = outbox
            .scan(&call, ledger::OUTBOX_PREFIX, None)
            .await
            .map(|p| (p.items.len(), p.next.is_some()))
            .unwrap_or((1, false));
        let unacked: u64 = bus_stats(client, ctx, groups(systems))
            .await
            .map(|s| s.unacked.values().sum())
            .unwrap_or(1);
        if pending_outbox == 0 && unacked == 0 {
            return Ok(());
        }
        last = format!(
            "{pending_outbox}{} outbox entr{} and {unacked} unacknowledged deliver{} left",
            if more { " or more" } else { "" },
            if pending_outbox == 1 { "y" } else { "ies" },
            if unacked == 1 { "y" } else { "ies" }
        );
        crate::framework::timer::sleep(Duration::from_millis(500)).await;
    }
    Err(last)
}

/// Every acknowledged delivery must be in at least one webhook database that can be read. A
/// database that cannot be read (it crashed for good) is counted, not fatal: the majority
/// that acknowledged each delivery is meant to outlive it. None readable is fatal.
async fn webhooks_kept(client: &Client, ctx: &Context, dbs: u32, acked: &[String]) -> Lost {
    let mut found: BTreeSet<String> = BTreeSet::new();
    let mut unreadable = Vec::new();
    for i in 0..dbs {
        let id = format!("{}[{i}]", webhook::DB);
        let db = StoreClient::new(client.clone(), webhook::DB).pinned(&id);
        match scan(&db, ctx, webhook::PREFIX).await {
            Ok(items) => found.extend(
                items
                    .into_iter()
                    .map(|(k, _)| k.trim_start_matches(webhook::PREFIX).to_string()),
            ),
            Err(e) => unreadable.push(format!("{id}: {e}")),
        }
    }
    if dbs > 0 && unreadable.len() == dbs as usize {
        return Err(unreadable.join("; "));
    }
    let lost = acked
        .iter()
        .filter(|id| !found.contains(*id))
        .cloned()
        .collect();
    Ok(LostPart {
        kind: WEBHOOK_WRITES,
        acked: acked.len() as u64,
        lost,
        notes: vec![(
            "webhook_databases_unreadable".to_string(),
            unreadable.len() as i64,
        )],
    })
}

/// The card pipeline's durable state, as read after the run.
struct CardState {
    transactions: BTreeMap<String, Transaction>,
    balances: BTreeMap<String, i64>,
    applied: BTreeSet<String>,
    in_feed: BTreeSet<String>,
    outbox: usize,
    bus: Option<StatsResponse>,
}

impl CardState {
    async fn read(client: &Client, ctx: &Context, systems: Systems) -> Result<CardState, Error> {
        let txdb = StoreClient::new(client.clone(), card::TX_DB);
        let transactions = scan(&txdb, ctx, ledger::TX_PREFIX)
            .await?
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_value::<Transaction>(v).ok())
            .map(|t| (t.id.clone(), t))
            .collect();
        let outbox = scan(&txdb, ctx, ledger::OUTBOX_PREFIX).await?.len();
        let (mut balances, mut applied) = (BTreeMap::new(), BTreeSet::new());
        if systems.balances {
            let db = StoreClient::new(client.clone(), card::BALANCE_DB);
            balances = scan(&db, ctx, ledger::ACCOUNT_PREFIX)
                .await?
                .into_iter()
                .map(|(k, v)| {
                    let account = k.trim_start_matches(ledger::ACCOUNT_PREFIX).to_string();
                    (account, v.as_i64().unwrap_or(i64::MIN))
                })
                .collect();
            applied = scan(&db, ctx, ledger::APPLIED_PREFIX)
                .await?
                .into_iter()
                .map(|(k, _)| k.trim_start_matches(ledger::APPLIED_PREFIX).to_string())
                .collect();
        }
        let mut in_feed = BTreeSet::new();
        if systems.feed {
            let db = StoreClient::new(client.clone(), card::FEED_DB);
            in_feed = scan(&db, ctx, feed::FEED_PREFIX)
                .await?
                .into_iter()
                .filter_map(|(k, _)| k.rsplit('/').next().map(str::to_string))
                .collect();
        }
        let wanted = groups(systems);
        let bus = if wanted.is_empty() {
            None
        } else {
            Some(bus_stats(client, ctx, wanted).await?)
        };
        Ok(CardState {
            transactions,
            balances,
            applied,
            in_feed,
            outbox,
            bus,
        })
    }

    fn lost(&self, acked: &[String]) -> LostPart {
        let lost = acked
            .iter()
            .filter(|id| !self.transactions.contains_key(*id))
            .cloned()
            .collect();
        LostPart {
            kind: TRANSACTION_WRITES,
            acked: acked.len() as u64,
            lost,
            notes: Vec::new(),
        }
    }

    fn ledger(&self) -> Invariant {
        let mut expected: BTreeMap<String, i64> = card::opening_balances().into_iter().collect();
        let mut in_flight = (0i64, 0i64);
        for (id, tx) in &self.transactions {
            if self.applied.contains(id) {
                *expected.entry(tx.account.clone()).or_default() -= tx.amount;
                *expected.entry(tx.merchant_account.clone()).or_default() += tx.amount;
            } else {
                in_flight.0 += 1;
                in_flight.1 += tx.amount;
            }
        }
        let unknown = self
            .applied
            .iter()
            .filter(|id| !self.transactions.contains_key(*id))
            .count() as i64;
        let accounts: BTreeSet<&String> = expected.keys().chain(self.balances.keys()).collect();
        let mismatched: Vec<&String> = accounts
            .into_iter()
            .filter(|a| expected.get(*a) != self.balances.get(*a))
            .collect();
        let total: i64 = self.balances.values().sum();
        let initial = card::initial_funds();
        let holds = total == initial && mismatched.is_empty() && unknown == 0;
        let detail = if holds {
            format!(
                "balances total {total}p, the opening funds; {} transactions applied once each, {} in flight ({}p)",
                self.applied.len(),
                in_flight.0,
                in_flight.1
            )
        } else {
            let shown: Vec<&str> = mismatched.iter().take(5).map(|s| s.as_str()).collect();
            format!(
                "balances total {total}p against opening funds of {initial}p; {} account(s) differ from their transactions (e.g. {}); {unknown} applied transaction(s) unknown",
                mismatched.len(),
                shown.join(", ")
            )
        };
        Invariant::new(
            "ledger_conserved",
            holds,
            detail,
            &[
                ("initial_funds", initial),
                ("balances_total", total),
                ("transactions", self.transactions.len() as i64),
                ("applied", self.applied.len() as i64),
                ("in_flight_count", in_flight.0),
                ("in_flight_amount", in_flight.1),
                ("mismatched_accounts", mismatched.len() as i64),
                ("unknown_applied", unknown),
            ],
        )
    }

    fn consumed(&self, systems: Systems) -> Invariant {
        let n = self.transactions.len() as i64;
        let published = self.bus.as_ref().map_or(n, |b| b.published as i64);
        let unacked: i64 = self
            .bus
            .as_ref()
            .map_or(0, |b| b.unacked.values().sum::<u64>() as i64);
        let missing = |seen: &BTreeSet<String>| {
            self.transactions
                .keys()
                .filter(|id| !seen.contains(*id))
                .count() as i64
        };
        let not_applied = if systems.balances {
            missing(&self.applied)
        } else {
            0
        };
        let not_in_feed = if systems.feed {
            missing(&self.in_feed)
        } else {
            0
        };
        let outbox = self.outbox as i64;
        let holds =
            outbox == 0 && published >= n && unacked == 0 && not_applied == 0 && not_in_feed == 0;
        let detail = if holds {
            format!("all {n} transactions published and consumed by every group")
        } else {
            format!(
                "{outbox} unpublished in the outbox, {published} of {n} published, {unacked} unacknowledged deliveries, {not_applied} not applied to balances, {not_in_feed} missing from the feed"
            )
        };
        Invariant::new(
            "events_consumed",
            holds,
            detail,
            &[
                ("transactions", n),
                ("published", published),
                ("outbox", outbox),
                ("unacknowledged", unacked),
                ("not_applied", not_applied),
                ("not_in_feed", not_in_feed),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(id: &str, amount: i64) -> Transaction {
        Transaction {
            id: id.into(),
            card: "card-0".into(),
            account: "acct-0".into(),
            merchant: "merchant-0".into(),
            merchant_account: "merchant-0".into(),
            amount,
        }
    }

    fn state(applied_twice: bool) -> CardState {
        let mut balances: BTreeMap<String, i64> = card::opening_balances().into_iter().collect();
        let times = if applied_twice { 2 } else { 1 };
        *balances.entry("acct-0".into()).or_default() -= 500 * times;
        *balances.entry("merchant-0".into()).or_default() += 500 * times;
        CardState {
            transactions: [
                ("t1".to_string(), tx("t1", 500)),
                ("t2".to_string(), tx("t2", 70)),
            ]
            .into_iter()
            .collect(),
            balances,
            applied: ["t1".to_string()].into_iter().collect(),
            in_feed: ["t1".to_string(), "t2".to_string()].into_iter().collect(),
            outbox: 0,
            bus: None,
        }
    }

    #[test]
    fn the_ledger_holds_with_money_in_flight_and_fails_on_a_double_application() {
        let ok = state(false).ledger();
        assert!(ok.holds, "{}", ok.detail);
        assert_eq!(ok.figures.get("in_flight_amount"), Some(&70));
        let twice = state(true).ledger();
        assert!(!twice.holds, "applying t1 twice must be caught");
        assert_eq!(twice.figures.get("mismatched_accounts"), Some(&2));
        let systems = Systems {
            webhooks: false,
            transactions: true,
            balances: true,
            feed: true,
        };
        let consumed = state(false).consumed(systems);
        assert!(!consumed.holds, "t2 was never applied");
        assert_eq!(consumed.figures.get("not_applied"), Some(&1));
    }

    #[test]
    fn lost_writes_name_what_is_missing() {
        let s = state(false);
        let inv = lost_writes(Ok(s.lost(&["t1".into(), "t9".into()])));
        assert!(!inv.holds);
        assert!(inv.detail.contains("t9"), "{}", inv.detail);
        assert_eq!(inv.figures.get("transaction_lost"), Some(&1));
    }
}
