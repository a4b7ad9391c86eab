//! The quorum example's own `windtunnel` command: the library's command line with the example's
//! system registered, so `cargo run --example quorum -- run examples/quorum/quorum.toml` runs
//! its scenario, and `cargo test --example quorum` runs the test below.

mod system;

use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    windtunnel::cli::main_with(vec![Arc::new(system::Quorum)])
}

#[cfg(test)]
mod tests {
    use super::system::Quorum;
    use windtunnel::Tunnel;

    #[test]
    fn quorum_writes_survive_a_partition_and_a_slow_replica() {
        // Goal: a replica cut off, then another 20x slower, cost users nothing and lose nothing.
        // Method: run the scenario (its own assertions must hold), then check what a user would.
        let outcome = Tunnel::file("examples/quorum/quorum.toml")
            .system(Quorum)
            .run()
            .expect("the scenario is valid and runs");
        outcome.assert_passed();
        let puts = outcome
            .load("puts")
            .expect("the scenario has a load named puts");
        assert!(puts.latency_ms.p99 < 50.0, "p99 {} ms", puts.latency_ms.p99);
        assert!(puts.error_rate < 0.001, "error rate {}", puts.error_rate);
        assert_eq!(outcome.check("orphaned_work"), Some(0));
        let kept = outcome.invariant("acknowledged_puts_on_a_majority");
        assert!(kept.is_some_and(|i| i.holds), "{kept:?}");
    }
}
