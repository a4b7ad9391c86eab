//! `store`: the built-in key-value database, one instance per database, reached over the
//! transport like any service, so a partition between a service and its database is real.
//!
//! Writes are atomic batches of operations (put, insert, add, delete). A write is acknowledged
//! only once durable: a single writer task appends each batch of waiting writes to the
//! instance's [`Disk`], syncs it (group commit: one sync covers every write that arrived while
//! the previous one ran), applies it and only then answers. Reads see only durable data. A
//! write may carry an idempotency key: a retry with the same key answers `applied: false` and
//! changes nothing, even across a crash, because the key is in the same durable record. The key
//! is bound to the write it first applied: the same key on a different write is refused with
//! `precondition_failed.idempotency_key_reused` (a 412 at the gateway), so one caller cannot
//! replay another's key to get another's answer.
//! A restarted instance rebuilds its state by replaying the disk.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::framework::{Call, Client, Context, Endpoint, Error, ErrorKind};
use crate::services::lock;
use crate::system::sabotage::{self, Sabotage};
use crate::system::{background, Built, Disk, Env};

/// How long the `store/late-commit` fault point holds a group commit back.
const LATE_COMMIT: std::time::Duration = std::time::Duration::from_millis(50);
/// Most writes one sync covers.
const MAX_BATCH: usize = 256;
/// Default and largest page of a scan.
const SCAN_PAGE: usize = 1000;
const SCAN_MAX: usize = 10_000;

/// One operation of a write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Sets `key` to `value`.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Value,
    },
    /// Sets `key` to `value`; the write fails with `precondition_failed.exists` if it is set.
    Insert {
        /// The key.
        key: String,
        /// The value.
        value: Value,
    },
    /// Adds `delta` to the integer at `key` (0 when unset); the write fails with
    /// `precondition_failed.insufficient` if the result would be below `min`.
    Add {
        /// The key.
        key: String,
        /// The amount added (negative to subtract).
        delta: i64,
        /// The least the result may be.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<i64>,
    },
    /// Removes `key`.
    Delete {
        /// The key.
        key: String,
    },
}

/// `write` request: operations applied together or not at all.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WriteRequest {
    /// The operations, in order.
    pub ops: Vec<Op>,
    /// Makes a retried write apply once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// `write` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteResponse {
    /// False when an earlier write with the same idempotency key already applied.
    pub applied: bool,
}

/// `get` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetRequest {
    /// The key.
    pub key: String,
}

/// `get` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetResponse {
    /// The value, if the key is set.
    pub value: Option<Value>,
}

/// `scan` request: keys with a prefix, in key order, a page at a time.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScanRequest {
    /// Only keys starting with this.
    pub prefix: String,
    /// Only keys after this one (the previous page's `next`).
    #[serde(default)]
    pub after: Option<String>,
    /// Most items in the page (default 1,000, at most 10,000).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// `scan` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanResponse {
    /// The page, in key order.
    pub items: Vec<(String, Value)>,
    /// Where the next page starts, if there is one.
    pub next: Option<String>,
}

/// One durable log record: a write that was applied.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    ops: Vec<Op>,
    #[serde(default)]
    key: Option<String>,
}

#[derive(Debug, Default)]
struct Data {
    values: BTreeMap<String, Value>,
    /// Each idempotency key applied, with the digest of the write it applied: a key reused
    /// for another write is refused, not answered as if it were the first.
    idempotency: BTreeMap<String, u64>,
}

/// A digest of a write's operations, to tell a retry of it from another write under its key.
fn digest(ops: &[Op]) -> u64 {
    let mut h = crate::framework::ids::Fnv1a::default();
    h.write(&serde_json::to_vec(ops).unwrap_or_default());
    h.finish()
}

/// The error for a key already used by a different write.
fn reused(key: &str) -> Error {
    Error::of(
        ErrorKind::PreconditionFailed,
        "idempotency_key_reused",
        "this idempotency key was already used for a different request",
    )
    .with_param("idempotency_key", key)
}

