//! `jetwork-frontend status --watch`: a refreshing view of the leader's status, with rates per
//! queue (jobs finished per second, from the difference between successive reports), the
//! backlog, the workers, and the failures published while watching. While no master answers
//! it says so and shows who holds the lease and when it runs out ([`no_leader`]), instead of
//! failing; it picks the leader up again by itself.
//!
//! Rates need two reports: the first frame shows none. A report from a new epoch resets them
//! (a new leader's counters continue the old one's, but the interval spans the takeover).
//! Failures come from the [`ResultsFeed`] (the results stream's headers, no payloads), so only
//! those stored while watching are listed: the newest [`RECENT_FAILURES`], a job once (by its
//! newest failure: a retried job that fails again replaces its row). If NATS refuses this user
//! that feed, `--watch` stops at once with the permission named; if the feed is lost (NATS
//! restarted), the frames say so until it reads again.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use jetwork_shared::leader::LeaseView;
use jetwork_shared::protocol::{StatusQuery, StatusReport};
use jetwork_shared::QueueName;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::dashboard::RecentFailures;
pub use crate::no_leader::no_leader;
pub use crate::results_feed::Failure;
use crate::results_feed::{Event, ResultsFeed};
use crate::{status_view, Client, ClientError};

/// Failures listed at most.
pub const RECENT_FAILURES: usize = 5;

/// What the view remembers between frames.
#[derive(Debug)]
pub struct Watch {
    /// The previous report's finished counts (completed + failed) per queue, its epoch and
    /// when it came.
    previous: Option<(Instant, u64, HashMap<QueueName, u64>)>,
    failures: RecentFailures,
    /// Why failures are not being read right now, if they are not.
    feed_trouble: Option<String>,
}

impl Default for Watch {
    fn default() -> Self {
        Watch { previous: None, failures: RecentFailures::new(RECENT_FAILURES), feed_trouble: None }
    }
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

    /// Notes what the results feed says: a failure stored, or whether it reads.
    pub fn feed(&mut self, event: Event) {
        match event {
            Event::Failure(failure) => self.failures.push(failure),
            Event::Reading => self.feed_trouble = None,
            other => self.feed_trouble = other.trouble(),
        }
    }

    fn failures_text(&self) -> String {
        let mut out = String::new();
        if let Some(why) = &self.feed_trouble {
            let _ = writeln!(out, "\nfailures are not being read right now: {why}");
        }
        let mut failures = self.failures.newest_first().peekable();
        if failures.peek().is_none() {
            return out;
        }
        let _ = writeln!(out, "\nRECENT FAILURES (newest first, one per job)");
        for f in failures {
            let _ =
                writeln!(out, "{} [{}] attempt {}: {}", f.work_id, f.queue, f.attempt, f.reason);
        }
        out
    }
}

/// Runs the view, refreshing every `interval`, `count` frames (forever when `None`).
pub async fn run(
    client: &Client,
    query: StatusQuery,
    interval: Duration,
    count: Option<u64>,
) -> Result<(), ClientError> {
    let terminal = std::io::stdout().is_terminal();
    let mut watch = Watch::default();
    let mut feed = ResultsFeed::start(client);
    // The first frame says whether failures are read: the feed's first word comes within a
    // request's time. A user NATS refuses the feed is told so now, naming the permission.
    let first = tokio::time::timeout(client.settings().nats.request_timeout, feed.next()).await;
    match first {
        Ok(Some(Event::Refused(denied))) => return Err(denied.into()),
        Ok(Some(event)) => watch.feed(event),
        Ok(None) | Err(_) => {}
    }
    let mut tick = tokio::time::interval(interval);
    let mut shown = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(event) = feed.next() => {
                watch.feed(event);
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

    fn failure(id: &str, attempt: &str) -> Event {
        Event::Failure(Failure {
            work_id: id.to_owned(),
            queue: "q".into(),
            attempt: attempt.to_owned(),
            reason: "boom".into(),
        })
    }

    #[test]
    fn failures_keep_the_newest() {
        let mut watch = Watch::default();
        for i in 0..7 {
            watch.feed(failure(&format!("w{i}"), "5"));
        }
        let text = watch.failures_text();
        assert!(!text.contains("w1 ") && text.contains("w2 ") && text.contains("w6 "), "{text}");
        assert!(text.find("w6 ") < text.find("w2 "), "newest first: {text}");
    }

    #[test]
    fn a_job_that_fails_again_is_listed_once_by_its_newest_failure() {
        let mut watch = Watch::default();
        watch.feed(failure("twice", "3"));
        watch.feed(failure("other", "1"));
        watch.feed(failure("twice", "6"));
        let text = watch.failures_text();
        assert_eq!(text.matches("twice ").count(), 1, "{text}");
        assert!(text.contains("twice [q] attempt 6: boom"), "{text}");
    }

    #[test]
    fn a_lost_feed_is_said_until_it_reads_again() {
        let mut watch = Watch::default();
        watch.feed(Event::Trouble("reading the results stream: missed idle heartbeat".into()));
        assert!(watch.failures_text().contains("not being read right now"));
        watch.feed(Event::Reading);
        assert!(watch.failures_text().is_empty());
    }
}
