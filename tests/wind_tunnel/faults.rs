//! Each kind of fault does what the file says, seen in what the run measured.

use crate::support::{one_service, route, run, scenario};
use windtunnel::report::summary::Summary;

fn window_counts(s: &Summary, load: &str, from_s: f64, to_s: f64) -> (u64, u64, u64) {
    let r = route(s, load);
    r.timeline
        .iter()
        .filter(|b| b.t_s >= from_s && b.t_s < to_s)
        .fold((0, 0, 0), |(sent, ok, failed), b| {
            (
                sent + b.sent,
                ok + b.ok,
                failed + b.errors.values().sum::<u64>(),
            )
        })
}

#[test]
fn injected_errors_fail_about_the_given_fraction_only_inside_the_window() {
    // Goal: error injection is per request, seeded, and bounded by its window.
    let s = run(&scenario(&one_service(
        r#"
[[fault]]
at = "5s"
duration = "10s"
errors = { target = "svc.echo", rate = "20%", code = "unavailable.injected" }
"#,
    )));
    let (sent, _, failed) = window_counts(&s, "gets", 5.0, 15.0);
    let share = failed as f64 / sent as f64;
    assert!((0.15..0.25).contains(&share), "{failed} of {sent} failed");
    let (_, _, before) = window_counts(&s, "gets", 0.0, 5.0);
    let (_, _, after) = window_counts(&s, "gets", 15.0, 20.0);
    assert_eq!((before, after), (0, 0), "no failures outside the window");
    assert_eq!(
        route(&s, "gets").errors.keys().collect::<Vec<_>>(),
        ["unavailable.injected"]
    );
}

#[test]
fn a_slow_instance_works_harder_than_its_peer_only_while_slowed() {
    // Goal: `slow` multiplies one instance's service time. Method: compare utilisation.
    let s = run(&scenario(&one_service(
        r#"
[[fault]]
at = "5s"
duration = "10s"
slow = { target = "svc.echo[0]", factor = 20 }
"#,
    )));
    let util = |id: &str, t: f64| {
        s.instances[id]
            .timeline
            .iter()
            .find(|p| p.t_s == t)
            .map(|p| p.utilisation)
            .unwrap_or_default()
    };
    assert!(
        util("svc.echo[0]", 10.0) > 5.0 * util("svc.echo[1]", 10.0),
        "slowed instance must be busier"
    );
    assert!(
        util("svc.echo[0]", 17.0) < 2.0 * util("svc.echo[1]", 17.0).max(0.001),
        "and recover after"
    );
}

#[test]
fn overlapping_slow_faults_at_the_largest_factor_stall_work_without_a_panic() {
    // Goal: a file `check` accepts never panics a handler. Method: four overlapping slow faults
    // of 10,000x on an endpoint of an hour (a product of 1e16 hours); every request times out,
    // none answers `internal.panic`.
    let text = one_service(
        r#"
[[fault]]
at = "1s"
slow = { target = "svc.echo", factor = 10000 }
[[fault]]
at = "1s"
slow = { target = "svc.echo", factor = 10000 }
[[fault]]
at = "1s"
slow = { target = "svc.echo", factor = 10000 }
[[fault]]
at = "1s"
slow = { target = "svc.echo", factor = 10000 }
"#,
    )
    .replace("time = \"2ms\"", "time = \"1h\"");
    let s = run(&scenario(&text));
    let gets = route(&s, "gets");
    assert!(gets.sent > 100, "the load ran: {}", gets.sent);
    assert!(
        !gets.errors.contains_key("internal.panic"),
        "{:?}",
        gets.errors
    );
    assert_eq!(gets.ok, 0, "nothing finishes an hour's work in 20 s");
}

#[test]
fn a_crashed_instance_is_down_for_its_window_then_serves_again() {
    // Goal: crash takes the node down and restart brings it back into discovery.
    let s = run(&scenario(&one_service(
        r#"
[[fault]]
at = "5s"
duration = "5s"
crash = { target = "svc.echo[1]" }
"#,
    )));
    let tl = &s.instances["svc.echo[1]"].timeline;
    let up_at = |t: f64| tl.iter().find(|p| p.t_s == t).map(|p| p.up);
    assert_eq!(
        (up_at(4.0), up_at(7.0), up_at(12.0)),
        (Some(true), Some(false), Some(true))
    );
    let busy_after: f64 = tl
        .iter()
        .filter(|p| p.t_s >= 11.0)
        .map(|p| p.utilisation)
        .sum();
    assert!(
        busy_after > 0.0,
        "the restarted instance must take traffic again"
    );
    let r = route(&s, "gets");
    assert!(
        r.ok as f64 >= r.sent as f64 * 0.99,
        "discovery routes around the crash: {r:?}"
    );
}

