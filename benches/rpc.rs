//! RPC round trips per wall-clock second through windtunnel's client and server over turmoil,
//! against a bare turmoil TCP ping-pong of the same shape, measured in one run. Between the two
//! runs a floor: a hand-written multiplexed RPC with a deadline per call and a task per request,
//! the least any RPC framework with deadlines does; what windtunnel costs above it is its own
//! per-call features (headers, contexts, cancellation, ids, balancing, events).
//!
//! Shape: 2 hosts, 50 concurrent callers multiplexed on one client host, 64-byte bodies,
//! one-way latency 0.2-2 ms, 1 ms ticks. Usage: `cargo bench --bench rpc [-- SIM_SECONDS]`.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use windtunnel::framework::transport::{TcpTransport, Turmoil};
use windtunnel::framework::{
    Call, Client, ClientConfig, Context, Endpoint, Event, EventRef, EventSink, Listen, NullSink,
    Registry, Server, ServiceConfig,
};

const CALLERS: usize = 50;
const BODY: [u8; 64] = [7u8; 64];

fn builder(sim_secs: u64) -> turmoil::Sim<'static> {
    turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(sim_secs + 5))
        .min_message_latency(Duration::from_micros(200))
        .max_message_latency(Duration::from_millis(2))
        .rng_seed(7)
        .tcp_capacity(4096)
        .build()
}

