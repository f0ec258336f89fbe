//! [`Command`]: every input the engine reacts to. The runtime builds commands from NATS
//! messages and timers and stamps them with `now`, so the engine never reads a clock.

use bytes::Bytes;
use jetwork_shared::job_options::JobOptions;
use jetwork_shared::protocol::{RegisterWorker, Report, RequestWork};
use jetwork_shared::schedules::ScheduleName;
use jetwork_shared::{QueueName, WorkId};

use super::{Cadence, Millis, RequestId};

/// An input to [`super::Engine::step`].
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// This master won the lease (`epoch` is the lease revision) and finished replaying.
    /// `seed` (random, from the runtime) seeds the generator of this term's attempt tokens.
    Takeover { epoch: u64, leader: String, seed: [u8; 32], now: Millis },
    /// A submission read from `JETWORK_SUBMIT`: its queue, stream sequence, `Nats-Msg-Id`
    /// header if any, and payload size. `after` is the reader's guarantee about what came
    /// before it: every submission of this queue with a sequence in `after + 1 .. seq` was
    /// delivered to the engine already (none exist, or they were delivered before this one).
    /// The engine only moves the queue's cursor along such unbroken deliveries.
    Submitted {
        queue: QueueName,
        seq: u64,
        after: u64,
        /// Read out of turn, ahead of the queue's unread backlog (a priority submission the
        /// leader found stored behind it): `after` means nothing then, and it is only taken
        /// if it may jump (see `engine/intake.rs`).
        jump: bool,
        msg_id: Option<String>,
        size: u64,
        /// Why the stored message cannot be read as a submission (its header block is
        /// malformed), if it cannot: it is rejected with this reason.
        unreadable: Option<String>,
        /// For a retry: the attempts its earlier runs used; its own are numbered on from there.
        prior_attempts: u32,
        /// What the submission asks for itself, or why its options are invalid (it is then
        /// rejected with that reason).
        options: Result<JobOptions, String>,
        now: Millis,
    },
    /// A worker's registration or heartbeat.
    Register { request: RequestId, msg: RegisterWorker, now: Millis },
    /// A worker asks for work.
    RequestWork { request: RequestId, msg: RequestWork, now: Millis },
    /// A worker reports outcomes (and may ask for more work).
    Report { request: RequestId, msg: Report, now: Millis },
    /// Time passes: deadlines and worker liveness are checked.
    Tick { now: Millis },
    /// These publications are durably stored in `JETWORK_RESULTS`.
    Published { keys: Vec<super::PublicationKey> },
    /// The payload of this item is gone from `JETWORK_SUBMIT` (purged by hand): it cannot run.
    PayloadMissing { work_id: WorkId, now: Millis },
    /// An operator cancels a work item in flight (`jetwork.admin.cancel`).
    Cancel { request: RequestId, work_id: WorkId, reason: Option<String>, now: Millis },
    /// An operator purges a queue (`jetwork.admin.purge`): its held pending items are
    /// cancelled, and so is every submission of it stored at or before `through_seq` (the
    /// queue's last stored submission when the runtime looked) that is read later. `unread`:
    /// how many of those the runtime counted unread (only for the reply).
    Purge { request: RequestId, queue: QueueName, through_seq: u64, unread: u64, now: Millis },
    /// An operator pauses a queue (`jetwork.admin.pause`).
    Pause { request: RequestId, queue: QueueName, now: Millis },
    /// An operator resumes a queue (`jetwork.admin.resume`).
    Resume { request: RequestId, queue: QueueName, now: Millis },
    /// An operator adds a recurring schedule (`jetwork.admin.schedule.add`).
    ScheduleAdd {
        request: RequestId,
        name: ScheduleName,
        queue: QueueName,
        cadence: Cadence,
        payload: Bytes,
        now: Millis,
    },
    /// An operator removes a schedule (`jetwork.admin.schedule.rm`).
    ScheduleRemove { request: RequestId, name: ScheduleName, now: Millis },
    /// These fired ticks are durably stored in `JETWORK_SUBMIT`.
    TicksSubmitted { work_ids: Vec<WorkId> },
}

impl Command {
    /// The time the command was stamped with, if it carries one.
    pub fn now(&self) -> Option<Millis> {
        match self {
            Command::Takeover { now, .. }
            | Command::Submitted { now, .. }
            | Command::Register { now, .. }
            | Command::RequestWork { now, .. }
            | Command::Report { now, .. }
            | Command::Tick { now }
            | Command::PayloadMissing { now, .. }
            | Command::Cancel { now, .. }
            | Command::Purge { now, .. }
            | Command::Pause { now, .. }
            | Command::Resume { now, .. }
            | Command::ScheduleAdd { now, .. }
            | Command::ScheduleRemove { now, .. } => Some(*now),
            Command::Published { .. } | Command::TicksSubmitted { .. } => None,
        }
    }
}
