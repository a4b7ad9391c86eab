//! The rest of the framework's contract: middleware order, endpoints added and removed at run
//! time, graceful stop, balancing, skipping unreachable instances, admission control.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use windtunnel::framework::identity::Identity;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use windtunnel::framework::middleware::{
    ClientMiddleware, ClientNext, OutboundCall, ServerMiddleware, ServerNext, ServerRequest,
};
use windtunnel::framework::transport::{BoxFuture, Headers, RequestFrame, SendError};
use windtunnel::framework::{
    Balance, Call, Client, ClientConfig, Context, Endpoint, Error, Listen, Server, ServiceConfig,
};

use crate::support::{sim, transport, World, PORT};

/// Records the order it is entered and left in.
struct Tag {
    name: &'static str,
    log: Arc<Mutex<Vec<String>>>,
}

impl ServerMiddleware for Tag {
    fn handle<'a>(
        &'a self,
        ctx: Context,
        req: ServerRequest,
        next: ServerNext<'a>,
    ) -> BoxFuture<'a, Result<Bytes, Error>> {
        Box::pin(async move {
            self.log
                .lock()
                .unwrap()
                .push(format!("server {} in", self.name));
            let r = next.run(ctx, req).await;
            self.log
                .lock()
                .unwrap()
                .push(format!("server {} out", self.name));
            r
        })
    }
}

impl ClientMiddleware for Tag {
    fn call<'a>(
        &'a self,
        ctx: Context,
        call: OutboundCall,
        next: ClientNext<'a>,
    ) -> BoxFuture<'a, Result<Bytes, Error>> {
        Box::pin(async move {
            self.log
                .lock()
                .unwrap()
                .push(format!("client {} in {}", self.name, call.instance));
            let r = next.run(ctx, call).await;
            self.log
                .lock()
                .unwrap()
                .push(format!("client {} out", self.name));
            r
        })
    }
}

fn echo() -> Endpoint {
    Endpoint::raw("echo", |_ctx, body: Bytes| async move { Ok(body) })
}

#[test]
fn middleware_runs_in_the_order_added_on_both_sides_and_sees_the_serving_instance(
) -> turmoil::Result {
    let world = World::new();
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut sim = sim(21);
    let (w, l) = (world.clone(), log.clone());
    sim.host("echo", move || {
        let (w, l) = (w.clone(), l.clone());
        async move {
            let mut config = ServiceConfig::new("svc.echo", "echo");
            config.instance = Some("svc.echo[0]".into());
            let server = Server::with(config, w.events.clone(), Some(w.registry.clone()));
            server.add_endpoints([echo()]);
            server.add_middleware(Arc::new(Tag {
                name: "a",
                log: l.clone(),
            }));
            server.add_middleware(Arc::new(Tag {
                name: "b",
                log: l.clone(),
            }));
            server.run(transport(), &Listen::host("echo", PORT)).await?;
            Ok(())
        }
    });
    let (w, l) = (world.clone(), log.clone());
    sim.client("client", async move {
        let client = w.client("client");
        client.add_middleware(Arc::new(Tag {
            name: "x",
            log: l.clone(),
        }));
        client.add_middleware(Arc::new(Tag {
            name: "y",
            log: l.clone(),
        }));
        client
            .send(
                &Context::background().with_timeout(Duration::from_secs(1)),
                Call::new("svc.echo", "echo"),
            )
            .await?;
        Ok(())
    });
    sim.run()?;
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log,
        [
            "client x in svc.echo[0]",
            "client y in svc.echo[0]",
            "server a in",
            "server b in",
            "server b out",
            "server a out",
            "client y out",
            "client x out"
        ]
    );
    Ok(())
}

/// Cancels the context it is given for calls to one endpoint, then carries on down the chain.
struct GiveUp {
    endpoint: &'static str,
}

impl ClientMiddleware for GiveUp {
    fn call<'a>(
        &'a self,
        ctx: Context,
        call: OutboundCall,
        next: ClientNext<'a>,
    ) -> BoxFuture<'a, Result<Bytes, Error>> {
        if &*call.endpoint == self.endpoint {
            ctx.cancel();
        }
        next.run(ctx, call)
    }
}

