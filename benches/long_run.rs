//! How much memory a long run holds: 20 endpoints on 10 services, each endpoint under a load of
//! its own at 10 requests/s (200/s in all), for 24 hours by default.
//!
//! A real simulation of 24 hours takes over an hour, so by default the bench drives the run's
//! [`Recorder`] directly, through the public API, with what such a run feeds it: for every
//! request, the events of the edge call, its server, and (for a `read`) the nested call to the
//! next service's `write`, then the load result; latencies drawn from the scenario's
//! distributions, one request in 500 failed. The recorder's buckets, series and traces see the
//! same numbers of records per series and bucket as the real run would. It then builds the
//! summary and writes the report (summary.json, plots, index.html) as `windtunnel run` does.
//! `--sim` runs the real simulation instead, for as long as asked.
//!
//! Prints this process's resident set (VmRSS) at every simulated hour (minute, for the
//! baseline), its growth per hour (minute), and the peak (VmHWM) after the run, the summary and
//! the report (Linux; 0 elsewhere).
//!
//! Usage:
//! - `cargo bench --bench long_run`: the recorder, 24 h;
//! - `cargo bench --bench long_run -- --hours 6`: the recorder, 6 h;
//! - `cargo bench --bench long_run -- --sim 4`: the real simulation, 4 h (about 20 min);
//! - `cargo bench --bench long_run -- --toml 24`: print the scenario file, 24 h;
//! - `cargo bench --bench long_run -- --baseline 10`: the real simulation of the baseline
//!   scenario at 2,000 requests/s for 10 minutes, VmRSS at every simulated minute. What a
//!   request leaves behind shows here within minutes: a list of finished tasks that grew with
//!   the run (docs/figures.md, the twenty-eighth session) took the 60 s run from 16.7 MB to
//!   19.5 MB and the 600 s run to 28.0 MB.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, LogNormal};
use windtunnel::framework::ids::{RequestId, SpanId, TraceId};
use windtunnel::framework::{Event, EventKind, EventSink};
use windtunnel::metrics::{Outcome, Recorder, RecorderConfig};
use windtunnel::sim::{Progress, Status};
use windtunnel::tunnel::Tunnel;

#[path = "common/baseline.rs"]
mod baseline_file;
use baseline_file::baseline;

/// Services; each has a `read` (which calls the next service's `write`) and a `write`.
const SERVICES: usize = 10;
/// Requests per second of each endpoint's load.
const RATE: f64 = 10.0;
/// Instances per service.
const INSTANCES: usize = 2;
/// The loads' deadline.
const DEADLINE: Duration = Duration::from_millis(300);

/// The scenario, `hours` long.
fn scenario_toml(hours: u64) -> String {
    let mut out = format!(
        "name = \"long-run\"\n\
         description = \"20 endpoints and 20 loads at 200 requests/s in all, for {hours} h.\"\n\
         seed = 1\n\
         duration = \"{hours}h\"\n\n\
         [network]\n\
         latency = {{ dist = \"lognormal\", p50 = \"1ms\", p99 = \"4ms\" }}\n"
    );
    for i in 0..SERVICES {
        let next = (i + 1) % SERVICES;
        out += &format!(
            "\n[[service]]\nname = \"service.s{i}\"\ninstances = {INSTANCES}\nnodes = 1\n\
             workers = 16\nqueue = 64\n\
             \x20 [[service.endpoint]]\n  name = \"read\"\n\
             \x20 time = {{ dist = \"lognormal\", p50 = \"2ms\", p99 = \"20ms\" }}\n\
             \x20 calls = [{{ to = \"service.s{next}.write\", timeout = \"100ms\" }}]\n\
             \x20 [[service.endpoint]]\n  name = \"write\"\n\
             \x20 time = {{ dist = \"exponential\", mean = \"3ms\" }}\n"
        );
    }
    for i in 0..SERVICES {
        for endpoint in ["read", "write"] {
            out += &format!(
                "\n[[load]]\nname = \"l{i}-{endpoint}\"\nrpc = \"service.s{i}.{endpoint}\"\n\
                 rate = \"{RATE}/s\"\narrival = \"poisson\"\ndeadline = \"{}ms\"\n",
                DEADLINE.as_millis()
            );
        }
    }
    out += "\n[[assert]]\nthat = \"p99(latency) < 100ms\"\n\n\
            [[assert]]\nthat = \"error_rate < 1%\"\n";
    out
}

