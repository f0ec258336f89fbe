//! [`AtomicHistogram`]: a Prometheus histogram with fixed buckets whose `observe` is a few
//! relaxed atomic operations: no lock and no allocation, so it can sit on a hot path (one
//! observation per job). `prometheus_client`'s own histogram takes a mutex per observation.
//!
//! Invariants: the bucket bounds are fixed at construction and ascending; each observation
//! adds one to exactly one bucket (the first whose bound is ≥ the value, or the implicit
//! `+Inf` one) and to the count, and its value to the sum. A scrape may see an observation's
//! bucket before its count or sum (relaxed ordering): Prometheus tolerates that, and the next
//! scrape is exact.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Bounds for durations in seconds, from 100 µs to about 1 min: job run times and queue waits
/// of the tiny benchmark jobs sit at the low end, real work higher up.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Bounds for journal write latency in seconds (a write's round trip is ~0.1–0.5 ms).
pub const WRITE_SECONDS_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

/// Bounds for counts of things per batch (events per journal write: 1 to `max_batch`).
pub const COUNT_BUCKETS: &[f64] =
    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// A lock-free histogram; clones share the same counts.
#[derive(Debug, Clone)]
pub struct AtomicHistogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    bounds: &'static [f64],
    /// One per bound, plus the `+Inf` bucket last. Not cumulative.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    /// The sum, as the bits of an `f64`.
    sum: AtomicU64,
}

impl AtomicHistogram {
    /// A histogram with the given ascending bucket bounds.
    pub fn new(bounds: &'static [f64]) -> Self {
        let buckets = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        AtomicHistogram {
            inner: Arc::new(Inner {
                bounds,
                buckets,
                count: AtomicU64::new(0),
                sum: AtomicU64::new(0f64.to_bits()),
            }),
        }
    }

    /// A histogram of durations in seconds ([`SECONDS_BUCKETS`]).
    pub fn seconds() -> Self {
        Self::new(SECONDS_BUCKETS)
    }

    /// Records one value.
    pub fn observe(&self, value: f64) {
        let inner = &*self.inner;
        let index = inner.bounds.iter().position(|b| value <= *b).unwrap_or(inner.bounds.len());
        inner.buckets[index].fetch_add(1, Ordering::Relaxed);
        inner.count.fetch_add(1, Ordering::Relaxed);
        // Uncontended in practice (one writer per histogram): the loop runs once.
        let _ = inner.sum.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
            Some((f64::from_bits(bits) + value).to_bits())
        });
    }

    /// Records a duration in milliseconds, as seconds.
    pub fn observe_millis(&self, millis: u64) {
        self.observe(millis as f64 / 1000.0);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.inner.count.load(Ordering::Relaxed)
    }

    /// Sum of the observations so far.
    pub fn sum(&self) -> f64 {
        f64::from_bits(self.inner.sum.load(Ordering::Relaxed))
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &*self.inner;
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(inner.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        encoder.encode_histogram::<NoLabelSet>(
            self.sum(),
            count,
            &buckets,
            None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>,
        )
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = AtomicHistogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 3.0] {
            h.observe(v);
        }
        assert_eq!(h.count(), 4);
        assert!((h.sum() - 6.0).abs() < 1e-9);
        let mut registry = Registry::default();
        registry.register("wait_seconds", "Wait", h);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("wait_seconds_bucket{le=\"1.0\"} 2\n"), "{text}");
        assert!(text.contains("wait_seconds_bucket{le=\"2.0\"} 3\n"), "{text}");
        assert!(text.contains("wait_seconds_bucket{le=\"+Inf\"} 4\n"), "{text}");
        assert!(text.contains("wait_seconds_count 4\n"), "{text}");
    }
}
