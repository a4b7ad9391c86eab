//! Deadlines travel with calls and shrink on the way down; a call whose deadline passes
//! returns `timeout` at the deadline, and the callee stops working within one hop.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use windtunnel::framework::{Call, Client, Context, Endpoint, Error, ErrorKind};

use crate::support::{now, sim, Probe, World};

/// An endpoint that records the deadline budget it sees, then calls `next` (if any).
fn hop(
    client_slot: Arc<Mutex<Option<Client>>>,
    seen: Arc<Mutex<Vec<(String, Duration)>>>,
    me: &'static str,
    next: Option<&'static str>,
) -> Endpoint {
    Endpoint::new("go", move |ctx: Context, _req: serde_json::Value| {
        let seen = seen.clone();
        let client = client_slot.lock().unwrap().clone();
        async move {
            let remaining = ctx
                .remaining()
                .ok_or_else(|| Error::internal("", "no deadline"))?;
            seen.lock().unwrap().push((me.to_string(), remaining));
            if let (Some(next), Some(client)) = (next, client) {
                client.send(&ctx, Call::new(next, "go")).await?;
            }
            Ok(serde_json::json!({}))
        }
    })
}

/// Host "leaf" serving svc.leaf's endpoint "slow": a handler that sleeps 10 s, entered and
/// (if it ever ends) finished in `probe` as "leaf".
fn slow_leaf(sim: &mut turmoil::Sim<'_>, world: &World, probe: &Probe) {
    let (w, p) = (world.clone(), probe.clone());
    sim.host("leaf", move || {
        let (w, p) = (w.clone(), p.clone());
        async move {
            let slow = Endpoint::new("slow", move |_ctx: Context, _req: serde_json::Value| {
                let guard = p.enter("leaf");
                async move {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    guard.done();
                    Ok(serde_json::json!({}))
                }
            });
            w.serve("leaf", "svc.leaf", 0, vec![slow]).await
        }
    });
}

#[test]
fn deadline_set_by_the_caller_is_seen_shrunk_two_hops_down() -> turmoil::Result {
    // Goal: a callee two hops down sees the caller's deadline, less the time already spent.
    // Method: client -> front -> middle -> leaf, each recording ctx.remaining() on entry.
    let world = World::new();
    let seen: Arc<Mutex<Vec<(String, Duration)>>> = Arc::default();
    let mut sim = sim(2);
    for (host, me, next) in [
        ("front", "svc.front", Some("svc.middle")),
        ("middle", "svc.middle", Some("svc.leaf")),
        ("leaf", "svc.leaf", None),
    ] {
        let (w, seen) = (world.clone(), seen.clone());
        sim.host(host, move || {
            let (w, seen) = (w.clone(), seen.clone());
            async move {
                let slot: Arc<Mutex<Option<Client>>> = Arc::default();
                *slot.lock().unwrap() = Some(w.client(me));
                w.serve(host, me, 0, vec![hop(slot, seen, me, next)]).await
            }
        });
    }
    let w = world.clone();
    sim.client("client", async move {
        let client = w.client("client");
        let ctx = Context::background().with_timeout(Duration::from_millis(300));
        client.send(&ctx, Call::new("svc.front", "go")).await?;
        Ok(())
    });
    sim.run()?;
    let seen = seen.lock().unwrap().clone();
    let names: Vec<_> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["svc.front", "svc.middle", "svc.leaf"]);
    let budgets: Vec<Duration> = seen.iter().map(|(_, d)| *d).collect();
    assert!(
        budgets[0] < Duration::from_millis(300),
        "front saw {:?}",
        budgets[0]
    );
    assert!(
        budgets[1] < budgets[0] && budgets[2] < budgets[1],
        "budgets must shrink: {budgets:?}"
    );
    // Each hop costs one 2 ms message at most a tick late, plus the handshake's round trip
    // (4 ms) on its new connection: the leaf sees about 300 - 3 hops.
    assert!(
        budgets[2] >= Duration::from_millis(300 - 3 * (3 + 4)),
        "leaf saw {:?}",
        budgets[2]
    );
    Ok(())
}

