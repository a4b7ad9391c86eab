//! Validation of `[[assert]]` tables: the comparison, which requests it covers, and when.
//!
//! The text is parsed by [`assertion`](super::assertion); here the scope must name a route, load or
//! endpoint that exists and the window must lie inside the run, so an assertion can never be
//! vacuously true because it looks at nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use toml::Spanned;

use crate::units::{format_duration, quote};

use super::assertion::{parse_comparison, Assertion, Scope, Window};
use super::index::Index;
use super::model::{fault_span, limits, Fault};
use super::names::{LoadName, RouteKey};
use super::raw::{RawAssert, RawLoad, RawRoute, Text};
use super::traffic::{declared_loads, declared_routes};
use super::validate::Ctx;

/// What an assertion may refer to.
pub(crate) struct Known<'a> {
    /// The services.
    pub index: &'a Index,
    /// The raw routes.
    pub routes: &'a [Spanned<RawRoute>],
    /// The raw loads.
    pub loads: &'a [Spanned<RawLoad>],
    /// The run's duration, if valid.
    pub run: Option<Duration>,
    /// The faults, if all are valid.
    pub faults: Option<&'a [Fault]>,
    /// Whether the file has any `[[fault]]`.
    pub any_faults: bool,
    /// The faults' names, as written, in file order.
    pub fault_names: Vec<String>,
    /// `heal`, if the file has a valid one.
    pub heal: Option<Duration>,
    /// Whether the file has a `heal` key (valid or not).
    pub any_heal: bool,
}

/// The names a scope may use, worked out once.
struct Names {
    routes: BTreeSet<RouteKey>,
    loads: BTreeSet<String>,
}

/// Validates every assertion.
pub(crate) fn validate(
    ctx: &mut Ctx<'_>,
    raw: &[Spanned<RawAssert>],
    known: &Known<'_>,
) -> Option<Vec<Assertion>> {
    if !ctx.at_most(raw, limits::MAX_ASSERTIONS, "assertions") {
        return None;
    }
    let names = Names {
        routes: declared_routes(known.routes),
        loads: declared_loads(known.loads),
    };
    let assertions: Vec<Option<Assertion>> = raw
        .iter()
        .map(|assertion| assertion_of(ctx, assertion, known, &names))
        .collect();
    assertions.into_iter().collect()
}

/// One `[[assert]]` table.
fn assertion_of(
    ctx: &mut Ctx<'_>,
    spanned: &Spanned<RawAssert>,
    known: &Known<'_>,
    names: &Names,
) -> Option<Assertion> {
    let raw = spanned.get_ref();
    let comparison = ctx.ok(
        raw.that.span(),
        "that",
        parse_comparison(raw.that.get_ref()),
    );
    let scope = scope(ctx, spanned, known.index, names);
    let window = raw
        .during
        .as_ref()
        .map_or(Some(Window::All), |during| window(ctx, during, known));
    let comparison = comparison?;
    Some(Assertion {
        text: raw.that.get_ref().trim().to_string(),
        metric: comparison.metric,
        op: comparison.op,
        bound: comparison.bound,
        scope: scope?,
        window: window?,
    })
}

/// At most one of `route`, `load` and `endpoint`, naming something that exists.
fn scope(
    ctx: &mut Ctx<'_>,
    spanned: &Spanned<RawAssert>,
    index: &Index,
    names: &Names,
) -> Option<Scope> {
    let raw = spanned.get_ref();
    match (&raw.route, &raw.load, &raw.endpoint) {
        (None, None, None) => Some(Scope::All),
        (Some(route), None, None) => route_scope(ctx, route, names),
        (None, Some(load), None) => load_scope(ctx, load, names),
        (None, None, Some(endpoint)) => ctx
            .ok(
                endpoint.span(),
                "endpoint",
                index.resolve_endpoint(endpoint.get_ref()),
            )
            .map(Scope::Endpoint),
        _ => {
            ctx.error(
                spanned.span(),
                "an assertion takes at most one of `route`, `load` and `endpoint`",
            );
            None
        }
    }
}

