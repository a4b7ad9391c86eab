//! `bus`: the built-in event bus, with at-least-once delivery (the talk's event-driven
//! architecture, slides 89-95).
//!
//! A publisher's event is durable before `publish` answers, and publishing the same event id
//! twice stores it once, so a publisher may retry freely. Consumers pull: `poll` hands a group
//! the oldest events it has not acknowledged, each leased for a visibility timeout; `ack`
//! settles them durably. An event whose lease runs out (its consumer crashed, was partitioned
//! away or failed) is handed out again, so every event reaches every group at least once and
//! consumers must be idempotent. Every group sees every event from the start of the log.
//! [`Consumer`] is the polling loop a consuming service runs.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use crate::framework::{Client, Context, Endpoint, Error, ErrorKind};
use crate::services::lock;
use crate::system::Disk;

/// How long a polled event stays leased before it is handed out again.
pub const VISIBILITY: Duration = Duration::from_secs(2);
/// Most events one poll returns.
const MAX_POLL: usize = 256;

/// `publish` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishRequest {
    /// The topic, e.g. `transaction.created`.
    pub topic: String,
    /// The event's id: publishing an id twice stores it once.
    pub id: String,
    /// What happened.
    pub payload: Value,
}

/// `publish` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishResponse {
    /// False when the id was already published.
    pub stored: bool,
}

/// `poll` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PollRequest {
    /// The topic.
    pub topic: String,
    /// The consumer group.
    pub group: String,
    /// Most events wanted.
    pub max: usize,
}

/// One delivered event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Its position in the topic (what `ack` names).
    pub seq: u64,
    /// The publisher's id.
    pub id: String,
    /// What happened.
    pub payload: Value,
    /// 1 on first delivery to this group, more on redelivery.
    pub attempt: u32,
}

/// `poll` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollResponse {
    /// Oldest first.
    pub events: Vec<Delivery>,
}

/// `ack` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AckRequest {
    /// The topic.
    pub topic: String,
    /// The consumer group.
    pub group: String,
    /// The events it has handled.
    pub seqs: Vec<u64>,
}

/// `stats` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatsRequest {
    /// The topic.
    pub topic: String,
    /// The groups to report on.
    pub groups: Vec<String>,
}

/// `stats` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsResponse {
    /// Durable events in the topic.
    pub published: u64,
    /// Per group asked for: events it has not acknowledged.
    pub unacked: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Record {
    Published {
        topic: String,
        id: String,
        payload: Value,
    },
    Acked {
        topic: String,
        group: String,
        seqs: Vec<u64>,
    },
}

#[derive(Debug)]
struct Stored {
    id: String,
    payload: Value,
    durable: bool,
}

#[derive(Debug, Default)]
struct Group {
    acked: BTreeSet<u64>,
    /// Every seq below this is acknowledged.
    floor: u64,
    leases: BTreeMap<u64, Instant>,
    deliveries: BTreeMap<u64, u32>,
}

impl Group {
    fn ack(&mut self, seq: u64) {
        self.acked.insert(seq);
        self.leases.remove(&seq);
        self.deliveries.remove(&seq);
        while self.acked.remove(&self.floor) {
            self.floor += 1;
        }
    }

    fn is_acked(&self, seq: u64) -> bool {
        seq < self.floor || self.acked.contains(&seq)
    }
}

#[derive(Debug, Default)]
struct Topic {
    events: Vec<Stored>,
    ids: BTreeSet<String>,
    groups: BTreeMap<String, Group>,
}

#[derive(Debug, Default)]
struct State {
    topics: BTreeMap<String, Topic>,
}

impl State {
    fn replay(disk: &Disk) -> State {
        let mut s = State::default();
        for raw in disk.durable() {
            let Ok(record) = serde_json::from_slice::<Record>(&raw) else {
                tracing::error!("bus: skipping a log record that does not decode");
                continue;
            };
            match record {
                Record::Published { topic, id, payload } => {
                    let t = s.topics.entry(topic).or_default();
                    if t.ids.insert(id.clone()) {
                        t.events.push(Stored {
                            id,
                            payload,
                            durable: true,
                        });
                    }
                }
                Record::Acked { topic, group, seqs } => {
                    let g = s.topics.entry(topic).or_default().groups.entry(group);
                    let g = g.or_default();
                    for seq in seqs {
                        g.ack(seq);
                    }
                }
            }
        }
        s
    }
}

