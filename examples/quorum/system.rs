//! A replicated key-value store in two services, written on windtunnel's framework: the
//! example a newcomer copies (docs/own-services.md walks through it).
//!
//! - `kv-front` (scenario service `api.kv`): `put` fans each write out to every replica and
//!   answers as soon as a majority stored it, cancelling the rest; `get` asks the replicas and
//!   takes the first that has the key.
//! - `kv-replica` (scenario service `kv.replica`): keeps its keys on its disk, so a restart
//!   replays them; `store`, `get`, and `keys` (for the invariant).
//!
//! The system's invariant, checked after every run: every put acknowledged to a caller is on a
//! majority of the replicas.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use windtunnel::framework::{Call, Context, Endpoint, Error, FanoutPolicy};
use windtunnel::system::{
    Built, Disk, Env, Invariant, LoadEnd, Notes, ServiceDef, System, Topology, Verifier, Verify,
};

/// The replicas' service name, as the scenario file declares it.
pub const REPLICAS: &str = "kv.replica";
/// The kind under which acknowledged puts are noted for the invariant.
const PUTS: &str = "put";

/// A write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Put {
    /// The key.
    pub key: String,
    /// Its value.
    pub value: String,
}

/// The answer to a put: how many replicas had it when the answer went out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    /// The key.
    pub key: String,
    /// Replicas that stored it.
    pub replicas: u32,
}

/// A read, or a request for every key (`key` empty).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Get {
    /// The key.
    pub key: String,
}

/// The two services, their load bodies and their invariant.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quorum;

impl System for Quorum {
    fn name(&self) -> &str {
        "quorum"
    }

    fn services(&self) -> Vec<ServiceDef> {
        vec![
            ServiceDef::new("kv-front", front).calls(&[REPLICAS]),
            ServiceDef::new("kv-replica", replica),
        ]
    }

    fn request(&self, to: LoadEnd<'_>, n: u64, _rng: &mut ChaCha8Rng) -> Option<Bytes> {
        let key = format!("{}-{n}", to.load);
        let body = match to.endpoint {
            "put" => serde_json::to_vec(&Put {
                value: format!("value of {key}"),
                key,
            }),
            _ => serde_json::to_vec(&Get { key }),
        };
        body.ok().map(Bytes::from)
    }

    fn answered(&self, to: LoadEnd<'_>, answer: &[u8], notes: &Notes) {
        if let ("put", Ok(stored)) = (to.endpoint, serde_json::from_slice::<Stored>(answer)) {
            notes.add(PUTS, stored.key);
        }
    }

    fn verifier(&self, topology: &Topology) -> Option<Verifier> {
        topology
            .has_builtin("kv-replica")
            .then(|| Verifier::new(on_a_majority))
    }
}

/// `kv-front`: quorum writes, first-answer reads.
fn front(env: &Env) -> Built {
    let (put_env, get_env) = (env.clone(), env.clone());
    Built::endpoints(vec![
        Endpoint::new("put", move |ctx: Context, put: Put| {
            let env = put_env.clone();
            async move {
                let majority = env.instances_of(REPLICAS) / 2 + 1;
                let call = Call::new(REPLICAS, "store").json(&put)?;
                let result = env
                    .client()
                    .fanout(FanoutPolicy::Quorum(majority as usize))
                    .to_each_instance(call.timeout(Duration::from_millis(100)))
                    .execute(&ctx)
                    .await;
                let replicas = result.replies().count() as u32;
                result.outcome?;
                Ok(Stored {
                    key: put.key,
                    replicas,
                })
            }
        }),
        Endpoint::new("get", move |ctx: Context, get: Get| {
            let env = get_env.clone();
            async move {
                let call = Call::new(REPLICAS, "get").json(&get)?;
                let result = env
                    .client()
                    .fanout(FanoutPolicy::FirstSuccess)
                    .to_each_instance(call)
                    .execute(&ctx)
                    .await;
                let found = result.replies().next().map(|r| r.decode::<Put>());
                result.outcome?;
                found.unwrap_or_else(|| Err(Error::not_found("key", &get.key)))
            }
        }),
    ])
}

