//! The job lifecycle on the wire: a job's attempt history, its state as `jetwork.master.job`
//! reports it, the operator's requests (`jetwork.admin.*`: cancel, retry, retry-all, purge,
//! pause, resume) and
//! the revocation a worker receives when its running attempt is cancelled.
//!
//! Operator requests and job reports are JSON, so that the `nats` CLI can send and read them
//! (`nats req jetwork.admin.cancel '{"work_id":"order-42"}'`); the revocation is MessagePack
//! like everything else a worker receives. `docs/protocol.md` documents each.

use serde::{Deserialize, Serialize};

use crate::job_options::JobOptions;
use crate::{headers, QueueName, WorkId, WorkerId};

/// How one attempt ended (or that it has not yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Running,
    Completed,
    /// Reported failed, timed out, its worker was lost, or its result was too large
    /// (`reason` says which).
    Failed,
    Cancelled,
}

/// One attempt of a job, as the master journaled it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub worker: WorkerId,
    /// When it was handed out (master clock, ms since the Unix epoch).
    pub started_ms: u64,
    /// When it ended; 0 while it runs.
    #[serde(default)]
    pub ended_ms: u64,
    pub outcome: AttemptOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl AttemptOutcome {
    /// The name on the wire (`running`, `completed`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Running => "running",
            AttemptOutcome::Completed => "completed",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Cancelled => "cancelled",
        }
    }
}

impl AttemptRecord {
    /// Most attempts a history keeps (the latest ones): it travels in a header.
    pub const MAX_KEPT: usize = 32;
    /// Longest reason a history keeps per attempt (the final reason is kept whole elsewhere).
    pub const MAX_REASON: usize = 256;
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Read from its queue and waiting for a worker.
    Ready,
    /// Failed and waiting out its back-off before the next attempt.
    Waiting,
    Running,
    Completed,
    Failed,
    Cancelled,
    /// Its submission was refused (`reason` says why).
    Rejected,
}

impl JobState {
    /// The name on the wire (`ready`, `waiting`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Ready => "ready",
            JobState::Waiting => "waiting",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Rejected => "rejected",
        }
    }

    /// Whether the job has an outcome that will not change unless it is retried.
    pub fn is_final(self) -> bool {
        !matches!(self, JobState::Ready | JobState::Waiting | JobState::Running)
    }
}

/// Reply to `jetwork.master.job` (JSON): one job's state and attempt history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobInfo {
    pub work_id: WorkId,
    pub queue: QueueName,
    pub state: JobState,
    /// Its sequence in `JETWORK_SUBMIT` (identifies this run of the id).
    pub submit_seq: u64,
    /// Attempts handed out so far.
    pub attempts: u32,
    /// While waiting: when it becomes ready again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at_ms: Option<u64>,
    /// Why it failed, was cancelled, or why its last attempt ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it finished (for a final state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    #[serde(default)]
    pub history: Vec<AttemptRecord>,
    /// What its submission asked for itself (delay, priority, …), while the master holds it.
    #[serde(default, skip_serializing_if = "JobOptions::is_default")]
    pub options: JobOptions,
}

impl JobInfo {
    /// Reads a job's stored outcome: a message on `jetwork.results.<queue>.<id>` with its
    /// headers, stored at `stored_ms`. `None` if the message is not an outcome.
    pub fn from_stored(
        subject: &str,
        stored: &async_nats::HeaderMap,
        stored_ms: u64,
    ) -> Option<JobInfo> {
        let (queue, id) = subject.strip_prefix(crate::subjects::RESULTS_PREFIX)?.split_once('.')?;
        let get = |name: &str| stored.get(name).map(|v| v.as_str());
        let state = match get(headers::STATUS)? {
            headers::STATUS_COMPLETED => JobState::Completed,
            headers::STATUS_FAILED => JobState::Failed,
            headers::STATUS_CANCELLED => JobState::Cancelled,
            _ => return None,
        };
        let number = |name: &str| get(name).and_then(|v| v.parse().ok()).unwrap_or(0);
        Some(JobInfo {
            work_id: WorkId::parse(id).ok()?,
            queue: QueueName::parse(queue).ok()?,
            state,
            submit_seq: number(headers::SUBMIT_SEQ),
            attempts: number(headers::ATTEMPT) as u32,
            ready_at_ms: None,
            reason: get(headers::REASON).map(str::to_owned),
            finished_ms: Some(stored_ms),
            // A history that cannot be read (an outcome stored before histories existed)
            // leaves the rest of the outcome readable.
            history: get(headers::HISTORY)
                .and_then(|h| serde_json::from_str(h).ok())
                .unwrap_or_default(),
            options: JobOptions::default(),
        })
    }
}

/// Body of `jetwork.master.jobs` (JSON): which jobs to list. Every field is optional; `{}`
/// lists the newest jobs of every queue in any state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobsQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<JobState>,
    /// At most this many (default [`JobsQuery::DEFAULT_LIMIT`], at most
    /// [`JobsQuery::MAX_LIMIT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

impl JobsQuery {
    pub const DEFAULT_LIMIT: u32 = 50;
    pub const MAX_LIMIT: u32 = 1000;
    /// Most stored outcomes one listing reads (newest first) looking for matches.
    pub const MAX_SCAN: u64 = 100_000;

