//! [`History`]: the last minutes of queue figures, sampled from status reports, for the
//! dashboard's chart: throughput (jobs finished per second between two samples), backlog and
//! jobs in flight, per queue.
//!
//! Bounded: at most [`History::capacity`] samples of at most [`CHART_QUEUES`] queues each
//! (the first by name), whatever the number of queues or jobs. A throughput figure needs two
//! samples of the same epoch: across a takeover the counts continue (they come from the
//! journal) but the interval spans the failover, so that point is left out (`null`).

use std::collections::{BTreeMap, VecDeque};

use jetwork_shared::protocol::StatusReport;
use serde_json::{json, Value};

/// Most queues charted.
pub const CHART_QUEUES: usize = 10;

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

/// The samples kept.
#[derive(Debug, Clone)]
pub struct History {
    samples: VecDeque<Sample>,
    capacity: usize,
}

impl History {
    /// Keeps the last `capacity` samples.
    pub fn new(capacity: usize) -> Self {
        History { samples: VecDeque::with_capacity(capacity), capacity: capacity.max(2) }
    }

    /// Most samples kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Adds a sample of `report` taken at `at_ms`.
    pub fn record(&mut self, report: &StatusReport, at_ms: u64) {
        let queues = report
            .queues
            .iter()
            .take(CHART_QUEUES)
            .map(|q| {
                let figures = Figures {
                    finished: q.completed + q.failed + q.cancelled,
                    pending: q.pending,
                    in_flight: q.in_progress,
                };
                (q.queue.to_string(), figures)
            })
            .collect();
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample { at_ms, epoch: report.epoch, queues });
    }

    /// The chart's data: `{"t": [ms…], "queues": {name: {"rate": […], "pending": […],
    /// "in_flight": […]}}}`, one entry per sample (`null` where a queue has no figure).
    pub fn to_json(&self) -> Value {
        let t: Vec<u64> = self.samples.iter().map(|s| s.at_ms).collect();
        let names: std::collections::BTreeSet<&String> =
            self.samples.iter().flat_map(|s| s.queues.keys()).collect();
        let mut queues = serde_json::Map::new();
        for name in names.into_iter().take(CHART_QUEUES) {
            let mut rate = Vec::with_capacity(t.len());
            let mut pending = Vec::with_capacity(t.len());
            let mut in_flight = Vec::with_capacity(t.len());
            let mut previous: Option<&Sample> = None;
            for sample in &self.samples {
                let now = sample.queues.get(name);
                pending.push(now.map_or(Value::Null, |f| json!(f.pending)));
                in_flight.push(now.map_or(Value::Null, |f| json!(f.in_flight)));
                let before = previous
                    .filter(|p| p.epoch == sample.epoch && p.at_ms < sample.at_ms)
                    .and_then(|p| Some((p.at_ms, p.queues.get(name)?)));
                rate.push(match (now, before) {
                    (Some(now), Some((then, before))) => {
                        let secs = (sample.at_ms - then) as f64 / 1000.0;
                        let done = now.finished.saturating_sub(before.finished) as f64;
                        json!((done / secs * 10.0).round() / 10.0)
                    }
                    _ => Value::Null,
                });
                previous = Some(sample);
            }
            queues.insert(
                name.clone(),
                json!({ "rate": rate, "pending": pending, "in_flight": in_flight }),
            );
        }
        json!({ "t": t, "queues": queues })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetwork_shared::protocol::QueueStatus;
    use jetwork_shared::QueueName;

    fn report(epoch: u64, completed: u64, pending: u64) -> StatusReport {
        StatusReport {
            leader: "m1".into(),
            epoch,
            now_ms: 0,
            queues: vec![QueueStatus {
                queue: QueueName::default_queue(),
                pending,
                in_progress: 2,
                completed,
                failed: 1,
                rejected: 0,
                waiting: 0,
                cancelled: 0,
                paused: false,
            }],
            queues_total: 1,
            workers: vec![],
            workers_total: 0,
        }
    }

    #[test]
    fn rates_span_two_samples_of_one_epoch_and_the_oldest_go() {
        let mut h = History::new(3);
        h.record(&report(1, 10, 5), 1_000);
        h.record(&report(1, 30, 4), 3_000);
        h.record(&report(2, 40, 3), 4_000);
        let v = h.to_json();
        assert_eq!(v["t"], json!([1_000, 3_000, 4_000]));
        let q = &v["queues"]["default"];
        assert_eq!(q["rate"], json!([null, 10.0, null]), "no rate across a takeover");
        assert_eq!(q["pending"], json!([5, 4, 3]));
        h.record(&report(2, 50, 0), 5_000);
        let v = h.to_json();
        assert_eq!(v["t"], json!([3_000, 4_000, 5_000]));
        assert_eq!(v["queues"]["default"]["rate"], json!([null, null, 10.0]));
    }
}
