//! Faults that act inside instances rather than on the network: slow instances and injected
//! errors.
//!
//! The harness switches them on and off between simulation steps; instances read the board on
//! every request. Error injection is a server middleware that answers with the fault's code
//! before the handler runs, drawing from the instance's own seeded stream.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::framework::middleware::{ServerMiddleware, ServerNext, ServerRequest};
use crate::framework::transport::BoxFuture;
use crate::framework::{Context, Error};
use crate::lock::lock;
use crate::scenario::{FaultKind, Target};
use crate::sim::netmodel::{ActiveSet, Party};
use crate::units::Ratio;

#[derive(Debug, Clone)]
enum Active {
    Slow {
        target: Target,
        factor: f64,
    },
    Errors {
        target: Target,
        rate: Ratio,
        code: String,
    },
}

/// The in-instance faults active now, by fault index.
#[derive(Debug, Default)]
pub struct FaultBoard {
    active: ActiveSet<Active>,
}

impl FaultBoard {
    /// An empty board.
    pub fn new() -> Arc<FaultBoard> {
        Arc::new(FaultBoard::default())
    }

    /// Starts fault `id`, if it acts inside instances.
    pub fn start_fault(&self, id: usize, kind: &FaultKind) {
        let active = match kind {
            FaultKind::Slow { target, factor } => Active::Slow {
                target: target.clone(),
                factor: factor.value(),
            },
            FaultKind::Errors { target, rate, code } => Active::Errors {
                target: target.clone(),
                rate: *rate,
                code: code.as_str().to_string(),
            },
            _ => return,
        };
        self.active.insert(id, active);
    }

    /// Ends fault `id`.
    pub fn end_fault(&self, id: usize) {
        self.active.remove(id);
    }

    /// The product of the slow factors active on `party` (1 when none).
    pub fn slow_factor(&self, party: &Party) -> f64 {
        let Some(active) = self.active.get() else {
            return 1.0;
        };
        active
            .values()
            .filter_map(|a| match a {
                Active::Slow { target, factor } if party.is(target) => Some(*factor),
                _ => None,
            })
            .product()
    }

    /// The error to answer with now, if an error fault on `party` fires for this request.
    fn injected(&self, party: &Party, rng: &Mutex<ChaCha8Rng>) -> Option<Error> {
        let active = self.active.get()?;
        // The instance's stream is locked only while some fault is active.
        let mut rng = lock(rng);
        for a in active.values() {
            if let Active::Errors { target, rate, code } = a {
                if party.is(target) && rng.random_bool(rate.value()) {
                    return Some(Error::new(code.clone(), "injected by the wind tunnel"));
                }
            }
        }
        None
    }
}

/// Server middleware that fails requests while an error fault targets this instance.
pub struct InjectErrors {
    /// The board to read.
    pub board: Arc<FaultBoard>,
    /// This instance.
    pub party: Party,
    /// This instance's stream for the draws.
    pub rng: Mutex<ChaCha8Rng>,
}

impl ServerMiddleware for InjectErrors {
    fn handle<'a>(
        &'a self,
        ctx: Context,
        req: ServerRequest,
        next: ServerNext<'a>,
    ) -> BoxFuture<'a, Result<Bytes, Error>> {
        let injected = self.board.injected(&self.party, &self.rng);
        match injected {
            Some(e) => Box::pin(std::future::ready(Err(e))),
            None => next.run(ctx, req),
        }
    }
}
