//! Skipping idle time (`Stepping::SkipIdle`, the default; `run --every-tick` turns it off): a
//! run that jumps over time in which nothing can happen gives exactly the run that steps every
//! tick, event for event, and a timer the simulation cannot see makes it fall back to stepping
//! every tick rather than change a result.

use std::time::Duration;

use bytes::Bytes;
use windtunnel::framework::{Context, Endpoint};
use windtunnel::sim::Stepping;
use windtunnel::system::{background, Built, Env, ServiceDef, System};
use windtunnel::tunnel::{Determinism, Tunnel};

/// Checks `tunnel` (skipping, then every tick: see `Tunnel::check_determinism`) and returns the
/// simulated seconds the first run skipped; `what` names the run in a failure.
fn identical_when_skipping(what: &str, tunnel: Tunnel) -> f64 {
    let checked = tunnel
        .seed_from_env(false)
        .stepping(Stepping::SkipIdle)
        .check_determinism()
        .expect("the scenario is valid and runs");
    assert!(
        matches!(checked.determinism, Determinism::Identical { .. }),
        "{what}: skipping idle time changed the run: {}",
        checked.determinism
    );
    checked.outcome.summary().skipped_seconds
}

/// A file shipped in scenarios/, with every load's rate turned down to `rate`.
fn shipped_at(file: &str, rate: &str) -> String {
    let text = std::fs::read_to_string(format!("scenarios/{file}")).expect("shipped file");
    text.lines()
        .map(|line| match line.trim_start().strip_prefix("rate = \"") {
            Some(_) => format!("rate = \"{rate}\""),
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn shipped_systems_at_low_rates_skip_most_of_a_run_and_change_nothing() {
    // Goal: skipping is exact where it matters, in runs that are mostly idle, across the
    // webhook stack with faults, the gateway, and the card system with its crash. Method: the
    // shipped files at 0.5 requests/s, each checked skipping against every tick; the webhook
    // file with its crash must have skipped most of its minute.
    let crash = shipped_at("crash-restart.toml", "0.5/s");
    let tunnel = Tunnel::toml(&crash, "crash-restart.toml");
    let skipped = identical_when_skipping(
        "crash-restart",
        tunnel.with_catalog(windtunnel::services::catalog()),
    );
    assert!(
        skipped > 30.0,
        "crash-restart at 0.5/s skipped only {skipped} s"
    );
    for file in ["gateway-webhooks.toml", "card-transactions-crash.toml"] {
        let low = shipped_at(file, "0.5/s");
        let tunnel = Tunnel::toml(&low, file).with_catalog(windtunnel::services::catalog());
        identical_when_skipping(file, tunnel);
    }
}

/// A service whose instances, every `pause`, call one another from a background loop that
/// sleeps on tokio's timer (which the simulation cannot see) or on windtunnel's.
struct Pinger {
    visible: bool,
    pause: Duration,
}

impl System for Pinger {
    fn name(&self) -> &str {
        "pinger"
    }

    fn services(&self) -> Vec<ServiceDef> {
        let (visible, pause) = (self.visible, self.pause);
        vec![ServiceDef::new("pinger", move |env: &Env| {
            let client = env.client().clone();
            Built::endpoints(vec![Endpoint::raw(
                "get",
                |_ctx: Context, body: Bytes| async move { Ok(body) },
            )])
            .with_background(background(move |ctx: Context| async move {
                loop {
                    if visible {
                        windtunnel::framework::timer::idle(pause).await;
                    } else {
                        tokio::time::sleep(pause).await;
                    }
                    let call = ctx.with_timeout(Duration::from_millis(100));
                    let _: Result<(), _> = client.call(&call, "svc.pinger", "get", &()).await;
                }
            }))
        })]
    }
}

const PINGER: &str = r#"
name = "pinger"
description = "Two instances that call each other every so often, and a load of one call in 5 s."
seed = 11
duration = "20s"
[network]
latency = "1ms"
[[service]]
name = "svc.pinger"
builtin = "pinger"
instances = 2
[[load]]
name = "gets"
rpc = "svc.pinger.get"
rate = "0.2/s"
deadline = "100ms"
"#;

fn pinger(visible: bool, pause_ms: u64) -> Tunnel {
    let pause = Duration::from_millis(pause_ms);
    Tunnel::toml(PINGER, "pinger.toml").system(Pinger { visible, pause })
}

#[test]
fn a_timer_the_simulation_cannot_see_makes_the_run_step_every_tick_instead() {
    // Goal: a service's own tokio timer never changes a result: the skip it spoils is caught
    // and the run is done again tick by tick; the same loop on windtunnel's timer skips, and
    // gives the same run as every tick. Method: the pinger both ways, each checked against
    // every tick, and the skipped time of each.
    assert_eq!(
        identical_when_skipping("tokio timer", pinger(false, 700)),
        0.0
    );
    let skipped = identical_when_skipping("windtunnel timer", pinger(true, 700));
    assert!(skipped > 10.0, "the pinger skipped only {skipped} s of 20");
    // The user is told why a run did not skip, and what to do; a run that skipped says nothing.
    let hidden = pinger(false, 700).seed_from_env(false).run().expect("runs");
    let spoiled = hidden
        .summary()
        .skip_spoiled_at
        .expect("the spoiled skip is reported");
    assert!(
        spoiled < 0.7,
        "the first skip, before the first wake-up, began at {spoiled} s"
    );
    let text = windtunnel::report::text::figures(hidden.summary());
    assert!(
        text.contains("idle time not skipped") && text.contains("framework::timer"),
        "{text}"
    );
    let visible = pinger(true, 700).seed_from_env(false).run().expect("runs");
    assert_eq!(visible.summary().skip_spoiled_at, None);
    assert!(!windtunnel::report::text::figures(visible.summary()).contains("not skipped"));
}

#[test]
fn skips_of_every_length_leave_tokio_as_the_ticks_would() {
    // Goal: a skip makes up every turn of tokio's schedulers that its ticks would have made,
    // whatever its length: the turn counts decide which of two tasks ready in the same tick
    // runs first, and the pinger's two instances call each other in the same ticks, so any
    // count left wrong reorders a pair of requests. Method: pauses from 240 ms to 270 ms (skips
    // of about 237 to 267 ticks, through 258, where the skip spins once) and longer ones that
    // cross several 64 ms blocks of the timer wheel, each checked against every tick.
    for pause in (240..=270).chain([333, 700, 1234]) {
        let skipped = identical_when_skipping(&format!("pause {pause} ms"), pinger(true, pause));
        assert!(
            skipped > 5.0,
            "pause {pause} ms: skipped only {skipped} s of 20"
        );
    }
}

#[test]
fn stepping_every_tick_is_a_choice_of_the_library_too() {
    // Goal: `Tunnel::stepping` reaches the run, and the default skips idle time. Method: a
    // mostly idle run by default skips most of the minute; stepping every tick, it skips
    // nothing, with the same fingerprint.
    let low = shipped_at("baseline.toml", "0.2/s");
    let skipping = Tunnel::toml(&low, "baseline.toml")
        .seed_from_env(false)
        .run()
        .expect("runs");
    let every = Tunnel::toml(&low, "baseline.toml")
        .seed_from_env(false)
        .stepping(Stepping::EveryTick)
        .run()
        .expect("runs");
    assert_eq!(every.summary().skipped_seconds, 0.0);
    assert!(skipping.summary().skipped_seconds > 40.0);
    assert_eq!(every.summary().fingerprint, skipping.summary().fingerprint);
}
