//! Background upkeep the leader triggers and does not wait for: purging finished
//! submissions from `JETWORK_SUBMIT`, purging journal history before the latest snapshot
//! (once older than `journal_retention`, or at once when the journal nears its cap), and
//! gathering the stream-side numbers (and the page of queues) of a status report.
//!
//! Purges only ever remove messages below a floor the leader computed from its state, so
//! they are safe to run late, twice, or from a deposed leader (whose floors are lower than the
//! new leader's). The submit floor of a queue is the lowest of: its cursor + 1 (nothing unread
//! goes), the lowest sequence still in flight or awaiting publication, and the first message
//! younger than the dedup horizon (JetStream rebuilds its dedup table from stored messages
//! after a restart, so they must stay for the whole horizon). Ages are judged by the server's
//! clock against the server's timestamps, never by this master's clock, and any doubt skips
//! the purge for this round.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{pull, AckPolicy, DeliverPolicy},
};
use futures::StreamExt;

use jetwork_shared::protocol::{QueueStatus, StatusQuery, StatusReport};
use jetwork_shared::{headers, subjects, QueueName, Unavailable};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Why the age of a stream's messages could not be told this time (the purge is skipped).
#[derive(Debug, thiserror::Error)]
pub enum AgeError {
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// The server's answers do not add up (a reply without the fields it should have, or no
    /// message found since a time although the newest is younger).
    #[error("{0}")]
    Inconsistent(String),
}

/// The first sequence of `stream` stored less than `age` ago, judged by the server's clock
/// against the server's timestamps (this master's clock may be off): every message below it
/// is older. One past the last sequence if every message is older.
pub async fn first_young_seq(
    js: &jetstream::Context,
    stream: &str,
    age: Duration,
) -> Result<u64, AgeError> {
    let info: serde_json::Value = js
        .request(format!("STREAM.INFO.{stream}"), &serde_json::json!({}))
        .await
        .map_err(|e| Unavailable::new(format!("stream info of {stream}"), e))?;
    if let Some(error) = info.get("error") {
        return Err(AgeError::Inconsistent(format!("stream info of {stream}: {error}")));
    }
    let missing = |what: &str| AgeError::Inconsistent(format!("stream info without {what}"));
    let time = |value: &serde_json::Value| {
        value.as_str().and_then(|text| OffsetDateTime::parse(text, &Rfc3339).ok())
    };
    let now = time(&info["ts"]).ok_or_else(|| missing("the server time"))?;
    let state = &info["state"];
    let last_seq = state["last_seq"].as_u64().ok_or_else(|| missing("last_seq"))?;
    let since = time::Duration::try_from(age)
        .ok()
        .and_then(|age| now.checked_sub(age))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let newest = time(&state["last_ts"]);
    if state["messages"].as_u64() == Some(0) || newest.is_some_and(|ts| ts < since) {
        return Ok(last_seq + 1);
    }
    first_seq_since(js, stream, since).await?.ok_or_else(|| {
        AgeError::Inconsistent(format!(
            "no message of {stream} found since {since}, though the newest is younger"
        ))
    })
}

/// The sequence of the first message stored at or after `since` (server time), `None` if the
/// server found none.
async fn first_seq_since(
    js: &jetstream::Context,
    stream: &str,
    since: OffsetDateTime,
) -> Result<Option<u64>, AgeError> {
    let at = since.format(&Rfc3339).map_err(|e| AgeError::Inconsistent(e.to_string()))?;
    let body = serde_json::json!({ "start_time": at }).to_string();
    let reply = js
        .client()
        .request(subjects::direct_get(stream), body.into())
        .await
        .map_err(|e| Unavailable::new(format!("direct get by time on {stream}"), e))?;
    if let Some(status) = reply.status {
        if status.as_u16() == 404 {
            return Ok(None);
        }
        let why = format!("direct get by time on {stream}: {status} {:?}", reply.description);
        return Err(AgeError::Inconsistent(why));
    }
    let seq = reply
        .headers
        .as_ref()
        .and_then(|h| headers::from_server(h, headers::NATS_SEQUENCE))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| AgeError::Inconsistent("direct get by time: no Nats-Sequence".into()))?;
    Ok(Some(seq))
}

