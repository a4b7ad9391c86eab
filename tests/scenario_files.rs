//! Scenario files as a user writes them: a full valid file parses to the expected typed values,
//! each kind of mistake is reported at its line and column with what was expected, and no input,
//! however mangled, makes the parser panic.

use std::time::Duration;

use proptest::prelude::*;
use windtunnel::dist::Dist;
use windtunnel::scenario::{
    load_file, parse_str, Arrival, Assertion, Balancer, Bound, Builtins, Fanout, FaultKind,
    LatencyStat, LoadTarget, Metric, NoBuiltins, OnError, Op, Scenario, ScenarioError, Scope,
    ServiceBody, Target, Wait, Window,
};
use windtunnel::units::{Rate, Ratio};

/// The builtins the webhook scenarios use.
struct WebhookCatalog;

impl Builtins for WebhookCatalog {
    fn builtin_endpoints(&self, builtin: &str) -> Option<Vec<String>> {
        (builtin == "webhook-api").then(|| vec!["deliver".to_string()])
    }
}

/// A complete scenario using every table and every fault kind.
const FULL: &str = r#"
name = "webhook-slow-instance"
description = "One of four webhook instances turns 20x slower at 20 s; p99 must stay under 300 ms."
seed = 7
duration = "60s"
tick = "1ms"

[network]
latency = { dist = "lognormal", p50 = "1ms", p99 = "4ms" }
loss = 0.0
  [[network.link]]
  a = "api.webhook"
  b = "service.webhook[2]"
  latency = "5ms"
  loss = "1%"

[[service]]
name = "api.webhook"
builtin = "webhook-api"
instances = 2

[[service]]
name = "service.webhook"
instances = 4
nodes = 2
workers = 16
queue = 64
balancer = "p2c"
  [[service.endpoint]]
  name = "deliver"
  time = { dist = "exponential", mean = "5ms" }
  response_bytes = 128
  calls = [
    { to = "service.auth.check", timeout = "50ms" },
    { to = "service.leaf.get", fanout = "all", wait = "all", timeout = "100ms" },
    { to = "service.leaf.get", fanout = 2, wait = "first" },
    { to = "service.leaf.get", fanout = "all", wait = "any:2" },
  ]
  on_error = "ignore"

[[service]]
name = "service.auth"
  [[service.endpoint]]
  name = "check"
  time = { dist = "mixture", parts = [ { weight = 99, dist = "exponential", mean = "5ms" }, { weight = 1, dist = "fixed", value = "1s" } ] }

[[service]]
name = "service.leaf"
instances = 3
  [[service.endpoint]]
  name = "get"
  time = { dist = "uniform", min = "1ms", max = "3ms" }

[[route]]
route = "POST /webhooks"
to = "api.webhook.deliver"

[[load]]
name = "webhooks"
route = "POST /webhooks"
rate = "200/s"
stages = [ { duration = "10s", target = "400/s" }, { duration = "0s", target = "100/s" } ]
arrival = "uniform"
deadline = "300ms"
start = "5s"
stop = "55s"
body_bytes = 256
clients = 2

[[load]]
rpc = "service.webhook.deliver"
rate = "12000/m"

[[fault]]
at = "20s"
duration = "20s"
slow = { target = "service.webhook[1]", factor = 20 }

[[fault]]
at = "10s"
duration = "5s"
latency = { target = "client", add = "50ms" }

[[fault]]
at = "10s"
duration = "5s"
errors = { target = "service.auth", rate = "10%", code = "unavailable.overloaded" }

[[fault]]
at = "30s"
duration = "1s"
partition = { a = "api.webhook", b = "service.webhook[0]", oneway = true }

[[fault]]
at = "30s"
duration = "1s"
hold = { a = "api.webhook", b = "service.auth" }

[[fault]]
at = "30s"
duration = "2s"
loss = { a = "client", b = "api.webhook", rate = 0.05 }

[[fault]]
at = "40s"
duration = "5s"
crash = { target = "service.leaf[2]" }

[[assert]]
that = "p99(latency) < 300ms"
route = "POST /webhooks"
during = "20s..40s"

[[assert]]
that = "error_rate <= 1%"
load = "webhooks"
during = "after_faults"

[[assert]]
that = "goodput >= 190/s"
endpoint = "service.webhook.deliver"
during = "faults"

[[assert]]
that = "orphaned_work == 0"
"#;

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

fn rate(per_second: f64) -> Rate {
    Rate::per_second(per_second).expect("test rates are valid")
}

fn full() -> Result<Scenario, ScenarioError> {
    parse_str(FULL, "full.toml", &WebhookCatalog)
}