/// Round trips and wall seconds of the bare ping-pong.
#[inline(never)] // a symbol of its own, for callgrind's --toggle-collect
fn bare(sim_secs: u64) -> (u64, f64) {
    let mut sim = builder(sim_secs);
    sim.host("server", || async move {
        let l = turmoil::net::TcpListener::bind("0.0.0.0:9000").await?;
        loop {
            let (mut s, _) = l.accept().await?;
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while s.read_exact(&mut buf).await.is_ok() {
                    if s.write_all(&buf).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let count = Rc::new(Cell::new(0u64));
    let c = count.clone();
    sim.client("client", async move {
        let mut tasks = Vec::new();
        for _ in 0..CALLERS {
            let c = c.clone();
            tasks.push(tokio::task::spawn_local(async move {
                let mut s = turmoil::net::TcpStream::connect("server:9000").await?;
                let mut rb = [0u8; 64];
                let end = tokio::time::Instant::now() + Duration::from_secs(sim_secs);
                while tokio::time::Instant::now() < end {
                    s.write_all(&BODY).await?;
                    s.read_exact(&mut rb).await?;
                    c.set(c.get() + 1);
                }
                Ok::<(), std::io::Error>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        Ok(())
    });
    let start = std::time::Instant::now();
    sim.run().expect("bare ping-pong runs");
    (count.get(), start.elapsed().as_secs_f64())
}

/// Bytes of a floor frame: length, call id, deadline, 64-byte body.
const FLOOR_FRAME: usize = 4 + 8 + 8 + 64;

/// Writes the frames it is handed to one connection, in order (one writer per connection, as a
/// multiplexed transport needs): each wake, every frame waiting in one write, so a burst of
/// calls made in one instant costs the network one segment, as windtunnel's transport batches
/// them. Its channel is unbounded only because no more than the 50 callers' frames, one each,
/// are ever in it.
async fn floor_writer(
    mut w: turmoil::net::tcp::OwnedWriteHalf,
    mut frames: tokio::sync::mpsc::UnboundedReceiver<[u8; FLOOR_FRAME]>,
) {
    let mut batch = Vec::with_capacity(CALLERS * FLOOR_FRAME);
    while let Some(frame) = frames.recv().await {
        batch.clear();
        batch.extend_from_slice(&frame);
        while let Ok(frame) = frames.try_recv() {
            batch.extend_from_slice(&frame);
        }
        if w.write_all(&batch).await.is_err() {
            break;
        }
    }
}

/// Round trips and wall seconds of the floor: the least any multiplexed RPC with deadlines
/// does per call, hand-written. One connection for the 50 callers; each call takes an id,
/// parks a oneshot in a map of calls in flight, hands a framed request to the connection's
/// writer task and waits for the answer under a 1 s deadline (one timer). The server reads
/// frames and starts a task per request (a handler may take time), which hands the answer to
/// its connection's writer; the client's read task finds the call by id. No headers, contexts,
/// cancellation, events or balancing: what is left of windtunnel's cost above this line is
/// those.
#[inline(never)] // as `bare`
fn floor(sim_secs: u64) -> (u64, f64) {
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use tokio::sync::{mpsc, oneshot};

    let mut sim = builder(sim_secs);
    sim.host("server", || async move {
        let l = turmoil::net::TcpListener::bind("0.0.0.0:9000").await?;
        loop {
            let (s, _) = l.accept().await?;
            tokio::task::spawn_local(async move {
                let (mut r, w) = s.into_split();
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::task::spawn_local(floor_writer(w, rx));
                let mut frame = [0u8; FLOOR_FRAME];
                while r.read_exact(&mut frame).await.is_ok() {
                    let (tx, request) = (tx.clone(), frame);
                    tokio::task::spawn_local(async move {
                        let _ = tx.send(request);
                    });
                }
            });
        }
    });
    let count = Rc::new(Cell::new(0u64));
    let c = count.clone();
    sim.client("client", async move {
        let (mut r, w) = turmoil::net::TcpStream::connect("server:9000")
            .await?
            .into_split();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::task::spawn_local(floor_writer(w, rx));
        type Waiting = BTreeMap<u64, oneshot::Sender<[u8; FLOOR_FRAME]>>;
        let pending: Rc<RefCell<Waiting>> = Rc::default();
        let in_flight = pending.clone();
        tokio::task::spawn_local(async move {
            let mut frame = [0u8; FLOOR_FRAME];
            while r.read_exact(&mut frame).await.is_ok() {
                let id = u64::from_le_bytes(frame[4..12].try_into().unwrap_or_default());
                if let Some(waiter) = in_flight.borrow_mut().remove(&id) {
                    let _ = waiter.send(frame);
                }
            }
        });
        let next = Rc::new(Cell::new(0u64));
        let mut tasks = Vec::new();
        for _ in 0..CALLERS {
            let (c, tx, pending, next) = (c.clone(), tx.clone(), pending.clone(), next.clone());
            tasks.push(tokio::task::spawn_local(async move {
                let end = tokio::time::Instant::now() + Duration::from_secs(sim_secs);
                while tokio::time::Instant::now() < end {
                    let id = next.get();
                    next.set(id + 1);
                    let (answer, answered) = oneshot::channel();
                    pending.borrow_mut().insert(id, answer);
                    let mut frame = [0u8; FLOOR_FRAME];
                    frame[..4].copy_from_slice(&(FLOOR_FRAME as u32 - 4).to_le_bytes());
                    frame[4..12].copy_from_slice(&id.to_le_bytes());
                    frame[12..20].copy_from_slice(&1_000u64.to_le_bytes());
                    frame[20..].copy_from_slice(&BODY);
                    if tx.send(frame).is_err() {
                        break;
                    }
                    match tokio::time::timeout(Duration::from_secs(1), answered).await {
                        Ok(Ok(_)) => c.set(c.get() + 1),
                        _ => {
                            pending.borrow_mut().remove(&id);
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        Ok(())
    });
    let start = std::time::Instant::now();
    sim.run().expect("the floor runs");
    (count.get(), start.elapsed().as_secs_f64())
}

/// Counts events, as the wind tunnel's own sink does (it folds each one into its metrics).
#[derive(Default)]
struct CountingSink(std::sync::atomic::AtomicU64);

impl EventSink for CountingSink {
    fn emit(&self, _event: Event) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    // The client and server lend their events; counting one needs no copy of it.
    fn emit_ref(&self, _event: EventRef<'_>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Round trips and wall seconds through windtunnel's client, transport and server, with
/// events off (`NullSink`) or on.
fn framework(sim_secs: u64, events: Arc<dyn EventSink>) -> (u64, f64) {
    let mut sim = builder(sim_secs);
    let registry = Registry::new();
    let (reg, ev) = (registry.clone(), events.clone());
    sim.host("server", move || {
        let (reg, ev) = (reg.clone(), ev.clone());
        async move {
            let server = Server::with(ServiceConfig::new("svc.echo", "echo"), ev, Some(reg));
            server.add_endpoints([Endpoint::raw("echo", |_ctx, body: Bytes| async move {
                Ok(body)
            })]);
            server
                .run(
                    Arc::new(TcpTransport::<Turmoil>::with_credential(credential())),
                    &Listen::host("server", 9000),
                )
                .await?;
            Ok(())
        }
    });
    let count = Rc::new(Cell::new(0u64));
    let c = count.clone();
    sim.client("client", async move {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let client = Client::with_events(
            ClientConfig::new("bench"),
            Arc::new(TcpTransport::<Turmoil>::with_credential(credential())),
            registry,
            events,
        );
        let mut tasks = Vec::new();
        for _ in 0..CALLERS {
            let (c, client) = (c.clone(), client.clone());
            tasks.push(tokio::task::spawn_local(async move {
                let end = tokio::time::Instant::now() + Duration::from_secs(sim_secs);
                let ctx = Context::background();
                while tokio::time::Instant::now() < end {
                    let call = Call::new("svc.echo", "echo")
                        .bytes(Bytes::from_static(&BODY))
                        .timeout(Duration::from_secs(1));
                    client.send(&ctx, call).await?;
                    c.set(c.get() + 1);
                }
                Ok::<(), windtunnel::framework::Error>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        Ok(())
    });
    let start = std::time::Instant::now();
    sim.run().expect("framework echo runs");
    (count.get(), start.elapsed().as_secs_f64())
}

/// The allocator `windtunnel` installs, for every run here alike (the bare runs spawn tasks
/// too), so the ratios compare the same allocator (src/alloc.rs).
#[global_allocator]
static ALLOC: windtunnel::alloc::MallocAligned = windtunnel::alloc::MallocAligned;

fn main() {
    let sim_secs: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10);
    let (bare_n, bare_wall) = bare(sim_secs);
    let (floor_n, floor_wall) = floor(sim_secs);
    let (fw_n, fw_wall) = framework(sim_secs, Arc::new(NullSink));
    let (ev_n, ev_wall) = framework(sim_secs, Arc::new(CountingSink::default()));
    let bare_rate = bare_n as f64 / bare_wall;
    let line = |name: &str, n: u64, wall: f64| {
        let rate = n as f64 / wall;
        println!(
            "{name:<30} {n} round trips in {wall:.3} s wall = {rate:.0}/s, {:.1}x real time, ratio to bare {:.2}",
            sim_secs as f64 / wall,
            rate / bare_rate
        );
    };
    line("bare turmoil", bare_n, bare_wall);
    line("floor (multiplexed, deadline)", floor_n, floor_wall);
    line("windtunnel (events off)", fw_n, fw_wall);
    line("windtunnel (events on)", ev_n, ev_wall);
}

/// The deployment's key, as every simulated run derives it from its seed.
fn credential() -> windtunnel::framework::Credential {
    windtunnel::framework::Credential::new(
        windtunnel::framework::DeploymentKey::from_seed(1),
        "bench",
        windtunnel::framework::ids::stream(1, "bench"),
    )
}