#[test]
fn call_past_its_deadline_times_out_at_the_deadline_and_the_callee_drops_its_handler(
) -> turmoil::Result {
    // Goal: the caller gets `timeout` at its deadline (within one tick), and the callee's
    // handler future is dropped within one network hop after, never finishing its work.
    // Method: a leaf that sleeps 10 s; a 100 ms call; a probe in the handler records the drop.
    let world = World::new();
    let probe = Probe::default();
    let mut sim = sim(3);
    slow_leaf(&mut sim, &world, &probe);
    let w = world.clone();
    let deadline_at: Arc<Mutex<Option<Duration>>> = Arc::default();
    let d = deadline_at.clone();
    sim.client("client", async move {
        let client = w.client("client");
        // Warm the connection so the measured call pays no connect.
        let _ = client
            .send(
                &Context::background().with_timeout(Duration::from_millis(1)),
                Call::new("svc.leaf", "nope"),
            )
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let start = now();
        *d.lock().unwrap() = Some(start + Duration::from_millis(100));
        let err = client
            .send(
                &Context::background(),
                Call::new("svc.leaf", "slow").timeout(Duration::from_millis(100)),
            )
            .await
            .expect_err("a 10 s handler cannot answer a 100 ms call");
        let waited = now() - start;
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        assert!(
            waited >= Duration::from_millis(100) && waited <= Duration::from_millis(101),
            "timeout after {waited:?}"
        );
        // Let the sim run well past the handler's 10 s so a surviving handler would finish.
        tokio::time::sleep(Duration::from_secs(12)).await;
        Ok(())
    });
    sim.run()?;
    let deadline = deadline_at.lock().unwrap().expect("the call was made");
    let state = probe.state();
    assert!(
        state.finished.is_empty(),
        "the handler must not run to completion: {state:?}"
    );
    let [(_, dropped_at)] = state.dropped[..] else {
        panic!("exactly one dropped handler expected: {state:?}");
    };
    // One hop is 2 ms of latency, delivered at the next tick.
    assert!(
        dropped_at <= deadline + Duration::from_millis(3),
        "dropped at {dropped_at:?}, deadline {deadline:?}"
    );
    let at_leaf: Vec<_> = world
        .events_at("svc.leaf[0]", "handler_cancelled")
        .into_iter()
        .chain(world.events_at("svc.leaf[0]", "handler_timed_out"))
        .collect();
    assert_eq!(at_leaf.len(), 1, "the leaf reports dropping the handler");
    Ok(())
}

#[test]
fn a_call_timing_out_leaves_its_caller_live_and_a_cancelled_caller_cancels_its_calls(
) -> turmoil::Result {
    // Goal: a call's own timeout ends that call only, never the context it was made under;
    // cancelling that context ends every call made under it, with or without a timeout of its
    // own, and their handlers are dropped at the callee. Method: a leaf that sleeps 10 s; one
    // 100 ms call under a context; then two calls under it (one with a 5 s timeout, one with
    // none) while another task cancels it 50 ms in; probes in the handlers record drops.
    let world = World::new();
    let probe = Probe::default();
    let mut sim = sim(5);
    slow_leaf(&mut sim, &world, &probe);
    let w = world.clone();
    sim.client("client", async move {
        let client = w.client("client");
        let ctx = Context::background();
        let err = client
            .send(
                &ctx,
                Call::new("svc.leaf", "slow").timeout(Duration::from_millis(100)),
            )
            .await
            .expect_err("a 10 s handler cannot answer a 100 ms call");
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        assert!(!ctx.is_cancelled(), "a call's timeout cancelled its caller");
        let canceller = ctx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            canceller.cancel();
        });
        let start = now();
        let (timed, untimed) = tokio::join!(
            client.send(
                &ctx,
                Call::new("svc.leaf", "slow").timeout(Duration::from_secs(5))
            ),
            client.send(&ctx, Call::new("svc.leaf", "slow")),
        );
        let waited = now() - start;
        for result in [timed, untimed] {
            let err = result.expect_err("the caller was cancelled");
            assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
        }
        assert!(
            waited <= Duration::from_millis(51),
            "the calls ended {waited:?} after they started"
        );
        tokio::time::sleep(Duration::from_secs(12)).await;
        Ok(())
    });
    sim.run()?;
    let state = probe.state();
    assert!(
        state.finished.is_empty(),
        "no handler may run to completion: {state:?}"
    );
    assert_eq!(
        state.dropped.len(),
        3,
        "every handler is dropped: {state:?}"
    );
    Ok(())
}