/// A line of /proc/self/status, in MB (0 where there is none).
fn status_mb(key: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0.0, |kb| kb as f64 / 1024.0)
}

/// Resident set at each simulated hour (or minute), printed as it goes.
struct Sampled {
    /// Simulated seconds between samples.
    every: u64,
    /// What one interval is called: "hour" or "minute".
    unit: &'static str,
    rss: Vec<f64>,
}

impl Sampled {
    /// A sample every `every` simulated seconds, each interval called `unit`.
    fn every(every: u64, unit: &'static str) -> Sampled {
        Sampled {
            every,
            unit,
            rss: Vec::new(),
        }
    }

    fn sample(&mut self, n: usize) {
        let rss = status_mb("VmRSS:");
        let delta = self.rss.last().map_or(0.0, |last| rss - last);
        let unit = self.unit;
        println!(
            "  {n:>3} {}: VmRSS {rss:7.1} MB ({delta:+6.1} MB in the {unit}), VmHWM {:7.1} MB",
            &unit[..1],
            status_mb("VmHWM:")
        );
        self.rss.push(rss);
    }

    fn report(&self) {
        if let (Some(first), Some(last)) = (self.rss.first(), self.rss.last()) {
            let intervals = self.rss.len().saturating_sub(1).max(1) as f64;
            println!(
                "growth from {unit} 1 to {unit} {}: {:.2} MB per simulated {unit}",
                self.rss.len(),
                (last - first) / intervals,
                unit = self.unit
            );
        }
    }
}

impl Progress for Sampled {
    fn tick(&mut self, status: Status) {
        let n = (status.done.as_secs() / self.every) as usize;
        if n > self.rss.len() {
            self.sample(n);
        }
    }
}

/// Ids for one call.
struct Call<'a> {
    caller: &'a Arc<str>,
    callee: &'a Arc<str>,
    service: &'a Arc<str>,
    endpoint: &'a Arc<str>,
    trace: u64,
    span: u64,
    parent: Option<u64>,
    deadline: Duration,
}

