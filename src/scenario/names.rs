//! Names and references in a scenario: typed identifiers, endpoint references, targets, routes.
//!
//! Past the parser nothing is a bare string: a service name is a [`ServiceName`], a fault points at a
//! [`Target`], a load enters at a [`RouteKey`]. Each type checks its spelling when built; whether the
//! thing it names exists is the validator's job, because that needs the whole file.

use std::fmt;

use crate::units::quote;

/// Declares a string newtype whose spelling is checked by `$valid`, described as `$expected`.
macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $max:expr, $expected:expr, $valid:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Checks the spelling; the error says what was found and what was expected.
            pub fn parse(text: &str) -> Result<$name, String> {
                let valid: fn(&str) -> bool = $valid;
                if text.is_empty() || text.chars().count() > $max || !valid(text) {
                    return Err(format!("expected {} (at most {} characters), found {}", $expected, $max, quote(text)));
                }
                Ok($name(text.to_string()))
            }

            /// The name as written.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// A scenario's name: lowercase letters, digits, `-` and `_`, as used in report folder names.
    ScenarioName,
    64,
    "a scenario name made of a-z, 0-9, - and _",
    |text| text.bytes().all(|b| is_lower_word_byte(b) || b == b'-')
);

name_type!(
    /// A service's name: dot-separated words of a-z, 0-9, `-` and `_`, such as "service.webhook".
    ServiceName,
    128,
    "a service name of dot-separated words made of a-z, 0-9, - and _, such as \"service.webhook\"",
    |text| text.split('.').all(|word| !word.is_empty() && word.bytes().all(|b| is_lower_word_byte(b) || b == b'-'))
);

name_type!(
    /// An endpoint's name within its service: letters, digits, `-` and `_`, no dots.
    EndpointName,
    64,
    "an endpoint name made of letters, digits, - and _",
    |text| text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
);

name_type!(
    /// The name of a built-in (Rust) service implementation in the catalog, such as "webhook-api".
    BuiltinName,
    64,
    "a builtin name made of a-z, 0-9, - and _",
    |text| text.bytes().all(|b| is_lower_word_byte(b) || b == b'-')
);

name_type!(
    /// A load's name, unique in the scenario: any printable text, by default its route or rpc.
    LoadName,
    128,
    "a load name of printable characters",
    |text| !text.chars().any(char::is_control)
);

name_type!(
    /// An error code an injected failure returns: lowercase dotted words such as
    /// "unavailable.overloaded".
    ErrorCode,
    64,
    "an error code of dot-separated words made of a-z, 0-9 and _, such as \"unavailable\"",
    |text| text.split('.').all(|word| !word.is_empty() && word.bytes().all(is_lower_word_byte))
);

/// Whether a byte may appear in a lowercase word: a-z, 0-9 or `_`.
fn is_lower_word_byte(byte: u8) -> bool {
    byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_'
}

/// One endpoint of one service, written `<service>.<endpoint>` (`service.auth.check`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointRef {
    /// The service.
    pub service: ServiceName,
    /// The endpoint within it.
    pub endpoint: EndpointName,
}

impl fmt::Display for EndpointRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.service, self.endpoint)
    }
}

/// What a fault or link applies to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// The load generators (the client hosts): "client".
    Client,
    /// Every instance of a service: "service.webhook".
    Service(ServiceName),
    /// One instance of a service, counted from 0: `service.webhook[2]`.
    Instance {
        /// The service.
        service: ServiceName,
        /// The instance index, below the service's instance count.
        index: u32,
    },
}

impl Target {
    /// The service this target names, if it is not the client.
    pub fn service(&self) -> Option<&ServiceName> {
        match self {
            Target::Client => None,
            Target::Service(service) | Target::Instance { service, .. } => Some(service),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Client => f.write_str("client"),
            Target::Service(service) => write!(f, "{service}"),
            Target::Instance { service, index } => write!(f, "{service}[{index}]"),
        }
    }
}