#[test]
fn held_messages_arrive_late_when_the_hold_ends_and_none_is_lost() {
    // Goal: hold delays, partition loses. Method: hold everything for 1 s under a 3 s deadline.
    let text = one_service(
        r#"
[[fault]]
at = "5s"
duration = "1s"
hold = { a = "client", b = "svc.echo" }
"#,
    )
    .replace("deadline = \"200ms\"", "deadline = \"3s\"");
    let s = run(&scenario(&text));
    let r = route(&s, "gets");
    assert_eq!(r.ok, r.sent, "a hold loses nothing");
    assert!(
        r.latency_ms.max >= 900.0,
        "requests held for about a second: max {}",
        r.latency_ms.max
    );
}

#[test]
fn message_loss_times_out_about_the_expected_share_of_calls() {
    // Goal: loss at windtunnel's layer drops whole messages in either direction. A call needs
    // both its request and its response: at 10% loss about 19% of calls time out.
    let s = run(&scenario(&one_service(
        r#"
[[fault]]
at = "0s"
loss = { a = "client", b = "svc.echo", rate = "10%" }
"#,
    )));
    let r = route(&s, "gets");
    let share = r.errors.get("timeout").copied().unwrap_or(0) as f64 / r.sent as f64;
    assert!((0.15..0.23).contains(&share), "timeouts {share}");
}

#[test]
fn a_one_way_partition_loses_only_one_direction() {
    // Goal: `oneway` drops only a -> b. Method: cut responses from one instance to the client:
    // its handlers still run (the work happens) but every call to it times out.
    let s = run(&scenario(&one_service(
        r#"
[[fault]]
at = "5s"
duration = "5s"
partition = { a = "svc.echo[0]", b = "client", oneway = true }
"#,
    )));
    let (sent, ok, failed) = window_counts(&s, "gets", 5.0, 10.0);
    let share = failed as f64 / sent as f64;
    assert!(
        (0.4..0.6).contains(&share),
        "half the calls go to the cut instance: {failed}/{sent}"
    );
    assert!(ok > 0);
    let busy: f64 = s.instances["svc.echo[0]"]
        .timeline
        .iter()
        .filter(|p| (5.0..10.0).contains(&p.t_s))
        .map(|p| p.utilisation)
        .sum();
    assert!(busy > 0.0, "requests still reach the cut instance and run");
}

#[test]
fn added_latency_on_a_service_shows_in_the_window_percentiles() {
    let s = run(&scenario(&one_service(
        r#"
[[fault]]
at = "5s"
duration = "5s"
latency = { target = "svc.echo", add = "50ms" }
"#,
    )));
    let r = route(&s, "gets");
    let p50_at = |t: f64| {
        r.timeline
            .iter()
            .find(|b| b.t_s == t)
            .and_then(|b| b.latency_ms.clone())
            .map(|l| l.p50)
            .unwrap_or_default()
    };
    assert!(p50_at(7.0) >= 100.0, "50 ms each way: {}", p50_at(7.0));
    assert!(
        p50_at(15.0) < 20.0,
        "gone after the window: {}",
        p50_at(15.0)
    );
}

#[test]
fn route_loads_enter_through_the_http_gateway_and_its_calls_are_measured() {
    // Goal: a load on a route sends HTTP to the gateway, which makes the RPC. Method: the same
    // echo service behind `GET /echo/:id`; then fail it with injected errors and see the code
    // come back through HTTP.
    let text = crate::support::one_service(
        r#"
[[route]]
route = "GET /echo/:id"
to = "svc.echo.get"
[[load]]
name = "http"
route = "GET /echo/:id"
rate = "50/s"
deadline = "500ms"
[[fault]]
at = "10s"
duration = "5s"
errors = { target = "svc.echo", rate = "50%", code = "unavailable.injected" }
"#,
    );
    let s = run(&scenario(&text));
    let http = route(&s, "http");
    assert!(http.sent > 800, "about 1,000 requests: {}", http.sent);
    let injected = http
        .errors
        .get("unavailable.injected")
        .copied()
        .unwrap_or(0);
    assert!(
        injected > 50,
        "injected errors travel back over HTTP as their code: {:?}",
        http.errors
    );
    assert_eq!(
        http.ok + injected,
        http.sent,
        "nothing else fails: {:?}",
        http.errors
    );
    let behind = &s.endpoints["svc.echo.get"];
    assert!(
        behind.sent >= http.sent + route(&s, "gets").sent,
        "the gateway's calls are measured too"
    );
}

