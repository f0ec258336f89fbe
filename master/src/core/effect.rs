//! [`Effect`]: what the runtime must do once the events of a step are journaled. Effects are
//! not carried out before the events that justify them are durable, so a crash between the
//! two loses at most an effect that the replayed state will cause again (a re-sent
//! notification, a re-published result). The runtime may send one kind early, a worker's
//! `Grant` or `Report` reply marked `early` (`master.early_replies`): its decisions are then
//! recorded by the same term or by none, and a later leader hands the work out afresh
//! (architecture, "Early replies").

use jetwork_shared::jobs::{BulkRetryReply, PurgeReply};
use jetwork_shared::protocol::{Deregistered, Registered, Verdict};
use jetwork_shared::{QueueName, Token, WorkId, WorkerId};

use super::{LookUp, Millis, PublicationKey, RequestId};

/// Something for the runtime to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Answer a pending request. `early`: the runtime may send it before the journal write
    /// holding its step's events is acknowledged (`master.early_replies`); set only on a
    /// worker's `Grant` or `Report` that names no item on its last attempt. A leader that dies
    /// before the write lands leaves an answer no later leader heard of; for an item on its
    /// last attempt that later leader would let the attempt run out (the worker, told its
    /// result was accepted or holding the attempt number already, refuses it again) and fail
    /// the item, so such an answer waits for its write.
    Reply { request: RequestId, reply: Reply, early: bool },
    /// Tell a worker that work is waiting (`jetwork.worker.<id>.ready`).
    NotifyReady { worker: WorkerId },
    /// Store and publish a result or rejection (content is in `State::unpublished`).
    Publish { key: PublicationKey },
    /// Announce the new leader on `jetwork.master.elected`.
    Announce { epoch: u64, leader: String },
    /// A submission arrived that does not follow on from the queue's cursor (its reader
    /// lost deliveries): read the queue again from `from` (the cursor + 1).
    Reread { queue: QueueName, from: u64 },
    /// Tell a worker to stop a cancelled attempt (`jetwork.worker.<id>.cancel`). A hint: the
    /// job is already finished, so whatever the worker does next cannot change it.
    Revoke { worker: WorkerId, work_id: WorkId, attempt: u32 },
    /// Submit the master's own pending submission of this work id (a tick, content in
    /// `State::unsubmitted`; a retry, in `State::retries`) to `jetwork.internal.<queue>` under
    /// its key as `Nats-Msg-Id`, and confirm it with `Command::SubmissionsStored`.
    Submit { work_id: WorkId },
    /// Read this for the request, and answer with `Command::LookedUp` (the request waits).
    LookUp { request: RequestId, lookup: LookUp },
}

/// A reply to a worker request (the runtime adds the epoch and the payloads).
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Registered(Registered),
    Deregistered(Deregistered),
    Grant {
        assignments: Vec<AssignmentRef>,
    },
    Report {
        verdicts: Vec<Verdict>,
        assignments: Vec<AssignmentRef>,
    },
    /// An operator's request was carried out (the runtime answers JSON `AdminReply`).
    Done {
        message: String,
    },
    /// A purge was recorded (the runtime answers it as JSON).
    Purged(PurgeReply),
    /// A bulk retry was decided (the runtime answers it as JSON).
    RetriedAll(BulkRetryReply),
    Error(ReplyError),
}

/// A request the engine will not serve, with the NATS micro-service error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyError {
    /// 400 bad request, 403 wrong session, 404 unknown worker or job, 409 worker id in use
    /// or a job in the wrong state, 500 the runtime answered a lookup with the wrong kind of
    /// fact (a bug), 503 too many workers, too many lookups at once ("… retry shortly"), a job
    /// whose outcome is still being stored ("… retry shortly"), or streams that could not be
    /// read.
    pub code: u16,
    pub message: String,
}

/// One hand-out, without its payload (which lives in `JETWORK_SUBMIT` at `seq`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignmentRef {
    pub work_id: WorkId,
    pub queue: QueueName,
    pub seq: u64,
    pub attempt: u32,
    pub deadline: Millis,
    pub timeout: Millis,
    pub token: Token,
}
