//! The framework's work timers inside a simulated host (`windtunnel::framework::timer`). With a
//! 1 ms tick the host keeps their deadlines itself, in buckets of a millisecond, instead of
//! registering each with tokio's timer: they must wake exactly where tokio's timer would have,
//! near and far (past the buckets' reach of about a second), through drops and a crash.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use windtunnel::framework::timer;

/// When each labelled timer woke, in simulated time since the host's start.
type Woken = Arc<Mutex<Vec<(String, Duration)>>>;

/// Offsets of the deadlines from the moment they are armed: zero, inside a tick, on tick
/// boundaries, past tokio's first wheel level (64 ms), at and past the buckets' reach.
const OFFSETS_US: [u64; 11] = [
    0, 300, 1_000, 1_500, 7_200, 64_500, 999_000, 1_024_000, 1_025_500, 1_100_000, 3_000_000,
];

/// Arms, at `start + 0.4 ms`-ish moments of a host, a framework timer and a tokio timer for
/// each offset, and records when each wakes under `round`.
async fn arm_pairs(round: &'static str, woken: Woken, origin: Instant) {
    let mut tasks = Vec::new();
    for us in OFFSETS_US {
        let at = Instant::now() + Duration::from_micros(us);
        for kind in ["kept", "tokio"] {
            let woken = woken.clone();
            tasks.push(tokio::spawn(async move {
                match kind {
                    "kept" => timer::sleep_until(at).await,
                    _ => tokio::time::sleep_until(at).await,
                }
                let label = format!("{round} {us}us {kind}");
                woken.lock().expect("lock").push((label, origin.elapsed()));
            }));
        }
    }
    for task in tasks {
        task.await.expect("timer task");
    }
}

/// Each offset's two wake times under `round`, kept and tokio's.
fn pairs(woken: &Woken, round: &str) -> Vec<(u64, Duration, Duration)> {
    let woken = woken.lock().expect("lock");
    let at = |us: u64, kind: &str| {
        let label = format!("{round} {us}us {kind}");
        woken
            .iter()
            .find(|(l, _)| *l == label)
            .map(|(_, t)| *t)
            .unwrap_or_else(|| panic!("{label} never woke"))
    };
    OFFSETS_US
        .iter()
        .map(|&us| (us, at(us, "kept"), at(us, "tokio")))
        .collect()
}

#[test]
fn kept_deadlines_wake_at_the_tick_tokios_timer_would_near_and_far_and_after_a_crash() {
    // Goal: a framework timer wakes at the same simulated instant as tokio's timer for the same
    // deadline, for deadlines inside a tick, on its boundary, past a second, and on a host that
    // crashed with deadlines armed and was started again. Method: pairs of timers armed
    // together on one host, before and after a crash in which a round of long ones was lost.
    let woken: Woken = Arc::default();
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(30))
        .tick_duration(Duration::from_millis(1))
        .build();
    let boots = Arc::new(Mutex::new(0u32));
    {
        let (woken, boots) = (woken.clone(), boots.clone());
        sim.host("timers", move || {
            let (woken, boots) = (woken.clone(), boots.clone());
            async move {
                let origin = Instant::now();
                let boot = {
                    let mut boots = boots.lock().expect("lock");
                    *boots += 1;
                    *boots
                };
                if boot == 1 {
                    arm_pairs("first", woken.clone(), origin).await;
                    // Armed, then lost with the host: nothing of these may wake later.
                    tokio::spawn(arm_pairs("lost", woken.clone(), origin));
                } else {
                    arm_pairs("again", woken.clone(), origin).await;
                }
                std::future::pending::<()>().await;
                Ok(())
            }
        });
    }
    sim.client("driver", async {
        std::future::pending::<turmoil::Result>().await
    });
    let step = |sim: &mut turmoil::Sim, ms: u64| {
        for _ in 0..ms {
            sim.step().expect("step");
        }
    };
    step(&mut sim, 3_200);
    sim.crash("timers");
    step(&mut sim, 10);
    sim.bounce("timers");
    step(&mut sim, 3_200);

    for round in ["first", "again"] {
        for (us, kept, tokio) in pairs(&woken, round) {
            assert_eq!(kept, tokio, "{round}: the {us} us deadline");
            let ceil_ms = us.div_ceil(1_000);
            assert_eq!(
                kept,
                Duration::from_millis(ceil_ms),
                "{round}: the {us} us deadline wakes at the first tick at or after it"
            );
        }
    }
    let woken = woken.lock().expect("lock");
    let lost: Vec<_> = woken
        .iter()
        .filter(|(l, _)| l.starts_with("lost"))
        .collect();
    // The lost round was armed 3 s in: its short timers woke before the crash, the others
    // went with the host.
    assert!(
        lost.iter().all(|(_, t)| *t < Duration::from_millis(3_200)),
        "a timer armed before the crash woke after it: {lost:?}"
    );
}

#[test]
fn dropped_deadlines_never_wake_and_a_timeout_ready_at_its_deadline_returns_its_value() {
    // Goal: a kept deadline dropped before its time costs nothing later (many of them, so the
    // host's buckets are rebuilt, with one long deadline kept through it), and `timeout_at` polls
    // its future first, as tokio's does: a future ready at the deadline's own tick wins.
    // Method: one host; 20,000 call-like deadlines armed and dropped, one 2 s sleep armed
    // before them; then a timeout whose future is tokio's sleep to the same deadline.
    let woken: Woken = Arc::default();
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(30))
        .tick_duration(Duration::from_millis(1))
        .build();
    {
        let woken = woken.clone();
        sim.host("timers", move || {
            let woken = woken.clone();
            async move {
                let origin = Instant::now();
                let long = {
                    let woken = woken.clone();
                    tokio::spawn(async move {
                        timer::sleep(Duration::from_secs(2)).await;
                        woken
                            .lock()
                            .expect("lock")
                            .push(("long".into(), origin.elapsed()));
                    })
                };
                for i in 0..20_000u64 {
                    // Pending once, so the deadline is armed, then ready: it is dropped.
                    let call = async move {
                        tokio::task::yield_now().await;
                        i
                    };
                    let out = timer::timeout(Duration::from_millis(300 + i % 700), call).await;
                    assert_eq!(out, Ok(i));
                    if i % 1_000 == 0 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                let at = Instant::now() + Duration::from_millis(5);
                let raced = timer::timeout_at(at, tokio::time::sleep_until(at)).await;
                woken
                    .lock()
                    .expect("lock")
                    .push((format!("raced {}", raced.is_ok()), origin.elapsed()));
                let late =
                    timer::timeout_at(at + Duration::from_millis(3), std::future::pending::<()>())
                        .await;
                woken
                    .lock()
                    .expect("lock")
                    .push((format!("late {late:?}"), origin.elapsed()));
                long.await.expect("long sleep");
                std::future::pending::<()>().await;
                Ok(())
            }
        });
    }
    sim.client("driver", async {
        std::future::pending::<turmoil::Result>().await
    });
    for _ in 0..2_500 {
        sim.step().expect("step");
    }
    let woken = woken.lock().expect("lock").clone();
    let labels: Vec<&str> = woken.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        labels,
        ["raced true", "late Err(Elapsed)", "long"],
        "{woken:?}"
    );
    let (raced_at, late_at, long_at) = (woken[0].1, woken[1].1, woken[2].1);
    assert_eq!(late_at - raced_at, Duration::from_millis(3));
    assert_eq!(
        long_at,
        Duration::from_secs(2),
        "the long sleep kept through the rebuilds"
    );
}
