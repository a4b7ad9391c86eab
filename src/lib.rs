//! windtunnel: a microservice framework and a deterministic wind tunnel for it.
#![warn(missing_docs)]

pub mod dist;
pub mod framework;
pub mod scenario;
pub mod services;
pub mod transport;
pub mod units;
