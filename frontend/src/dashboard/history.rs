//! [`History`]: queue figures over time, sampled from the leader's status reports, for the
//! dashboard's charts: throughput (jobs finished per second), backlog and jobs in flight, per
//! queue. The dashboard process keeps it, so a page opened later shows what came before.
//!
//! Two resolutions, both bounded whatever the number of queues or the `--refresh`:
//! - **recent**: the samples of the last [`RECENT_SPAN_MS`] (5 minutes), one a second at most
//!   (a faster refresh keeps every sample a second or more after the last kept), at most
//!   [`RECENT_POINTS`];
//! - **long**: [`BUCKETS`] (360) buckets covering the whole `span` (`--history`, 1 h by
//!   default: 10 s each; a longer span widens them, a shorter one keeps them at 10 s). Every
//!   sample lands in its bucket: the bucket's backlog and in flight are those of its last
//!   sample, its throughput is the jobs finished over the intervals between samples that end
//!   in it, divided by their length.
//!
//! Each sample holds at most [`CHART_QUEUES`] queues (the first by name).
//!
//! Invariants: a throughput figure comes only from two samples of the same epoch less than
//! [`MAX_PAIR_GAP_MS`] apart. Across a takeover the counts continue (they come from the
//! journal) but the interval spans the failover, so that interval counts for nothing: a point
//! with no such interval has no throughput (`null`), never a made-up one. Where no sample came
//! for a while (no leader, the dashboard lost NATS), the series say so with a `null` point,
//! so a chart draws a gap rather than a line across it. A clock that steps back clears the
//! history (its order would be wrong).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use jetwork_shared::protocol::StatusReport;
use serde_json::{json, Value};

/// Most queues charted.
pub const CHART_QUEUES: usize = 10;
/// How far back the recent samples go.
pub const RECENT_SPAN_MS: u64 = 5 * 60 * 1000;
/// Most recent samples kept.
pub const RECENT_POINTS: usize = 300;
/// Least time between two recent samples kept.
const RECENT_MIN_GAP_MS: u64 = 1000;
/// Buckets of the long view.
pub const BUCKETS: usize = 360;
/// The narrowest bucket.
const MIN_BUCKET_MS: u64 = 10_000;
/// Two samples further apart than this give no throughput (a pause in sampling, not a rate).
pub const MAX_PAIR_GAP_MS: u64 = 60_000;

/// One queue in one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Figures {
    finished: u64,
    pending: u64,
    in_flight: u64,
}

/// One sample.
#[derive(Debug, Clone)]
struct Sample {
    /// Milliseconds since the Unix epoch (the dashboard's clock).
    at_ms: u64,
    epoch: u64,
    queues: BTreeMap<String, Figures>,
}

/// One queue in one bucket.
#[derive(Debug, Clone, Copy, Default)]
struct Summed {
    pending: u64,
    in_flight: u64,
    /// Jobs finished over `covered_ms` (intervals of one epoch ending in the bucket).
    done: u64,
    covered_ms: u64,
}

/// The samples of one bucket, summed up.
#[derive(Debug, Clone)]
struct Bucket {
    /// Its start, a multiple of the bucket width.
    start_ms: u64,
    /// Its last sample's time (where the chart puts it).
    at_ms: u64,
    queues: BTreeMap<String, Summed>,
}

/// The figures kept.
#[derive(Debug, Clone)]
pub struct History {
    recent: VecDeque<Sample>,
    buckets: VecDeque<Bucket>,
    /// The last sample recorded (kept or not), for the next throughput interval.
    last: Option<Sample>,
    bucket_ms: u64,
    span_ms: u64,
    refresh_ms: u64,
}

impl History {
    /// Keeps `span` (at least 5 minutes) of samples taken every `refresh`.
    pub fn new(refresh: Duration, span: Duration) -> Self {
        let span_ms = (span.as_millis() as u64).max(RECENT_SPAN_MS);
        let bucket_ms = span_ms.div_ceil(BUCKETS as u64).div_ceil(1000) * 1000;
        History {
            recent: VecDeque::new(),
            buckets: VecDeque::new(),
            last: None,
            bucket_ms: bucket_ms.max(MIN_BUCKET_MS),
            span_ms,
            refresh_ms: (refresh.as_millis() as u64).max(1),
        }
    }

    /// The width of a bucket of the long view.
    pub fn bucket_ms(&self) -> u64 {
        self.bucket_ms
    }

