//! Balancers against one slow instance (after Linkerd's "Beyond Round Robin" experiment): round
//! robin keeps sending it its share, least-loaded p2c sends it less, peak-EWMA p2c avoids it.

use windtunnel::tunnel::Tunnel;

/// Eleven backends with a median of 167 ms; one turns 12x slower (about 2 s) for half the run,
/// under a 1 s deadline.
fn scenario(balancer: &str) -> String {
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

/// (error rate, p99 ms) of the run with `balancer`.
fn run(balancer: &str) -> (f64, f64) {
    let outcome = Tunnel::toml(&scenario(balancer), "balancing.toml")
        .seed_from_env(false)
        .run()
        .expect("the scenario is valid");
    let load = outcome.load("requests").expect("the load ran");
    (load.error_rate, load.latency_ms.p99)
}

#[test]
fn latency_aware_balancing_avoids_a_slow_instance_that_load_alone_does_not() {
    // Goal: each balancer does what its name says. Method: the same run three times; the share
    // of requests lost to the slow instance (they time out) orders the balancers.
    let (rr, rr_p99) = run("round_robin");
    let (p2c, _) = run("p2c");
    let (ewma, ewma_p99) = run("peak_ewma");
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