#[test]
fn full_file_parses_header_network_and_services() -> Result<(), ScenarioError> {
    // Goal: every key of a complete file lands in the typed field it names. Method: parse, compare.
    let scenario = full()?;
    assert_eq!(scenario.name.as_str(), "webhook-slow-instance");
    assert_eq!(
        (scenario.seed, scenario.duration, scenario.tick),
        (7, secs(60), ms(1))
    );
    assert!(matches!(scenario.network.latency, Dist::LogNormal { .. }));
    assert_eq!(scenario.network.loss, Ratio::ZERO);
    let link = &scenario.network.links[0];
    assert_eq!(link.a.to_string(), "api.webhook");
    assert_eq!(link.b.to_string(), "service.webhook[2]");
    assert_eq!(link.latency, Some(Dist::Fixed(ms(5))));
    assert_eq!(link.loss.map(Ratio::value), Some(0.01));

    let api = &scenario.services[0];
    assert!(
        matches!(&api.body, ServiceBody::Builtin { builtin, endpoints }
        if builtin.as_str() == "webhook-api" && endpoints.len() == 1)
    );
    assert_eq!(
        (api.instances, api.nodes, api.workers, api.queue),
        (2, 2, 16, 64)
    );
    let webhook = &scenario.services[1];
    assert_eq!((webhook.instances, webhook.nodes), (4, 2));
    assert_eq!(webhook.balancer, Balancer::PowerOfTwoChoices);
    let ServiceBody::Synthetic { endpoints } = &webhook.body else {
        panic!("service.webhook is synthetic");
    };
    let deliver = &endpoints[0];
    assert_eq!(deliver.time, Dist::Exponential { mean: ms(5) });
    assert_eq!(
        (deliver.response_bytes, deliver.on_error),
        (128, OnError::Ignore)
    );
    let calls: Vec<(String, Fanout, Wait, Option<Duration>)> = deliver
        .calls
        .iter()
        .map(|call| (call.to.to_string(), call.fanout, call.wait, call.timeout))
        .collect();
    assert_eq!(
        calls,
        vec![
            (
                "service.auth.check".into(),
                Fanout::Count(1),
                Wait::All,
                Some(ms(50))
            ),
            (
                "service.leaf.get".into(),
                Fanout::All,
                Wait::All,
                Some(ms(100))
            ),
            (
                "service.leaf.get".into(),
                Fanout::Count(2),
                Wait::First,
                None
            ),
            ("service.leaf.get".into(), Fanout::All, Wait::Any(2), None),
        ]
    );
    assert_eq!(scenario.services[2].balancer, Balancer::RoundRobin);
    Ok(())
}

#[test]
fn full_file_parses_routes_loads_faults_and_assertions() -> Result<(), ScenarioError> {
    // Goal: the traffic, the faults and the assertions come out typed, defaults filled in.
    let scenario = full()?;
    assert_eq!(scenario.routes[0].key.to_string(), "POST /webhooks");
    assert_eq!(scenario.routes[0].to.to_string(), "api.webhook.deliver");

    let webhooks = &scenario.loads[0];
    assert_eq!(webhooks.name.as_str(), "webhooks");
    assert!(
        matches!(&webhooks.target, LoadTarget::Route(route) if route.to_string() == "POST /webhooks")
    );
    assert_eq!(
        (webhooks.rate, webhooks.arrival),
        (rate(200.0), Arrival::Uniform)
    );
    assert_eq!(webhooks.stages.len(), 2);
    assert_eq!(
        (webhooks.deadline, webhooks.start, webhooks.stop),
        (ms(300), secs(5), secs(55))
    );
    assert_eq!((webhooks.body_bytes, webhooks.clients), (256, 2));
    assert_eq!(webhooks.rate_at(secs(5)), rate(300.0));
    let rpc = &scenario.loads[1];
    assert_eq!(
        rpc.name.as_str(),
        "service.webhook.deliver",
        "a load without a name goes by its rpc"
    );
    assert_eq!(
        (rpc.rate, rpc.arrival, rpc.deadline),
        (rate(200.0), Arrival::Poisson, secs(1))
    );
    assert_eq!((rpc.start, rpc.stop), (Duration::ZERO, secs(60)));

    let kinds: Vec<String> = scenario
        .faults
        .iter()
        .map(|fault| format!("{:?}", fault.kind))
        .collect();
    assert_eq!(scenario.faults.len(), 7, "{kinds:?}");
    assert!(
        matches!(&scenario.faults[0].kind, FaultKind::Slow { target: Target::Instance { index: 1, .. }, factor }
        if factor.value() == 20.0)
    );
    assert!(matches!(
        &scenario.faults[1].kind,
        FaultKind::Latency {
            target: Target::Client,
            ..
        }
    ));
    assert!(
        matches!(&scenario.faults[2].kind, FaultKind::Errors { code, .. } if code.as_str() == "unavailable.overloaded")
    );
    assert!(matches!(
        &scenario.faults[3].kind,
        FaultKind::Partition { oneway: true, .. }
    ));
    assert!(matches!(&scenario.faults[4].kind, FaultKind::Hold { .. }));
    assert!(
        matches!(&scenario.faults[5].kind, FaultKind::Loss { rate, .. } if rate.value() == 0.05)
    );
    assert!(matches!(&scenario.faults[6].kind, FaultKind::Crash { .. }));

    let first: &Assertion = &scenario.assertions[0];
    assert_eq!(first.metric, Metric::Latency(LatencyStat::P99));
    assert_eq!((first.op, first.bound), (Op::Lt, Bound::Duration(ms(300))));
    assert!(matches!(&first.scope, Scope::Route(route) if route.to_string() == "POST /webhooks"));
    assert_eq!(
        first.window,
        Window::Range {
            start: secs(20),
            end: secs(40)
        }
    );
    assert_eq!(
        scenario.window_bounds(&scenario.assertions[1].window),
        secs(45)..secs(60)
    );
    assert_eq!(
        scenario.window_bounds(&scenario.assertions[2].window),
        secs(10)..secs(45)
    );
    assert_eq!(
        scenario.assertions[3].metric,
        Metric::Check("orphaned_work".into())
    );
    assert_eq!(
        (
            &scenario.assertions[3].scope,
            &scenario.assertions[3].window
        ),
        (&Scope::All, &Window::All)
    );
    Ok(())
}

