//! Validation of the traffic: `[[route]]` gateway routes and `[[load]]` open-loop loads.
//!
//! A load enters either over RPC at an endpoint or over HTTP on a declared route; its rate profile
//! (start rate, then k6-style stages) and its window must fit inside the run, because a load that
//! would outlive the run measures nothing and usually means a typo in a duration.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use toml::Spanned;

use crate::units::{format_duration, quote};

use super::index::Index;
use super::model::{limits, Arrival, Load, LoadTarget, Route, Stage, TokenUse};
use super::names::{LoadName, RouteKey};
use super::raw::{RawLoad, RawRoute, RawStage, Text};
use super::services::positive_deadline;
use super::validate::Ctx;

/// A request's deadline when the load gives none.
const DEFAULT_DEADLINE: Duration = Duration::from_secs(1);
/// Request body size when the load gives none.
const DEFAULT_BODY_BYTES: u32 = 64;

/// Validates the gateway routes: well formed, unique, each to an endpoint that exists.
pub(crate) fn routes(
    ctx: &mut Ctx<'_>,
    raw: &[Spanned<RawRoute>],
    index: &Index,
) -> Option<Vec<Route>> {
    if !ctx.at_most(raw, limits::MAX_ROUTES, "routes") {
        return None;
    }
    let mut seen = BTreeMap::new();
    let routes: Vec<Option<Route>> = raw
        .iter()
        .map(|route| {
            let route = route.get_ref();
            let key = ctx.name("route", &route.route, RouteKey::parse);
            let unique = key.as_ref().is_some_and(|key| {
                ctx.unique(&mut seen, "route", key.to_string(), route.route.span())
            });
            let to = ctx.ok(
                route.to.span(),
                "to",
                index.resolve_endpoint(route.to.get_ref()),
            );
            let status = match &route.status {
                None => Some(200),
                Some(status) => ctx.ok(status.span(), "status", success_status(*status.get_ref())),
            };
            Some(Route {
                key: key?,
                to: to?,
                status: status?,
            })
            .filter(|_| unique)
        })
        .collect();
    routes.into_iter().collect()
}

/// A route's success status: a 2xx code.
fn success_status(status: i64) -> Result<u16, String> {
    match u16::try_from(status) {
        Ok(s) if (200..300).contains(&s) => Ok(s),
        _ => Err(format!(
            "expected a success status from 200 to 299, found {status}"
        )),
    }
}

/// The routes the file declares, as far as they parse: what loads and assertions may name.
pub(crate) fn declared_routes(raw: &[Spanned<RawRoute>]) -> BTreeSet<RouteKey> {
    raw.iter()
        .filter_map(|route| RouteKey::parse(route.get_ref().route.get_ref()).ok())
        .collect()
}

/// The names the loads go by, as far as they can be told: what assertions may name.
pub(crate) fn declared_loads(raw: &[Spanned<RawLoad>]) -> BTreeSet<String> {
    raw.iter()
        .filter_map(|load| load_name_text(load.get_ref()))
        .collect()
}

/// A load's name: as given, else its route (normalised) or rpc as written.
fn load_name_text(raw: &RawLoad) -> Option<String> {
    load_name(
        raw.name.as_ref().map(|n| n.get_ref().as_str()),
        raw.rpc.as_ref().map(|r| r.get_ref().as_str()),
        raw.route.as_ref().map(|r| r.get_ref().as_str()),
    )
}

/// The name a load goes by, from its `name`, `rpc` and `route` keys as written: the name if
/// given, else its route (normalised) or its rpc; `None` when it has both or neither target.
pub(crate) fn load_name(
    name: Option<&str>,
    rpc: Option<&str>,
    route: Option<&str>,
) -> Option<String> {
    if let Some(name) = name {
        return Some(name.to_string());
    }
    match (rpc, route) {
        (Some(rpc), None) => Some(rpc.to_string()),
        (None, Some(route)) => {
            Some(RouteKey::parse(route).map_or_else(|_| route.to_string(), |key| key.to_string()))
        }
        _ => None,
    }
}

