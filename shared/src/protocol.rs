//! The messages exchanged between workers (and frontends) and the leading master, encoded with
//! [`crate::codec`] as MessagePack maps. One request type per master endpoint, each with its
//! reply type; see `docs/protocol.md` for the same catalogue with subjects and examples.
//!
//! Conventions every message keeps:
//! - `epoch` in a reply is the leadership term (the lease revision) of the master that sent
//!   it. Workers remember the highest epoch they have seen and ignore anything older, so a
//!   deposed master's late reply cannot steer them.
//! - Attempts are 1-based and identify one hand-out of a work item; a report always names the
//!   attempt it is about, so the master can tell a current report from a superseded one.
//! - Times are milliseconds since the Unix epoch on the master's clock (`*_ms`); relative
//!   durations are milliseconds (`*_ms` too, named as durations).
//! - Errors are not encoded in these types: the master answers a request it cannot serve with
//!   an empty body and the NATS micro-service headers `Nats-Service-Error` (reason) and
//!   `Nats-Service-Error-Code` (400 bad request, 404 unknown worker; 503 "not leader" is
//!   reserved and treated like no responders).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{QueueName, Token, WorkId, WorkerId};

/// `jetwork.master.register`: a worker announces itself and what it is running. Sent on start,
/// every `register_interval` as a heartbeat, and at once when a new master is elected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterWorker {
    pub worker_id: WorkerId,
    /// Chosen at random when the worker process starts, and sent with every request under
    /// this id: while the worker is alive, nobody else can act under its id.
    pub session: Token,
    /// Queues this worker takes work from.
    pub queues: Vec<QueueName>,
    /// How many items it runs at once.
    pub capacity: u32,
    /// Items it is executing or holding an unacknowledged result for.
    #[serde(default)]
    pub running: Vec<RunningWork>,
}

/// One item a worker holds, in [`RegisterWorker::running`] (and [`RequestWork::running`],
/// [`Report::running`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningWork {
    pub work_id: WorkId,
    pub attempt: u32,
}

/// Reply to [`RegisterWorker`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registered {
    pub epoch: u64,
    /// Attempts from `running` that are no longer this worker's to execute (timed out and
    /// handed out again, or finished). The worker should stop executing them; results it
    /// already has may still be reported.
    #[serde(default)]
    pub revoked: Vec<RunningWork>,
    /// True when work is waiting in one of the worker's queues: ask for it.
    #[serde(default)]
    pub work_ready: bool,
}

/// `jetwork.master.deregister`: a worker that stops cleanly releases its id at once, instead of
/// leaving the master to notice its silence after `worker_timeout`. Whatever it still runs is
/// re-queued at once, and a new process may register under the id straight away. Only the
/// process that holds the id (its `session`, under its login) may send it: anyone else gets 403
/// and nothing changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deregister {
    pub worker_id: WorkerId,
    /// The session the worker registered with.
    pub session: Token,
}

/// Reply to [`Deregister`]: the id is free.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deregistered {
    pub epoch: u64,
    /// Attempts the worker still held, re-queued at once (each counts as an attempt).
    #[serde(default)]
    pub requeued: u32,
}

/// `jetwork.master.request`: an idle (or partly idle) worker asks for up to `slots` items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestWork {
    pub worker_id: WorkerId,
    /// The session the worker registered with.
    pub session: Token,
    pub slots: u32,
    /// When nothing is ready, how long the master may hold the request open and answer it as
    /// soon as work arrives (a long poll), in milliseconds; 0 answers at once. The master caps
    /// it (`master.max_request_wait`); ask for less than your request timeout.
    #[serde(default)]
    pub wait_ms: u64,
    /// Every attempt the worker holds as it sends this (as in [`RegisterWorker::running`]).
    /// When given, the master hands out again, in the reply, any attempt of this worker it
    /// holds that is not listed and still within its deadline: a grant lost on its way (the
    /// reply to a request the worker gave up on, a reconnect) then costs a request, not the
    /// attempt's timeout. Same token and deadline; a worker ignores an attempt it already
    /// holds. Absent: no re-grant (older workers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<Vec<RunningWork>>,
}

/// Reply to [`RequestWork`]: zero or more items. An empty grant means "nothing now; you will
/// get `jetwork.worker.<id>.ready` when there is".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkGrant {
    pub epoch: u64,
    #[serde(default)]
    pub assignments: Vec<Assignment>,
}