#[test]
fn defaults_fill_in_an_almost_empty_file() -> Result<(), ScenarioError> {
    // Goal: the documented defaults. Method: the smallest valid file.
    let text = "name = \"tiny\"\ndescription = \"d\"\nduration = \"1s\"\n";
    let scenario = parse_str(text, "tiny.toml", &NoBuiltins)?;
    assert_eq!((scenario.seed, scenario.tick), (1, ms(1)));
    assert_eq!(scenario.network.latency, Dist::Fixed(ms(1)));
    assert!(scenario.services.is_empty() && scenario.loads.is_empty());
    Ok(())
}

#[test]
fn load_file_reads_a_file_and_reports_a_missing_one() {
    // Goal: a path that cannot be read is a read error naming the path, not a panic.
    let missing = std::path::Path::new("/nonexistent/windtunnel/scenario.toml");
    let error = load_file(missing, &NoBuiltins).expect_err("no such file");
    assert!(matches!(error, ScenarioError::Read { .. }));
    assert!(error
        .to_string()
        .starts_with("/nonexistent/windtunnel/scenario.toml: error: cannot read"));
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/bad/two-fault-kinds.toml"
    );
    let error =
        load_file(std::path::Path::new(fixture), &NoBuiltins).expect_err("the fixture is invalid");
    assert!(
        error
            .to_string()
            .contains("two-fault-kinds.toml:11:8: error: a fault needs exactly one kind"),
        "{error}"
    );
}

#[test]
fn the_complete_example_in_the_docs_is_valid() -> Result<(), ScenarioError> {
    // Goal: the user guide's example parses as printed. Method: cut it out of docs/scenarios.md.
    let docs = include_str!("../docs/scenarios.md");
    let start = docs
        .find("<!-- example:start -->")
        .expect("docs mark the example start");
    let end = docs
        .find("<!-- example:end -->")
        .expect("docs mark the example end");
    let block = &docs[start..end];
    let body = block
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a toml block");
    parse_str(body, "docs/scenarios.md", &NoBuiltins)?;
    Ok(())
}

mod broken {
    //! Each kind of mistake, in a small file: the error names the place and what was expected.

    use super::*;

    /// A valid head the broken snippets are appended to: 9 lines.
    const HEAD: &str = r#"name = "t"
description = "d"
duration = "60s"

[[service]]
name = "service.a"
instances = 2
  [[service.endpoint]]
  name = "get"
"#;

    /// Appends `snippet` to [`HEAD`] and checks that the error contains `t.toml:LINE:COL: error:`,
    /// with LINE counted within the snippet, and every `expected` fragment.
    fn assert_error(snippet: &str, line: usize, column: usize, expected: &[&str]) {
        let text = format!("{HEAD}{snippet}");
        let error = parse_str(&text, "t.toml", &NoBuiltins).expect_err("the snippet is broken");
        let rendered = error.to_string();
        let place = format!("t.toml:{}:{column}: error: ", HEAD.lines().count() + line);
        let at_place = rendered
            .lines()
            .find(|diagnostic| diagnostic.starts_with(&place));
        let Some(diagnostic) = at_place else {
            panic!("no diagnostic at {place} in:\n{rendered}");
        };
        for fragment in expected {
            assert!(
                diagnostic.contains(fragment),
                "{fragment:?} not in {diagnostic:?}"
            );
        }
    }