/// An HTTP method a gateway route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
    /// HEAD.
    Head,
    /// OPTIONS.
    Options,
}

impl Method {
    /// Every method, in the order error messages list them.
    const ALL: [(Method, &'static str); 7] = [
        (Method::Get, "GET"),
        (Method::Post, "POST"),
        (Method::Put, "PUT"),
        (Method::Patch, "PATCH"),
        (Method::Delete, "DELETE"),
        (Method::Head, "HEAD"),
        (Method::Options, "OPTIONS"),
    ];

    /// The method's name in upper case.
    pub fn as_str(self) -> &'static str {
        Method::ALL
            .iter()
            .find(|(method, _)| *method == self)
            .map_or("GET", |(_, name)| name)
    }

    /// Reads an upper-case method name.
    fn parse(text: &str) -> Option<Method> {
        Method::ALL
            .iter()
            .find(|(_, name)| *name == text)
            .map(|(method, _)| *method)
    }
}

/// A gateway route: a method and a path pattern, written "POST /webhooks" or "GET /accounts/:id".
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteKey {
    /// The HTTP method.
    pub method: Method,
    /// The path, starting with `/`; segments starting with `:` are parameters.
    pub path: String,
}

/// The longest route path accepted.
const MAX_PATH_CHARS: usize = 256;

impl RouteKey {
    /// Reads "METHOD /path"; the error says what was expected.
    pub fn parse(text: &str) -> Result<RouteKey, String> {
        let expected = || {
            format!(
                "expected a route such as \"POST /webhooks\" or \"GET /accounts/:id\" (GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS, then a path of letters, digits, - _ . ~ and :params), found {}",
                quote(text)
            )
        };
        let (method, path) = text.trim().split_once(' ').ok_or_else(expected)?;
        let method = Method::parse(method).ok_or_else(expected)?;
        let path = path.trim();
        if !valid_path(path) {
            return Err(expected());
        }
        let mut params: Vec<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix(':'))
            .collect();
        params.sort_unstable();
        if let Some(twice) = params.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!(
                "the path {} names the parameter :{} twice; each parameter needs a name of its own",
                quote(path),
                twice[0]
            ));
        }
        Ok(RouteKey {
            method,
            path: path.to_string(),
        })
    }
}

/// Whether `path` is "/" or "/" followed by non-empty segments of URL-safe characters or `:params`.
fn valid_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    if path.len() > MAX_PATH_CHARS {
        return false;
    }
    let url_safe = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
    let segment = |segment: &str| {
        let name = segment.strip_prefix(':').unwrap_or(segment);
        !name.is_empty() && name.bytes().all(url_safe)
    };
    rest.is_empty() || rest.split('/').all(segment)
}

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method.as_str(), self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_dotted_lowercase_words() {
        assert!(ServiceName::parse("service.webhook").is_ok());
        assert!(ServiceName::parse("service.card-processing").is_ok());
        assert!(ServiceName::parse("db").is_ok());
        for bad in ["", "Service.x", "a..b", ".a", "a.", "a b", "a[1]"] {
            assert!(ServiceName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn routes_need_a_method_and_a_slash_path() {
        let route = RouteKey::parse("POST /webhooks").expect("valid route");
        assert_eq!(route.to_string(), "POST /webhooks");
        assert!(RouteKey::parse("GET /accounts/:id").is_ok());
        assert!(RouteKey::parse("GET /").is_ok());
        for bad in [
            "POST",
            "post /x",
            "POST webhooks",
            "POST /a//b",
            "POST /a/:",
            "FETCH /x",
            "POST /a b",
        ] {
            assert!(RouteKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_codes_are_lowercase_dotted_words() {
        assert!(ErrorCode::parse("unavailable.overloaded").is_ok());
        assert!(ErrorCode::parse("Internal").is_err());
        assert!(ErrorCode::parse("a..b").is_err());
    }
}