    /// The limit asked for, within bounds.
    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(Self::DEFAULT_LIMIT).clamp(1, Self::MAX_LIMIT) as usize
    }
}

/// Reply to `jetwork.master.jobs` (JSON): the jobs in flight first (newest submission first),
/// then finished ones (newest outcome first).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobsPage {
    pub jobs: Vec<JobInfo>,
    /// The listing stopped before it looked at every stored outcome (it reads at most
    /// [`JobsQuery::MAX_SCAN`]): older matches may exist.
    #[serde(default)]
    pub truncated: bool,
}

/// Body of `jetwork.master.job`, `jetwork.admin.cancel` and `jetwork.admin.retry` (JSON).
/// `queue` narrows the search for a finished job; without it every queue is searched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRequest {
    pub work_id: WorkId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueName>,
    /// For cancel: why (recorded as the job's reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Body of `jetwork.admin.pause` and `jetwork.admin.resume` (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRequest {
    pub queue: QueueName,
}

/// Reply to every `jetwork.admin.*` request that succeeded (JSON); a refusal is a service
/// error instead (404 unknown job, 409 wrong state, 400 malformed request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminReply {
    /// What was done, in words.
    pub message: String,
    /// For retry: the sequence of the new submission in `JETWORK_SUBMIT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submit_seq: Option<u64>,
}

/// Body of `jetwork.admin.retry-all` (JSON): run every `failed` (or `cancelled`) job of a
/// queue again, as `jetwork.admin.retry` does one. Only a job's newest outcome counts (a job
/// whose latest run completed is not retried), newest outcome first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkRetry {
    pub queue: QueueName,
    /// Which finished jobs: `failed` (the default) or `cancelled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<JobState>,
    /// Only outcomes stored at or after this time (milliseconds since the Unix epoch, by the
    /// NATS server's clock); absent: any age.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
    /// Retry at most this many (default [`BulkRetry::DEFAULT_LIMIT`], at most
    /// [`BulkRetry::MAX_LIMIT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

impl BulkRetry {
    pub const DEFAULT_LIMIT: u32 = 100;
    pub const MAX_LIMIT: u32 = 10_000;
    /// Most errors a reply lists (the rest are only counted).
    pub const MAX_ERRORS: usize = 20;

    /// The limit asked for, within bounds.
    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(Self::DEFAULT_LIMIT).clamp(1, Self::MAX_LIMIT) as usize
    }

    /// The state asked for, if it is one that can be retried.
    pub fn state(&self) -> Result<JobState, String> {
        match self.state.unwrap_or(JobState::Failed) {
            state @ (JobState::Failed | JobState::Cancelled) => Ok(state),
            other => {
                Err(format!("only failed or cancelled jobs can be retried, not {}", other.as_str()))
            }
        }
    }
}

/// Reply to `jetwork.admin.retry-all` (JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkRetryReply {
    /// What was done, in words.
    pub message: String,
    /// Jobs submitted again.
    pub retried: u32,
    /// Jobs left alone: already running again (in flight, or its outcome still being
    /// recorded), or already retried (the retry was a duplicate within the dedup horizon).
    pub skipped: u32,
    /// Jobs that could not be retried (`errors` names the first [`BulkRetry::MAX_ERRORS`]).
    pub failed: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// The scan of stored outcomes stopped at its bound ([`JobsQuery::MAX_SCAN`]) or at
    /// `limit`: older matching jobs may be left; ask again.
    #[serde(default)]
    pub truncated: bool,
}

/// Reply to `jetwork.admin.purge` (JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeReply {
    /// What was done, in words.
    pub message: String,
    /// Jobs the leader held (ready, or waiting out a back-off) cancelled now.
    pub cancelled: u64,
    /// About how many submissions were still unread in the queue's backlog when the purge
    /// was asked for (each is stored as `cancelled` as it is read). An estimate, counted
    /// around when `through_seq` was read: a few may have been read meanwhile (and counted in
    /// `cancelled`), or stored just after `through_seq` (and run as usual).
    pub backlog: u64,
    /// Every submission of the queue stored at or before this `JETWORK_SUBMIT` sequence is
    /// purged; later ones run as usual.
    pub through_seq: u64,
    /// Attempts left running (they finish as usual).
    pub running: u64,
}

/// `jetwork.worker.<id>.cancel` (MessagePack): stop running this attempt; its job was
/// cancelled. The master has already finished the job, so any later report about the attempt
/// is answered `finished`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoke {
    pub epoch: u64,
    pub work_id: WorkId,
    pub attempt: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_as_the_cli_sends_them() {
        let request: JobRequest = serde_json::from_str(r#"{"work_id":"order-42"}"#).unwrap();
        assert_eq!(request.work_id.as_str(), "order-42");
        assert_eq!(request.queue, None);
        let pause: QueueRequest = serde_json::from_str(r#"{"queue":"emails"}"#).unwrap();
        assert_eq!(pause.queue.as_str(), "emails");
        assert!(serde_json::from_str::<JobRequest>(r#"{"work_id":"no spaces"}"#).is_err());
    }
}