    #[test]
    fn the_head_alone_is_valid() {
        assert!(parse_str(HEAD, "t.toml", &NoBuiltins).is_ok());
    }

    #[test]
    fn unknown_key_is_reported_with_the_keys_expected() {
        assert_error(
            "[[load]]\nrpc = \"service.a.get\"\nrate = \"10/s\"\nratee = 1\n",
            4,
            1,
            &["unknown field `ratee`", "`rate`"],
        );
    }

    #[test]
    fn a_load_token_must_be_known_and_only_on_routes() {
        assert_error(
            "[[route]]\nroute = \"GET /a\"\nto = \"service.a.get\"\n[[load]]\nroute = \"GET /a\"\nrate = \"1/s\"\ntoken = \"maybe\"\n",
            7,
            9,
            &["`token`: expected \"valid\", \"none\" or \"invalid\"", "found \"maybe\""],
        );
        assert_error(
            "[[load]]\nrpc = \"service.a.get\"\nrate = \"1/s\"\ntoken = \"none\"\n",
            4,
            9,
            &["`token` applies to route loads only"],
        );
    }

    #[test]
    fn a_builtin_needs_the_services_it_calls() {
        let text =
            format!("{HEAD}[[service]]\nname = \"api.webhook\"\nbuiltin = \"webhook-api\"\n");
        let error = parse_str(&text, "t.toml", &windtunnel::services::catalog())
            .expect_err("service.auth and service.webhook are missing");
        let rendered = error.to_string();
        let line = HEAD.lines().count() + 3;
        for missing in ["service.auth", "service.webhook"] {
            let expected = format!(
                "t.toml:{line}:11: error: builtin \"webhook-api\" calls \"{missing}\", which this scenario does not declare"
            );
            assert!(
                rendered.contains(&expected),
                "{expected:?} not in:\n{rendered}"
            );
        }
    }

    #[test]
    fn toml_syntax_error_is_located() {
        assert_error("[[load]\n", 1, 7, &["invalid table header"]);
    }

    #[test]
    fn wrong_type_is_located() {
        assert_error(
            "[[service]]\nname = \"service.b\"\ninstances = \"4\"\n",
            3,
            13,
            &["invalid type: string \"4\", expected i64"],
        );
    }

    #[test]
    fn bad_duration_says_what_a_duration_looks_like() {
        assert_error(
            "[[load]]\nrpc = \"service.a.get\"\nrate = \"10/s\"\ndeadline = \"20 parsecs\"\n",
            4,
            12,
            &[
                "`deadline`: expected a duration such as \"300ms\" or \"20s\"",
                "found \"20 parsecs\"",
            ],
        );
    }

    #[test]
    fn bad_rate_and_non_positive_rate_are_reported() {
        assert_error(
            "[[load]]\nrpc = \"service.a.get\"\nrate = \"10 per second\"\n",
            3,
            8,
            &["expected a rate such as \"200/s\""],
        );
        assert_error(
            "[[load]]\nrpc = \"service.a.get\"\nrate = \"0/s\"\n",
            3,
            8,
            &["`rate` must be above zero, found 0/s"],
        );
    }

    #[test]
    fn ratio_outside_zero_to_one_is_reported() {
        assert_error(
            "[network]\nloss = 1.5\n",
            2,
            8,
            &[
                "`loss`: expected a ratio such as 0.01 or \"1%\"",
                "found the number 1.5",
            ],
        );
    }

    #[test]
    fn bad_distribution_parameters_are_reported() {
        assert_error(
            "[network]\nlatency = { dist = \"lognormal\", p50 = \"4ms\", p99 = \"1ms\" }\n",
            2,
            11,
            &["p99 1ms below p50 4ms"],
        );
        assert_error(
            "[network]\nlatency = { dist = \"mixture\", parts = [] }\n",
            2,
            11,
            &["a mixture needs at least one part"],
        );
    }

    #[test]
    fn missing_required_key_is_reported() {
        assert_error(
            "[[service]]\ninstances = 2\n",
            1,
            1,
            &["missing field `name`"],
        );
        let error = parse_str("name = \"t\"\ndescription = \"d\"\n", "t.toml", &NoBuiltins)
            .expect_err("no duration");
        assert!(
            error
                .to_string()
                .contains("t.toml:1:1: error: missing required key `duration`"),
            "{error}"
        );
    }

    #[test]
    fn duplicate_names_point_at_the_first_definition() {
        assert_error(
            "[[service]]\nname = \"service.a\"\n",
            2,
            8,
            &["duplicate service name \"service.a\" (first defined at line 6)"],
        );
        assert_error(
            "  [[service.endpoint]]\n  name = \"get\"\n",
            2,
            10,
            &["duplicate endpoint name \"get\" (first defined at line 9)"],
        );
        assert_error(
            "[[load]]\nrpc = \"service.a.get\"\nrate = \"1/s\"\n[[load]]\nrpc = \"service.a.get\"\nrate = \"1/s\"\n",
            4,
            1,
            &["duplicate load name \"service.a.get\""],
        );
    }

