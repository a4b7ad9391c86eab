//! A closed bucket's latency histogram, packed into a few bytes per distinct value it holds.
//!
//! A dense HdrHistogram keeps a counter for every value it can tell apart (about 3,200 for two
//! significant digits over 1 us..1 h: 26 KB), however few requests it saw. Packed, it keeps only
//! its nonzero counters, in value order, each as two LEB128 varints: the step from the previous
//! counter's value, in units of that value's bin width (adjacent bins: a step of 1), and the
//! count. A bucket of a few hundred requests packs into a few hundred bytes, and unpacks into a
//! histogram equal to the one packed (same counts, same total, same min and max), so every figure
//! read from it is unchanged.

use hdrhistogram::Histogram;

/// The nonzero counters of a histogram, packed (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Packed(Box<[u8]>);

impl Packed {
    /// Packs `h`'s counters.
    pub(super) fn pack(h: &Histogram<u64>) -> Packed {
        let mut out = Vec::new();
        let mut previous = 0;
        for v in h.iter_recorded() {
            let value = h.lowest_equivalent(v.value_iterated_to());
            // Bin widths are powers of two that never shrink as values grow, and a bin's lowest
            // value is a multiple of its width: the distance from the previous bin's lowest
            // value is a whole number of the previous bin's widths.
            let unit = h.equivalent_range(previous);
            let step = value.saturating_sub(previous) / unit;
            debug_assert_eq!(
                previous + step * unit,
                value,
                "step not a whole number of bins"
            );
            write_varint(&mut out, step);
            write_varint(&mut out, v.count_at_value());
            previous += step * unit;
        }
        Packed(out.into_boxed_slice())
    }

    /// Adds the packed counts to `h`, a histogram with the same bounds and precision as the one
    /// packed.
    pub(super) fn add_to(&self, h: &mut Histogram<u64>) {
        let mut bytes = self.0.iter().copied();
        let mut previous = 0u64;
        while let (Some(step), Some(count)) = (read_varint(&mut bytes), read_varint(&mut bytes)) {
            let unit = h.equivalent_range(previous);
            previous = previous.saturating_add(step.saturating_mul(unit));
            h.saturating_record_n(previous, count);
        }
    }

    /// Bytes the packed counts take.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_varint(bytes: &mut impl Iterator<Item = u8>) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = bytes.next()?;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist() -> Histogram<u64> {
        Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid bounds")
    }

    #[test]
    fn varints_round_trip() {
        for v in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            write_varint(&mut out, v);
            assert_eq!(read_varint(&mut out.into_iter()), Some(v));
        }
    }

    #[test]
    fn every_bin_unpacks_to_itself() {
        // One count in every bin the histogram has, at its lowest and at its highest value.
        for at_top in [false, true] {
            let mut h = hist();
            let mut v = 1;
            let mut n = 1;
            while v <= 3_600_000_000 {
                let value = if at_top { h.highest_equivalent(v) } else { v };
                h.record_n(value.min(3_600_000_000), n).expect("in range");
                v = h.next_non_equivalent(v);
                n = n % 1000 + 1;
            }
            let packed = Packed::pack(&h);
            let mut back = hist();
            packed.add_to(&mut back);
            assert!(
                back == h,
                "every bin at {}",
                if at_top { "top" } else { "bottom" }
            );
            assert_eq!(back.max(), h.max());
            assert_eq!(back.min_nz(), h.min_nz());
        }
    }

    #[test]
    fn a_small_bucket_packs_into_a_few_bytes_per_value() {
        let mut h = hist();
        for us in [900, 1_000, 1_050, 1_100, 2_500, 40_000, 250_000, 250_100] {
            h.record(us).expect("in range");
        }
        let packed = Packed::pack(&h);
        assert!(packed.len() <= 8 * 4, "{} bytes", packed.len());
        let mut back = hist();
        packed.add_to(&mut back);
        assert!(back == h);
        assert!(Packed::pack(&hist()).len() == 0);
    }
}