    /// Adds a sample of `report` taken at `at_ms`.
    pub fn record(&mut self, report: &StatusReport, at_ms: u64) {
        if self.last.as_ref().is_some_and(|last| at_ms <= last.at_ms) {
            self.recent.clear();
            self.buckets.clear();
            self.last = None;
        }
        let queues: BTreeMap<String, Figures> = report
            .queues
            .iter()
            .map(|q| {
                let figures = Figures {
                    finished: q.completed + q.failed + q.cancelled,
                    pending: q.pending,
                    in_flight: q.in_progress,
                };
                (q.queue.to_string(), figures)
            })
            .take(CHART_QUEUES)
            .collect();
        let sample = Sample { at_ms, epoch: report.epoch, queues };
        self.bucket(&sample);
        let keep = self.recent.back().is_none_or(|kept| at_ms >= kept.at_ms + RECENT_MIN_GAP_MS);
        if keep {
            self.recent.push_back(sample.clone());
        }
        while self.recent.len() > RECENT_POINTS
            || self.recent.front().is_some_and(|s| s.at_ms + RECENT_SPAN_MS < at_ms)
        {
            self.recent.pop_front();
        }
        self.last = Some(sample);
    }

    /// Puts `sample` in its bucket, with the interval since the last sample.
    fn bucket(&mut self, sample: &Sample) {
        let start_ms = sample.at_ms - sample.at_ms % self.bucket_ms;
        if self.buckets.back().is_none_or(|b| b.start_ms != start_ms) {
            self.buckets.push_back(Bucket { start_ms, at_ms: 0, queues: BTreeMap::new() });
        }
        while self.buckets.len() > BUCKETS
            || self.buckets.front().is_some_and(|b| b.start_ms + self.span_ms <= start_ms)
        {
            self.buckets.pop_front();
        }
        let before = self.last.as_ref().filter(|last| interval_counts(last, sample));
        let Some(bucket) = self.buckets.back_mut() else { return };
        bucket.at_ms = sample.at_ms;
        for (name, now) in &sample.queues {
            let summed = bucket.queues.entry(name.clone()).or_default();
            summed.pending = now.pending;
            summed.in_flight = now.in_flight;
            if let Some((last, then)) = before.and_then(|b| Some((b, b.queues.get(name)?))) {
                summed.done += now.finished.saturating_sub(then.finished);
                summed.covered_ms += sample.at_ms - last.at_ms;
            }
        }
    }

    /// The charts' data: `{"span_ms", "bucket_ms", "recent_ms", "recent": series, "long":
    /// series}`, each series `{"t": [ms…], "queues": {name: {"rate": […], "pending": […],
    /// "in_flight": […]}}}` with one entry per point (`null` where a queue has no figure, and a
    /// point of `null`s where sampling paused).
    pub fn to_json(&self) -> Value {
        let names: BTreeSet<&String> = self
            .recent
            .iter()
            .flat_map(|s| s.queues.keys())
            .chain(self.buckets.iter().flat_map(|b| b.queues.keys()))
            .collect();
        let names: Vec<&String> = names.into_iter().take(CHART_QUEUES).collect();
        let recent_gap = 3 * self.refresh_ms.max(RECENT_MIN_GAP_MS);
        let mut recent = Series::new(&names, recent_gap);
        let mut previous: Option<&Sample> = None;
        for sample in &self.recent {
            let before = previous.filter(|p| interval_counts(p, sample));
            recent.push(sample.at_ms, |name| {
                let now = sample.queues.get(name)?;
                let rate = before.and_then(|p| {
                    let then = p.queues.get(name)?;
                    let done = now.finished.saturating_sub(then.finished);
                    Some(per_second(done, sample.at_ms - p.at_ms))
                });
                Some((rate, now.pending, now.in_flight))
            });
            previous = Some(sample);
        }
        let long_gap = 2 * self.bucket_ms + recent_gap;
        let mut long = Series::new(&names, long_gap);
        for bucket in &self.buckets {
            long.push(bucket.at_ms, |name| {
                let summed = bucket.queues.get(name)?;
                let rate =
                    (summed.covered_ms > 0).then(|| per_second(summed.done, summed.covered_ms));
                Some((rate, summed.pending, summed.in_flight))
            });
        }
        json!({
            "span_ms": self.span_ms,
            "bucket_ms": self.bucket_ms,
            "recent_ms": RECENT_SPAN_MS,
            "recent": recent.into_json(),
            "long": long.into_json(),
        })
    }
}

/// Whether the interval from `before` to `now` gives a throughput.
fn interval_counts(before: &Sample, now: &Sample) -> bool {
    before.epoch == now.epoch
        && before.at_ms < now.at_ms
        && now.at_ms - before.at_ms <= MAX_PAIR_GAP_MS
}

