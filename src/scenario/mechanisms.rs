//! Validation of a service's degradation mechanisms: `breaker`, `retry`, `hedge` and `limit`.
//!
//! Each is off when absent or `false`, on with the framework's defaults when `true`, and tuned
//! by an inline table whose keys are checked here: an unknown key, a value of the wrong type or
//! out of range is reported at the key's table with the key named (`breaker.window`: ...).

use std::ops::{Range, RangeInclusive};
use std::time::Duration;

use crate::units::{self, describe_value, format_duration, quote, Ratio};

use super::model::{BreakerSpec, BudgetSpec, HedgeAfter, HedgeSpec, LimitSpec, RetrySpec};
use super::raw::Value;
use super::validate::Ctx;

/// The longest any of these durations may be.
const MAX_DURATION: Duration = Duration::from_secs(3600);
/// The most attempts or copies a call may make.
const MAX_ATTEMPTS: i64 = 10;
/// The highest concurrency limit.
const MAX_LIMIT: i64 = 100_000;

/// The framework's defaults that a key left out takes, where a key given must be checked
/// against one left out (the topology's tests hold these to the framework's own).
pub mod defaults {
    use std::time::Duration;

    /// `breaker.open`.
    pub const BREAKER_OPEN: Duration = Duration::from_secs(1);
    /// `breaker.max_open`.
    pub const BREAKER_MAX_OPEN: Duration = Duration::from_secs(30);
    /// `retry.backoff`.
    pub const RETRY_BACKOFF: Duration = Duration::from_millis(10);
    /// `retry.max_backoff`.
    pub const RETRY_MAX_BACKOFF: Duration = Duration::from_secs(1);
    /// `limit.min`.
    pub const LIMIT_MIN: u32 = 4;
    /// `limit.max`.
    pub const LIMIT_MAX: u32 = 1000;
}

/// `breaker = true | false | { failures, rate, window, min_requests, open, max_open }`.
pub(crate) fn breaker(ctx: &mut Ctx<'_>, value: Option<&Value>) -> Option<Option<BreakerSpec>> {
    const KEYS: &[&str] = &[
        "failures",
        "rate",
        "window",
        "min_requests",
        "open",
        "max_open",
    ];
    let Some(mut t) = Fields::of(ctx, "breaker", value, KEYS)? else {
        return Some(None);
    };
    let spec = BreakerSpec {
        failures: t.count("failures", 1..=1_000_000),
        rate: t.ratio("rate"),
        window: t.duration("window", Duration::from_secs(1)..=MAX_DURATION),
        min_requests: t.count("min_requests", 1..=1_000_000),
        open: t.duration("open", Duration::from_millis(1)..=MAX_DURATION),
        max_open: t.duration("max_open", Duration::from_millis(1)..=MAX_DURATION),
    };
    t.not_shorter(
        (
            "max_open",
            spec.max_open.unwrap_or(defaults::BREAKER_MAX_OPEN),
        ),
        ("open", spec.open.unwrap_or(defaults::BREAKER_OPEN)),
    );
    t.finish(spec)
}

/// `retry = true | false | { attempts, backoff, max_backoff, budget }`, where `budget` is
/// `true`, `false` or `{ percent, min_per_sec, ttl }`.
pub(crate) fn retry(ctx: &mut Ctx<'_>, value: Option<&Value>) -> Option<Option<RetrySpec>> {
    const KEYS: &[&str] = &["attempts", "backoff", "max_backoff", "budget"];
    let Some(mut t) = Fields::of(ctx, "retry", value, KEYS)? else {
        return Some(None);
    };
    let budget = match t.get("budget") {
        None | Some(toml::Value::Boolean(true)) => Some(None),
        Some(toml::Value::Boolean(false)) => None,
        Some(toml::Value::Table(table)) => {
            let mut b = t.nested("retry.budget", table, &["percent", "min_per_sec", "ttl"]);
            let spec = BudgetSpec {
                percent: b.ratio("percent"),
                min_per_sec: b.count("min_per_sec", 0..=1_000_000),
                ttl: b.duration("ttl", Duration::from_secs(1)..=Duration::from_secs(60)),
            };
            if !b.ok {
                t.ok = false;
            }
            Some(Some(spec))
        }
        Some(other) => {
            t.fail(format!(
                "`retry.budget`: expected true, false or a table {{ percent, min_per_sec, ttl }}, found {}",
                describe_value(other)
            ));
            None
        }
    };
    let spec = RetrySpec {
        attempts: t.count("attempts", 1..=MAX_ATTEMPTS),
        backoff: t.duration("backoff", Duration::ZERO..=MAX_DURATION),
        max_backoff: t.duration("max_backoff", Duration::ZERO..=MAX_DURATION),
        budget,
    };
    t.not_shorter(
        (
            "max_backoff",
            spec.max_backoff.unwrap_or(defaults::RETRY_MAX_BACKOFF),
        ),
        ("backoff", spec.backoff.unwrap_or(defaults::RETRY_BACKOFF)),
    );
    t.finish(spec)
}

