//! Identifiers (request, trace, span) and the seeded streams that make them.
//!
//! Ids come from a `rand_chacha` stream seeded by (root seed, stable name), never from the OS,
//! so a simulated run names every request the same way each time (docs/design.md, determinism).

use std::fmt;
use std::sync::Mutex;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:016x}", self.0)
            }
        }
    };
}

id_type!(
    /// Names one request (one hop); its children point back to it.
    RequestId
);
id_type!(
    /// Names the tree of calls that one edge request caused.
    TraceId
);
id_type!(
    /// Names one call within a trace.
    SpanId
);

/// FNV-1a, 64 bits: a named, stable hash (unlike `DefaultHasher`, whose output may change
/// between Rust releases). Used for seed derivation and run fingerprints.
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    /// Feeds bytes into the hash.
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Feeds a u64 (little-endian bytes).
    pub fn write_u64(&mut self, v: u64) {
        self.write(&v.to_le_bytes());
    }

    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// The seed of the stream named `name` under `root`: adding a component with a new name does
/// not shift any other component's stream.
pub fn derive_seed(root: u64, name: &str) -> u64 {
    let mut h = Fnv1a::default();
    h.write_u64(root);
    h.write(name.as_bytes());
    // A splitmix64 finaliser spreads FNV's weak low bits over the whole seed.
    let mut z = h.finish().wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The random stream named `name` under `root`.
pub fn stream(root: u64, name: &str) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(derive_seed(root, name))
}

/// The next draw of `rng` that is not zero.
fn nonzero(rng: &mut ChaCha8Rng) -> u64 {
    loop {
        let v = rng.next_u64();
        if v != 0 {
            return v;
        }
    }
}

/// A source of ids, shared by the tasks of one client or server.
#[derive(Debug)]
pub struct IdGen {
    rng: Mutex<ChaCha8Rng>,
}

impl IdGen {
    /// A generator for the component `name` under `root`.
    pub fn new(root: u64, name: &str) -> IdGen {
        IdGen {
            rng: Mutex::new(stream(root, name)),
        }
    }

    /// The next raw id; never zero, so zero can mean "none" on the wire.
    pub fn next_u64(&self) -> u64 {
        nonzero(&mut crate::lock::lock(&self.rng))
    }

    /// The ids of one call in `trace` (a new trace when `None`), drawn under one lock in the
    /// order `request_id`, `trace_id` (only for a new trace), `span_id` would draw them one by
    /// one.
    pub fn call_ids(&self, trace: Option<TraceId>) -> (RequestId, TraceId, SpanId) {
        let mut rng = crate::lock::lock(&self.rng);
        let request = RequestId(nonzero(&mut rng));
        let trace = trace.unwrap_or_else(|| TraceId(nonzero(&mut rng)));
        (request, trace, SpanId(nonzero(&mut rng)))
    }

    /// A fresh request id.
    pub fn request_id(&self) -> RequestId {
        RequestId(self.next_u64())
    }

    /// A fresh span id.
    pub fn span_id(&self) -> SpanId {
        SpanId(self.next_u64())
    }

    /// A fresh trace id.
    pub fn trace_id(&self) -> TraceId {
        TraceId(self.next_u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_depend_on_root_and_name_only() {
        assert_eq!(derive_seed(1, "load/a"), derive_seed(1, "load/a"));
        assert_ne!(derive_seed(1, "load/a"), derive_seed(1, "load/b"));
        assert_ne!(derive_seed(1, "load/a"), derive_seed(2, "load/a"));
        let a = IdGen::new(3, "x");
        let b = IdGen::new(3, "x");
        assert_eq!(a.next_u64(), b.next_u64());
        // A call's ids at once are the ids one by one, in order.
        let (c, d) = (IdGen::new(3, "y"), IdGen::new(3, "y"));
        for given in [None, Some(TraceId(9)), None] {
            let (request, trace, span) = c.call_ids(given);
            assert_eq!(request, d.request_id());
            assert_eq!(trace, given.unwrap_or_else(|| d.trace_id()));
            assert_eq!(span, d.span_id());
        }
    }
}