/// One item handed to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub work_id: WorkId,
    pub queue: QueueName,
    /// 1 on the first hand-out, incremented on every re-queue.
    pub attempt: u32,
    /// When the master will consider the attempt timed out unless it hears progress.
    pub deadline_ms: u64,
    /// The same deadline as a duration from the moment the master sent this, for workers whose
    /// clock is not in step with the master's.
    pub timeout_ms: u64,
    /// The job, exactly the bytes that were submitted.
    pub payload: Bytes,
    /// Proof of this hand-out: a report about this attempt is accepted only with it.
    pub token: Token,
}

/// `jetwork.master.report`: a worker reports outcomes, and may ask for `slots` more items in
/// the same round trip. A worker re-sends a completion or failure until it gets a verdict for
/// it; the master records each at most once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub worker_id: WorkerId,
    /// The session the worker registered with.
    pub session: Token,
    #[serde(default)]
    pub outcomes: Vec<Outcome>,
    /// Items wanted in the reply, 0 for none.
    #[serde(default)]
    pub slots: u32,
    /// As [`RequestWork::running`], for the items the reply grants: every attempt held as the
    /// report is sent (those it reports on included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<Vec<RunningWork>>,
}

/// What happened to one attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub work_id: WorkId,
    pub attempt: u32,
    /// The token the attempt was handed out with.
    pub token: Token,
    pub status: OutcomeStatus,
    /// The result bytes, for `completed`.
    #[serde(default)]
    pub result: Bytes,
    /// Why it failed, for `failed`.
    #[serde(default)]
    pub reason: Option<String>,
    /// For `failed`: retrying cannot help (bad input, a permanent refusal); the job ends
    /// `failed` at once instead of being attempted again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub non_retryable: bool,
}

/// The kind of an [`Outcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeStatus {
    /// Finished; `result` holds the output.
    Completed,
    /// Failed; `reason` says why. The master re-queues it or, after the last attempt, fails it.
    Failed,
    /// Still working: extend the deadline.
    Progress,
}

/// Reply to [`Report`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportReply {
    pub epoch: u64,
    /// One verdict per outcome, in order.
    #[serde(default)]
    pub verdicts: Vec<Verdict>,
    /// New items, if `slots` asked for them.
    #[serde(default)]
    pub assignments: Vec<Assignment>,
}

/// The master's answer to one [`Outcome`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The outcome's work id; absent only on the `rejected` verdict of an entry whose own
    /// `work_id` could not be read (see [`crate::report_entries`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_id: Option<WorkId>,
    /// The outcome's attempt (0 when an unreadable entry's own could not be read).
    #[serde(default)]
    pub attempt: u32,
    pub verdict: VerdictKind,
    /// For accepted progress: the new deadline.
    #[serde(default)]
    pub deadline_ms: Option<u64>,
    /// For accepted progress: the new deadline as a duration from now.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// For `rejected`: why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// How the master took an [`Outcome`]. Every kind means "stop re-sending": the master will
/// never answer this outcome differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    /// Recorded in the journal (or, for progress, the deadline was extended).
    Accepted,
    /// The work is no longer in flight: it was finished earlier (perhaps by this very report,
    /// whose first acknowledgement was lost). Nothing more to do.
    Finished,
    /// The work is in flight but this attempt no longer owns it (it timed out and was handed
    /// out again). A failure or progress from it is ignored; stop executing it.
    Superseded,
    /// The outcome is malformed (for example an attempt that was never handed out).
    Rejected,
}

/// `jetwork.worker.<id>.ready`: work is waiting in one of the worker's queues.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkReady {
    pub epoch: u64,
}

/// The value of the lease key (`jetwork-lease`, key `master`), JSON: who leads, and since which
/// revision (its epoch). A leader writes its epoch into the value right after taking the key
/// (`epoch` is 0 for that moment), so anything following the leader can check an
/// announcement or a reply's epoch against the lease instead of trusting it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseHolder {
    pub holder: String,
    pub epoch: u64,
}

/// `jetwork.master.elected`: a master has taken over; workers re-register at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MasterElected {
    pub epoch: u64,
    pub leader: String,
}

/// The optional JSON body of a `jetwork.master.status` request: which page of the lists to
/// return. An empty body asks for the first page; an unreadable one is refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusQuery {
    /// Workers to list (at most [`StatusQuery::MAX_LIMIT`]).
    pub workers_limit: u32,
    /// Workers to skip (in id order) before listing.
    pub workers_offset: u32,
    /// Queues to list (at most [`StatusQuery::MAX_LIMIT`]).
    pub queues_limit: u32,
    /// Queues to skip (in name order) before listing.
    pub queues_offset: u32,
}

