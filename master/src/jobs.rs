//! Job lookups, listings and retries (`jetwork.master.job`, `jetwork.master.jobs`,
//! `jetwork.admin.retry`, `jetwork.admin.retry-all`) for what the state no longer holds: a
//! finished job's stored outcome in `JETWORK_RESULTS`, the newest finished jobs, and re-running
//! a failed or cancelled one, or every one of a queue (a bounded scan of the newest outcomes,
//! then one retry each). All run in tasks off the leader's loop.
//!
//! A retry is a new submission, so it gets every guarantee a submission has: it is stored and
//! acknowledged before the operator is told, it is read in order from its queue, and its run
//! has an outcome of its own that supersedes the old one on the same results subject (the
//! publisher's fence orders runs by submit sequence). Its `Nats-Msg-Id` names the run it
//! retries (`<id>~retry-<seq>`), so an operator's request sent twice queues it once within
//! the dedup horizon; its `Jetwork-Retry-Of` header names the work id it runs again.

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::message::{PublishMessage, StreamMessage};
use async_nats::jetstream::{self, stream::LastRawMessageErrorKind};
use bytes::Bytes;
use futures::StreamExt;
use jetwork_shared::jobs::{AdminReply, BulkRetry, BulkRetryReply, JobInfo, JobState, JobsQuery};
use jetwork_shared::{headers, subjects, QueueName, Unavailable, WorkId};

/// Longest wait for the next message of a listing before it is given up as unavailable.
const READ_STALL: Duration = Duration::from_secs(5);

/// Why a retry was refused.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    WrongState(String),
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

impl RetryError {
    /// The service error code it is answered with.
    pub fn code(&self) -> usize {
        match self {
            RetryError::NotFound(_) => 404,
            RetryError::WrongState(_) => 409,
            RetryError::Unavailable(_) => 503,
        }
    }
}

/// The stored outcome of `work_id` (in `queue`, or in any queue) and the bytes stored with it,
/// read from the stream leader; `None` if nothing is stored.
pub async fn stored(
    js: &jetstream::Context,
    queue: Option<&QueueName>,
    work_id: &WorkId,
) -> Result<Option<(JobInfo, Bytes)>, Unavailable> {
    let subject = match queue {
        Some(queue) => subjects::result(queue, work_id),
        None => subjects::result_any_queue(work_id),
    };
    let Some(message) = last_message(js, subjects::RESULTS_STREAM, &subject).await? else {
        return Ok(None);
    };
    let stored_ms = u64::try_from(message.time.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let info = JobInfo::from_stored(&message.subject, &message.headers, stored_ms);
    Ok(info.map(|info| (info, message.payload)))
}

/// The sequence of the last submission stored in `queue` (0 if none): what a purge asked for
/// now purges through.
pub async fn last_submitted(
    js: &jetstream::Context,
    queue: &QueueName,
) -> Result<u64, Unavailable> {
    let last = last_message(js, subjects::SUBMIT_STREAM, &subjects::submit(queue)).await?;
    Ok(last.map_or(0, |message| message.sequence))
}

/// The last message stored on `subject` in `stream`, read from the stream leader; `None` if
/// there is none.
async fn last_message(
    js: &jetstream::Context,
    stream: &str,
    subject: &str,
) -> Result<Option<StreamMessage>, Unavailable> {
    let what = || format!("reading {subject}");
    let stream = js.get_stream_no_info(stream).await.map_err(|e| Unavailable::new(what(), e))?;
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(message) => Ok(Some(message)),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(Unavailable::new(what(), e)),
    }
}

/// Submits a failed or cancelled job again under its id; the reply names the new submission.
pub async fn retry(
    js: &jetstream::Context,
    queue: Option<&QueueName>,
    work_id: &WorkId,
) -> Result<AdminReply, RetryError> {
    Ok(retry_run(js, queue, work_id).await?.0)
}

