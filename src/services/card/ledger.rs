//! Money: `service.transactions` records each transaction and publishes it, and
//! `service.balance` moves the money when it consumes the event.
//!
//! Transactions writes the transaction and an outbox entry in one atomic write to
//! `store.transactions`; a relay in every instance publishes outbox entries to the bus and then
//! deletes them, so a crash between the write and the publish delays the event but never loses
//! it (the transactional outbox). Balance applies each `transaction.created` as one atomic write
//! to `store.balance`: debit, credit and an `applied/<id>` marker, under the idempotency key of
//! the transaction, so a redelivered event moves no money twice.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::framework::{Context, Endpoint, Error};
use crate::services::bus::{Consumer, Delivery, PublishRequest, PublishResponse};
use crate::services::card::{self, Transaction, BALANCE_DB, BUS, TOPIC, TX_DB};
use crate::services::store::{Op, StoreClient};
use crate::system::{background, Built, Env};

/// Key prefix of a transaction in `store.transactions`.
pub const TX_PREFIX: &str = "tx/";
/// Key prefix of an unpublished transaction in `store.transactions`.
pub const OUTBOX_PREFIX: &str = "outbox/";
/// Key prefix of an account's balance in `store.balance`.
pub const ACCOUNT_PREFIX: &str = "acct/";
/// Key prefix of an applied transaction in `store.balance`.
pub const APPLIED_PREFIX: &str = "applied/";
/// The consumer group of `service.balance`.
pub const BALANCE_GROUP: &str = "balance";
/// The idempotency key of the opening balances.
const OPENING_KEY: &str = "opening-balances";
/// Pause between relay or init attempts that found nothing to do or failed.
const IDLE: Duration = Duration::from_millis(20);

/// `read` request of `service.balance`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BalanceRequest {
    /// The account.
    pub account: String,
}

/// `read` response of `service.balance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceResponse {
    /// The account.
    pub account: String,
    /// Pence.
    pub balance: i64,
}

/// `read` request of `service.transactions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransactionRequest {
    /// The transaction.
    pub id: String,
}

/// `service.transactions`: `create` (only for card-processing) and `read`, plus the outbox relay.
pub fn transactions(env: &Env) -> Built {
    let db = StoreClient::new(env.client().clone(), TX_DB);
    let (db1, db2, db3) = (db.clone(), db.clone(), db);
    let client = env.client().clone();
    Built {
        endpoints: vec![
            Endpoint::new("create", move |ctx: Context, tx: Transaction| {
                let db = db1.clone();
                async move {
                    let value = serde_json::to_value(&tx)
                        .map_err(|e| Error::internal("encode", e.to_string()))?;
                    let ops = vec![
                        Op::Insert {
                            key: format!("{TX_PREFIX}{}", tx.id),
                            value: value.clone(),
                        },
                        Op::Put {
                            key: format!("{OUTBOX_PREFIX}{}", tx.id),
                            value,
                        },
                    ];
                    let written = db.write(&ctx, ops, Some(tx.id.clone())).await?;
                    if written.applied {
                        ctx.count("transactions.created", 1);
                    }
                    Ok(TransactionRequest { id: tx.id })
                }
            })
            .allow_services(&[card::PROCESSING]),
            Endpoint::new("read", move |ctx: Context, req: TransactionRequest| {
                let db = db2.clone();
                async move {
                    let value = db
                        .get(&ctx, &format!("{TX_PREFIX}{}", req.id))
                        .await?
                        .ok_or_else(|| {
                            Error::not_found("transaction", format!("no transaction {}", req.id))
                        })?;
                    serde_json::from_value::<Transaction>(value)
                        .map_err(|e| Error::internal("corrupt", e.to_string()))
                }
            }),
        ],
        background: vec![background(move |ctx| relay(client, db3, ctx))],
    }
}

/// Most outbox entries a relay publishes at once before it deletes them.
const RELAY_BATCH: usize = 32;