/// `hedge = true | false | { after, copies, max_extra }`, `after` a duration or "p50" to
/// "p99.9".
pub(crate) fn hedge(ctx: &mut Ctx<'_>, value: Option<&Value>) -> Option<Option<HedgeSpec>> {
    const KEYS: &[&str] = &["after", "copies", "max_extra"];
    let Some(mut t) = Fields::of(ctx, "hedge", value, KEYS)? else {
        return Some(None);
    };
    let after = match t.get("after") {
        None => None,
        Some(toml::Value::String(text)) => match percentile(text) {
            Some(q) => Some(HedgeAfter::Percentile(q)),
            None => match units::parse_duration(text) {
                Ok(d) if d > Duration::ZERO && d <= MAX_DURATION => Some(HedgeAfter::Fixed(d)),
                _ => {
                    t.fail(format!(
                        "`hedge.after`: expected a percentile from \"p1\" to \"p99.9\" or a duration above 0s and at most 1h, found {}",
                        quote(text)
                    ));
                    None
                }
            },
        },
        Some(other) => {
            t.fail(format!(
                "`hedge.after`: expected a percentile such as \"p95\" or a duration such as \"20ms\", found {}",
                describe_value(other)
            ));
            None
        }
    };
    let spec = HedgeSpec {
        after,
        copies: t.count("copies", 2..=MAX_ATTEMPTS),
        max_extra: t.ratio("max_extra"),
    };
    t.finish(spec)
}

/// "p95" as 0.95, "p99.9" as 0.999: a percentile from 1 to 99.9.
fn percentile(text: &str) -> Option<f64> {
    let number = text.strip_prefix('p')?;
    let value = units::parse_plain_number(number)?;
    (1.0..=99.9).contains(&value).then_some(value / 100.0)
}

/// `limit = N | "adaptive" | { adaptive = true, initial, min, max }`.
pub(crate) fn limit(ctx: &mut Ctx<'_>, value: Option<&Value>) -> Option<Option<LimitSpec>> {
    let Some(value) = value else {
        return Some(None);
    };
    match value.get_ref() {
        toml::Value::Integer(n) if (1..=MAX_LIMIT).contains(n) => {
            u32::try_from(*n).ok().map(|n| Some(LimitSpec::Fixed(n)))
        }
        toml::Value::String(text) if text == "adaptive" => Some(Some(LimitSpec::Adaptive {
            initial: None,
            min: None,
            max: None,
        })),
        toml::Value::Table(_) => {
            const KEYS: &[&str] = &["adaptive", "initial", "min", "max"];
            let mut t = Fields::of(ctx, "limit", Some(value), KEYS)??;
            if t.get("adaptive") != Some(&toml::Value::Boolean(true)) {
                t.fail("`limit`: a table sets the adaptive limit and needs `adaptive = true`; a fixed limit is a number (`limit = 40`)");
            }
            let range = 1..=MAX_LIMIT;
            let spec = LimitSpec::Adaptive {
                initial: t.count("initial", range.clone()),
                min: t.count("min", range.clone()),
                max: t.count("max", range),
            };
            if let LimitSpec::Adaptive { min, max, .. } = spec {
                let (min, max) = (
                    min.unwrap_or(defaults::LIMIT_MIN),
                    max.unwrap_or(defaults::LIMIT_MAX),
                );
                if max < min {
                    t.fail(format!(
                        "`limit.max` ({max}) is below `limit.min` ({min}); a value left out is its default"
                    ));
                }
            }
            t.finish(spec)
        }
        other => {
            ctx.error(
                value.span(),
                format!(
                    "`limit`: expected a number from 1 to {MAX_LIMIT}, \"adaptive\" or a table {{ adaptive = true, initial, min, max }}, found {}",
                    describe_value(other)
                ),
            );
            None
        }
    }
}

/// The keys of one mechanism's table, read with errors that name them.
struct Fields<'c, 'a, 'v> {
    ctx: &'c mut Ctx<'a>,
    key: String,
    span: Range<usize>,
    table: Option<&'v toml::Table>,
    ok: bool,
}