/// The bus's endpoints over `disk`, replaying what it holds. Redeliveries are counted as the
/// business metric `bus.redelivered`.
pub fn endpoints(disk: Arc<Disk>) -> Vec<Endpoint> {
    let state = Arc::new(Mutex::new(State::replay(&disk)));
    let (s1, s2, s3, s4) = (state.clone(), state.clone(), state.clone(), state);
    let (d1, d2) = (disk.clone(), disk);
    vec![
        Endpoint::new("publish", move |_ctx: Context, req: PublishRequest| {
            let (state, disk) = (s1.clone(), d1.clone());
            async move { publish(&state, &disk, req).await }
        }),
        Endpoint::new("poll", move |ctx: Context, req: PollRequest| {
            let (events, redelivered) = poll(&s2, &req, Instant::now());
            if redelivered > 0 {
                ctx.count("bus.redelivered", redelivered);
            }
            async move { Ok(PollResponse { events }) }
        }),
        Endpoint::new("ack", move |_ctx: Context, req: AckRequest| {
            let (state, disk) = (s3.clone(), d2.clone());
            async move { ack(&state, &disk, req).await }
        }),
        Endpoint::new("stats", move |_ctx: Context, req: StatsRequest| {
            let stats = stats(&lock(&s4), &req);
            async move { Ok(stats) }
        }),
    ]
}

fn encode(record: &Record) -> Result<Bytes, Error> {
    serde_json::to_vec(record)
        .map(Bytes::from)
        .map_err(|e| Error::internal("encode", e.to_string()))
}

async fn publish(
    state: &Mutex<State>,
    disk: &Disk,
    req: PublishRequest,
) -> Result<PublishResponse, Error> {
    let id = req.id.clone();
    let seq = {
        let mut s = lock(state);
        let topic = s.topics.entry(req.topic.clone()).or_default();
        if topic.ids.contains(&req.id) {
            None
        } else {
            disk.append(encode(&Record::Published {
                topic: req.topic.clone(),
                id: req.id.clone(),
                payload: req.payload.clone(),
            })?);
            topic.ids.insert(req.id.clone());
            topic.events.push(Stored {
                id: req.id,
                payload: req.payload,
                durable: false,
            });
            Some(topic.events.len() - 1)
        }
    };
    let Some(seq) = seq else {
        // Published before: answer once that copy is durable, like the first publish did. The
        // first publish's handler may have been cancelled in its sync (its caller gave up), so
        // it never marked its copy durable: this sync covers that copy, so mark it here, or the
        // event would be stored but never delivered (found by a swarm sweep: a stalled bus
        // disk and a publisher's timeout).
        disk.commit().await;
        if let Some(e) = lock(state)
            .topics
            .get_mut(&req.topic)
            .and_then(|t| t.events.iter_mut().find(|e| e.id == id))
        {
            e.durable = true;
        }
        return Ok(PublishResponse { stored: false });
    };
    disk.commit().await;
    if let Some(e) = lock(state)
        .topics
        .get_mut(&req.topic)
        .and_then(|t| t.events.get_mut(seq))
    {
        e.durable = true;
    }
    Ok(PublishResponse { stored: true })
}

/// Leases the oldest events the group has not acknowledged; also says how many of them are
/// redeliveries.
fn poll(state: &Mutex<State>, req: &PollRequest, now: Instant) -> (Vec<Delivery>, i64) {
    let mut s = lock(state);
    let Some(topic) = s.topics.get_mut(&req.topic) else {
        return (Vec::new(), 0);
    };
    let group = topic.groups.entry(req.group.clone()).or_default();
    let max = req.max.clamp(1, MAX_POLL);
    let mut out = Vec::new();
    let mut redelivered = 0;
    for (i, e) in topic.events.iter().enumerate().skip(group.floor as usize) {
        if out.len() >= max {
            break;
        }
        let seq = i as u64;
        if !e.durable || group.is_acked(seq) {
            continue;
        }
        if group.leases.get(&seq).is_some_and(|until| *until > now) {
            continue;
        }
        group.leases.insert(seq, now + VISIBILITY);
        let attempt = group.deliveries.entry(seq).or_insert(0);
        *attempt += 1;
        if *attempt > 1 {
            redelivered += 1;
        }
        out.push(Delivery {
            seq,
            id: e.id.clone(),
            payload: e.payload.clone(),
            attempt: *attempt,
        });
    }
    (out, redelivered)
}

async fn ack(state: &Mutex<State>, disk: &Disk, req: AckRequest) -> Result<Value, Error> {
    disk.append(encode(&Record::Acked {
        topic: req.topic.clone(),
        group: req.group.clone(),
        seqs: req.seqs.clone(),
    })?);
    disk.commit().await;
    let mut s = lock(state);
    let group = s
        .topics
        .entry(req.topic)
        .or_default()
        .groups
        .entry(req.group)
        .or_default();
    for seq in req.seqs {
        group.ack(seq);
    }
    Ok(Value::Null)
}

