//! Facts the engine needs from the streams to decide an operator's request, and cannot hold
//! itself: a finished job's stored outcome, a queue's newest outcomes, a queue's last stored
//! submission. The engine asks for one with [`Effect::LookUp`](super::Effect::LookUp) and keeps
//! the request waiting (soft state: a lookup lives as long as the leader); the runtime reads it
//! off the loop and brings the answer back as [`Command::LookedUp`](super::Command::LookedUp),
//! and the engine decides on the state as it is *then* (a job may have started or finished
//! meanwhile), journals, and only then is anything published.

use jetwork_shared::jobs::JobState;
use jetwork_shared::{QueueName, WorkId};

use super::StoredOutcome;

/// What to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookUp {
    /// The latest stored outcome of `work_id` (in `queue`, or in any queue).
    Outcome { work_id: WorkId, queue: Option<QueueName> },
    /// The newest stored outcomes of `queue` whose latest run ended in `state`, stored at or
    /// after `since_ms` (server time), newest first, at most `limit`.
    Outcomes { queue: QueueName, state: JobState, since_ms: u64, limit: u32 },
    /// The last submission stored for `queue` (on either of its subjects), and about how many
    /// of its submissions are still unread.
    LastSubmitted { queue: QueueName },
}

/// What was read.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// The latest stored outcome of the job asked about, if it has one.
    Outcome(Option<StoredOutcome>),
    /// The newest stored outcomes asked for; `truncated` if the scan stopped at its bound
    /// before the oldest.
    Outcomes { outcomes: Vec<StoredOutcome>, truncated: bool },
    /// The queue's last stored submission (0: none), and about how many are unread.
    LastSubmitted { through_seq: u64, unread: u64 },
    /// The streams could not be read: the request is refused (503) with this reason.
    Unavailable(String),
}
