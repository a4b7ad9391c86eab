//! Running a scenario for the command line: progress, the report folder, the terminal summary.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use crate::report::summary::Summary;
use crate::scenario::Scenario;
use crate::system::Catalog;
use crate::tunnel::{Determinism, Progress, ReportError, Status, Tunnel, TunnelError};

/// Why a run produced no report.
#[derive(Debug, thiserror::Error)]
pub enum RunReportError {
    /// The run could not be carried out.
    #[error(transparent)]
    Run(#[from] TunnelError),
    /// The report could not be written.
    #[error(transparent)]
    Write(#[from] ReportError),
}

/// Progress: a bar on a terminal, plain lines (every tenth of the run) when not a terminal,
/// nothing when quiet.
struct Bar {
    bar: Option<indicatif::ProgressBar>,
    next_line: Duration,
    quiet: bool,
}

impl Bar {
    fn new(total: Duration, quiet: bool) -> Bar {
        let show = !quiet && std::io::stderr().is_terminal();
        let bar = show.then(|| {
            let b = indicatif::ProgressBar::new(total.as_secs().max(1));
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} simulated {pos}/{len} s [{bar:30}] {msg} ({elapsed} wall)",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        Bar {
            bar,
            next_line: Duration::ZERO,
            quiet,
        }
    }
}

impl Progress for Bar {
    fn tick(&mut self, s: Status) {
        let counts = format!("{} requests, {} failed", s.requests, s.failed);
        match &self.bar {
            Some(b) => {
                b.set_position(s.done.as_secs());
                b.set_message(counts);
            }
            None if !self.quiet && s.done >= self.next_line => {
                let (done, total) = (s.done.as_secs_f64(), s.total.as_secs_f64());
                eprintln!("  {done:.0}/{total:.0} s simulated, {counts}");
                self.next_line = if s.done >= s.total {
                    Duration::MAX
                } else {
                    (s.done + s.total / 10).min(s.total)
                };
            }
            None => {}
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Runs `scenario` (read from `file`) with `catalog`'s systems, writes its report into `out`,
/// prints the terminal summary. With `check_determinism`, runs it again at the same seed and
/// prints whether the event logs are identical (the report is the first run's). Returns
/// whether everything passed.
pub fn run_and_report(
    catalog: &Catalog,
    file: &Path,
    scenario: &Scenario,
    out: &Path,
    quiet: bool,
    check_determinism: bool,
    stepping: crate::sim::Stepping,
) -> Result<bool, RunReportError> {
    if !quiet {
        eprintln!(
            "running {} (seed {}, {} s simulated)",
            scenario.name,
            scenario.seed,
            scenario.duration.as_secs_f64()
        );
    }
    let cost = crate::tunnel::estimate(scenario, catalog);
    if cost.wall > crate::tunnel::cost::WARN_ABOVE {
        // Said even with -q: a run of hours should not start unannounced.
        eprintln!("warning: this run may take hours ({cost}); Ctrl-C stops it");
    }
    let (outcome, determinism) = {
        let mut bar = Bar::new(scenario.duration, quiet);
        let tunnel = Tunnel::scenario(scenario.clone())
            .with_catalog(catalog.clone())
            .seed_from_env(false)
            .stepping(stepping);
        if check_determinism {
            if !quiet {
                eprintln!(
                    "checking determinism: the run is done twice (a third time if they differ)"
                );
            }
            let checked = tunnel.check_determinism_with(&mut bar)?;
            (checked.outcome, Some(checked.determinism))
        } else {
            (tunnel.run_with(&mut bar)?, None)
        }
    };
    outcome.write_report(out)?;
    print_summary(outcome.summary(), determinism.as_ref(), out, quiet);
    let deterministic = determinism.as_ref().is_none_or(Determinism::passed);
    if !outcome.passed() || !deterministic {
        say!(
            "  replay: {} run {} --seed {}{}",
            super::program(),
            file.display(),
            outcome.seed(),
            if deterministic {
                ""
            } else {
                " --check-determinism"
            }
        );
    }
    Ok(outcome.passed() && deterministic)
}

fn print_summary(s: &Summary, determinism: Option<&Determinism>, out: &Path, quiet: bool) {
    if !quiet {
        say_raw!("{}", crate::report::text::figures(s));
    }
    say_raw!("{}", crate::report::text::verdicts(s));
    if let Some(d) = determinism {
        say!("  {d}");
    }
    if !quiet {
        say!("  report: {}", out.join("index.html").display());
    }
}
