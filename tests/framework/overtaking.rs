//! Messages that overtake one another. The wind tunnel's network model gives each message a
//! latency of its own, and turmoil (as patched under `vendor/turmoil`) carries it that long:
//! such a TCP segment is handed to the reader as it arrives, not in sequence, a FIN still
//! comes after every segment sent before it, and a server drops a request whose cancel came
//! first (remembering only as many such cancels as a connection may run requests).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use windtunnel::framework::transport::frame::{decode_payload, encode_frame};
use windtunnel::framework::transport::{Frame, Headers, RequestFrame, TransportConfig};

use crate::support::{host_h, keyed, now, sim, World, PORT};

/// Writes `bytes` to `stream` as one segment that arrives `latency` after it leaves.
async fn write_after(
    stream: &mut turmoil::net::TcpStream,
    bytes: &[u8],
    latency: Duration,
) -> std::io::Result<()> {
    turmoil::set_next_message_latency(Some(latency));
    let wrote = stream.write_all(bytes).await;
    turmoil::set_next_message_latency(None);
    wrote
}

/// Reads from `stream` until it ends; each read with the time it came.
async fn read_all(
    stream: &mut turmoil::net::TcpStream,
) -> std::io::Result<Vec<(Vec<u8>, Duration)>> {
    let mut reads = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(reads);
        }
        reads.push((buf[..n].to_vec(), now()));
    }
}

#[test]
fn a_segment_with_a_latency_of_its_own_arrives_when_it_says_and_may_overtake() -> turmoil::Result {
    // Goal: a segment written with its own latency is delivered after that latency, and is
    // not held behind a slower one sent before it; a FIN sent last still arrives last.
    // Method: "slow" with 40 ms, then "fast" with 5 ms, then the stream is closed; the reader
    // records each read and when it came.
    let mut sim = sim(71);
    let sent_at = Arc::new(Mutex::new(Duration::ZERO));
    let sent = sent_at.clone();
    sim.host("server", move || {
        let sent = sent.clone();
        async move {
            let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
            let (mut stream, _) = listener.accept().await?;
            let reads = read_all(&mut stream).await?;
            let at = *sent.lock().unwrap();
            let got: Vec<(&[u8], Duration)> = reads
                .iter()
                .map(|(bytes, when)| (bytes.as_slice(), *when - at))
                .collect();
            // Each arrives within a tick of its latency (delivery happens at a tick's end).
            let ms = Duration::from_millis;
            assert_eq!(got.len(), 2, "{got:?}");
            assert_eq!(
                got[0].0, b"fast",
                "the faster segment is read first: {got:?}"
            );
            assert!(got[0].1 >= ms(5) && got[0].1 <= ms(6), "{got:?}");
            assert_eq!(got[1].0, b"slow", "{got:?}");
            assert!(got[1].1 >= ms(40) && got[1].1 <= ms(41), "{got:?}");
            Ok(())
        }
    });
    sim.client("client", async move {
        let mut stream = turmoil::net::TcpStream::connect(("server", PORT)).await?;
        // The connection's own handshake segments are sequenced; wait for the accept to land.
        tokio::time::sleep(Duration::from_millis(10)).await;
        *sent_at.lock().unwrap() = now();
        write_after(&mut stream, b"slow", Duration::from_millis(40)).await?;
        write_after(&mut stream, b"fast", Duration::from_millis(5)).await?;
        // The FIN (drawn at the link's 2 ms) waits for "slow".
        drop(stream);
        Ok(())
    });
    sim.run()
}

#[test]
fn a_latency_set_for_the_next_message_is_used_once() -> turmoil::Result {
    // Goal: the setting applies to one message only, and a message sent without it keeps
    // turmoil's order and the link's latency. Method: one write with 30 ms, then two plain
    // ones; the plain ones arrive in order after the link's 2 ms, before the first.
    let mut sim = sim(72);
    sim.host("server", || async {
        let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
        let (mut stream, _) = listener.accept().await?;
        let reads = read_all(&mut stream).await?;
        let bytes: Vec<u8> = reads.iter().flat_map(|(b, _)| b.clone()).collect();
        assert_eq!(bytes, b"bcA", "{reads:?}");
        Ok(())
    });
    sim.client("client", async {
        let mut stream = turmoil::net::TcpStream::connect(("server", PORT)).await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
        write_after(&mut stream, b"A", Duration::from_millis(30)).await?;
        stream.write_all(b"b").await?;
        stream.write_all(b"c").await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(())
    });
    sim.run()
}