impl StatusQuery {
    /// The most workers or queues one reply lists: a reply stays far below NATS's 1 MiB.
    pub const MAX_LIMIT: u32 = 1000;
    /// The most running items listed per worker.
    pub const MAX_RUNNING: usize = 32;

    /// The query with its limits capped.
    pub fn capped(self) -> Self {
        StatusQuery {
            workers_limit: self.workers_limit.min(Self::MAX_LIMIT),
            queues_limit: self.queues_limit.min(Self::MAX_LIMIT),
            ..self
        }
    }
}

impl Default for StatusQuery {
    fn default() -> Self {
        StatusQuery { workers_limit: 100, workers_offset: 0, queues_limit: 100, queues_offset: 0 }
    }
}

/// Reply to `jetwork.master.status` (JSON, for people and scripts; see `docs/protocol.md`).
/// Bounded whatever the number of workers and queues: lists are paged ([`StatusQuery`]), with
/// the totals beside them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub leader: String,
    pub epoch: u64,
    /// Master clock when the report was made.
    pub now_ms: u64,
    pub queues: Vec<QueueStatus>,
    /// Queues known in all (listed or not).
    #[serde(default)]
    pub queues_total: u64,
    pub workers: Vec<WorkerStatus>,
    /// Workers registered in all (listed or not).
    #[serde(default)]
    pub workers_total: u64,
}

/// One queue in a [`StatusReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueStatus {
    pub queue: QueueName,
    /// Submitted and not yet handed out (stored in `JETWORK_SUBMIT` or read ahead by the master).
    pub pending: u64,
    /// Handed out and not finished.
    pub in_progress: u64,
    /// Finished as `completed` since the journal began.
    pub completed: u64,
    /// Finished as `failed` since the journal began.
    pub failed: u64,
    /// Submissions rejected as invalid.
    pub rejected: u64,
    /// Failed and waiting out their back-off before the next attempt.
    #[serde(default)]
    pub waiting: u64,
    /// Cancelled by an operator since the journal began.
    #[serde(default)]
    pub cancelled: u64,
    /// Paused by an operator: nothing of it is handed out.
    #[serde(default)]
    pub paused: bool,
}

/// One worker in a [`StatusReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub worker_id: WorkerId,
    pub queues: Vec<QueueName>,
    pub capacity: u32,
    /// Milliseconds since the master last heard from it.
    pub last_seen_ago_ms: u64,
    /// The first [`StatusQuery::MAX_RUNNING`] items it runs.
    pub running: Vec<RunningStatus>,
    /// How many items it runs in all.
    #[serde(default)]
    pub running_total: u64,
}

/// One item a worker runs, in a [`WorkerStatus`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningStatus {
    pub work_id: WorkId,
    pub queue: QueueName,
    pub attempt: u32,
    pub deadline_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    #[test]
    fn report_round_trips_as_named_map() {
        let report = Report {
            worker_id: WorkerId::parse("w1").unwrap(),
            session: Token::from_u128(9),
            outcomes: vec![Outcome {
                work_id: WorkId::parse("a").unwrap(),
                attempt: 2,
                token: Token::from_u128(7),
                status: OutcomeStatus::Completed,
                result: Bytes::from_static(b"4"),
                reason: None,
                non_retryable: false,
            }],
            slots: 3,
            running: Some(vec![RunningWork { work_id: WorkId::parse("a").unwrap(), attempt: 2 }]),
        };
        let bytes = codec::encode(&report).unwrap();
        // Field names are on the wire, so other languages can decode by key.
        let text = String::from_utf8_lossy(&bytes);
        for key in
            ["worker_id", "session", "outcomes", "work_id", "attempt", "token", "status", "slots"]
        {
            assert!(text.contains(key), "{key} missing from {text:?}");
        }
        assert_eq!(codec::decode::<Report>(&bytes).unwrap(), report);
    }

    #[test]
    fn invalid_ids_inside_messages_are_rejected_on_decode() {
        #[derive(Serialize)]
        struct Raw<'a> {
            worker_id: &'a str,
            slots: u32,
        }
        let bytes = codec::encode(&Raw { worker_id: "evil.>", slots: 1 }).unwrap();
        assert!(codec::decode::<RequestWork>(&bytes).is_err());
    }
}
