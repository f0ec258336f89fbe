//! [`Unread`]: how much of a queue is still unread in `JETWORK_SUBMIT` (the backlog the leader
//! has not taken yet) and when its oldest message was stored, for the metrics.
//!
//! One batched direct get per queue (`{"seq": cursor + 1, "next_by_subj": …, "batch": 1}`):
//! the server answers with the first unread message, whose headers say when it was stored
//! (`Nats-Time-Stamp`) and how many more of the queue follow it (`Nats-Num-Pending`); a 404 means
//! none is unread. Queues the leader has never read are found in the stream's per-subject
//! counts (one paged call), where everything stored is unread. A queue whose read fails is
//! left out of the answer (its figures stay as they were): these are gauges, not decisions.

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

/// The unread part of each queue in `positions` (queue, cursor, submissions past the cursor
/// already taken out of turn: not counted as unread), and of up to `limit` queues in all,
/// adding queues that have submissions but no cursor (never read).
pub async fn survey(
    js: &jetstream::Context,
    positions: Vec<(QueueName, u64, u64)>,
    limit: usize,
) -> BTreeMap<QueueName, Unread> {
    let mut out = BTreeMap::new();
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
    for (queue, (cursor, jumped)) in known.into_iter().take(limit) {
        if let Some(mut unread) = first_unread(js, &queue, cursor).await {
            unread.count = unread.count.saturating_sub(jumped);
            out.insert(queue, unread);
        }
    }
    out
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
