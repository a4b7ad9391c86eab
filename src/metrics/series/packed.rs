//! A closed bucket's latency histogram, packed into a few bytes per distinct value it holds.
//!
//! A dense HdrHistogram keeps a counter for every value it can tell apart (about 3,200 for two
//! significant digits over 1 us..1 h: 26 KB), however few requests it saw. Packed, it keeps only
//! its nonzero counters, in value order, each as the step from the previous counter's value, in
//! units of that value's bin width (adjacent bins: a step of 1), and the count. Most counters of
//! a bucket are a few bins from the last and hold a few requests: a step of 1 to 8 with a count
//! of 1 to 15 takes one byte (`0sss_cccc`); anything else takes a marker byte (`0x80`) and two
//! LEB128 varints. A bucket of a few hundred requests packs into a few hundred bytes, and
//! unpacks into a histogram equal to the one packed (same counts, same total, same min and max),
//! so every figure read from it is unchanged.

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
            write_counter(&mut out, step, v.count_at_value());
            previous += step * unit;
        }
        Packed(out.into_boxed_slice())
    }

    /// Adds the packed counts to `h`, a histogram with the same bounds and precision as the one
    /// packed.
    pub(super) fn add_to(&self, h: &mut Histogram<u64>) {
        let mut bytes = self.0.iter().copied();
        let mut previous = 0u64;
        while let Some((step, count)) = read_counter(&mut bytes) {
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

/// The marker of a counter written as two varints.
const LONG: u8 = 0x80;

fn write_counter(out: &mut Vec<u8>, step: u64, count: u64) {
    if (1..=8).contains(&step) && (1..=15).contains(&count) {
        out.push(((step - 1) as u8) << 4 | count as u8);
    } else {
        out.push(LONG);
        write_varint(out, step);
        write_varint(out, count);
    }
}

fn read_counter(bytes: &mut impl Iterator<Item = u8>) -> Option<(u64, u64)> {
    let b = bytes.next()?;
    if b & LONG == 0 {
        return Some((u64::from(b >> 4) + 1, u64::from(b & 0x0f)));
    }
    Some((read_varint(bytes)?, read_varint(bytes)?))
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
    fn counters_round_trip_in_both_forms() {
        for (step, count) in [(1, 1), (8, 15), (0, 1), (9, 1), (1, 16), (300, 70_000)] {
            let mut out = Vec::new();
            write_counter(&mut out, step, count);
            let short = (1..=8).contains(&step) && (1..=15).contains(&count);
            assert_eq!(out.len() == 1, short, "{step} {count}");
            assert_eq!(read_counter(&mut out.into_iter()), Some((step, count)));
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
    fn a_bucket_packs_into_about_a_byte_per_distinct_value() {
        let mut h = hist();
        // 1.0 to 1.3 ms (bins of 4 us: 76 bins, 4 requests each), and three stragglers.
        for us in (1_000..1_300).chain([40_000, 250_000, 250_100]) {
            h.record(us).expect("in range");
        }
        let bins = h.iter_recorded().count();
        let packed = Packed::pack(&h);
        // The first value and the far ones take a marker and varints, the near ones a byte.
        assert!(
            packed.len() <= bins + 3 * 4,
            "{} bytes for {bins} bins",
            packed.len()
        );
        let mut back = hist();
        packed.add_to(&mut back);
        assert!(back == h);
        assert!(Packed::pack(&hist()).len() == 0);
    }
}
