//! Health checks (the talk's slides 125-126): `type Checker func() (error, map[string]string)`.
//!
//! A service registers checkers; each returns an error or nothing, and a map of details. They
//! are read two ways: in-band, through the `health` endpoint every server answers, and
//! out-of-band, run on an interval by the server itself and reported as events, so the wind
//! tunnel records each instance's health over time.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The name of the endpoint every server answers with its checks.
pub const HEALTH_ENDPOINT: &str = "health";

/// What one checker found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Why it is unhealthy; `None` when healthy.
    pub error: Option<String>,
    /// Anything worth showing, e.g. `queue_depth = 12`.
    pub details: BTreeMap<String, String>,
}

impl CheckResult {
    /// A healthy result with details.
    pub fn healthy(details: BTreeMap<String, String>) -> CheckResult {
        CheckResult {
            error: None,
            details,
        }
    }

    /// An unhealthy result with a reason and details.
    pub fn unhealthy(error: impl Into<String>, details: BTreeMap<String, String>) -> CheckResult {
        CheckResult {
            error: Some(error.into()),
            details,
        }
    }
}

/// A health check: cheap, synchronous, and safe to call from any task.
pub type Checker = Arc<dyn Fn() -> CheckResult + Send + Sync>;

/// Every check of an instance, as the `health` endpoint answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    /// The instance.
    pub instance: String,
    /// Whether every check passed.
    pub healthy: bool,
    /// By checker name.
    pub checks: BTreeMap<String, CheckResult>,
}

/// Runs `checkers` for `instance`.
pub fn report(instance: &str, checkers: &BTreeMap<String, Checker>) -> HealthReport {
    let checks: BTreeMap<String, CheckResult> = checkers
        .iter()
        .map(|(name, check)| (name.clone(), check()))
        .collect();
    HealthReport {
        instance: instance.to_string(),
        healthy: checks.values().all(|c| c.error.is_none()),
        checks,
    }
}
