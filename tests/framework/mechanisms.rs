//! The degradation mechanisms through the framework's public interface, inside turmoil:
//! retries (idempotent only, elsewhere, within the deadline and the budget), hedging (a second
//! copy, the loser cancelled), circuit breakers (open, fail fast, probe, close) and the
//! server's concurrency limit (refuse at once).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use windtunnel::framework::breaker::Breaker;
use windtunnel::framework::limit::Limit;
use windtunnel::framework::retry::{Hedge, HedgeDelay, Retry};
use windtunnel::framework::{
    Call, Client, ClientConfig, Context, Endpoint, Error, Listen, Server, ServiceConfig,
};

use crate::support::{sim, transport, World, PORT};

/// `name`, failing with `unavailable.down` while `sick` holds, after `delay`.
fn flaky(name: &str, sick: Arc<AtomicBool>, delay: Duration) -> Endpoint {
    Endpoint::raw(name, move |_ctx, body: Bytes| {
        let sick = sick.load(Ordering::Relaxed);
        async move {
            tokio::time::sleep(delay).await;
            if sick {
                Err(Error::unavailable("down", "sick instance"))
            } else {
                Ok(body)
            }
        }
    })
}

/// A client whose config `tune` sets.
fn client(w: &World, name: &str, tune: impl FnOnce(&mut ClientConfig)) -> Client {
    let mut config = ClientConfig::new(name);
    config.seed = 1;
    tune(&mut config);
    Client::with_events(config, transport(), w.registry.clone(), w.events.clone())
}

/// Counter events named `name` the client reported.
fn counted(w: &World, name: &str) -> usize {
    w.events
        .events()
        .iter()
        .filter(|e| {
            matches!(&e.kind, windtunnel::framework::EventKind::Metric { name: n, .. } if &**n == name)
        })
        .count()
}

#[test]
fn retries_go_elsewhere_for_idempotent_endpoints_only_and_within_the_deadline() -> turmoil::Result {
    // Goal: a retry policy rescues calls to an idempotent endpoint from a sick instance, and
    // leaves other endpoints alone. Method: two instances, the first always unavailable; round
    // robin sends every other call to it.
    let world = World::new();
    let mut sim = sim(41);
    for (i, sick) in [(0, true), (1, false)] {
        let w = world.clone();
        let host = format!("r{i}");
        sim.host(host.clone(), move || {
            let (w, host) = (w.clone(), host.clone());
            let sick = Arc::new(AtomicBool::new(sick));
            async move {
                let endpoints = vec![
                    flaky("get", sick.clone(), Duration::ZERO).idempotent(),
                    flaky("put", sick, Duration::ZERO),
                ];
                w.serve(&host, "svc.r", i, endpoints).await
            }
        });
    }
    let w = world.clone();
    sim.client("client", async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let retry = Retry {
            budget: None,
            ..Retry::default()
        };
        let c = client(&w, "client", |c| {
            c.retry.insert("svc.r".into(), retry);
            c.idempotent
                .insert("svc.r".into(), ["get".to_string()].into());
        });
        let ctx = Context::background().with_timeout(Duration::from_secs(1));
        for _ in 0..6 {
            let reply = c.send(&ctx, Call::new("svc.r", "get")).await?;
            assert_eq!(&*reply.instance, "svc.r[1]", "retried on the healthy one");
        }
        let puts =
            futures::future::join_all((0..6).map(|_| c.send(&ctx, Call::new("svc.r", "put"))))
                .await;
        let failed = puts.iter().filter(|r| r.is_err()).count();
        assert_eq!(failed, 3, "a non-idempotent endpoint is not retried");
        let marked = c.send(&ctx, Call::new("svc.r", "put").idempotent()).await;
        assert!(marked.is_ok(), "unless the call says it is idempotent");
        // A deadline too short for the backoff: the error comes back, nothing waits past it.
        let short = Context::background().with_timeout(Duration::from_millis(6));
        let start = tokio::time::Instant::now();
        let mut late = 0;
        for _ in 0..4 {
            if c.send(&short, Call::new("svc.r", "get")).await.is_err()
                && start.elapsed() > Duration::from_millis(7 * 4)
            {
                late += 1;
            }
        }
        assert_eq!(late, 0, "no retry outlives its caller's deadline");
        assert!(counted(&w, "retry.sent") >= 4);
        Ok(())
    });
    sim.run()
}

