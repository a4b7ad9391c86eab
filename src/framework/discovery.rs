//! Discovery: which instances a service has and where they listen.
//!
//! A [`Registry`] maps a service name to its instances. Servers register when they start and
//! deregister when they stop; clients read it on every call. Instances are listed in id order so
//! that the balancers see the same list in every run.

use crate::lock::lock;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// One instance of a service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct InstanceInfo {
    /// Unique id, conventionally `service.name[index]`.
    pub id: Arc<str>,
    /// Where it listens (`host:port`).
    pub addr: Arc<str>,
}

/// Service name -> instances. Shared by every client and server of a system.
#[derive(Debug, Default)]
pub struct Registry {
    services: Mutex<BTreeMap<String, Vec<InstanceInfo>>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    fn services(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<InstanceInfo>>> {
        lock(&self.services)
    }

    /// Adds (or moves) an instance of `service`.
    pub fn register(&self, service: &str, id: &str, addr: &str) {
        let mut services = self.services();
        let list = services.entry(service.to_string()).or_default();
        list.retain(|i| &*i.id != id);
        list.push(InstanceInfo {
            id: id.into(),
            addr: addr.into(),
        });
        list.sort();
    }

    /// Removes an instance; returns whether it was there.
    pub fn deregister(&self, service: &str, id: &str) -> bool {
        let mut services = self.services();
        let Some(list) = services.get_mut(service) else {
            return false;
        };
        let before = list.len();
        list.retain(|i| &*i.id != id);
        before != list.len()
    }

    /// The instances of `service`, in id order.
    pub fn instances(&self, service: &str) -> Vec<InstanceInfo> {
        self.services().get(service).cloned().unwrap_or_default()
    }

    /// The instance with `id`, if registered under `service`.
    pub fn instance(&self, service: &str, id: &str) -> Option<InstanceInfo> {
        self.services()
            .get(service)
            .and_then(|l| l.iter().find(|i| &*i.id == id).cloned())
    }

    /// Every registered service name, sorted.
    pub fn service_names(&self) -> Vec<String> {
        self.services().keys().cloned().collect()
    }
}
