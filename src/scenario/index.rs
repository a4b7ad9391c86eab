//! The index of services a scenario declares, for resolving references across the file.
//!
//! Calls, routes, loads, faults, links and assertions all name services, instances and endpoints.
//! The index is built first, quietly, from whatever parts of the services are well formed (the
//! services' own errors are reported by their validator), so a reference is checked against what
//! the file meant to declare and one bad service does not cascade into a dozen unknown names.

use std::collections::{BTreeMap, BTreeSet};

use toml::Spanned;

use crate::units::quote;

use super::names::{EndpointName, EndpointRef, ServiceName, Target};
use super::raw::RawService;
use super::Builtins;

/// How many names an "expected one of" list shows before "...".
const MAX_LISTED: usize = 20;

/// What the rest of the file may refer to in one service.
#[derive(Debug)]
struct Entry {
    /// Its instance count, if it is valid.
    instances: Option<u32>,
    /// Its endpoints; `None` when they cannot be known (an unknown builtin), so any is accepted.
    endpoints: Option<BTreeSet<String>>,
}

/// The services declared in a file, by name.
#[derive(Debug)]
pub(crate) struct Index {
    services: BTreeMap<String, Entry>,
}

impl Index {
    /// Indexes the first service of each well-formed name.
    pub(crate) fn build(services: &[Spanned<RawService>], builtins: &dyn Builtins) -> Index {
        let mut index = BTreeMap::new();
        for service in services {
            let service = service.get_ref();
            let name = service.name.get_ref();
            if ServiceName::parse(name).is_err() || index.contains_key(name) {
                continue;
            }
            let instances = match &service.instances {
                None => Some(1),
                Some(count) => u32::try_from(*count.get_ref())
                    .ok()
                    .filter(|count| *count >= 1),
            };
            let endpoints = match &service.builtin {
                Some(builtin) => builtins
                    .builtin_endpoints(builtin.get_ref())
                    .map(|endpoints| endpoints.into_iter().collect()),
                None => Some(
                    service
                        .endpoint
                        .iter()
                        .map(|e| e.get_ref().name.get_ref().clone())
                        .collect(),
                ),
            };
            index.insert(
                name.clone(),
                Entry {
                    instances,
                    endpoints,
                },
            );
        }
        Index { services: index }
    }

    /// Whether a service of this name is declared.
    pub(crate) fn has(&self, service: &str) -> bool {
        self.services.contains_key(service)
    }

    /// The instance count of a service, if it is known and valid.
    pub(crate) fn instances(&self, service: &ServiceName) -> Option<u32> {
        self.services
            .get(service.as_str())
            .and_then(|entry| entry.instances)
    }

    /// Whether the endpoint named exists (or the service's endpoints cannot be known).
    pub(crate) fn has_endpoint(&self, endpoint: &EndpointRef) -> bool {
        self.services
            .get(endpoint.service.as_str())
            .is_some_and(|entry| {
                entry
                    .endpoints
                    .as_ref()
                    .is_none_or(|names| names.contains(endpoint.endpoint.as_str()))
            })
    }

    /// Resolves "<service>.<endpoint>" by the longest declared service name that prefixes it.
    pub(crate) fn resolve_endpoint(&self, text: &str) -> Result<EndpointRef, String> {
        let split = text
            .rmatch_indices('.')
            .map(|(dot, _)| (&text[..dot], &text[dot + 1..]))
            .find(|(service, _)| self.services.contains_key(*service));
        let Some((service, endpoint)) = split else {
            return Err(format!(
                "unknown service in {}; expected \"<service>.<endpoint>\" with one of the services: {}",
                quote(text),
                self.service_list()
            ));
        };
        let reference = EndpointRef {
            service: ServiceName::parse(service)?,
            endpoint: EndpointName::parse(endpoint)?,
        };
        if !self.has_endpoint(&reference) {
            return Err(format!(
                "unknown endpoint {} of {service}; its endpoints: {}",
                quote(endpoint),
                self.endpoint_list(service)
            ));
        }
        Ok(reference)
    }

    /// Resolves "service", "service[i]" or, when `client` allows it, "client".
    pub(crate) fn resolve_target(&self, text: &str, client: bool) -> Result<Target, String> {
        if text == "client" {
            if client {
                return Ok(Target::Client);
            }
            return Err("this fault cannot target \"client\"; expected a service or an instance such as \"service.webhook[1]\"".into());
        }
        let (name, index) = split_instance(text)?;
        if !self.services.contains_key(name) {
            let also = if client { "\"client\", " } else { "" };
            return Err(format!(
                "unknown service {}; expected {also}a service or an instance such as \"service.webhook[1]\"; known services: {}",
                quote(name),
                self.service_list()
            ));
        }
        let service = ServiceName::parse(name)?;
        let Some(index) = index else {
            return Ok(Target::Service(service));
        };
        match self.instances(&service) {
            Some(instances) if index >= instances => Err(format!(
                "instance {index} of {service} is out of range: it has {instances} instance{} (0..={})",
                if instances == 1 { "" } else { "s" },
                instances - 1
            )),
            _ => Ok(Target::Instance { service, index }),
        }
    }

    /// The declared services, for "known services: ..." lists.
    pub(crate) fn service_list(&self) -> String {
        list(self.services.keys())
    }

    /// The endpoints of one service, for "its endpoints: ..." lists.
    fn endpoint_list(&self, service: &str) -> String {
        match self
            .services
            .get(service)
            .and_then(|entry| entry.endpoints.as_ref())
        {
            Some(endpoints) => list(endpoints.iter()),
            None => "(unknown)".into(),
        }
    }
}

/// Splits "name[3]" into ("name", Some(3)) and "name" into ("name", None).
fn split_instance(text: &str) -> Result<(&str, Option<u32>), String> {
    let Some(open) = text.find('[') else {
        return Ok((text, None));
    };
    let index = text[open + 1..]
        .strip_suffix(']')
        .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse::<u32>().ok());
    match index {
        Some(index) => Ok((&text[..open], Some(index))),
        None => Err(format!(
            "expected a target such as \"service.webhook\" or \"service.webhook[2]\", found {}",
            quote(text)
        )),
    }
}

/// Joins names with ", ", cut after [`MAX_LISTED`]; "(none)" when empty.
fn list<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        return "(none)".into();
    }
    let shown = names[..names.len().min(MAX_LISTED)].join(", ");
    if names.len() > MAX_LISTED {
        format!("{shown}, ...")
    } else {
        shown
    }
}
