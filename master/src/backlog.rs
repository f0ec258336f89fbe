//! [`Unread`]: how much of a queue is still unread in `JETWORK_SUBMIT` (the backlog the leader
//! has not taken yet) and when its oldest message was stored, for the metrics.
//!
//! One batched direct get per queue (`{"seq": cursor + 1, "next_by_subj": …, "batch": 1}`):
//! the server answers with the first unread message, whose headers say when it was stored
//! (`Nats-Time-Stamp`) and how many more of the queue follow it (`Nats-Num-Pending`); a 404 means
//! none is unread. Queues the leader has never read are found in the stream's per-subject
//! counts (one paged call), where everything stored is unread. A queue whose read fails is
//! left out of the answer (its figures stay as they were): these are gauges, not decisions.
//!
//! **A bounded round.** Each get costs the server a scan of the stream from the cursor on (to
//! count what follows), so a survey reads at most `budget` queues, in name order, going on
//! after the last queue the previous survey read. With a thousand queues, reading all of them
//! every five seconds was most of the server's work; at the default 64 a round, each of a
//! thousand queues' figures is refreshed every 16 rounds.

use std::collections::BTreeMap;

use async_nats::jetstream;
use futures::StreamExt;
use jetwork_shared::{headers, subjects, QueueName};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// What is unread of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Unread {
    /// Submissions stored after the cursor.
    pub count: u64,
    /// When the oldest of them was stored (ms since the Unix epoch, server time); 0 if none.
    pub oldest_ms: u64,
}

/// Queues one survey reads at most.
pub const SURVEY_BUDGET: usize = 64;

/// What one survey found.
#[derive(Debug, Default)]
pub struct Survey {
    /// Every queue the survey knows of (read by the leader, or with submissions stored), with
    /// its unread part if it was read this time; `None`: not this time, or the read failed
    /// (its figures stay as they were).
    pub queues: BTreeMap<QueueName, Option<Unread>>,
    /// The last queue read: the next survey goes on after it.
    pub last: Option<QueueName>,
}

/// The unread part of the queues in `positions` (queue, cursor, submissions past the cursor
/// already taken out of turn: not counted as unread), of up to `limit` queues in all, adding
/// queues that have submissions but no cursor (never read). Reads at most `budget` of them:
/// those after `after` in name order, then from the first.
pub async fn survey(
    js: &jetstream::Context,
    positions: Vec<(QueueName, u64, u64)>,
    limit: usize,
    after: Option<&QueueName>,
    budget: usize,
) -> Survey {
    let mut known: BTreeMap<QueueName, (u64, u64)> =
        positions.into_iter().map(|(queue, cursor, jumped)| (queue, (cursor, jumped))).collect();
    if let Ok(stream) = js.get_stream(subjects::SUBMIT_STREAM).await {
        if let Ok(mut per_subject) = stream.info_with_subjects(subjects::SUBMISSIONS_ALL).await {
            while let Some(Ok((subject, _count))) = per_subject.next().await {
                let queue = subjects::queue_of_submission(&subject)
                    .and_then(|(queue, _)| QueueName::parse(queue).ok());
                if let Some(queue) = queue {
                    if known.len() >= limit {
                        break;
                    }
                    known.entry(queue).or_insert((0, 0));
                }
            }
        }
    }
    let known: Vec<(QueueName, (u64, u64))> = known.into_iter().take(limit).collect();
    let names: Vec<&QueueName> = known.iter().map(|(queue, _)| queue).collect();
    let mut out = Survey::default();
    for i in in_turn(&names, after, budget) {
        let (queue, (cursor, jumped)) = &known[i];
        let found = first_unread(js, queue, *cursor).await;
        let found = found.map(|u| Unread { count: u.count.saturating_sub(*jumped), ..u });
        out.queues.insert(queue.clone(), found);
        out.last = Some(queue.clone());
    }
    for (queue, _) in known {
        out.queues.entry(queue).or_insert(None);
    }
    out
}

/// Which of `names` (sorted) a round reads: up to `budget`, those after `after` first, then
/// from the start, none twice.
fn in_turn(names: &[&QueueName], after: Option<&QueueName>, budget: usize) -> Vec<usize> {
    let first = after.map_or(0, |after| names.partition_point(|name| *name <= after));
    (0..names.len()).cycle().skip(first).take(budget.min(names.len())).collect()
}

/// The unread part of `queue` after `cursor`; `None` if the server could not say.
async fn first_unread(js: &jetstream::Context, queue: &QueueName, cursor: u64) -> Option<Unread> {
    let body = serde_json::json!({
        "seq": cursor + 1,
        "next_by_subj": subjects::submissions_of(queue),
        "batch": 1,
    })
    .to_string();
    let reply = js
        .client()
        .request(subjects::direct_get(subjects::SUBMIT_STREAM), body.into())
        .await
        .ok()?;
    if let Some(status) = reply.status {
        return (status.as_u16() == 404).then_some(Unread::default());
    }
    let header = |name: &str| {
        reply.headers.as_ref().and_then(|h| headers::from_server(h, name)).map(str::to_owned)
    };
    let pending: u64 = header(headers::NATS_NUM_PENDING)?.parse().ok()?;
    let oldest_ms = header(headers::NATS_TIME_STAMP)
        .and_then(|t| OffsetDateTime::parse(&t, &Rfc3339).ok())
        .and_then(|t| u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())
        .unwrap_or(0);
    // The header counts the messages after this one.
    Some(Unread { count: pending + 1, oldest_ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<QueueName> {
        (0..n).map(|i| QueueName::parse(&format!("q{i:03}")).expect("a queue name")).collect()
    }

    #[test]
    fn rounds_take_the_queues_in_turn_and_wrap_around() {
        let owned = names(5);
        let all: Vec<&QueueName> = owned.iter().collect();
        assert_eq!(in_turn(&all, None, 2), [0, 1]);
        assert_eq!(in_turn(&all, Some(&owned[1]), 2), [2, 3]);
        assert_eq!(in_turn(&all, Some(&owned[3]), 2), [4, 0], "wraps around");
        assert_eq!(in_turn(&all, Some(&owned[4]), 2), [0, 1], "after the last: from the start");
        assert_eq!(in_turn(&all, Some(&owned[2]), 64), [3, 4, 0, 1, 2], "each at most once");
        // A queue gone since the last round: the next round goes on after where it stood.
        let gone = QueueName::parse("q0015").expect("a queue name");
        assert_eq!(in_turn(&all, Some(&gone), 1), [2]);
        assert!(in_turn(&[], Some(&gone), 4).is_empty());
        assert!(in_turn(&all, None, 0).is_empty());
    }
}
