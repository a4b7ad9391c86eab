//! Synthetic services: endpoints described in a scenario file, built on the framework.
//!
//! An endpoint sleeps for a service time drawn from its distribution (scaled by any active slow
//! fault on its instance), then makes its downstream calls in order: to one instance, to N, or to
//! all, waiting for all, the first, or any k, each with its own timeout. A failed call fails the
//! endpoint unless the file says to ignore it (graceful degradation).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::framework::{Call as RpcCall, Context, Endpoint, Error, FanoutPolicy};
use crate::scenario::{Call, Endpoint as EndpointSpec, Fanout, OnError, Wait};
use crate::system::Env;

/// The endpoint `spec` as run by the instance `env`; `rotation` (shared by the instance's
/// endpoints) moves the starting instance of partial fanouts on with every call.
pub fn endpoint(spec: &EndpointSpec, env: Env, rotation: Arc<AtomicUsize>) -> Endpoint {
    let name = spec.name.as_str().to_string();
    // Everything a call of the endpoint reads, in one block: each call takes one count of it
    // (and one of the body it answers with), not one of each part (two atomic instructions per
    // part, per call).
    let shared = Arc::new(Shared {
        // The names of each downstream call, made once here and shared by every call made.
        targets: spec
            .calls
            .iter()
            .map(|c| Target {
                service: Arc::from(c.to.service.as_str()),
                endpoint: Arc::from(c.to.endpoint.as_str()),
            })
            .collect(),
        body: Bytes::from(vec![b'.'; spec.response_bytes as usize]),
        spec: spec.clone(),
        env,
        rotation,
    });
    Endpoint::raw(&name, move |ctx: Context, _req: Bytes| {
        let work = shared.env.draw(&shared.spec.time);
        let factor = shared.env.slowdown();
        let shared = shared.clone();
        async move {
            if !work.is_zero() {
                crate::framework::timer::sleep(crate::system::slowed(work, factor)).await;
            }
            let Shared {
                spec,
                targets,
                env,
                rotation,
                body,
            } = &*shared;
            for (call, target) in spec.calls.iter().zip(targets.iter()) {
                if let Err(e) = make_call(env, rotation, &ctx, call, target).await {
                    if spec.on_error == OnError::Fail {
                        return Err(e);
                    }
                }
            }
            Ok(body.clone())
        }
    })
}

/// What every call of one synthetic endpoint shares.
struct Shared {
    spec: EndpointSpec,
    targets: Vec<Target>,
    env: Env,
    rotation: Arc<AtomicUsize>,
    /// The response body, the same for every call.
    body: Bytes,
}

/// The service and endpoint a downstream call goes to, as shared names.
struct Target {
    service: Arc<str>,
    endpoint: Arc<str>,
}

fn policy(wait: Wait) -> FanoutPolicy {
    match wait {
        Wait::All => FanoutPolicy::All,
        Wait::First => FanoutPolicy::FirstReply,
        Wait::Any(k) => FanoutPolicy::Quorum(k as usize),
    }
}

async fn make_call(
    env: &Env,
    rotation: &AtomicUsize,
    ctx: &Context,
    call: &Call,
    target: &Target,
) -> Result<(), Error> {
    let client = env.client();
    let mut rpc = RpcCall::shared(target.service.clone(), target.endpoint.clone());
    if let Some(t) = call.timeout {
        rpc = rpc.timeout(t);
    }
    let fanout = match call.fanout {
        Fanout::Count(1) => return client.send(ctx, rpc).await.map(|_| ()),
        Fanout::All => client.fanout(policy(call.wait)).to_each_instance(rpc),
        Fanout::Count(n) => {
            let instances = client.registry().instances(call.to.service.as_str());
            let mut f = client.fanout(policy(call.wait));
            // n distinct instances, starting from one picked by rotating through the list.
            let start = rotation.fetch_add(1, Ordering::Relaxed) % instances.len().max(1);
            for k in 0..(n as usize).min(instances.len()) {
                let inst = &instances[(start + k) % instances.len()];
                f = f.add(rpc.clone().instance(&inst.id));
            }
            f
        }
    };
    if fanout.is_empty() {
        return Err(Error::unavailable(
            "no_instances",
            format!("no instance of {} to call", call.to.service),
        ));
    }
    fanout.execute(ctx).await.outcome
}
