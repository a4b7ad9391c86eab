//! Assertions: what must hold at the end of a run, such as "p99(latency) < 300ms" during a window.
//!
//! An assertion is written as text, `<metric> <op> <value>`, and parsed here into typed parts. The
//! bound's unit must fit the metric (a latency is compared with a duration, an error rate with a
//! ratio), so "p99(latency) < 5%" is an error in the file, not a surprise in the report. The harness
//! measures the metric and calls [`Assertion::holds`] with the value in the metric's [`MetricUnit`].

use std::fmt;
use std::time::Duration;

use crate::units::{format_duration, parse_duration, parse_plain_number, quote, Rate, Ratio};

use super::names::{EndpointRef, LoadName, RouteKey};

/// One thing that must hold: a metric, compared with a bound, over a scope and a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Assertion {
    /// The `that` text as written, for reports.
    pub text: String,
    /// What is measured.
    pub metric: Metric,
    /// How it is compared.
    pub op: Op,
    /// What it is compared with, in a unit that fits the metric.
    pub bound: Bound,
    /// Which requests count.
    pub scope: Scope,
    /// Which part of the run counts.
    pub window: Window,
}

/// A measured quantity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metric {
    /// A statistic of request latency, measured from each request's intended start.
    Latency(LatencyStat),
    /// Failed responses over requests sent.
    ErrorRate,
    /// Successful responses per second.
    Goodput,
    /// Requests sent.
    Sent,
    /// Successful responses.
    Ok,
    /// Requests that got no response by their deadline.
    Dropped,
    /// Failed responses.
    Errors,
    /// A check the harness computes (orphaned work, late work, lost writes...), by name; which
    /// names exist is the harness's business.
    Check(String),
    /// `count(<name>)`: the sum of a counter the run recorded (a business metric, or a
    /// mechanism's counter such as `hedge.sent`) over the window, whatever the scope; 0 when
    /// nothing recorded it.
    Count(String),
    /// `slower_than(<duration>)`: the share of answered requests that took longer.
    SlowerThan(Duration),
}

/// Which latency statistic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyStat {
    /// Median.
    P50,
    /// 90th percentile.
    P90,
    /// 99th percentile.
    P99,
    /// 99.9th percentile.
    P999,
    /// Largest.
    Max,
    /// Mean.
    Mean,
}

impl LatencyStat {
    /// Every statistic with its spelling in assertions.
    const ALL: [(LatencyStat, &'static str); 6] = [
        (LatencyStat::P50, "p50(latency)"),
        (LatencyStat::P90, "p90(latency)"),
        (LatencyStat::P99, "p99(latency)"),
        (LatencyStat::P999, "p999(latency)"),
        (LatencyStat::Max, "max(latency)"),
        (LatencyStat::Mean, "mean(latency)"),
    ];

    /// The quantile this statistic is, if it is one (0.5 for p50).
    pub fn quantile(self) -> Option<f64> {
        match self {
            LatencyStat::P50 => Some(0.5),
            LatencyStat::P90 => Some(0.9),
            LatencyStat::P99 => Some(0.99),
            LatencyStat::P999 => Some(0.999),
            LatencyStat::Max | LatencyStat::Mean => None,
        }
    }
}

/// The unit in which the harness reports an observed metric to [`Assertion::holds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricUnit {
    /// Latency, in milliseconds (as in summary.json's `latency_ms`).
    Milliseconds,
    /// A fraction in [0, 1].
    Fraction,
    /// Per second.
    PerSecond,
    /// A plain count or number.
    Count,
}

impl Metric {
    /// The unit of observed values and bounds for this metric.
    pub fn unit(&self) -> MetricUnit {
        match self {
            Metric::Latency(_) => MetricUnit::Milliseconds,
            Metric::ErrorRate | Metric::SlowerThan(_) => MetricUnit::Fraction,
            Metric::Goodput => MetricUnit::PerSecond,
            Metric::Sent
            | Metric::Ok
            | Metric::Dropped
            | Metric::Errors
            | Metric::Check(_)
            | Metric::Count(_) => MetricUnit::Count,
        }
    }

