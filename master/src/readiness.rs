//! [`Readiness`]: what a master candidate's `/readyz` says. A candidate is ready while it
//! leads, or stands by able to take over; "able" includes being able to write: a candidate
//! whose last write of the lease or of the journal was refused (JetStream out of storage, a
//! permission missing, the server not answering) could win the lease and still not lead, so it
//! says so, with the reason, until a write goes through again.
//!
//! Invariants:
//! - the answer is the candidate's phase (connecting, standing by, replaying, leading), unless
//!   the phase is ready and a write failed since the last one that went through: then it is
//!   not ready, naming the write and the server's words;
//! - a failed lease write is cleared by the next lease write of this candidate that goes
//!   through, or by finding the key held by someone (a create refused only because the key
//!   exists means someone's write went through); a key held but neither renewed nor expired
//!   for twice its TTL counts as a failed write (the server cannot write it: its expiry is a
//!   write too, so a full store keeps a dead leader's key forever); a failed journal write by
//!   this candidate's
//!   next journal write that goes through (its claim of a new term), or by anyone's: the
//!   journal's last sequence moving on ([`Readiness::journal_moved`]);
//! - [`Health::set_ready`] is called only when the answer changes, never per message.

use std::sync::{Arc, Mutex, PoisonError};

use jetwork_shared::observe::Health;

/// A candidate's readiness, cheap to clone (all clones share it).
#[derive(Debug, Clone)]
pub struct Readiness {
    health: Health,
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    /// What the candidate is doing, and whether that alone makes it ready.
    phase: (bool, String),
    /// Why the last lease write failed, if it did and none has gone through since.
    lease: Option<String>,
    /// Why the last journal write failed, and the journal's last sequence seen since.
    journal: Option<(String, Option<u64>)>,
    /// What `health` was last told.
    shown: Option<(bool, String)>,
}

impl Readiness {
    /// Readiness reported through `health`.
    pub fn new(health: Health) -> Self {
        Readiness { health, inner: Arc::default() }
    }

    /// The candidate is now doing `why`, which makes it ready or not.
    pub fn phase(&self, ready: bool, why: impl Into<String>) {
        self.update(|inner| inner.phase = (ready, why.into()));
    }

    /// A lease write went through, or the key was found held (and renewed) by someone.
    pub fn lease_ok(&self) {
        self.update(|inner| inner.lease = None);
    }

    /// A lease write failed: `why`.
    pub fn lease_failed(&self, why: impl Into<String>) {
        self.update(|inner| inner.lease = Some(why.into()));
    }

    /// A journal write of this candidate went through.
    pub fn journal_written(&self) {
        self.update(|inner| inner.journal = None);
    }

    /// A journal write of this candidate failed: `why`.
    pub fn journal_failed(&self, why: impl Into<String>) {
        self.update(|inner| inner.journal = Some((why.into(), None)));
    }

    /// Whether this candidate's last journal write failed and nobody has written since.
    pub fn journal_blocked(&self) -> bool {
        self.lock().journal.is_some()
    }

    /// The journal's last sequence is `last_seq`: once it moves on from the first one seen
    /// after a failure, someone's write went through, so the journal can be written again.
    pub fn journal_moved(&self, last_seq: u64) {
        self.update(|inner| match &mut inner.journal {
            Some((_, seen @ None)) => *seen = Some(last_seq),
            Some((_, Some(seen))) if last_seq > *seen => inner.journal = None,
            _ => {}
        });
    }

    /// What `/readyz` says now: ready or not, and why.
    pub fn answer(&self) -> (bool, String) {
        answer(&self.lock())
    }

    fn update(&self, change: impl FnOnce(&mut Inner)) {
        let mut inner = self.lock();
        change(&mut inner);
        let now = answer(&inner);
        if inner.shown.as_ref() != Some(&now) {
            self.health.set_ready(now.0, now.1.clone());
            inner.shown = Some(now);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn answer(inner: &Inner) -> (bool, String) {
    let (ready, why) = &inner.phase;
    if !ready {
        return (false, why.clone());
    }
    if let Some(failed) = &inner.lease {
        return (false, format!("cannot write the lease ({failed}); was {why}"));
    }
    if let Some((failed, _)) = &inner.journal {
        return (false, format!("cannot write the journal ({failed}); was {why}"));
    }
    (true, why.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readiness() -> Readiness {
        let readiness = Readiness::new(Health::new());
        readiness.phase(true, "standing by");
        readiness
    }

    #[test]
    fn a_failed_lease_write_makes_a_standby_unready_until_one_goes_through() {
        let r = readiness();
        assert_eq!(r.answer(), (true, "standing by".to_owned()));
        r.lease_failed("insufficient resources");
        let (ready, why) = r.answer();
        assert!(!ready && why.contains("cannot write the lease (insufficient resources)"), "{why}");
        r.phase(true, "standing by, again");
        assert!(!r.answer().0, "a new phase does not mend the lease");
        r.lease_ok();
        assert_eq!(r.answer(), (true, "standing by, again".to_owned()));
    }

    #[test]
    fn a_failed_journal_write_lasts_until_the_journal_moves_on() {
        let r = readiness();
        r.journal_failed("maximum bytes exceeded");
        assert!(r.journal_blocked());
        r.journal_moved(40);
        assert!(!r.answer().0, "the first look only says where the journal ends");
        r.journal_moved(40);
        assert!(!r.answer().0, "nobody wrote");
        r.journal_moved(41);
        assert!(r.answer().0, "someone's write went through");
        r.journal_failed("timed out");
        r.journal_written();
        assert!(r.answer().0, "its own write went through");
        r.journal_moved(50);
        assert!(r.answer().0, "nothing to clear");
    }

    #[test]
    fn a_phase_that_is_not_ready_speaks_for_itself() {
        let r = readiness();
        r.journal_failed("insufficient resources");
        r.phase(false, "replaying the journal");
        assert_eq!(r.answer(), (false, "replaying the journal".to_owned()));
    }
}