#[test]
fn instances_report_unhealthy_while_their_queue_is_full_and_healthy_otherwise() {
    // Goal: out-of-band health checks are recorded per instance over time. Method: one instance
    // with one worker and a queue of 2, overloaded from 10 s by a slow fault.
    let text = crate::support::one_service(
        r#"
[[fault]]
at = "10s"
slow = { target = "svc.echo[0]", factor = 40 }
"#,
    );
    let s = run(&scenario(
        &text.replace("workers = 8\nqueue = 64", "workers = 1\nqueue = 2"),
    ));
    let health: Vec<Option<bool>> = s.instances["svc.echo[0]"]
        .timeline
        .iter()
        .map(|p| p.healthy)
        .collect();
    assert!(
        health[2..10].iter().all(|h| *h == Some(true)),
        "healthy before: {health:?}"
    );
    assert!(
        health[11..].contains(&Some(false)),
        "unhealthy once its queue fills: {health:?}"
    );
    let peer: Vec<Option<bool>> = s.instances["svc.echo[1]"]
        .timeline
        .iter()
        .map(|p| p.healthy)
        .collect();
    assert!(
        peer[2..].iter().all(|h| *h == Some(true)),
        "its peer stays healthy: {peer:?}"
    );
}

#[test]
fn crashing_a_service_packed_on_fewer_nodes_takes_every_instance_down_and_back() {
    // Goal: a crash of a whole service whose instances share nodes (round robin, so a node
    // recurs non-adjacently) takes every instance down and brings every one back. Method: 4
    // instances on 2 nodes, all crashed from 5 s to 10 s.
    let text = crate::support::one_service(
        r#"
[[fault]]
at = "5s"
duration = "5s"
crash = { target = "svc.echo" }
"#,
    )
    .replace("instances = 2", "instances = 4\nnodes = 2");
    let s = run(&scenario(&text));
    for i in 0..4 {
        let tl = &s.instances[&format!("svc.echo[{i}]")].timeline;
        let up_at = |t: f64| tl.iter().find(|p| p.t_s == t).map(|p| p.up);
        assert_eq!(
            (up_at(7.0), up_at(12.0)),
            (Some(false), Some(true)),
            "svc.echo[{i}]"
        );
        let busy: f64 = tl
            .iter()
            .filter(|p| p.t_s >= 11.0)
            .map(|p| p.utilisation)
            .sum();
        assert!(busy > 0.0, "svc.echo[{i}] serves again after the restart");
    }
    let (sent, ok, _) = window_counts(&s, "gets", 11.0, 20.0);
    assert_eq!(sent, ok, "all is well after the restart");
}

mod any_schedule {
    //! Random fault schedules: whatever `check` accepts runs to a verdict without a panic.

    use proptest::prelude::*;
    use windtunnel::tunnel::Tunnel;

    /// One fault table, at `at` seconds for `len` seconds, of kind `kind` on one of the
    /// targets, with the extreme strengths the limits allow among the others.
    fn fault(kind: u8, at: u32, len: u32, target: u8, strength: u8) -> String {
        let targets = ["svc.front", "svc.back", "svc.back[1]", "svc.front[0]"];
        let t = targets[usize::from(target) % targets.len()];
        let other = if t.starts_with("svc.front") {
            "svc.back"
        } else {
            "svc.front"
        };
        let factor = [0.001, 1.0, 20.0, 10_000.0][usize::from(strength) % 4];
        let ratio = ["0%", "50%", "100%"][usize::from(strength) % 3];
        let body = match kind % 8 {
            0 => format!("slow = {{ target = \"{t}\", factor = {factor} }}"),
            1 => format!(
                "latency = {{ target = \"{t}\", add = \"{}ms\" }}",
                u32::from(strength) * 40
            ),
            2 => format!(
                "errors = {{ target = \"{t}\", rate = \"{ratio}\", code = \"unavailable.x\" }}"
            ),
            3 => format!(
                "partition = {{ a = \"{t}\", b = \"{other}\", oneway = {} }}",
                strength.is_multiple_of(2)
            ),
            4 => format!("hold = {{ a = \"{t}\", b = \"client\" }}"),
            5 => format!("loss = {{ a = \"{t}\", b = \"{other}\", rate = \"{ratio}\" }}"),
            6 => format!("crash = {{ target = \"{t}\" }}"),
            _ => format!(
                "intruder = {{ target = \"{t}\", rate = \"{}/s\" }}",
                1 + 1 + u32::from(strength) * 80
            ),
        };
        format!("[[fault]]\nat = \"{at}s\"\nduration = \"{len}s\"\n{body}\n")
    }

