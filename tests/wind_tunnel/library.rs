//! The wind tunnel as a library: a user's own system, registered through the public API, run
//! from TOML written in Rust, judged by its own invariant; and the errors a user meets.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use windtunnel::framework::{Context, Endpoint, Error};
use windtunnel::system::{
    Built, CatalogError, Env, Invariant, LoadEnd, Notes, ServiceDef, System, Topology, Verifier,
    Verify,
};
use windtunnel::tunnel::{Tunnel, TunnelError};

use crate::support::temp_dir;

/// A journal: `append` writes a line to the instance's disk and acknowledges it; `count` says
/// how many lines it holds. `lossy` acknowledges every tenth line without writing it: the bug
/// its invariant must catch.
struct Journal {
    lossy: bool,
}

fn journal(env: &Env, lossy: bool) -> Built {
    let (disk, d2) = (env.disk("lines"), env.disk("lines"));
    let env = env.clone();
    Built::endpoints(vec![
        Endpoint::raw("append", move |_ctx: Context, line: Bytes| {
            let (env, disk) = (env.clone(), disk.clone());
            async move {
                env.work_mean(Duration::from_millis(1)).await;
                let n = line.last().copied().unwrap_or(0);
                if !(lossy && n % 10 == 0) {
                    disk.append(line.clone());
                    disk.sync();
                }
                Ok(line)
            }
        }),
        Endpoint::new("count", move |_ctx: Context, _: serde_json::Value| {
            let n = d2.len();
            async move { Ok::<usize, Error>(n) }
        }),
    ])
}

impl System for Journal {
    fn name(&self) -> &str {
        "journal"
    }

    fn services(&self) -> Vec<ServiceDef> {
        let lossy = self.lossy;
        vec![ServiceDef::new("journal", move |env: &Env| {
            journal(env, lossy)
        })]
    }

    fn request(&self, _to: LoadEnd<'_>, n: u64, _rng: &mut ChaCha8Rng) -> Option<Bytes> {
        Some(Bytes::from(vec![b'l', (n % 256) as u8]))
    }

    fn answered(&self, _to: LoadEnd<'_>, answer: &[u8], notes: &Notes) {
        notes.add("line", format!("{answer:?}"));
    }

    fn verifier(&self, topology: &Topology) -> Option<Verifier> {
        topology
            .has_builtin("journal")
            .then(|| Verifier::new(all_lines_kept))
    }
}

async fn all_lines_kept(v: Verify) -> Vec<Invariant> {
    let ctx = Context::background().with_timeout(Duration::from_secs(5));
    let kept: Result<usize, Error> = v.client.call(&ctx, "svc.journal", "count", &()).await;
    let acked = v.notes.of("line").len() as i64;
    match kept {
        Ok(kept) => {
            let kept = kept as i64;
            let detail = format!("{kept} of {acked} acknowledged lines kept");
            let figures = [("acknowledged", acked), ("kept", kept)];
            vec![Invariant::new(
                "lines_kept",
                kept == acked,
                detail,
                &figures,
            )]
        }
        Err(e) => vec![Invariant::unreadable("lines_kept", &e.to_string())],
    }
}

const SCENARIO: &str = r#"
name = "journal"
description = "One journal instance at 50 appends a second."
seed = 3
duration = "5s"
[network]
latency = "1ms"
[[service]]
name = "svc.journal"
builtin = "journal"
instances = 1
[[load]]
name = "appends"
rpc = "svc.journal.append"
rate = "50/s"
deadline = "100ms"
[[assert]]
that = "error_rate == 0"
"#;

#[test]
fn a_users_system_runs_from_toml_written_in_rust_and_its_invariant_holds() {
    // Goal: a system of the user's own enters a run through the public API alone. Method: run
    // it from TOML text; its load bodies, notes and verifier all take part in the verdict.
    let outcome = Tunnel::toml(SCENARIO, "journal.toml")
        .system(Journal { lossy: false })
        .run()
        .expect("the scenario is valid");
    outcome.assert_passed();
    let kept = outcome.invariant("lines_kept").expect("the verifier ran");
    assert!(kept.holds, "{}", kept.detail);
    assert!(kept.figures["acknowledged"] > 200, "{:?}", kept.figures);
    assert_eq!(
        outcome.load("appends").map(|l| l.ok),
        Some(kept.figures["kept"] as u64)
    );
}

