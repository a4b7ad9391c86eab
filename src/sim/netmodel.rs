//! windtunnel's own network model: latency distributions, loss, partitions and holds, applied to
//! frames in the transport of every simulated instance.
//!
//! turmoil's latency is a fixed shape in whole ticks, and its message loss stalls a TCP stream for
//! good (it never retransmits), so richer behaviour lives here (docs/design.md, "Legs the engine
//! carries"). A call's request leg is planned by the caller as the call is made, from the
//! caller's stream (`net/<name>`), and its answer's leg by the server as it answers, from the
//! server's stream of answers (`net-answers/<name>`). A leg's latency is handed to turmoil with
//! the message, which delivers it that long after; a held leg waits at its sender and is
//! planned again a tick later; a lost one is never sent (the caller then waits for its
//! deadline, as it would for a lost packet).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::dist::Dist;
use crate::framework::ids;
use crate::framework::sleep_until_opt;
use crate::framework::timer;
use crate::framework::transport::{
    BoxFuture, CancelGate, Inlet, ListenError, RequestFrame, Responder, SendError, TcpTransport,
    Transport, TransportConfig, Turmoil,
};
use crate::framework::trust::{Credential, DeploymentKey};
use crate::lock::lock;
use crate::scenario::{Network, Target};
use crate::units::Ratio;

/// One end of a message: an instance, or the load generators.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Party {
    /// A load generator host.
    Client,
    /// Instance `index` of `service`.
    Instance {
        /// The service name.
        service: Arc<str>,
        /// The instance index.
        index: u32,
    },
}

impl Party {
    /// The instance index, for an instance.
    pub fn index(&self) -> Option<u32> {
        match self {
            Party::Client => None,
            Party::Instance { index, .. } => Some(*index),
        }
    }

    /// Whether `target` names this party.
    pub fn is(&self, target: &Target) -> bool {
        match (self, target) {
            (Party::Client, Target::Client) => true,
            (Party::Instance { service, .. }, Target::Service(s)) => **service == *s.as_str(),
            (
                Party::Instance { service, index },
                Target::Instance {
                    service: s,
                    index: i,
                },
            ) => **service == *s.as_str() && index == i,
            _ => false,
        }
    }
}

/// What happens to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    /// Delivered after this one-way latency.
    After(Duration),
    /// Held until a hold ends.
    Held,
    /// Lost.
    Lost,
}

/// A fault currently bending the network, by fault index.
#[derive(Debug, Clone)]
enum Bend {
    Latency { target: Target, add: Dist },
    Partition { a: Target, b: Target, oneway: bool },
    Hold { a: Target, b: Target },
    Loss { a: Target, b: Target, rate: Ratio },
}

/// Whether a message from `from` to `to` crosses the link `a` -> `b`, or either way unless
/// `oneway`.
fn crosses(from: &Party, to: &Party, a: &Target, b: &Target, oneway: bool) -> bool {
    (from.is(a) && to.is(b)) || (!oneway && from.is(b) && to.is(a))
}

fn between(from: &Party, to: &Party, a: &Target, b: &Target) -> bool {
    crosses(from, to, a, b, false)
}

/// Faults active now, by fault index, looked up on every message or request: most of a run
/// has none, and then a look is an atomic load, not a lock.
#[derive(Debug)]
pub(crate) struct ActiveSet<T> {
    map: Mutex<BTreeMap<usize, T>>,
    /// Whether `map` holds anything; written under its lock.
    any: AtomicBool,
}

impl<T> Default for ActiveSet<T> {
    fn default() -> Self {
        ActiveSet {
            map: Mutex::new(BTreeMap::new()),
            any: AtomicBool::new(false),
        }
    }
}

impl<T> ActiveSet<T> {
    /// Adds (or replaces) entry `id`.
    pub(crate) fn insert(&self, id: usize, value: T) {
        let mut map = lock(&self.map);
        map.insert(id, value);
        self.any.store(true, Ordering::Release);
    }

    /// Removes entry `id`.
    pub(crate) fn remove(&self, id: usize) {
        let mut map = lock(&self.map);
        map.remove(&id);
        self.any.store(!map.is_empty(), Ordering::Release);
    }

    /// The entries, locked; `None` (and no lock taken) when there are none.
    pub(crate) fn get(&self) -> Option<std::sync::MutexGuard<'_, BTreeMap<usize, T>>> {
        self.any.load(Ordering::Acquire).then(|| lock(&self.map))
    }
}

/// The network's behaviour: the scenario's links plus the faults active now.
#[derive(Debug)]
pub struct NetModel {
    network: Network,
    tick: Duration,
    active: ActiveSet<Bend>,
    /// Address (`host:port`) -> the instance listening there.
    parties: Mutex<BTreeMap<String, Arc<Placed>>>,
    /// The name a transport proves itself under -> the party it is (for answers, which know
    /// their caller by that name).
    names: Mutex<BTreeMap<String, Party>>,
}

