//! [`PendingRetry`]: an operator's retry of a finished job that the engine decided
//! (`RetryDecided`, journaled) and whose submission to `jetwork.internal.<queue>` has not been
//! read back yet.
//!
//! Invariants:
//! - a work id has at most one pending retry, and none while it is in flight or its outcome is
//!   being published: a second retry is refused, and a client submission of the id is refused
//!   like one of an id in flight;
//! - the retry's submission is honoured only if it carries this `key` as its `Nats-Msg-Id`, and
//!   only once: reading it back (accepted or rejected) ends the entry, so a copy stored again
//!   after the dedup horizon (a leader that died before confirming it, a successor that
//!   submitted it again) is refused instead of running the job twice;
//! - what the new run asks for (`prior_attempts`, `options`) is decided here, when the retry is
//!   decided, from the stored outcome: nothing in the submission's headers counts.

use serde::{Deserialize, Serialize};

use jetwork_shared::job_options::JobOptions;
use jetwork_shared::QueueName;

/// A decided retry, until its submission is read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingRetry {
    pub queue: QueueName,
    /// The submission's `Nats-Msg-Id` (`<work id>~<drawn by the engine>`).
    pub key: String,
    /// The attempts the earlier runs used: the new run's are numbered on from there.
    pub prior_attempts: u32,
    /// What the new run asks for (priority, attempts, timeout, time to start; no delay).
    pub options: JobOptions,
    /// Where its payload is: the sequence of the retried outcome in `JETWORK_RESULTS`, which
    /// stores a failed or cancelled job's payload with it.
    pub payload_seq: u64,
    /// Confirmed stored in `JETWORK_SUBMIT`: not submitted again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stored: bool,
}