/// `done` jobs in `ms`, per second, to a tenth.
fn per_second(done: u64, ms: u64) -> f64 {
    (done as f64 * 1000.0 / ms as f64 * 10.0).round() / 10.0
}

/// Chart points being built: times and, per queue, three series.
struct Series<'a> {
    names: &'a [&'a String],
    /// Points further apart than this have a gap between them.
    gap_ms: u64,
    t: Vec<u64>,
    /// Per queue (as `names`): rate, pending, in flight.
    values: Vec<[Vec<Value>; 3]>,
}

impl<'a> Series<'a> {
    fn new(names: &'a [&'a String], gap_ms: u64) -> Self {
        let values = names.iter().map(|_| [Vec::new(), Vec::new(), Vec::new()]).collect();
        Series { names, gap_ms, t: Vec::new(), values }
    }

    /// Adds a point at `at_ms`: each queue's (rate, pending, in flight), if it has figures.
    fn push(&mut self, at_ms: u64, figures: impl Fn(&str) -> Option<(Option<f64>, u64, u64)>) {
        if self.t.last().is_some_and(|&t| at_ms > t + self.gap_ms) {
            let gap_at = self.t.last().map_or(at_ms, |&t| t + 1);
            self.t.push(gap_at);
            for series in &mut self.values {
                series.iter_mut().for_each(|s| s.push(Value::Null));
            }
        }
        self.t.push(at_ms);
        for (name, series) in self.names.iter().zip(&mut self.values) {
            let (rate, pending, in_flight) = match figures(name) {
                Some((rate, pending, in_flight)) => (json!(rate), json!(pending), json!(in_flight)),
                None => (Value::Null, Value::Null, Value::Null),
            };
            series[0].push(rate);
            series[1].push(pending);
            series[2].push(in_flight);
        }
    }

    fn into_json(self) -> Value {
        let mut queues = serde_json::Map::new();
        for (name, [rate, pending, in_flight]) in self.names.iter().zip(self.values) {
            queues.insert(
                (*name).clone(),
                json!({ "rate": rate, "pending": pending, "in_flight": in_flight }),
            );
        }
        json!({ "t": self.t, "queues": queues })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetwork_shared::protocol::QueueStatus;
    use jetwork_shared::QueueName;

    const HOUR: Duration = Duration::from_secs(3600);

    fn queue(name: &str, completed: u64, pending: u64) -> QueueStatus {
        QueueStatus {
            queue: QueueName::parse(name).expect("a valid queue name"),
            pending,
            in_progress: 2,
            completed,
            failed: 1,
            rejected: 0,
            waiting: 0,
            cancelled: 0,
            paused: false,
        }
    }

    fn report(epoch: u64, completed: u64, pending: u64) -> StatusReport {
        StatusReport {
            leader: "m1".into(),
            epoch,
            now_ms: 0,
            queues: vec![queue("default", completed, pending)],
            queues_total: 1,
            workers: vec![],
            workers_total: 0,
        }
    }

    fn numbers(v: &Value) -> Vec<Option<f64>> {
        v.as_array().map(|a| a.iter().map(Value::as_f64).collect()).unwrap_or_default()
    }

    #[test]
    fn rates_span_two_samples_of_one_epoch_and_a_takeover_stays_a_gap() {
        let mut h = History::new(Duration::from_secs(2), HOUR);
        h.record(&report(1, 10, 5), 1_000);
        h.record(&report(1, 30, 4), 3_000);
        h.record(&report(2, 40, 3), 5_000);
        h.record(&report(2, 50, 0), 7_000);
        let v = h.to_json();
        assert_eq!(v["recent"]["t"], json!([1_000, 3_000, 5_000, 7_000]));
        let q = &v["recent"]["queues"]["default"];
        assert_eq!(q["rate"], json!([null, 10.0, null, 5.0]), "no rate across a takeover");
        assert_eq!(q["pending"], json!([5, 4, 3, 0]));
        // One bucket (0–10 s): its intervals of one epoch are 1→3 s (20 jobs) and 5→7 s (10).
        assert_eq!(v["long"]["t"], json!([7_000]));
        assert_eq!(v["long"]["queues"]["default"]["rate"], json!([7.5]));
        assert_eq!(v["long"]["queues"]["default"]["pending"], json!([0]));
    }

    #[test]
    fn a_bucket_whose_only_interval_spans_a_takeover_has_no_rate() {
        let mut h = History::new(Duration::from_secs(2), HOUR);
        h.record(&report(1, 10, 0), 8_000);
        h.record(&report(2, 90, 0), 12_000);
        h.record(&report(2, 100, 0), 22_000);
        let long = &h.to_json()["long"];
        assert_eq!(long["t"], json!([8_000, 12_000, 22_000]));
        assert_eq!(long["queues"]["default"]["rate"], json!([null, null, 1.0]));
    }

    #[test]
    fn an_hour_at_any_refresh_is_down_sampled_to_360_buckets_and_5_minutes_of_samples() {
        for refresh_ms in [200u64, 2_000, 30_000] {
            let mut h = History::new(Duration::from_millis(refresh_ms), HOUR);
            assert_eq!(h.bucket_ms(), 10_000);
            // Two hours at 5 jobs a second, backlog = minutes since the start.
            let end = 2 * 3_600_000;
            let mut at = refresh_ms;
            while at <= end {
                h.record(&report(7, at * 5 / 1000, at / 60_000), at);
                at += refresh_ms;
            }
            let last = at - refresh_ms;
            let v = h.to_json();
            let long = &v["long"];
            let t = numbers(&long["t"]);
            let expected = (3_600_000 / refresh_ms.max(10_000)) as usize;
            assert!(t.len() <= expected && t.len() + 1 >= expected, "{refresh_ms}: {}", t.len());
            let first = t[0].unwrap_or_default() as u64;
            assert!(first + 3_600_000 >= last, "{refresh_ms}: older than an hour: {first}");
            let rates = numbers(&long["queues"]["default"]["rate"]);
            assert!(rates.iter().all(|r| *r == Some(5.0)), "{refresh_ms}: {rates:?}");
            let recent = numbers(&v["recent"]["t"]);
            assert!(recent.len() <= RECENT_POINTS, "{refresh_ms}: {}", recent.len());
            let oldest = recent[0].unwrap_or_default() as u64;
            assert!(oldest + RECENT_SPAN_MS >= last, "{refresh_ms}: {oldest}");
            let kept = numbers(&v["recent"]["queues"]["default"]["rate"]);
            assert!(kept.iter().skip(1).all(|r| *r == Some(5.0)), "{refresh_ms}: {kept:?}");
        }
    }

    #[test]
    fn a_longer_span_widens_the_buckets_and_a_shorter_one_keeps_them_at_10_s() {
        let day = History::new(Duration::from_secs(2), Duration::from_secs(86_400));
        assert_eq!(day.bucket_ms(), 240_000);
        let short = History::new(Duration::from_secs(2), Duration::from_secs(60));
        assert_eq!(short.bucket_ms(), 10_000);
    }

    #[test]
    fn a_pause_in_sampling_is_a_gap_in_both_views() {
        let mut h = History::new(Duration::from_secs(2), HOUR);
        h.record(&report(1, 0, 1), 100_000);
        h.record(&report(1, 10, 1), 102_000);
        // No leader for a minute and a half: nothing recorded.
        h.record(&report(1, 20, 1), 192_000);
        h.record(&report(1, 30, 1), 194_000);
        let v = h.to_json();
        assert_eq!(v["recent"]["t"], json!([100_000, 102_000, 102_001, 192_000, 194_000]));
        assert_eq!(
            v["recent"]["queues"]["default"]["rate"],
            json!([null, 5.0, null, null, 5.0]),
            "a pause in sampling longer than a minute gives no rate, and draws a gap"
        );
        assert_eq!(v["long"]["t"], json!([102_000, 102_001, 194_000]));
        assert_eq!(v["long"]["queues"]["default"]["pending"], json!([1, null, 1]));
    }

    #[test]
    fn many_queues_chart_the_first_ten_and_a_clock_stepping_back_starts_over() {
        let mut h = History::new(Duration::from_secs(2), HOUR);
        let mut many = report(1, 0, 0);
        many.queues = (0..1000).map(|i| queue(&format!("q{i:04}"), i, i)).collect();
        for i in 0..500u64 {
            h.record(&many, 1_000_000 + i * 2_000);
        }
        let v = h.to_json();
        let names: Vec<&String> =
            v["long"]["queues"].as_object().map(|q| q.keys().collect()).unwrap_or_default();
        assert_eq!(names.len(), CHART_QUEUES);
        assert_eq!(names[0], "q0000");
        h.record(&report(1, 0, 0), 1_000);
        let v = h.to_json();
        assert_eq!(v["recent"]["t"], json!([1_000]));
        assert_eq!(v["long"]["t"], json!([1_000]));
    }
}
