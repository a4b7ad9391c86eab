//! Validation of what breaks and where: `[[fault]]` windows and kinds, and `[[network.link]]` pairs.
//!
//! Both name targets (a service, one instance, or the load's "client"), which must exist; a fault
//! must have exactly one kind and a window inside the run, since a fault outside the run would make
//! a scenario pass for the wrong reason.

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use crate::units::{describe_value, format_duration, Rate};

use super::assertion::is_fault_name;
use super::index::Index;
use super::model::{limits, DiskEffect, Fault, FaultKind, Link, SlowFactor};
use super::names::{ErrorCode, Target};
use super::raw::{
    RawCrash, RawDisk, RawErrors, RawFault, RawIntruder, RawLatency, RawLink, RawLoss, RawPair,
    RawPartition, RawSlow, Text, Value,
};
use super::validate::Ctx;

/// Validates the network's link overrides.
pub(crate) fn links(
    ctx: &mut Ctx<'_>,
    raw: &[Spanned<RawLink>],
    index: &Index,
) -> Option<Vec<Link>> {
    if !ctx.at_most(raw, limits::MAX_LINKS, "links") {
        return None;
    }
    let links: Vec<Option<Link>> = raw.iter().map(|link| link_of(ctx, link, index)).collect();
    links.into_iter().collect()
}

/// One `[[network.link]]`: two distinct targets and at least one override.
fn link_of(ctx: &mut Ctx<'_>, spanned: &Spanned<RawLink>, index: &Index) -> Option<Link> {
    let raw = spanned.get_ref();
    let ends = pair(ctx, &raw.a, &raw.b, index);
    let latency = raw.latency.as_ref().map(|value| ctx.dist("latency", value));
    let loss = raw.loss.as_ref().map(|value| ctx.ratio("loss", value));
    if latency.is_none() && loss.is_none() {
        ctx.error(spanned.span(), "a link needs `latency`, `loss` or both");
        return None;
    }
    let (a, b) = ends?;
    Some(Link {
        a,
        b,
        latency: latency.map_or(Some(None), |dist| dist.map(Some))?,
        loss: loss.map_or(Some(None), |ratio| ratio.map(Some))?,
    })
}

/// Two distinct targets, the client allowed.
fn pair(ctx: &mut Ctx<'_>, a: &Text, b: &Text, index: &Index) -> Option<(Target, Target)> {
    let first = target(ctx, "a", a, index, true);
    let second = target(ctx, "b", b, index, true);
    let (first, second) = (first?, second?);
    if first == second {
        ctx.error(
            b.span(),
            format!("`b` is the same target as `a` ({first}); expected two different targets"),
        );
        return None;
    }
    Some((first, second))
}

/// A target that must exist; `client` says whether "client" is allowed.
fn target(
    ctx: &mut Ctx<'_>,
    key: &str,
    text: &Text,
    index: &Index,
    client: bool,
) -> Option<Target> {
    ctx.ok(
        text.span(),
        key,
        index.resolve_target(text.get_ref(), client),
    )
}

/// Validates every fault.
pub(crate) fn validate(
    ctx: &mut Ctx<'_>,
    raw: &[Spanned<RawFault>],
    index: &Index,
    run: Option<Duration>,
) -> Option<Vec<Fault>> {
    if !ctx.at_most(raw, limits::MAX_FAULTS, "faults") {
        return None;
    }
    let faults: Vec<Option<Fault>> = raw
        .iter()
        .map(|fault| fault_of(ctx, fault, index, run))
        .collect();
    let names_ok = unique_names(ctx, raw);
    let faults: Option<Vec<Fault>> = faults.into_iter().collect();
    names_ok.then_some(faults).flatten()
}

/// Whether every fault's `name`, where given, is a valid name that no earlier fault took.
fn unique_names(ctx: &mut Ctx<'_>, raw: &[Spanned<RawFault>]) -> bool {
    let mut seen: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    let mut ok = true;
    for name in raw.iter().filter_map(|f| f.get_ref().name.as_ref()) {
        let text = name.get_ref().as_str();
        if !is_fault_name(text) {
            ctx.error(
                name.span(),
                format!(
                    "`name`: expected a fault's name (letters, digits, '-', '_', '.', at most 64), found {}",
                    crate::units::quote(text)
                ),
            );
            ok = false;
        } else if let Some(first) = seen.get(text) {
            let line = ctx.line(*first);
            ctx.error(
                name.span(),
                format!(
                    "`name`: a fault named {} is already defined at line {line}; fault names must be unique",
                    crate::units::quote(text)
                ),
            );
            ok = false;
        } else {
            seen.insert(text, name.span().start);
        }
    }
    ok
}

/// One `[[fault]]`: its window and its one kind.
fn fault_of(
    ctx: &mut Ctx<'_>,
    spanned: &Spanned<RawFault>,
    index: &Index,
    run: Option<Duration>,
) -> Option<Fault> {
    let raw = spanned.get_ref();
    let window = fault_window(ctx, raw, run);
    let kind = one_kind(ctx, spanned).and_then(|kind| kind_of(ctx, kind, index));
    let (at, duration) = window?;
    Some(Fault {
        name: raw.name.as_ref().map(|n| n.get_ref().trim().to_string()),
        at,
        duration,
        kind: kind?,
    })
}