impl Data {
    /// What `ops` would make of the keys they touch, read through `staged`; or why they fail.
    fn stage(&self, staged: &mut BTreeMap<String, Option<Value>>, ops: &[Op]) -> Result<(), Error> {
        let mut local: BTreeMap<String, Option<Value>> = BTreeMap::new();
        let current = |k: &str, local: &BTreeMap<String, Option<Value>>| -> Option<Value> {
            match local.get(k).or_else(|| staged.get(k)) {
                Some(v) => v.clone(),
                None => self.values.get(k).cloned(),
            }
        };
        for op in ops {
            match op {
                Op::Put { key, value } => {
                    local.insert(key.clone(), Some(value.clone()));
                }
                Op::Insert { key, value } => {
                    if current(key, &local).is_some() {
                        return Err(Error::of(
                            ErrorKind::PreconditionFailed,
                            "exists",
                            format!("{key} is already set"),
                        )
                        .with_param("key", key.as_str()));
                    }
                    local.insert(key.clone(), Some(value.clone()));
                }
                Op::Add { key, delta, min } => {
                    let now = match current(key, &local) {
                        None => 0,
                        Some(v) => v.as_i64().ok_or_else(|| {
                            Error::bad_request("not_a_number", format!("{key} is not an integer"))
                        })?,
                    };
                    let next = now.checked_add(*delta).ok_or_else(|| {
                        Error::bad_request("overflow", format!("{key} would overflow"))
                    })?;
                    if min.is_some_and(|m| next < m) {
                        return Err(Error::of(
                            ErrorKind::PreconditionFailed,
                            "insufficient",
                            format!("{key} would fall to {next}"),
                        )
                        .with_param("key", key.as_str()));
                    }
                    local.insert(key.clone(), Some(Value::from(next)));
                }
                Op::Delete { key } => {
                    local.insert(key.clone(), None);
                }
            }
        }
        staged.extend(local);
        Ok(())
    }

    fn apply(&mut self, staged: BTreeMap<String, Option<Value>>) {
        for (k, v) in staged {
            match v {
                Some(v) => self.values.insert(k, v),
                None => self.values.remove(&k),
            };
        }
    }

    /// Rebuilds the state from a disk's durable records.
    fn replay(disk: &Disk) -> Data {
        let mut data = Data::default();
        for raw in disk.durable() {
            // Every record was encoded by this module, after its ops were validated; a record
            // that does not decode would be a corrupt disk, and is skipped.
            let Ok(record) = serde_json::from_slice::<Record>(&raw) else {
                tracing::error!("store: skipping a log record that does not decode");
                continue;
            };
            let mut staged = BTreeMap::new();
            if data.stage(&mut staged, &record.ops).is_ok() {
                data.apply(staged);
            }
            if let Some(k) = record.key {
                data.idempotency.insert(k, digest(&record.ops));
            }
        }
        data
    }
}

type Pending = (WriteRequest, Answer);
/// Where a write's answer goes.
type Answer = oneshot::Sender<Result<WriteResponse, Error>>;

/// One store instance over `disk`, replaying what it holds: its endpoints, and its writer as
/// background work (it ends when the endpoints are dropped).
pub fn service(disk: Arc<Disk>) -> Built {
    let (endpoints, writer) = parts(disk, None);
    Built::endpoints(endpoints).with_background(background(move |_ctx| writer))
}

/// One store instance of `env` over its disk `data`, with its fault points: in a run that asks
/// for them (see [`Env::buggify`]), `store/busy` refuses a write as `unavailable.busy` (callers
/// retry with their idempotency key) and `store/late-commit` delays a group commit by 50 ms.
pub fn service_in(env: &Env) -> Built {
    let (endpoints, writer) = parts(env.disk("data"), Some(env.clone()));
    Built::endpoints(endpoints).with_background(background(move |_ctx| writer))
}

/// The store's endpoints over `disk`, replaying what it holds; spawns the writer task on the
/// current runtime, which ends when the endpoints are dropped.
pub fn endpoints(disk: Arc<Disk>) -> Vec<Endpoint> {
    let (endpoints, writer) = parts(disk, None);
    crate::framework::task::spawn(writer);
    endpoints
}

