//! Job lookups and retries (`jetwork.master.job`, `jetwork.admin.retry`) for what the state no
//! longer holds: a finished job's stored outcome in `JETWORK_RESULTS`, and re-running a failed
//! or cancelled one. Both run in tasks off the leader's loop.
//!
//! A retry is a new submission, so it gets every guarantee a submission has: it is stored and
//! acknowledged before the operator is told, it is read in order from its queue, and its run
//! has an outcome of its own that supersedes the old one on the same results subject (the
//! publisher's fence orders runs by submit sequence). Its `Nats-Msg-Id` names the run it
//! retries (`<id>~retry-<seq>`), so an operator's request sent twice queues it once within
//! the dedup horizon; its `Jetwork-Retry-Of` header names the work id it runs again.

use async_nats::jetstream::{self, message::PublishMessage, stream::LastRawMessageErrorKind};
use bytes::Bytes;
use jetwork_shared::jobs::{AdminReply, JobInfo, JobState};
use jetwork_shared::{headers, subjects, QueueName, Unavailable, WorkId};

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
    let what = || format!("reading {subject}");
    let stream = js
        .get_stream_no_info(subjects::RESULTS_STREAM)
        .await
        .map_err(|e| Unavailable::new(what(), e))?;
    match stream.get_last_raw_message_by_subject(&subject).await {
        Ok(message) => {
            let stored_ms =
                u64::try_from(message.time.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
            let info = JobInfo::from_stored(&message.subject, &message.headers, stored_ms);
            Ok(info.map(|info| (info, message.payload)))
        }
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
        .header(headers::RETRY_OF, work_id.as_str());
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
    Ok(AdminReply { message, submit_seq: Some(ack.sequence) })
}