    #[test]
    fn zero_instances_and_too_many_nodes_are_reported() {
        assert_error(
            "[[service]]\nname = \"service.b\"\ninstances = 0\n",
            3,
            13,
            &["`instances` must be between 1 and 1000, found 0"],
        );
        assert_error(
            "[[service]]\nname = \"service.b\"\ninstances = 2\nnodes = 3\n",
            4,
            9,
            &["`nodes` must be between 1 and the service's 2 instances, found 3"],
        );
    }

    #[test]
    fn call_to_unknown_service_lists_the_known_ones() {
        assert_error(
            "[[service]]\nname = \"service.b\"\n  [[service.endpoint]]\n  name = \"x\"\n  calls = [ { to = \"service.foo.get\" } ]\n",
            5,
            20,
            &["unknown service in \"service.foo.get\"", "services: service.a, service.b"],
        );
    }

    #[test]
    fn call_to_unknown_endpoint_lists_the_service_endpoints() {
        assert_error(
            "[[service]]\nname = \"service.b\"\n  [[service.endpoint]]\n  name = \"x\"\n  calls = [ { to = \"service.a.put\" } ]\n",
            5,
            20,
            &["unknown endpoint \"put\" of service.a; its endpoints: get"],
        );
    }

    #[test]
    fn fanout_beyond_the_callee_and_any_beyond_the_fanout_are_reported() {
        let call = |fields: &str| {
            format!("[[service]]\nname = \"service.b\"\n  [[service.endpoint]]\n  name = \"x\"\n  calls = [ {{ to = \"service.a.get\", {fields} }} ]\n")
        };
        assert_error(
            &call("fanout = 3"),
            5,
            46,
            &["`fanout` of 3 is more than the callee's 2 instances"],
        );
        assert_error(
            &call("fanout = 1, wait = \"any:2\""),
            5,
            56,
            &["`wait` for any 2 replies, but the call goes to 1 instance"],
        );
        assert_error(
            &call("fanout = \"all\", wait = \"any:3\""),
            5,
            60,
            &["`wait` for any 3 replies, but the call goes to 2 instances"],
        );
    }

    #[test]
    fn calls_forming_a_cycle_are_reported() {
        assert_error(
            "  calls = [ { to = \"service.b.x\" } ]\n[[service]]\nname = \"service.b\"\n  [[service.endpoint]]\n  name = \"x\"\n  calls = [ { to = \"service.a.get\" } ]\n",
            6,
            20,
            &["calls form a cycle: service.a.get -> service.b.x -> service.a.get"],
        );
    }

    #[test]
    fn unknown_builtin_is_reported() {
        assert_error(
            "[[service]]\nname = \"api.b\"\nbuiltin = \"nope\"\n",
            3,
            11,
            &["unknown builtin \"nope\""],
        );
    }

    #[test]
    fn fault_on_unknown_target_or_out_of_range_instance_is_reported() {
        assert_error(
            "[[fault]]\nat = \"1s\"\ncrash = { target = \"service.zzz\" }\n",
            3,
            20,
            &[
                "unknown service \"service.zzz\"",
                "known services: service.a",
            ],
        );
        assert_error(
            "[[fault]]\nat = \"1s\"\nslow = { target = \"service.a[2]\", factor = 2 }\n",
            3,
            19,
            &["instance 2 of service.a is out of range: it has 2 instances (0..=1)"],
        );
        assert_error(
            "[[network.link]]\na = \"service.a[7]\"\nb = \"client\"\nlatency = \"1ms\"\n",
            2,
            5,
            &["instance 7 of service.a is out of range"],
        );
    }

    #[test]
    fn windows_outside_the_run_are_reported() {
        assert_error(
            "[[fault]]\nat = \"50s\"\nduration = \"20s\"\ncrash = { target = \"service.a\" }\n",
            3,
            12,
            &["ends at 70s, outside the run"],
        );
        assert_error(
            "[[fault]]\nat = \"60s\"\ncrash = { target = \"service.a\" }\n",
            2,
            6,
            &["`at` 60s is outside the run"],
        );
        assert_error(
            "[[load]]\nrpc = \"service.a.get\"\nrate = \"1/s\"\nstop = \"61s\"\n",
            4,
            8,
            &["`stop` 61s is outside the load's window"],
        );
        assert_error(
            "[[assert]]\nthat = \"sent > 0\"\nduring = \"10s..70s\"\n",
            3,
            10,
            &["window \"10s..70s\" ends after the run"],
        );
    }

