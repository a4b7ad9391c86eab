//! windtunnel against its bare-turmoil twin: the same topology and load, run back to back, as a
//! ratio of wall times. Also the speed of a nearly idle hour.
//!
//! The twin is the baseline scenario (scenarios/baseline.toml) with no framework: turmoil
//! 0.7.2 and hand-written 64-byte TCP request/response. A client host sends `rate` requests a
//! second, evenly spaced, to one of 2 api hosts; each calls one of 2 auth hosts and then one of
//! 4 webhook hosts, which calls the db host. Service times are the scenario's means, fixed:
//! 1 ms at api, auth and db, 5 ms at a webhook; links take 1-4 ms (turmoil's own latency).
//! Every host is stepped every 1 ms tick, as windtunnel's hosts are. It is the engine's
//! ceiling for a scenario of that shape: what windtunnel adds (the framework, the network
//! model, the recorder, faults, checks) is the difference.
//!
//! Usage: `cargo bench --bench twin [-- [--pairs N] [RATE SIM_SECONDS]]`. With no rate it
//! measures 200/s and 2,000/s for 60 s each, then the idle hour. windtunnel runs as `run` does,
//! skipping idle time (a loaded run has none to skip). Each measurement is taken `N` times (3
//! unless told), the twin and windtunnel alternating which goes first, since a shared machine's
//! wall times swing from one run to the next. Both first run a second of simulated time that is
//! not counted: a process's first run pays for its cold caches and fresh heap (a twin that ran
//! first took 0.84 s where it takes 0.5 s). Prints one line per pair, then the median and
//! range; the ratio is the twin's wall time over windtunnel's (1.0: as fast as bare turmoil).
//! A word that is not a number (a filter `cargo bench FILTER` passes to every bench) runs this
//! bench only if it is part of "twin".

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::net::{TcpListener, TcpStream};
use windtunnel::report::sweep::Spread;
use windtunnel::tunnel::Tunnel;

#[path = "common/baseline.rs"]
mod baseline_file;
use baseline_file::baseline;

/// Idle connections to one host, reused by its callers.
type Pool = Rc<RefCell<Vec<TcpStream>>>;

/// One 64-byte request and its 64-byte answer over a pooled connection to `addr`.
async fn call(pool: &Pool, addr: &str) -> std::io::Result<()> {
    let idle = pool.borrow_mut().pop();
    let mut stream = match idle {
        Some(s) => s,
        None => TcpStream::connect(addr).await?,
    };
    stream.write_all(&[7u8; 64]).await?;
    let mut answer = [0u8; 64];
    stream.read_exact(&mut answer).await?;
    pool.borrow_mut().push(stream);
    Ok(())
}

/// A host that answers each request after `work`, having first called one host of each tier
/// in `tiers` in turn (round robin within a tier).
fn serve(sim: &mut turmoil::Sim<'_>, name: &str, tiers: Vec<Vec<String>>, work: Duration) {
    let tiers = Rc::new(tiers);
    sim.host(name, move || {
        let tiers = tiers.clone();
        async move {
            let listener = TcpListener::bind("0.0.0.0:9000").await?;
            let pools: Rc<Vec<Vec<Pool>>> = Rc::new(
                tiers
                    .iter()
                    .map(|t| t.iter().map(|_| Pool::default()).collect())
                    .collect(),
            );
            let next = Rc::new(RefCell::new(0usize));
            loop {
                let (mut stream, _) = listener.accept().await?;
                let (tiers, pools, next) = (tiers.clone(), pools.clone(), next.clone());
                tokio::task::spawn_local(async move {
                    let mut request = [0u8; 64];
                    while stream.read_exact(&mut request).await.is_ok() {
                        for (tier, hosts) in tiers.iter().enumerate() {
                            let pick = {
                                let mut n = next.borrow_mut();
                                *n += 1;
                                *n % hosts.len()
                            };
                            let addr = format!("{}:9000", hosts[pick]);
                            if call(&pools[tier][pick], &addr).await.is_err() {
                                return;
                            }
                        }
                        tokio::time::sleep(work).await;
                        if stream.write_all(&request).await.is_err() {
                            return;
                        }
                    }
                });
            }
        }
    });
}

/// Runs the twin; returns the wall time and the requests answered.
fn twin(rate: u64, secs: u64) -> (Duration, u64) {
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(secs + 30))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(4))
        .rng_seed(1)
        .tcp_capacity(4096)
        .build();
    let names = |prefix: &str, n: usize| -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    };
    let (apis, auths, webhooks) = (names("api", 2), names("auth", 2), names("webhook", 4));
    let ms = Duration::from_millis;
    serve(&mut sim, "db", vec![], ms(1));
    for w in &webhooks {
        serve(&mut sim, w, vec![vec!["db".to_string()]], ms(5));
    }
    for a in &auths {
        serve(&mut sim, a, vec![], ms(1));
    }
    for a in &apis {
        serve(&mut sim, a, vec![auths.clone(), webhooks.clone()], ms(1));
    }
    let answered = Rc::new(RefCell::new(0u64));
    let counter = answered.clone();
    sim.client("client", async move {
        let pools: Vec<Pool> = apis.iter().map(|_| Pool::default()).collect();
        let gap = Duration::from_nanos(1_000_000_000 / rate.max(1));
        let start = tokio::time::Instant::now();
        let mut calls = Vec::new();
        for i in 0..rate * secs {
            tokio::time::sleep_until(start + gap * i as u32).await;
            let k = i as usize % apis.len();
            let (pool, addr, counter) = (
                pools[k].clone(),
                format!("{}:9000", apis[k]),
                counter.clone(),
            );
            calls.push(tokio::task::spawn_local(async move {
                if call(&pool, &addr).await.is_ok() {
                    *counter.borrow_mut() += 1;
                }
            }));
        }
        for c in calls {
            let _ = c.await;
        }
        Ok(())
    });
    let started = Instant::now();
    if let Err(e) = sim.run() {
        eprintln!("the twin failed: {e}");
    }
    let wall = started.elapsed();
    let n = *answered.borrow();
    (wall, n)
}

