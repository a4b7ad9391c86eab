//! The route table: `METHOD /path/:param` -> `service.endpoint`, with a success status.
//!
//! Routes are tried in the order they were added and the first whose method and pattern match
//! wins, so the outcome never depends on a hash order. A path that some route's pattern matches,
//! but under another method, is told apart from a path nothing matches: the first is a 405 with
//! the methods that would work, the second a 404. Segments are compared as sent, not
//! percent-decoded, and a parameter never matches an empty segment.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{Method, StatusCode};

use crate::framework::Call;

/// Why a route could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The pattern does not start with `/`.
    #[error("pattern {0:?} must start with '/'")]
    NotAbsolute(String),
    /// A segment is empty (`//`, or a trailing `/` after the root).
    #[error("pattern {0:?} has an empty segment")]
    EmptySegment(String),
    /// A `:` with no name after it.
    #[error("pattern {0:?} has a parameter with no name")]
    UnnamedParam(String),
    /// The same parameter twice.
    #[error("pattern {pattern:?} names parameter {param:?} twice")]
    DuplicateParam {
        /// The pattern.
        pattern: String,
        /// The repeated name.
        param: String,
    },
    /// The success status is not a 2xx.
    #[error("success status {0} is not 2xx")]
    NotSuccess(u16),
    /// The same method and pattern twice in one table.
    #[error("route {method} {pattern} is defined twice")]
    Duplicate {
        /// The method.
        method: Method,
        /// The pattern.
        pattern: String,
    },
}

/// One segment of a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// A parsed path pattern such as `/accounts/:id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    segments: Vec<Segment>,
}

impl Pattern {
    /// Parses `text`: `/`-separated literal segments and `:name` parameters.
    pub fn parse(text: &str) -> Result<Pattern, RouteError> {
        let rest = text
            .strip_prefix('/')
            .ok_or_else(|| RouteError::NotAbsolute(text.to_string()))?;
        let mut segments = Vec::new();
        for part in rest.split('/').filter(|_| !rest.is_empty()) {
            segments.push(parse_segment(text, part, &segments)?);
        }
        Ok(Pattern {
            text: text.to_string(),
            segments,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parameters if `path` matches, by name.
    fn matches(&self, path: &[&str]) -> Option<BTreeMap<String, String>> {
        if path.len() != self.segments.len() {
            return None;
        }
        let mut params = BTreeMap::new();
        for (seg, part) in self.segments.iter().zip(path) {
            match seg {
                Segment::Literal(lit) if lit == part => {}
                Segment::Param(name) if !part.is_empty() => {
                    params.insert(name.clone(), (*part).to_string());
                }
                _ => return None,
            }
        }
        Some(params)
    }
}

fn parse_segment(text: &str, part: &str, seen: &[Segment]) -> Result<Segment, RouteError> {
    if part.is_empty() {
        return Err(RouteError::EmptySegment(text.to_string()));
    }
    let Some(name) = part.strip_prefix(':') else {
        return Ok(Segment::Literal(part.to_string()));
    };
    if name.is_empty() {
        return Err(RouteError::UnnamedParam(text.to_string()));
    }
    if seen.contains(&Segment::Param(name.to_string())) {
        return Err(RouteError::DuplicateParam {
            pattern: text.to_string(),
            param: name.to_string(),
        });
    }
    Ok(Segment::Param(name.to_string()))
}

/// One route: a method and pattern, the RPC it becomes, and the status of a success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    method: Method,
    pattern: Pattern,
    // Shared with every call the route makes (`Call::shared`), not copied per request.
    service: Arc<str>,
    endpoint: Arc<str>,
    status: StatusCode,
}

impl Route {
    /// `method pattern` -> `service.endpoint`, answering 200 on success.
    pub fn new(
        method: Method,
        pattern: &str,
        service: &str,
        endpoint: &str,
    ) -> Result<Route, RouteError> {
        Ok(Route {
            method,
            pattern: Pattern::parse(pattern)?,
            service: service.into(),
            endpoint: endpoint.into(),
            status: StatusCode::OK,
        })
    }

    /// Answers `status` (a 2xx, e.g. 201 for a create) on success.
    pub fn with_status(mut self, status: StatusCode) -> Result<Route, RouteError> {
        if !status.is_success() {
            return Err(RouteError::NotSuccess(status.as_u16()));
        }
        self.status = status;
        Ok(self)
    }

    /// The HTTP method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The path pattern.
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// The service called.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The endpoint called.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The status of a success.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// A call of this route's endpoint, with an empty JSON object body (`{}`); its names are the
    /// route's own, shared, so a request through the gateway allocates none.
    pub fn call(&self) -> Call {
        Call::shared(self.service.clone(), self.endpoint.clone())
    }
}

/// What a method and path resolve to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution<'a> {
    /// A route, and the path's parameters by name.
    Found {
        /// The route.
        route: &'a Route,
        /// Its parameters' values.
        params: BTreeMap<String, String>,
    },
    /// The path matches routes of other methods only (sorted, no repeats).
    MethodNotAllowed(Vec<Method>),
    /// No route's pattern matches the path.
    NotFound,
}

/// The routes of a gateway, in the order they are tried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    /// An empty table.
    pub fn new() -> Routes {
        Routes::default()
    }

