//! The microservice framework: services, endpoints, context, client, errors, events.
//!
//! It never depends on the simulation: it is generic over the network through
//! [`crate::framework::transport::Transport`], and reports what it does through [`event::EventSink`].

pub mod balance;
pub mod breaker;
pub mod client;
pub mod context;
pub mod discovery;
pub mod eject;
pub mod error;
pub mod event;
pub mod fanout;
pub(crate) mod guard;
pub mod health;
pub mod identity;
pub mod ids;
pub mod limit;
pub mod metrics;
pub mod middleware;
pub mod retry;
pub mod server;
pub mod service;
pub mod task;
pub mod timer;
pub mod transport;
pub mod trust;

pub use client::{Balance, Call, Client, ClientConfig, Reply};
pub use context::Context;
pub use discovery::{InstanceInfo, Registry};
pub use error::{Error, ErrorKind};
pub use event::{Event, EventKind, EventRef, EventSink, MemorySink, NullSink};
pub use fanout::{Fanout, FanoutPolicy, FanoutResult};
pub use metrics::{MetricKind, Metrics};
pub use server::{Listen, Server, ServiceConfig, StartError};
pub use service::Endpoint;
pub use trust::{Credential, DeploymentKey};

/// Sleeps until `deadline`, or forever without one: a `select!` branch that only a deadline
/// can end (the server's handler deadline, the client's next hedge).
pub(crate) async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => timer::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
