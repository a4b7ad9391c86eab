//! A run is a pure function of (scenario, seed): the same inputs give the same summary, byte for
//! byte apart from wall-clock fields, and another seed gives another history.

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