#[test]
fn a_middleware_that_cancels_its_context_ends_that_call_and_leaves_its_caller_live(
) -> turmoil::Result {
    // Goal: without middleware a call's context shares its caller's cancellation token (the
    // client makes no token per call); the context a client middleware is given has a token of
    // its own: cancelling it ends the call it was given, not the caller. Method: a middleware
    // that cancels its context for calls to `slow` (a 10 s handler); a call to `slow`, then one
    // to `echo` under the same caller's context.
    let world = World::new();
    let mut sim = sim(23);
    let w = world.clone();
    sim.host("echo", move || {
        let w = w.clone();
        async move {
            let slow = Endpoint::raw("slow", |_ctx, body: Bytes| async move {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok(body)
            });
            w.serve("echo", "svc.echo", 0, vec![echo(), slow]).await
        }
    });
    let w = world.clone();
    sim.client("client", async move {
        let client = w.client("client");
        client.add_middleware(Arc::new(GiveUp { endpoint: "slow" }));
        let ctx = Context::background().with_timeout(Duration::from_secs(30));
        let started = tokio::time::Instant::now();
        let err = client
            .send(&ctx, Call::new("svc.echo", "slow"))
            .await
            .expect_err("the middleware cancelled this call");
        assert_eq!(
            err.kind(),
            windtunnel::framework::ErrorKind::Cancelled,
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the cancelled call waited {:?} for its 10 s handler",
            started.elapsed()
        );
        assert!(
            !ctx.is_cancelled(),
            "a middleware cancelling its call's context cancelled the caller's"
        );
        let reply = client
            .send(
                &ctx,
                Call::new("svc.echo", "echo").bytes(Bytes::from_static(b"hi")),
            )
            .await?;
        assert_eq!(&reply.body[..], b"hi");
        Ok(())
    });
    sim.run()
}

#[test]
fn endpoints_added_and_removed_at_run_time_take_effect_for_the_next_request() -> turmoil::Result {
    let world = World::new();
    let server_slot: Arc<Mutex<Option<Server>>> = Arc::default();
    let mut sim = sim(22);
    let (w, slot) = (world.clone(), server_slot.clone());
    sim.host("svc", move || {
        let (w, slot) = (w.clone(), slot.clone());
        async move {
            let server = Server::with(
                ServiceConfig::new("svc.dyn", "dynamic"),
                w.events.clone(),
                Some(w.registry.clone()),
            );
            *slot.lock().unwrap() = Some(server.clone());
            server.run(transport(), &Listen::host("svc", PORT)).await?;
            Ok(())
        }
    });
    let (w, slot) = (world.clone(), server_slot.clone());
    sim.client("client", async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let client = w.client("client");
        let ctx = Context::background().with_timeout(Duration::from_secs(1));
        let server = slot.lock().unwrap().clone().expect("server started");
        let before = client
            .send(&ctx, Call::new("svc.dyn", "echo"))
            .await
            .expect_err("no endpoint yet");
        assert_eq!(before.code(), "bad_request.endpoint_not_found");
        server.add_endpoints([echo()]);
        assert_eq!(
            server
                .endpoints()
                .iter()
                .map(|e| e.name().to_string())
                .collect::<Vec<_>>(),
            ["echo", "health"]
        );
        client.send(&ctx, Call::new("svc.dyn", "echo")).await?;
        server.remove_endpoints(["echo"]);
        let after = client
            .send(&ctx, Call::new("svc.dyn", "echo"))
            .await
            .expect_err("removed");
        assert_eq!(after.code(), "bad_request.endpoint_not_found");
        Ok(())
    });
    sim.run()
}