/// Validates every load.
pub(crate) fn loads(
    ctx: &mut Ctx<'_>,
    raw: &[Spanned<RawLoad>],
    raw_routes: &[Spanned<RawRoute>],
    index: &Index,
    run: Option<Duration>,
) -> Option<Vec<Load>> {
    if !ctx.at_most(raw, limits::MAX_LOADS, "loads") {
        return None;
    }
    let routes = declared_routes(raw_routes);
    let mut seen = BTreeMap::new();
    let loads: Vec<Option<Load>> = raw
        .iter()
        .map(|load| {
            let unique = match load_name_text(load.get_ref()) {
                Some(name) => ctx.unique(&mut seen, "load name", name, load.span()),
                None => true,
            };
            let known = Known {
                index,
                routes: &routes,
            };
            load_of(ctx, load, &known, run).filter(|_| unique)
        })
        .collect();
    loads.into_iter().collect()
}

/// What a load may refer to.
struct Known<'a> {
    index: &'a Index,
    routes: &'a BTreeSet<RouteKey>,
}

/// One `[[load]]` table.
fn load_of(
    ctx: &mut Ctx<'_>,
    spanned: &Spanned<RawLoad>,
    known: &Known<'_>,
    run: Option<Duration>,
) -> Option<Load> {
    let raw = spanned.get_ref();
    let target = load_target(ctx, spanned, known);
    let name = match &raw.name {
        Some(name) => ctx.name("name", name, LoadName::parse),
        None => target
            .as_ref()
            .and_then(|_| load_name_text(raw))
            .and_then(|n| LoadName::parse(&n).ok()),
    };
    let rate = ctx.rate("rate", &raw.rate, true);
    let stages = stages(ctx, &raw.stages);
    let arrival = raw
        .arrival
        .as_ref()
        .map_or(Some(Arrival::Poisson), |text| arrival(ctx, text));
    let deadline = raw
        .deadline
        .as_ref()
        .map_or(Some(DEFAULT_DEADLINE), |value| {
            positive_deadline(ctx, "deadline", value)
        });
    let window = window(ctx, raw, run);
    let body_bytes = ctx.count(
        "body_bytes",
        raw.body_bytes.as_ref(),
        0..=limits::MAX_BODY_BYTES,
        DEFAULT_BODY_BYTES,
    );
    let clients = ctx.count("clients", raw.clients.as_ref(), 1..=limits::MAX_CLIENTS, 1);
    let token = token_use(ctx, raw, target.as_ref());
    let (start, stop) = window?;
    let stages = stages?;
    if !stages_fit(ctx, spanned, &stages, stop - start) {
        return None;
    }
    Some(Load {
        name: name?,
        target: target?,
        rate: rate?,
        stages,
        arrival: arrival?,
        deadline: deadline?,
        start,
        stop,
        body_bytes: body_bytes?,
        clients: clients?,
        token: token?,
    })
}

/// `token`: "valid" (default), "none" or "invalid"; only for route loads.
fn token_use(ctx: &mut Ctx<'_>, raw: &RawLoad, target: Option<&LoadTarget>) -> Option<TokenUse> {
    let Some(text) = &raw.token else {
        return Some(TokenUse::Valid);
    };
    if matches!(target, Some(LoadTarget::Rpc(_))) {
        ctx.error(
            text.span(),
            "`token` applies to route loads only: an rpc load does not pass the gateway",
        );
        return None;
    }
    match text.get_ref().as_str() {
        "valid" => Some(TokenUse::Valid),
        "none" => Some(TokenUse::Missing),
        "invalid" => Some(TokenUse::Invalid),
        other => {
            ctx.error(
                text.span(),
                format!(
                    "`token`: expected \"valid\", \"none\" or \"invalid\", found {}",
                    quote(other)
                ),
            );
            None
        }
    }
}

/// Exactly one of `rpc` (an endpoint) and `route` (a declared gateway route).
fn load_target(
    ctx: &mut Ctx<'_>,
    spanned: &Spanned<RawLoad>,
    known: &Known<'_>,
) -> Option<LoadTarget> {
    let raw = spanned.get_ref();
    match (&raw.rpc, &raw.route) {
        (Some(rpc), None) => ctx
            .ok(
                rpc.span(),
                "rpc",
                known.index.resolve_endpoint(rpc.get_ref()),
            )
            .map(LoadTarget::Rpc),
        (None, Some(route)) => route_target(ctx, route, known.routes).map(LoadTarget::Route),
        (found_rpc, _) => {
            let found = if found_rpc.is_some() {
                "both"
            } else {
                "neither"
            };
            let message = format!("a load needs exactly one of `rpc` (an endpoint) and `route` (a [[route]]), found {found}");
            ctx.error(spanned.span(), message);
            None
        }
    }
}

