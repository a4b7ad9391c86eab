//! Fanout: many calls at once, decided by a policy (mercury's `client.Add(..).Execute()`).
//!
//! Every call gets a result or an error. Once the policy decides the outcome (all done, the
//! first success, the first failure, k successes), the calls still outstanding are dropped,
//! which sends each a Cancel frame: the slow instance stops working on a request nobody needs
//! (the talk's slides 106-111).

use futures::stream::{FuturesUnordered, StreamExt};

use crate::framework::client::{Call, Client, Reply};
use crate::framework::context::Context;
use crate::framework::error::Error;

/// When a fanout is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanoutPolicy {
    /// Wait for every call; the outcome fails if any call failed.
    All,
    /// Decided by the first success; fails only if every call fails.
    FirstSuccess,
    /// Decided by the first answer, success or failure.
    FirstReply,
    /// Decided by the first failure; succeeds when every call succeeds.
    FailFast,
    /// Decided once `k` calls succeed, or once so many failed that `k` cannot.
    Quorum(usize),
}

/// The result of a fanout: per call, in the order added, and the overall outcome.
#[derive(Debug)]
pub struct FanoutResult {
    /// One entry per call; calls cut off by the decision hold `cancelled.fanout_decided`.
    pub results: Vec<Result<Reply, Error>>,
    /// Ok when the policy was satisfied, else the error that decided it.
    pub outcome: Result<(), Error>,
}

impl FanoutResult {
    /// The successful replies, in the order the calls were added.
    pub fn replies(&self) -> impl Iterator<Item = &Reply> {
        self.results.iter().filter_map(|r| r.as_ref().ok())
    }
}

/// A set of calls to make together.
#[derive(Debug)]
pub struct Fanout {
    client: Client,
    policy: FanoutPolicy,
    calls: Vec<Call>,
}

impl Client {
    /// Starts a fanout under `policy`.
    pub fn fanout(&self, policy: FanoutPolicy) -> Fanout {
        Fanout {
            client: self.clone(),
            policy,
            calls: Vec::new(),
        }
    }
}

impl Fanout {
    /// Adds a call (mercury's `client.Add`).
    #[allow(clippy::should_implement_trait)] // named after mercury's Add; not arithmetic
    pub fn add(mut self, call: Call) -> Fanout {
        self.calls.push(call);
        self
    }

    /// Adds one copy of `call` pinned to each registered instance of its service.
    pub fn to_each_instance(mut self, call: Call) -> Fanout {
        for inst in self.client.registry().instances(call.service()) {
            self.calls.push(call.clone().instance(&inst.id));
        }
        self
    }

    /// The number of calls added.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Whether no call was added.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Makes every call at once and waits until the policy decides.
    pub async fn execute(self, ctx: &Context) -> FanoutResult {
        let n = self.calls.len();
        let mut results: Vec<Result<Reply, Error>> = (0..n)
            .map(|_| {
                Err(Error::cancelled(
                    "fanout_decided",
                    "the fanout was decided without this call",
                ))
            })
            .collect();
        let client = &self.client;
        let mut pending: FuturesUnordered<_> = self
            .calls
            .into_iter()
            .enumerate()
            .map(|(i, call)| async move { (i, client.send(ctx, call).await) })
            .collect();
        let mut decision = Decision::new(self.policy, n);
        let mut outcome = None;
        while let Some((i, r)) = pending.next().await {
            outcome = decision.observe(&r);
            results[i] = r;
            if outcome.is_some() {
                break;
            }
        }
        // Dropping the calls still in flight sends each its Cancel frame.
        drop(pending);
        let outcome = outcome.unwrap_or_else(|| decision.at_end());
        FanoutResult { results, outcome }
    }
}

/// The running tally a policy decides on.
struct Decision {
    policy: FanoutPolicy,
    n: usize,
    ok: usize,
    failed: usize,
    first_error: Option<Error>,
}

impl Decision {
    fn new(policy: FanoutPolicy, n: usize) -> Decision {
        Decision {
            policy,
            n,
            ok: 0,
            failed: 0,
            first_error: None,
        }
    }

    /// Records one result; returns the outcome once it is decided.
    fn observe(&mut self, r: &Result<Reply, Error>) -> Option<Result<(), Error>> {
        match r {
            Ok(_) => self.ok += 1,
            Err(e) => {
                self.failed += 1;
                self.first_error.get_or_insert_with(|| e.clone());
            }
        }
        let need = match self.policy {
            FanoutPolicy::All => return None,
            FanoutPolicy::FirstSuccess => 1,
            FanoutPolicy::FailFast => {
                return r.as_ref().err().map(|e| Err(e.clone()));
            }
            FanoutPolicy::FirstReply => {
                return Some(r.as_ref().map(|_| ()).map_err(Clone::clone));
            }
            FanoutPolicy::Quorum(k) => k.max(1),
        };
        if self.ok >= need {
            return Some(Ok(()));
        }
        if self.n.saturating_sub(self.failed) < need {
            return Some(Err(self.error()));
        }
        None
    }

    fn error(&self) -> Error {
        self.first_error
            .clone()
            .unwrap_or_else(|| Error::unavailable("fanout_failed", "too few calls succeeded"))
    }

    /// The outcome once every call has finished without an early decision.
    fn at_end(&self) -> Result<(), Error> {
        match self.policy {
            FanoutPolicy::All | FanoutPolicy::FailFast if self.failed == 0 => Ok(()),
            FanoutPolicy::All | FanoutPolicy::FailFast => Err(self.error()),
            FanoutPolicy::FirstSuccess | FanoutPolicy::FirstReply | FanoutPolicy::Quorum(_)
                if self.n == 0 =>
            {
                Ok(())
            }
            _ => Err(self.error()),
        }
    }
}
