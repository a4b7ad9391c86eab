//! Balancers against one slow instance (after Linkerd's "Beyond Round Robin" experiment): round
//! robin keeps sending it its share, least-loaded p2c sends it less, peak-EWMA p2c avoids it.

use windtunnel::tunnel::Tunnel;

/// Eleven backends with a median of 167 ms; one turns 12x slower (about 2 s) for half the run,
/// under a 1 s deadline.
fn scenario(balancer: &str, eject: bool) -> String {
    format!(
        r#"
name = "beyond-round-robin"
description = "eleven backends, one slow for half the run"
seed = 1
duration = "30s"
[network]
latency = {{ dist = "lognormal", p50 = "1ms", p99 = "4ms" }}
[[service]]
name = "svc.backend"
instances = 11
workers = 2000
queue = 2000
balancer = "{balancer}"
eject = {eject}
  [[service.endpoint]]
  name = "get"
  time = {{ dist = "lognormal", p50 = "167ms", p99 = "500ms" }}
[[load]]
name = "requests"
rpc = "svc.backend.get"
rate = "400/s"
deadline = "1s"
[[fault]]
at = "10s"
duration = "15s"
slow = {{ target = "svc.backend[3]", factor = 12 }}
"#
    )
}

/// (error rate, p99 ms, ejections) of the run with `balancer`, ejecting outliers or not.
fn run(balancer: &str, eject: bool) -> (f64, f64, i64) {
    let outcome = Tunnel::toml(&scenario(balancer, eject), "balancing.toml")
        .seed_from_env(false)
        .run()
        .expect("the scenario is valid");
    let load = outcome.load("requests").expect("the load ran");
    let ejections = outcome
        .summary()
        .business
        .get("eject.ejected")
        .map_or(0, |m| m.total);
    (load.error_rate, load.latency_ms.p99, ejections)
}

#[test]
fn latency_aware_balancing_avoids_a_slow_instance_that_load_alone_does_not() {
    // Goal: each balancer does what its name says. Method: the same run three times; the share
    // of requests lost to the slow instance (they time out) orders the balancers.
    let (rr, rr_p99, none) = run("round_robin", false);
    let (p2c, _, _) = run("p2c", false);
    let (ewma, ewma_p99, _) = run("peak_ewma", false);
    assert_eq!(none, 0, "nothing is ejected unless asked");
    // Round robin sends the slow one its 1/11 for half the run: about 4.5% time out.
    assert!((0.03..0.06).contains(&rr), "round robin error rate {rr}");
    assert!(
        rr_p99 >= 1000.0,
        "round robin's p99 is the deadline: {rr_p99}"
    );
    assert!(
        p2c < rr / 2.0,
        "least-loaded {p2c} against round robin {rr}"
    );
    assert!(ewma < p2c, "peak EWMA {ewma} against least-loaded {p2c}");
    assert!(
        ewma_p99 < 1000.0,
        "peak EWMA keeps the p99 under the deadline: {ewma_p99}"
    );
}

#[test]
fn ejecting_an_instance_that_keeps_failing_stops_its_timeouts() {
    // Goal: outlier ejection takes the slow instance out after five timeouts in a row, and
    // says so. Method: round robin with and without it.
    let (without, _, _) = run("round_robin", false);
    let (with, p99, ejections) = run("round_robin", true);
    assert_eq!(
        ejections, 1,
        "the slow instance, once (its ejection outlasts the fault)"
    );
    assert!(with < without / 5.0, "ejecting: {with}, not: {without}");
    assert!(
        p99 < 1000.0,
        "the p99 leaves the deadline once it is out: {p99}"
    );
}
