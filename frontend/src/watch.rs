//! `jetwork-frontend status --watch`: a refreshing view of the leader's status, with rates per
//! queue (jobs finished per second, from the difference between successive reports), the
//! backlog, the workers, and the failures published while watching. While no master answers
//! it says so and shows who holds the lease and when it runs out ([`no_leader`]), instead of
//! failing; it picks the leader up again by itself.
//!
//! Rates need two reports: the first frame shows none. A report from a new epoch resets them
//! (a new leader's counters continue the old one's, but the interval spans the takeover).
//! Failures come from a subscription to `jetwork.results.>` (headers only are read), so only
//! those published while watching are listed, at most [`RECENT_FAILURES`].

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use futures::StreamExt;
use jetwork_shared::leader::LeaseView;
use jetwork_shared::protocol::{StatusQuery, StatusReport};
use jetwork_shared::{headers, subjects, QueueName};
use time::OffsetDateTime;
use tokio::time::Instant;

pub use crate::no_leader::no_leader;
use crate::{status_view, Client, ClientError};

/// Failures listed at most.
pub const RECENT_FAILURES: usize = 5;

/// One failure seen on the results subjects.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    pub work_id: String,
    pub queue: String,
    pub attempt: String,
    pub reason: String,
}

/// What the view remembers between frames.
#[derive(Debug, Default)]
pub struct Watch {
    /// The previous report's finished counts (completed + failed) per queue, its epoch and
    /// when it came.
    previous: Option<(Instant, u64, HashMap<QueueName, u64>)>,
    failures: VecDeque<Failure>,
}

impl Watch {
    /// A frame for `report`, received at `at`.
    pub fn frame(&mut self, report: &StatusReport, at: Instant) -> String {
        let finished: HashMap<QueueName, u64> = report
            .queues
            .iter()
            .map(|q| (q.queue.clone(), q.completed + q.failed + q.cancelled))
            .collect();
        let rates: HashMap<&QueueName, f64> = match &self.previous {
            Some((then, epoch, before)) if *epoch == report.epoch => {
                let secs = at.duration_since(*then).as_secs_f64().max(0.001);
                finished
                    .iter()
                    .map(|(q, n)| {
                        (q, n.saturating_sub(before.get(q).copied().unwrap_or(0)) as f64 / secs)
                    })
                    .collect()
            }
            _ => HashMap::new(),
        };
        let mut out = status_view::render(report);
        let _ = writeln!(out, "\n{:<24} {:>10} {:>10}", "QUEUE", "JOBS/S", "BACKLOG");
        for q in &report.queues {
            let rate = rates.get(&q.queue).map_or("-".to_owned(), |r| format!("{r:.1}"));
            let _ = writeln!(out, "{:<24} {:>10} {:>10}", q.queue, rate, q.pending);
        }
        self.previous = Some((at, report.epoch, finished));
        out.push_str(&self.failures_text());
        out
    }

    /// A frame while no master answers.
    pub fn no_leader_frame(&mut self, why: &str, lease: Result<LeaseView, ClientError>) -> String {
        self.previous = None;
        let mut out = no_leader("status", why, lease, OffsetDateTime::now_utc());
        out.push_str(&self.failures_text());
        out
    }

    /// Notes a failure published on the results subjects.
    pub fn failed(&mut self, failure: Failure) {
        if self.failures.len() == RECENT_FAILURES {
            self.failures.pop_front();
        }
        self.failures.push_back(failure);
    }

    fn failures_text(&self) -> String {
        let mut out = String::new();
        if self.failures.is_empty() {
            return out;
        }
        let _ = writeln!(out, "\nRECENT FAILURES (newest last)");
        for f in &self.failures {
            let _ =
                writeln!(out, "{} [{}] attempt {}: {}", f.work_id, f.queue, f.attempt, f.reason);
        }
        out
    }
}

/// Reads a failure from a message on `jetwork.results.<queue>.<id>`, if it is one.
pub(crate) fn failure_of(message: &async_nats::Message) -> Option<Failure> {
    let h = message.headers.as_ref()?;
    if h.get(headers::STATUS)?.as_str() != headers::STATUS_FAILED {
        return None;
    }
    let get = |name: &str| h.get(name).map(|v| v.as_str().to_owned()).unwrap_or_default();
    Some(Failure {
        work_id: get(headers::WORK_ID),
        queue: get(headers::QUEUE),
        attempt: get(headers::ATTEMPT),
        reason: get(headers::REASON),
    })
}

/// Runs the view, refreshing every `interval`, `count` frames (forever when `None`).
pub async fn run(
    client: &Client,
    query: StatusQuery,
    interval: Duration,
    count: Option<u64>,
) -> Result<(), ClientError> {
    let mut results = client
        .nats()
        .subscribe(subjects::RESULTS_ALL)
        .await
        .map_err(|e| ClientError::Nats(e.to_string()))?;
    let terminal = std::io::stdout().is_terminal();
    let mut watch = Watch::default();
    let mut tick = tokio::time::interval(interval);
    let mut shown = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(message) = results.next() => {
                if let Some(failure) = failure_of(&message) {
                    watch.failed(failure);
                }
                continue;
            }
        }
        let frame = match client.status_page(query).await {
            Ok(report) => watch.frame(&report, Instant::now()),
            Err(ClientError::NoMaster(why)) => watch.no_leader_frame(&why, client.lease().await),
            Err(e) => return Err(e),
        };
        let now = OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut out = std::io::stdout().lock();
        // On a terminal each frame replaces the last; piped, frames follow one another.
        let clear = if terminal { "\x1b[2J\x1b[H" } else { "" };
        let _ = write!(out, "{clear}jetwork status at {now} (every {interval:?})\n{frame}\n");
        let _ = out.flush();
        shown += 1;
        if count.is_some_and(|c| shown >= c) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetwork_shared::protocol::QueueStatus;

    fn report(epoch: u64, completed: u64) -> StatusReport {
        StatusReport {
            leader: "m1-abc".into(),
            epoch,
            now_ms: 0,
            queues: vec![QueueStatus {
                queue: QueueName::default_queue(),
                pending: 4,
                in_progress: 1,
                completed,
                failed: 0,
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
    fn rates_come_from_successive_reports_of_one_epoch() {
        let mut watch = Watch::default();
        let t0 = Instant::now();
        let first = watch.frame(&report(3, 100), t0);
        assert!(first.contains("default                           -          4"), "{first}");
        let second = watch.frame(&report(3, 150), t0 + Duration::from_secs(2));
        assert!(second.contains("25.0"), "{second}");
        let after_takeover = watch.frame(&report(4, 160), t0 + Duration::from_secs(3));
        assert!(!after_takeover.contains("10.0"), "{after_takeover}");
    }

    #[test]
    fn failures_keep_the_newest() {
        let mut watch = Watch::default();
        for i in 0..7 {
            let f = Failure {
                work_id: format!("w{i}"),
                queue: "q".into(),
                attempt: "5".into(),
                reason: "boom".into(),
            };
            watch.failed(f);
        }
        let text = watch.failures_text();
        assert!(!text.contains("w1 ") && text.contains("w2 ") && text.contains("w6 "), "{text}");
    }
}
