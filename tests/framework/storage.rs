//! The built-in database and event bus, reached over turmoil's network like any service: what a
//! service built on them relies on (durable acknowledged writes, idempotency keys, atomic
//! writes, at-least-once delivery with redelivery).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use windtunnel::framework::{Client, Context};
use windtunnel::services::bus::{
    self, AckRequest, PollRequest, PollResponse, PublishRequest, PublishResponse, StatsRequest,
    StatsResponse,
};
use windtunnel::services::store::{self, Op, StoreClient};
use windtunnel::system::Disks;

use crate::support::{sim, World};

fn put(key: &str, v: i64) -> Op {
    Op::Put {
        key: key.into(),
        value: Value::from(v),
    }
}

fn ctx() -> Context {
    Context::background().with_timeout(Duration::from_secs(2))
}

/// Writes before the crash: idempotency, preconditions, atomicity, 50 items.
async fn before_crash(db: &StoreClient) -> Result<(), Box<dyn std::error::Error>> {
    let key = Some("k1".to_string());
    assert!(
        db.write(&ctx(), vec![put("a", 1)], key.clone())
            .await?
            .applied
    );
    let retried = db.write(&ctx(), vec![put("a", 1)], key.clone()).await?;
    assert!(
        !retried.applied,
        "a retry with the same key applies nothing"
    );
    let other = db
        .write(&ctx(), vec![put("a", 2)], key.clone())
        .await
        .expect_err("the key belongs to another write");
    assert_eq!(other.code(), "precondition_failed.idempotency_key_reused");
    assert_eq!(db.get(&ctx(), "a").await?, Some(Value::from(1)));
    let exists = db
        .write(
            &ctx(),
            vec![Op::Insert {
                key: "a".into(),
                value: Value::from(9),
            }],
            None,
        )
        .await
        .expect_err("insert over a set key fails");
    assert_eq!(exists.code(), "precondition_failed.exists");
    let overdrawn = vec![
        put("b", 5),
        Op::Add {
            key: "a".into(),
            delta: -10,
            min: Some(0),
        },
    ];
    let refused = db
        .write(&ctx(), overdrawn, None)
        .await
        .expect_err("1 - 10 < 0");
    assert_eq!(refused.code(), "precondition_failed.insufficient");
    assert_eq!(
        db.get(&ctx(), "b").await?,
        None,
        "a refused write leaves nothing"
    );
    for i in 0..50 {
        db.write(&ctx(), vec![put(&format!("item/{i:02}"), i)], None)
            .await?;
    }
    Ok(())
}

/// Reads after the crash and restart.
async fn after_restart(db: &StoreClient) -> Result<(), Box<dyn std::error::Error>> {
    assert_eq!(db.get(&ctx(), "a").await?, Some(Value::from(1)));
    let items = db.scan_all(&ctx(), "item/").await?;
    let keys: Vec<String> = items.iter().map(|(k, _)| k.clone()).collect();
    let expected: Vec<String> = (0..50).map(|i| format!("item/{i:02}")).collect();
    assert_eq!(
        keys, expected,
        "every acknowledged write survived, in key order"
    );
    let retried = db
        .write(&ctx(), vec![put("a", 1)], Some("k1".to_string()))
        .await?;
    assert!(
        !retried.applied,
        "the idempotency key survived the crash too"
    );
    let other = db
        .write(&ctx(), vec![put("a", 3)], Some("k1".to_string()))
        .await
        .expect_err("and so did the write it is bound to");
    assert_eq!(other.code(), "precondition_failed.idempotency_key_reused");
    Ok(())
}

#[test]
fn acknowledged_writes_survive_a_crash_and_a_key_applies_a_write_once() {
    // Goal: the database keeps its promises across a crash. Method: write through the public
    // client, crash the database's host (its disk cut back to the last sync, as the wind tunnel
    // does), restart it, and read everything back.
    let world = World::new();
    let disks = Disks::new();
    let mut sim = sim(4);
    let (w, d) = (world.clone(), disks.clone());
    let starts = Arc::new(AtomicU32::new(0));
    let s = starts.clone();
    sim.host("db", move || {
        let (w, d) = (w.clone(), d.clone());
        s.fetch_add(1, Ordering::SeqCst);
        async move {
            // A fresh instance each start: all it knows is what the disk replays.
            let endpoints = store::endpoints(d.open("store.test[0]/data"));
            w.serve("db", "store.test", 0, endpoints).await
        }
    });
    let phase = Arc::new(AtomicU32::new(0));
    let (w, p) = (world.clone(), phase.clone());
    sim.client("app", async move {
        let db = StoreClient::new(w.client("app"), "store.test");
        tokio::time::sleep(Duration::from_millis(50)).await;
        before_crash(&db).await?;
        p.store(1, Ordering::SeqCst);
        while p.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await; // the restart registers again
        after_restart(&db).await?;
        Ok(())
    });
    while phase.load(Ordering::SeqCst) < 1 {
        sim.step().expect("the writes run");
    }
    sim.crash("db");
    disks.crash("store.test[0]");
    sim.bounce("db");
    phase.store(2, Ordering::SeqCst);
    sim.run()
        .expect("every acknowledged write is read back after the restart");
    assert_eq!(
        starts.load(Ordering::SeqCst),
        2,
        "the database really restarted"
    );
}