/// `at` and `duration`: the window must lie inside the run.
fn fault_window(
    ctx: &mut Ctx<'_>,
    raw: &RawFault,
    run: Option<Duration>,
) -> Option<(Duration, Option<Duration>)> {
    let at = ctx.duration("at", &raw.at);
    let duration = match &raw.duration {
        None => Some(None),
        Some(value) => positive(ctx, value).map(Some),
    };
    let (at, duration, run) = (at?, duration?, run?);
    let run_text = format_duration(run);
    if at >= run {
        let message = format!(
            "`at` {} is outside the run: expected less than the duration {run_text}",
            format_duration(at)
        );
        ctx.error(raw.at.span(), message);
        return None;
    }
    let end = duration.map_or(Some(run), |duration| at.checked_add(duration));
    if end.is_none_or(|end| end > run) {
        let span = raw.duration.as_ref().map_or(0..0, Spanned::span);
        let ends = end.map_or_else(|| "too late".to_string(), format_duration);
        let message = format!(
            "the fault window ends at {ends}, outside the run: expected `at` + `duration` at most the duration {run_text}"
        );
        ctx.error(span, message);
        return None;
    }
    Some((at, duration))
}

/// A fault's duration: above zero.
fn positive(ctx: &mut Ctx<'_>, value: &Value) -> Option<Duration> {
    let duration = ctx.duration("duration", value)?;
    if duration.is_zero() {
        ctx.error(
            value.span(),
            "`duration` of a fault must be above 0s (leave it out to last to the end)",
        );
        return None;
    }
    Some(duration)
}