#[test]
fn graceful_stop_finishes_in_flight_work_refuses_new_requests_and_leaves_discovery(
) -> turmoil::Result {
    // Goal: stop drains. Method: a 200 ms request in flight when stop begins must complete ok;
    // a request sent during the drain (on a connection opened before it) must be refused as
    // "stopping"; afterwards the instance is not listed.
    let world = World::new();
    let server_slot: Arc<Mutex<Option<Server>>> = Arc::default();
    let mut sim = sim(23);
    let (w, slot) = (world.clone(), server_slot.clone());
    sim.host("svc", move || {
        let (w, slot) = (w.clone(), slot.clone());
        async move {
            let server = Server::with(
                ServiceConfig::new("svc.slow", "slow"),
                w.events.clone(),
                Some(w.registry.clone()),
            );
            server.add_endpoints([Endpoint::raw("work", |_ctx, body: Bytes| async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok(body)
            })]);
            *slot.lock().unwrap() = Some(server.clone());
            server.run(transport(), &Listen::host("svc", PORT)).await?;
            std::future::pending::<()>().await;
            Ok(())
        }
    });
    let (w, slot) = (world.clone(), server_slot.clone());
    sim.client("client", async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let client = w.client("client");
        // A connection of its own, opened (by a health check) before the stop begins.
        let direct = transport();
        let addr = format!("svc:{PORT}");
        let request = |endpoint: &str| RequestFrame {
            id: 0,
            service: "svc.slow".into(),
            endpoint: endpoint.into(),
            headers: Headers::default(),
            body: Bytes::from_static(b"null"),
        };
        let none = CancellationToken::new();
        direct
            .send(&addr, request("health"), None, none.clone())
            .await
            .expect("the instance answers before it stops");
        let ctx = Context::background().with_timeout(Duration::from_secs(2));
        let first = {
            let (client, ctx) = (client.clone(), ctx.clone());
            tokio::task::spawn_local(async move {
                client.send(&ctx, Call::new("svc.slow", "work")).await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let server = slot.lock().unwrap().clone().expect("server started");
        let stopping = tokio::task::spawn_local(async move { server.stop().await });
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(
            w.registry.instances("svc.slow").is_empty(),
            "a stopping instance leaves discovery"
        );
        match direct.send(&addr, request("work"), None, none).await {
            Err(SendError::Remote(e)) => assert_eq!(e.code(), "unavailable.stopping", "{e}"),
            other => panic!("a request during the drain must be refused, got {other:?}"),
        }
        first
            .await?
            .expect("in-flight work finishes during the drain");
        stopping.await?;
        Ok(())
    });
    sim.run()
}

#[test]
fn round_robin_spreads_calls_evenly_and_power_of_two_avoids_the_busy_instance() -> turmoil::Result {
    let world = World::new();
    let served: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut sim = sim(24);
    for i in 0..3usize {
        let (w, s) = (world.clone(), served.clone());
        let host = format!("b{i}");
        sim.host(host.clone(), move || {
            let (w, s, host) = (w.clone(), s.clone(), host.clone());
            async move {
                let ep = Endpoint::raw("work", move |_ctx, body: Bytes| {
                    s.lock().unwrap().push(format!("b{i}"));
                    async move {
                        // Instance 0 is slow, so calls pile up there.
                        let ms = if i == 0 { 500 } else { 5 };
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        Ok(body)
                    }
                });
                w.serve(&host, "svc.b", i, vec![ep]).await
            }
        });
    }
    let (w, s) = (world.clone(), served.clone());
    sim.client("client", async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let ctx = Context::background().with_timeout(Duration::from_secs(5));
        let rr = w.client("rr");
        for _ in 0..9 {
            rr.send(&ctx, Call::new("svc.b", "work")).await?;
        }
        let counts = |log: &[String], from: usize| {
            let mut c = [0; 3];
            for who in &log[from..] {
                c[who[1..].parse::<usize>().unwrap()] += 1;
            }
            c
        };
        assert_eq!(counts(&s.lock().unwrap(), 0), [3, 3, 3], "round robin");
        let mut config = ClientConfig::new("p2c");
        config.seed = 5;
        config.balance.insert("svc.b".into(), Balance::PowerOfTwo);
        let p2c = Client::with_events(config, transport(), w.registry.clone(), w.events.clone());
        let start = s.lock().unwrap().len();
        let mut calls = Vec::new();
        for _ in 0..60 {
            let (p2c, ctx) = (p2c.clone(), ctx.clone());
            calls.push(tokio::task::spawn_local(async move {
                p2c.send(&ctx, Call::new("svc.b", "work")).await
            }));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        for c in calls {
            c.await??;
        }
        let c = counts(&s.lock().unwrap(), start);
        assert!(
            c[0] * 4 < c[1] + c[2],
            "power of two choices shuns the busy instance: {c:?}"
        );
        Ok(())
    });
    sim.run()
}

#[test]
fn a_client_skips_an_instance_it_cannot_reach_and_the_call_succeeds() -> turmoil::Result {
    // Goal: an unreachable instance in discovery costs nothing but a refused connect. Method:
    // register a phantom instance on a host with no listener, first in order.
    let world = World::new();
    let mut sim = sim(25);
    let w = world.clone();
    sim.host("live", move || {
        let w = w.clone();
        async move { w.serve("live", "svc.e", 1, vec![echo()]).await }
    });
    sim.host("dead", || async {
        std::future::pending::<()>().await;
        Ok(())
    });
    let w = world.clone();
    sim.client("client", async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        w.registry.register("svc.e", "svc.e[0]", "dead:7000");
        let client = w.client("client");
        let ctx = Context::background().with_timeout(Duration::from_secs(1));
        for _ in 0..4 {
            let reply = client.send(&ctx, Call::new("svc.e", "echo")).await?;
            assert_eq!(&*reply.instance, "svc.e[1]");
        }
        Ok(())
    });
    sim.run()
}