    /// Adds `route`; the same method and pattern twice is an error.
    pub fn add(&mut self, route: Route) -> Result<(), RouteError> {
        let dup = self
            .routes
            .iter()
            .any(|r| r.method == route.method && r.pattern == route.pattern);
        if dup {
            return Err(RouteError::Duplicate {
                method: route.method,
                pattern: route.pattern.text,
            });
        }
        self.routes.push(route);
        Ok(())
    }

    /// Adds `route` and returns the table, for building one in an expression.
    pub fn with(mut self, route: Route) -> Result<Routes, RouteError> {
        self.add(route)?;
        Ok(self)
    }

    /// Every route, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }

    /// Resolves `method` and `path` (the path without its query).
    pub fn resolve(&self, method: &Method, path: &str) -> Resolution<'_> {
        let parts = split_path(path);
        let mut allowed = Vec::new();
        for route in &self.routes {
            let Some(params) = route.pattern.matches(&parts) else {
                continue;
            };
            if route.method == *method {
                return Resolution::Found { route, params };
            }
            allowed.push(route.method.clone());
        }
        if allowed.is_empty() {
            return Resolution::NotFound;
        }
        allowed.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        allowed.dedup();
        Resolution::MethodNotAllowed(allowed)
    }
}

/// The segments of `path`; the root is no segments at all.
fn split_path(path: &str) -> Vec<&str> {
    match path.strip_prefix('/') {
        Some("") => Vec::new(),
        Some(rest) => rest.split('/').collect(),
        // Not origin-form (e.g. `*`): it cannot match any pattern.
        None => vec![path, ""],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Routes {
        let create = Route::new(Method::POST, "/accounts", "service.account", "create")
            .and_then(|r| r.with_status(StatusCode::CREATED));
        let read = Route::new(Method::GET, "/accounts/:id", "service.account", "read");
        Routes::new()
            .with(create.expect("valid route"))
            .and_then(|t| t.with(read.expect("valid route")))
            .expect("no duplicates")
    }

    #[test]
    fn params_are_taken_from_the_path() {
        let t = table();
        let Resolution::Found { route, params } = t.resolve(&Method::GET, "/accounts/a1") else {
            panic!("GET /accounts/a1 must resolve");
        };
        assert_eq!(route.endpoint(), "read");
        assert_eq!(params.get("id").map(String::as_str), Some("a1"));
        let call = route.call();
        assert_eq!(
            (call.service(), call.endpoint()),
            ("service.account", "read")
        );
    }

    #[test]
    fn wrong_method_is_told_apart_from_unknown_path() {
        let t = table();
        assert_eq!(
            t.resolve(&Method::DELETE, "/accounts/a1"),
            Resolution::MethodNotAllowed(vec![Method::GET])
        );
        assert_eq!(t.resolve(&Method::GET, "/nope"), Resolution::NotFound);
        assert_eq!(t.resolve(&Method::GET, "/accounts/"), Resolution::NotFound);
    }

    #[test]
    fn bad_patterns_and_duplicates_are_refused() {
        assert!(matches!(
            Pattern::parse("accounts"),
            Err(RouteError::NotAbsolute(_))
        ));
        assert!(matches!(
            Pattern::parse("/a/:x/:x"),
            Err(RouteError::DuplicateParam { .. })
        ));
        assert!(matches!(
            Pattern::parse("/a//b"),
            Err(RouteError::EmptySegment(_))
        ));
        let again = Route::new(Method::POST, "/accounts", "s", "e").expect("valid route");
        assert!(matches!(
            table().add(again),
            Err(RouteError::Duplicate { .. })
        ));
    }
}
