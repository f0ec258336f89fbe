//! Reading what the state no longer holds from `JETWORK_RESULTS` and `JETWORK_SUBMIT`: a
//! finished job's stored outcome (`jetwork.master.job`, and the facts the engine asks for to
//! decide a cancel or a retry), the newest finished jobs (`jetwork.master.jobs`, and the scan a
//! bulk retry decides from), a queue's last stored submission (what a purge cuts at). Reads
//! only: every decision about a job is the engine's. All run in tasks off the leader's loop,
//! and every read that decides something is answered by the stream leader.

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::{self, stream::LastRawMessageErrorKind};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use jetwork_shared::job_options::JobOptions;
use jetwork_shared::jobs::{JobInfo, JobState, JobsQuery};
use jetwork_shared::{subjects, QueueName, Unavailable, WorkId};

use crate::core::StoredOutcome;

/// Longest wait for the next message of a listing before it is given up as unavailable.
const READ_STALL: Duration = Duration::from_secs(5);

/// The stored outcome of `work_id` (in `queue`, or in any queue) and the bytes stored with it,
/// read from the stream leader; `None` if nothing is stored.
pub async fn stored(
    js: &jetstream::Context,
    queue: Option<&QueueName>,
    work_id: &WorkId,
) -> Result<Option<(JobInfo, Bytes)>, Unavailable> {
    let Some((message, stored_ms)) = latest_outcome(js, queue, work_id).await? else {
        return Ok(None);
    };
    let info = JobInfo::from_stored(&message.subject, &message.headers, stored_ms);
    Ok(info.map(|info| (info, message.payload)))
}

/// The latest message on the results subject of `work_id` (in `queue`, or in any queue), and
/// when it was stored (ms, the server's clock), read from the stream leader.
async fn latest_outcome(
    js: &jetstream::Context,
    queue: Option<&QueueName>,
    work_id: &WorkId,
) -> Result<Option<(StreamMessage, u64)>, Unavailable> {
    let subject = match queue {
        Some(queue) => subjects::stored_result(queue, work_id),
        None => subjects::stored_result_any_queue(work_id),
    };
    let message = last_message(js, subjects::RESULTS_STREAM, &subject).await?;
    Ok(message.map(|message| {
        let stored_ms = u64::try_from(message.time.unix_timestamp_nanos() / 1_000_000);
        (message, stored_ms.unwrap_or(0))
    }))
}

/// The latest stored outcome of `work_id` (in `queue`, or in any queue) as the engine decides
/// from it, read from the stream leader; `None` if nothing is stored.
pub async fn outcome(
    js: &jetstream::Context,
    queue: Option<&QueueName>,
    work_id: &WorkId,
) -> Result<Option<StoredOutcome>, Unavailable> {
    let Some((message, stored_ms)) = latest_outcome(js, queue, work_id).await? else {
        return Ok(None);
    };
    Ok(read_outcome(&message.subject, message.sequence, &message.headers, stored_ms))
}

/// An outcome stored at `seq` on `subject` as the engine decides from it (`None` if the
/// message is not an outcome).
fn read_outcome(
    subject: &str,
    seq: u64,
    stored: &HeaderMap,
    stored_ms: u64,
) -> Option<StoredOutcome> {
    let info = JobInfo::from_stored(subject, stored, stored_ms)?;
    // Only the master writes outcomes: options it cannot read mean it wrote none.
    let options = JobOptions::from_headers(|name| stored.get(name).map(|v| v.as_str()), 0)
        .unwrap_or_default();
    Some(StoredOutcome {
        work_id: info.work_id,
        queue: info.queue,
        state: info.state,
        submit_seq: info.submit_seq,
        attempts: info.attempts,
        options,
        results_seq: seq,
    })
}

/// The sequence of the last submission stored for `queue` (either subject; 0 if none), read
/// from the stream leader: what a purge asked for now purges through.
pub async fn last_submitted(
    js: &jetstream::Context,
    queue: &QueueName,
) -> Result<u64, Unavailable> {
    let filter = subjects::submissions_of(queue);
    let last = last_message(js, subjects::SUBMIT_STREAM, &filter).await?;
    Ok(last.map_or(0, |message| message.sequence))
}

/// The newest outcomes of `queue` in `state` stored since `since_ms`, newest first, at most
/// `limit`, as the engine decides a bulk retry from them; and whether the scan stopped at its
/// bound. Only each job's latest outcome counts (one whose latest run ended otherwise is not
/// listed).
pub async fn outcomes(
    js: &jetstream::Context,
    queue: &QueueName,
    state: JobState,
    limit: usize,
    since_ms: u64,
) -> Result<(Vec<StoredOutcome>, bool), Unavailable> {
    let (found, truncated) = scan(js, Some(queue), Some(state), limit, since_ms).await?;
    Ok((found.into_iter().map(|(_, outcome)| outcome).collect(), truncated))
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
    let (found, truncated) = scan(js, queue, state, limit, since_ms).await?;
    Ok((found.into_iter().map(|(info, _)| info).collect(), truncated))
}

/// [`finished`], each outcome also as the engine decides from it.
async fn scan(
    js: &jetstream::Context,
    queue: Option<&QueueName>,
    state: Option<JobState>,
    limit: usize,
    since_ms: u64,
) -> Result<(Vec<(JobInfo, StoredOutcome)>, bool), Unavailable> {
    let what = || "listing finished jobs".to_owned();
    let stream =
        js.get_stream(subjects::RESULTS_STREAM).await.map_err(|e| Unavailable::new(what(), e))?;
    let info = stream.cached_info();
    let (first, last) = (info.state.first_sequence.max(1), info.state.last_sequence);
    let filter = match queue {
        Some(queue) => format!("{}{queue}.*", subjects::OUTCOMES_PREFIX),
        None => format!("{}>", subjects::OUTCOMES_PREFIX),
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
        for (info, outcome) in outcomes.into_iter().rev() {
            if info.finished_ms.unwrap_or(0) < since_ms {
                old_enough = true;
                break;
            }
            // Newest first: the first outcome seen for an id is its latest run's.
            if !seen.insert((info.queue.clone(), info.work_id.clone())) {
                continue;
            }
            if state.is_none_or(|s| info.state == s) && found.len() < limit {
                found.push((info, outcome));
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
) -> Result<Vec<(JobInfo, StoredOutcome)>, Unavailable> {
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
        let stored_ms = stored_ms.unwrap_or(0);
        let headers = message.headers.clone().unwrap_or_default();
        let seq = info.stream_sequence;
        let job = JobInfo::from_stored(&message.subject, &headers, stored_ms);
        if let Some(pair) = job.zip(read_outcome(&message.subject, seq, &headers, stored_ms)) {
            outcomes.push(pair);
        }
        if info.pending == 0 {
            break;
        }
    }
    Ok(outcomes)
}