/// An instance where it listens: what a call to it holds while it travels, one count for both
/// (not a copy of the address and a count of the party's name).
#[derive(Debug)]
struct Placed {
    party: Party,
    addr: Arc<str>,
}

impl NetModel {
    /// A model of `network` for a run stepped every `tick`.
    pub fn new(network: Network, tick: Duration) -> Arc<NetModel> {
        Arc::new(NetModel {
            network,
            tick,
            active: ActiveSet::default(),
            parties: Mutex::new(BTreeMap::new()),
            names: Mutex::new(BTreeMap::new()),
        })
    }

    /// Records which instance listens at `addr`.
    pub fn place(&self, addr: &str, party: Party) {
        let placed = Arc::new(Placed {
            party,
            addr: Arc::from(addr),
        });
        lock(&self.parties).insert(addr.to_string(), placed);
    }

    fn party_at(&self, addr: &str) -> Option<Arc<Placed>> {
        lock(&self.parties).get(addr).cloned()
    }

    /// The party whose transport proves itself as `name` (a load generator if none does).
    fn party_named(&self, name: &str) -> Party {
        lock(&self.names)
            .get(name)
            .cloned()
            .unwrap_or(Party::Client)
    }

    /// Starts fault `id`'s effect on the network, if it has one.
    pub fn start_fault(&self, id: usize, kind: &crate::scenario::FaultKind) {
        use crate::scenario::FaultKind as K;
        let bend = match kind {
            K::Latency { target, add } => Bend::Latency {
                target: target.clone(),
                add: add.clone(),
            },
            K::Partition { a, b, oneway } => Bend::Partition {
                a: a.clone(),
                b: b.clone(),
                oneway: *oneway,
            },
            K::Hold { a, b } => Bend::Hold {
                a: a.clone(),
                b: b.clone(),
            },
            K::Loss { a, b, rate } => Bend::Loss {
                a: a.clone(),
                b: b.clone(),
                rate: *rate,
            },
            _ => return,
        };
        self.active.insert(id, bend);
    }

    /// Ends fault `id`'s effect.
    pub fn end_fault(&self, id: usize) {
        self.active.remove(id);
    }

    /// Whether messages from `from` to `to` are being dropped or held right now.
    fn blocked(&self, from: &Party, to: &Party) -> bool {
        self.active.get().is_some_and(|active| {
            active.values().any(|bend| match bend {
                Bend::Partition { a, b, oneway } => crosses(from, to, a, b, *oneway),
                Bend::Hold { a, b } => between(from, to, a, b),
                _ => false,
            })
        })
    }

    /// Plans one message from `from` to `to`, drawing from `rng`.
    pub fn plan(&self, from: &Party, to: &Party, rng: &mut ChaCha8Rng) -> Leg {
        let mut latency_dist = &self.network.latency;
        let mut loss = self.network.loss.value();
        for link in &self.network.links {
            if between(from, to, &link.a, &link.b) {
                if let Some(l) = &link.latency {
                    latency_dist = l;
                }
                if let Some(r) = link.loss {
                    loss = r.value();
                }
                break;
            }
        }
        let mut latency = latency_dist.sample(rng);
        let active = self.active.get();
        for bend in active.iter().flat_map(|a| a.values()) {
            match bend {
                Bend::Partition { a, b, oneway } if crosses(from, to, a, b, *oneway) => {
                    return Leg::Lost;
                }
                Bend::Hold { a, b } if between(from, to, a, b) => return Leg::Held,
                Bend::Loss { a, b, rate } if between(from, to, a, b) => {
                    loss = 1.0 - (1.0 - loss) * (1.0 - rate.value());
                }
                Bend::Latency { target, add } if from.is(target) || to.is(target) => {
                    latency = latency.saturating_add(add.sample(rng));
                }
                _ => {}
            }
        }
        if loss > 0.0 && rng.random_bool(loss.min(1.0)) {
            return Leg::Lost;
        }
        Leg::After(latency)
    }
}

/// A [`Transport`] over turmoil's TCP with the network model applied to every call.
pub struct ModelTransport {
    shared: Arc<Shared>,
    rng: Mutex<ChaCha8Rng>,
}

/// What every call of one [`ModelTransport`] holds while it travels, behind one count.
struct Shared {
    inner: TcpTransport<Turmoil>,
    model: Arc<NetModel>,
    me: Party,
    /// The stream the legs of this party's answers are drawn from, in the order it answers.
    answers: Mutex<ChaCha8Rng>,
}