/// The one kind a fault table has, borrowed from the raw table.
enum RawKind<'a> {
    Slow(&'a Spanned<RawSlow>),
    Latency(&'a Spanned<RawLatency>),
    Errors(&'a Spanned<RawErrors>),
    Partition(&'a Spanned<RawPartition>),
    Hold(&'a Spanned<RawPair>),
    Loss(&'a Spanned<RawLoss>),
    Crash(&'a Spanned<RawCrash>),
    Intruder(&'a Spanned<RawIntruder>),
    Disk(&'a Spanned<RawDisk>),
}

impl RawKind<'_> {
    /// Where the kind's table is, and the kind's key.
    fn place(&self) -> (Range<usize>, &'static str) {
        match self {
            RawKind::Slow(kind) => (kind.span(), "slow"),
            RawKind::Latency(kind) => (kind.span(), "latency"),
            RawKind::Errors(kind) => (kind.span(), "errors"),
            RawKind::Partition(kind) => (kind.span(), "partition"),
            RawKind::Hold(kind) => (kind.span(), "hold"),
            RawKind::Loss(kind) => (kind.span(), "loss"),
            RawKind::Crash(kind) => (kind.span(), "crash"),
            RawKind::Intruder(kind) => (kind.span(), "intruder"),
            RawKind::Disk(kind) => (kind.span(), "disk"),
        }
    }
}

/// Exactly one kind, or a report of none or several.
fn one_kind<'a>(ctx: &mut Ctx<'_>, spanned: &'a Spanned<RawFault>) -> Option<RawKind<'a>> {
    let raw = spanned.get_ref();
    let mut kinds: Vec<RawKind<'a>> = Vec::new();
    kinds.extend(raw.slow.as_ref().map(RawKind::Slow));
    kinds.extend(raw.latency.as_ref().map(RawKind::Latency));
    kinds.extend(raw.errors.as_ref().map(RawKind::Errors));
    kinds.extend(raw.partition.as_ref().map(RawKind::Partition));
    kinds.extend(raw.hold.as_ref().map(RawKind::Hold));
    kinds.extend(raw.loss.as_ref().map(RawKind::Loss));
    kinds.extend(raw.crash.as_ref().map(RawKind::Crash));
    kinds.extend(raw.intruder.as_ref().map(RawKind::Intruder));
    kinds.extend(raw.disk.as_ref().map(RawKind::Disk));
    const KINDS: &str = "slow, latency, errors, partition, hold, loss, crash, intruder or disk";
    // Report at the second kind in file order: the first one is taken to be the intended one.
    kinds.sort_by_key(|kind| kind.place().0.start);
    match kinds.len() {
        1 => kinds.pop(),
        0 => {
            ctx.error(
                spanned.span(),
                format!("a fault needs exactly one kind ({KINDS}), found none"),
            );
            None
        }
        _ => {
            let names: Vec<&str> = kinds.iter().map(|kind| kind.place().1).collect();
            let span = kinds.get(1).map_or(spanned.span(), |kind| kind.place().0);
            let message = format!(
                "a fault needs exactly one kind ({KINDS}), found {}",
                names.join(" and ")
            );
            ctx.error(span, message);
            None
        }
    }
}

/// Validates the kind's own fields.
fn kind_of(ctx: &mut Ctx<'_>, kind: RawKind<'_>, index: &Index) -> Option<FaultKind> {
    match kind {
        RawKind::Slow(slow) => {
            let slow = slow.get_ref();
            let target = target(ctx, "target", &slow.target, index, false);
            let factor = slow_factor(ctx, &slow.factor);
            Some(FaultKind::Slow {
                target: target?,
                factor: factor?,
            })
        }
        RawKind::Latency(latency) => {
            let latency = latency.get_ref();
            let target = target(ctx, "target", &latency.target, index, true);
            let add = ctx.dist("add", &latency.add);
            Some(FaultKind::Latency {
                target: target?,
                add: add?,
            })
        }
        RawKind::Errors(errors) => errors_of(ctx, errors.get_ref(), index),
        RawKind::Partition(partition) => {
            let partition = partition.get_ref();
            let (a, b) = pair(ctx, &partition.a, &partition.b, index)?;
            let oneway = partition.oneway;
            Some(FaultKind::Partition { a, b, oneway })
        }
        RawKind::Hold(hold) => {
            let (a, b) = pair(ctx, &hold.get_ref().a, &hold.get_ref().b, index)?;
            Some(FaultKind::Hold { a, b })
        }
        RawKind::Loss(loss) => {
            let loss = loss.get_ref();
            let ends = pair(ctx, &loss.a, &loss.b, index);
            let rate = ctx.ratio("rate", &loss.rate);
            let (a, b) = ends?;
            Some(FaultKind::Loss { a, b, rate: rate? })
        }
        RawKind::Crash(crash) => {
            let target = target(ctx, "target", &crash.get_ref().target, index, false)?;
            Some(FaultKind::Crash { target })
        }
        RawKind::Intruder(intruder) => intruder_of(ctx, intruder.get_ref(), index),
        RawKind::Disk(disk) => disk_of(ctx, disk, index),
    }
}

/// `disk = { target, factor }` or `disk = { target, stall = true }`: exactly one effect.
fn disk_of(ctx: &mut Ctx<'_>, spanned: &Spanned<RawDisk>, index: &Index) -> Option<FaultKind> {
    let raw = spanned.get_ref();
    let target = target(ctx, "target", &raw.target, index, false);
    let stall = raw.stall.as_ref().is_some_and(|s| *s.get_ref());
    let effect = match (&raw.factor, stall) {
        (Some(factor), false) => DiskEffect::Slow(slow_factor(ctx, factor)?),
        (None, true) => DiskEffect::Stall,
        (Some(factor), true) => {
            ctx.error(
                factor.span(),
                "a disk fault either slows syncs (`factor`) or stalls them (`stall = true`), not both",
            );
            return None;
        }
        (None, false) => {
            ctx.error(
                spanned.span(),
                "a disk fault needs `factor = N` (each sync N times slower) or `stall = true` (no sync completes until the window ends)",
            );
            return None;
        }
    };
    Some(FaultKind::Disk {
        target: target?,
        effect,
    })
}

/// `intruder = { target, rate }`: a host that knows the target's ports but not the key.
fn intruder_of(ctx: &mut Ctx<'_>, raw: &RawIntruder, index: &Index) -> Option<FaultKind> {
    let target = target(ctx, "target", &raw.target, index, false);
    let rate = match &raw.rate {
        None => Rate::per_second(limits::DEFAULT_INTRUDER_RATE),
        Some(value) => {
            let rate = ctx.rate("rate", value, true)?;
            if rate.as_per_second() > limits::MAX_INTRUDER_RATE {
                let max = limits::MAX_INTRUDER_RATE;
                ctx.error(
                    value.span(),
                    format!("`rate` of an intruder must be at most {max}/s, found {rate}"),
                );
                return None;
            }
            Some(rate)
        }
    };
    Some(FaultKind::Intruder {
        target: target?,
        rate: rate?,
    })
}

/// `errors = { target, rate, code }`.
fn errors_of(ctx: &mut Ctx<'_>, errors: &RawErrors, index: &Index) -> Option<FaultKind> {
    let target = target(ctx, "target", &errors.target, index, false);
    let rate = ctx.ratio("rate", &errors.rate);
    let code = ctx.name("code", &errors.code, ErrorCode::parse);
    Some(FaultKind::Errors {
        target: target?,
        rate: rate?,
        code: code?,
    })
}

/// A slowdown factor: a number above zero, at most the limit.
fn slow_factor(ctx: &mut Ctx<'_>, value: &Value) -> Option<SlowFactor> {
    let number = match value.get_ref() {
        toml::Value::Integer(integer) => Some(*integer as f64),
        toml::Value::Float(float) => Some(*float),
        _ => None,
    };
    let factor = number.and_then(SlowFactor::new);
    if factor.is_none() {
        let found = describe_value(value.get_ref());
        let max = limits::MAX_SLOW_FACTOR;
        ctx.error(
            value.span(),
            format!("`factor`: expected a number above 0 and at most {max}, found {found}"),
        );
    }
    factor
}
