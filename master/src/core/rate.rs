//! [`RateLimits`]: token buckets for the queues' start rates. A queue limited to `rate`
//! starts per second may start up to `rate` at once after a quiet second, then one every
//! `1/rate` s. Soft: never journaled (the starts it allows are, in `WorkStarted`), so a new
//! leader starts with full buckets, which allows at most one burst per takeover. Time is an
//! input, like everywhere in the core; counts are kept in thousandths of a start, so no
//! floating point is needed.

use std::collections::BTreeMap;

use jetwork_shared::QueueName;

use super::Millis;

/// Thousandths of a start: one start.
const ONE: u64 = 1000;

/// One queue's bucket: what it held at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bucket {
    milli: u64,
    at: Millis,
}

/// The buckets of the rate-limited queues that started something (the others are full).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimits {
    buckets: BTreeMap<QueueName, Bucket>,
}

impl RateLimits {
    /// Starts `queue`, limited to `rate` per second, may make at `now`.
    pub fn available(&self, queue: &QueueName, rate: u32, now: Millis) -> u64 {
        self.level(queue, rate, now) / ONE
    }

    /// `queue` started one at `now`.
    pub fn take(&mut self, queue: &QueueName, rate: u32, now: Millis) {
        let milli = self.level(queue, rate, now).saturating_sub(ONE);
        self.buckets.insert(queue.clone(), Bucket { milli, at: now });
    }

    /// What the bucket holds at `now`: refilled at `rate` per second since it was last
    /// drawn from, up to one second's worth (at least one start).
    fn level(&self, queue: &QueueName, rate: u32, now: Millis) -> u64 {
        let full = u64::from(rate.max(1)) * ONE;
        match self.buckets.get(queue) {
            None => full,
            Some(b) => {
                // `rate` per second is `rate` thousandths per millisecond.
                let refill = now.saturating_sub(b.at).saturating_mul(u64::from(rate));
                b.milli.saturating_add(refill).min(full)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_a_second_of_starts_then_refills_at_the_rate() {
        let (q, mut limits) = (QueueName::parse("q").expect("valid"), RateLimits::default());
        assert_eq!(limits.available(&q, 10, 0), 10);
        for _ in 0..10 {
            limits.take(&q, 10, 0);
        }
        assert_eq!(limits.available(&q, 10, 0), 0);
        assert_eq!(limits.available(&q, 10, 99), 0);
        assert_eq!(limits.available(&q, 10, 100), 1, "one start per 100 ms at 10/s");
        assert_eq!(limits.available(&q, 10, 450), 4);
        assert_eq!(limits.available(&q, 10, 60_000), 10, "never more than a second's worth");
        limits.take(&q, 10, 250);
        assert_eq!(limits.available(&q, 10, 250), 1, "2.5 refilled, one taken");
    }
}