impl ModelTransport {
    /// The transport of party `me`, drawing its requests' legs from the stream `net/<name>` of
    /// `seed` and its answers' from `net-answers/<name>`.
    pub fn new(model: Arc<NetModel>, me: Party, seed: u64, name: &str) -> ModelTransport {
        let gate_model = model.clone();
        let gate_me = me.clone();
        let gate = CancelGate(Arc::new(move |addr: &str| {
            match gate_model.party_at(addr) {
                Some(to) => !gate_model.blocked(&gate_me, &to.party),
                None => true,
            }
        }));
        // The deployment's key comes from the seed: the same handshakes as a real deployment,
        // replayed exactly. Nonces come from a stream of this transport's own.
        let credential = Credential::new(
            DeploymentKey::from_seed(seed),
            name,
            ids::stream(seed, &format!("trust/{name}")),
        );
        let config = TransportConfig {
            cancel_gate: Some(gate),
            credential: Some(credential),
            ..TransportConfig::default()
        };
        lock(&model.names).insert(name.to_string(), me.clone());
        ModelTransport {
            shared: Arc::new(Shared {
                inner: TcpTransport::new(config),
                model,
                me,
                answers: Mutex::new(ids::stream(seed, &format!("net-answers/{name}"))),
            }),
            rng: Mutex::new(ids::stream(seed, &format!("net/{name}"))),
        }
    }
}

/// Plans a request's leg and returns its latency, for the network to carry it that long; a
/// held leg waits here a tick at a time and is planned again, and a lost one never leaves (the
/// call waits for its deadline, as it would for a lost packet). `Err` when the call's deadline
/// or cancellation comes first. `cancelled` is the call's wait for its cancellation, made once
/// for the leg and the call ([`TcpTransport::call`]); `kept_timer` is the call's one timer
/// ([`timer::Kept`]).
// Not an `async fn`: one would keep a second copy of each argument in its future, and this
// future is held in every call's.
#[allow(clippy::manual_async_fn)]
fn depart<'a, 'c>(
    model: &'a NetModel,
    rng: &'a mut ChaCha8Rng,
    (from, to): (&'a Party, &'a Party),
    deadline: Option<Instant>,
    mut cancelled: Pin<&'a mut WaitForCancellationFuture<'c>>,
    mut kept_timer: Pin<&'a mut timer::Kept>,
) -> impl Future<Output = Result<Duration, SendError>> + use<'a, 'c> {
    async move {
        loop {
            let wait = match model.plan(from, to, rng) {
                Leg::After(latency) => return Ok(latency),
                Leg::Held => model.tick,
                Leg::Lost => Duration::MAX,
            };
            let (ends, armed) = wait_timers(model, wait, deadline);
            tokio::select! {
                biased;
                _ = timer::sleep_on(kept_timer.as_mut(), ends) => {}
                _ = sleep_until_opt(armed) => return Err(SendError::Timeout),
                _ = cancelled.as_mut() => return Err(SendError::Cancelled),
            }
        }
    }
}

/// When a wait of `wait` for a held or lost message ends (`None` for a lost one: never), and
/// the deadline to arm meanwhile, if any.
fn wait_timers(
    model: &NetModel,
    wait: Duration,
    deadline: Option<Instant>,
) -> (Option<Instant>, Option<Instant>) {
    let now = timer::now();
    let ends = now.checked_add(wait).filter(|_| wait != Duration::MAX);
    // The deadline needs a timer only if it can come before the wait ends or together with it:
    // a deadline later than the wait's end by a tick and two timer slots would fire only after
    // this wait was over and its timer dropped, so it is not armed.
    let margin = model.tick + Duration::from_millis(2);
    let armed = deadline.filter(|d| {
        ends.and_then(|at| at.checked_add(margin))
            .is_none_or(|late| *d < late)
    });
    (ends, armed)
}

impl Shared {
    /// Plans the leg of an answer from this party to `to`.
    fn plan_answer(&self, to: &Party) -> Leg {
        self.model.plan(&self.me, to, &mut lock(&self.answers))
    }

    /// Sends an answer whose leg was planned `leg`: after its latency, never (lost), or once
    /// a hold ends (planned again every tick).
    fn answer(self: &Arc<Self>, responder: &Responder, to: Party, leg: Leg, result: AnswerResult) {
        match leg {
            Leg::After(latency) => {
                if let Err(result) = self.inner.respond_after(responder, result, latency) {
                    // It cannot go out at once with its latency (frames queued before it, a
                    // full socket, or a caller on this host): it waits the latency out and
                    // leaves plainly.
                    let (shared, responder) = (self.clone(), responder.clone());
                    spawn_in_runtime(async move {
                        timer::sleep(latency).await;
                        shared.inner.respond(&responder, result);
                    });
                }
            }
            Leg::Lost => self.inner.drop_response(responder),
            Leg::Held => {
                let (shared, responder) = (self.clone(), responder.clone());
                spawn_in_runtime(async move {
                    timer::sleep(shared.model.tick).await;
                    // Cancelled, or its connection gone, meanwhile: nothing is left to send,
                    // and no leg is drawn for it.
                    if !shared.inner.is_wanted(&responder) {
                        return;
                    }
                    let leg = shared.plan_answer(&to);
                    shared.answer(&responder, to, leg, result);
                });
            }
        }
    }
}