    /// Reads a metric name: a statistic, a count, or one of [`CHECK_NAMES`].
    fn parse(text: &str) -> Result<Metric, String> {
        if let Some((stat, _)) = LatencyStat::ALL.iter().find(|(_, name)| *name == text) {
            return Ok(Metric::Latency(*stat));
        }
        if let Some(name) = text
            .strip_prefix("count(")
            .and_then(|t| t.strip_suffix(')'))
        {
            let valid = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !valid {
                return Err(format!(
                    "`count(...)` needs a counter's name (letters, digits, '.', '_', '-'), found {}",
                    quote(name)
                ));
            }
            return Ok(Metric::Count(name.to_string()));
        }
        if let Some(d) = text
            .strip_prefix("slower_than(")
            .and_then(|t| t.strip_suffix(')'))
        {
            return parse_duration(d)
                .map(Metric::SlowerThan)
                .map_err(|e| format!("`slower_than(...)`: {e}"));
        }
        let metric = match text {
            "error_rate" => Metric::ErrorRate,
            "goodput" => Metric::Goodput,
            "sent" => Metric::Sent,
            "ok" => Metric::Ok,
            "dropped" => Metric::Dropped,
            "errors" => Metric::Errors,
            check if is_check_name(check) => Metric::Check(check.to_string()),
            other => {
                return Err(format!(
                    "unknown metric {}; expected p50(latency), p90(latency), p99(latency), p999(latency), max(latency), mean(latency), slower_than(<duration>), error_rate, goodput, sent, ok, dropped, errors, count(<counter>), or a check: {}",
                    quote(other),
                    CHECK_NAMES.join(", ")
                ))
            }
        };
        Ok(metric)
    }
}

/// The checks every run computes, by the name an assertion uses: the one list `check`, `run`
/// and the report share.
pub const CHECK_NAMES: [&str; 5] = [
    "orphaned_work",
    "orphaned_work_ms",
    "late_work",
    "late_ok",
    "unauthenticated_calls",
];

/// Whether `text` names a check a run computes.
fn is_check_name(text: &str) -> bool {
    CHECK_NAMES.contains(&text)
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Metric::Latency(stat) => LatencyStat::ALL
                .iter()
                .find(|(s, _)| s == stat)
                .map_or("latency", |(_, name)| name),
            Metric::ErrorRate => "error_rate",
            Metric::Goodput => "goodput",
            Metric::Sent => "sent",
            Metric::Ok => "ok",
            Metric::Dropped => "dropped",
            Metric::Errors => "errors",
            Metric::Check(name) => name,
            Metric::Count(name) => return write!(f, "count({name})"),
            Metric::SlowerThan(d) => return write!(f, "slower_than({})", format_duration(*d)),
        };
        f.write_str(name)
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
}

impl Op {
    /// Every operator, two-character ones first so "<=" is not read as "<".
    const ALL: [(Op, &'static str); 5] = [
        (Op::Le, "<="),
        (Op::Ge, ">="),
        (Op::Eq, "=="),
        (Op::Lt, "<"),
        (Op::Gt, ">"),
    ];

    /// Whether `left op right`; false when either is NaN.
    pub fn compare(self, left: f64, right: f64) -> bool {
        match self {
            Op::Lt => left < right,
            Op::Le => left <= right,
            Op::Gt => left > right,
            Op::Ge => left >= right,
            Op::Eq => left == right,
        }
    }

    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        Op::ALL
            .iter()
            .find(|(op, _)| *op == self)
            .map_or("==", |(_, text)| text)
    }
}

/// A bound, typed by the metric's unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// For latency metrics.
    Duration(Duration),
    /// For the error rate.
    Ratio(Ratio),
    /// For goodput.
    Rate(Rate),
    /// For counts and checks.
    Number(f64),
}