/// The endpoints over `disk`, and the writer that must run for writes to be answered.
fn parts(
    disk: Arc<Disk>,
    points: Option<Env>,
) -> (Vec<Endpoint>, impl std::future::Future<Output = ()> + Send) {
    let data = Arc::new(Mutex::new(Data::replay(&disk)));
    let (tx, rx) = mpsc::unbounded_channel::<Pending>();
    let writer = writer(disk, data.clone(), rx, points.clone());
    let (d1, d2) = (data.clone(), data);
    let endpoints = vec![
        Endpoint::new("write", move |_ctx: Context, req: WriteRequest| {
            let tx = tx.clone();
            let busy = points.as_ref().is_some_and(|env| env.buggify("store/busy"));
            async move {
                if busy {
                    return Err(Error::unavailable(
                        "busy",
                        "the store is busy (a fault point)",
                    ));
                }
                let (done, answer) = oneshot::channel();
                tx.send((req, done))
                    .map_err(|_| Error::unavailable("stopping", "the store is stopping"))?;
                answer
                    .await
                    .map_err(|_| Error::unavailable("stopping", "the store stopped"))?
            }
        }),
        Endpoint::new("get", move |_ctx: Context, req: GetRequest| {
            let value = lock(&d1).values.get(&req.key).cloned();
            async move { Ok(GetResponse { value }) }
        }),
        Endpoint::new("scan", move |_ctx: Context, req: ScanRequest| {
            let page = scan(&lock(&d2), &req);
            async move { Ok(page) }
        }),
    ];
    (endpoints, writer)
}

fn scan(data: &Data, req: &ScanRequest) -> ScanResponse {
    use std::ops::Bound;
    let limit = req.limit.unwrap_or(SCAN_PAGE).clamp(1, SCAN_MAX);
    let start = match &req.after {
        Some(after) if after.as_str() >= req.prefix.as_str() => Bound::Excluded(after.clone()),
        _ => Bound::Included(req.prefix.clone()),
    };
    let mut items: Vec<(String, Value)> = data
        .values
        .range((start, Bound::Unbounded))
        .take_while(|(k, _)| k.starts_with(&req.prefix))
        .take(limit + 1)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|(k, _)| k.clone())
    } else {
        None
    };
    ScanResponse { items, next }
}

/// The single writer: batches waiting writes, makes them durable with one sync, applies them,
/// then answers each.
async fn writer(
    disk: Arc<Disk>,
    data: Arc<Mutex<Data>>,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    points: Option<Env>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let mut staged = BTreeMap::new();
        let mut answers = Vec::with_capacity(batch.len());
        let mut keys_in_batch = BTreeMap::new();
        {
            let d = lock(&data);
            for (req, done) in batch {
                let key = req.idempotency_key.clone();
                let ops_digest = key.as_ref().map(|_| digest(&req.ops));
                let seen = key.as_ref().and_then(|k| {
                    d.idempotency
                        .get(k)
                        .or_else(|| keys_in_batch.get(k))
                        .copied()
                });
                if let (Some(k), Some(first)) = (&key, seen) {
                    let answer = if Some(first) == ops_digest {
                        Ok(WriteResponse { applied: false })
                    } else {
                        Err(reused(k))
                    };
                    answers.push((done, answer));
                    continue;
                }
                match d.stage(&mut staged, &req.ops) {
                    Ok(()) => {
                        let record = Record {
                            ops: req.ops,
                            key: key.clone(),
                        };
                        match serde_json::to_vec(&record) {
                            Ok(bytes) => disk.append(Bytes::from(bytes)),
                            Err(e) => {
                                answers.push((done, Err(Error::internal("encode", e.to_string()))));
                                continue;
                            }
                        }
                        if let (Some(k), Some(d)) = (key, ops_digest) {
                            keys_in_batch.insert(k, d);
                        }
                        answers.push((done, Ok(WriteResponse { applied: true })));
                    }
                    Err(e) => answers.push((done, Err(e))),
                }
            }
        }
        if points
            .as_ref()
            .is_some_and(|env| env.buggify("store/late-commit"))
        {
            crate::framework::timer::sleep(LATE_COMMIT).await;
        }
        if sabotage::on(Sabotage::StoreAcksBeforeSync) {
            // The deliberate bug: applied and answered first, made durable after.
            answer(&data, staged, keys_in_batch, answers);
            disk.commit().await;
            continue;
        }
        disk.commit().await;
        answer(&data, staged, keys_in_batch, answers);
    }
}