/// The last sequence stored in `stream` (0 if it never held a message).
pub async fn last_sequence(js: &jetstream::Context, stream: &str) -> Result<u64, Unavailable> {
    let what = || format!("reading the last sequence of {stream}");
    let stream = js.get_stream(stream).await.map_err(|e| Unavailable::new(what(), e))?;
    Ok(stream.cached_info().state.last_sequence)
}

/// The first submission of each of `queues` still stored in `JETWORK_SUBMIT` (`None`: none),
/// as the stream's leader answers (a direct get may be answered by a replica that is behind,
/// and "nothing stored" is what lets a queue be forgotten); a queue whose read fails is left
/// out: nothing is concluded from a failure.
pub async fn first_stored(
    js: &jetstream::Context,
    queues: Vec<(QueueName, u64)>,
) -> Vec<(QueueName, Option<u64>)> {
    // JetStream's "no message found".
    const NO_MESSAGE: u64 = 10037;
    let mut found = Vec::with_capacity(queues.len());
    for (queue, _cursor) in queues {
        let body =
            serde_json::json!({ "seq": 1, "next_by_subj": subjects::submissions_of(&queue) });
        let reply: Result<serde_json::Value, _> =
            js.request(format!("STREAM.MSG.GET.{}", subjects::SUBMIT_STREAM), &body).await;
        let first = match reply {
            Ok(reply) if reply["error"]["err_code"].as_u64() == Some(NO_MESSAGE) => Some(None),
            Ok(reply) => reply["message"]["seq"].as_u64().map(Some),
            Err(e) => {
                tracing::debug!(%queue, error = %e, "cannot tell what the queue still stores");
                None
            }
        };
        if let Some(first) = first {
            found.push((queue, first));
        }
    }
    found
}

/// The floor each queue's submissions were last purged to (see [`purge_submissions`]).
pub type PurgedFloors = BTreeMap<QueueName, u64>;

/// Purges finished submissions: for each queue, every message below
/// `min(floor, first message younger than horizon)`, unless `purged` says the queue was
/// already purged to that floor or higher. `purged` is then what was purged (queues no
/// longer in `floors` are dropped from it).
pub async fn purge_submissions(
    js: &jetstream::Context,
    floors: Vec<(QueueName, u64)>,
    purged: &mut PurgedFloors,
    horizon: Duration,
) {
    let young = match first_young_seq(js, subjects::SUBMIT_STREAM, horizon).await {
        Ok(seq) => seq,
        Err(e) => return tracing::debug!(error = %e, "skipping submit purge"),
    };
    let Ok(stream) = js.get_stream(subjects::SUBMIT_STREAM).await else { return };
    let before = std::mem::take(purged);
    for (queue, floor) in floors {
        let floor = floor.min(young);
        let done = before.get(&queue).copied().unwrap_or(0);
        if floor <= done.max(1) {
            if done > 0 {
                purged.insert(queue, done);
            }
            continue;
        }
        match stream.purge().filter(subjects::submissions_of(&queue)).sequence(floor).await {
            Ok(r) => {
                if r.purged > 0 {
                    tracing::debug!(%queue, floor, purged = r.purged, "purged finished submissions");
                }
                purged.insert(queue, floor);
            }
            Err(e) => {
                tracing::debug!(%queue, error = %e, "submit purge failed");
                if done > 0 {
                    purged.insert(queue, done);
                }
            }
        }
    }
}