impl Bound {
    /// The bound in its metric's [`MetricUnit`]: milliseconds, a fraction, per second, a count.
    pub fn value(&self) -> f64 {
        match self {
            Bound::Duration(duration) => duration.as_secs_f64() * 1000.0,
            Bound::Ratio(ratio) => ratio.value(),
            Bound::Rate(rate) => rate.as_per_second(),
            Bound::Number(number) => *number,
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::Duration(duration) => f.write_str(&format_duration(*duration)),
            Bound::Ratio(ratio) => write!(f, "{ratio}"),
            Bound::Rate(rate) => write!(f, "{rate}"),
            Bound::Number(number) => write!(f, "{number}"),
        }
    }
}

/// Which requests an assertion looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every load together.
    All,
    /// Requests on one gateway route.
    Route(RouteKey),
    /// Requests of one load.
    Load(LoadName),
    /// Requests served by one endpoint (including calls from other services).
    Endpoint(EndpointRef),
}

/// Which part of the run an assertion looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Window {
    /// The whole run.
    All,
    /// From `start` to `end`, both from the start of the run.
    Range {
        /// Start of the window.
        start: Duration,
        /// End of the window, after `start`.
        end: Duration,
    },
    /// From the first fault's start to the last fault's end.
    Faults,
    /// From the last fault's end to the end of the run.
    AfterFaults,
    /// From the start of the run to the first fault's start.
    BeforeFaults,
    /// One named fault's own window (`"fault:<name>"`), from its start to its end.
    Fault(String),
    /// From the heal (`heal = "40s"`) plus a grace period to the end of the run:
    /// `"after_heal"`, or `"after_heal+5s"` for "back under the bound within 5 s of the heal".
    AfterHeal(Duration),
}

/// The prefix of a named fault's window: `during = "fault:slow-a"`.
const FAULT_PREFIX: &str = "fault:";

impl fmt::Display for Window {
    /// The window as written in a file: `all`, `faults`, `before_faults`, `after_faults`,
    /// `fault:<name>`, or `20s..40s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Window::All => f.write_str("all"),
            Window::Range { start, end } => {
                write!(f, "{}..{}", format_duration(*start), format_duration(*end))
            }
            Window::Faults => f.write_str("faults"),
            Window::AfterFaults => f.write_str("after_faults"),
            Window::BeforeFaults => f.write_str("before_faults"),
            Window::Fault(name) => write!(f, "{FAULT_PREFIX}{name}"),
            Window::AfterHeal(after) if after.is_zero() => f.write_str("after_heal"),
            Window::AfterHeal(after) => write!(f, "after_heal+{}", format_duration(*after)),
        }
    }
}

/// Whether `name` may name a fault: letters, digits, '-', '_' and '.', at most 64.
pub(crate) fn is_fault_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Window {
    /// Reads "all", "faults", "before_faults", "after_faults", "fault:<name>" or
    /// "<start>..<end>" such as "20s..40s".
    pub(crate) fn parse(text: &str) -> Result<Window, String> {
        match text.trim() {
            "all" => return Ok(Window::All),
            "faults" => return Ok(Window::Faults),
            "after_faults" => return Ok(Window::AfterFaults),
            "before_faults" => return Ok(Window::BeforeFaults),
            "after_heal" => return Ok(Window::AfterHeal(Duration::ZERO)),
            _ => {}
        }
        if let Some(after) = text.trim().strip_prefix("after_heal+") {
            return parse_duration(after.trim())
                .map(Window::AfterHeal)
                .map_err(|e| format!("`after_heal+<duration>`: {e}"));
        }
        if let Some(name) = text.trim().strip_prefix(FAULT_PREFIX) {
            let name = name.trim();
            if !is_fault_name(name) {
                return Err(format!(
                    "`fault:<name>` needs a fault's name (letters, digits, '-', '_', '.'), found {}",
                    quote(name)
                ));
            }
            return Ok(Window::Fault(name.to_string()));
        }
        let expected = || {
            format!(
                "expected a window: \"all\", \"faults\", \"before_faults\", \"after_faults\", \"fault:<name>\", \"after_heal\", \"after_heal+<duration>\" or a range such as \"20s..40s\", found {}",
                quote(text)
            )
        };
        let (start, end) = text.split_once("..").ok_or_else(expected)?;
        let start = parse_duration(start).map_err(|_| expected())?;
        let end = parse_duration(end).map_err(|_| expected())?;
        if end <= start {
            return Err(format!("window {} ends before it starts", quote(text)));
        }
        Ok(Window::Range { start, end })
    }
}