/// One frame, length-prefixed, as a transport writes it.
fn frame(frame: &Frame) -> Result<BytesMut, Box<dyn std::error::Error>> {
    let mut buf = BytesMut::new();
    encode_frame(frame, &mut buf, 1 << 20)?;
    Ok(buf)
}

/// A request for `svc.h.work` with id `id`.
fn request(id: u64) -> Frame {
    Frame::Request(RequestFrame {
        id,
        service: "svc.h".into(),
        endpoint: "work".into(),
        headers: Headers::default(),
        body: Bytes::new(),
    })
}

/// Reads frames from `raw` until it fails, noting the id of each answer.
async fn read_answers(
    raw: &mut turmoil::net::TcpStream,
    answered: &mut Vec<u64>,
) -> Result<(), Box<dyn std::error::Error>> {
    loop {
        let len = raw.read_u32().await? as usize;
        let mut payload = vec![0u8; len];
        raw.read_exact(&mut payload).await?;
        if let Frame::Response(r) = decode_payload(Bytes::from(payload))? {
            answered.push(r.id);
        }
    }
}

#[test]
fn a_request_whose_cancel_arrived_first_is_never_run() -> turmoil::Result {
    // Goal: when the network lets a cancel overtake its request, the server drops the request
    // when it comes, and still serves the others on the connection. Method: a raw keyed peer
    // sends request 1 with 30 ms, its cancel with 5 ms, then request 2 with 5 ms; only
    // request 2 starts a handler, and only request 2 is answered.
    let world = World::new();
    let mut sim = sim(73);
    host_h(
        &mut sim,
        &world,
        TransportConfig::default(),
        Duration::ZERO,
        4,
    );
    let w = world.clone();
    sim.client("client", async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut raw = keyed().await?;
        let ms = Duration::from_millis;
        write_after(&mut raw, &frame(&request(1))?, ms(30)).await?;
        write_after(&mut raw, &frame(&Frame::Cancel { id: 1 })?, ms(5)).await?;
        write_after(&mut raw, &frame(&request(2))?, ms(5)).await?;
        let mut answered = Vec::new();
        // Read whatever comes in the next 200 ms: long past request 1's arrival.
        let _ = tokio::time::timeout(ms(200), read_answers(&mut raw, &mut answered)).await;
        assert_eq!(answered, vec![2], "only request 2 is answered");
        let started = w.events_at("svc.h[0]", "handler_started");
        assert_eq!(started.len(), 1, "one handler ran: {started:?}");
        Ok(())
    });
    sim.run()
}

#[test]
fn a_server_remembers_only_as_many_early_cancels_as_a_connection_may_run_requests(
) -> turmoil::Result {
    // Goal: cancels of requests never seen cannot grow a server's memory without bound (a
    // cancel that crossed its answer stays until forgotten). Method: a connection that may run
    // 2 requests at once; cancels of requests 1, 2 and 3 arrive before any of them, so the
    // server forgets the oldest (1). Then requests 1 and 3 arrive: 1 runs and is answered, 3
    // is dropped.
    let world = World::new();
    let mut sim = sim(74);
    let config = TransportConfig {
        max_inflight_per_connection: 2,
        ..TransportConfig::default()
    };
    host_h(&mut sim, &world, config, Duration::ZERO, 4);
    sim.client("client", async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut raw = keyed().await?;
        for id in 1..=3 {
            raw.write_all(&frame(&Frame::Cancel { id })?).await?;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        raw.write_all(&frame(&request(1))?).await?;
        raw.write_all(&frame(&request(3))?).await?;
        let mut answered = Vec::new();
        let wait = Duration::from_millis(200);
        let _ = tokio::time::timeout(wait, read_answers(&mut raw, &mut answered)).await;
        assert_eq!(
            answered,
            vec![1],
            "the forgotten cancel's request runs, the other not"
        );
        Ok(())
    });
    sim.run()
}
