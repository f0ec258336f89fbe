//! [`Action`]: what the engine asks the runtime to do, in order. Sending a request is
//! fire-and-forget for the engine: the runtime answers each `Register`, `RequestWork` and
//! `Report` with exactly one reply input carrying the same id (a `Withdraw` gets none).

use jetwork_shared::protocol::{Assignment, RegisterWorker, Report, RequestWork};
use jetwork_shared::{QueueName, WorkId};

use super::{Key, Millis, RequestId};

/// Something for the runtime to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send `msg` on `jetwork.master.register`. `epoch` is the newest epoch the engine has
    /// confirmed: a reply claiming a newer one must be checked against the lease first.
    Register { id: RequestId, epoch: u64, msg: RegisterWorker },
    /// Send `msg` on `jetwork.master.request` (a long poll when `msg.wait_ms > 0`).
    RequestWork { id: RequestId, epoch: u64, msg: RequestWork },
    /// Send `msg` on `jetwork.master.report`: outcomes, progress, and the slots wanted.
    Report { id: RequestId, epoch: u64, msg: Report },
    /// Send `msg` (a request for no slots) on `jetwork.master.request`, ignoring the reply:
    /// the master answers the open request with an empty grant instead of work.
    Withdraw { epoch: u64, msg: RequestWork },
    /// Run a job for this assignment. `expires`: when the master's deadline passes, on the
    /// runtime's clock (received + `timeout_ms`); the job may stop itself by then (`--exec`
    /// kills its process group).
    Start { assignment: Assignment, expires: Millis },
    /// Stop running this attempt's job (its end is then ignored).
    Abort { work_id: WorkId, attempt: u32 },
    /// The master accepted progress for this running attempt: its deadline, on the runtime's
    /// clock, is now `expires` (the reply's arrival + the `timeout_ms` it gave).
    Extend { work_id: WorkId, attempt: u32, expires: Millis },
    /// Read the lease and answer with [`super::Input::Lease`] for `announced`.
    CheckLease { announced: u64 },
    /// A line for the log.
    Log(Log),
    /// The worker is done: nothing more to run or report (or it gave up). Later inputs are
    /// ignored.
    Stopped,
}

/// A line for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    pub level: Level,
    /// Lines about things anyone can cause (forged announcements, a stolen worker id) are
    /// rate-limited by the runtime, per kind.
    pub limit: Option<Limit>,
    pub text: String,
    /// The attempt the line is about, if any: the runtime logs it as plain `work_id`,
    /// `attempt` and `queue` fields (the text names it too, for people reading text logs).
    pub job: Option<JobRef>,
}

/// The attempt a [`Log`] line is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRef {
    pub key: Key,
    /// Its queue, when the engine knows it (it keeps none for running attempts; the runtime
    /// fills it in from the jobs it runs).
    pub queue: Option<QueueName>,
}

/// How loud a [`Log`] line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
}

/// A kind of log line the runtime rate-limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// An election announcement the lease does not confirm.
    ForgedAnnouncement,
    /// Another process holds this worker id.
    IdInUse,
    /// The master refuses what this worker asks (a limit, or its login may not).
    Refused,
}
