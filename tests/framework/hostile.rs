//! Peers that hold a server's resources: an incomplete frame held open, more connections than
//! the cap, more requests in flight on one connection than it may run, and a caller that never
//! reads its answers. Each costs the server a bounded amount and nothing else.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use windtunnel::framework::transport::frame::encode_frame;
use windtunnel::framework::transport::{
    Frame, Headers, RequestFrame, TcpTransport, Transport, TransportConfig, Turmoil,
};
use windtunnel::framework::{Call, Context, Endpoint, Listen, Server, ServiceConfig};

use crate::support::{credential, host_h, keyed, sim, World, PORT};

/// Whether `raw` is closed within `within` (EOF or an error), rather than still open.
async fn closes_within(raw: &mut turmoil::net::TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(within, raw.read(&mut buf)).await;
    matches!(read, Ok(Ok(0)) | Ok(Err(_)))
}

#[test]
fn an_incomplete_frame_held_open_is_closed_after_the_timeout() -> turmoil::Result {
    let world = World::new();
    let mut sim = sim(61);
    let config = TransportConfig {
        partial_frame_timeout: Duration::from_secs(5),
        ..TransportConfig::default()
    };
    host_h(&mut sim, &world, config, Duration::ZERO, 8);
    let w = world.clone();
    sim.client("client", async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut raw = keyed().await?;
        // A header that declares 4 MiB, then ten bytes of it.
        raw.write_all(&(4u32 << 20).to_be_bytes()).await?;
        raw.write_all(b"ten bytes.").await?;
        assert!(
            !closes_within(&mut raw, Duration::from_secs(4)).await,
            "still open before the timeout"
        );
        assert!(
            closes_within(&mut raw, Duration::from_secs(2)).await,
            "closed once it passed"
        );
        let ctx = Context::background().with_timeout(Duration::from_secs(1));
        let reply = w
            .client("client")
            .send(&ctx, Call::new("svc.h", "work"))
            .await?;
        assert_eq!(reply.body.len(), 8, "others are served as before");
        Ok(())
    });
    sim.run()
}

#[test]
fn connections_over_the_cap_are_closed_at_once() -> turmoil::Result {
    let world = World::new();
    let mut sim = sim(62);
    let config = TransportConfig {
        max_connections: 2,
        ..TransportConfig::default()
    };
    host_h(&mut sim, &world, config, Duration::ZERO, 8);
    sim.client("client", async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        // Connections count against the cap once they proved they hold the key.
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(keyed().await?);
        }
        let mut third = keyed().await?;
        assert!(closes_within(&mut third, Duration::from_secs(1)).await);
        for raw in &mut held {
            assert!(!closes_within(raw, Duration::from_millis(200)).await);
        }
        drop(held);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut again = keyed().await?;
        assert!(
            !closes_within(&mut again, Duration::from_millis(200)).await,
            "a closed connection frees its slot"
        );
        Ok(())
    });
    sim.run()
}

#[test]
fn stalled_handshakes_cannot_crowd_out_peers_that_hold_the_key() -> turmoil::Result {
    // Goal: a peer without the key that opens connections and says nothing holds no
    // connection slot, and at most its share of handshakes, each for at most the handshake
    // timeout. Method: one host opens 20 silent connections (its share is 16: 4 are closed at
    // once, the rest after 2 s); meanwhile a caller holding the key on another host is served,
    // though the listener's connection cap is 2.
    let world = World::new();
    let mut sim = sim(67);
    let config = TransportConfig {
        max_connections: 2,
        ..TransportConfig::default()
    };
    host_h(&mut sim, &world, config, Duration::ZERO, 8);
    sim.client("staller", async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut silent = Vec::new();
        for _ in 0..20 {
            silent.push(turmoil::net::TcpStream::connect(("h", PORT)).await?);
        }
        let mut closed_at_once = 0;
        for raw in &mut silent {
            if closes_within(raw, Duration::from_millis(50)).await {
                closed_at_once += 1;
            }
        }
        assert_eq!(
            closed_at_once, 4,
            "beyond its 16 handshakes, a peer's connections close at once"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        for raw in &mut silent {
            assert!(
                closes_within(raw, Duration::from_millis(100)).await,
                "a stalled handshake ends"
            );
        }
        Ok(())
    });
    let w = world.clone();
    sim.client("client", async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let ctx = Context::background().with_timeout(Duration::from_secs(1));
        let reply = w
            .client("client")
            .send(&ctx, Call::new("svc.h", "work"))
            .await?;
        assert_eq!(
            reply.body.len(),
            8,
            "served while the silent connections wait"
        );
        Ok(())
    });
    sim.run()
}

