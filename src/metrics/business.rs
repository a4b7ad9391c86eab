//! Business metrics as a run saw them: the counters and histograms services record through
//! [`crate::framework::Metrics`] (webhooks delivered, authorisations approved and declined,
//! money moved), per metric name over the whole run and per time bucket.

use hdrhistogram::Histogram;

use crate::framework::MetricKind;

/// Largest value a histogram holds; larger ones are clamped.
const MAX_VALUE: u64 = 1 << 40;

/// One business metric over a run.
#[derive(Debug, Clone)]
pub struct BusinessMetric {
    /// Counter or histogram.
    pub kind: MetricKind,
    /// Sum of everything recorded.
    pub total: i64,
    /// Number of records.
    pub records: u64,
    /// Sum recorded per bucket.
    pub per_bucket: Vec<i64>,
    /// The distribution of recorded values (histograms only).
    pub histogram: Option<Histogram<u64>>,
}

impl BusinessMetric {
    /// An empty metric of `kind` over `buckets` buckets.
    pub fn new(kind: MetricKind, buckets: usize) -> BusinessMetric {
        let histogram = match kind {
            MetricKind::Counter => None,
            MetricKind::Histogram => Histogram::new_with_bounds(1, MAX_VALUE, 2).ok(),
        };
        BusinessMetric {
            kind,
            total: 0,
            records: 0,
            per_bucket: vec![0; buckets],
            histogram,
        }
    }

    /// Records `value` in bucket `bucket`.
    pub fn record(&mut self, bucket: usize, value: i64) {
        self.total = self.total.saturating_add(value);
        self.records += 1;
        if let Some(slot) = self.per_bucket.get_mut(bucket) {
            *slot = slot.saturating_add(value);
        }
        if let Some(h) = &mut self.histogram {
            let v = u64::try_from(value).unwrap_or(0).clamp(1, MAX_VALUE);
            h.saturating_record(v);
        }
    }

    /// The value at `quantile` (0 to 1) of a histogram, `None` for a counter or no records.
    pub fn quantile(&self, quantile: f64) -> Option<u64> {
        let h = self.histogram.as_ref()?;
        (!h.is_empty()).then(|| h.value_at_quantile(quantile))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sum_per_bucket_and_histograms_keep_the_distribution() {
        let mut c = BusinessMetric::new(MetricKind::Counter, 3);
        c.record(0, 2);
        c.record(2, 5);
        c.record(9, 1); // past the last bucket: only the total
        assert_eq!((c.total, c.records), (8, 3));
        assert_eq!(c.per_bucket, vec![2, 0, 5]);
        assert_eq!(c.quantile(0.5), None);
        let mut h = BusinessMetric::new(MetricKind::Histogram, 1);
        for v in 1..=100 {
            h.record(0, v);
        }
        let p50 = h.quantile(0.5).unwrap_or(0);
        assert!((49..=51).contains(&p50), "p50 {p50}");
    }
}
