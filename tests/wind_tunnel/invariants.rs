//! The example services' invariants: checked after every run that uses them, and able to fail.

use windtunnel::report::summary::{Invariant, Summary};

use crate::support::{route, run, scenario};

/// The invariant `name` of a run.
fn invariant<'a>(summary: &'a Summary, name: &str) -> &'a Invariant {
    summary
        .invariants
        .iter()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("no invariant {name} in {:?}", summary.invariants))
}

/// The webhook stack behind the gateway, with `extra` appended.
pub fn webhooks(extra: &str) -> String {
    format!(
        r#"
name = "webhooks"
description = "test"
seed = 2
duration = "10s"
[network]
latency = {{ dist = "lognormal", p50 = "1ms", p99 = "4ms" }}
[[service]]
name = "service.auth"
builtin = "auth"
[[service]]
name = "api.webhook"
builtin = "webhook-api"
[[service]]
name = "service.webhook"
builtin = "webhook"
instances = 3
[[service]]
name = "store.webhook"
builtin = "store"
instances = 3
[[route]]
route = "POST /webhooks"
to = "api.webhook.deliver"
status = 202
[[load]]
name = "deliveries"
route = "POST /webhooks"
rate = "100/s"
deadline = "300ms"
{extra}
"#
    )
}

#[test]
fn deliveries_survive_a_minority_of_databases_crashing_for_good() {
    // Goal: an acknowledged delivery is on a majority of databases, so losing one database for
    // good loses nothing. Method: crash store.webhook[0] at 3 s and never restart it.
    let s = scenario(&webhooks(
        r#"
[[fault]]
at = "3s"
crash = { target = "store.webhook[0]" }
"#,
    ));
    let summary = run(&s);
    let lost = invariant(&summary, "no_lost_writes");
    assert!(lost.holds, "{}", lost.detail);
    let acked = lost
        .figures
        .get("webhook_acknowledged")
        .copied()
        .unwrap_or(0);
    assert!(
        acked > 800,
        "most of the 1,000 deliveries were acknowledged: {acked}"
    );
    assert_eq!(route(&summary, "deliveries").error_rate, 0.0);
    let delivered = summary.business.get("webhooks.delivered").map(|b| b.total);
    assert_eq!(
        delivered,
        Some(acked),
        "the business counter agrees with the acknowledgements"
    );
}

#[test]
fn losing_every_database_for_good_breaks_no_lost_writes_and_fails_the_run() {
    // Goal: the invariant can fail. Method: every webhook database crashes at 5 s for good, so
    // the deliveries acknowledged before cannot be found afterwards.
    let s = scenario(&webhooks(
        r#"
[[fault]]
at = "5s"
crash = { target = "store.webhook" }
"#,
    ));
    let summary = run(&s);
    let lost = invariant(&summary, "no_lost_writes");
    assert!(!lost.holds, "the databases are gone: {}", lost.detail);
    assert!(!summary.passed, "a broken invariant fails the run");
}

#[test]
fn the_card_pipeline_keeps_its_books_and_reports_its_business() {
    // Goal: every approved payment is recorded, moves its money exactly once, and reaches the
    // feed; the business metrics agree with what the load saw. Method: the shipped steady
    // scenario, shortened, then its invariants' figures against its metrics.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/card-steady.toml");
    let text = std::fs::read_to_string(path).expect("shipped scenario");
    let s = scenario(&text.replace("duration = \"30s\"", "duration = \"8s\""));
    let summary = run(&s);
    for i in &summary.invariants {
        assert!(i.holds, "{}: {}", i.name, i.detail);
    }
    let names: Vec<&str> = summary.invariants.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "no_lost_writes",
            "ledger_conserved",
            "events_consumed",
            "no_unauthenticated_calls"
        ]
    );
    let total = |name: &str| summary.business.get(name).map_or(0, |b| b.total);
    let ok = route(&summary, "authorisations").ok as i64;
    assert_eq!(
        total("authorisations.approved") + total("authorisations.declined"),
        ok,
        "every answered authorisation was approved or declined"
    );
    let ledger = &summary.invariants[1];
    assert_eq!(
        ledger.figures.get("applied"),
        Some(&total("authorisations.approved"))
    );
    assert!(total("money.moved") > 0);
    let amounts = summary
        .business
        .get("authorisation.amount")
        .and_then(|b| b.values.clone())
        .expect("amounts are a histogram");
    assert!((100..=5_000).contains(&amounts.p50), "p50 {}", amounts.p50);
}

#[test]
fn a_ledger_still_moving_when_checked_is_reported_unchecked_not_broken() {
    // Goal: when the pipeline has not gone quiet by the end of the verification wait, the
    // ledger is not judged from a reading taken while consumers still apply transactions
    // (which made accounts "differ" at 20,000/s though nothing was wrong). Method: 400
    // authorisations a second and latency between transactions and the bus, so the outbox
    // relay (32 entries per two round trips) falls behind. At 245 ms it is still publishing
    // when the verifier reads, and a batch lands between its two readings: the verdict must
    // say it could not be checked. At 600 ms a publish's round trip outlasts its 1 s deadline
    // and the relay has all but stopped: two readings agree, so the ledger is judged (and
    // holds, with the rest in flight). No acknowledged write is lost either way. (The relay
    // applies in batches, so whether a batch lands between two readings depends on the
    // latency and on when the engine delivers each message: at 400/s, 285 ms also does, and
    // 240, 250, 260 and 270 ms do not.)
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/card-steady.toml");
    let text = std::fs::read_to_string(path).expect("shipped scenario");
    let lagging = |latency: &str| {
        let link = format!(
            "[[network.link]]\na = \"service.transactions\"\nb = \"service.bus\"\nlatency = \"{latency}\"\n\n[[service]]\nname = \"service.auth\""
        );
        let text = text
            .replace("duration = \"30s\"", "duration = \"10s\"")
            .replacen("rate = \"100/s\"", "rate = \"400/s\"", 1)
            .replacen("[[service]]\nname = \"service.auth\"", &link, 1);
        run(&scenario(&text))
    };
    let moving = lagging("245ms");
    let ledger = invariant(&moving, "ledger_conserved");
    assert!(!ledger.holds, "{}", ledger.detail);
    assert!(
        ledger
            .detail
            .starts_with("could not be checked: the pipeline had not gone quiet"),
        "{}",
        ledger.detail
    );
    assert!(invariant(&moving, "no_lost_writes").holds);
    let stalled = lagging("600ms");
    let ledger = invariant(&stalled, "ledger_conserved");
    assert!(ledger.holds, "{}", ledger.detail);
    assert!(ledger.detail.contains("in flight"), "{}", ledger.detail);
    assert!(invariant(&stalled, "no_lost_writes").holds);
}
