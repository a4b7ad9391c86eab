//! The `windtunnel` command: run, check, list, compare, sweep, merge, serve.
//!
//! Flags are parsed by clap into raw values, then each command validates what it was given
//! (files, directories, seeds) before doing anything. Exit codes: 0 when every assertion holds,
//! 1 when one fails, 2 when the input is invalid (clap's own usage errors are 2 as well).

/// Prints a line to standard output, ignoring a closed pipe (`windtunnel run ... | head -1`):
/// the exit code must be the verdict's, not a panic's.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Prints text as it is to standard output, ignoring a closed pipe.
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

mod hunt;
mod output;
mod sweep;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::scenario::{self, Scenario};
use crate::system::{Catalog, System};

/// Exit code: every assertion holds.
pub const EXIT_OK: u8 = 0;
/// Exit code: an assertion failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: the input is invalid.
pub const EXIT_INVALID: u8 = 2;

/// windtunnel: run a microservice system in a deterministic wind tunnel and judge it.
#[derive(Debug, Parser)]
#[command(name = "windtunnel", version, about, long_about = None)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario file and write its report.
    Run {
        /// The scenario file (TOML).
        file: PathBuf,
        /// Use this seed instead of the file's.
        #[arg(long)]
        seed: Option<u64>,
        /// Write the report here (default: reports/<scenario name>/).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print only the verdict lines, no progress.
        #[arg(long, short)]
        quiet: bool,
        /// Run the scenario a second time at the same seed and compare the two event logs
        /// event for event; name the first that differs and exit 1 if any does.
        #[arg(long = "check-determinism")]
        check_determinism: bool,
        /// Step every tick, never skipping simulated time in which nothing can happen (the
        /// reference; by default such time is skipped in one step, with the same result).
        /// With --check-determinism, the second run always steps every tick, so the check
        /// also says whether skipping changed anything.
        #[arg(long = "every-tick")]
        every_tick: bool,
        /// Accepted for scripts written when skipping idle time was not the default.
        #[arg(long = "skip-idle", hide = true, conflicts_with = "every_tick")]
        _skip_idle: bool,
    },
    /// Run a scenario at many seeds and report which fail (replay one with `run --seed`).
    Sweep {
        /// The scenario file (TOML).
        file: PathBuf,
        /// How many seeds from --first (e.g. 100), or an inclusive range of seeds (e.g. 1..200).
        #[arg(long, default_value = "20", value_parser = sweep::parse_seeds)]
        seeds: sweep::Seeds,
        /// The first seed when --seeds is a count [default: 1].
        #[arg(long)]
        first: Option<u64>,
        /// Run only shard K of N (K from 1 to N): the i-th seed of the range (from 0) goes to
        /// shard i % N + 1. Merge the shards' sweep.json files with `merge`.
        #[arg(long, value_parser = sweep::parse_shard)]
        shard: Option<crate::report::sweep::Shard>,
        /// Seeds run at once, each on its own thread (default: the machine's cores).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
        jobs: Option<u64>,
        /// Write sweep.json and sweep.png here (default: reports/<scenario name>-sweep/).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Draw each seed's own fault schedule within the file's `[swarm]` bounds, judge it by
        /// the invariants, and write each failing seed out as a plain scenario file.
        #[arg(long)]
        swarm: bool,
        /// No progress lines.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Join the sweep.json files of a sweep's shards into one report, as one sweep would have
    /// written it.
    Merge {
        /// sweep.json files, or folders to search for them (at any depth).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Write the merged sweep.json and sweep.png here (default:
        /// reports/<scenario name>-merged/).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// (Internal) Run one seed of a scenario and print its result as JSON: how `sweep` runs
    /// each seed in a process of its own.
    #[command(name = "sweep-seed", hide = true)]
    SweepSeed {
        /// The scenario file (TOML).
        file: PathBuf,
        /// The seed.
        seed: u64,
        /// Run the fault schedule drawn for the seed.
        #[arg(long)]
        swarm: bool,
    },
    /// Serve a scenario's services and gateway on this machine's real network (127.0.0.1).
    Serve {
        /// The scenario file (TOML): its services and routes are served; loads and faults are not.
        file: PathBuf,
        /// Where the gateway listens (port 0: any free port, printed at start).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Stop after this long (e.g. "30s"); default: until interrupted.
        #[arg(long = "for", value_parser = parse_duration_arg)]
        run_for: Option<std::time::Duration>,
        /// A file whose contents (at least 16 bytes) are the deployment's key: only peers that
        /// hold it reach a service port. Default: a fresh key from the OS, for this process only.
        #[arg(long = "key-file")]
        key_file: Option<PathBuf>,
        /// Keep every database and the bus in files in this directory, fsynced before a write
        /// is acknowledged and replayed at the next start. Default: in memory.
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Shrink a failing scenario: drop faults, shorten the run, lower the load, while the same
    /// assertion or invariant still fails; write the smallest file found.
    Shrink {
        /// The failing scenario file (e.g. one a swarm sweep wrote).
        file: PathBuf,
        /// The seed it fails at (default: the file's).
        #[arg(long, value_parser = clap::value_parser!(u64).range(0..=i64::MAX as u64))]
        seed: Option<u64>,
        /// The failure to keep: `invariant NAME` or `assert THAT [SCOPE, WINDOW]`, as sweep.json
        /// and `shrink` print them (default: the run's first).
        #[arg(long)]
        failure: Option<String>,
        /// Most runs.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        max_runs: u32,
        /// Where to write the shrunk file (default: reports/<name>-shrunk.toml).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Find the highest rate of a load at which every assertion and invariant holds; with
    /// two files (a policy on and off), both side by side. Its assertions must only get harder
    /// as the rate rises: a lower bound such as `goodput > 1400/s` is refused.
    Capacity {
        /// The scenario file(s).
        #[arg(required = true, num_args = 1..=8)]
        files: Vec<PathBuf>,
        /// The load whose rate is searched.
        #[arg(long)]
        load: String,
        /// How close the answer is to the lowest failing rate, in percent (above 0, below 100).
        #[arg(long, default_value_t = 2.0, value_parser = parse_percent)]
        precision: f64,
        /// Most probes per file.
        #[arg(long, default_value_t = crate::tunnel::capacity::DEFAULT_MAX_PROBES, value_parser = clap::value_parser!(u32).range(2..=1000))]
        max_probes: u32,
        /// Where to write capacity.json and capacity.png (default: reports/<name>-capacity/).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Validate scenario files without running them.
    Check {
        /// The scenario files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List the scenarios in a folder with their descriptions.
    List {
        /// The folder (default: scenarios/).
        #[arg(default_value = "scenarios")]
        dir: PathBuf,
    },
    /// Compare two reports side by side (for example a policy on and off).
    Compare {
        /// The first report folder.
        a: PathBuf,
        /// The second report folder.
        b: PathBuf,
        /// Where to write compare.html and compare.png (default: the second folder).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// The `windtunnel` command with the example systems registered.
pub fn main() -> ExitCode {
    main_with(crate::services::systems())
}

/// The `windtunnel` command with `systems` registered: a crate with services of its own makes
/// its own `windtunnel` binary with this one line (see `examples/quorum/main.rs`).
pub fn main_with(systems: Vec<Arc<dyn System>>) -> ExitCode {
    let args = Args::parse();
    let sabotage = match crate::system::sabotage::from_env() {
        Ok(on) => on,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    if !sabotage.is_empty() {
        if matches!(args.command, Command::Serve { .. }) {
            eprintln!(
                "error: {} is set: serve never runs deliberately broken services",
                crate::system::sabotage::SABOTAGE_VAR
            );
            return ExitCode::from(EXIT_INVALID);
        }
        eprintln!(
            "warning: {} is set: the example systems have deliberate bugs",
            crate::system::sabotage::SABOTAGE_VAR
        );
    }
    let mut catalog = Catalog::new();
    for system in systems {
        if let Err(e) = catalog.add(system) {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    }
    ExitCode::from(match args.command {
        Command::Run {
            file,
            seed,
            out,
            quiet,
            check_determinism,
            every_tick,
            _skip_idle: _,
        } => {
            let stepping = if every_tick {
                crate::sim::Stepping::EveryTick
            } else {
                crate::sim::Stepping::SkipIdle
            };
            run(
                &catalog,
                &file,
                seed,
                out,
                quiet,
                check_determinism,
                stepping,
            )
        }
        Command::Sweep {
            file,
            seeds,
            first,
            shard,
            jobs,
            out,
            swarm,
            quiet,
        } => {
            let range = match (seeds, first) {
                (sweep::Seeds::Range(..), Some(_)) => {
                    eprintln!(
                        "error: --first cannot be combined with a range of seeds: write \
                         --seeds A..B alone"
                    );
                    return ExitCode::from(EXIT_INVALID);
                }
                (sweep::Seeds::Range(a, b), None) => (a, b),
                (sweep::Seeds::Count(n), first) => {
                    let first = first.unwrap_or(1);
                    match first
                        .checked_add(n - 1)
                        .filter(|last| *last <= i64::MAX as u64)
                    {
                        Some(last) => (first, last),
                        None => {
                            eprintln!(
                                "error: --first {first} --seeds {n}: seeds go up to {}",
                                i64::MAX
                            );
                            return ExitCode::from(EXIT_INVALID);
                        }
                    }
                }
            };
            let jobs = jobs.map_or_else(
                || std::thread::available_parallelism().map_or(1, |n| n.get()),
                |j| j as usize,
            );
            let plan = sweep::Plan {
                seeds: range,
                shard,
                jobs,
                swarm,
            };
            sweep::sweep(&catalog, &file, plan, out, quiet)
        }
        Command::Merge { paths, out } => sweep::merge(&paths, out),
        Command::SweepSeed { file, seed, swarm } => sweep::sweep_seed(&catalog, &file, seed, swarm),
        Command::Serve {
            file,
            listen,
            run_for,
            key_file,
            data,
        } => serve(
            &catalog,
            &file,
            &listen,
            run_for,
            key_file.as_deref(),
            data.as_deref(),
        ),
        Command::Shrink {
            file,
            seed,
            failure,
            max_runs,
            out,
        } => hunt::shrink(&catalog, &file, seed, failure, max_runs, out),
        Command::Capacity {
            files,
            load,
            precision,
            max_probes,
            out,
        } => hunt::capacity(
            &catalog,
            hunt::CapacityArgs {
                files,
                load,
                precision: precision / 100.0,
                max_probes,
                out,
            },
        ),
        Command::Check { files } => check(&catalog, &files),
        Command::List { dir } => list(&catalog, &dir),
        Command::Compare { a, b, out } => compare(&a, &b, out),
    })
}

/// This very program, as it was started: `windtunnel`, or a binary of a user's own with their
/// systems registered (the one that can replay their scenarios).
fn program() -> String {
    std::env::args()
        .next()
        .unwrap_or_else(|| "windtunnel".to_string())
}

/// Loads and validates a scenario against `catalog`, printing diagnostics on failure.
fn load(catalog: &Catalog, path: &Path) -> Result<Scenario, u8> {
    scenario::load_file(path, catalog).map_err(|e| {
        eprintln!("{e}");
        EXIT_INVALID
    })
}

fn run(
    catalog: &Catalog,
    file: &Path,
    seed: Option<u64>,
    out: Option<PathBuf>,
    quiet: bool,
    check_determinism: bool,
    stepping: crate::sim::Stepping,
) -> u8 {
    let mut scenario = match load(catalog, file) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if let Some(seed) = seed {
        scenario.seed = seed;
    }
    let out = out.unwrap_or_else(|| Path::new("reports").join(scenario.name.as_str()));
    match output::run_and_report(
        catalog,
        file,
        &scenario,
        &out,
        quiet,
        check_determinism,
        stepping,
    ) {
        Ok(true) => EXIT_OK,
        Ok(_) => EXIT_FAILED,
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_INVALID
        }
    }
}

/// A percentage above 0 and below 100.
fn parse_percent(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("`{text}` is not a percentage such as 2 or 0.5"))?;
    if value > 0.0 && value < 100.0 {
        Ok(value)
    } else {
        Err(format!(
            "`{text}`: expected a percentage above 0 and below 100"
        ))
    }
}

fn parse_duration_arg(text: &str) -> Result<std::time::Duration, String> {
    crate::units::parse_duration(text).map_err(|e| e.to_string())
}

fn serve(
    catalog: &Catalog,
    file: &Path,
    listen: &str,
    run_for: Option<std::time::Duration>,
    key_file: Option<&Path>,
    data: Option<&Path>,
) -> u8 {
    let scenario = match load(catalog, file) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let key = match crate::serve::deployment_key(key_file) {
        Ok(key) => key,
        Err(e) => {
            eprintln!("error: --key-file: {e}");
            return EXIT_INVALID;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return EXIT_INVALID;
        }
    };
    let result = runtime.block_on(async {
        let serving = crate::serve::serve(&scenario, catalog, listen, key, data, |served| {
            let (services, routes) = (scenario.services.len(), scenario.routes.len());
            say!(
                "listening on http://{} ({services} service{}, {routes} route{})",
                served.gateway,
                if services == 1 { "" } else { "s" },
                if routes == 1 { "" } else { "s" },
            );
            let keyed = if key_file.is_some() {
                "holders of the key in --key-file"
            } else {
                "this process (its key is fresh and never leaves it)"
            };
            let n = served.instances.len();
            say!(
                "{n} service port{}, open only to {keyed}:",
                if n == 1 { "" } else { "s" }
            );
            for (id, addr) in &served.instances {
                say!("  {id} {addr}");
            }
            match data {
                Some(dir) => say!(
                    "databases and the bus in {}, fsynced before each acknowledgement",
                    dir.display()
                ),
                None => say!("databases and the bus in memory (--data DIR keeps them)"),
            }
        });
        match run_for {
            Some(d) => tokio::time::timeout(d, serving).await.unwrap_or(Ok(())),
            None => serving.await,
        }
    });
    match result {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_INVALID
        }
    }
}

fn check(catalog: &Catalog, files: &[PathBuf]) -> u8 {
    let mut worst = EXIT_OK;
    for f in files {
        match load(catalog, f) {
            Ok(s) => {
                say!(
                    "{}: ok ({}, {} services, {} loads, {} faults, {} assertions)",
                    f.display(),
                    s.name,
                    s.services.len(),
                    s.loads.len(),
                    s.faults.len(),
                    s.assertions.len()
                );
                if let Some(heal) = &s.heal {
                    let cut: Vec<String> = heal.cut.iter().map(|i| format!("#{}", i + 1)).collect();
                    say!(
                        "  heal at {}: every fault lifted; cut at it: {}",
                        crate::units::format_duration(heal.at),
                        if cut.is_empty() {
                            "none (all end before)".to_string()
                        } else {
                            format!("fault {}", cut.join(", "))
                        }
                    );
                }
                if let Some(guard) = crate::tunnel::gateway_guard(&s, catalog) {
                    say!("  {guard}");
                }
                say!("  {}", crate::tunnel::estimate(&s, catalog));
            }
            Err(code) => worst = worst.max(code),
        }
    }
    worst
}

fn list(catalog: &Catalog, dir: &Path) -> u8 {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", dir.display());
            return EXIT_INVALID;
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut worst = EXIT_OK;
    for f in files {
        match scenario::load_file(&f, catalog) {
            Ok(s) => say!("{:<40} {}", f.display(), s.description),
            Err(e) => {
                say!(
                    "{:<40} INVALID: {}",
                    f.display(),
                    e.to_string().lines().next().unwrap_or("")
                );
                worst = EXIT_INVALID;
            }
        }
    }
    worst
}

fn compare(a: &Path, b: &Path, out: Option<PathBuf>) -> u8 {
    let out = out.unwrap_or_else(|| b.to_path_buf());
    match crate::report::compare::compare(a, b, &out) {
        Ok(report) => {
            say!("{}", report.table);
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_INVALID
        }
    }
}