/// Publishes outbox entries in key order, a batch at a time, and deletes them once the bus has
/// them.
///
/// Entries go out [`RELAY_BATCH`] at a time, each batch's publishes concurrently and its
/// deletes in one write, so one sync of the bus's disk and one of the store's cover a batch.
/// One entry at a time (a publish and a delete, each waiting for its sync) kept a relay to
/// one entry per two syncs: with syncs of 5 ms (a swarm sweep draws up to that) both relays,
/// working through the same entries, fell behind 100 payments a second and the outbox never
/// drained.
async fn relay(client: crate::framework::Client, db: StoreClient, ctx: Context) {
    loop {
        let call = ctx.with_timeout(Duration::from_secs(1));
        let page = match db.scan(&call, OUTBOX_PREFIX, None).await {
            Ok(p) if !p.items.is_empty() => p.items,
            _ => {
                crate::framework::timer::idle(IDLE).await;
                continue;
            }
        };
        let mut entries = page.into_iter();
        loop {
            let batch: Vec<(String, Value)> = entries.by_ref().take(RELAY_BATCH).collect();
            if batch.is_empty() {
                break;
            }
            let call = ctx.with_timeout(Duration::from_secs(1));
            let published = futures::future::join_all(batch.into_iter().map(|(key, payload)| {
                let publish = PublishRequest {
                    topic: TOPIC.to_string(),
                    id: key.trim_start_matches(OUTBOX_PREFIX).to_string(),
                    payload,
                };
                let (client, call) = (&client, &call);
                async move {
                    let published: Result<PublishResponse, Error> =
                        client.call(call, BUS, "publish", &publish).await;
                    (key, published)
                }
            }))
            .await;
            let mut deletes = Vec::new();
            let mut failed = false;
            for (key, published) in published {
                match published {
                    Ok(p) if p.stored => ctx.count("events.published", 1),
                    // Another relay, or this one before a crash, published it first.
                    Ok(_) => ctx.count("events.republished", 1),
                    Err(_) => {
                        failed = true;
                        continue;
                    }
                }
                deletes.push(Op::Delete { key });
            }
            if !deletes.is_empty() {
                // A deadline of its own: the batch's publishes may have used up theirs.
                let call = ctx.with_timeout(Duration::from_secs(1));
                let _ = db.write(&call, deletes, None).await;
            }
            if failed {
                crate::framework::timer::idle(IDLE).await;
                break;
            }
        }
    }
}

/// `service.balance`: `read`, plus opening the accounts and consuming `transaction.created`.
pub fn balance(env: &Env) -> Built {
    let db = StoreClient::new(env.client().clone(), BALANCE_DB);
    let db1 = db.clone();
    let consumer = Consumer {
        client: env.client().clone(),
        bus: BUS.to_string(),
        topic: TOPIC.to_string(),
        group: BALANCE_GROUP.to_string(),
        idle: IDLE,
    };
    Built {
        endpoints: vec![Endpoint::new(
            "read",
            move |ctx: Context, req: BalanceRequest| {
                let db = db1.clone();
                async move {
                    let value = db
                        .get(&ctx, &format!("{ACCOUNT_PREFIX}{}", req.account))
                        .await?
                        .ok_or_else(|| {
                            // Accounts are opened in the background when balance starts.
                            Error::unavailable(
                                "not_open",
                                format!("account {} is not open yet", req.account),
                            )
                        })?;
                    Ok(BalanceResponse {
                        account: req.account,
                        balance: value.as_i64().unwrap_or(0),
                    })
                }
            },
        )],
        background: vec![background(move |ctx| async move {
            open_accounts(&db, &ctx).await;
            let db = db.clone();
            consumer
                .run(ctx, move |ctx, event| {
                    let db = db.clone();
                    async move { apply(&db, &ctx, event).await }
                })
                .await;
        })],
    }
}

/// Writes the opening balances once (every balance instance tries; the key makes one apply),
/// retrying until the database answers. Nothing is applied before this.
async fn open_accounts(db: &StoreClient, ctx: &Context) {
    let ops: Vec<Op> = card::opening_balances()
        .into_iter()
        .map(|(account, balance)| Op::Put {
            key: format!("{ACCOUNT_PREFIX}{account}"),
            value: Value::from(balance),
        })
        .collect();
    loop {
        let call = ctx.with_timeout(Duration::from_secs(1));
        if db
            .write(&call, ops.clone(), Some(OPENING_KEY.to_string()))
            .await
            .is_ok()
        {
            return;
        }
        crate::framework::timer::idle(IDLE).await;
    }
}

/// Moves one transaction's money, once.
async fn apply(db: &StoreClient, ctx: &Context, event: Delivery) -> Result<(), Error> {
    let tx: Transaction = serde_json::from_value(event.payload)
        .map_err(|e| Error::bad_request("invalid_event", e.to_string()))?;
    let ops = vec![
        Op::Add {
            key: format!("{ACCOUNT_PREFIX}{}", tx.account),
            delta: -tx.amount,
            min: None,
        },
        Op::Add {
            key: format!("{ACCOUNT_PREFIX}{}", tx.merchant_account),
            delta: tx.amount,
            min: None,
        },
        Op::Put {
            key: format!("{APPLIED_PREFIX}{}", tx.id),
            value: Value::from(tx.amount),
        },
    ];
    let written = db.write(ctx, ops, Some(format!("apply/{}", tx.id))).await?;
    if written.applied {
        ctx.count("ledger.applied", 1);
        ctx.count("money.moved", tx.amount);
    } else {
        ctx.count("ledger.duplicates_skipped", 1);
    }
    Ok(())
}
