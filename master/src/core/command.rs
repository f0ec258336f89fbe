//! [`Command`]: every input the engine reacts to. The runtime builds commands from NATS
//! messages and timers and stamps them with `now`, so the engine never reads a clock.

use bytes::Bytes;
use jetwork_shared::jobs::JobState;
use jetwork_shared::protocol::{Deregister, RegisterWorker, Report, RequestWork};
use jetwork_shared::report_entries::UnreadableOutcome;
use jetwork_shared::schedules::ScheduleName;
use jetwork_shared::{Login, QueueName, WorkId};

use super::{Cadence, Found, Millis, RequestId, Submission};

/// An input to [`super::Engine::step`].
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// This master won the lease (`epoch` is the lease revision) and finished replaying.
    /// `seed` (random, from the runtime) seeds the generator of this term's attempt tokens and
    /// submission keys. `submitted_through`: the last sequence stored in `JETWORK_SUBMIT` now
    /// (recorded once, when a journal older masters wrote is first led by this version).
    Takeover { epoch: u64, leader: String, seed: [u8; 32], submitted_through: u64, now: Millis },
    /// A submission read from `JETWORK_SUBMIT`, by a queue's reader or out of turn.
    Submitted(Submission),
    /// A worker's registration or heartbeat. `login`: the login the subject it came on names
    /// (`jetwork.master.register.<login>.<worker id>`; the runtime checked that the worker id
    /// token is the message's), `None` on the endpoint without one.
    Register { request: RequestId, msg: RegisterWorker, login: Option<Login>, now: Millis },
    /// A worker asks for work (`login` as for `Register`).
    RequestWork { request: RequestId, msg: RequestWork, login: Option<Login>, now: Millis },
    /// A worker reports outcomes and may ask for more work (`login` as for `Register`).
    /// `unreadable`: the entries of its `outcomes` that could not be read (each refused on its
    /// own; `msg.outcomes` holds the others, in order).
    Report {
        request: RequestId,
        msg: Report,
        unreadable: Vec<UnreadableOutcome>,
        login: Option<Login>,
        now: Millis,
    },
    /// A worker that stops cleanly releases its id (`login` as for `Register`).
    Deregister { request: RequestId, msg: Deregister, login: Option<Login>, now: Millis },
    /// Time passes: deadlines and worker liveness are checked.
    Tick { now: Millis },
    /// These publications are durably stored in `JETWORK_RESULTS`.
    Published { keys: Vec<super::PublicationKey> },
    /// The payload of this item (or of this pending retry) is gone from the stream it is
    /// kept in (purged or aged out): it cannot run.
    PayloadMissing { work_id: WorkId, now: Millis },
    /// An operator cancels a job (`jetwork.admin.cancel`).
    Cancel { request: RequestId, work_id: WorkId, reason: Option<String>, now: Millis },
    /// An operator runs a failed or cancelled job again (`jetwork.admin.retry`); `queue`
    /// narrows where its outcome is looked for.
    Retry { request: RequestId, work_id: WorkId, queue: Option<QueueName>, now: Millis },
    /// An operator runs again every job of `queue` whose latest outcome is `state` (failed or
    /// cancelled), stored since `since_ms`, newest first, at most `limit`
    /// (`jetwork.admin.retry-all`).
    RetryAll {
        request: RequestId,
        queue: QueueName,
        state: JobState,
        since_ms: u64,
        limit: u32,
        now: Millis,
    },
    /// An operator purges a queue (`jetwork.admin.purge`): its pending work stored up to now
    /// is cancelled (the engine asks for the queue's last stored submission first).
    Purge { request: RequestId, queue: QueueName, now: Millis },
    /// What the runtime read for a request the engine asked about (`Effect::LookUp`).
    LookedUp { request: RequestId, found: Found, now: Millis },
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
    /// The master's own submissions (ticks, retries) of these work ids are durably stored in
    /// `JETWORK_SUBMIT`.
    SubmissionsStored { work_ids: Vec<WorkId> },
    /// The first submission still stored in `JETWORK_SUBMIT` of each queue
    /// [`Engine::forgettable_queues`](super::Engine::forgettable_queues) named (`None`: none):
    /// those still idle, with nothing stored at or below their cursor, are forgotten.
    QueuesStored { first_stored: Vec<(QueueName, Option<u64>)>, now: Millis },
}

impl Command {
    /// The time the command was stamped with, if it carries one.
    pub fn now(&self) -> Option<Millis> {
        match self {
            Command::Submitted(submission) => Some(submission.now),
            Command::Takeover { now, .. }
            | Command::Register { now, .. }
            | Command::RequestWork { now, .. }
            | Command::Report { now, .. }
            | Command::Deregister { now, .. }
            | Command::Tick { now }
            | Command::PayloadMissing { now, .. }
            | Command::Cancel { now, .. }
            | Command::Retry { now, .. }
            | Command::RetryAll { now, .. }
            | Command::Purge { now, .. }
            | Command::LookedUp { now, .. }
            | Command::Pause { now, .. }
            | Command::Resume { now, .. }
            | Command::ScheduleAdd { now, .. }
            | Command::ScheduleRemove { now, .. }
            | Command::QueuesStored { now, .. } => Some(*now),
            Command::Published { .. } | Command::SubmissionsStored { .. } => None,
        }
    }
}
