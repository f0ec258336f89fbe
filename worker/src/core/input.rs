//! [`Input`]: everything the engine reacts to, each stamped by the runtime with `now` (its
//! monotonic clock), and [`Failure`]: why a request got no usable reply. The runtime builds
//! inputs from NATS messages, job tasks and its tick timer; replies carry the [`RequestId`]
//! of the action that sent the request.

use bytes::Bytes;
use jetwork_shared::protocol::{LeaseHolder, Registered, ReportReply, WorkGrant};
use jetwork_shared::WorkId;

use super::{Millis, RequestId};
use crate::JobError;

/// An input to [`super::Engine::step`].
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The worker starts: it registers at once.
    Start { now: Millis },
    /// The answer to [`super::Action::Register`] `id`.
    Registered { id: RequestId, reply: Result<Registered, Failure>, now: Millis },
    /// The answer to [`super::Action::RequestWork`] `id`. `wall` is the wall clock when it
    /// arrived (milliseconds since the Unix epoch), to judge the assignments' deadlines.
    Granted { id: RequestId, reply: Result<WorkGrant, Failure>, now: Millis, wall: Millis },
    /// The answer to [`super::Action::Report`] `id`; `wall` as for `Granted`.
    Reported { id: RequestId, reply: Result<ReportReply, Failure>, now: Millis, wall: Millis },
    /// `jetwork.master.elected` announced `epoch`: a hint anyone could forge, which the
    /// engine has checked against the lease before it believes it.
    Elected { epoch: u64, now: Millis },
    /// What the lease said after [`super::Action::CheckLease`] for `announced`: its holder
    /// (`None`: nobody holds it), or why it could not be read.
    Lease { announced: u64, read: Result<Option<LeaseHolder>, String>, now: Millis },
    /// `jetwork.worker.<id>.ready`: work is waiting for this worker, says the master of
    /// `epoch`.
    WorkReady { epoch: u64, now: Millis },
    /// A job ended: its result, or why it failed (a panic included).
    JobEnded { work_id: WorkId, attempt: u32, result: Result<Bytes, JobError>, now: Millis },
    /// `jetwork.worker.<id>.cancel`: the master of `epoch` cancelled this attempt's job. Only
    /// the master this worker follows is obeyed (the subject is the master's alone to publish
    /// on, but a stale copy from a deposed one must not stop work its successor handed out).
    Cancelled { epoch: u64, work_id: WorkId, attempt: u32, now: Millis },
    /// A running job reported progress.
    Progress { work_id: WorkId, attempt: u32, now: Millis },
    /// The handler's gate opened or closed ([`crate::Gate`]): whether it can take work now.
    Gate { open: bool, now: Millis },
    /// Stop: finish (or, after the grace period, abandon) what runs, then stop.
    Shutdown { now: Millis },
    /// Time passes (the runtime ticks often enough for the shortest interval in the config).
    Tick { now: Millis },
}

impl Input {
    /// The time the input was stamped with.
    pub fn now(&self) -> Millis {
        match self {
            Input::Start { now }
            | Input::Registered { now, .. }
            | Input::Granted { now, .. }
            | Input::Reported { now, .. }
            | Input::Elected { now, .. }
            | Input::Lease { now, .. }
            | Input::WorkReady { now, .. }
            | Input::JobEnded { now, .. }
            | Input::Cancelled { now, .. }
            | Input::Progress { now, .. }
            | Input::Gate { now, .. }
            | Input::Shutdown { now }
            | Input::Tick { now } => *now,
        }
    }
}

/// Why a request to the master got no usable reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// Nobody serves the endpoint: no leader right now.
    #[error("no master is serving")]
    NoMaster,
    /// The leader does not know this worker (404).
    #[error("the master does not know this worker")]
    UnknownWorker,
    /// Another live worker process holds this worker id (409), or the master knows the id
    /// under another session (403).
    #[error("the worker id is held by another process: {0}")]
    IdInUse(String),
    /// The leader refused the request.
    #[error("refused: {0}")]
    Refused(String),
    /// The reply named an epoch the lease does not confirm (a forged or deposed responder).
    #[error("the reply's epoch {0} is not confirmed by the lease")]
    Unconfirmed(u64),
    /// Timed out, or could not be sent or decoded.
    #[error("{0}")]
    Failed(String),
}