    #[test]
    fn route_load_without_a_route_table_is_reported() {
        assert_error(
            "[[load]]\nroute = \"POST /x\"\nrate = \"1/s\"\n",
            2,
            9,
            &["no [[route]] matches \"POST /x\"; declared routes: (none)"],
        );
    }

    #[test]
    fn assertions_on_unknown_route_load_or_endpoint_are_reported() {
        assert_error(
            "[[assert]]\nthat = \"sent > 0\"\nroute = \"GET /y\"\n",
            3,
            9,
            &["unknown route \"GET /y\""],
        );
        assert_error(
            "[[assert]]\nthat = \"sent > 0\"\nload = \"nope\"\n",
            3,
            8,
            &["unknown load \"nope\"; loads: (none)"],
        );
        assert_error(
            "[[assert]]\nthat = \"sent > 0\"\nendpoint = \"service.a.nope\"\n",
            3,
            12,
            &["unknown endpoint \"nope\""],
        );
    }

    #[test]
    fn exactly_one_of_violations_are_reported() {
        assert_error(
            "[[route]]\nroute = \"POST /x\"\nto = \"service.a.get\"\n[[load]]\nrpc = \"service.a.get\"\nroute = \"POST /x\"\nrate = \"1/s\"\n",
            4,
            1,
            &["exactly one of `rpc` (an endpoint) and `route`", "found both"],
        );
        assert_error(
            "[[fault]]\nat = \"1s\"\n",
            1,
            1,
            &["a fault needs exactly one kind", "found none"],
        );
    }

    #[test]
    fn bound_in_the_wrong_unit_is_reported() {
        assert_error(
            "[[assert]]\nthat = \"p99(latency) < 5%\"\n",
            2,
            8,
            &["p99(latency) is compared with a duration such as \"300ms\", found \"5%\""],
        );
    }

    #[test]
    fn fault_windows_need_faults() {
        assert_error(
            "[[assert]]\nthat = \"sent > 0\"\nduring = \"faults\"\n",
            3,
            10,
            &["needs at least one [[fault]]"],
        );
    }

    /// Two named faults: `slow-a` from 10 s to 20 s, `cut` from 30 s to 40 s.
    const NAMED: &str = "[[fault]]\nname = \"slow-a\"\nat = \"10s\"\nduration = \"10s\"\nslow = { target = \"service.a\", factor = 5 }\n[[fault]]\nname = \"cut\"\nat = \"30s\"\nduration = \"10s\"\nslow = { target = \"service.a[0]\", factor = 9 }\n";

    #[test]
    fn before_faults_and_a_named_faults_window_cover_what_they_say() {
        // Goal: `before_faults` runs from 0 to the first fault, `fault:<name>` is that fault's
        // own window. Method: parse two named faults and three assertions, read their bounds.
        let text = format!(
            "{HEAD}{NAMED}[[assert]]\nthat = \"sent > 0\"\nduring = \"before_faults\"\n[[assert]]\nthat = \"sent > 0\"\nduring = \"fault:cut\"\n[[assert]]\nthat = \"sent > 0\"\nduring = \"fault:slow-a\"\n"
        );
        let scenario = parse_str(&text, "t.toml", &NoBuiltins).expect("valid");
        let names: Vec<_> = scenario.faults.iter().map(|f| f.name.clone()).collect();
        assert_eq!(names, [Some("slow-a".into()), Some("cut".into())]);
        let bounds: Vec<_> = scenario
            .assertions
            .iter()
            .map(|a| scenario.window_bounds(&a.window))
            .collect();
        assert_eq!(
            bounds,
            [secs(0)..secs(10), secs(30)..secs(40), secs(10)..secs(20)]
        );
        assert_eq!(scenario.assertions[1].window, Window::Fault("cut".into()));
    }

    #[test]
    fn an_unknown_fault_name_is_reported_with_the_names_there_are() {
        assert_error(
            &format!("{NAMED}[[assert]]\nthat = \"sent > 0\"\nduring = \"fault:slow-b\"\n"),
            13,
            10,
            &[
                "no [[fault]] is named \"slow-b\"",
                "named faults: slow-a, cut",
            ],
        );
        assert_error(
            "[[fault]]\nat = \"1s\"\nslow = { target = \"service.a\", factor = 2 }\n[[assert]]\nthat = \"sent > 0\"\nduring = \"fault:x\"\n",
            6,
            10,
            &["no [[fault]] is named \"x\"", "(none: give a fault `name"],
        );
    }

    #[test]
    fn fault_names_must_be_unique_and_well_formed() {
        let twice = NAMED.replace("name = \"cut\"", "name = \"slow-a\"");
        assert_error(
            &twice,
            7,
            8,
            &[
                "a fault named \"slow-a\" is already defined at line",
                "unique",
            ],
        );
        let spaced = NAMED.replace("name = \"cut\"", "name = \"a cut\"");
        assert_error(
            &spaced,
            7,
            8,
            &["expected a fault's name", "found \"a cut\""],
        );
    }

