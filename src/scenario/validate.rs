//! Validation: from the raw file to a [`Scenario`] that cannot be invalid.
//!
//! Every check records a located diagnostic and carries on, so one run reports every problem in the
//! file. Each validator returns `Option`: `None` means "something here was reported", and the
//! scenario is assembled only when nothing was. Checks that need the whole file (a call to an
//! endpoint, a fault on an instance) go through the [`Index`] built from the services first.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::ops::{Range, RangeInclusive};
use std::time::Duration;

use crate::dist::Dist;
use crate::units::{self, format_duration, Rate, Ratio};

use super::error::{Diagnostic, Locator, ScenarioError};
use super::index::Index;
use super::model::{limits, Fault, GatewayAuth, Heal, Network, Scenario, SwarmBounds, SWARM_KINDS};
use super::names::{ScenarioName, ServiceName};
use super::raw::{Int, RawFault, RawNetwork, RawScenario, Text, Value};
use super::{asserts, faults, services, traffic, Builtins};

/// The seed used when the file gives none.
const DEFAULT_SEED: u64 = 1;
/// The tick used when the file gives none: turmoil's own default.
const DEFAULT_TICK: Duration = Duration::from_millis(1);
/// How long a disk sync takes when `[disk] sync` is left out.
const DEFAULT_DISK_SYNC: Duration = Duration::from_millis(1);

/// Validates a parsed file; every problem is reported, sorted by position.
pub(crate) fn scenario(
    raw: &RawScenario,
    locator: Locator<'_>,
    builtins: &dyn Builtins,
) -> Result<Scenario, ScenarioError> {
    let mut ctx = Ctx::new(locator);
    let built = build(&mut ctx, raw, builtins);
    ctx.finish(built)
}

/// Validates every part, then assembles the scenario if nothing was reported.
fn build(ctx: &mut Ctx<'_>, raw: &RawScenario, builtins: &dyn Builtins) -> Option<Scenario> {
    let name = ctx
        .required(
            raw.name.as_ref(),
            "name",
            "the scenario's name, such as \"webhook-slow-instance\"",
        )
        .and_then(|name| ctx.ok(name.span(), "name", ScenarioName::parse(name.get_ref())));
    let description = ctx
        .required(
            raw.description.as_ref(),
            "description",
            "a sentence on what the scenario shows",
        )
        .map(|description| description.get_ref().clone());
    let duration = run_duration(ctx, raw.duration.as_ref());
    let tick = ctx.duration_in(
        "tick",
        raw.tick.as_ref(),
        DEFAULT_TICK,
        limits::MIN_TICK..=limits::MAX_TICK,
    );
    let index = Index::build(&raw.service, builtins);
    let network = network(ctx, raw.network.as_ref(), &index);
    let services = services::validate(ctx, &raw.service, &index, builtins);
    let routes = traffic::routes(ctx, &raw.route, &index);
    let loads = traffic::loads(ctx, &raw.load, &raw.route, &index, duration);
    let faults = faults::validate(ctx, &raw.fault, &index, duration);
    let heal_at = raw
        .heal
        .as_ref()
        .map(|value| heal_time(ctx, value, duration));
    let (faults, heal) = match (faults, heal_at) {
        (faults, None) => (faults, Some(None)),
        (Some(faults), Some(Some(at))) => match heal_faults(ctx, &raw.fault, faults, at) {
            Some((faults, heal)) => (Some(faults), Some(Some(heal))),
            None => (None, None),
        },
        (_, Some(_)) => (None, None),
    };
    let scope = asserts::Known {
        index: &index,
        routes: &raw.route,
        loads: &raw.load,
        run: duration,
        faults: faults.as_deref(),
        any_faults: !raw.fault.is_empty(),
        fault_names: raw
            .fault
            .iter()
            .filter_map(|f| f.get_ref().name.as_ref().map(|n| n.get_ref().clone()))
            .collect(),
        heal: heal.as_ref().and_then(|h| h.as_ref().map(|h| h.at)),
        any_heal: raw.heal.is_some(),
    };
    let assertions = asserts::validate(ctx, &raw.asserts, &scope);
    let gateway_auth = gateway_auth(ctx, raw, builtins);
    let disk_sync = disk_sync(ctx, raw);
    let swarm = swarm(ctx, raw, &index);
    Some(Scenario {
        name: name?,
        description: description?,
        seed: raw.seed.unwrap_or(DEFAULT_SEED),
        duration: duration?,
        tick: tick?,
        network: network?,
        services: services?,
        routes: routes?,
        loads: loads?,
        faults: faults?,
        assertions: assertions?,
        gateway_auth: gateway_auth?,
        disk_sync: disk_sync?,
        swarm: swarm?,
        buggify: raw.buggify.unwrap_or(false),
        heal: heal?,
    })
}