/// One replica's keys, in memory and on its disk.
struct Replica {
    disk: Arc<Disk>,
    keys: Mutex<BTreeMap<String, String>>,
}

impl Replica {
    /// The replica that `disk` holds: what survived the last crash.
    fn replay(disk: Arc<Disk>) -> Replica {
        let keys = disk
            .durable()
            .iter()
            .filter_map(|record| serde_json::from_slice::<Put>(record).ok())
            .map(|put| (put.key, put.value))
            .collect();
        Replica {
            disk,
            keys: Mutex::new(keys),
        }
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `kv-replica`: a write is answered only once it is synced to the disk.
fn replica(env: &Env) -> Built {
    let state = Arc::new(Replica::replay(env.disk("data")));
    let (store_env, s1, s2, s3) = (env.clone(), state.clone(), state.clone(), state);
    Built::endpoints(vec![
        Endpoint::new("store", move |_ctx: Context, put: Put| {
            let (env, state) = (store_env.clone(), s1.clone());
            async move {
                env.work_mean(Duration::from_millis(2)).await;
                let record = serde_json::to_vec(&put)
                    .map_err(|e| Error::internal("encode", e.to_string()))?;
                state.disk.append(Bytes::from(record));
                tokio::time::sleep(Duration::from_millis(1)).await; // the sync
                state.disk.sync();
                state.keys().insert(put.key.clone(), put.value);
                Ok(Stored {
                    key: put.key,
                    replicas: 1,
                })
            }
        }),
        Endpoint::new("get", move |_ctx: Context, get: Get| {
            let value = s2.keys().get(&get.key).cloned();
            async move {
                let value = value.ok_or_else(|| Error::not_found("key", &get.key))?;
                Ok(Put {
                    key: get.key,
                    value,
                })
            }
        }),
        Endpoint::new("keys", move |_ctx: Context, _get: Get| {
            let keys: Vec<String> = s3.keys().keys().cloned().collect();
            async move { Ok(keys) }
        }),
    ])
}

/// The invariant: every acknowledged put is on a majority of the replicas, read back from each.
async fn on_a_majority(v: Verify) -> Vec<Invariant> {
    let name = "acknowledged_puts_on_a_majority";
    let replicas = v.topology.instances(REPLICAS);
    let mut copies: BTreeMap<String, u32> = BTreeMap::new();
    let ctx = Context::background().with_timeout(Duration::from_secs(10));
    for i in 0..replicas {
        let id = windtunnel::system::instance_id(REPLICAS, i);
        let call = Call::new(REPLICAS, "keys").json(&Get { key: String::new() });
        let reply = match call {
            Ok(call) => v.client.send(&ctx, call.instance(&id)).await,
            Err(e) => Err(e),
        };
        match reply.and_then(|r| r.decode::<Vec<String>>()) {
            Ok(keys) => keys
                .into_iter()
                .for_each(|k| *copies.entry(k).or_default() += 1),
            Err(e) => return vec![Invariant::unreadable(name, &format!("{id}: {e}"))],
        }
    }
    let acked = v.notes.of(PUTS);
    let majority = replicas / 2 + 1;
    let short: Vec<&String> = acked
        .iter()
        .filter(|k| copies.get(*k).copied().unwrap_or(0) < majority)
        .collect();
    let detail = match short.first() {
        None => format!(
            "all {} acknowledged puts are on at least {majority} of {replicas} replicas",
            acked.len()
        ),
        Some(first) => format!(
            "{} acknowledged puts are on fewer than {majority} replicas, e.g. {first}",
            short.len()
        ),
    };
    let figures = [
        ("acknowledged", acked.len() as i64),
        ("under_replicated", short.len() as i64),
    ];
    vec![Invariant::new(name, short.is_empty(), detail, &figures)]
}
