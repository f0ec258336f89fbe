//! [`Chain`]: which stored journal messages belong to the fenced chain of leader writes, and
//! so may be replayed. Pure: the replay feeds it each message's sequence, subject and headers.
//!
//! Every write a leader makes carries `Jetwork-Epoch` (its lease revision) and
//! `Nats-Expected-Last-Sequence` = the sequence right before it (the fence; JetStream keeps the
//! header with the stored message), and each term's first write is its claim on
//! `jetwork.journal.epoch`. So a message belongs to the chain only if:
//! - it names an epoch, no newer than the replaying candidate's own (lease revisions only
//!   grow, so no earlier leader can have had a newer one);
//! - it was chained on the message right before it;
//! - its epoch is the current term's, or it is the claim that starts a newer term (a deposed
//!   leader's write after a newer claim is impossible: the fence refuses it).
//!
//! Anything else was written by something other than a leader (a client with publish rights
//! on `jetwork.journal.>`): replay logs it and leaves it out instead of applying it.

use jetwork_shared::subjects;

/// A reason a message is not part of the chain.
pub type Foreign = String;

/// The chain as replay walks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// The replaying candidate's epoch: nothing stored can be newer.
    limit: u64,
    /// The term whose writes come next (0 before the first claim).
    term: u64,
}

impl Chain {
    /// A chain read by a candidate holding `limit`, starting inside term `term` (the term of
    /// the snapshot replay starts from, or 0 for the beginning of the journal).
    pub fn new(limit: u64, term: u64) -> Self {
        Chain { limit, term }
    }

    /// The term the chain is in.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// Checks the message stored at `seq` and moves the chain on if it belongs to it.
    pub fn admit(
        &mut self,
        seq: u64,
        subject: &str,
        epoch: Option<&str>,
        expected: Option<&str>,
    ) -> Result<(), Foreign> {
        let epoch = written_by(self.limit, seq, epoch, expected)?;
        if epoch < self.term {
            return Err(format!("epoch {epoch} written after a claim by epoch {}", self.term));
        }
        if epoch > self.term {
            if subject != subjects::JOURNAL_EPOCH {
                return Err(format!("epoch {epoch} wrote before claiming the journal"));
            }
            self.term = epoch;
        }
        Ok(())
    }
}

/// The epoch of a message that looks like a leader write on its own (a well-formed epoch no
/// newer than `limit`, chained on its predecessor), without the context of the chain: used
/// for snapshot markers and parts, which are looked up directly.
pub fn written_by(
    limit: u64,
    seq: u64,
    epoch: Option<&str>,
    expected: Option<&str>,
) -> Result<u64, Foreign> {
    let epoch: u64 = match epoch.map(str::parse) {
        Some(Ok(epoch)) if epoch > 0 => epoch,
        Some(_) => return Err("malformed Jetwork-Epoch".into()),
        None => return Err("no Jetwork-Epoch".into()),
    };
    if epoch > limit {
        return Err(format!("epoch {epoch} is newer than the lease ({limit})"));
    }
    match expected.map(str::parse::<u64>) {
        Some(Ok(previous)) if previous.checked_add(1) == Some(seq) => Ok(epoch),
        Some(Ok(previous)) => Err(format!("chained on {previous}, not on {}", seq - 1)),
        Some(Err(_)) => Err("malformed Nats-Expected-Last-Sequence".into()),
        None => Err("not fenced (no Nats-Expected-Last-Sequence)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetwork_shared::subjects::{JOURNAL_EPOCH, JOURNAL_EVENTS, JOURNAL_SNAPSHOT};

    fn admit(chain: &mut Chain, seq: u64, subject: &str, epoch: &str) -> Result<(), Foreign> {
        let expected = (seq - 1).to_string();
        chain.admit(seq, subject, Some(epoch), Some(&expected))
    }

    #[test]
    fn leader_writes_form_the_chain_term_after_term() {
        let mut chain = Chain::new(40, 0);
        assert_eq!(admit(&mut chain, 1, JOURNAL_EPOCH, "3"), Ok(()));
        assert_eq!(admit(&mut chain, 2, JOURNAL_EVENTS, "3"), Ok(()));
        assert_eq!(admit(&mut chain, 3, JOURNAL_SNAPSHOT, "3"), Ok(()));
        assert_eq!(admit(&mut chain, 4, JOURNAL_EPOCH, "17"), Ok(()));
        assert_eq!(admit(&mut chain, 5, JOURNAL_EVENTS, "17"), Ok(()));
        assert_eq!(chain.term(), 17);
    }

    #[test]
    fn writes_without_the_fence_or_an_epoch_are_foreign() {
        let mut chain = Chain::new(40, 3);
        let no_fence = chain.admit(5, JOURNAL_EVENTS, Some("3"), None);
        assert!(no_fence.unwrap_err().contains("not fenced"));
        let wrong_link = chain.admit(5, JOURNAL_EVENTS, Some("3"), Some("2"));
        assert!(wrong_link.unwrap_err().contains("chained on 2"));
        assert!(chain.admit(5, JOURNAL_EVENTS, None, Some("4")).is_err());
        assert!(chain.admit(5, JOURNAL_EVENTS, Some("x"), Some("4")).is_err());
        assert!(chain.admit(5, JOURNAL_EVENTS, Some("0"), Some("4")).is_err());
        assert_eq!(chain.term(), 3, "a foreign message never moves the chain");
    }

    #[test]
    fn forged_claims_and_unclaimed_epochs_are_foreign() {
        let mut chain = Chain::new(40, 3);
        // A claim newer than the replaying candidate's own lease cannot be a leader's.
        assert!(admit(&mut chain, 5, JOURNAL_EPOCH, "999999").unwrap_err().contains("newer"));
        // Events from a term that never claimed the journal.
        assert!(admit(&mut chain, 5, JOURNAL_EVENTS, "9").unwrap_err().contains("before claiming"));
        // An older term after a newer claim: the fence makes this impossible for a leader.
        assert_eq!(admit(&mut chain, 5, JOURNAL_EPOCH, "9"), Ok(()));
        assert!(admit(&mut chain, 6, JOURNAL_EVENTS, "3").unwrap_err().contains("after a claim"));
        assert_eq!(admit(&mut chain, 6, JOURNAL_EVENTS, "9"), Ok(()));
    }

    #[test]
    fn markers_are_checked_on_their_own() {
        assert_eq!(written_by(40, 9, Some("7"), Some("8")), Ok(7));
        assert!(written_by(40, 9, Some("41"), Some("8")).is_err());
        assert!(written_by(40, 9, Some("7"), None).is_err());
    }
}