    #[test]
    fn heal_cuts_every_fault_that_goes_past_it_and_opens_the_after_heal_window() {
        // Goal: `heal` lifts every fault at its time. Method: a slow fault past it and a crash
        // with no restart are cut at 30 s; one that ends before is left alone.
        let text = format!(
            "heal = \"30s\"\n{HEAD}[[fault]]\nat = \"5s\"\nduration = \"5s\"\nslow = {{ target = \"service.a\", factor = 2 }}\n[[fault]]\nat = \"20s\"\nduration = \"30s\"\nslow = {{ target = \"service.a\", factor = 2 }}\n[[fault]]\nat = \"25s\"\ncrash = {{ target = \"service.a[1]\" }}\n[[assert]]\nthat = \"sent > 0\"\nduring = \"after_heal+5s\"\n"
        );
        let scenario = parse_str(&text, "t.toml", &NoBuiltins).expect("valid");
        let heal = scenario.heal.clone().expect("heal");
        assert_eq!((heal.at, heal.cut), (secs(30), vec![1, 2]));
        let ends: Vec<_> = scenario.faults.iter().map(|f| f.end(secs(60))).collect();
        assert_eq!(ends, [secs(10), secs(30), secs(30)]);
        assert_eq!(
            scenario.window_bounds(&scenario.assertions[0].window),
            secs(35)..secs(60)
        );
    }

    #[test]
    fn heal_refuses_a_fault_after_it_a_time_outside_the_run_and_windows_without_it() {
        let fault = "[[fault]]\nat = \"40s\"\nslow = { target = \"service.a\", factor = 2 }\n";
        let text = format!("heal = \"30s\"\n{HEAD}{fault}");
        let error = parse_str(&text, "t.toml", &NoBuiltins).expect_err("a fault after the heal");
        assert!(
            error.to_string().contains(
                "this fault starts at 40s, at or after `heal` (30s), so it would never act"
            ),
            "{error}"
        );
        let text = format!("heal = \"60s\"\n{HEAD}");
        let error = parse_str(&text, "t.toml", &NoBuiltins).expect_err("heal at the end");
        assert!(
            error
                .to_string()
                .contains("t.toml:1:8: error: `heal`: expected a time after 0s and before the end of the run (60s), found 60s"),
            "{error}"
        );
        assert_error(
            "[[assert]]\nthat = \"sent > 0\"\nduring = \"after_heal\"\n",
            3,
            10,
            &["window \"after_heal\" needs `heal = \"<duration>\"`"],
        );
        let text = format!(
            "heal = \"50s\"\n{HEAD}[[assert]]\nthat = \"sent > 0\"\nduring = \"after_heal+10s\"\n"
        );
        let error = parse_str(&text, "t.toml", &NoBuiltins).expect_err("empty window");
        assert!(
            error
                .to_string()
                .contains("window \"after_heal+10s\" is empty: the heal at 50s plus 10s"),
            "{error}"
        );
    }

    #[test]
    fn before_faults_needs_a_fault_that_starts_after_zero() {
        assert_error(
            "[[assert]]\nthat = \"sent > 0\"\nduring = \"before_faults\"\n",
            3,
            10,
            &["needs at least one [[fault]]"],
        );
        assert_error(
            "[[fault]]\nat = \"0s\"\nduration = \"1s\"\nslow = { target = \"service.a\", factor = 2 }\n[[assert]]\nthat = \"sent > 0\"\nduring = \"before_faults\"\n",
            7,
            10,
            &["window \"before_faults\" is empty: the first fault starts at 0s"],
        );
    }

    #[test]
    fn degradation_mechanisms_report_the_key_and_what_was_expected() {
        let svc = |line: &str| format!("[[service]]\nname = \"service.b\"\n{line}\n");
        assert_error(
            &svc("breaker = { failures = 0 }"),
            3,
            11,
            &["`breaker.failures` must be a whole number from 1 to 1000000, found the integer 0"],
        );
        assert_error(
            &svc("breaker = { open = \"1m\" }"),
            3,
            11,
            &["`breaker.max_open` (30s) is shorter than `breaker.open` (60s)"],
        );
        assert_error(
            &svc("retry = { budgett = true }"),
            3,
            9,
            &[
                "unknown key \"budgett\" in `retry`",
                "attempts, backoff, max_backoff, budget",
            ],
        );
        assert_error(
            &svc("retry = { budget = { percent = \"120%\" } }"),
            3,
            9,
            &["`retry.budget.percent`"],
        );
        assert_error(
            &svc("hedge = { after = \"p100\" }"),
            3,
            9,
            &["`hedge.after`: expected a percentile from \"p1\" to \"p99.9\""],
        );
        assert_error(
            &svc("hedge = 3"),
            3,
            9,
            &["`hedge`: expected true, false or a table of after, copies, max_extra"],
        );
        assert_error(
            &svc("limit = { max = 3 }"),
            3,
            9,
            &["needs `adaptive = true`"],
        );
        assert_error(
            &svc("limit = { adaptive = true, max = 3 }"),
            3,
            9,
            &["`limit.max` (3) is below `limit.min` (4)"],
        );
        assert_error(
            &svc("limit = 0"),
            3,
            9,
            &["`limit`: expected a number from 1 to 100000"],
        );
        assert_error(
            "[[assert]]\nthat = \"count(hedge sent) < 3\"\n",
            2,
            8,
            &["`count(...)` needs a counter's name"],
        );
    }