/// Applies a synced batch and answers each of its writes.
fn answer(
    data: &Mutex<Data>,
    staged: BTreeMap<String, Option<Value>>,
    keys: BTreeMap<String, u64>,
    answers: Vec<(Answer, Result<WriteResponse, Error>)>,
) {
    {
        let mut d = lock(data);
        d.apply(staged);
        d.idempotency.extend(keys);
    }
    for (done, answer) in answers {
        let _ = done.send(answer); // the caller may have gone; the write stands
    }
}

/// A typed client for one store service (or one instance of it).
#[derive(Debug, Clone)]
pub struct StoreClient {
    client: Client,
    service: String,
    instance: Option<String>,
}

impl StoreClient {
    /// A client for store service `service`, through `client`.
    pub fn new(client: Client, service: &str) -> StoreClient {
        StoreClient {
            client,
            service: service.to_string(),
            instance: None,
        }
    }

    /// The same client, pinned to instance `id` of the service (a database per instance).
    pub fn pinned(mut self, id: &str) -> StoreClient {
        self.instance = Some(id.to_string());
        self
    }

    fn call(&self, endpoint: &str) -> Call {
        let call = Call::new(&self.service, endpoint);
        match &self.instance {
            Some(id) => call.instance(id),
            None => call,
        }
    }

    /// Applies `ops` atomically, once per `idempotency_key`.
    pub async fn write(
        &self,
        ctx: &Context,
        ops: Vec<Op>,
        idempotency_key: Option<String>,
    ) -> Result<WriteResponse, Error> {
        let req = WriteRequest {
            ops,
            idempotency_key,
        };
        self.client
            .send(ctx, self.call("write").json(&req)?)
            .await?
            .decode()
    }

    /// The value at `key`, if set.
    pub async fn get(&self, ctx: &Context, key: &str) -> Result<Option<Value>, Error> {
        let req = GetRequest {
            key: key.to_string(),
        };
        let resp: GetResponse = self
            .client
            .send(ctx, self.call("get").json(&req)?)
            .await?
            .decode()?;
        Ok(resp.value)
    }

    /// One page of keys under `prefix` after `after`.
    pub async fn scan(
        &self,
        ctx: &Context,
        prefix: &str,
        after: Option<String>,
    ) -> Result<ScanResponse, Error> {
        let req = ScanRequest {
            prefix: prefix.to_string(),
            after,
            limit: None,
        };
        self.client
            .send(ctx, self.call("scan").json(&req)?)
            .await?
            .decode()
    }

    /// Every key under `prefix`, page by page.
    pub async fn scan_all(
        &self,
        ctx: &Context,
        prefix: &str,
    ) -> Result<Vec<(String, Value)>, Error> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self.scan(ctx, prefix, after).await?;
            out.extend(page.items);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str, v: i64) -> Op {
        Op::Put {
            key: k.into(),
            value: Value::from(v),
        }
    }

    #[test]
    fn a_batch_is_all_or_nothing_and_sees_its_own_earlier_ops() {
        let mut data = Data::default();
        let mut staged = BTreeMap::new();
        data.stage(&mut staged, &[put("a", 5)]).expect("put");
        let take = |n: i64| Op::Add {
            key: "a".into(),
            delta: -n,
            min: Some(0),
        };
        data.stage(&mut staged, &[take(3)]).expect("5 - 3");
        let err = data
            .stage(&mut staged, &[put("b", 1), take(3)])
            .expect_err("2 - 3 < 0");
        assert_eq!(err.code(), "precondition_failed.insufficient");
        data.apply(staged);
        assert_eq!(data.values.get("a"), Some(&Value::from(2)));
        assert_eq!(data.values.get("b"), None, "the failed write left nothing");
    }

    #[test]
    fn scan_pages_through_a_prefix_in_key_order() {
        let mut data = Data::default();
        for k in ["a/1", "a/2", "a/3", "b/1"] {
            data.values.insert(k.into(), Value::from(1));
        }
        let mut req = ScanRequest {
            prefix: "a/".into(),
            after: None,
            limit: Some(2),
        };
        let p1 = scan(&data, &req);
        assert_eq!(p1.items.len(), 2);
        assert_eq!(p1.next.as_deref(), Some("a/2"));
        req.after = p1.next;
        let p2 = scan(&data, &req);
        let keys: Vec<&str> = p2.items.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, vec!["a/3"]);
        assert_eq!(p2.next, None);
    }
}