#[test]
fn a_retry_budget_holds_retries_to_its_share_of_requests() -> turmoil::Result {
    // Goal: the budget, not the attempts, bounds the extra load. Method: one sick instance out
    // of one, 200 calls; a budget of 10% and no floor allows about 20 retries.
    let world = World::new();
    let mut sim = sim(42);
    let w = world.clone();
    sim.host("b0", move || {
        let w = w.clone();
        async move {
            let sick = Arc::new(AtomicBool::new(true));
            w.serve(
                "b0",
                "svc.b",
                0,
                vec![flaky("get", sick, Duration::ZERO).idempotent()],
            )
            .await
        }
    });
    let w = world.clone();
    sim.client("client", async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let retry = Retry {
            attempts: 3,
            budget: Some(windtunnel::framework::retry::RetryBudget {
                ttl: Duration::from_secs(10),
                min_per_sec: 0,
                percent: 0.1,
            }),
            ..Retry::default()
        };
        let c = client(&w, "client", |c| {
            c.retry.insert("svc.b".into(), retry);
            c.idempotent
                .insert("svc.b".into(), ["get".to_string()].into());
        });
        let ctx = Context::background().with_timeout(Duration::from_secs(5));
        for _ in 0..200 {
            let r = c.send(&ctx, Call::new("svc.b", "get")).await;
            assert!(r.is_err());
        }
        let retries = counted(&w, "retry.sent");
        assert!(
            (18..=21).contains(&retries),
            "{retries} retries for 200 calls"
        );
        assert!(counted(&w, "retry.budget_exhausted") >= 170);
        Ok(())
    });
    sim.run()
}

