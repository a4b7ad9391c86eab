//! A server survives its own handlers' panics and its peers' bad bytes.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use windtunnel::framework::{Call, Context, Endpoint};

use crate::support::{sim, World, PORT};

fn echo_or_panic() -> Endpoint {
    Endpoint::new("echo", |_ctx: Context, req: serde_json::Value| async move {
        if req.get("panic").is_some() {
            panic!("asked to panic");
        }
        Ok(req)
    })
}

#[test]
fn panicking_handler_answers_internal_panic_and_the_next_request_succeeds() -> turmoil::Result {
    // Goal: a panic is contained to its request. Method: one panicking call, then a normal one.
    let world = World::new();
    let mut sim = sim(5);
    let w = world.clone();
    sim.host("echo", move || {
        let w = w.clone();
        async move { w.serve("echo", "svc.echo", 0, vec![echo_or_panic()]).await }
    });
    let w = world.clone();
    sim.client("client", async move {
        let client = w.client("client");
        let ctx = Context::background().with_timeout(Duration::from_secs(1));
        let err = client
            .send(
                &ctx,
                Call::new("svc.echo", "echo").json(&serde_json::json!({"panic": true}))?,
            )
            .await
            .expect_err("the handler panicked");
        assert_eq!(err.code(), "internal.panic");
        assert!(err.message().contains("asked to panic"), "{err}");
        let ok = client
            .send(
                &ctx,
                Call::new("svc.echo", "echo").json(&serde_json::json!({"n": 1}))?,
            )
            .await?;
        assert_eq!(
            ok.decode::<serde_json::Value>()?,
            serde_json::json!({"n": 1})
        );
        Ok(())
    });
    sim.run()
}

/// Writes `bytes` on a raw connection, after the handshake when `keyed`, and reports whether
/// the server closed it.
async fn closed_after(bytes: &[u8], keyed: bool) -> Result<bool, Box<dyn std::error::Error>> {
    let mut raw = turmoil::net::TcpStream::connect(("echo", PORT)).await?;
    if keyed {
        crate::support::credential("raw")
            .client_handshake(&mut raw, Duration::from_secs(1))
            .await?;
    }
    raw.write_all(bytes).await?;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(1), raw.read(&mut buf)).await;
    Ok(matches!(read, Ok(Ok(0)) | Ok(Err(_))))
}

#[test]
fn garbage_and_oversize_frames_close_only_their_connection() -> turmoil::Result {
    // Goal: bad bytes cost the sender its connection and nothing else. Method: a client with a
    // live connection; then garbage and an oversize length on two raw connections; then the
    // first client calls again.
    let world = World::new();
    let mut sim = sim(6);
    let w = world.clone();
    sim.host("echo", move || {
        let w = w.clone();
        async move { w.serve("echo", "svc.echo", 0, vec![echo_or_panic()]).await }
    });
    let w = world.clone();
    sim.client("client", async move {
        let client = w.client("client");
        let ctx = Context::background().with_timeout(Duration::from_secs(1));
        client.send(&ctx, Call::new("svc.echo", "echo")).await?;
        let garbage = [0u8, 0, 0, 9, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5];
        let oversize = [0x7f, 0xff, 0xff, 0xff, 1, 2, 3];
        // From a peer holding the key (the frame decoder's defences), and from one that
        // did not even start the handshake (closed as soon as its first bytes are not one).
        for keyed in [true, false] {
            assert!(
                closed_after(&garbage, keyed).await?,
                "garbage must close the connection"
            );
            assert!(
                closed_after(&oversize, keyed).await?,
                "an oversize frame must close the connection"
            );
        }
        let ok = client.send(&ctx, Call::new("svc.echo", "echo")).await?;
        assert_eq!(&ok.body[..], b"{}");
        Ok(())
    });
    sim.run()
}