#[test]
fn a_broken_invariant_fails_the_run_and_says_how_to_replay_it() {
    // Goal: a lost write is caught, and the failure says what broke and how to replay it.
    // Method: the lossy journal acknowledges lines it never wrote.
    let outcome = Tunnel::toml(SCENARIO, "journal.toml")
        .system(Journal { lossy: true })
        .seed(11)
        .seed_from_env(false)
        .run()
        .expect("the scenario is valid");
    assert!(!outcome.passed(), "the lost lines must fail the run");
    let message = outcome
        .failure_message()
        .expect("a failed run explains itself");
    assert!(message.contains("BROKEN lines_kept"), "{message}");
    assert!(message.contains("at seed 11"), "{message}");
    // The replay names this very test, as libtest names it, and the seed that failed.
    let replay = "library::a_broken_invariant_fails_the_run_and_says_how_to_replay_it -- --exact";
    let command = format!("WINDTUNNEL_SEED=11 cargo test {replay}");
    assert!(message.contains(&command), "{message}");
    let panic = std::panic::catch_unwind(|| outcome.assert_passed());
    assert!(panic.is_err(), "assert_passed must panic on a failed run");
}

#[test]
fn a_builtin_nobody_registered_is_refused_where_it_is_written() {
    // Goal: what `check` refuses, `run` refuses, with a location. Method: the same text with
    // and without the system registered.
    let unregistered = Tunnel::toml(SCENARIO, "journal.toml").run();
    let Err(TunnelError::Scenario(e)) = unregistered else {
        panic!("an unknown builtin must be a scenario error, got {unregistered:?}");
    };
    assert!(e.to_string().contains("journal.toml:10:"), "{e}");
    assert!(e.to_string().contains("unknown builtin \"journal\""), "{e}");
    let registered = Tunnel::toml(SCENARIO, "journal.toml")
        .system(Journal { lossy: false })
        .seed_from_env(false);
    let scenario = registered.check().expect("valid once registered");
    assert_eq!(scenario.seed, 3);
}

#[test]
fn two_systems_may_not_define_one_builtin() {
    // Goal: a name clash between systems is an error, not a silent override.
    let clash = Tunnel::toml(SCENARIO, "journal.toml")
        .system(Journal { lossy: false })
        .system(Journal { lossy: true })
        .run();
    assert!(
        matches!(
            clash,
            Err(TunnelError::Registration(CatalogError::Duplicate { .. }))
        ),
        "{clash:?}"
    );
}

#[test]
fn a_builder_that_spawns_is_refused_with_the_reason() {
    // Goal: a builder must only build (it is called once to list endpoints, outside any
    // runtime); one that spawns is refused with a message saying so, not a crash.
    let spawning = ServiceDef::new("spawner", |_env: &Env| {
        tokio::spawn(async {});
        Built::default()
    });
    let outcome = Tunnel::toml(SCENARIO, "journal.toml")
        .service(spawning)
        .run();
    let Err(e) = outcome else {
        panic!("a spawning builder must be refused");
    };
    assert!(e.to_string().contains("spawn nothing"), "{e}");
}

/// A user's pricing service: `price` is marked idempotent in its code, `buy` is not.
struct Pricing;

impl System for Pricing {
    fn name(&self) -> &str {
        "pricing"
    }

    fn services(&self) -> Vec<ServiceDef> {
        vec![ServiceDef::new("pricing", |env: &Env| {
            let (e1, e2) = (env.clone(), env.clone());
            Built::endpoints(vec![
                Endpoint::raw("price", move |_ctx: Context, body: Bytes| {
                    let env = e1.clone();
                    async move {
                        env.work_mean(Duration::from_millis(2)).await;
                        Ok(body)
                    }
                })
                .idempotent(),
                Endpoint::raw("buy", move |_ctx: Context, body: Bytes| {
                    let env = e2.clone();
                    async move {
                        env.work_mean(Duration::from_millis(2)).await;
                        Ok(body)
                    }
                }),
            ])
        })]
    }
}

