//! Validation of `[[service]]` tables: placement, capacity, endpoints and their downstream calls.
//!
//! Besides each field, this checks what only the whole set of services can tell: names are unique,
//! builtins are registered, calls reach endpoints that exist with a fanout the callee can
//! serve, and the calls between synthetic endpoints form no cycle (a cycle would recurse until
//! every request's deadline ran out, which is a mistake in the file, not a behaviour to measure).

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use crate::dist::Dist;
use crate::units::{describe_value, format_duration, quote};

use super::index::Index;
use super::mechanisms;
use super::model::{limits, Balancer, Call, Endpoint, Fanout, OnError, Service, ServiceBody, Wait};
use super::names::{BuiltinName, EndpointName, ServiceName};
use super::raw::{RawCall, RawEndpoint, RawService, Text, Value};
use super::validate::Ctx;
use super::Builtins;

/// Handlers per instance when the file gives none.
const DEFAULT_WORKERS: u32 = 16;
/// Queue length per instance when the file gives none.
const DEFAULT_QUEUE: u32 = 64;
/// Response size when the file gives none.
const DEFAULT_RESPONSE_BYTES: u32 = 64;

/// Validates every service, and the call graph between them.
pub(crate) fn validate(
    ctx: &mut Ctx<'_>,
    raw: &[Spanned<RawService>],
    index: &Index,
    builtins: &dyn Builtins,
) -> Option<Vec<Service>> {
    if !ctx.at_most(raw, limits::MAX_SERVICES, "services") {
        return None;
    }
    let mut seen = BTreeMap::new();
    let mut total_instances = 0u64;
    let mut services = Vec::with_capacity(raw.len());
    for service in raw {
        let name = service.get_ref().name.get_ref().clone();
        let unique = ctx.unique(
            &mut seen,
            "service name",
            name,
            service.get_ref().name.span(),
        );
        let validated = validate_service(ctx, service.get_ref(), index, builtins);
        if let Some(validated) = &validated {
            total_instances = total_instances.saturating_add(u64::from(validated.instances));
            if total_instances > limits::MAX_TOTAL_INSTANCES {
                let max = limits::MAX_TOTAL_INSTANCES;
                ctx.error(
                    service.span(),
                    format!("the services have more than {max} instances in all"),
                );
            }
        }
        services.push(validated.filter(|_| unique));
    }
    let acyclic = report_cycles(ctx, raw, index);
    let services: Option<Vec<Service>> = services.into_iter().collect();
    services.filter(|_| acyclic && total_instances <= limits::MAX_TOTAL_INSTANCES)
}

/// One `[[service]]` table.
fn validate_service(
    ctx: &mut Ctx<'_>,
    raw: &RawService,
    index: &Index,
    builtins: &dyn Builtins,
) -> Option<Service> {
    let name = ctx.name("name", &raw.name, ServiceName::parse);
    let instances = ctx.count(
        "instances",
        raw.instances.as_ref(),
        1..=limits::MAX_INSTANCES,
        1,
    );
    let nodes = nodes(ctx, raw, instances);
    let workers = ctx.count(
        "workers",
        raw.workers.as_ref(),
        1..=limits::MAX_WORKERS,
        DEFAULT_WORKERS,
    );
    let queue = ctx.count(
        "queue",
        raw.queue.as_ref(),
        0..=limits::MAX_QUEUE,
        DEFAULT_QUEUE,
    );
    let balancer = raw
        .balancer
        .as_ref()
        .map_or(Some(Balancer::RoundRobin), |text| balancer(ctx, text));
    let breaker = mechanisms::breaker(ctx, raw.breaker.as_ref());
    let retry = mechanisms::retry(ctx, raw.retry.as_ref());
    let hedge = mechanisms::hedge(ctx, raw.hedge.as_ref());
    let limit = mechanisms::limit(ctx, raw.limit.as_ref());
    let body = match &raw.builtin {
        Some(builtin) => builtin_body(ctx, raw, builtin, builtins, index),
        None => synthetic_body(ctx, &raw.endpoint, index),
    };
    Some(Service {
        name: name?,
        instances: instances?,
        nodes: nodes?,
        workers: workers?,
        queue: queue?,
        balancer: balancer?,
        eject: raw.eject.unwrap_or(false),
        breaker: breaker?,
        retry: retry?,
        hedge: hedge?,
        limit: limit?,
        body: body?,
    })
}