/// A load's route: well formed and declared by a `[[route]]`.
fn route_target(ctx: &mut Ctx<'_>, route: &Text, routes: &BTreeSet<RouteKey>) -> Option<RouteKey> {
    let key = ctx.name("route", route, RouteKey::parse)?;
    if !routes.contains(&key) {
        let declared: Vec<String> = routes.iter().map(RouteKey::to_string).collect();
        let declared = if declared.is_empty() {
            "(none)".to_string()
        } else {
            declared.join(", ")
        };
        ctx.error(
            route.span(),
            format!(
                "no [[route]] matches {}; declared routes: {declared}",
                quote(&key.to_string())
            ),
        );
        return None;
    }
    Some(key)
}

/// The stages of a load: each a duration and a target rate (zero allowed: a ramp down).
fn stages(ctx: &mut Ctx<'_>, raw: &[Spanned<RawStage>]) -> Option<Vec<Stage>> {
    if !ctx.at_most(raw, limits::MAX_STAGES, "stages per load") {
        return None;
    }
    let stages: Vec<Option<Stage>> = raw
        .iter()
        .map(|stage| {
            let stage = stage.get_ref();
            let duration = ctx.duration("duration", &stage.duration);
            let target = ctx.rate("target", &stage.target, false);
            Some(Stage {
                duration: duration?,
                target: target?,
            })
        })
        .collect();
    stages.into_iter().collect()
}

/// Whether the stages end by the time the load stops.
fn stages_fit(
    ctx: &mut Ctx<'_>,
    spanned: &Spanned<RawLoad>,
    stages: &[Stage],
    length: Duration,
) -> bool {
    let total = stages.iter().try_fold(Duration::ZERO, |total, stage| {
        total.checked_add(stage.duration)
    });
    match total {
        Some(total) if total <= length => true,
        _ => {
            let total = total.map_or_else(|| "too long".to_string(), format_duration);
            let message = format!(
                "the stages last {total} but the load runs for {}; expected stages that end by `stop`",
                format_duration(length)
            );
            let span = spanned
                .get_ref()
                .stages
                .first()
                .map_or(spanned.span(), Spanned::span);
            ctx.error(span, message);
            false
        }
    }
}

/// `arrival = "poisson" | "uniform"`.
fn arrival(ctx: &mut Ctx<'_>, text: &Text) -> Option<Arrival> {
    match text.get_ref().as_str() {
        "poisson" => Some(Arrival::Poisson),
        "uniform" => Some(Arrival::Uniform),
        other => {
            ctx.error(
                text.span(),
                format!(
                    "`arrival`: expected \"poisson\" or \"uniform\", found {}",
                    quote(other)
                ),
            );
            None
        }
    }
}

/// `start` and `stop`: `0 <= start < stop <= run`.
fn window(ctx: &mut Ctx<'_>, raw: &RawLoad, run: Option<Duration>) -> Option<(Duration, Duration)> {
    let start = raw
        .start
        .as_ref()
        .map_or(Some(Duration::ZERO), |value| ctx.duration("start", value));
    let stop = raw
        .stop
        .as_ref()
        .map_or(run, |value| ctx.duration("stop", value));
    let (start, stop, run) = (start?, stop?, run?);
    let run_text = format_duration(run);
    if start >= run {
        let span = raw.start.as_ref().map_or(0..0, Spanned::span);
        let message = format!(
            "`start` {} is outside the run: expected less than the duration {run_text}",
            format_duration(start)
        );
        ctx.error(span, message);
        return None;
    }
    if stop <= start || stop > run {
        let span = raw.stop.as_ref().map_or(0..0, Spanned::span);
        let message = format!(
            "`stop` {} is outside the load's window: expected after `start` {} and at most the duration {run_text}",
            format_duration(stop),
            format_duration(start)
        );
        ctx.error(span, message);
        return None;
    }
    Some((start, stop))
}
