//! The authorisation path: `api.card` (the edge, checking the user's scope with
//! `service.auth`), `service.card-processing` (the decision), and the reference services it
//! asks, `service.cards` and `service.merchant`.
//!
//! Processing records an approved payment with `service.transactions` and retries that call
//! on a timeout or an unavailable instance with the same idempotency key, so a retry never
//! records the payment twice. It counts its decisions and the amounts approved as business
//! metrics (the money actually moved is counted by `service.balance`, once per transaction).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::framework::{Call, Context, Endpoint, Error, ErrorKind};
use crate::services::auth::{AuthorizeRequest, AUTHORIZE};
use crate::services::card::ledger::BalanceResponse;
use crate::services::card::{
    self, Authorisation, Card, Decision, Merchant, Transaction, BALANCE, CARDS, MERCHANT,
    PROCESSING, TRANSACTIONS,
};
use crate::system::{Built, Env};

/// Attempts at recording a transaction before processing gives up.
const RECORD_ATTEMPTS: u32 = 3;
/// Time allowed for one attempt.
const RECORD_TIMEOUT: Duration = Duration::from_millis(150);

/// `read` request of `service.cards`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CardRequest {
    /// The card.
    pub card: String,
}

/// `read` request of `service.merchant`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MerchantRequest {
    /// The merchant.
    pub merchant: String,
}

/// `api.card`: `authorise`, for authenticated users with the `cards` scope.
pub fn api(env: &Env) -> Built {
    let env = env.clone();
    Built::endpoints(vec![Endpoint::new(
        "authorise",
        move |ctx: Context, req: Authorisation| {
            let env = env.clone();
            async move {
                let user = ctx.user().unwrap_or_default();
                let authorize = AuthorizeRequest {
                    user: user.to_string(),
                    scope: card::SCOPE.to_string(),
                };
                let _: Value = env
                    .client()
                    .call(&ctx, crate::services::auth::NAME, AUTHORIZE, &authorize)
                    .await?;
                let decision: Decision = env
                    .client()
                    .call(&ctx, PROCESSING, "authorise", &req)
                    .await?;
                Ok(decision)
            }
        },
    )
    .require_user()])
}

/// `service.card-processing`: `authorise`, callable only by `api.card`.
pub fn processing(env: &Env) -> Built {
    let env = env.clone();
    Built::endpoints(vec![Endpoint::new(
        "authorise",
        move |ctx: Context, req: Authorisation| {
            let env = env.clone();
            async move { authorise(&env, &ctx, req).await }
        },
    )
    .allow_services(&[card::API])
    .require_user()])
}

fn declined(ctx: &Context, reason: &str) -> Decision {
    ctx.count("authorisations.declined", 1);
    Decision {
        approved: false,
        transaction: None,
        reason: Some(reason.to_string()),
    }
}

async fn authorise(env: &Env, ctx: &Context, req: Authorisation) -> Result<Decision, Error> {
    if req.idempotency_key.is_empty() {
        return Err(
            Error::bad_request("missing_param", "idempotency_key is required")
                .with_param("param", "idempotency_key"),
        );
    }
    if req.amount <= 0 || req.amount > card::MAX_AMOUNT {
        return Err(Error::bad_request(
            "amount",
            format!("amount must be 1 to {} pence", card::MAX_AMOUNT),
        ));
    }
    let card: Card = env
        .client()
        .call(
            ctx,
            CARDS,
            "read",
            &CardRequest {
                card: req.card.clone(),
            },
        )
        .await?;
    if card.frozen {
        return Ok(declined(ctx, "card_frozen"));
    }
    let merchant: Merchant = env
        .client()
        .call(
            ctx,
            MERCHANT,
            "read",
            &MerchantRequest {
                merchant: req.merchant.clone(),
            },
        )
        .await?;
    let balance: BalanceResponse = env
        .client()
        .call(
            ctx,
            BALANCE,
            "read",
            &crate::services::card::ledger::BalanceRequest {
                account: card.account.clone(),
            },
        )
        .await?;
    if balance.balance < req.amount {
        return Ok(declined(ctx, "insufficient_funds"));
    }
    // Keys are the user's own: the transaction is named by who paid and their key, so another
    // user's replay of the same key is a payment of their own, never an answer to someone
    // else's (the store still refuses one key reused for a different payment).
    let user = ctx
        .user()
        .ok_or_else(|| Error::of(ErrorKind::Unauthorized, "no_user", "no authenticated user"))?;
    let tx = Transaction {
        id: transaction_id(user, &req.idempotency_key),
        card: card.card,
        account: card.account,
        merchant: merchant.merchant,
        merchant_account: merchant.account,
        amount: req.amount,
    };
    record(env, ctx, &tx).await?;
    ctx.count("authorisations.approved", 1);
    ctx.observe("authorisation.amount", tx.amount);
    Ok(Decision {
        approved: true,
        transaction: Some(tx.id),
        reason: None,
    })
}

/// The id of the transaction `user` makes with `key`: `<user>:<key>`. Users never contain ':'
/// (the authenticator issues them), so two users' keys never name one transaction.
pub fn transaction_id(user: &str, key: &str) -> String {
    format!("{user}:{key}")
}

/// Records `tx`, retrying a lost or refused attempt: the idempotency key makes it apply once.
async fn record(env: &Env, ctx: &Context, tx: &Transaction) -> Result<(), Error> {
    let mut last = Error::unavailable("not_tried", "no attempt made");
    for attempt in 1..=RECORD_ATTEMPTS {
        let call = Call::new(TRANSACTIONS, "create")
            .json(tx)?
            .timeout(RECORD_TIMEOUT);
        match env.client().send(ctx, call).await {
            Ok(_) => return Ok(()),
            Err(e) if retryable(&e) && attempt < RECORD_ATTEMPTS && !ctx.is_cancelled() => {
                ctx.count("transactions.retried", 1);
                last = e;
            }
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

fn retryable(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::Timeout | ErrorKind::Unavailable)
}

/// `service.cards`: `read`.
pub fn cards(env: &Env) -> Built {
    let env = env.clone();
    Built::endpoints(vec![Endpoint::new(
        "read",
        move |_ctx: Context, req: CardRequest| {
            let env = env.clone();
            async move {
                env.work_mean(Duration::from_micros(500)).await;
                card::card(&req.card)
                    .ok_or_else(|| Error::not_found("card", format!("no card {}", req.card)))
            }
        },
    )])
}

/// `service.merchant`: `read`.
pub fn merchants(env: &Env) -> Built {
    let env = env.clone();
    Built::endpoints(vec![Endpoint::new(
        "read",
        move |_ctx: Context, req: MerchantRequest| {
            let env = env.clone();
            async move {
                env.work_mean(Duration::from_micros(500)).await;
                card::merchant(&req.merchant).ok_or_else(|| {
                    Error::not_found("merchant", format!("no merchant {}", req.merchant))
                })
            }
        },
    )])
}
