//! [`Scout`]: spots priority and expiring submissions as they are stored, so the leader can
//! take those stored behind an unread backlog out of turn (a priority jump) instead of leaving
//! them until its reader gets there, and expiring ones even while nobody serves their queue
//! (no reader ever gets there then: without this such a job would be unknown to `job` and
//! expire only once a worker came).
//!
//! A priority submission is announced on `jetwork.submitted.<queue>` (core NATS) once stored:
//! by its submitter (the jetwork client does, with the stored sequence and the priority), or,
//! with `streams.republish_submissions`, by `JETWORK_SUBMIT` itself, which then republishes the
//! headers of every submission (see `shared/src/topology.rs`). While this master leads, the
//! scout subscribes there and keeps each submission asking for a
//! priority above 0 or an expiry for [`SETTLE`] before passing it on as a [`Sighting`]: long enough for a
//! reader that is not behind to deliver it in turn, which is the usual case. The leader then
//! checks it against its state (still unread, the queue served) and reads it back by its
//! sequence (`intake::read_out_of_turn`); the engine decides whether it may jump.
//!
//! Best effort by design: a notice lost (core NATS, no leader at the time) or dropped at a
//! limit only means that submission waits for its turn, as it would without jumps. Nothing in
//! a notice is trusted: a forged one only leads to a read of the stream, where the stored
//! message itself is checked.

use std::collections::VecDeque;
use std::time::Duration;

use futures::StreamExt;
use jetwork_shared::job_options;
use jetwork_shared::{headers, subjects, QueueName};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a priority submission is left to its queue's reader before it is passed on.
pub const SETTLE: Duration = Duration::from_millis(20);
/// Most sightings kept settling at once; beyond it, new ones are dropped (they wait for
/// their turn).
const MAX_SETTLING: usize = 4096;

/// A priority or expiring submission the scout saw stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    pub queue: QueueName,
    pub seq: u64,
    /// The notice says it asks for an expiry: worth reading even while nobody serves its
    /// queue. A lie costs one read; the stored submission is what the engine judges.
    pub expiring: bool,
}

/// The scout of one leadership term: stops (and unsubscribes) when dropped.
#[derive(Debug)]
pub struct Scout {
    stop: CancellationToken,
}

impl Scout {
    /// Subscribes to the notices of stored submissions and sends sightings to `tx`.
    pub fn spawn(client: async_nats::Client, tx: mpsc::Sender<Sighting>) -> Scout {
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = watch(client, tx) => {}
                () = stopped.cancelled() => {}
            }
        });
        Scout { stop }
    }
}

impl Drop for Scout {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn watch(client: async_nats::Client, tx: mpsc::Sender<Sighting>) {
    let mut notices = match client.subscribe(subjects::SUBMITTED_ALL).await {
        Ok(notices) => notices,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch for priority submissions; they wait for their turn");
            return;
        }
    };
    let mut settling: VecDeque<(Instant, Sighting)> = VecDeque::new();
    loop {
        // Every sighting settles for the same time, so the oldest is always the first due.
        let due = settling.front().map(|(at, _)| *at);
        tokio::select! {
            notice = notices.next() => {
                let Some(notice) = notice else { return };
                if let Some(sighting) = sighting(&notice) {
                    if settling.len() < MAX_SETTLING {
                        settling.push_back((Instant::now() + SETTLE, sighting));
                    }
                }
            }
            () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                let now = Instant::now();
                while settling.front().is_some_and(|(at, _)| *at <= now) {
                    if let Some((_, sighting)) = settling.pop_front() {
                        // A full channel means the leader is busy: this one waits its turn.
                        if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(sighting) {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// The sighting a notice (announced or republished) gives: a submission of a valid queue, with its stream
/// sequence, asking for a priority above 0 or for an expiry. Anything else (neither, which
/// is nearly everything, or a notice that is not well formed) is none.
fn sighting(notice: &async_nats::Message) -> Option<Sighting> {
    let stored = notice.headers.as_ref()?;
    let priority = match stored.get(job_options::PRIORITY) {
        Some(value) => value.as_str().trim().parse::<u8>().ok()?,
        None => 0,
    };
    let expiring = stored.get(job_options::EXPIRES).is_some_and(|v| !v.as_str().trim().is_empty());
    if priority == 0 && !expiring {
        return None;
    }
    let seq = headers::from_server(stored, headers::NATS_SEQUENCE)?.parse().ok()?;
    let queue = subjects::queue_of_submitted(notice.subject.as_str())?;
    Some(Sighting { queue: QueueName::parse(queue).ok()?, seq, expiring })
}

#[cfg(test)]
mod tests {
    use async_nats::HeaderMap;

    use super::*;

    fn notice(subject: &str, pairs: &[(&str, &str)]) -> async_nats::Message {
        let mut stored = HeaderMap::new();
        for (name, value) in pairs {
            stored.insert(*name, *value);
        }
        async_nats::Message {
            subject: subject.into(),
            reply: None,
            payload: bytes::Bytes::new(),
            headers: Some(stored),
            status: None,
            description: None,
            length: 0,
        }
    }

    #[test]
    fn only_well_formed_priority_or_expiring_notices_are_sightings() {
        let seen = sighting(&notice(
            "jetwork.submitted.emails",
            &[("Jetwork-Priority", "9"), ("Nats-Sequence", "42")],
        ));
        let queue = QueueName::parse("emails").expect("valid");
        assert_eq!(seen, Some(Sighting { queue: queue.clone(), seq: 42, expiring: false }));
        let seen = sighting(&notice(
            "jetwork.submitted.emails",
            &[("Jetwork-Expires", "3s"), ("Nats-Sequence", "43")],
        ));
        assert_eq!(seen, Some(Sighting { queue, seq: 43, expiring: true }));
        for (subject, pairs) in [
            ("jetwork.submitted.emails", vec![("Jetwork-Priority", "0"), ("Nats-Sequence", "1")]),
            ("jetwork.submitted.emails", vec![("Nats-Sequence", "1")]),
            (
                "jetwork.submitted.emails",
                vec![("Jetwork-Priority", "high"), ("Nats-Sequence", "1")],
            ),
            ("jetwork.submitted.emails", vec![("Jetwork-Priority", "300"), ("Nats-Sequence", "1")]),
            ("jetwork.submitted.emails", vec![("Jetwork-Priority", "5")]),
            ("jetwork.submitted.emails", vec![("Jetwork-Expires", "3s")]),
            ("jetwork.submitted.emails", vec![("Jetwork-Expires", " "), ("Nats-Sequence", "1")]),
            ("jetwork.submitted.emails", vec![("Jetwork-Priority", "5"), ("Nats-Sequence", "-1")]),
            ("jetwork.submitted.a.b", vec![("Jetwork-Priority", "5"), ("Nats-Sequence", "1")]),
            ("jetwork.submit.emails", vec![("Jetwork-Priority", "5"), ("Nats-Sequence", "1")]),
        ] {
            assert_eq!(sighting(&notice(subject, &pairs)), None, "{subject} {pairs:?}");
        }
    }
}
