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
    /// Each list is replaced whole when it changes, so a caller can hold a snapshot of it
    /// without a copy (a client reads it on every call).
    services: Mutex<BTreeMap<String, Arc<[InstanceInfo]>>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    fn services(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<[InstanceInfo]>>> {
        lock(&self.services)
    }

    /// Adds (or moves) an instance of `service`.
    pub fn register(&self, service: &str, id: &str, addr: &str) {
        let mut services = self.services();
        let list = services
            .entry(service.to_string())
            .or_insert_with(|| Arc::from([]));
        let mut next: Vec<InstanceInfo> = list.iter().filter(|i| &*i.id != id).cloned().collect();
        next.push(InstanceInfo {
            id: id.into(),
            addr: addr.into(),
        });
        next.sort();
        *list = next.into();
    }

    /// Removes an instance; returns whether it was there.
    pub fn deregister(&self, service: &str, id: &str) -> bool {
        let mut services = self.services();
        let Some(list) = services.get_mut(service) else {
            return false;
        };
        if !list.iter().any(|i| &*i.id == id) {
            return false;
        }
        *list = list.iter().filter(|i| &*i.id != id).cloned().collect();
        true
    }

    /// The instances of `service`, in id order.
    pub fn instances(&self, service: &str) -> Vec<InstanceInfo> {
        self.snapshot(service).to_vec()
    }

    /// The instances of `service`, in id order, as the registry holds them now: no copy is
    /// made, and later changes do not show in it.
    pub fn snapshot(&self, service: &str) -> Arc<[InstanceInfo]> {
        self.services()
            .get(service)
            .cloned()
            .unwrap_or_else(|| Arc::from([]))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[InstanceInfo]) -> Vec<&str> {
        list.iter().map(|i| &*i.id).collect()
    }

    #[test]
    fn a_snapshot_lists_instances_in_id_order_and_keeps_its_moment() {
        let registry = Registry::new();
        registry.register("svc", "svc[1]", "b:1");
        registry.register("svc", "svc[0]", "a:1");
        let before = registry.snapshot("svc");
        assert_eq!(ids(&before), ["svc[0]", "svc[1]"]);
        registry.register("svc", "svc[0]", "c:1");
        assert!(registry.deregister("svc", "svc[1]"));
        assert!(!registry.deregister("svc", "svc[1]"));
        // The earlier snapshot is unchanged; a new one sees the move and the removal.
        assert_eq!(ids(&before), ["svc[0]", "svc[1]"]);
        assert_eq!(&*before[0].addr, "a:1");
        let after = registry.snapshot("svc");
        assert_eq!(ids(&after), ["svc[0]"]);
        assert_eq!(&*after[0].addr, "c:1");
        assert_eq!(registry.instances("svc"), after.to_vec());
        assert!(registry.snapshot("other").is_empty());
    }
}
