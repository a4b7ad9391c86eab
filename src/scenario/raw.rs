//! The raw shape of a scenario file, as serde reads it: the "low args" before validation.
//!
//! These structs mirror the TOML tables one to one and reject unknown keys, so a typo is reported at
//! its place. Any value that validation may complain about is kept `Spanned` and, where it can take
//! several forms (a duration, a ratio, a dist), as a raw `toml::Value`: parsing it later lets the
//! validator collect every error with its location instead of stopping at the first.

use serde::Deserialize;
use toml::Spanned;

/// A string with its place in the file.
pub(crate) type Text = Spanned<String>;
/// Any TOML value with its place in the file, parsed by the validator.
pub(crate) type Value = Spanned<toml::Value>;
/// An integer with its place in the file; signed so a negative count gets a range message.
pub(crate) type Int = Spanned<i64>;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScenario {
    pub name: Option<Text>,
    pub description: Option<Text>,
    pub seed: Option<u64>,
    pub duration: Option<Value>,
    pub tick: Option<Value>,
    pub buggify: Option<bool>,
    pub heal: Option<Value>,
    pub network: Option<RawNetwork>,
    #[serde(default)]
    pub service: Vec<Spanned<RawService>>,
    #[serde(default)]
    pub route: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    pub load: Vec<Spanned<RawLoad>>,
    #[serde(default)]
    pub fault: Vec<Spanned<RawFault>>,
    #[serde(default, rename = "assert")]
    pub asserts: Vec<Spanned<RawAssert>>,
    pub gateway: Option<Spanned<RawGateway>>,
    pub disk: Option<RawDiskSettings>,
    pub swarm: Option<Spanned<RawSwarm>>,
}

/// `[swarm]`: bounds on what `sweep --swarm` may draw.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSwarm {
    pub kinds: Option<Vec<Text>>,
    pub max_faults: Option<Int>,
    pub targets: Option<Vec<Text>>,
}

/// `[disk]`: how the simulated disks behave.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDiskSettings {
    pub sync: Option<Value>,
}

/// `[gateway]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGateway {
    pub auth: Text,
}

/// `[network]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNetwork {
    pub latency: Option<Value>,
    pub loss: Option<Value>,
    #[serde(default)]
    pub link: Vec<Spanned<RawLink>>,
}

/// `[[network.link]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLink {
    pub a: Text,
    pub b: Text,
    pub latency: Option<Value>,
    pub loss: Option<Value>,
}

/// `[[service]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub name: Text,
    pub instances: Option<Int>,
    pub nodes: Option<Int>,
    pub workers: Option<Int>,
    pub queue: Option<Int>,
    pub balancer: Option<Text>,
    pub eject: Option<bool>,
    pub breaker: Option<Value>,
    pub retry: Option<Value>,
    pub hedge: Option<Value>,
    pub limit: Option<Value>,
    pub builtin: Option<Text>,
    #[serde(default)]
    pub endpoint: Vec<Spanned<RawEndpoint>>,
}

/// `[[service.endpoint]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEndpoint {
    pub name: Text,
    pub time: Option<Value>,
    pub response_bytes: Option<Int>,
    #[serde(default)]
    pub calls: Vec<Spanned<RawCall>>,
    pub on_error: Option<Text>,
    pub idempotent: Option<bool>,
}

/// One entry of an endpoint's `calls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCall {
    pub to: Text,
    pub fanout: Option<Value>,
    pub wait: Option<Text>,
    pub timeout: Option<Value>,
}

/// `[[route]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub route: Text,
    pub to: Text,
    pub status: Option<Spanned<i64>>,
}

/// `[[load]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLoad {
    pub name: Option<Text>,
    pub rpc: Option<Text>,
    pub route: Option<Text>,
    pub rate: Value,
    #[serde(default)]
    pub stages: Vec<Spanned<RawStage>>,
    pub arrival: Option<Text>,
    pub deadline: Option<Value>,
    pub start: Option<Value>,
    pub stop: Option<Value>,
    pub body_bytes: Option<Int>,
    pub clients: Option<Int>,
    pub token: Option<Text>,
}

/// One entry of a load's `stages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStage {
    pub duration: Value,
    pub target: Value,
}

/// `[[fault]]`: a window and exactly one kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFault {
    pub name: Option<Text>,
    pub at: Value,
    pub duration: Option<Value>,
    pub slow: Option<Spanned<RawSlow>>,
    pub latency: Option<Spanned<RawLatency>>,
    pub errors: Option<Spanned<RawErrors>>,
    pub partition: Option<Spanned<RawPartition>>,
    pub hold: Option<Spanned<RawPair>>,
    pub loss: Option<Spanned<RawLoss>>,
    pub crash: Option<Spanned<RawCrash>>,
    pub intruder: Option<Spanned<RawIntruder>>,
    pub disk: Option<Spanned<RawDisk>>,
}

/// `slow = { target, factor }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSlow {
    pub target: Text,
    pub factor: Value,
}

/// `latency = { target, add }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLatency {
    pub target: Text,
    pub add: Value,
}

/// `errors = { target, rate, code }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawErrors {
    pub target: Text,
    pub rate: Value,
    pub code: Text,
}

/// `partition = { a, b, oneway }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPartition {
    pub a: Text,
    pub b: Text,
    #[serde(default)]
    pub oneway: bool,
}

/// `hold = { a, b }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPair {
    pub a: Text,
    pub b: Text,
}

/// `loss = { a, b, rate }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLoss {
    pub a: Text,
    pub b: Text,
    pub rate: Value,
}

/// `crash = { target }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCrash {
    pub target: Text,
}

/// `intruder = { target, rate }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIntruder {
    pub target: Text,
    pub rate: Option<Value>,
}

/// `disk = { target, factor }` or `disk = { target, stall = true }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDisk {
    pub target: Text,
    pub factor: Option<Value>,
    pub stall: Option<Spanned<bool>>,
}

/// `[[assert]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAssert {
    pub that: Text,
    pub route: Option<Text>,
    pub load: Option<Text>,
    pub endpoint: Option<Text>,
    pub during: Option<Text>,
}
