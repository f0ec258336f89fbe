//! The job lifecycle on the wire: a job's attempt history, its state as `jetwork.master.job`
//! reports it, the operator's requests (`jetwork.admin.*`: cancel, retry, retry-all, purge,
//! pause, resume) and
//! the revocation a worker receives when its running attempt is cancelled.
//!
//! Operator requests and job reports are JSON, so that the `nats` CLI can send and read them
//! (`nats req jetwork.admin.cancel '{"work_id":"order-42"}'`); the revocation is MessagePack
//! like everything else a worker receives. `docs/protocol.md` documents each.

use std::fmt::Write as _;

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

    /// The [`headers::RAN`] value that stands for `history` on the outcome of `attempt`, if
    /// the history is the common one: that attempt alone, completed, without a reason. Any
    /// other history goes out as [`headers::HISTORY`], since the short form could not say it.
    pub fn ran_header(history: &[AttemptRecord], attempt: u32) -> Option<String> {
        let [only] = history else { return None };
        if only.attempt != attempt
            || only.outcome != AttemptOutcome::Completed
            || only.reason.is_some()
        {
            return None;
        }
        // Written for every completed job: one allocation, sized for the longest times.
        let worker = only.worker.as_str();
        let mut value = String::with_capacity(worker.len() + 2 * (1 + MAX_U64_DIGITS));
        value.push_str(worker);
        let _ = write!(value, " {} {}", only.started_ms, only.ended_ms);
        Some(value)
    }

    /// The record a [`headers::RAN`] value stands for; `attempt` is the outcome's
    /// [`headers::ATTEMPT`]. `None` unless the value is exactly `<worker> <started_ms>
    /// <ended_ms>`: a value someone else wrote must not pass for a history it does not say.
    pub fn from_ran_header(value: &str, attempt: u32) -> Option<AttemptRecord> {
        let mut fields = value.split(' ');
        let (worker, started, ended) = (fields.next()?, fields.next()?, fields.next()?);
        if fields.next().is_some() {
            return None;
        }
        Some(AttemptRecord {
            attempt,
            worker: WorkerId::parse(worker).ok()?,
            started_ms: decimal(started)?,
            ended_ms: decimal(ended)?,
            outcome: AttemptOutcome::Completed,
            reason: None,
        })
    }
}

/// Digits of the largest `u64`.
const MAX_U64_DIGITS: usize = 20;

/// Plain decimal digits as a number (`u64::from_str` also takes a leading `+`, which the
/// writer never puts there).
fn decimal(text: &str) -> Option<u64> {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
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
    /// Reads a job's stored outcome: a message on `jetwork.outcomes.<queue>.<id>` with its
    /// headers, stored at `stored_ms`. `None` if the message is not an outcome.
    pub fn from_stored(
        subject: &str,
        stored: &async_nats::HeaderMap,
        stored_ms: u64,
    ) -> Option<JobInfo> {
        let (queue, id) = crate::subjects::result_parts(subject)?;
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
            history: match get(headers::HISTORY) {
                Some(json) => serde_json::from_str(json).unwrap_or_default(),
                // Only a completed outcome's one attempt is written short.
                None if state == JobState::Completed => get(headers::RAN)
                    .zip(get(headers::ATTEMPT).and_then(decimal))
                    .and_then(|(ran, attempt)| {
                        AttemptRecord::from_ran_header(ran, u32::try_from(attempt).ok()?)
                    })
                    .map(|record| vec![record])
                    .unwrap_or_default(),
                None => Vec::new(),
            },
            options: JobOptions::default(),
        })
    }
}

/// Body of `jetwork.master.jobs` (JSON): which jobs to list. Every field is optional; `{}`
/// lists the newest jobs of every queue in any state. An unknown field is refused, as in
/// every operator request (see [`JobRequest`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
///
/// Operator requests refuse unknown fields (400 naming the field): a field the master does not
/// read would be ignored, so a typo (`"queu"`) or a wish (`"limit"` on a pause) would do
/// something other than what was asked, silently. Worker messages (MessagePack) keep ignoring
/// unknown keys instead, so workers and masters of adjacent versions interoperate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    pub work_id: WorkId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueName>,
    /// For cancel: why (recorded as the job's reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Body of `jetwork.admin.purge`, `jetwork.admin.pause` and `jetwork.admin.resume` (JSON);
/// unknown fields are refused (see [`JobRequest`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueRequest {
    pub queue: QueueName,
}

/// Reply to every `jetwork.admin.*` request that succeeded (JSON); a refusal is a service
/// error instead (404 unknown job, 409 wrong state, 400 malformed request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminReply {
    /// What was done, in words. (A retry is decided and journaled when this is sent; its new
    /// run's submission follows, by this or the next leader.)
    pub message: String,
}