#[test]
fn a_hedge_goes_to_another_instance_after_the_delay_and_the_loser_is_cancelled() -> turmoil::Result
{
    // Goal: a slow instance costs a hedged call only the hedge delay. Method: one instance
    // answers after 1 s, the other at once; every call hedges after 20 ms.
    let world = World::new();
    let mut sim = sim(43);
    for (i, delay) in [(0, Duration::from_secs(1)), (1, Duration::ZERO)] {
        let w = world.clone();
        let host = format!("h{i}");
        sim.host(host.clone(), move || {
            let (w, host) = (w.clone(), host.clone());
            async move {
                let well = Arc::new(AtomicBool::new(false));
                w.serve(&host, "svc.h", i, vec![flaky("get", well, delay)])
                    .await
            }
        });
    }
    let w = world.clone();
    sim.client("client", async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let hedge = Hedge {
            delay: HedgeDelay::Fixed(Duration::from_millis(20)),
            attempts: 2,
            max_extra: 1.0,
        };
        let c = client(&w, "client", |c| {
            c.hedge.insert("svc.h".into(), hedge);
            c.idempotent
                .insert("svc.h".into(), ["get".to_string()].into());
        });
        let ctx = Context::background().with_timeout(Duration::from_secs(2));
        for _ in 0..6 {
            let start = tokio::time::Instant::now();
            let reply = c.send(&ctx, Call::new("svc.h", "get")).await?;
            assert_eq!(&*reply.instance, "svc.h[1]");
            assert!(
                start.elapsed() < Duration::from_millis(50),
                "{:?}",
                start.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Round robin turns once for each copy, so every first copy goes to the slow one.
        assert_eq!(counted(&w, "hedge.sent"), 6, "one hedge per call");
        assert_eq!(counted(&w, "hedge.won"), 6);
        let cancelled = w.events_at("svc.h[0]", "handler_cancelled").len();
        assert_eq!(cancelled, 6, "each losing copy is cancelled where it runs");
        Ok(())
    });
    sim.run()
}

#[test]
fn a_breaker_opens_fails_fast_then_a_probe_closes_it() -> turmoil::Result {
    // Goal: the breaker's states as a caller sees them. Method: one instance that fails until
    // told otherwise; a breaker opening after 3 failures for 1 s.
    let world = World::new();
    let mut sim = sim(44);
    let sick = Arc::new(AtomicBool::new(true));
    let received = Arc::new(AtomicUsize::new(0));
    let (w, s, n) = (world.clone(), sick.clone(), received.clone());
    sim.host("c0", move || {
        let (w, s, n) = (w.clone(), s.clone(), n.clone());
        async move {
            let endpoint = Endpoint::raw("get", move |_ctx, body: Bytes| {
                n.fetch_add(1, Ordering::Relaxed);
                let sick = s.load(Ordering::Relaxed);
                async move {
                    if sick {
                        Err(Error::unavailable("down", "sick"))
                    } else {
                        Ok(body)
                    }
                }
            });
            let config = {
                let mut c = ServiceConfig::new("svc.c", "breaker test");
                c.instance = Some("svc.c[0]".into());
                c
            };
            let server = Server::with(config, w.events.clone(), Some(w.registry.clone()));
            server.add_endpoints([endpoint]);
            server.run(transport(), &Listen::host("c0", PORT)).await?;
            Ok(())
        }
    });
    let w = world.clone();
    sim.client("client", async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let breaker = Breaker {
            consecutive_failures: 3,
            failure_rate: None,
            open_base: Duration::from_secs(1),
            ..Breaker::default()
        };
        let c = client(&w, "client", |c| {
            c.breaker.insert("svc.c".into(), breaker);
        });
        let ctx = Context::background().with_timeout(Duration::from_secs(1));
        for _ in 0..3 {
            let e = c.send(&ctx, Call::new("svc.c", "get")).await.unwrap_err();
            assert_eq!(e.code(), "unavailable.down");
        }
        let e = c.send(&ctx, Call::new("svc.c", "get")).await.unwrap_err();
        assert_eq!(e.code(), "unavailable.circuit_open");
        assert_eq!(received.load(Ordering::Relaxed), 3, "the fourth never left");
        sick.store(false, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let ctx = Context::background().with_timeout(Duration::from_secs(1));
        c.send(&ctx, Call::new("svc.c", "get")).await?;
        c.send(&ctx, Call::new("svc.c", "get")).await?;
        let names = ["breaker.opened", "breaker.probes", "breaker.closed"];
        let counts: Vec<usize> = names.iter().map(|n| counted(&w, n)).collect();
        assert_eq!(counts, [1, 1, 1]);
        assert_eq!(counted(&w, "breaker.fast_failed"), 1);
        Ok(())
    });
    sim.run()
}

#[test]
fn a_concurrency_limit_refuses_at_once_with_a_typed_error() -> turmoil::Result {
    // Goal: a request over the limit fails fast (not after queueing) with
    // `rate_limited.concurrency_limit`. Method: a limit of 2, five calls of 100 ms at once.
    let world = World::new();
    let mut sim = sim(45);
    let w = world.clone();
    sim.host("l0", move || {
        let w = w.clone();
        async move {
            let mut config = ServiceConfig::new("svc.l", "limited");
            config.instance = Some("svc.l[0]".into());
            config.limit = Some(Limit::Fixed(2));
            let server = Server::with(config, w.events.clone(), Some(w.registry.clone()));
            server.add_endpoints([Endpoint::raw("work", |_ctx, body: Bytes| async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(body)
            })]);
            server.run(transport(), &Listen::host("l0", PORT)).await?;
            Ok(())
        }
    });
    let w = world.clone();
    sim.client("client", async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let c = w.client("client");
        let ctx = Context::background().with_timeout(Duration::from_secs(1));
        let start = tokio::time::Instant::now();
        let calls = futures::future::join_all((0..5).map(|_| {
            let (c, ctx) = (c.clone(), ctx.clone());
            async move {
                let r = c.send(&ctx, Call::new("svc.l", "work")).await;
                (r, start.elapsed())
            }
        }))
        .await;
        let refused: Vec<Duration> = calls
            .iter()
            .filter(|(r, _)| {
                r.as_ref()
                    .is_err_and(|e| e.code() == "rate_limited.concurrency_limit")
            })
            .map(|(_, t)| *t)
            .collect();
        assert_eq!(refused.len(), 3);
        assert!(
            refused.iter().all(|t| *t < Duration::from_millis(20)),
            "{refused:?}"
        );
        assert_eq!(calls.iter().filter(|(r, _)| r.is_ok()).count(), 2);
        Ok(())
    });
    sim.run()
}