/// Runs windtunnel's baseline at `rate` for `secs`; returns the simulation's wall time (the
/// report is not written) and the requests sent.
fn windtunnel_run(rate: &str, duration: &str) -> Option<(Duration, u64, f64)> {
    let text = baseline(rate, duration);
    let tunnel = Tunnel::toml(&text, "baseline.toml").seed_from_env(false);
    let outcome = match tunnel.run() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("windtunnel failed: {e}");
            return None;
        }
    };
    let s = outcome.summary();
    let sent = s.loads.values().map(|l| l.sent).sum();
    Some((Duration::from_secs_f64(s.wall_seconds), sent, s.speedup))
}

fn compare(rate: u64, secs: u64, pairs: usize) {
    let (rate_s, secs_s) = (format!("{rate}/s"), format!("{secs}s"));
    let mut ratios = Vec::new();
    for pair in 1..=pairs {
        // Which side goes first alternates, so neither always runs on a machine the other
        // just warmed (or left busy).
        let (bare, ours) = if pair % 2 == 1 {
            let bare = twin(rate, secs);
            (bare, windtunnel_run(&rate_s, &secs_s))
        } else {
            let ours = windtunnel_run(&rate_s, &secs_s);
            (twin(rate, secs), ours)
        };
        let ((bare, answered), Some((ours, sent, _))) = (bare, ours) else {
            break;
        };
        let ratio = bare.as_secs_f64() / ours.as_secs_f64().max(1e-9);
        ratios.push(ratio);
        println!(
            "{rate}/s for {secs} s, pair {pair}/{pairs}: bare twin {:.2} s ({answered} answered), \
             windtunnel {:.2} s ({sent} sent): ratio {ratio:.2}",
            bare.as_secs_f64(),
            ours.as_secs_f64(),
        );
    }
    let n = ratios.len();
    let Some(Spread {
        median, min, max, ..
    }) = Spread::of(&ratios)
    else {
        return;
    };
    println!("{rate}/s for {secs} s: ratio {median:.2}, the median of {n} ({min:.2} to {max:.2})");
}

/// The allocator `windtunnel` installs, for every run here alike (the bare runs spawn tasks
/// too), so the ratios compare the same allocator (src/alloc.rs).
#[global_allocator]
static ALLOC: windtunnel::alloc::MallocAligned = windtunnel::alloc::MallocAligned;

/// What the command line asked for.
struct Arguments {
    /// Pairs per measurement.
    pairs: usize,
    /// One rate and length to measure, instead of the usual three measurements.
    only: Option<(u64, u64)>,
    /// A filter `cargo bench FILTER` passed on to every bench: this one runs only if its name
    /// holds it.
    filter: Option<String>,
}

fn arguments() -> Result<Arguments, String> {
    let mut pairs = 3;
    let mut filter = None;
    let mut numbers = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--pairs" {
            let value = args.next().unwrap_or_default();
            pairs = match value.parse() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(format!(
                        "--pairs: expected a whole number above 0, found {value:?}"
                    ))
                }
            };
        } else if let Ok(n) = arg.parse::<u64>() {
            numbers.push(n);
        } else if !arg.starts_with('-') {
            filter = Some(arg);
        } else if arg != "--bench" {
            return Err(format!(
                "unexpected argument {arg:?}: usage: twin [--pairs N] [RATE SIM_SECONDS]"
            ));
        }
    }
    let only = match numbers[..] {
        [] => None,
        [rate, secs] => Some((rate, secs)),
        _ => {
            return Err(
                "expected a rate and a length in seconds (RATE SIM_SECONDS), or neither"
                    .to_string(),
            )
        }
    };
    Ok(Arguments {
        pairs,
        only,
        filter,
    })
}

fn main() {
    let Arguments {
        pairs,
        only,
        filter,
    } = match arguments() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("twin: {e}");
            std::process::exit(2);
        }
    };
    if filter.is_some_and(|f| !"twin".contains(f.as_str())) {
        return;
    }
    // Warm-up, not counted.
    let _ = twin(200, 1);
    let _ = windtunnel_run("200/s", "1s");
    if let Some((rate, secs)) = only {
        compare(rate, secs, pairs);
        return;
    }
    compare(200, 60, pairs);
    compare(2000, 60, pairs);
    let mut speedups = Vec::new();
    for pair in 1..=pairs {
        let Some((wall, sent, speedup)) = windtunnel_run("0.1/s", "1h") else {
            break;
        };
        speedups.push(speedup);
        println!(
            "0.1/s for 1 h, skipping idle time, run {pair}/{pairs}: windtunnel {:.2} s ({sent} \
             sent): {speedup:.0}x real time",
            wall.as_secs_f64()
        );
    }
    let n = speedups.len();
    let Some(Spread {
        median, min, max, ..
    }) = Spread::of(&speedups)
    else {
        return;
    };
    println!("0.1/s for 1 h: {median:.0}x real time, the median of {n} ({min:.0}x to {max:.0}x)");
}