    fn scenario(faults: &[String]) -> String {
        format!(
            r#"
name = "any-schedule"
description = "random faults"
duration = "4s"
[[service]]
name = "svc.front"
instances = 2
  [[service.endpoint]]
  name = "get"
  time = "1h"
  calls = [{{ to = "svc.back.get", fanout = "all" }}]
[[service]]
name = "svc.back"
instances = 2
retry = true
breaker = true
hedge = true
limit = "adaptive"
  [[service.endpoint]]
  name = "get"
  time = {{ dist = "lognormal", p50 = "1ms", p99 = "1h" }}
  idempotent = true
[[load]]
name = "gets"
rpc = "svc.front.get"
rate = "50/s"
deadline = "2s"
{}
"#,
            faults.concat()
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
        #[test]
        fn any_fault_schedule_runs_to_a_verdict(
            faults in proptest::collection::vec((0u8..8, 0u32..3, 1u32..2, 0u8..4, 0u8..12), 0..5)
        ) {
            let faults: Vec<String> = faults
                .into_iter()
                .map(|(kind, at, len, target, strength)| fault(kind, at, len, target, strength))
                .collect();
            let text = scenario(&faults);
            let outcome = Tunnel::toml(&text, "any-schedule.toml").run();
            let outcome = outcome.map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
            let summary = outcome.summary();
            let panics = summary
                .loads
                .values()
                .chain(summary.endpoints.values())
                .flat_map(|l| l.errors.keys())
                .filter(|code| code.contains("panic"))
                .count();
            prop_assert_eq!(panics, 0, "{}", text);
        }
    }
}

#[test]
fn disk_sync_times_and_disk_faults_set_how_long_a_write_waits_and_lose_nothing() {
    // Goal: `[disk] sync` and the `disk` fault (stall, factor) reach the stores' syncs, and a
    // store still acknowledges only synced writes. Method: run tests/fixtures/disk-faults.toml
    // (its assertions say what each window must show) and check its invariants; then the same
    // file without `[disk]` must fail its "p50 > 60ms" (the forbidden case: the setting had
    // no effect).
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/disk-faults.toml"
    );
    let text = std::fs::read_to_string(path).expect("the fixture exists");
    let faulted = run(&scenario(&text));
    for a in &faulted.assertions {
        assert!(a.passed, "{} [{}]", a.verdict, a.window);
    }
    assert!(!faulted.invariants.is_empty());
    assert!(
        faulted.invariants.iter().all(|i| i.holds),
        "{:?}",
        faulted.invariants
    );
    let plain = run(&scenario(&text.replace("[disk]\nsync = \"20ms\"\n", "")));
    let slow_disk = plain
        .assertions
        .iter()
        .find(|a| a.that == "p50(latency) > 60ms")
        .expect("the assertion is there");
    assert!(!slow_disk.passed, "{}", slow_disk.verdict);
}

#[test]
fn assertions_that_differ_only_in_window_print_as_different_lines() {
    // Goal: a verdict says which window it judged, by the name it was written with, so two
    // assertions with the same text never print alike. Method: one assertion over a named
    // fault's window, before the faults, after them and over the whole run.
    let s = scenario(&one_service(
        r#"
[[fault]]
name = "slow-a"
at = "5s"
duration = "5s"
slow = { target = "svc.echo[0]", factor = 30 }
[[assert]]
that = "p99(latency) < 1s"
during = "fault:slow-a"
[[assert]]
that = "p99(latency) < 1s"
during = "before_faults"
[[assert]]
that = "p99(latency) < 1s"
during = "after_faults"
[[assert]]
that = "p99(latency) < 1s"
"#,
    ));
    let summary = run(&s);
    let windows: Vec<&str> = summary
        .assertions
        .iter()
        .map(|a| a.window.as_str())
        .collect();
    assert_eq!(
        windows,
        [
            "fault:slow-a 5s..10s",
            "before_faults 0s..5s",
            "after_faults 10s..20s",
            "whole run"
        ]
    );
    let text = windtunnel::report::text::verdicts(&summary);
    let lines: std::collections::BTreeSet<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "four distinct lines:\n{text}");
    assert!(text.contains("[all loads, fault:slow-a 5s..10s]"), "{text}");
    let slow = summary.assertions[0].observed;
    let before = summary.assertions[1].observed;
    assert!(
        slow > before,
        "the fault's own window saw it: {slow} vs {before}"
    );
}

