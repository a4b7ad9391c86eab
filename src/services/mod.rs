//! The example systems: the system the talk builds, written on the framework and entered into
//! runs through the public [`System`] API exactly as a user's own services are.
//!
//! Layout: [`systems`](mod@systems) defines the four systems a scenario can name builtins from
//! ([`Platform`]: auth, store, bus; [`Accounts`]; [`Webhooks`]; [`Cards`]), what their loads
//! send and what must hold after a run ([`invariants`]). The services: [`account`] (the talk's
//! `main`), [`auth`] (bearer tokens and scopes), [`store`] (the key-value database), [`bus`]
//! (the event bus), [`webhook`] (the webhook stack), [`card`] (the card-payments pipeline).
//!
//! This module imports only the public API (`framework`, `system`, `gateway`, `dist`): a test
//! of the crate's layers keeps it so.

pub mod account;
pub mod auth;
pub mod bus;
pub mod card;
pub mod invariants;
pub mod store;
pub mod systems;
pub mod webhook;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::system::{Catalog, System};

pub use systems::{Accounts, Cards, Platform, Webhooks};

/// Every example system, in the order the command line registers them.
pub fn systems() -> Vec<Arc<dyn System>> {
    vec![
        Arc::new(Platform),
        Arc::new(Accounts),
        Arc::new(Webhooks),
        Arc::new(Cards),
    ]
}

/// A catalog of every example system.
pub fn catalog() -> Catalog {
    let mut catalog = Catalog::new();
    for system in systems() {
        catalog
            .add(system)
            .expect("the example systems have distinct builtin names and builders that only build");
    }
    catalog
}

/// Locks `m`, taking a poisoned lock as it stands: the example services' locks guard maps that
/// every update leaves consistent, and a handler's panic must not stop the instance.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
