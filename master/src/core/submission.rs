//! [`Submission`]: a message stored in `JETWORK_SUBMIT`, as the engine sees it
//! ([`Command::Submitted`](super::Command::Submitted)). Every route from the stream (a queue's
//! reader, an out-of-turn read for a priority jump) builds it with one function
//! (`intake::decode`), so what the engine decides never depends on how a message was read.
//!
//! Nothing here is trusted: headers are carried as they were stored (the master-only ones raw,
//! [`Bookkeeping`]) and the engine decides what they may mean from where the message was stored
//! ([`Origin`]) and from its own journaled decisions. The payload, when the server stored it and
//! which reader delivered it stay with the runtime.

use jetwork_shared::job_options::JobOptions;
use jetwork_shared::QueueName;

use super::{Bookkeeping, Millis};

/// A stored submission, read from `JETWORK_SUBMIT`.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    pub queue: QueueName,
    /// Its stream sequence.
    pub seq: u64,
    /// The reader's guarantee about what came before it: every submission of this queue with
    /// a sequence in `after + 1 .. seq` was delivered to the engine already (none exist, or
    /// they were delivered before this one). The engine only moves the queue's cursor along
    /// such unbroken deliveries. Meaningless for a `jump`.
    pub after: u64,
    /// Read out of turn, ahead of the queue's unread backlog (a priority submission the
    /// leader found stored behind it): it is only taken if it may jump (see
    /// `engine/intake.rs`).
    pub jump: bool,
    /// Who could have stored it, by its subject.
    pub origin: Origin,
    /// Its `Nats-Msg-Id`, if it carried one (the work id of a client submission; the
    /// deduplication key of the master's own).
    pub msg_id: Option<String>,
    /// Its payload's size in bytes.
    pub size: u64,
    /// Why the stored message cannot be read as a submission (its header block is
    /// malformed), if it cannot: it is rejected with this reason.
    pub unreadable: Option<String>,
    /// The master-only headers it carried, as stored.
    pub bookkeeping: Bookkeeping,
    /// What the submission asks for itself, or why its option headers are invalid (it is
    /// then rejected with that reason).
    pub options: Result<JobOptions, String>,
    pub now: Millis,
}

impl Submission {
    /// A client's submission of `queue` at `seq` carrying `msg_id` (or none), following on from
    /// `seq − 1`, with no options or bookkeeping (for tests and benches that need plain ones).
    pub fn plain(queue: QueueName, seq: u64, msg_id: Option<&str>, now: Millis) -> Self {
        Submission {
            queue,
            seq,
            after: seq.saturating_sub(1),
            jump: false,
            origin: Origin::Client,
            msg_id: msg_id.map(str::to_owned),
            size: 1,
            unreadable: None,
            bookkeeping: Bookkeeping::default(),
            options: Ok(JobOptions::default()),
            now,
        }
    }
}

/// Where a submission was stored, which says who may have stored it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `jetwork.submit.<queue>`: anyone allowed to submit.
    Client,
    /// `jetwork.internal.<queue>`: the master's own (an operator's retry, a schedule's tick).
    /// Only the master's NATS user may publish there; even so the engine honours such a
    /// submission only against the decision it journaled for it.
    Master,
}