async fn poll(client: &Client, group: &str) -> Result<PollResponse, windtunnel::framework::Error> {
    let req = PollRequest {
        topic: "t".into(),
        group: group.into(),
        max: 10,
    };
    client.call(&ctx(), "service.bus", "poll", &req).await
}

/// Publishes event `id` (its payload is its id) on topic `t`.
async fn publish(
    client: &Client,
    id: &str,
) -> Result<PublishResponse, windtunnel::framework::Error> {
    let req = PublishRequest {
        topic: "t".into(),
        id: id.into(),
        payload: Value::from(id),
    };
    client.call(&ctx(), "service.bus", "publish", &req).await
}

/// Serves the event bus on host "bus", on a disk of its own.
fn serve_bus(sim: &mut turmoil::Sim<'_>, world: &World) {
    let (w, d) = (world.clone(), Disks::new());
    sim.host("bus", move || {
        let (w, d) = (w.clone(), d.clone());
        async move {
            let endpoints = bus::endpoints(d.open("service.bus[0]/log"));
            w.serve("bus", "service.bus", 0, endpoints).await
        }
    });
}

#[test]
fn the_bus_stores_an_event_once_and_redelivers_it_until_acknowledged() {
    let world = World::new();
    let mut sim = sim(5);
    serve_bus(&mut sim, &world);
    sim.client("app", async move {
        let client = world.client("app");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut stored = Vec::new();
        for id in ["e1", "e2", "e1"] {
            stored.push(publish(&client, id).await?.stored);
        }
        assert_eq!(
            stored,
            [true, true, false],
            "a republished id is stored once"
        );
        let first = poll(&client, "g").await?;
        let got: Vec<(&str, u32)> = first
            .events
            .iter()
            .map(|e| (e.id.as_str(), e.attempt))
            .collect();
        assert_eq!(got, [("e1", 1), ("e2", 1)]);
        let ack = AckRequest {
            topic: "t".into(),
            group: "g".into(),
            seqs: vec![first.events[0].seq],
        };
        let _: Value = client.call(&ctx(), "service.bus", "ack", &ack).await?;
        assert!(poll(&client, "g").await?.events.is_empty(), "e2 is leased");
        tokio::time::sleep(bus::VISIBILITY + Duration::from_millis(10)).await;
        let again = poll(&client, "g").await?;
        let got: Vec<(&str, u32)> = again
            .events
            .iter()
            .map(|e| (e.id.as_str(), e.attempt))
            .collect();
        assert_eq!(
            got,
            [("e2", 2)],
            "the unacknowledged event comes back, the acked one not"
        );
        let stats: StatsResponse = client
            .call(
                &ctx(),
                "service.bus",
                "stats",
                &StatsRequest {
                    topic: "t".into(),
                    groups: vec!["g".into(), "late".into()],
                },
            )
            .await?;
        assert_eq!(stats.published, 2);
        assert_eq!(stats.unacked.get("g"), Some(&1));
        assert_eq!(
            stats.unacked.get("late"),
            Some(&2),
            "a new group starts at the beginning"
        );
        Ok(())
    });
    sim.run().expect("the bus behaves");
}

#[test]
fn a_consumer_settles_what_it_handled_and_drops_what_no_retry_can_fix() {
    // Goal: the consumer loop acknowledges handled events, retries failed ones, and does not
    // loop forever on a malformed one. Method: three events, one of which the handler refuses
    // as a bad request and one of which fails once.
    let world = World::new();
    let mut sim = sim(6);
    serve_bus(&mut sim, &world);
    sim.client("app", async move {
        let client = world.client("app");
        tokio::time::sleep(Duration::from_millis(50)).await;
        for id in ["ok", "poison", "flaky"] {
            publish(&client, id).await?;
        }
        let attempts = Arc::new(AtomicU32::new(0));
        let consumer = bus::Consumer {
            client: client.clone(),
            bus: "service.bus".into(),
            topic: "t".into(),
            group: "g".into(),
            idle: Duration::from_millis(20),
        };
        let seen = attempts.clone();
        let running = tokio::spawn(consumer.run(Context::background(), move |_ctx, event| {
            let seen = seen.clone();
            async move {
                match event.id.as_str() {
                    "poison" => Err(windtunnel::framework::Error::bad_request(
                        "invalid_event",
                        "bad",
                    )),
                    "flaky" if seen.fetch_add(1, Ordering::SeqCst) == 0 => Err(
                        windtunnel::framework::Error::unavailable("down", "try later"),
                    ),
                    _ => Ok(()),
                }
            }
        }));
        tokio::time::sleep(bus::VISIBILITY * 2).await;
        running.abort();
        let stats: StatsResponse = client
            .call(
                &ctx(),
                "service.bus",
                "stats",
                &StatsRequest {
                    topic: "t".into(),
                    groups: vec!["g".into()],
                },
            )
            .await?;
        assert_eq!(stats.unacked.get("g"), Some(&0), "everything settled");
        assert_eq!(
            attempts.load(Ordering::SeqCst),
            2,
            "the flaky event was retried once"
        );
        Ok(())
    });
    sim.run().expect("the consumer settles every event");
}