impl Assertion {
    /// Whether the observed value, in the metric's [`MetricUnit`], satisfies the bound. A NaN
    /// observation never does.
    pub fn holds(&self, observed: f64) -> bool {
        self.op.compare(observed, self.bound.value())
    }

    /// An observed value written in the bound's unit: "412ms", "1.5%", "190/s", "3".
    pub fn format_observed(&self, observed: f64) -> String {
        let trimmed = |value: f64, decimals: usize| {
            let text = format!("{value:.decimals$}");
            let text = if text.contains('.') {
                text.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                text
            };
            if text == "-0" {
                "0".to_string()
            } else {
                text
            }
        };
        match self.metric.unit() {
            MetricUnit::Milliseconds => format!("{}ms", trimmed(observed, 3)),
            MetricUnit::Fraction => format!("{}%", trimmed(observed * 100.0, 4)),
            MetricUnit::PerSecond => format!("{}/s", trimmed(observed, 3)),
            MetricUnit::Count => trimmed(observed, 6),
        }
    }

    /// The verdict in one line: "p99(latency) < 300ms: observed 412ms, fails".
    pub fn describe(&self, observed: f64) -> String {
        let verdict = if self.holds(observed) {
            "holds"
        } else {
            "fails"
        };
        format!(
            "{}: observed {}, {verdict}",
            self.text,
            self.format_observed(observed)
        )
    }
}

/// The parts of a `that` text: metric, operator and bound.
pub(crate) struct Comparison {
    pub metric: Metric,
    pub op: Op,
    pub bound: Bound,
}

/// Reads "<metric> <op> <value>", checking that the value's unit fits the metric.
pub(crate) fn parse_comparison(text: &str) -> Result<Comparison, String> {
    let (position, op, op_text) = find_op(text).ok_or_else(|| {
        format!(
            "expected an assertion \"<metric> <op> <value>\" such as \"p99(latency) < 300ms\" (op one of <, <=, >, >=, ==), found {}",
            quote(text)
        )
    })?;
    let metric = Metric::parse(text[..position].trim())?;
    let value = text[position + op_text.len()..].trim();
    let bound = parse_bound(&metric, value)?;
    Ok(Comparison { metric, op, bound })
}

/// The first comparison operator in `text`: its byte position, the operator and its spelling.
fn find_op(text: &str) -> Option<(usize, Op, &'static str)> {
    let position = text.find(['<', '>', '='])?;
    let rest = &text[position..];
    Op::ALL
        .iter()
        .find(|(_, spelling)| rest.starts_with(spelling))
        .map(|(op, spelling)| (position, *op, *spelling))
}

/// Reads the bound in the unit the metric needs.
fn parse_bound(metric: &Metric, value: &str) -> Result<Bound, String> {
    let mismatch = |expected: &str| {
        format!(
            "{metric} is compared with {expected}, found {}",
            quote(value)
        )
    };
    match metric.unit() {
        MetricUnit::Milliseconds => parse_duration(value)
            .map(Bound::Duration)
            .map_err(|_| mismatch("a duration such as \"300ms\"")),
        MetricUnit::Fraction => Ratio::parse(value)
            .map(Bound::Ratio)
            .map_err(|_| mismatch("a ratio such as \"1%\" or 0.01")),
        MetricUnit::PerSecond => parse_goodput(value)
            .ok_or_else(|| mismatch("a rate such as \"190/s\" or a plain number")),
        MetricUnit::Count => parse_plain_number(value)
            .map(Bound::Number)
            .ok_or_else(|| mismatch("a plain number such as 0 or 12")),
    }
}