#[test]
fn a_full_queue_refuses_with_rate_limited_and_admitted_requests_still_finish() -> turmoil::Result {
    let world = World::new();
    let mut sim = sim(26);
    let w = world.clone();
    sim.host("q", move || {
        let w = w.clone();
        async move {
            let mut config = ServiceConfig::new("svc.q", "bounded");
            config.workers = Some(1);
            config.queue = 2;
            let server = Server::with(config, w.events.clone(), Some(w.registry.clone()));
            server.add_endpoints([Endpoint::raw("work", |_ctx, body: Bytes| async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(body)
            })]);
            server.run(transport(), &Listen::host("q", PORT)).await?;
            Ok(())
        }
    });
    let w = world.clone();
    sim.client("client", async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let client = w.client("client");
        let ctx = Context::background().with_timeout(Duration::from_secs(2));
        let calls: Vec<_> = (0..5)
            .map(|_| {
                let (client, ctx) = (client.clone(), ctx.clone());
                tokio::task::spawn_local(async move {
                    client.send(&ctx, Call::new("svc.q", "work")).await
                })
            })
            .collect();
        let mut ok = 0;
        let mut refused = 0;
        for c in calls {
            match c.await? {
                Ok(_) => ok += 1,
                Err(e) if e.code() == "rate_limited.queue_full" => refused += 1,
                Err(e) => return Err(e.into()),
            }
        }
        assert_eq!(
            (ok, refused),
            (3, 2),
            "one running, two waiting, two refused"
        );
        Ok(())
    });
    sim.run()
}