/// Hosts to spread the instances over: `1..=instances`, by default one per instance.
fn nodes(ctx: &mut Ctx<'_>, raw: &RawService, instances: Option<u32>) -> Option<u32> {
    let instances = instances?;
    let Some(nodes) = &raw.nodes else {
        return Some(instances);
    };
    let count = *nodes.get_ref();
    if !(1..=i64::from(instances)).contains(&count) {
        let message = format!(
            "`nodes` must be between 1 and the service's {instances} instances, found {count}"
        );
        ctx.error(nodes.span(), message);
        return None;
    }
    u32::try_from(count).ok()
}

/// `balancer = "round_robin" | "p2c" | "peak_ewma"`.
fn balancer(ctx: &mut Ctx<'_>, text: &Text) -> Option<Balancer> {
    match text.get_ref().as_str() {
        "round_robin" => Some(Balancer::RoundRobin),
        "p2c" => Some(Balancer::PowerOfTwoChoices),
        "peak_ewma" => Some(Balancer::PeakEwma),
        other => {
            let message = format!(
                "`balancer`: expected \"round_robin\", \"p2c\" or \"peak_ewma\", found {}",
                quote(other)
            );
            ctx.error(text.span(), message);
            None
        }
    }
}

/// A builtin service: it must be registered and may not declare endpoints of its own.
fn builtin_body(
    ctx: &mut Ctx<'_>,
    raw: &RawService,
    builtin: &Text,
    builtins: &dyn Builtins,
    index: &Index,
) -> Option<ServiceBody> {
    if let Some(endpoint) = raw.endpoint.first() {
        let message = format!(
            "service {} is builtin {}: its endpoints come from the builtin, so it may not have [[service.endpoint]] tables",
            raw.name.get_ref(),
            quote(builtin.get_ref())
        );
        ctx.error(endpoint.span(), message);
    }
    let name = ctx.name("builtin", builtin, BuiltinName::parse)?;
    let Some(endpoints) = builtins.builtin_endpoints(name.as_str()) else {
        ctx.error(
            builtin.span(),
            format!("unknown builtin {}", quote(name.as_str())),
        );
        return None;
    };
    for needed in builtins.builtin_calls(name.as_str()) {
        if !index.has(&needed) {
            let message = format!(
                "builtin {} calls {}, which this scenario does not declare: add a [[service]] named {}",
                quote(name.as_str()),
                quote(&needed),
                quote(&needed)
            );
            ctx.error(builtin.span(), message);
        }
    }
    let endpoints: Result<Vec<EndpointName>, String> =
        endpoints.iter().map(|e| EndpointName::parse(e)).collect();
    let endpoints = ctx.ok(builtin.span(), "builtin", endpoints)?;
    raw.endpoint.is_empty().then_some(ServiceBody::Builtin {
        builtin: name,
        endpoints,
    })
}

/// A synthetic service's endpoints: unique names, each validated.
fn synthetic_body(
    ctx: &mut Ctx<'_>,
    raw: &[Spanned<RawEndpoint>],
    index: &Index,
) -> Option<ServiceBody> {
    if !ctx.at_most(raw, limits::MAX_ENDPOINTS, "endpoints per service") {
        return None;
    }
    let mut seen = BTreeMap::new();
    let endpoints: Vec<Option<Endpoint>> = raw
        .iter()
        .map(|endpoint| {
            let name = endpoint.get_ref().name.get_ref().clone();
            let unique = ctx.unique(
                &mut seen,
                "endpoint name",
                name,
                endpoint.get_ref().name.span(),
            );
            endpoint_of(ctx, endpoint.get_ref(), index).filter(|_| unique)
        })
        .collect();
    let endpoints: Option<Vec<Endpoint>> = endpoints.into_iter().collect();
    Some(ServiceBody::Synthetic {
        endpoints: endpoints?,
    })
}

