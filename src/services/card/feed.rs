//! The feed side of the pipeline: `service.feed-generator` consumes `transaction.created`, has
//! `service.transaction-enrichment` describe it (with `service.merchant`), adds the item to the
//! account's feed in `service.feed` (keyed by the transaction, so a redelivery rewrites the same
//! item) and asks `service.apns` to notify the phone. A failed notification does not hold the
//! feed back: it is counted and dropped (graceful degradation).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::framework::{Context, Endpoint, Error};
use crate::services::bus::{Consumer, Delivery};
use crate::services::card::processing::MerchantRequest;
use crate::services::card::{
    Merchant, Transaction, APNS, BUS, ENRICHMENT, FEED, FEED_DB, MERCHANT, TOPIC,
};
use crate::services::store::{Op, StoreClient};
use crate::system::{background, Built, Env};

/// Key prefix of a feed item in `store.feed`: `feed/<account>/<transaction>`.
pub const FEED_PREFIX: &str = "feed/";
/// The consumer group of `service.feed-generator`.
pub const FEED_GROUP: &str = "feed-generator";

/// One item of an account's feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedItem {
    /// The account.
    pub account: String,
    /// The transaction it shows.
    pub id: String,
    /// What the person reads, e.g. `£12.34 at Merchant 7`.
    pub text: String,
    /// The merchant's category.
    pub category: String,
}

/// `list` request of `service.feed`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListRequest {
    /// The account.
    pub account: String,
}

/// `push` request of `service.apns`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Push {
    /// Whose phone.
    pub account: String,
    /// What it says.
    pub text: String,
}

/// `service.transaction-enrichment`: `enrich` a transaction into a feed item.
pub fn enrichment(env: &Env) -> Built {
    let env = env.clone();
    Built::endpoints(vec![Endpoint::new(
        "enrich",
        move |ctx: Context, tx: Transaction| {
            let env = env.clone();
            async move {
                let m: Merchant = env
                    .client()
                    .call(
                        &ctx,
                        MERCHANT,
                        "read",
                        &MerchantRequest {
                            merchant: tx.merchant.clone(),
                        },
                    )
                    .await?;
                env.work_mean(Duration::from_micros(500)).await;
                Ok(FeedItem {
                    account: tx.account,
                    text: format!("£{}.{:02} at {}", tx.amount / 100, tx.amount % 100, m.name),
                    category: m.category,
                    id: tx.id,
                })
            }
        },
    )])
}

/// `service.feed`: `add` and `list`.
pub fn feed(env: &Env) -> Built {
    let db = StoreClient::new(env.client().clone(), FEED_DB);
    let db2 = db.clone();
    Built::endpoints(vec![
        Endpoint::new("add", move |ctx: Context, item: FeedItem| {
            let db = db.clone();
            async move {
                let key = format!("{FEED_PREFIX}{}/{}", item.account, item.id);
                let value = serde_json::to_value(&item)
                    .map_err(|e| Error::internal("encode", e.to_string()))?;
                db.write(&ctx, vec![Op::Put { key, value }], None).await?;
                Ok(item)
            }
        }),
        Endpoint::new("list", move |ctx: Context, req: ListRequest| {
            let db = db2.clone();
            async move {
                let items = db
                    .scan_all(&ctx, &format!("{FEED_PREFIX}{}/", req.account))
                    .await?;
                Ok(items
                    .into_iter()
                    .filter_map(|(_, v)| serde_json::from_value::<FeedItem>(v).ok())
                    .collect::<Vec<_>>())
            }
        }),
    ])
}

/// `service.apns`: `push` a notification (simulated work).
pub fn apns(env: &Env) -> Built {
    let env = env.clone();
    Built::endpoints(vec![Endpoint::new(
        "push",
        move |ctx: Context, push: Push| {
            let env = env.clone();
            async move {
                env.work_mean(Duration::from_millis(3)).await;
                ctx.count("notifications.sent", 1);
                Ok(push)
            }
        },
    )])
}

/// `service.feed-generator`: no endpoints of its own, a consumer of `transaction.created`.
pub fn generator(env: &Env) -> Built {
    let consumer = Consumer {
        client: env.client().clone(),
        bus: BUS.to_string(),
        topic: TOPIC.to_string(),
        group: FEED_GROUP.to_string(),
        idle: Duration::from_millis(20),
    };
    let client = env.client().clone();
    Built {
        endpoints: Vec::new(),
        background: vec![background(move |ctx| {
            consumer.run(ctx, move |ctx, event| {
                let client = client.clone();
                async move { generate(&client, &ctx, event).await }
            })
        })],
    }
}

async fn generate(
    client: &crate::framework::Client,
    ctx: &Context,
    event: Delivery,
) -> Result<(), Error> {
    let tx: Transaction = serde_json::from_value(event.payload)
        .map_err(|e| Error::bad_request("invalid_event", e.to_string()))?;
    let item: FeedItem = client.call(ctx, ENRICHMENT, "enrich", &tx).await?;
    let item: FeedItem = client.call(ctx, FEED, "add", &item).await?;
    ctx.count("feed.items", 1);
    let push = Push {
        account: item.account,
        text: item.text,
    };
    let pushed: Result<Push, Error> = client.call(ctx, APNS, "push", &push).await;
    if pushed.is_err() {
        ctx.count("notifications.failed", 1);
    }
    Ok(())
}