#[test]
fn a_users_service_gets_retries_for_the_endpoints_its_code_marks_idempotent() {
    // Goal: the degradation mechanisms act on a user's own Rust service, and idempotency comes
    // from its code. Method: a third of its requests fail as unavailable; callers retry under
    // the default budget. Only `price` (marked idempotent) is retried, and fewer of its
    // requests fail.
    let toml = r#"
name = "pricing-retries"
description = "a user's service, a third of its requests failing, retried where idempotent"
seed = 3
duration = "20s"
[[service]]
name = "svc.pricing"
builtin = "pricing"
instances = 3
retry = true
[[load]]
name = "price"
rpc = "svc.pricing.price"
rate = "200/s"
[[load]]
name = "buy"
rpc = "svc.pricing.buy"
rate = "200/s"
[[fault]]
at = "0s"
errors = { target = "svc.pricing", rate = "33%", code = "unavailable" }
"#;
    let outcome = Tunnel::toml(toml, "pricing.toml")
        .system(Pricing)
        .seed_from_env(false)
        .run()
        .expect("the scenario is valid");
    let rate = |load: &str| outcome.load(load).expect("the load ran").error_rate;
    let (price, buy) = (rate("price"), rate("buy"));
    assert!((0.28..0.38).contains(&buy), "buy is not retried: {buy}");
    assert!(
        price < buy - 0.05,
        "price is retried: {price} against {buy}"
    );
    let retries = outcome
        .summary()
        .business
        .get("retry.sent")
        .map_or(0, |m| m.total);
    // The default budget: 20% of the price requests (200/s for 20 s, counted over tower's
    // window of 10 s plus the slot being filled) plus 10/s: about 1,100.
    assert!((600..=1300).contains(&retries), "{retries} retries");
    assert!(outcome.to_string().contains("mechanisms: "), "{outcome}");
}

#[test]
fn a_crate_outside_the_repository_builds_and_runs_with_the_guides_dependency_lines() {
    // Goal: a crate of a user's own that depends on windtunnel as docs/own-services.md says
    // ("Outside this repository": by path, without the command line, tokio's unstable cfg set)
    // builds, and its wind tunnel test passes. windtunnel compiles only against its own copy of
    // turmoil, which a `[patch]` in this repository's Cargo.toml would not hand on to such a
    // crate. Method: copy tests/fixtures/outside-crate out of the repository, make its paths
    // absolute, give it this build's Cargo.lock (so nothing needs fetching) and run its tests.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixture = root.join("tests/fixtures/outside-crate");
    let work = temp_dir("outside-crate");
    let _cleanup = RemovedOnDrop(work.clone());
    let quoted = |p: &Path| toml::Value::String(p.to_string_lossy().into_owned()).to_string();
    let manifest = std::fs::read_to_string(fixture.join("Cargo.toml"))
        .expect("the fixture's manifest")
        .replace(
            "\"../../../vendor/tokio-util\"",
            &quoted(&root.join("vendor/tokio-util")),
        )
        .replace("\"../../..\"", &quoted(root));
    for dir in ["src", "tests", ".cargo"] {
        std::fs::create_dir_all(work.join(dir)).expect("a temporary directory");
    }
    std::fs::write(work.join("Cargo.toml"), manifest).expect("write the manifest");
    for (from, to) in [
        (fixture.join("src/lib.rs"), "src/lib.rs"),
        (fixture.join("tests/counter.rs"), "tests/counter.rs"),
        (root.join("Cargo.lock"), "Cargo.lock"),
        (root.join(".cargo/config.toml"), ".cargo/config.toml"),
    ] {
        std::fs::copy(&from, work.join(to)).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
    // Its own target directory, kept between runs: the first build of its dependencies takes a
    // minute or two, later ones rebuild only the crate.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("outside-crate");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // One job, beside the tests running around it; and only the copied config's flags, as the
    // guide sets them (flags from the environment would replace its `--cfg tokio_unstable`).
    let out = std::process::Command::new(cargo)
        .args(["test", "--offline", "--jobs", "1"])
        .current_dir(&work)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_BUILD_BUILD_DIR")
        .output()
        .expect("cargo runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("test the_counter_runs_in_a_wind_tunnel_and_replays_bit_for_bit ... ok"),
        "{stdout}"
    );
}

/// Removes a directory when dropped, so a failing test leaves no copy behind.
struct RemovedOnDrop(std::path::PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