impl<'c, 'a, 'v> Fields<'c, 'a, 'v> {
    /// `Some(None)` when off (absent or `false`), `Some(Some(fields))` when on (`true`: no
    /// fields), `None` after reporting a value that is neither a bool nor a table of `keys`.
    fn of(
        ctx: &'c mut Ctx<'a>,
        key: &str,
        value: Option<&'v Value>,
        keys: &[&str],
    ) -> Option<Option<Fields<'c, 'a, 'v>>> {
        let Some(value) = value else {
            return Some(None);
        };
        let table = match value.get_ref() {
            toml::Value::Boolean(false) => return Some(None),
            toml::Value::Boolean(true) => None,
            toml::Value::Table(table) => Some(table),
            other => {
                let message = format!(
                    "`{key}`: expected true, false or a table of {}, found {}",
                    keys.join(", "),
                    describe_value(other)
                );
                ctx.error(value.span(), message);
                return None;
            }
        };
        let mut fields = Fields {
            ctx,
            key: key.to_string(),
            span: value.span(),
            table,
            ok: true,
        };
        fields.unknown(keys);
        Some(Some(fields))
    }

    /// The fields of a table nested in this one, reported under `key`.
    fn nested<'d>(
        &'d mut self,
        key: &str,
        table: &'v toml::Table,
        keys: &[&str],
    ) -> Fields<'d, 'a, 'v> {
        let mut fields = Fields {
            ctx: &mut *self.ctx,
            key: key.to_string(),
            span: self.span.clone(),
            table: Some(table),
            ok: true,
        };
        fields.unknown(keys);
        fields
    }

    /// Reports every key not in `keys`.
    fn unknown(&mut self, keys: &[&str]) {
        let Some(table) = self.table else {
            return;
        };
        let unknown: Vec<String> = table
            .keys()
            .filter(|k| !keys.contains(&k.as_str()))
            .cloned()
            .collect();
        for k in unknown {
            let expected = keys.join(", ");
            self.fail(format!(
                "unknown key {} in `{}`; expected one of: {expected}",
                quote(&k),
                self.key
            ));
        }
    }

    /// Reports a problem at the table.
    fn fail(&mut self, message: impl Into<String>) {
        self.ok = false;
        self.ctx.error(self.span.clone(), message);
    }

    /// Reports a ceiling shorter than its base, each `(field, value)` (defaults for fields left
    /// out).
    fn not_shorter(&mut self, ceiling: (&str, Duration), base: (&str, Duration)) {
        if ceiling.1 < base.1 {
            let key = self.key.clone();
            self.fail(format!(
                "`{key}.{}` ({}) is shorter than `{key}.{}` ({}); a value left out is its default",
                ceiling.0,
                format_duration(ceiling.1),
                base.0,
                format_duration(base.1)
            ));
        }
    }

    /// The raw value of `field`, if given.
    fn get(&self, field: &str) -> Option<&'v toml::Value> {
        self.table.and_then(|t| t.get(field))
    }

    /// A whole number in `range`.
    fn count(&mut self, field: &str, range: RangeInclusive<i64>) -> Option<u32> {
        let value = self.get(field)?;
        match value {
            toml::Value::Integer(n) if range.contains(n) => u32::try_from(*n).ok(),
            other => {
                let (lo, hi) = (range.start(), range.end());
                self.fail(format!(
                    "`{}.{field}` must be a whole number from {lo} to {hi}, found {}",
                    self.key,
                    describe_value(other)
                ));
                None
            }
        }
    }

    /// A duration in `range`.
    fn duration(&mut self, field: &str, range: RangeInclusive<Duration>) -> Option<Duration> {
        let value = self.get(field)?;
        match units::duration_from_toml(value) {
            Ok(d) if range.contains(&d) => Some(d),
            Ok(d) => {
                self.fail(format!(
                    "`{}.{field}` must be between {} and {}, found {}",
                    self.key,
                    format_duration(*range.start()),
                    format_duration(*range.end()),
                    format_duration(d)
                ));
                None
            }
            Err(e) => {
                self.fail(format!("`{}.{field}`: {e}", self.key));
                None
            }
        }
    }

    /// A ratio ("20%" or 0.2).
    fn ratio(&mut self, field: &str) -> Option<Ratio> {
        let value = self.get(field)?;
        match Ratio::from_toml(value) {
            Ok(r) => Some(r),
            Err(e) => {
                self.fail(format!("`{}.{field}`: {e}", self.key));
                None
            }
        }
    }

    /// `Some(Some(spec))` if every field read well, else `None` (already reported).
    fn finish<T>(self, spec: T) -> Option<Option<T>> {
        self.ok.then_some(Some(spec))
    }
}