fn stats(s: &State, req: &StatsRequest) -> StatsResponse {
    let topic = s.topics.get(&req.topic);
    let durable: Vec<u64> = topic
        .map(|t| {
            t.events
                .iter()
                .enumerate()
                .filter(|(_, e)| e.durable)
                .map(|(i, _)| i as u64)
                .collect()
        })
        .unwrap_or_default();
    let unacked = req
        .groups
        .iter()
        .map(|g| {
            let group = topic.and_then(|t| t.groups.get(g));
            let n = durable
                .iter()
                .filter(|seq| !group.is_some_and(|gr| gr.is_acked(**seq)))
                .count() as u64;
            (g.clone(), n)
        })
        .collect();
    StatsResponse {
        published: durable.len() as u64,
        unacked,
    }
}

/// A consuming service's loop: poll a topic for a group, handle each batch's events at once,
/// acknowledge those handled; failed ones come back after [`VISIBILITY`], except those refused
/// as bad requests, which no retry would fix (counted as `events.rejected`).
#[derive(Debug, Clone)]
pub struct Consumer {
    /// The client it calls the bus with.
    pub client: Client,
    /// The bus service's name.
    pub bus: String,
    /// The topic.
    pub topic: String,
    /// The group (usually the consuming service's name).
    pub group: String,
    /// Pause between polls that found nothing.
    pub idle: Duration,
}

impl Consumer {
    /// Runs until the task is dropped, handling each event with `handle`.
    pub async fn run<F, Fut>(self, ctx: Context, handle: F)
    where
        F: Fn(Context, Delivery) -> Fut,
        Fut: Future<Output = Result<(), Error>>,
    {
        loop {
            let call = ctx.with_timeout(Duration::from_secs(1));
            let req = PollRequest {
                topic: self.topic.clone(),
                group: self.group.clone(),
                max: 64,
            };
            let polled: Result<PollResponse, Error> =
                self.client.call(&call, &self.bus, "poll", &req).await;
            let events = match polled {
                Ok(p) if !p.events.is_empty() => p.events,
                _ => {
                    crate::framework::timer::idle(self.idle).await;
                    continue;
                }
            };
            let work = ctx.with_timeout(VISIBILITY);
            let results = futures::future::join_all(events.into_iter().map(|e| {
                let seq = e.seq;
                let fut = handle(work.clone(), e);
                async move { (seq, fut.await) }
            }))
            .await;
            // Handled events are settled; so are events no retry can help (a malformed
            // payload is refused as a bad request): they are counted and dropped rather than
            // redelivered forever.
            let mut seqs = Vec::new();
            for (seq, result) in results {
                match result {
                    Ok(()) => seqs.push(seq),
                    Err(e) if e.kind() == ErrorKind::BadRequest => {
                        ctx.count("events.rejected", 1);
                        seqs.push(seq);
                    }
                    Err(_) => {}
                }
            }
            if seqs.is_empty() {
                crate::framework::timer::idle(self.idle).await;
                continue;
            }
            let ack = AckRequest {
                topic: self.topic.clone(),
                group: self.group.clone(),
                seqs,
            };
            let call = ctx.with_timeout(Duration::from_secs(1));
            let _: Result<Value, Error> = self.client.call(&call, &self.bus, "ack", &ack).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with(n: usize) -> Mutex<State> {
        let mut s = State::default();
        let t = s.topics.entry("t".into()).or_default();
        for i in 0..n {
            t.ids.insert(format!("e{i}"));
            t.events.push(Stored {
                id: format!("e{i}"),
                payload: Value::Null,
                durable: true,
            });
        }
        Mutex::new(s)
    }

    fn req(max: usize) -> PollRequest {
        PollRequest {
            topic: "t".into(),
            group: "g".into(),
            max,
        }
    }

    #[test]
    fn leased_events_come_back_after_the_visibility_timeout_until_acked() {
        let state = state_with(3);
        let t0 = Instant::now();
        let (first, _) = poll(&state, &req(2), t0);
        assert_eq!(first.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![0, 1]);
        let (second, _) = poll(&state, &req(10), t0);
        assert_eq!(second.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![2]);
        if let Some(g) = lock(&state)
            .topics
            .get_mut("t")
            .and_then(|t| t.groups.get_mut("g"))
        {
            g.ack(0);
        }
        let (later, redelivered) = poll(&state, &req(10), t0 + VISIBILITY);
        assert_eq!(redelivered, 2);
        let got: Vec<(u64, u32)> = later.iter().map(|d| (d.seq, d.attempt)).collect();
        assert_eq!(got, vec![(1, 2), (2, 2)], "unacked events are redelivered");
        let s = stats(
            &lock(&state),
            &StatsRequest {
                topic: "t".into(),
                groups: vec!["g".into(), "new".into()],
            },
        );
        assert_eq!(s.published, 3);
        assert_eq!(s.unacked.get("g"), Some(&2));
        assert_eq!(
            s.unacked.get("new"),
            Some(&3),
            "a new group starts from the beginning"
        );
    }
}