#[test]
fn endpoints_refuse_callers_and_users_they_do_not_allow_with_forbidden() -> turmoil::Result {
    // Goal: authorisation by calling service and by the user's scope, checked before the
    // handler runs. Method: one endpoint open to api.ledger only, one needing the scope `admin`.
    let world = World::new();
    let ran: Arc<Mutex<u32>> = Arc::default();
    let mut sim = sim(27);
    let (w, r) = (world.clone(), ran.clone());
    sim.host("ledger", move || {
        let (w, r) = (w.clone(), r.clone());
        async move {
            let counted = |r: Arc<Mutex<u32>>| {
                move |_ctx: Context, body: Bytes| {
                    *r.lock().unwrap() += 1;
                    async move { Ok(body) }
                }
            };
            let eps = vec![
                Endpoint::raw("move", counted(r.clone())).allow_services(&["api.ledger"]),
                Endpoint::raw("audit", counted(r.clone())).require_scope("admin"),
            ];
            w.serve("ledger", "service.ledger", 0, eps).await
        }
    });
    let w = world.clone();
    sim.client("client", async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let ctx = Context::background().with_timeout(Duration::from_secs(1));
        let intruder = w.client("api.other");
        let refused = intruder
            .send(&ctx, Call::new("service.ledger", "move"))
            .await
            .expect_err("not allowed");
        assert_eq!(refused.code(), "forbidden.caller");
        w.client("api.ledger")
            .send(&ctx, Call::new("service.ledger", "move"))
            .await?;
        // Scopes count only as the gateway signed them, for the trace they were signed for.
        let traced = ctx.with_trace(intruder.new_trace());
        let signer = crate::support::credential("gateway");
        let user = traced.with_identity(&Identity::new("u1", &["read", "write"]), &signer);
        let refused = intruder
            .send(&user, Call::new("service.ledger", "audit"))
            .await
            .expect_err("no admin scope");
        assert_eq!(refused.code(), "forbidden.scope");
        let forged = user.with_meta("scopes", "read admin");
        let refused = intruder
            .send(&forged, Call::new("service.ledger", "audit"))
            .await
            .expect_err("scopes changed after signing");
        assert_eq!(refused.code(), "unauthorized.no_user");
        let admin = traced.with_identity(&Identity::new("u1", &["read", "admin"]), &signer);
        intruder
            .send(&admin, Call::new("service.ledger", "audit"))
            .await?;
        Ok(())
    });
    sim.run()?;
    assert_eq!(
        *ran.lock().unwrap(),
        2,
        "refused calls never reach the handler"
    );
    Ok(())
}

#[test]
fn health_checks_answer_in_band_and_report_out_of_band_on_an_interval() -> turmoil::Result {
    // Goal: the talk's Checker, both ways. Method: a checker that turns unhealthy at 1 s; ask
    // the health endpoint before and after, and read the out-of-band events.
    use windtunnel::framework::health::{CheckResult, HealthReport};
    let world = World::new();
    let mut sim = sim(28);
    let w = world.clone();
    sim.host("svc", move || {
        let w = w.clone();
        async move {
            let mut config = ServiceConfig::new("svc.h", "health");
            config.instance = Some("svc.h[0]".into());
            config.health_interval = Some(Duration::from_millis(500));
            let server = Server::with(config, w.events.clone(), Some(w.registry.clone()));
            server.add_endpoints([echo()]);
            server.add_checker(
                "disk",
                Arc::new(|| {
                    let t = turmoil::sim_elapsed().unwrap_or_default();
                    let details = [("free".to_string(), "12%".to_string())]
                        .into_iter()
                        .collect();
                    if t < Duration::from_secs(1) {
                        CheckResult::healthy(details)
                    } else {
                        CheckResult::unhealthy("disk nearly full", details)
                    }
                }),
            );
            server.run(transport(), &Listen::host("svc", PORT)).await?;
            Ok(())
        }
    });
    let w = world.clone();
    sim.client("client", async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let client = w.client("client");
        let ctx = Context::background().with_timeout(Duration::from_secs(1));
        let before: HealthReport = client
            .call(&ctx, "svc.h", "health", &serde_json::json!({}))
            .await?;
        assert!(before.healthy, "{before:?}");
        assert_eq!(before.checks["disk"].details["free"], "12%");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let ctx = Context::background().with_timeout(Duration::from_secs(1));
        let after: HealthReport = client
            .call(&ctx, "svc.h", "health", &serde_json::json!({}))
            .await?;
        assert!(!after.healthy);
        assert_eq!(
            after.checks["disk"].error.as_deref(),
            Some("disk nearly full")
        );
        Ok(())
    });
    sim.run()?;
    let rounds: Vec<(&'static str, u128)> = world
        .events
        .events()
        .iter()
        .filter(|e| &*e.instance == "svc.h[0]" && matches!(e.kind.name(), "healthy" | "unhealthy"))
        .map(|e| (e.kind.name(), e.at.as_millis()))
        .collect();
    assert!(rounds.len() >= 2, "{rounds:?}");
    assert_eq!(rounds[0].0, "healthy", "{rounds:?}");
    assert!(
        rounds
            .iter()
            .any(|(k, at)| *k == "unhealthy" && *at >= 1000),
        "{rounds:?}"
    );
    Ok(())
}