/// A route scope: a declared route.
fn route_scope(ctx: &mut Ctx<'_>, route: &Text, names: &Names) -> Option<Scope> {
    let key = ctx.name("route", route, RouteKey::parse)?;
    if !names.routes.contains(&key) {
        let declared: Vec<String> = names.routes.iter().map(RouteKey::to_string).collect();
        let message = format!(
            "unknown route {}; declared routes: {}",
            quote(&key.to_string()),
            listed(declared)
        );
        ctx.error(route.span(), message);
        return None;
    }
    Some(Scope::Route(key))
}

/// A load scope: a load's name (its route or rpc when it has no `name`).
fn load_scope(ctx: &mut Ctx<'_>, load: &Text, names: &Names) -> Option<Scope> {
    if !names.loads.contains(load.get_ref()) {
        let declared: Vec<String> = names.loads.iter().cloned().collect();
        let message = format!(
            "unknown load {}; loads: {}",
            quote(load.get_ref()),
            listed(declared)
        );
        ctx.error(load.span(), message);
        return None;
    }
    ctx.name("load", load, LoadName::parse).map(Scope::Load)
}

/// Names joined with ", ", or "(none)".
fn listed(names: Vec<String>) -> String {
    if names.is_empty() {
        return "(none)".into();
    }
    names.join(", ")
}

/// `during`: a window inside the run; fault windows need faults, and a non-empty after-faults part.
fn window(ctx: &mut Ctx<'_>, during: &Text, known: &Known<'_>) -> Option<Window> {
    let window = ctx.ok(during.span(), "during", Window::parse(during.get_ref()))?;
    let problem = match (&window, known.run) {
        (Window::Range { end, .. }, Some(run)) if *end > run => Some(format!(
            "window {} ends after the run: expected an end at most the duration {}",
            quote(during.get_ref()),
            format_duration(run)
        )),
        (Window::Faults | Window::AfterFaults | Window::BeforeFaults, _) if !known.any_faults => {
            Some(format!(
                "window {} needs at least one [[fault]]",
                quote(during.get_ref())
            ))
        }
        (Window::AfterFaults, Some(run)) => after_faults_problem(known.faults, run),
        (Window::BeforeFaults, Some(run)) => before_faults_problem(known.faults, run),
        (Window::AfterHeal(_), _) if !known.any_heal => Some(format!(
            "window {} needs `heal = \"<duration>\"` at the top of the file",
            quote(during.get_ref())
        )),
        (Window::AfterHeal(after), Some(run)) => known
            .heal
            .filter(|heal| *heal + *after >= run)
            .map(|heal| {
                format!(
                    "window {} is empty: the heal at {} plus {} is not before the end of the run ({})",
                    quote(during.get_ref()),
                    format_duration(heal),
                    format_duration(*after),
                    format_duration(run)
                )
            }),
        (Window::Fault(name), _) if !known.fault_names.contains(name) => Some(format!(
            "no [[fault]] is named {}; named faults: {}",
            quote(name),
            if known.fault_names.is_empty() {
                "(none: give a fault `name = \"...\"`)".to_string()
            } else {
                known.fault_names.join(", ")
            }
        )),
        _ => None,
    };
    match problem {
        Some(message) => {
            ctx.error(during.span(), format!("`during`: {message}"));
            None
        }
        None => Some(window),
    }
}

/// Why the part of the run before the faults is empty, if it is.
fn before_faults_problem(faults: Option<&[Fault]>, run: Duration) -> Option<String> {
    let span = fault_span(faults?, run)?;
    (span.start.is_zero())
        .then(|| "window \"before_faults\" is empty: the first fault starts at 0s".to_string())
}

/// Why the part of the run after the faults is empty, if it is.
fn after_faults_problem(faults: Option<&[Fault]>, run: Duration) -> Option<String> {
    let span = fault_span(faults?, run)?;
    (span.end >= run).then(|| {
        "window \"after_faults\" is empty: the last fault lasts to the end of the run; give it a `duration`".to_string()
    })
}