/// `[swarm]`: known kinds, a fault count in range, services that exist.
fn swarm(ctx: &mut Ctx<'_>, raw: &RawScenario, index: &Index) -> Option<SwarmBounds> {
    let Some(spanned) = &raw.swarm else {
        return Some(SwarmBounds::default());
    };
    let raw = spanned.get_ref();
    let mut bounds = SwarmBounds::default();
    let mut ok = true;
    if let Some(kinds) = &raw.kinds {
        bounds.kinds.clear();
        for kind in kinds {
            if SWARM_KINDS.contains(&kind.get_ref().as_str()) {
                bounds.kinds.push(kind.get_ref().clone());
            } else {
                let known = SWARM_KINDS.join(", ");
                let found = kind.get_ref();
                ctx.error(
                    kind.span(),
                    format!("unknown swarm kind {found:?}; expected one of {known}"),
                );
                ok = false;
            }
        }
        if kinds.is_empty() {
            ctx.error(spanned.span(), "`kinds` must name at least one kind");
            ok = false;
        }
    }
    let range = 1..=limits::MAX_SWARM_FAULTS;
    bounds.max_faults = ctx.count("max_faults", raw.max_faults.as_ref(), range, 4)?;
    for target in raw.targets.iter().flatten() {
        match ServiceName::parse(target.get_ref()) {
            Ok(name) if index.has(name.as_str()) => bounds.targets.push(name),
            _ => {
                let known = index.service_list();
                let found = target.get_ref();
                ctx.error(
                    target.span(),
                    format!(
                        "`targets`: no service {found:?} in this file; the services are {known}"
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then_some(bounds)
}

/// `[disk] sync`: a distribution of sync times, a fixed 1 ms when left out.
fn disk_sync(ctx: &mut Ctx<'_>, raw: &RawScenario) -> Option<Dist> {
    let default = Dist::fixed(DEFAULT_DISK_SYNC).ok()?;
    let value = raw.disk.as_ref().and_then(|d| d.sync.as_ref());
    ctx.dist_or("sync", value, default)
}

/// `heal`: a time inside the run, after its start.
fn heal_time(ctx: &mut Ctx<'_>, value: &Value, run: Option<Duration>) -> Option<Duration> {
    let at = ctx.duration("heal", value)?;
    let run = run?;
    if at.is_zero() || at >= run {
        ctx.error(
            value.span(),
            format!(
                "`heal`: expected a time after 0s and before the end of the run ({}), found {}",
                format_duration(run),
                format_duration(at)
            ),
        );
        return None;
    }
    Some(at)
}

/// Lifts every fault at `at`: a fault that would go on past it is cut at it; one that would
/// start at or after it is an error (it would never act).
fn heal_faults(
    ctx: &mut Ctx<'_>,
    raw: &[toml::Spanned<RawFault>],
    mut faults: Vec<Fault>,
    at: Duration,
) -> Option<(Vec<Fault>, Heal)> {
    let mut cut = Vec::new();
    let mut ok = true;
    for (i, (fault, spanned)) in faults.iter_mut().zip(raw).enumerate() {
        if fault.at >= at {
            ctx.error(
                spanned.get_ref().at.span(),
                format!(
                    "`at`: this fault starts at {}, at or after `heal` ({}), so it would never act; start it before the heal or drop `heal`",
                    format_duration(fault.at),
                    format_duration(at)
                ),
            );
            ok = false;
        } else if fault
            .duration
            .is_none_or(|d| fault.at.saturating_add(d) > at)
        {
            fault.duration = Some(at - fault.at);
            cut.push(i);
        }
    }
    ok.then_some((faults, Heal { at, cut }))
}

/// `[gateway] auth`: a service whose builtin checks tokens, or `"none"`. Left out, the file
/// may have at most one such service (which one would check tokens is otherwise a guess).
fn gateway_auth(
    ctx: &mut Ctx<'_>,
    raw: &RawScenario,
    builtins: &dyn Builtins,
) -> Option<GatewayAuth> {
    let authenticators: Vec<&str> = raw
        .service
        .iter()
        .map(|s| s.get_ref())
        .filter(|s| {
            s.builtin
                .as_ref()
                .is_some_and(|b| builtins.builtin_authenticates(b.get_ref()))
        })
        .map(|s| s.name.get_ref().as_str())
        .collect();
    let listed = if authenticators.is_empty() {
        "none in this file".to_string()
    } else {
        authenticators.join(", ")
    };
    let Some(gateway) = &raw.gateway else {
        if authenticators.len() > 1 && !raw.route.is_empty() {
            let span = raw.route.first().map_or(0..0, |r| r.span());
            ctx.error(
                span,
                format!(
                    "several services can check bearer tokens ({listed}): name the gateway's with `[gateway] auth = \"<service>\"`"
                ),
            );
            return None;
        }
        return Some(GatewayAuth::Found);
    };
    let auth = &gateway.get_ref().auth;
    let name = auth.get_ref().as_str();
    if name == "none" {
        return Some(GatewayAuth::Open);
    }
    if !authenticators.contains(&name) {
        let what = if raw
            .service
            .iter()
            .any(|s| s.get_ref().name.get_ref() == name)
        {
            "does not check bearer tokens"
        } else {
            "is not a service of this file"
        };
        ctx.error(
            auth.span(),
            format!(
                "`auth`: {name} {what}; expected a service whose builtin checks tokens ({listed}), or \"none\" for routes open to anyone"
            ),
        );
        return None;
    }
    ctx.ok(auth.span(), "auth", ServiceName::parse(name))
        .map(GatewayAuth::Service)
}

/// The run's duration: required, above zero, at most a day.
fn run_duration(ctx: &mut Ctx<'_>, value: Option<&Value>) -> Option<Duration> {
    let value = ctx.required(value, "duration", "the simulated run time, such as \"60s\"")?;
    let duration = ctx.duration("duration", value)?;
    if duration.is_zero() || duration > limits::MAX_RUN {
        let found = format_duration(duration);
        ctx.error(
            value.span(),
            format!("`duration` must be above 0s and at most 24h, found {found}"),
        );
        return None;
    }
    Some(duration)
}

/// `[network]`: default latency and loss, and per-pair links.
fn network(ctx: &mut Ctx<'_>, raw: Option<&RawNetwork>, index: &Index) -> Option<Network> {
    let default_latency = Dist::Fixed(Duration::from_millis(1));
    let Some(raw) = raw else {
        return Some(Network {
            latency: default_latency,
            loss: Ratio::ZERO,
            links: Vec::new(),
        });
    };
    let latency = ctx.dist_or("latency", raw.latency.as_ref(), default_latency);
    let loss = ctx.ratio_or("loss", raw.loss.as_ref(), Ratio::ZERO);
    let links = faults::links(ctx, &raw.link, index);
    Some(Network {
        latency: latency?,
        loss: loss?,
        links: links?,
    })
}

/// Where validation records its diagnostics, with helpers that parse a value or report why not.
pub(crate) struct Ctx<'a> {
    locator: Locator<'a>,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Ctx<'a> {
    /// A context for one file.
    pub(crate) fn new(locator: Locator<'a>) -> Ctx<'a> {
        Ctx {
            locator,
            diagnostics: Vec::new(),
        }
    }

    /// The scenario if nothing was reported, else every diagnostic sorted by position.
    fn finish(mut self, built: Option<Scenario>) -> Result<Scenario, ScenarioError> {
        match built {
            Some(scenario) if self.diagnostics.is_empty() => Ok(scenario),
            _ => {
                if self.diagnostics.is_empty() {
                    // A validator returned None without saying why: a bug, reported rather than hidden.
                    self.error(
                        0..0,
                        "internal error: the scenario was rejected without a diagnostic",
                    );
                }
                self.diagnostics.sort_by_key(|d| (d.line, d.column));
                Err(ScenarioError::Invalid {
                    diagnostics: self.diagnostics,
                })
            }
        }
    }

    /// Records a problem at `span`.
    pub(crate) fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let diagnostic = self.locator.diagnostic(span, message.into());
        self.diagnostics.push(diagnostic);
    }

    /// The line of a byte offset, for "first defined at line N".
    pub(crate) fn line(&self, offset: usize) -> usize {
        self.locator.line(offset)
    }

    /// The value of a parse, or `None` after reporting its error prefixed with the key.
    pub(crate) fn ok<T, E: Display>(
        &mut self,
        span: Range<usize>,
        key: &str,
        result: Result<T, E>,
    ) -> Option<T> {
        result
            .map_err(|error| self.error(span, format!("`{key}`: {error}")))
            .ok()
    }

    /// A required top-level key, or `None` after reporting it missing (at the start of the file).
    pub(crate) fn required<'v, T>(
        &mut self,
        value: Option<&'v T>,
        key: &str,
        what: &str,
    ) -> Option<&'v T> {
        if value.is_none() {
            self.error(0..0, format!("missing required key `{key}` ({what})"));
        }
        value
    }

    /// A duration.
    pub(crate) fn duration(&mut self, key: &str, value: &Value) -> Option<Duration> {
        self.ok(
            value.span(),
            key,
            units::duration_from_toml(value.get_ref()),
        )
    }

    /// An optional duration within `range`, `default` when absent.
    pub(crate) fn duration_in(
        &mut self,
        key: &str,
        value: Option<&Value>,
        default: Duration,
        range: RangeInclusive<Duration>,
    ) -> Option<Duration> {
        let Some(value) = value else {
            return Some(default);
        };
        let duration = self.duration(key, value)?;
        if !range.contains(&duration) {
            let (low, high) = (
                format_duration(*range.start()),
                format_duration(*range.end()),
            );
            let found = format_duration(duration);
            self.error(
                value.span(),
                format!("`{key}` must be between {low} and {high}, found {found}"),
            );
            return None;
        }
        Some(duration)
    }

    /// A distribution.
    pub(crate) fn dist(&mut self, key: &str, value: &Value) -> Option<Dist> {
        self.ok(value.span(), key, Dist::from_toml(value.get_ref()))
    }

    /// An optional distribution, `default` when absent.
    pub(crate) fn dist_or(
        &mut self,
        key: &str,
        value: Option<&Value>,
        default: Dist,
    ) -> Option<Dist> {
        value.map_or(Some(default), |value| self.dist(key, value))
    }

    /// A ratio.
    pub(crate) fn ratio(&mut self, key: &str, value: &Value) -> Option<Ratio> {
        self.ok(value.span(), key, Ratio::from_toml(value.get_ref()))
    }

    /// An optional ratio, `default` when absent.
    pub(crate) fn ratio_or(
        &mut self,
        key: &str,
        value: Option<&Value>,
        default: Ratio,
    ) -> Option<Ratio> {
        value.map_or(Some(default), |value| self.ratio(key, value))
    }

    /// A rate; `positive` rejects zero.
    pub(crate) fn rate(&mut self, key: &str, value: &Value, positive: bool) -> Option<Rate> {
        let rate = self.ok(value.span(), key, Rate::from_toml(value.get_ref()))?;
        if positive && !rate.is_positive() {
            self.error(
                value.span(),
                format!("`{key}` must be above zero, found {rate}"),
            );
            return None;
        }
        Some(rate)
    }

    /// An optional whole number within `range`, `default` when absent.
    pub(crate) fn count(
        &mut self,
        key: &str,
        value: Option<&Int>,
        range: RangeInclusive<i64>,
        default: u32,
    ) -> Option<u32> {
        let Some(value) = value else {
            return Some(default);
        };
        let number = *value.get_ref();
        let fits = range
            .contains(&number)
            .then(|| u32::try_from(number).ok())
            .flatten();
        if fits.is_none() {
            let (low, high) = (range.start(), range.end());
            self.error(
                value.span(),
                format!("`{key}` must be between {low} and {high}, found {number}"),
            );
        }
        fits
    }

    /// A name or other string checked by `parse`.
    pub(crate) fn name<T>(
        &mut self,
        key: &str,
        text: &Text,
        parse: fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        self.ok(text.span(), key, parse(text.get_ref()))
    }

    /// Records `key` at `span` as seen, reporting a duplicate of an earlier one.
    pub(crate) fn unique(
        &mut self,
        seen: &mut BTreeMap<String, usize>,
        what: &str,
        key: String,
        span: Range<usize>,
    ) -> bool {
        if let Some(first) = seen.get(&key) {
            let line = self.line(*first);
            self.error(
                span,
                format!(
                    "duplicate {what} {} (first defined at line {line})",
                    units::quote(&key)
                ),
            );
            return false;
        }
        seen.insert(key, span.start);
        true
    }

    /// Reports a list longer than `max`.
    pub(crate) fn at_most<T>(
        &mut self,
        items: &[toml::Spanned<T>],
        max: usize,
        what: &str,
    ) -> bool {
        match items.get(max) {
            Some(extra) => {
                self.error(
                    extra.span(),
                    format!("at most {max} {what} are allowed, found {}", items.len()),
                );
                false
            }
            None => true,
        }
    }
}