impl Call<'_> {
    fn event(&self, at: Duration, kind: EventKind, server: bool) -> Event {
        let (instance, peer) = if server {
            (self.callee, self.caller)
        } else {
            (self.caller, self.callee)
        };
        Event {
            at,
            kind,
            instance: instance.clone(),
            peer: peer.clone(),
            service: self.service.clone(),
            endpoint: self.endpoint.clone(),
            request_id: RequestId(self.span),
            parent_request_id: self.parent.map(RequestId),
            trace_id: TraceId(self.trace),
            span_id: SpanId(self.span),
            parent_span_id: self.parent.map(SpanId),
            deadline: Some(self.deadline),
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// Feeds a recorder what a run of `hours` would, then finishes it and writes the report.
fn recorder_run(hours: u64) -> Result<(), Box<dyn std::error::Error>> {
    let scenario = Tunnel::toml(&scenario_toml(hours), "long-run.toml").check()?;
    let run = scenario.duration;
    // As the simulation buckets a run: 1 s, or wider so there are at most 3,600.
    let width = Duration::from_secs(run.as_secs().div_ceil(3600).max(1));
    let name = |s: String| -> Arc<str> { Arc::from(s.as_str()) };
    let services: Vec<Arc<str>> = (0..SERVICES)
        .map(|i| name(format!("service.s{i}")))
        .collect();
    let instances: Vec<Vec<Arc<str>>> = services
        .iter()
        .map(|s| (0..INSTANCES).map(|k| name(format!("{s}[{k}]"))).collect())
        .collect();
    let recorder = Recorder::new(RecorderConfig {
        run,
        bucket_width: width,
        hop_allowance: Duration::from_millis(10),
        instances: instances
            .iter()
            .flatten()
            .map(|i| (i.to_string(), 16))
            .collect(),
        authenticator: None,
    });
    let (read, write): (Arc<str>, Arc<str>) = ("read".into(), "write".into());
    let client: Arc<str> = "client-0".into();
    let loads: Vec<(usize, bool, String)> = (0..SERVICES)
        .flat_map(|i| [(i, true), (i, false)])
        .map(|(i, r)| (i, r, format!("l{i}-{}", if r { "read" } else { "write" })))
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let hop = LogNormal::new((0.001f64).ln(), 4f64.ln() / 2.326)?;
    let read_time = LogNormal::new((0.002f64).ln(), 10f64.ln() / 2.326)?;
    let write_time = Exp::new(1.0 / 0.003)?;
    let gap = Exp::new(RATE)?;
    let mut next: Vec<f64> = loads.iter().map(|_| gap.sample(&mut rng)).collect();
    let mut ids = 0u64;
    let mut hourly = Sampled::every(3600, "hour");
    let started = Instant::now();
    println!(
        "recorder, {hours} h at {} requests/s over {} loads, buckets of {} s:",
        RATE * loads.len() as f64,
        loads.len(),
        width.as_secs()
    );
    let mut arrivals: Vec<(f64, usize)> = Vec::new();
    for second in 0..run.as_secs() {
        let until = (second + 1) as f64;
        arrivals.clear();
        for (l, at) in next.iter_mut().enumerate() {
            while *at < until {
                arrivals.push((*at, l));
                *at += gap.sample(&mut rng);
            }
        }
        arrivals.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for &(t, l) in &arrivals {
            let (s, is_read, load) = (&loads[l].0, loads[l].1, &loads[l].2);
            ids += 1;
            let (trace, span) = (ids, ids << 1);
            let callee = &instances[*s][(ids % INSTANCES as u64) as usize];
            let edge = Call {
                caller: &client,
                callee,
                service: &services[*s],
                endpoint: if is_read { &read } else { &write },
                trace,
                span,
                parent: None,
                deadline: secs(t) + DEADLINE,
            };
            let failed = rng.random_range(0..500) == 0;
            let arrived = t + hop.sample(&mut rng);
            recorder.emit(edge.event(secs(t), EventKind::CallSent, false));
            recorder.emit(edge.event(secs(arrived), EventKind::RequestReceived, true));
            recorder.emit(edge.event(secs(arrived), EventKind::HandlerStarted, true));
            let mut done = arrived;
            if is_read {
                done += read_time.sample(&mut rng);
                let n = (*s + 1) % SERVICES;
                let nested = Call {
                    caller: callee,
                    callee: &instances[n][(ids / 2 % INSTANCES as u64) as usize],
                    service: &services[n],
                    endpoint: &write,
                    trace,
                    span: span + 1,
                    parent: Some(span),
                    deadline: secs(done) + Duration::from_millis(100),
                };
                let sent = done;
                let at = sent + hop.sample(&mut rng);
                let ended = at + write_time.sample(&mut rng);
                done = ended + hop.sample(&mut rng);
                let ok = EventKind::CallAnswered { error: None };
                recorder.emit(nested.event(secs(sent), EventKind::CallSent, false));
                recorder.emit(nested.event(secs(at), EventKind::RequestReceived, true));
                recorder.emit(nested.event(secs(at), EventKind::HandlerStarted, true));
                let end = EventKind::HandlerEnded { error: None };
                recorder.emit(nested.event(secs(ended), end, true));
                recorder.emit(nested.event(secs(ended), EventKind::ResponseSent, true));
                recorder.emit(nested.event(secs(done), ok, false));
            } else {
                done += write_time.sample(&mut rng);
            }
            let error: Option<Arc<str>> = failed.then(|| "unavailable".into());
            let end = EventKind::HandlerEnded {
                error: error.clone(),
            };
            recorder.emit(edge.event(secs(done), end, true));
            recorder.emit(edge.event(secs(done), EventKind::ResponseSent, true));
            let answered = done + hop.sample(&mut rng);
            let kind = EventKind::CallAnswered {
                error: error.clone(),
            };
            recorder.emit(edge.event(secs(answered), kind, false));
            let outcome = error.map_or(Outcome::Ok, |e| Outcome::Error(e.to_string()));
            recorder.record_load(load, secs(t), secs(answered), outcome, DEADLINE);
        }
        if (second + 1) % 3600 == 0 {
            hourly.sample(((second + 1) / 3600) as usize);
        }
    }
    hourly.report();
    println!(
        "fed {ids} requests in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let measurements = recorder.finish(run);
    println!("after finish:  VmHWM {:7.1} MB", status_mb("VmHWM:"));
    let summary = windtunnel::report::summary::build(&scenario, &measurements, started.elapsed());
    println!("after summary: VmHWM {:7.1} MB", status_mb("VmHWM:"));
    let dir = std::env::temp_dir().join("windtunnel-long-run");
    windtunnel::report::write_report(&summary, &measurements, &dir).map_err(|e| e.to_string())?;
    println!(
        "after report:  VmHWM {:7.1} MB (report in {})",
        status_mb("VmHWM:"),
        dir.display()
    );
    Ok(())
}

/// Runs the real simulation for `hours`, then writes its report.
fn simulation(hours: u64) -> Result<(), Box<dyn std::error::Error>> {
    println!("simulation, {hours} h:");
    let started = Instant::now();
    let mut hourly = Sampled::every(3600, "hour");
    let outcome = Tunnel::toml(&scenario_toml(hours), "long-run.toml").run_with(&mut hourly)?;
    hourly.report();
    finish(&outcome, started, "windtunnel-long-run-sim")
}

/// Runs the baseline scenario at 2,000 requests/s for `minutes`, then writes its report.
fn baseline_run(minutes: u64) -> Result<(), Box<dyn std::error::Error>> {
    println!("the baseline at 2,000/s, {minutes} min:");
    let started = Instant::now();
    let mut sampled = Sampled::every(60, "minute");
    let text = baseline("2000/s", &format!("{minutes}m"));
    let outcome = Tunnel::toml(&text, "baseline.toml").run_with(&mut sampled)?;
    sampled.report();
    finish(&outcome, started, "windtunnel-long-run-baseline")
}

/// Prints the peak after a run and after its report, written to `dir` under the temporary
/// directory.
fn finish(
    outcome: &windtunnel::tunnel::Outcome,
    started: Instant,
    dir: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "simulated in {:.0} s; after run and summary: VmHWM {:7.1} MB",
        started.elapsed().as_secs_f64(),
        status_mb("VmHWM:")
    );
    let dir = std::env::temp_dir().join(dir);
    outcome.write_report(&dir)?;
    println!(
        "after report: VmHWM {:7.1} MB (report in {}); passed: {}",
        status_mb("VmHWM:"),
        dir.display(),
        outcome.passed()
    );
    Ok(())
}

/// The allocator `windtunnel` installs, so this measures what a run of the binary holds
/// (src/alloc.rs).
#[global_allocator]
static ALLOC: windtunnel::alloc::MallocAligned = windtunnel::alloc::MallocAligned;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| -> Option<u64> {
        let i = args.iter().position(|a| a == flag)?;
        args.get(i + 1)?.parse().ok()
    };
    if let Some(hours) = value("--toml") {
        print!("{}", scenario_toml(hours));
        return Ok(());
    }
    println!("at start: VmRSS {:.1} MB", status_mb("VmRSS:"));
    if let Some(minutes) = value("--baseline") {
        return baseline_run(minutes);
    }
    match value("--sim") {
        Some(hours) => simulation(hours),
        None => recorder_run(value("--hours").unwrap_or(24)),
    }
}