/// [`retry`], and whether JetStream found the retry a duplicate (already submitted).
async fn retry_run(
    js: &jetstream::Context,
    queue: Option<&QueueName>,
    work_id: &WorkId,
) -> Result<(AdminReply, bool), RetryError> {
    let Some((info, payload)) = stored(js, queue, work_id).await? else {
        return Err(RetryError::NotFound(format!(
            "no stored outcome for {work_id}: it has not finished, or it is older than the \
             results retention"
        )));
    };
    if !matches!(info.state, JobState::Failed | JobState::Cancelled) {
        return Err(RetryError::WrongState(format!(
            "{work_id} {}: only failed or cancelled jobs can be retried",
            match info.state {
                JobState::Completed => "completed",
                _ => "is not finished",
            }
        )));
    }
    let subject = subjects::submit(&info.queue);
    let message = PublishMessage::build()
        .payload(payload)
        .message_id(format!("{work_id}~retry-{}", info.submit_seq))
        .header(headers::RETRY_OF, work_id.as_str())
        .header(headers::PRIOR_ATTEMPTS, info.attempts.to_string());
    let what = || format!("submitting the retry of {work_id}");
    let ack = js
        .send_publish(subject, message)
        .await
        .map_err(|e| Unavailable::new(what(), e))?
        .await
        .map_err(|e| Unavailable::new(what(), e))?;
    let message = if ack.duplicate {
        format!("{work_id} was already retried as submission {}", ack.sequence)
    } else {
        format!("retrying {work_id} in queue {} as submission {}", info.queue, ack.sequence)
    };
    Ok((AdminReply { message, submit_seq: Some(ack.sequence) }, ack.duplicate))
}

/// Retries every job of `asked.queue` whose newest outcome is `asked.state` (stored since
/// `asked.since_ms`), newest first, at most `asked.limit`, one [`retry`] each. Those in
/// `running` (the work ids the leader holds in flight, or whose outcome it is still recording)
/// are skipped: they already run again. A retry that JetStream reports as a duplicate (the
/// same run retried within the dedup horizon) counts as skipped too.
pub async fn retry_all(
    js: &jetstream::Context,
    asked: &BulkRetry,
    running: &HashSet<WorkId>,
) -> Result<BulkRetryReply, RetryError> {
    let state = asked.state().map_err(RetryError::WrongState)?;
    let limit = asked.limit();
    let queue = &asked.queue;
    let since = asked.since_ms.unwrap_or(0);
    let (found, scan_stopped) = finished(js, Some(queue), Some(state), limit, since).await?;
    let mut reply =
        BulkRetryReply { truncated: scan_stopped || found.len() >= limit, ..Default::default() };
    for info in &found {
        if running.contains(&info.work_id) {
            reply.skipped += 1;
            continue;
        }
        match retry_run(js, Some(queue), &info.work_id).await {
            Ok((_, true)) => reply.skipped += 1,
            Ok((_, false)) => reply.retried += 1,
            // Its outcome changed since the scan (retried, and the retry already finished).
            Err(RetryError::WrongState(_)) => reply.skipped += 1,
            Err(e) => {
                reply.failed += 1;
                if reply.errors.len() < BulkRetry::MAX_ERRORS {
                    reply.errors.push(format!("{}: {e}", info.work_id));
                }
            }
        }
    }
    reply.message = format!(
        "queue {queue}: retried {} {} jobs, skipped {} (running again or already retried), \
         {} could not be retried{}",
        reply.retried,
        state.as_str(),
        reply.skipped,
        reply.failed,
        if reply.truncated { "; more may be left (ask again)" } else { "" }
    );
    Ok(reply)
}