/// Purges journal history below the snapshot at `snapshot_seq` that is older than
/// `retention`; once the journal holds half its cap (`max_bytes`, -1 for none) or more, all of
/// it below the snapshot, however young: retention is for inspection, and must yield to the
/// bound (a full journal refuses the leader's writes). Returns the journal's size and start
/// after the purge (`None` when the stream cannot be read).
pub async fn purge_journal(
    js: &jetstream::Context,
    snapshot_seq: u64,
    retention: Duration,
    max_bytes: i64,
) -> Option<JournalFill> {
    let Ok(mut stream) = js.get_stream(subjects::JOURNAL_STREAM).await else { return None };
    let state = &stream.cached_info().state;
    let before = JournalFill { bytes: state.bytes, first_seq: state.first_sequence };
    if snapshot_seq <= before.first_seq.max(1) {
        return Some(before); // Nothing below the snapshot is left.
    }
    let near_cap = max_bytes > 0 && before.bytes >= max_bytes as u64 / NEAR_CAP_DIVISOR;
    let floor = if near_cap {
        snapshot_seq
    } else {
        match first_young_seq(js, subjects::JOURNAL_STREAM, retention).await {
            Ok(young) => snapshot_seq.min(young),
            Err(e) => {
                tracing::debug!(error = %e, "skipping journal purge");
                return Some(before);
            }
        }
    };
    if floor <= before.first_seq.max(1) {
        return Some(before);
    }
    match stream.purge().sequence(floor).await {
        Ok(r) if r.purged > 0 => tracing::info!(
            floor,
            purged = r.purged,
            journal_bytes = before.bytes,
            near_cap,
            "purged journal history before the latest snapshot"
        ),
        Ok(_) => {}
        Err(e) => {
            tracing::debug!(error = %e, "journal purge failed");
            return Some(before);
        }
    }
    let after = &stream.info().await.ok()?.state;
    Some(JournalFill { bytes: after.bytes, first_seq: after.first_sequence })
}

/// The journal's size and first sequence, as its stream reported them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalFill {
    pub bytes: u64,
    pub first_seq: u64,
}

/// The journal is near its cap once it holds this fraction (1/n) of it.
const NEAR_CAP_DIVISOR: u64 = 2;

/// Completes a status report: adds the queues that have submissions but that the leader has
/// never read (nobody serves them), keeps the page of queues `query` asks for, and adds to each
/// listed queue what is still unread in the stream (after the cursor for queues the leader
/// reads, less what was taken out of turn past it; everything for the others). The stream's per-subject counts come in one paged call;
/// the unread count costs one short-lived consumer per listed queue the leader reads, so the
/// work is bounded by the page size, not by the number of queues.
pub async fn complete_status(
    js: &jetstream::Context,
    report: &mut StatusReport,
    positions: Vec<(QueueName, u64, u64)>,
    query: StatusQuery,
) {
    let query = query.capped();
    let Ok(stream) = js.get_stream(subjects::SUBMIT_STREAM).await else { return };
    let mut stored: BTreeMap<QueueName, u64> = BTreeMap::new();
    if let Ok(mut per_subject) = stream.info_with_subjects(subjects::SUBMISSIONS_ALL).await {
        while let Some(Ok((subject, count))) = per_subject.next().await {
            let queue = subjects::queue_of_submission(&subject)
                .and_then(|(queue, _)| QueueName::parse(queue).ok());
            if let Some(queue) = queue {
                *stored.entry(queue).or_default() += count as u64;
            }
        }
    }
    let mut queues: BTreeMap<QueueName, QueueStatus> =
        std::mem::take(&mut report.queues).into_iter().map(|q| (q.queue.clone(), q)).collect();
    for (queue, count) in &stored {
        queues.entry(queue.clone()).or_insert_with(|| QueueStatus {
            queue: queue.clone(),
            pending: *count,
            in_progress: 0,
            completed: 0,
            failed: 0,
            rejected: 0,
            waiting: 0,
            cancelled: 0,
            paused: false,
        });
    }
    report.queues_total = queues.len() as u64;
    report.queues = queues
        .into_values()
        .skip(query.queues_offset as usize)
        .take(query.queues_limit as usize)
        .collect();
    for status in &mut report.queues {
        let Some((_, cursor, jumped)) = positions.iter().find(|(q, ..)| *q == status.queue) else {
            continue;
        };
        let consumer = stream
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: cursor + 1 },
                ack_policy: AckPolicy::None,
                filter_subject: subjects::submissions_of(&status.queue),
                inactive_threshold: Duration::from_secs(5),
                memory_storage: true,
                ..Default::default()
            })
            .await;
        if let Ok(mut consumer) = consumer {
            if let Ok(info) = consumer.info().await {
                // Jumped submissions are counted among the ready ones already.
                status.pending += info.num_pending.saturating_sub(*jumped);
                let name = info.name.clone();
                let _ = stream.delete_consumer(&name).await;
            }
        }
    }
}