    #[test]
    fn every_problem_in_a_file_is_reported_in_file_order() {
        // Goal: one run shows every mistake, not just the first. Method: three independent ones.
        let snippet = "[[load]]\nrpc = \"service.a.nope\"\nrate = \"0/s\"\n[[fault]]\nat = \"90s\"\ncrash = { target = \"service.a\" }\n";
        let error =
            parse_str(&format!("{HEAD}{snippet}"), "t.toml", &NoBuiltins).expect_err("broken");
        let lines: Vec<usize> = error.diagnostics().iter().map(|d| d.line).collect();
        assert_eq!(lines, vec![11, 12, 14], "{error}");
    }
}

mod robustness {
    //! No input panics the parser, and every rejection is located.

    use super::*;

    /// Keys to put where others were.
    const KEYS: &[&str] = &[
        "name",
        "instances",
        "nodes",
        "rate",
        "stages",
        "to",
        "fanout",
        "wait",
        "at",
        "duration",
        "during",
        "that",
        "latency",
        "dist",
        "parts",
        "weight",
        "p99",
        "target",
        "builtin",
        "zzz",
    ];

    /// Values to put where others were: the edges of every unit and type.
    const VALUES: &[&str] = &[
        "-1", "0", "4294967296", "9223372036854775807", "1e308", "nan", "inf", "\"\"", "\"0s\"", "\"99999999999999h\"",
        "\"0.0000000001ns\"", "\"1/s\"", "\"0/s\"", "\"101%\"", "\"all\"", "\"any:0\"", "\"any:99\"", "{}", "[]",
        "[ {} ]", "\"service.a[4294967295]\"", "\"service.a[]\"", "\"client\"", "{ dist = \"pareto\", scale = \"1ms\", shape = 0.01 }",
        "{ dist = \"mixture\", parts = [ { weight = 1e308, dist = \"fixed\", value = \"1h\" }, { weight = 1e308, dist = \"fixed\", value = \"1s\" } ] }",
        "\"p99(latency) < 1ms\"", "\"0s..0s\"", "true",
    ];

    fn assert_located(text: &str) {
        if let Err(error) = parse_str(text, "p.toml", &WebhookCatalog) {
            assert!(
                !error.diagnostics().is_empty(),
                "an error without diagnostics: {error}"
            );
            for diagnostic in error.diagnostics() {
                assert!(
                    diagnostic.line >= 1 && diagnostic.column >= 1,
                    "{diagnostic}"
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
            assert_located(&text);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            assert_located(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn byte_flips_of_a_valid_file_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
            let mut bytes = FULL.as_bytes().to_vec();
            for (at, byte) in flips {
                let at = at % bytes.len();
                bytes[at] = byte;
            }
            assert_located(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn truncations_of_a_valid_file_never_panic(len in 0..FULL.len()) {
            assert_located(&String::from_utf8_lossy(&FULL.as_bytes()[..len]));
        }

        #[test]
        fn key_and_value_substitutions_never_panic(
            edits in proptest::collection::vec((any::<usize>(), any::<bool>(), any::<usize>()), 1..4)
        ) {
            let mut text = FULL.to_string();
            for (line, key, choice) in edits {
                text = substitute_in(&text, line, key, choice);
            }
            assert_located(&text);
        }
    }

    /// Replaces the key or the value of one `key = value` line of `text`, chosen by `line`.
    fn substitute_in(text: &str, line: usize, key: bool, choice: usize) -> String {
        let lines: Vec<&str> = text.lines().collect();
        let target = line % lines.len().max(1);
        let edited: Vec<String> = lines
            .iter()
            .enumerate()
            .map(
                |(i, line_text)| match (i == target, line_text.split_once(" = ")) {
                    (true, Some((_, value))) if key => {
                        format!("{} = {value}", KEYS[choice % KEYS.len()])
                    }
                    (true, Some((name, _))) => {
                        format!("{name} = {}", VALUES[choice % VALUES.len()])
                    }
                    _ => line_text.to_string(),
                },
            )
            .collect();
        edited.join("\n")
    }
}
