//! The webhook stack (the talk's slides 57-61 and 97-111): `api.webhook` checks the caller with
//! `service.auth`, then fans each delivery out to every `service.webhook` instance and answers
//! once a majority has it durably, cancelling the rest; each webhook instance sends the
//! callback and records it in its own database (`store.webhook[i]`).
//!
//! One slow webhook instance therefore costs almost nothing: the majority answers without it,
//! and its call is cancelled. A delivery acknowledged to the caller is on a majority of the
//! databases, so it survives the crash of any minority.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::framework::{Call, Context, Endpoint, Error, ErrorKind, FanoutPolicy};
use crate::services::auth::{AuthorizeRequest, AUTHORIZE};
use crate::services::store::{Op, StoreClient};
use crate::system::{Built, Env};

/// The edge service.
pub const API: &str = "api.webhook";
/// The delivering service.
pub const SERVICE: &str = "service.webhook";
/// The webhook instances' databases: instance `i` of [`SERVICE`] uses instance `i` here.
pub const DB: &str = "store.webhook";
/// The scope a user needs to send webhooks.
pub const SCOPE: &str = "webhooks";
/// Key prefix of a delivery in a webhook database.
pub const PREFIX: &str = "webhook/";

/// One webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    /// Unique id, chosen by the caller; sending it twice delivers it once.
    pub id: String,
    /// The account whose event it is.
    pub account: String,
    /// Where it is delivered.
    pub url: String,
    /// The event, e.g. `transaction.created`.
    pub event: String,
}

/// `deliver` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    /// The delivery.
    pub id: String,
    /// Webhook instances that had recorded it when the answer went out.
    pub stored: u32,
}

/// `read` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadRequest {
    /// The delivery.
    pub id: String,
}

/// `api.webhook`'s endpoints: `deliver` and `read`.
pub fn api(env: &Env) -> Built {
    let (k1, k2) = (env.clone(), env.clone());
    Built::endpoints(vec![
        Endpoint::new("deliver", move |ctx: Context, hook: Webhook| {
            let env = k1.clone();
            async move { api_deliver(&env, &ctx, hook).await }
        })
        .require_user(),
        Endpoint::new("read", move |ctx: Context, req: ReadRequest| {
            let env = k2.clone();
            async move {
                let call = Call::new(SERVICE, "read").json(&req)?;
                let result = env
                    .client()
                    .fanout(FanoutPolicy::FirstSuccess)
                    .to_each_instance(call)
                    .execute(&ctx)
                    .await;
                let found = result.replies().next().map(|r| r.decode::<Webhook>());
                found.unwrap_or_else(|| {
                    Err(result
                        .outcome
                        .err()
                        .unwrap_or_else(|| Error::not_found("webhook", "no such delivery")))
                })
            }
        })
        .require_user(),
    ])
}

async fn api_deliver(env: &Env, ctx: &Context, hook: Webhook) -> Result<Delivered, Error> {
    for (field, value) in [("id", &hook.id), ("url", &hook.url)] {
        if value.is_empty() {
            return Err(
                Error::bad_request("missing_param", format!("{field} is required"))
                    .with_param("param", field),
            );
        }
    }
    let user = ctx.user().unwrap_or_default();
    let authorize = AuthorizeRequest {
        user: user.to_string(),
        scope: SCOPE.to_string(),
    };
    let _: Value = env
        .client()
        .call(ctx, crate::services::auth::NAME, AUTHORIZE, &authorize)
        .await?;
    let majority = (env.instances_of(SERVICE) / 2 + 1) as usize;
    let call = Call::new(SERVICE, "deliver").json(&hook)?;
    let result = env
        .client()
        .fanout(FanoutPolicy::Quorum(majority))
        .to_each_instance(call)
        .execute(ctx)
        .await;
    if let Err(e) = result.outcome {
        ctx.count("webhooks.failed", 1);
        return Err(e);
    }
    ctx.count("webhooks.delivered", 1);
    Ok(Delivered {
        stored: result.replies().count() as u32,
        id: hook.id,
    })
}

/// `service.webhook`'s endpoints: `deliver` (send the callback, record it) and `read`.
pub fn service(env: &Env) -> Built {
    let db = db_of(env);
    let (k1, db1, db2) = (env.clone(), db.clone(), db);
    Built::endpoints(vec![
        Endpoint::new("deliver", move |ctx: Context, hook: Webhook| {
            let (env, db) = (k1.clone(), db1.clone());
            async move {
                // The callback to the customer's URL: simulated work.
                env.work_mean(Duration::from_millis(2)).await;
                let key = format!("{PREFIX}{}", hook.id);
                let value = serde_json::to_value(&hook)
                    .map_err(|e| Error::internal("encode", e.to_string()))?;
                db.write(&ctx, vec![Op::Put { key, value }], Some(hook.id.clone()))
                    .await?;
                Ok(Delivered {
                    id: hook.id,
                    stored: 1,
                })
            }
        }),
        Endpoint::new("read", move |ctx: Context, req: ReadRequest| {
            let db = db2.clone();
            async move {
                let value = db
                    .get(&ctx, &format!("{PREFIX}{}", req.id))
                    .await?
                    .ok_or_else(|| {
                        Error::not_found("webhook", format!("no delivery {}", req.id))
                    })?;
                serde_json::from_value::<Webhook>(value)
                    .map_err(|e| Error::of(ErrorKind::Internal, "corrupt", e.to_string()))
            }
        }),
    ])
}

/// The database of this webhook instance: instance `index % n` of [`DB`].
fn db_of(env: &Env) -> StoreClient {
    let n = env.instances_of(DB).max(1);
    StoreClient::new(env.client().clone(), DB).pinned(&format!("{DB}[{}]", env.index() % n))
}
