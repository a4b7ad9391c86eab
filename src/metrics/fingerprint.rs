//! The hash behind a run's fingerprint and the determinism check's event log: a word at a time.
//!
//! Every event and load result is fed to it, so it sits on every message's path. It takes
//! 64-bit words (times, ids, and strings a word at a time, each string led by its length)
//! and mixes each in with one rotate, xor and multiply (the FxHash step), where byte-wise FNV-1a
//! pays a multiply per byte. Each step is a bijection of the state for a given word, and of the
//! word for a given state, so two logs that differ in one word never hash alike. It is named and
//! fixed here, unlike `DefaultHasher`, so a fingerprint means the same from one build to the next.

/// The fingerprint hash (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct WordHash(u64);

impl Default for WordHash {
    fn default() -> Self {
        WordHash(0xcbf2_9ce4_8422_2325)
    }
}

impl WordHash {
    /// Feeds one word.
    #[inline]
    pub fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    /// Feeds a string: its length, then its bytes as words. A string of 8 bytes or more gives
    /// its 8-byte words and then its last 8 bytes (overlapping the last whole word); a shorter
    /// one gives one word made of its first and last bytes, so that with the length every byte
    /// is covered and no copy of the string is made.
    #[inline]
    pub fn write_str(&mut self, s: &str) {
        let b = s.as_bytes();
        let n = b.len();
        self.write_u64(n as u64);
        if n >= 8 {
            let mut words = b.chunks_exact(8);
            for w in &mut words {
                self.write_u64(le64(w));
            }
            if !words.remainder().is_empty() {
                self.write_u64(le64(&b[n - 8..]));
            }
        } else if n >= 4 {
            self.write_u64(le32(&b[..4]) | (le32(&b[n - 4..]) << 32));
        } else if n > 0 {
            let (first, mid, last) = (b[0], b[n / 2], b[n - 1]);
            self.write_u64(u64::from(first) | (u64::from(mid) << 8) | (u64::from(last) << 16));
        }
    }

    /// The hash so far, with a final mix (splitmix64's) so every bit of it depends on every
    /// word fed.
    pub fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The 8 bytes of `w` as a little-endian word.
#[inline]
fn le64(w: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&w[..8]);
    u64::from_le_bytes(b)
}

/// The 4 bytes of `w` as a little-endian word.
#[inline]
fn le32(w: &[u8]) -> u64 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&w[..4]);
    u64::from(u32::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::WordHash;

    fn hash(parts: &[&str]) -> u64 {
        let mut h = WordHash::default();
        for p in parts {
            h.write_str(p);
        }
        h.finish()
    }

    #[test]
    fn string_boundaries_and_padding_count() {
        assert_ne!(hash(&["ab", "c"]), hash(&["a", "bc"]));
        assert_ne!(hash(&["a"]), hash(&["a\0"]));
        assert_ne!(hash(&["", "x"]), hash(&["x", ""]));
        assert_ne!(hash(&["service.webhook[1]"]), hash(&["service.webhook[2]"]));
        assert_eq!(hash(&["service.webhook[1]"]), hash(&["service.webhook[1]"]));
    }

    #[test]
    fn the_hash_is_fixed() {
        // A fingerprint means the same from one build to the next: this value must not move.
        let mut h = WordHash::default();
        h.write_u64(1);
        h.write_str("call_sent");
        assert_eq!(h.finish(), 0x36f6_2410_91f8_265d);
    }
}