/// One `[[service.endpoint]]` table.
fn endpoint_of(ctx: &mut Ctx<'_>, raw: &RawEndpoint, index: &Index) -> Option<Endpoint> {
    let name = ctx.name("name", &raw.name, EndpointName::parse);
    let time = ctx.dist_or("time", raw.time.as_ref(), Dist::ZERO);
    let response_bytes = ctx.count(
        "response_bytes",
        raw.response_bytes.as_ref(),
        0..=limits::MAX_BODY_BYTES,
        DEFAULT_RESPONSE_BYTES,
    );
    let on_error = raw
        .on_error
        .as_ref()
        .map_or(Some(OnError::Fail), |text| on_error(ctx, text));
    let calls = if ctx.at_most(&raw.calls, limits::MAX_CALLS, "calls per endpoint") {
        let calls: Vec<Option<Call>> = raw
            .calls
            .iter()
            .map(|call| call_of(ctx, call.get_ref(), index))
            .collect();
        calls.into_iter().collect()
    } else {
        None
    };
    Some(Endpoint {
        name: name?,
        time: time?,
        response_bytes: response_bytes?,
        calls: calls?,
        on_error: on_error?,
        idempotent: raw.idempotent.unwrap_or(false),
    })
}

/// `on_error = "fail" | "ignore"`.
fn on_error(ctx: &mut Ctx<'_>, text: &Text) -> Option<OnError> {
    match text.get_ref().as_str() {
        "fail" => Some(OnError::Fail),
        "ignore" => Some(OnError::Ignore),
        other => {
            ctx.error(
                text.span(),
                format!(
                    "`on_error`: expected \"fail\" or \"ignore\", found {}",
                    quote(other)
                ),
            );
            None
        }
    }
}

/// One downstream call: its callee, fanout, wait and timeout.
fn call_of(ctx: &mut Ctx<'_>, raw: &RawCall, index: &Index) -> Option<Call> {
    let to = ctx.ok(
        raw.to.span(),
        "to",
        index.resolve_endpoint(raw.to.get_ref()),
    );
    let callee_instances = to.as_ref().and_then(|to| index.instances(&to.service));
    let fanout = raw.fanout.as_ref().map_or(Some(Fanout::Count(1)), |value| {
        fanout(ctx, value, callee_instances)
    });
    let wait = match (&raw.wait, fanout) {
        (None, _) => Some(Wait::All),
        (Some(text), Some(fanout)) => wait(ctx, text, fanout, callee_instances),
        (Some(_), None) => None,
    };
    let timeout = match &raw.timeout {
        None => Some(None),
        Some(value) => positive_deadline(ctx, "timeout", value).map(Some),
    };
    Some(Call {
        to: to?,
        fanout: fanout?,
        wait: wait?,
        timeout: timeout?,
    })
}

/// A deadline or timeout: above zero and at most an hour.
pub(crate) fn positive_deadline(ctx: &mut Ctx<'_>, key: &str, value: &Value) -> Option<Duration> {
    let low = Duration::from_nanos(1);
    let duration = ctx.duration(key, value)?;
    if !(low..=limits::MAX_DEADLINE).contains(&duration) {
        let found = format_duration(duration);
        ctx.error(
            value.span(),
            format!("`{key}` must be above 0s and at most 1h, found {found}"),
        );
        return None;
    }
    Some(duration)
}

/// `fanout = "all"` or a count from 1 to the callee's instances.
fn fanout(ctx: &mut Ctx<'_>, value: &Value, callee_instances: Option<u32>) -> Option<Fanout> {
    let fanout = match value.get_ref() {
        toml::Value::String(text) if text == "all" => Some(Fanout::All),
        toml::Value::Integer(count) => u32::try_from(*count)
            .ok()
            .filter(|count| *count >= 1)
            .map(Fanout::Count),
        _ => None,
    };
    let Some(fanout) = fanout else {
        let found = describe_value(value.get_ref());
        ctx.error(
            value.span(),
            format!("`fanout`: expected \"all\" or a count of at least 1, found {found}"),
        );
        return None;
    };
    match (fanout, callee_instances) {
        (Fanout::Count(count), Some(instances)) if count > instances => {
            let message =
                format!("`fanout` of {count} is more than the callee's {instances} instances");
            ctx.error(value.span(), message);
            None
        }
        _ => Some(fanout),
    }
}

