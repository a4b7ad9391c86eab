//! Hunting for failures through the library: capacity search and shrinking.

use windtunnel::tunnel::capacity::{capacity, CapacityOptions};
use windtunnel::tunnel::shrink::{shrink, ShrinkOptions};
use windtunnel::tunnel::Tunnel;

use crate::support::one_service;

/// Two instances of eight workers at a fixed 10 ms: 1,600 requests per second at most.
fn capped(rate: &str) -> String {
    one_service(
        r#"
[[assert]]
that = "p99(latency) < 40ms"
load = "gets"
[[assert]]
that = "error_rate < 1%"
load = "gets"
"#,
    )
    .replace("time = \"2ms\"", "time = \"10ms\"")
    .replace("rate = \"100/s\"", &format!("rate = \"{rate}\""))
    .replace("duration = \"20s\"", "duration = \"6s\"")
}

fn passes(text: &str) -> bool {
    Tunnel::toml(text, "capped.toml")
        .systems(windtunnel::services::systems())
        .seed_from_env(false)
        .run()
        .expect("runs")
        .passed()
}

#[test]
fn capacity_search_brackets_the_highest_passing_rate_within_two_percent() {
    // Goal: `capacity` answers "how much load can this take" to within 2%, and the answer is
    // true. Method: search a service whose ceiling is known from its workers (1,600/s), then
    // run the answer (must pass) and the failing rate above it (must fail) as plain files.
    let text = capped("200/s");
    let options = CapacityOptions {
        load: "gets".to_string(),
        precision: 0.02,
        max_probes: 40,
        seed: 3,
    };
    let catalog = windtunnel::services::catalog();
    let mut probes = 0;
    let found = capacity(&text, "capped.toml", &catalog, &options, &mut |_| {
        probes += 1
    })
    .expect("searches");
    let (rate, failing) = (
        found.rate.expect("a rate passes"),
        found.failing.expect("one fails"),
    );
    assert!(
        failing > rate && failing <= rate * 1.02 + 0.01,
        "{rate} .. {failing}"
    );
    assert!(
        (1000.0..1700.0).contains(&rate),
        "a service of 16 workers at 10 ms saturates near 1,600/s, found {rate}"
    );
    assert_eq!(probes, found.probes.len());
    assert!(
        passes(&capped(&format!("{rate}/s"))),
        "the capacity itself passes"
    );
    assert!(
        !passes(&capped(&format!("{failing}/s"))),
        "the rate above it fails"
    );
}

#[test]
fn capacity_of_an_unknown_load_names_the_loads_there_are() {
    let catalog = windtunnel::services::catalog();
    let options = CapacityOptions {
        load: "nope".to_string(),
        precision: 0.02,
        max_probes: 10,
        seed: 1,
    };
    let e = capacity(&capped("100/s"), "c.toml", &catalog, &options, &mut |_| {})
        .expect_err("no such load");
    assert!(e.to_string().contains("gets"), "{e}");
}

#[test]
fn capacity_refuses_a_floor_on_goodput_before_any_probe() {
    // Goal: a file that asserts a lower bound on what the searched load adds to (the shipped
    // overload.toml asserts goodput > 1400/s; off twins assert errors > 0) is refused with the
    // assertions named, instead of a search that halves the rate to nothing and reports no
    // capacity. A ceiling on a counter (`== 0`) and a floor on another load are searched.
    let catalog = windtunnel::services::catalog();
    let options = CapacityOptions {
        load: "gets".to_string(),
        precision: 0.02,
        max_probes: 10,
        seed: 1,
    };
    for floor in ["goodput > 90/s", "errors > 0", "p99(latency) >= 5ms"] {
        let text = capped("100/s") + &format!("[[assert]]\nthat = \"{floor}\"\n");
        let mut probes = 0;
        let e = capacity(&text, "c.toml", &catalog, &options, &mut |_| probes += 1)
            .expect_err("a floor is refused");
        assert!(e.to_string().contains(&format!("\"{floor}\"")), "{e}");
        assert!(e.to_string().contains("c.toml"), "{e}");
        assert_eq!(probes, 0, "refused before any probe");
    }
    let others = capped("1000/s")
        + "[[assert]]\nthat = \"count(hedge.sent) == 0\"\n"
        + "[[load]]\nname = \"pings\"\nrpc = \"svc.echo.get\"\nrate = \"10/s\"\n"
        + "[[assert]]\nthat = \"ok > 5\"\nload = \"pings\"\n";
    let options = CapacityOptions {
        max_probes: 2,
        ..options
    };
    let found = capacity(&others, "c.toml", &catalog, &options, &mut |_| {})
        .expect("a ceiling, and a floor on another load, are searched");
    assert_eq!(found.probes.len(), 2);
}