/// Body of `jetwork.admin.retry-all` (JSON): run every `failed` (or `cancelled`) job of a
/// queue again, as `jetwork.admin.retry` does one. Only a job's newest outcome counts (a job
/// whose latest run completed is not retried), newest outcome first. Unknown fields are
/// refused (see [`JobRequest`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

    /// Every field an operator request can carry, set: what the CLI sends is what it builds
    /// from these types, so it reads back whole.
    #[test]
    fn what_the_cli_sends_reads_back() {
        let queue = QueueName::parse("emails").unwrap();
        let job = JobRequest {
            work_id: WorkId::parse("order-42").unwrap(),
            queue: Some(queue.clone()),
            reason: Some("asked".to_owned()),
        };
        let bulk = BulkRetry {
            queue: queue.clone(),
            state: Some(JobState::Cancelled),
            since_ms: Some(1),
            limit: Some(5),
        };
        let list = JobsQuery { queue: Some(queue.clone()), state: None, limit: Some(3) };
        let pause = QueueRequest { queue };
        fn again<T: Serialize + serde::de::DeserializeOwned>(value: &T) -> T {
            serde_json::from_slice(&serde_json::to_vec(value).unwrap()).unwrap()
        }
        assert_eq!(again(&job), job);
        assert_eq!(again(&bulk), bulk);
        assert_eq!(again(&list), list);
        assert_eq!(again(&pause), pause);
    }

    /// An operator request with a field its type does not declare is refused, naming the
    /// field: `{"queue":"default","limit":1e30}` once paused `default`, the limit ignored.
    #[test]
    fn operator_requests_refuse_unknown_fields() {
        fn refused<T: serde::de::DeserializeOwned + std::fmt::Debug>(body: &str, field: &str) {
            let e = serde_json::from_str::<T>(body).expect_err(body).to_string();
            assert!(e.contains(&format!("unknown field `{field}`")), "{body}: {e}");
        }
        refused::<QueueRequest>(r#"{"queue":"default","limit":1e30}"#, "limit");
        refused::<JobRequest>(r#"{"work_id":"order-42","force":true}"#, "force");
        refused::<BulkRetry>(r#"{"queue":"emails","stat":"failed"}"#, "stat");
        refused::<JobsQuery>(r#"{"limt":5}"#, "limt");
    }

    const SUBJECT: &str = "jetwork.results.emails.order-42";

    fn completed(worker: &str, started_ms: u64, ended_ms: u64) -> AttemptRecord {
        AttemptRecord {
            attempt: 1,
            worker: WorkerId::parse(worker).unwrap(),
            started_ms,
            ended_ms,
            outcome: AttemptOutcome::Completed,
            reason: None,
        }
    }

    /// The headers of a stored outcome, as the master writes them, plus `extra`.
    fn stored(status: &str, attempt: &str, extra: &[(&str, &str)]) -> async_nats::HeaderMap {
        let mut h = async_nats::HeaderMap::new();
        h.insert(headers::STATUS, status);
        h.insert(headers::ATTEMPT, attempt);
        h.insert(headers::SUBMIT_SEQ, "7");
        for (name, value) in extra {
            h.insert(*name, *value);
        }
        h
    }

    fn read(h: &async_nats::HeaderMap) -> JobInfo {
        JobInfo::from_stored(SUBJECT, h, 1_000).expect("an outcome")
    }

    #[test]
    fn one_completed_attempt_is_written_short_and_read_back_as_from_json() {
        let mut record = completed("w-1", 1_764_460_800_000, 1_764_460_800_042);
        record.attempt = 3;
        let history = vec![record];
        let ran = AttemptRecord::ran_header(&history, 3).expect("the common history");
        assert_eq!(ran, "w-1 1764460800000 1764460800042");

        let short = read(&stored("completed", "3", &[(headers::RAN, &ran)]));
        let json = serde_json::to_string(&history).unwrap();
        let long = read(&stored("completed", "3", &[(headers::HISTORY, &json)]));
        assert_eq!(short.history, history);
        assert_eq!(short, long, "the short form reads as the JSON one does");
    }

    #[test]
    fn only_the_common_history_has_a_short_form() {
        let one = completed("w-1", 10, 20);
        let failed = AttemptRecord {
            outcome: AttemptOutcome::Failed,
            reason: Some("boom".to_owned()),
            ..one.clone()
        };
        let second = AttemptRecord { attempt: 2, ..one.clone() };
        let with_reason = AttemptRecord { reason: Some("odd".to_owned()), ..one.clone() };
        let running = AttemptRecord { outcome: AttemptOutcome::Running, ..one.clone() };
        let cancelled = AttemptRecord { outcome: AttemptOutcome::Cancelled, ..one.clone() };
        assert!(AttemptRecord::ran_header(std::slice::from_ref(&one), 1).is_some());
        for (history, attempt) in [
            (vec![], 1),
            (vec![failed, second], 2),
            (vec![one.clone()], 2),
            (vec![with_reason], 1),
            (vec![running], 1),
            (vec![cancelled], 1),
            (vec![one.clone(), one], 1),
        ] {
            assert_eq!(AttemptRecord::ran_header(&history, attempt), None, "{history:?}");
        }
    }

    #[test]
    fn the_longest_values_fit_without_growing() {
        let worker = "w".repeat(WorkerId::MAX_LEN);
        let history = vec![completed(&worker, u64::MAX, u64::MAX)];
        let ran = AttemptRecord::ran_header(&history, 1).unwrap();
        assert_eq!(ran.len(), ran.capacity(), "sized exactly for the longest value");
        assert_eq!(AttemptRecord::from_ran_header(&ran, 1).as_ref(), history.first());
    }

    #[test]
    fn a_malformed_short_history_leaves_the_outcome_readable() {
        let good = read(&stored("completed", "1", &[(headers::RAN, "w-1 10 20")]));
        assert_eq!(good.history, vec![completed("w-1", 10, 20)]);
        for bad in [
            "",
            "w-1",
            "w-1 10",
            "w-1 10 20 30",
            "w-1  10 20",
            "w-1 10 20 ",
            " w-1 10 20",
            "w-1\t10 20",
            "w.1 10 20",
            "w-1 +10 20",
            "w-1 -10 20",
            "w-1 10 0x14",
            "w-1 10 18446744073709551616",
            "w-1 1e3 20",
            "wé 10 20",
            "w-1 ١٠ 20",
        ] {
            let info = read(&stored("completed", "1", &[(headers::RAN, bad)]));
            assert_eq!((info.state, info.attempts, info.submit_seq), (JobState::Completed, 1, 7));
            assert!(info.history.is_empty(), "{bad:?} read as {:?}", info.history);
        }
        // The attempt number comes from Jetwork-Attempt: without a readable one, no record.
        for attempt in ["", "x", "-1", "+1", "4294967296"] {
            let info = read(&stored("completed", attempt, &[(headers::RAN, "w-1 10 20")]));
            assert!(info.history.is_empty(), "attempt {attempt:?}: {:?}", info.history);
        }
    }

    #[test]
    fn the_short_form_is_read_only_where_it_is_written() {
        let ran = (headers::RAN, "w-1 10 20");
        // Only on a completed outcome: a failed one with it did not complete.
        for status in ["failed", "cancelled"] {
            let info = read(&stored(status, "1", &[ran]));
            assert!(info.history.is_empty(), "{status}: {:?}", info.history);
        }
        // Jetwork-History, when there, is the history.
        let json =
            r#"[{"attempt":1,"worker":"w-2","started_ms":1,"ended_ms":2,"outcome":"completed"}]"#;
        let both = read(&stored("completed", "1", &[(headers::HISTORY, json), ran]));
        assert_eq!(both.history, vec![completed("w-2", 1, 2)]);
        let unreadable = read(&stored("completed", "1", &[(headers::HISTORY, "{"), ran]));
        assert!(unreadable.history.is_empty(), "{:?}", unreadable.history);
        let neither = read(&stored("completed", "1", &[]));
        assert!(neither.history.is_empty());
    }

    proptest::proptest! {
        #[test]
        fn every_common_history_round_trips(
            worker in "[A-Za-z0-9_-]{1,128}",
            attempt: u32,
            started_ms: u64,
            ended_ms: u64,
        ) {
            let record = AttemptRecord { attempt, ..completed(&worker, started_ms, ended_ms) };
            let ran = AttemptRecord::ran_header(std::slice::from_ref(&record), attempt);
            let ran = ran.expect("the common history");
            proptest::prop_assert_eq!(AttemptRecord::from_ran_header(&ran, attempt), Some(record));
        }

        #[test]
        fn any_value_reads_without_panicking(value in ".{0,200}", attempt: u32) {
            if let Some(record) = AttemptRecord::from_ran_header(&value, attempt) {
                proptest::prop_assert_eq!(record.attempt, attempt);
                proptest::prop_assert_eq!(record.outcome, AttemptOutcome::Completed);
            }
        }
    }
}
