//! `service.account`: stores bank accounts (the talk's `main`, slide 70).
//!
//! Create, Read and List, written once and served over either network. Accounts live in the
//! instance's memory here; the wind tunnel's storage service replaces that with a database
//! reached over the transport.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::framework::{Context, Endpoint, Error, Server, ServiceConfig};
use crate::services::lock;

/// The service's name.
pub const NAME: &str = "service.account";

/// A bank account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The account id.
    pub id: String,
    /// Its owner.
    pub owner: String,
    /// Its display name.
    pub name: String,
}

/// `create` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateRequest {
    /// The id to create; must be new.
    pub id: String,
    /// The owner.
    pub owner: String,
    /// The display name.
    pub name: String,
}

/// `read` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadRequest {
    /// The account to read.
    pub id: String,
}

/// `list` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListRequest {
    /// Only this owner's accounts.
    pub owner: String,
}

/// `list` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListResponse {
    /// The owner's accounts, by id.
    pub accounts: Vec<Account>,
}

type Store = Arc<Mutex<BTreeMap<String, Account>>>;

fn store_lock(store: &Store) -> std::sync::MutexGuard<'_, BTreeMap<String, Account>> {
    lock(store)
}

/// The service's endpoints over one in-memory store.
pub fn endpoints() -> Vec<Endpoint> {
    let store: Store = Arc::default();
    let (s1, s2, s3) = (store.clone(), store.clone(), store);
    vec![
        Endpoint::new("create", move |ctx: Context, req: CreateRequest| {
            let store = s1.clone();
            async move {
                owned_by_caller(&ctx, &req.owner)?;
                create(&store, req)
            }
        })
        .require_user(),
        Endpoint::new("read", move |ctx: Context, req: ReadRequest| {
            let store = s2.clone();
            async move {
                let account = store_lock(&store)
                    .get(&req.id)
                    .cloned()
                    .ok_or_else(|| Error::not_found("account", format!("no account {}", req.id)))?;
                owned_by_caller(&ctx, &account.owner)?;
                Ok(account)
            }
        })
        .require_user(),
        Endpoint::new("list", move |ctx: Context, req: ListRequest| {
            let store = s3.clone();
            async move {
                owned_by_caller(&ctx, &req.owner)?;
                let accounts = store_lock(&store)
                    .values()
                    .filter(|a| a.owner == req.owner)
                    .cloned()
                    .collect();
                Ok(ListResponse { accounts })
            }
        })
        .require_user(),
    ]
}

/// A user (authenticated by the gateway, verified on arrival) may touch only their own
/// accounts. Every endpoint of the service requires a user, so a request without one never
/// gets here.
fn owned_by_caller(ctx: &Context, owner: &str) -> Result<(), Error> {
    match ctx.user() {
        None => Err(Error::of(
            crate::framework::ErrorKind::Unauthorized,
            "no_user",
            "no authenticated user",
        )),
        Some(user) if user != owner => Err(Error::of(
            crate::framework::ErrorKind::Forbidden,
            "not_owner",
            format!("{user} may not use this account"),
        )),
        _ => Ok(()),
    }
}

fn create(store: &Store, req: CreateRequest) -> Result<Account, Error> {
    if req.id.is_empty() {
        return Err(Error::bad_request("missing_param", "id is required").with_param("param", "id"));
    }
    let mut accounts = store_lock(store);
    if accounts.contains_key(&req.id) {
        return Err(Error::of(
            crate::framework::ErrorKind::PreconditionFailed,
            "exists",
            "an account with this id exists",
        ));
    }
    let account = Account {
        id: req.id,
        owner: req.owner,
        name: req.name,
    };
    accounts.insert(account.id.clone(), account.clone());
    Ok(account)
}

/// The service's config.
pub fn config() -> ServiceConfig {
    ServiceConfig::new(NAME, "Store bank accounts")
}

/// A server for `service.account` with its three endpoints added.
pub fn server() -> Server {
    let srv = Server::new(config());
    srv.add_endpoints(endpoints());
    srv
}