/// The newest finished jobs (of `queue`, or of every queue) in `state` (any final state if
/// `None`), newest outcome first, at most `limit`, for `jetwork.master.jobs`; and whether the
/// listing stopped before the oldest stored outcome.
///
/// JetStream reads forward only, so the stream's tail is read in windows, newest first, each
/// four times the last (headers only: payloads stay on the server), until `limit` are found,
/// the stream's start is reached, an outcome stored before `since_ms` is reached (the stream
/// is in storing order, so all older ones are), or [`JobsQuery::MAX_SCAN`] messages were looked
/// at. A work id retried has several outcomes on its subject: only the newest counts.
pub async fn finished(
    js: &jetstream::Context,
    queue: Option<&QueueName>,
    state: Option<JobState>,
    limit: usize,
    since_ms: u64,
) -> Result<(Vec<JobInfo>, bool), Unavailable> {
    let what = || "listing finished jobs".to_owned();
    let stream =
        js.get_stream(subjects::RESULTS_STREAM).await.map_err(|e| Unavailable::new(what(), e))?;
    let info = stream.cached_info();
    let (first, last) = (info.state.first_sequence.max(1), info.state.last_sequence);
    let filter = match queue {
        Some(queue) => format!("{}{queue}.*", subjects::RESULTS_PREFIX),
        None => format!("{}>", subjects::RESULTS_PREFIX),
    };
    let (mut found, mut seen) = (Vec::new(), HashSet::new());
    // The newest window is read to the stream's live end: what was stored since the stream's
    // info was taken is newer still.
    let mut end = last;
    let mut until = u64::MAX;
    let mut window = (limit as u64).saturating_mul(8).max(256);
    let mut scanned = 0u64;
    while end >= first && end > 0 {
        let start = end.saturating_sub(window - 1).max(first);
        let outcomes = read_range(&stream, &filter, start, until).await?;
        scanned += end - start + 1;
        let mut old_enough = false;
        for info in outcomes.into_iter().rev() {
            if info.finished_ms.unwrap_or(0) < since_ms {
                old_enough = true;
                break;
            }
            // Newest first: the first outcome seen for an id is its latest run's.
            if !seen.insert((info.queue.clone(), info.work_id.clone())) {
                continue;
            }
            if state.is_none_or(|s| info.state == s) && found.len() < limit {
                found.push(info);
            }
        }
        if found.len() >= limit || start <= first || old_enough {
            return Ok((found, false));
        }
        if scanned >= JobsQuery::MAX_SCAN {
            return Ok((found, true));
        }
        end = start - 1;
        until = end;
        window = window.saturating_mul(4).min(JobsQuery::MAX_SCAN - scanned);
    }
    Ok((found, false))
}

/// The outcomes stored at `start..=end` on `filter`, oldest first (headers only).
async fn read_range(
    stream: &jetstream::stream::Stream,
    filter: &str,
    start: u64,
    end: u64,
) -> Result<Vec<JobInfo>, Unavailable> {
    let what = || format!("reading {filter} from {start}");
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: filter.to_owned(),
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: start },
            headers_only: true,
            ..Default::default()
        })
        .await
        .map_err(|e| Unavailable::new(what(), e))?;
    // How many match from `start` on (some may lie past `end`): with none, there is nothing
    // to wait for.
    let mut left = consumer.cached_info().num_pending;
    let mut messages = consumer.messages().await.map_err(|e| Unavailable::new(what(), e))?;
    let mut outcomes = Vec::new();
    while left > 0 {
        let next = tokio::time::timeout(READ_STALL, messages.next()).await;
        let message = match next {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(e))) => return Err(Unavailable::new(what(), e)),
            Ok(None) | Err(_) => return Err(Unavailable::new(what(), "the read stalled")),
        };
        left -= 1;
        let Ok(info) = message.info() else { continue };
        if info.stream_sequence > end {
            break;
        }
        let stored_ms = u64::try_from(info.published.unix_timestamp_nanos() / 1_000_000);
        let headers = message.headers.clone().unwrap_or_default();
        if let Some(job) = JobInfo::from_stored(&message.subject, &headers, stored_ms.unwrap_or(0))
        {
            outcomes.push(job);
        }
        if info.pending == 0 {
            break;
        }
    }
    Ok(outcomes)
}