#[test]
fn requests_over_the_per_connection_cap_are_refused_with_a_typed_error() -> turmoil::Result {
    let world = World::new();
    let mut sim = sim(63);
    let config = TransportConfig {
        max_inflight_per_connection: 2,
        ..TransportConfig::default()
    };
    host_h(&mut sim, &world, config, Duration::from_millis(100), 8);
    let w = world.clone();
    sim.client("client", async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let client = w.client("client");
        let ctx = Context::background().with_timeout(Duration::from_secs(1));
        let calls = (0..5).map(|_| client.send(&ctx, Call::new("svc.h", "work")));
        let results = futures::future::join_all(calls).await;
        let ok = results.iter().filter(|r| r.is_ok()).count();
        let refused = results
            .iter()
            .filter(|r| {
                r.as_ref()
                    .is_err_and(|e| e.code() == "rate_limited.connection_inflight")
            })
            .count();
        assert_eq!((ok, refused), (2, 3), "{results:?}");
        Ok(())
    });
    sim.run()
}

#[test]
fn a_caller_that_never_reads_its_answers_stops_being_served(
) -> Result<(), Box<dyn std::error::Error>> {
    // Goal: answers that back up stop the server reading, so a caller cannot make it queue
    // unbounded replies. Method: on real TCP (the simulated network never pushes back), 16 KB
    // answers, an outbox bound of 256 KB, 4,000 requests written and no answer read: the server
    // starts only as many as the kernel's socket buffers and the outbox hold. Then reading
    // the answers lets the rest through.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let events = windtunnel::framework::MemorySink::new();
        let config = TransportConfig {
            max_outbox_bytes: 256 * 1024,
            credential: Some(credential("h")),
            ..TransportConfig::default()
        };
        let transport =
            Arc::new(TcpTransport::<windtunnel::framework::transport::Tokio>::new(config));
        let mut sc = ServiceConfig::new("svc.h", "hostile peers");
        sc.instance = Some("svc.h[0]".into());
        let server = Server::with(sc, events.clone(), None);
        server.add_endpoints([Endpoint::raw("work", |_ctx, _body: Bytes| async move {
            Ok(Bytes::from(vec![b'x'; 16 * 1024]))
        })]);
        let addr = server.start(transport, &Listen::on("127.0.0.1:0")).await?;
        let mut raw = tokio::net::TcpStream::connect(&addr).await?;
        credential("client")
            .client_handshake(&mut raw, Duration::from_secs(1))
            .await?;
        let mut buf = BytesMut::new();
        for id in 1..=4000 {
            let request = Frame::Request(RequestFrame {
                id,
                service: "svc.h".into(),
                endpoint: "work".into(),
                headers: Headers::default(),
                body: Bytes::new(),
            });
            encode_frame(&request, &mut buf, 1 << 20)?;
        }
        raw.write_all(&buf).await?;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let started = |events: &windtunnel::framework::MemorySink| {
            events
                .events()
                .iter()
                .filter(|e| e.kind.name() == "handler_started")
                .count()
        };
        let before = started(&events);
        assert!(
            before < 2000,
            "{before} of 4,000 requests started while no answer was read"
        );
        let mut sink = vec![0u8; 256 * 1024];
        let mut read = 0usize;
        while read < 4000 * 16 * 1024 {
            match tokio::time::timeout(Duration::from_secs(10), raw.read(&mut sink)).await {
                Ok(Ok(n)) if n > 0 => read += n,
                _ => break,
            }
        }
        assert_eq!(started(&events), 4000, "all served once the caller reads");
        server.stop().await;
        Ok(())
    })
}

/// A request frame for `svc.h.work` that claims a user and a calling service.
fn forged_request() -> Result<BytesMut, Box<dyn std::error::Error>> {
    let mut headers = Headers {
        origin_service: Some("service.card-processing".into()),
        ..Headers::default()
    };
    headers.meta.insert("user".into(), "alice".into());
    headers
        .meta
        .insert("scopes".into(), "accounts cards".into());
    let request = Frame::Request(RequestFrame {
        id: 1,
        service: "svc.h".into(),
        endpoint: "work".into(),
        headers,
        body: Bytes::new(),
    });
    let mut buf = BytesMut::new();
    encode_frame(&request, &mut buf, 1 << 20)?;
    Ok(buf)
}

