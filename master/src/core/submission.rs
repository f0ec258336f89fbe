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
use jetwork_shared::{headers, QueueName};

use super::Millis;

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

/// The master-only headers of a stored submission ([`headers::MASTER_ONLY`]), raw. On a
/// client's submission any of them is a reason to reject it (unless an older master stored it
/// there before the upgrade, see `State::legacy_through`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bookkeeping {
    /// `Jetwork-Work-Id`: the work id a master submission runs.
    pub work_id: Option<String>,
    /// `Jetwork-Retry-Of`: the work id an older master's retry ran again.
    pub retry_of: Option<String>,
    /// `Jetwork-Prior-Attempts`: an older master's retry's count of earlier attempts.
    pub prior_attempts: Option<String>,
    /// `Jetwork-Schedule`, `Jetwork-Scheduled-At`: a tick's schedule and time.
    pub schedule: Option<String>,
    pub scheduled_at: Option<String>,
}

impl Bookkeeping {
    /// Reads the master-only headers through `get` (a lookup by name).
    pub fn read<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Bookkeeping {
        let own = |name| get(name).map(str::to_owned);
        Bookkeeping {
            work_id: own(headers::WORK_ID),
            retry_of: own(headers::RETRY_OF),
            prior_attempts: own(headers::PRIOR_ATTEMPTS),
            schedule: own(headers::SCHEDULE),
            scheduled_at: own(headers::SCHEDULED_AT),
        }
    }

    /// The names of the master-only headers present, in [`headers::MASTER_ONLY`] order.
    pub fn present(&self) -> Vec<&'static str> {
        let values = [
            &self.retry_of,
            &self.prior_attempts,
            &self.schedule,
            &self.scheduled_at,
            &self.work_id,
        ];
        headers::MASTER_ONLY
            .iter()
            .zip(values)
            .filter(|(_, value)| value.is_some())
            .map(|(name, _)| *name)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_master_only_header_is_read_and_named() {
        let all = |name: &str| headers::MASTER_ONLY.contains(&name).then_some("x");
        let read = Bookkeeping::read(all);
        assert_eq!(read.present(), headers::MASTER_ONLY.to_vec());
        assert!(Bookkeeping::read(|_| None).present().is_empty());
        let one = Bookkeeping::read(|name| (name == headers::SCHEDULE).then_some("beat"));
        assert_eq!(one.present(), vec![headers::SCHEDULE]);
    }
}