#[test]
fn shrinking_keeps_the_one_fault_that_breaks_the_assertion_and_drops_the_rest() {
    // Goal: a failing file comes back as the smallest file that fails the same way. Method:
    // four faults of which only an error burst breaks "error_rate == 0"; shrink must keep
    // that one, drop the others, and the written file must replay the failure.
    let text = one_service(
        r#"
[[fault]]
at = "2s"
duration = "2s"
latency = { target = "svc.echo", add = "1ms" }
[[fault]]
at = "6s"
duration = "4s"
errors = { target = "svc.echo", rate = "30%", code = "internal.boom" }
[[fault]]
at = "11s"
duration = "3s"
slow = { target = "svc.echo[0]", factor = 1.5 }
[[fault]]
at = "15s"
duration = "2s"
latency = { target = "client", add = "2ms" }
[[assert]]
that = "p99(latency) < 1s"
load = "gets"
[[assert]]
that = "error_rate == 0"
load = "gets"
"#,
    );
    let catalog = windtunnel::services::catalog();
    let options = ShrinkOptions {
        seed: 3,
        failure: None,
        max_runs: 60,
    };
    let mut kept = Vec::new();
    let shrunk = shrink(&text, "four.toml", &catalog, &options, &mut |s| {
        kept.push(s.to_string())
    })
    .expect("shrinks");
    assert_eq!(
        shrunk.failure,
        "assert error_rate == 0 [load gets, whole run]"
    );
    assert_eq!(shrunk.faults, (4, 1), "kept: {kept:?}\n{}", shrunk.text);
    assert!(shrunk.text.contains("internal.boom"), "{}", shrunk.text);
    assert!(!shrunk.text.contains("factor"), "{}", shrunk.text);
    assert_eq!(kept, shrunk.steps);
    let replay = Tunnel::toml(&shrunk.text, "shrunk.toml")
        .systems(windtunnel::services::systems())
        .seed_from_env(false)
        .run()
        .expect("the shrunk file is valid");
    assert!(replay.failure_keys().contains(&shrunk.failure));
}

#[test]
fn shrinking_a_passing_file_says_there_is_nothing_to_shrink() {
    let catalog = windtunnel::services::catalog();
    let options = ShrinkOptions {
        seed: 3,
        failure: None,
        max_runs: 10,
    };
    let e =
        shrink(&capped("100/s"), "ok.toml", &catalog, &options, &mut |_| {}).expect_err("passes");
    assert!(e.to_string().contains("nothing to shrink"), "{e}");
}

#[test]
fn fault_points_fire_only_when_the_file_asks_and_the_card_pipeline_survives_them() {
    // Goal: `buggify = true` makes the store's rare paths happen, seed by seed, and the card
    // pipeline's invariants still hold; without it, the paths never run. Method: the hunt-cards
    // fixture at four seeds with fault points on, looking for the store's `unavailable.busy`
    // answers among its callers' errors, then once with them off.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/hunt-cards.toml"
    );
    let text = std::fs::read_to_string(path).expect("the fixture exists");
    let busy = |buggify: bool, seed: u64| {
        let text = if buggify {
            text.replace("duration = \"10s\"", "duration = \"10s\"\nbuggify = true")
        } else {
            text.clone()
        };
        let outcome = Tunnel::toml(&text, "hunt-cards.toml")
            .systems(windtunnel::services::systems())
            .seed_from_env(false)
            .seed(seed)
            .run()
            .expect("runs");
        let s = outcome.summary();
        assert!(!s.invariants.is_empty());
        for i in &s.invariants {
            assert!(i.holds, "seed {seed}: {} broken: {}", i.name, i.detail);
        }
        s.endpoints
            .values()
            .map(|e| e.errors.get("unavailable.busy").copied().unwrap_or(0))
            .sum::<u64>()
    };
    let fired: Vec<u64> = (1..=4).map(|seed| busy(true, seed)).collect();
    assert!(
        fired.iter().any(|n| *n > 0),
        "no seed fired store/busy: {fired:?}"
    );
    assert_eq!(busy(false, 1), 0, "fault points fired with buggify off");
}

#[test]
fn a_publish_cancelled_in_a_stalled_bus_sync_is_still_delivered_after_its_retry() {
    // Goal: the failure a swarm sweep found stays fixed. Method: replay the shrunk file
    // (tests/fixtures/found-bus-stall.toml: one 1.5 s stall of the bus's disk) and require
    // every card invariant, events_consumed above all, to hold.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/found-bus-stall.toml"
    );
    let outcome = Tunnel::file(path)
        .systems(windtunnel::services::systems())
        .seed_from_env(false)
        .run()
        .expect("runs");
    let consumed = outcome.invariant("events_consumed").expect("checked");
    assert!(consumed.holds, "{}", consumed.detail);
    outcome.assert_passed();
}
