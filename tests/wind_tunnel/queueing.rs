//! The simulator agrees with queueing theory where theory has an answer.

use crate::support::{route, run, scenario};

#[test]
fn mm1_queue_mean_latency_is_within_5_percent_of_theory_at_half_load() {
    // Goal: service times, queueing and open-loop arrivals are modelled faithfully. Method:
    // Poisson arrivals at 5/s into one instance with one worker and exponential service of
    // mean 100 ms (mu = 10/s, rho = 0.5), no network latency; M/M/1 gives a mean time in system
    // of 1 / (mu - lambda) = 200 ms. 2,000 s gives about 10,000 requests.
    let s = scenario(
        r#"
name = "mm1"
description = "M/M/1 at rho = 0.5"
seed = 1
duration = "2000s"
[network]
latency = "0ms"
[[service]]
name = "svc.queue"
workers = 1
queue = 100000
  [[service.endpoint]]
  name = "serve"
  time = { dist = "exponential", mean = "100ms" }
[[load]]
name = "arrivals"
rpc = "svc.queue.serve"
rate = "5/s"
arrival = "poisson"
deadline = "1h"
"#,
    );
    let summary = run(&s);
    let r = route(&summary, "arrivals");
    assert!(r.ok > 9000, "about 10,000 requests expected, got {}", r.ok);
    assert_eq!(r.ok, r.sent, "nothing may fail or drop at half load");
    let theory_ms = 200.0;
    let error = (r.latency_ms.mean - theory_ms).abs() / theory_ms;
    assert!(
        error < 0.05,
        "mean {} ms is {:.1}% from {theory_ms} ms",
        r.latency_ms.mean,
        error * 100.0
    );
}