/// What an answer carries.
type AnswerResult = Result<Bytes, crate::framework::Error>;

/// Runs `task` on the current runtime; outside one (a runtime shutting down) it is dropped,
/// as the runtime would drop it.
fn spawn_in_runtime(task: impl Future<Output = ()> + Send + 'static) {
    if tokio::runtime::Handle::try_current().is_ok() {
        crate::framework::task::spawn(task);
    }
}

impl Transport for ModelTransport {
    fn listen(&self, addr: &str, inlet: Inlet) -> BoxFuture<'_, Result<String, ListenError>> {
        self.shared.inner.listen(addr, inlet)
    }

    fn stop_listening(&self, addr: &str) -> bool {
        self.shared.inner.stop_listening(addr)
    }

    fn respond(&self, responder: &Responder, result: Result<Bytes, crate::framework::Error>) {
        // The answer's leg, planned as it leaves, from the stream of this party's answers. The
        // caller's party is found once per connection (a name's party never changes: each
        // transport names its party as it is made, before it can connect).
        let to = responder.peer_resolved(|name| self.shared.model.party_named(name));
        let leg = self.shared.plan_answer(&to);
        self.shared.answer(responder, to, leg, result);
    }

    fn send(
        &self,
        addr: &str,
        mut request: RequestFrame,
        deadline: Option<Instant>,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Result<Bytes, SendError>> {
        let Some(to) = self.shared.model.party_at(addr) else {
            return self.shared.inner.send(addr, request, deadline, cancel);
        };
        let shared = self.shared.clone();
        // The call's stream is seeded now, in the order calls are made. The call is made once
        // the request leg has been travelled, inside this future (not in a box of its own),
        // waiting for the call's cancellation with the legs' one wait.
        let seed = self.fork_seed();
        crate::framework::task::boxed(move || async move {
            // Boxed: the stream's state is a few hundred bytes, and would make this future too
            // large for the allocator's per-size caches. Made in its box, not copied into it.
            let mut rng = crate::framework::task::in_box(|| ChaCha8Rng::seed_from_u64(seed));
            let cancelled = cancel.cancelled();
            tokio::pin!(cancelled);
            // One timer for the legs and the deadline between them, moved from wait to wait.
            let kept_timer: timer::Kept = None;
            tokio::pin!(kept_timer);
            let Shared {
                inner, model, me, ..
            } = &*shared;
            let latency = depart(
                model,
                &mut rng,
                (me, &to.party),
                deadline,
                cancelled.as_mut(),
                kept_timer.as_mut(),
            )
            .await?;
            inner
                .call(
                    &to.addr,
                    &mut request,
                    deadline,
                    cancelled,
                    kept_timer,
                    Some(latency),
                )
                .await
        })
    }

    fn ready(&self) -> BoxFuture<'static, ()> {
        self.shared.inner.ready()
    }

    fn credential(&self) -> Option<&Credential> {
        self.shared.inner.credential()
    }

    fn elapsed(&self) -> Duration {
        self.shared.inner.elapsed()
    }
}

impl ModelTransport {
    /// The seed of one call's stream, drawn from this party's stream: each call forks a stream
    /// of its own, so calls do not contend for the parent while they travel.
    fn fork_seed(&self) -> u64 {
        use rand::RngCore;
        crate::lock::lock(&self.rng).next_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_active_set_is_empty_to_a_look_exactly_when_it_holds_nothing() {
        // Goal: the lock-free look (`get`) says "none" only when no entry is held, through
        // inserts, a replacement and removals in any order.
        let set = ActiveSet::default();
        assert!(set.get().is_none());
        set.insert(2, "b");
        set.insert(1, "a");
        set.insert(2, "b2");
        assert_eq!(set.get().map(|m| m.len()), Some(2));
        set.remove(2);
        assert_eq!(
            set.get().map(|m| m.values().copied().collect::<Vec<_>>()),
            Some(vec!["a"])
        );
        set.remove(7);
        assert!(
            set.get().is_some(),
            "removing an absent entry leaves the others"
        );
        set.remove(1);
        assert!(set.get().is_none());
    }
}