/// A goodput bound: "190/s" or a plain number of responses per second.
fn parse_goodput(value: &str) -> Option<Bound> {
    let rate = if value.contains('/') {
        Rate::parse(value).ok()?
    } else {
        Rate::per_second(parse_plain_number(value)?)?
    };
    Some(Bound::Rate(rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assertion(text: &str) -> Assertion {
        let comparison = parse_comparison(text).expect("valid assertion");
        Assertion {
            text: text.to_string(),
            metric: comparison.metric,
            op: comparison.op,
            bound: comparison.bound,
            scope: Scope::All,
            window: Window::All,
        }
    }

    #[test]
    fn comparisons_parse_into_typed_metric_op_and_bound() {
        let latency = assertion("p99(latency) < 300ms");
        assert_eq!(latency.metric, Metric::Latency(LatencyStat::P99));
        assert_eq!(latency.op, Op::Lt);
        assert_eq!(latency.bound, Bound::Duration(Duration::from_millis(300)));
        assert_eq!(assertion("error_rate <= 1%").bound.value(), 0.01);
        assert_eq!(assertion("goodput >= 190/s").bound.value(), 190.0);
        assert_eq!(assertion("goodput >= 190").bound.value(), 190.0);
        assert_eq!(
            assertion("orphaned_work == 0").metric,
            Metric::Check("orphaned_work".into())
        );
    }

    #[test]
    fn bounds_in_the_wrong_unit_are_rejected() {
        for text in [
            "p99(latency) < 5%",
            "error_rate < 300ms",
            "sent > 1s",
            "goodput > 1%",
            "p95(latency) < 1ms",
            "late-work == 0",
        ] {
            assert!(parse_comparison(text).is_err(), "{text}");
        }
        let message = parse_comparison("p99(latency) < 5%").err();
        assert_eq!(
            message.as_deref(),
            Some("p99(latency) is compared with a duration such as \"300ms\", found \"5%\"")
        );
        assert!(parse_comparison("p99(latency) = 3ms").is_err());
        assert!(parse_comparison("p99(latency) 3ms").is_err());
    }

    #[test]
    fn holds_compares_in_the_metric_unit() {
        let latency = assertion("p99(latency) < 300ms");
        assert!(latency.holds(299.0));
        assert!(!latency.holds(300.0));
        assert!(!latency.holds(f64::NAN));
        assert_eq!(
            latency.describe(412.5),
            "p99(latency) < 300ms: observed 412.5ms, fails"
        );
        let errors = assertion("error_rate < 1%");
        assert!(errors.holds(0.005));
        assert_eq!(errors.format_observed(0.015), "1.5%");
    }

    #[test]
    fn windows_parse_named_and_ranged_forms() {
        assert_eq!(Window::parse("all"), Ok(Window::All));
        assert_eq!(Window::parse("after_faults"), Ok(Window::AfterFaults));
        assert_eq!(
            Window::parse("20s..40s"),
            Ok(Window::Range {
                start: Duration::from_secs(20),
                end: Duration::from_secs(40)
            })
        );
        assert_eq!(Window::parse("before_faults"), Ok(Window::BeforeFaults));
        assert_eq!(
            Window::parse("fault:slow-a"),
            Ok(Window::Fault("slow-a".into()))
        );
        assert!(Window::parse("fault:").is_err());
        assert_eq!(
            Window::parse("after_heal+5s"),
            Ok(Window::AfterHeal(Duration::from_secs(5)))
        );
        assert!(Window::parse("after_heal+soon").is_err());
        assert!(Window::parse("fault:a b").is_err());
        for text in [
            "all",
            "faults",
            "before_faults",
            "after_faults",
            "fault:x",
            "after_heal",
            "after_heal+5s",
            "20s..40s",
        ] {
            let window = Window::parse(text).expect("valid");
            assert_eq!(window.to_string(), text, "written back as read");
        }
        assert!(Window::parse("40s..20s").is_err());
        assert!(Window::parse("20s-40s").is_err());
    }
}
