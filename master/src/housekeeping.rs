//! Background upkeep the leader triggers and does not wait for: purging finished
//! submissions from `JETWORK_SUBMIT`, purging journal history older than the latest snapshot,
//! and gathering the stream-side numbers of a status report.
//!
//! Purges only ever remove messages below a floor the leader computed from its state, so
//! they are safe to run late, twice, or from a deposed leader (whose floors are lower than the
//! new leader's). The submit floor of a queue is the lowest of: its cursor + 1 (nothing unread
//! goes), the lowest sequence still in flight or awaiting publication, and the first message
//! younger than the dedup horizon (JetStream rebuilds its dedup table from stored messages
//! after a restart, so they must stay for the whole horizon).

use std::time::{Duration, SystemTime};

use async_nats::jetstream::{
    self,
    consumer::{pull, AckPolicy, DeliverPolicy},
};
use futures::StreamExt;
use jetwork_shared::protocol::{QueueStatus, StatusReport};
use jetwork_shared::{subjects, QueueName};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The sequence of the first message stored at or after `since`, `None` if every stored
/// message is older (or the stream is empty).
pub async fn first_seq_since(
    js: &jetstream::Context,
    stream: &str,
    since: SystemTime,
) -> Result<Option<u64>, String> {
    let at = OffsetDateTime::from(since).format(&Rfc3339).map_err(|e| e.to_string())?;
    let body = serde_json::json!({ "start_time": at }).to_string();
    let reply = js
        .client()
        .request(format!("$JS.API.DIRECT.GET.{stream}"), body.into())
        .await
        .map_err(|e| e.to_string())?;
    if let Some(status) = reply.status {
        if status.as_u16() == 404 {
            return Ok(None);
        }
        return Err(format!("direct get by time: {status} {:?}", reply.description));
    }
    let seq = reply
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Sequence"))
        .and_then(|v| v.as_str().parse().ok())
        .ok_or("direct get by time: reply without Nats-Sequence")?;
    Ok(Some(seq))
}

/// Purges finished submissions: for each queue, every message below
/// `min(floor, first message younger than horizon)`.
pub async fn purge_submissions(
    js: &jetstream::Context,
    floors: Vec<(QueueName, u64)>,
    horizon: Duration,
) {
    let since = SystemTime::now().checked_sub(horizon).unwrap_or(SystemTime::UNIX_EPOCH);
    let young = match first_seq_since(js, subjects::SUBMIT_STREAM, since).await {
        Ok(seq) => seq.unwrap_or(u64::MAX),
        Err(e) => return tracing::debug!(error = %e, "skipping submit purge"),
    };
    let Ok(stream) = js.get_stream(subjects::SUBMIT_STREAM).await else { return };
    for (queue, floor) in floors {
        let floor = floor.min(young);
        if floor <= 1 {
            continue;
        }
        match stream.purge().filter(subjects::submit(&queue)).sequence(floor).await {
            Ok(r) if r.purged > 0 => {
                tracing::debug!(%queue, floor, purged = r.purged, "purged finished submissions")
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(%queue, error = %e, "submit purge failed"),
        }
    }
}

/// Purges journal history below the snapshot at `snapshot_seq` that is older than
/// `retention`.
pub async fn purge_journal(js: &jetstream::Context, snapshot_seq: u64, retention: Duration) {
    let since = SystemTime::now().checked_sub(retention).unwrap_or(SystemTime::UNIX_EPOCH);
    let young = match first_seq_since(js, subjects::JOURNAL_STREAM, since).await {
        Ok(seq) => seq.unwrap_or(u64::MAX),
        Err(e) => return tracing::debug!(error = %e, "skipping journal purge"),
    };
    let floor = snapshot_seq.min(young);
    if floor <= 1 {
        return;
    }
    let Ok(stream) = js.get_stream(subjects::JOURNAL_STREAM).await else { return };
    match stream.purge().sequence(floor).await {
        Ok(r) if r.purged > 0 => tracing::info!(
            floor,
            purged = r.purged,
            "purged journal history before the latest snapshot"
        ),
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "journal purge failed"),
    }
}

/// Completes a status report with what is still unread in the stream: for queues the leader
/// has read from, the submissions after its cursor; for queues it has never read, all of them.
pub async fn add_unread(
    js: &jetstream::Context,
    report: &mut StatusReport,
    cursors: Vec<(QueueName, u64)>,
) {
    let Ok(stream) = js.get_stream(subjects::SUBMIT_STREAM).await else { return };
    for (queue, cursor) in &cursors {
        let consumer = stream
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: cursor + 1 },
                ack_policy: AckPolicy::None,
                filter_subject: subjects::submit(queue),
                inactive_threshold: Duration::from_secs(5),
                memory_storage: true,
                ..Default::default()
            })
            .await;
        if let Ok(mut consumer) = consumer {
            if let Ok(info) = consumer.info().await {
                if let Some(q) = report.queues.iter_mut().find(|q| &q.queue == queue) {
                    q.pending += info.num_pending;
                }
                let name = info.name.clone();
                let _ = stream.delete_consumer(&name).await;
            }
        }
    }
    let Ok(mut per_subject) = stream.info_with_subjects(subjects::SUBMIT_ALL).await else { return };
    let mut subjects_seen = Vec::new();
    while let Some(Ok(entry)) = per_subject.next().await {
        subjects_seen.push(entry);
    }
    subjects_seen.sort();
    for (subject, count) in subjects_seen {
        let Some(queue) =
            subjects::queue_of_submit(&subject).and_then(|q| QueueName::parse(q).ok())
        else {
            continue;
        };
        if cursors.iter().any(|(q, _)| q == &queue)
            || report.queues.iter().any(|q| q.queue == queue)
        {
            continue;
        }
        report.queues.push(QueueStatus {
            queue,
            pending: count as u64,
            in_progress: 0,
            completed: 0,
            failed: 0,
            rejected: 0,
        });
    }
}
