//! A run is a pure function of (scenario, seed): the same inputs give the same summary, byte for
//! byte apart from wall-clock fields, and another seed gives another history.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use windtunnel::framework::{Context, Endpoint};
use windtunnel::metrics::Side;
use windtunnel::system::{Built, Env, ServiceDef, System};
use windtunnel::tunnel::{Determinism, DeterminismCheck, Tunnel};

use crate::support::{one_service, run, scenario};

fn fault_rich() -> String {
    one_service(
        r#"
[[fault]]
at = "5s"
duration = "5s"
slow = { target = "svc.echo[0]", factor = 30 }
[[fault]]
at = "8s"
duration = "4s"
loss = { a = "client", b = "svc.echo", rate = "5%" }
[[fault]]
at = "12s"
duration = "3s"
crash = { target = "svc.echo[1]" }
"#,
    )
}

#[test]
fn the_same_file_and_seed_give_a_byte_identical_summary() {
    // Goal: replay bit for bit. Method: run a scenario with faults of three kinds twice and
    // compare the JSON (wall time is pinned by the test support).
    let s = scenario(&fault_rich());
    let a = serde_json::to_string_pretty(&run(&s)).expect("serialises");
    let b = serde_json::to_string_pretty(&run(&s)).expect("serialises");
    assert!(a.len() > 1000);
    assert_eq!(a, b);
}

#[test]
fn another_seed_gives_another_fingerprint() {
    let mut s = scenario(&fault_rich());
    let first = run(&s);
    s.seed += 1;
    let second = run(&s);
    assert_ne!(first.fingerprint, second.fingerprint);
    assert!(first.events > 1000, "the run must do real work");
}

#[test]
fn http_through_the_gateway_replays_bit_for_bit_too() {
    // Goal: hyper's connections and timers inside turmoil keep the run deterministic.
    let s = scenario(&one_service(
        r#"
[[route]]
route = "POST /echo"
to = "svc.echo.get"
[[load]]
name = "http"
route = "POST /echo"
rate = "80/s"
deadline = "200ms"
[[fault]]
at = "5s"
duration = "5s"
latency = { target = "svc.echo", add = { dist = "uniform", min = "1ms", max = "9ms" } }
"#,
    ));
    let a = serde_json::to_string(&run(&s)).expect("serialises");
    let b = serde_json::to_string(&run(&s)).expect("serialises");
    assert_eq!(a, b);
}

/// Instances of the alternating service built in this process, across runs.
static ALTERNATING_BUILDS: AtomicU64 = AtomicU64::new(0);
/// Calls of the first-call service's handler in this process, across runs.
static FIRST_CALLS: AtomicU64 = AtomicU64::new(0);

/// A service whose handler depends on what the process did before the run: `alternating`
/// takes 1 ms in instances built an even number of times before and 2 ms in the others (so
/// runs 1 and 3 of a check agree, and run 2 differs); otherwise it takes 1 ms the first time
/// it is ever called, 2 ms after.
struct Flaky {
    alternating: bool,
}

impl System for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }

    fn services(&self) -> Vec<ServiceDef> {
        let alternating = self.alternating;
        vec![ServiceDef::new("flaky", move |_env: &Env| {
            let even_build = alternating
                && ALTERNATING_BUILDS
                    .fetch_add(1, Ordering::SeqCst)
                    .is_multiple_of(2);
            Built::endpoints(vec![Endpoint::raw(
                "get",
                move |_ctx: Context, body: Bytes| async move {
                    let quick = if alternating {
                        even_build
                    } else {
                        FIRST_CALLS.fetch_add(1, Ordering::SeqCst) == 0
                    };
                    let ms = if quick { 1 } else { 2 };
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                    Ok(body)
                },
            )])
        })]
    }
}

const FLAKY: &str = r#"
name = "flaky"
description = "One flaky instance at 20 requests a second."
seed = 5
duration = "2s"
[network]
latency = "1ms"
[[service]]
name = "svc.flaky"
builtin = "flaky"
instances = 1
[[load]]
name = "gets"
rpc = "svc.flaky.get"
rate = "20/s"
deadline = "100ms"
[[assert]]
that = "error_rate == 0"
"#;

/// Checks the flaky scenario.
fn check_flaky(alternating: bool) -> DeterminismCheck {
    let checked = Tunnel::toml(FLAKY, "flaky.toml")
        .system(Flaky { alternating })
        .seed_from_env(false)
        .check_determinism()
        .expect("the scenario is valid and runs");
    checked.outcome.assert_passed();
    checked
}