#[test]
fn peers_without_the_deployment_key_are_never_served() -> turmoil::Result {
    // Goal: knowing a service port is not enough. Method: a raw frame with no handshake, a
    // handshake with another deployment's key followed by frames anyway, and a whole transport
    // holding the wrong key; the handler must never run, and a keyed caller still gets in.
    let world = World::new();
    let mut sim = sim(65);
    host_h(
        &mut sim,
        &world,
        TransportConfig::default(),
        Duration::ZERO,
        8,
    );
    let w = world.clone();
    sim.client("intruder", async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        // 1. A request frame straight away.
        let mut raw = turmoil::net::TcpStream::connect(("h", PORT)).await?;
        raw.write_all(&forged_request()?).await?;
        assert!(closes_within(&mut raw, Duration::from_secs(1)).await);
        // 2. The handshake with a key of another deployment, then frames regardless of the
        // server's proof: the server checks the caller's proof before it reads a frame.
        let mut raw = turmoil::net::TcpStream::connect(("h", PORT)).await?;
        let mut hello = b"WTA1".to_vec();
        hello.extend_from_slice(&[7u8; 16]);
        hello.push(23);
        hello.extend_from_slice(b"service.card-processing");
        raw.write_all(&hello).await?;
        let mut challenge = [0u8; 52];
        raw.read_exact(&mut challenge).await?;
        raw.write_all(&[0u8; 32]).await?;
        raw.write_all(&forged_request()?).await?;
        assert!(closes_within(&mut raw, Duration::from_secs(1)).await);
        // 3. A transport of its own with the wrong key: its own check of the server's proof
        // fails, so it sends nothing and says why.
        let wrong = windtunnel::framework::Credential::new(
            windtunnel::framework::DeploymentKey::from_seed(2),
            "intruder",
            windtunnel::framework::ids::stream(2, "intruder"),
        );
        let transport = Arc::new(TcpTransport::<Turmoil>::with_credential(wrong));
        let client = windtunnel::framework::Client::new(
            windtunnel::framework::ClientConfig::new("intruder"),
            transport,
            w.registry.clone(),
        );
        let ctx = Context::background().with_timeout(Duration::from_secs(1));
        let refused = client
            .send(&ctx, Call::new("svc.h", "work"))
            .await
            .expect_err("wrong key");
        assert!(
            refused
                .to_string()
                .contains("does not hold the deployment key"),
            "{refused}"
        );
        assert!(
            w.events_at("svc.h[0]", "request_received").is_empty(),
            "nothing an intruder sent was read as a request"
        );
        let reply = w
            .client("client")
            .send(&ctx, Call::new("svc.h", "work"))
            .await?;
        assert_eq!(reply.body.len(), 8, "a keyed caller is served as before");
        Ok(())
    });
    sim.run()
}

#[test]
fn a_transport_without_a_credential_neither_listens_nor_calls() -> turmoil::Result {
    let world = World::new();
    let mut sim = sim(66);
    let w = world.clone();
    sim.client("bare", async move {
        let bare: Arc<dyn Transport> = Arc::new(TcpTransport::<Turmoil>::default());
        let inlet = windtunnel::framework::transport::Inlet::new(
            |_| {},
            tokio_util::sync::CancellationToken::new(),
        );
        let listened = bare.listen("0.0.0.0:9000", inlet).await;
        assert!(
            matches!(
                listened,
                Err(windtunnel::framework::transport::ListenError::NoCredential(
                    _
                ))
            ),
            "{listened:?}"
        );
        w.registry.register("svc.h", "svc.h[0]", "h:1");
        let client = windtunnel::framework::Client::new(
            windtunnel::framework::ClientConfig::new("bare"),
            bare,
            w.registry.clone(),
        );
        let ctx = Context::background().with_timeout(Duration::from_secs(1));
        let refused = client
            .send(&ctx, Call::new("svc.h", "work"))
            .await
            .expect_err("no credential");
        assert!(refused.to_string().contains("no credential"), "{refused}");
        Ok(())
    });
    sim.run()
}