/// `wait = "all" | "first" | "any:K"` with K from 1 to the number of instances called.
fn wait(
    ctx: &mut Ctx<'_>,
    text: &Text,
    fanout: Fanout,
    callee_instances: Option<u32>,
) -> Option<Wait> {
    let parsed = match text.get_ref().as_str() {
        "all" => Some(Wait::All),
        "first" => Some(Wait::First),
        other => other
            .strip_prefix("any:")
            .and_then(|k| k.parse::<u32>().ok())
            .filter(|k| *k >= 1)
            .map(Wait::Any),
    };
    let Some(wait) = parsed else {
        let message = format!(
            "`wait`: expected \"all\", \"first\" or \"any:K\" with K at least 1, found {}",
            quote(text.get_ref())
        );
        ctx.error(text.span(), message);
        return None;
    };
    let called = match fanout {
        Fanout::Count(count) => Some(count),
        Fanout::All => callee_instances,
    };
    match (wait, called) {
        (Wait::Any(k), Some(called)) if k > called => {
            let plural = if called == 1 { "" } else { "s" };
            let message = format!(
                "`wait` for any {k} replies, but the call goes to {called} instance{plural}"
            );
            ctx.error(text.span(), message);
            None
        }
        _ => Some(wait),
    }
}

/// The call graph between synthetic endpoints: node "service.endpoint" to its callees.
type Graph = BTreeMap<String, Vec<(String, Range<usize>)>>;

/// Reports every call that closes a cycle; `true` when there is none.
fn report_cycles(ctx: &mut Ctx<'_>, raw: &[Spanned<RawService>], index: &Index) -> bool {
    let graph = call_graph(raw, index);
    let cycles = find_cycles(&graph);
    for (span, path) in &cycles {
        ctx.error(
            span.clone(),
            format!("calls form a cycle: {}", path.join(" -> ")),
        );
    }
    cycles.is_empty()
}

/// The resolvable calls of every synthetic endpoint.
fn call_graph(raw: &[Spanned<RawService>], index: &Index) -> Graph {
    let mut graph = Graph::new();
    let synthetic = raw
        .iter()
        .map(Spanned::get_ref)
        .filter(|service| service.builtin.is_none());
    for service in synthetic {
        for endpoint in service.endpoint.iter().map(Spanned::get_ref) {
            let node = format!("{}.{}", service.name.get_ref(), endpoint.name.get_ref());
            let edges = endpoint.calls.iter().filter_map(|call| {
                let to = &call.get_ref().to;
                let callee = index.resolve_endpoint(to.get_ref()).ok()?;
                Some((callee.to_string(), to.span()))
            });
            graph.entry(node).or_default().extend(edges);
        }
    }
    graph
}

/// Depth-first search without recursion; each edge back into the current path is one cycle,
/// returned with the path it closes.
fn find_cycles(graph: &Graph) -> Vec<(Range<usize>, Vec<String>)> {
    let mut finished: BTreeMap<&str, bool> = BTreeMap::new();
    let mut cycles = Vec::new();
    for root in graph.keys() {
        if finished.contains_key(root.as_str()) {
            continue;
        }
        let mut path: Vec<(&str, usize)> = vec![(root.as_str(), 0)];
        finished.insert(root, false);
        while let Some(&(node, next)) = path.last() {
            let edge = graph.get(node).and_then(|edges| edges.get(next));
            let Some((callee, span)) = edge else {
                finished.insert(node, true);
                path.pop();
                continue;
            };
            if let Some(top) = path.last_mut() {
                top.1 += 1;
            }
            match finished.get(callee.as_str()) {
                Some(false) => {
                    let start = path.iter().position(|(n, _)| *n == callee).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        path[start..].iter().map(|(n, _)| n.to_string()).collect();
                    cycle.push(callee.clone());
                    cycles.push((span.clone(), cycle));
                }
                None if graph.contains_key(callee) => {
                    finished.insert(callee, false);
                    path.push((callee, 0));
                }
                _ => {}
            }
        }
    }
    cycles
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &str)]) -> Graph {
        let mut graph = Graph::new();
        for (from, to) in edges {
            graph
                .entry(from.to_string())
                .or_default()
                .push((to.to_string(), 0..0));
            graph.entry(to.to_string()).or_default();
        }
        graph
    }

    #[test]
    fn cycles_are_found_with_their_path() {
        let cycles = find_cycles(&graph(&[("a.x", "b.y"), ("b.y", "c.z"), ("c.z", "a.x")]));
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].1, vec!["a.x", "b.y", "c.z", "a.x"]);
        assert_eq!(find_cycles(&graph(&[("a.x", "a.x")])).len(), 1);
    }

    #[test]
    fn diamonds_are_not_cycles() {
        let diamond = graph(&[
            ("a.x", "b.y"),
            ("a.x", "c.z"),
            ("b.y", "d.w"),
            ("c.z", "d.w"),
        ]);
        assert!(find_cycles(&diamond).is_empty());
    }
}
