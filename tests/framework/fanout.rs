//! Fanout with fail-fast: one failure cancels the other calls, and the callees see it.

use std::time::Duration;

use windtunnel::framework::{Call, Context, Endpoint, Error, ErrorKind, FanoutPolicy};

use crate::support::{sim, Probe, World};

#[test]
fn fail_fast_fanout_cancels_the_other_four_handlers_at_their_callees() -> turmoil::Result {
    // Goal: when one of five calls fails, the other four handlers are dropped at the callees.
    // Method: five instances of svc.leaf on five hosts; instance 2 fails after 10 ms, the others
    // would answer after 1 s. Probes in the handlers record drops; events confirm the cancels.
    let world = World::new();
    let probe = Probe::default();
    let mut sim = sim(4);
    for i in 0..5usize {
        let (w, p) = (world.clone(), probe.clone());
        let host = format!("leaf{i}");
        sim.host(host.clone(), move || {
            let (w, p, host) = (w.clone(), p.clone(), host.clone());
            async move {
                let ep = Endpoint::new("work", move |_ctx: Context, _req: serde_json::Value| {
                    let guard = p.enter(&format!("leaf{i}"));
                    async move {
                        if i == 2 {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            guard.done();
                            return Err::<serde_json::Value, _>(Error::internal(
                                "boom",
                                "instance 2 fails",
                            ));
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        guard.done();
                        Ok(serde_json::json!({}))
                    }
                });
                w.serve(&host, "svc.leaf", i, vec![ep]).await
            }
        });
    }
    let w = world.clone();
    sim.client("client", async move {
        tokio::time::sleep(Duration::from_millis(10)).await; // let every instance register
        let client = w.client("client");
        let ctx = Context::background().with_timeout(Duration::from_secs(5));
        let fanout = client
            .fanout(FanoutPolicy::FailFast)
            .to_each_instance(Call::new("svc.leaf", "work"));
        assert_eq!(fanout.len(), 5);
        let result = fanout.execute(&ctx).await;
        let err = result.outcome.expect_err("one call failed");
        assert_eq!(err.code(), "internal.boom");
        let cancelled = result
            .results
            .iter()
            .filter(|r| {
                r.as_ref()
                    .is_err_and(|e| e.code() == "cancelled.fanout_decided")
            })
            .count();
        assert_eq!(cancelled, 4);
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok(())
    });
    sim.run()?;
    let state = probe.state();
    let finished: Vec<_> = state.finished.iter().map(|(w, _)| w.as_str()).collect();
    assert_eq!(
        finished,
        ["leaf2"],
        "only the failing handler may finish: {state:?}"
    );
    let mut dropped: Vec<_> = state.dropped.iter().map(|(w, _)| w.as_str()).collect();
    dropped.sort();
    assert_eq!(dropped, ["leaf0", "leaf1", "leaf3", "leaf4"]);
    for i in [0, 1, 3, 4] {
        let inst = format!("svc.leaf[{i}]");
        assert_eq!(
            world.events_at(&inst, "cancel_received").len(),
            1,
            "{inst} got a Cancel frame"
        );
        assert_eq!(
            world.events_at(&inst, "handler_cancelled").len(),
            1,
            "{inst} dropped its handler"
        );
    }
    assert_eq!(world.events_at("client", "cancel_sent").len(), 4);
    Ok(())
}

#[test]
fn a_cancelled_callers_fanout_ends_by_its_first_call_and_the_fanout_cuts_the_rest(
) -> turmoil::Result {
    // Goal: pin the order in which the calls of one cancelled caller end. Without client
    // middleware a call shares its caller's cancellation token (the client makes no token per
    // call), so the calls' waits are woken in the order they began waiting: the first call
    // made is the first to see the cancellation, and a fail-fast fanout then cuts the others.
    // Method: five instances that answer after 1 s; a fail-fast fanout to each under a context
    // another task cancels at 50 ms.
    let world = World::new();
    let mut sim = sim(6);
    for i in 0..5usize {
        let w = world.clone();
        let host = format!("leaf{i}");
        sim.host(host.clone(), move || {
            let (w, host) = (w.clone(), host.clone());
            async move {
                let ep = Endpoint::new("work", |_ctx: Context, _req: serde_json::Value| async {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Ok::<_, Error>(serde_json::json!({}))
                });
                w.serve(&host, "svc.leaf", i, vec![ep]).await
            }
        });
    }
    let w = world.clone();
    sim.client("client", async move {
        tokio::time::sleep(Duration::from_millis(10)).await; // let every instance register
        let client = w.client("client");
        let ctx = Context::background();
        let canceller = ctx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            canceller.cancel();
        });
        let result = client
            .fanout(FanoutPolicy::FailFast)
            .to_each_instance(Call::new("svc.leaf", "work"))
            .execute(&ctx)
            .await;
        let err = result.outcome.expect_err("the caller was cancelled");
        assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
        let codes: Vec<String> = result
            .results
            .iter()
            .map(|r| {
                r.as_ref()
                    .map_or_else(|e| e.code().to_string(), |_| "ok".into())
            })
            .collect();
        assert_ne!(codes[0], "cancelled.fanout_decided", "{codes:?}");
        assert!(codes[0].starts_with("cancelled"), "{codes:?}");
        assert!(
            codes[1..].iter().all(|c| c == "cancelled.fanout_decided"),
            "{codes:?}"
        );
        Ok(())
    });
    sim.run()
}