#[test]
fn after_a_heal_a_fault_with_no_end_is_lifted_and_latency_recovers() {
    // Goal: `heal` lifts a fault that would last to the end, and `after_heal+<grace>` judges the
    // recovery. Method: an instance slowed 30x from 5 s with no end, healed at 10 s; p99 from
    // 1 s after the heal is back near the unfaulted service time, and far above it before.
    let body = r#"
[[fault]]
at = "5s"
slow = { target = "svc.echo[0]", factor = 30 }
[[assert]]
that = "p99(latency) < 20ms"
during = "after_heal+1s"
[[assert]]
that = "p99(latency) > 40ms"
during = "5s..10s"
"#;
    let healed = run(&scenario(&format!("heal = \"10s\"\n{}", one_service(body))));
    for a in &healed.assertions {
        assert!(a.passed, "{} [{}]", a.verdict, a.window);
    }
    assert_eq!(healed.assertions[0].window, "after_heal+1s 11s..20s");
    let never = body.replace("after_heal+1s", "11s..20s");
    let unhealed = run(&scenario(&one_service(&never)));
    assert!(
        !unhealed.assertions[0].passed,
        "without the heal the fault goes on: {}",
        unhealed.assertions[0].verdict
    );
}

/// Runs `text` and checks that every request of its load `gets` succeeded and that its
/// latency is at least 200 ms at the median and on average.
fn at_least_200ms_each(text: &str) {
    let s = run(&scenario(text));
    let gets = route(&s, "gets");
    assert_eq!(gets.errors.values().sum::<u64>(), 0, "{:?}", gets.errors);
    let latency = &gets.latency_ms;
    assert!(latency.mean >= 200.0, "{latency:?}");
    assert!(latency.p50 >= 200.0, "{latency:?}");
}

#[test]
fn every_message_takes_its_latency_even_when_more_travel_than_a_connection_holds() {
    // Goal: a message that cannot travel with its own latency (turmoil lets 64 segments a
    // stream be unread at once, and here about 100 a direction are travelling) waits its
    // latency out at its sender instead of arriving early. Method: one instance, a fixed
    // 100 ms each way, 1,000 requests a second on one connection: every request takes at
    // least its two legs, so the mean is at least 200 ms (before the fix, requests past the
    // window took one tick instead of 100 ms, and the mean fell well below).
    let text = one_service("")
        .replace("latency = \"1ms\"", "latency = \"100ms\"")
        .replace("instances = 2", "instances = 1")
        .replace("workers = 8", "workers = 64")
        .replace("time = \"2ms\"", "time = \"1ms\"")
        .replace("rate = \"100/s\"", "rate = \"1000/s\"")
        .replace("deadline = \"200ms\"", "deadline = \"5s\"")
        .replace("duration = \"20s\"", "duration = \"5s\"");
    at_least_200ms_each(&text);
}

#[test]
fn calls_between_instances_on_one_node_take_their_latency_too() {
    // Goal: turmoil carries a message between two ends on one host itself, without a latency
    // of its own, so the transport waits the model's latency out there. Method: two instances
    // of one service packed on one node, whose `get` calls the service's own `inner`; 50 ms
    // each way, so a request's four legs take at least 200 ms (without the wait, the two legs
    // between the instances took a tick each, and requests about 100 ms).
    let text = one_service("")
        .replace("latency = \"1ms\"", "latency = \"50ms\"")
        .replace("instances = 2", "instances = 2\nnodes = 1")
        .replace(
            "  name = \"get\"\n  time = \"2ms\"",
            "  name = \"get\"\n  time = \"1ms\"\n  calls = [{ to = \"svc.echo.inner\", timeout = \"1s\" }]\n  [[service.endpoint]]\n  name = \"inner\"\n  time = \"1ms\"",
        )
        .replace("deadline = \"200ms\"", "deadline = \"2s\"")
        .replace("duration = \"20s\"", "duration = \"5s\"");
    assert!(text.contains("svc.echo.inner"), "{text}");
    at_least_200ms_each(&text);
}