#[test]
fn a_run_that_depends_on_process_state_is_caught_and_its_first_differing_event_named() {
    // Goal: the determinism check catches a handler whose latency depends on process state,
    // and names the first event that differs from both runs. Method: check a scenario of a
    // service whose handler takes 1 ms longer (or shorter) in run 2 than in runs 1 and 3.
    let checked = check_flaky(true);
    let Determinism::Diverged(d) = &checked.determinism else {
        panic!(
            "the check missed the flaky handler: {}",
            checked.determinism
        );
    };
    let (Side::Event(first), Side::Event(second)) = (&d.first, &d.second) else {
        panic!("both runs' events must be described: {d}");
    };
    assert_eq!((first.index, second.index), (d.index, d.index));
    let gap = first.at.abs_diff(second.at);
    assert_eq!(gap, std::time::Duration::from_millis(1), "{d}");
    for e in [first, second] {
        assert_eq!(e.host, "svc.flaky[0]", "{d}");
        assert_eq!(e.kind, "handler_ended", "{d}");
        assert_eq!(e.target, "svc.flaky.get", "{d}");
    }
    let last = d.last_agreed.as_ref().expect("the runs start alike");
    assert_eq!(last.index + 1, d.index);
    let text = checked.determinism.to_string();
    assert!(text.starts_with("determinism: FAIL"), "{text}");
    for (run, e) in [(1, first), (2, second)] {
        let line = format!(
            "run {run}: event #{} at {:.6}s: svc.flaky[0] handler_ended svc.flaky.get",
            d.index,
            e.at.as_secs_f64()
        );
        assert!(text.contains(&line), "{text}");
    }
}

#[test]
fn a_first_run_no_replay_reproduces_is_named_as_such_not_guessed() {
    // Goal: when the third run (which describes run 1's side) does not reproduce run 1, the
    // check says so instead of describing another run's event as run 1's. Method: a handler
    // quick only the first time it is ever called, so only run 1 has the quick answer.
    let checked = check_flaky(false);
    let d = checked.determinism.divergence().expect("the runs differ");
    assert_eq!(d.first, Side::Unknown { at_index: d.index }, "{d}");
    let Side::Event(second) = &d.second else {
        panic!("run 2's event is described: {d}");
    };
    assert_eq!(second.kind, "handler_ended", "{d}");
    assert!(
        checked
            .determinism
            .to_string()
            .contains("not described: a third run"),
        "{}",
        checked.determinism
    );
}

#[test]
fn a_deterministic_run_passes_the_check_with_its_event_count() {
    // Goal: a faulty but deterministic run passes the check. Method: check the fault-rich
    // scenario; every event agrees, and the count is the run's events plus its load results.
    let s = scenario(&fault_rich());
    let checked = Tunnel::scenario(s)
        .with_catalog(windtunnel::services::catalog())
        .seed_from_env(false)
        .check_determinism()
        .expect("runs");
    let events = checked.outcome.summary().events;
    let sent: u64 = checked
        .outcome
        .summary()
        .loads
        .values()
        .map(|l| l.sent)
        .sum();
    assert_eq!(
        checked.determinism,
        Determinism::Identical {
            events: events + sent
        }
    );
    assert_eq!(
        checked.determinism.to_string(),
        format!("determinism: PASS ({} events identical)", events + sent)
    );
}

#[test]
fn a_crash_replays_however_many_tasks_other_threads_spawn_during_the_run() {
    // Goal: a run with a crash replays in a process whose other threads spawn tokio tasks
    // (tests side by side in one binary, a sweep's threads). tokio drops a crashed runtime's
    // tasks in lists chosen by task id, from one counter for the process; the framework's tasks
    // must be dropped in the order they were spawned instead. Method: crash-restart.toml (a
    // webhook instance crashes holding calls) run alone, then six times while another thread
    // spawns tasks as fast as it can, pausing now and then, so each run's tasks get other ids;
    // every run must have the alone run's fingerprint. Only another thread can take an id
    // between two tasks a host spawns back to back (a connection's reader and writer), which is
    // what changed their order. (When tokio's order decided, four runs in ten parted.)
    let s = windtunnel::scenario::load_file(
        std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scenarios/crash-restart.toml"
        )),
        &windtunnel::services::catalog(),
    )
    .expect("the shipped file loads");
    let alone = run(&s);
    assert!(alone.events > 50_000, "the run must do real work");
    for round in 0..6 {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let other = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a runtime");
            let mut spawned = 0u64;
            while !flag.load(Ordering::Relaxed) {
                drop(rt.spawn(async {}));
                spawned += 1;
                if spawned.is_multiple_of(7) {
                    std::thread::sleep(std::time::Duration::from_micros(50));
                }
            }
            spawned
        });
        let beside = run(&s);
        stop.store(true, Ordering::Relaxed);
        let spawned = other.join().expect("the other thread ends");
        assert!(spawned > 0, "the other thread spawned nothing");
        assert_eq!(
            beside.fingerprint, alone.fingerprint,
            "round {round}: a run beside a thread that spawned {spawned} tasks parted from the \
             run alone"
        );
    }
}
