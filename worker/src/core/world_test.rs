//! The world the property tests run the engine in: it remembers every request the engine
//! sent, plays the master (answering in any order, late, with failures, from stale or forged
//! epochs), the lease and the jobs, and after every step checks the properties listed in
//! `property_test.rs`. It keeps the runtime's promises: one reply per request, and a reply
//! claiming an epoch newer than its request's is delivered only if the lease holds that epoch.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use jetwork_shared::protocol::{Assignment, OutcomeStatus};
use jetwork_shared::{QueueName, WorkId, WorkerId};

use super::golden_test::{session, token};
use super::*;

/// The wall clock, ahead of the monotonic one by this much (no skew in this world).
pub(super) const WALL: Millis = 1_000_000_000;

/// A request the engine sent, as the world remembers it.
pub(super) struct Sent {
    pub(super) kind: &'static str,
    pub(super) epoch: u64,
    pub(super) at: Millis,
    pub(super) slots: u32,
    /// Registrations: what it held. Reports: every outcome, and whether it was a completion
    /// or failure (not progress).
    pub(super) keys: Vec<(Key, bool)>,
}

/// An assignment the world handed out.
pub(super) struct Given {
    pub(super) received: Millis,
    pub(super) timeout: Millis,
    /// How far past its deadline it was when it arrived (wall clock).
    pub(super) overdue: Millis,
    /// The epoch of the master that handed it out (a later one may hand it out again).
    pub(super) epoch: u64,
}

/// The engine and everything around it.
pub(super) struct World {
    pub(super) engine: Engine,
    pub(super) now: Millis,
    /// The epoch the lease holds now, and every epoch it has held (0: none yet).
    pub(super) lease: u64,
    pub(super) lease_epochs: BTreeSet<u64>,
    /// The first epoch the engine followed (adopting it releases nothing).
    pub(super) first_epoch: Option<u64>,
    /// Requests sent and not yet answered.
    pub(super) open: BTreeMap<RequestId, Sent>,
    /// Announcements whose lease check is pending, oldest first.
    pub(super) checks: Vec<u64>,
    /// Work items handed out so far (ids are fresh: `i1`, `i2`, …).
    pub(super) items: u32,
    /// Attempts the engine received, with when.
    pub(super) given: BTreeMap<Key, Given>,
    /// Attempts ever started, running now, aborted (newest last), revoked by the master.
    pub(super) started: BTreeMap<Key, u64>,
    pub(super) running: BTreeSet<Key>,
    pub(super) aborted: Vec<Key>,
    pub(super) revoked: BTreeSet<Key>,
    /// Completed or failed outcomes owed a verdict, and when they were last sent (or ended).
    pub(super) owed: BTreeMap<Key, Millis>,
    /// A grant overfilled the engine (a late reply to a released request, or more than
    /// asked): from then on `used ≤ concurrency` is only required of steps that ask.
    pub(super) late_grant: bool,
}

impl World {
    pub(super) fn new() -> Self {
        let mut cfg = Config::new(
            WorkerId::parse("w1").expect("valid id"),
            session(),
            vec![QueueName::parse("q").expect("valid queue")],
            3,
        );
        (cfg.register_interval, cfg.resend_interval, cfg.request_timeout) = (3000, 1000, 2000);
        (cfg.shutdown_grace, cfg.max_result, cfg.progress_every) = (2000, 8, Some(1500));
        World {
            engine: Engine::new(cfg),
            now: 0,
            lease: 1,
            lease_epochs: BTreeSet::from([0, 1]),
            first_epoch: None,
            open: BTreeMap::new(),
            checks: Vec::new(),
            items: 0,
            given: BTreeMap::new(),
            started: BTreeMap::new(),
            running: BTreeSet::new(),
            aborted: Vec::new(),
            revoked: BTreeSet::new(),
            owed: BTreeMap::new(),
            late_grant: false,
        }
    }

    /// A request sent before a new master was confirmed (the first epoch adopted is none).
    pub(super) fn released(&self, sent: &Sent) -> bool {
        let first = self.first_epoch.unwrap_or(0);
        self.engine.epoch() > sent.epoch.max(first)
    }

    /// Steps the engine with `input`, follows what its actions say, and checks every property.
    pub(super) fn step(&mut self, input: Input) {
        let now = self.now;
        let actions = self.engine.step(input);
        if let Err(e) = self.engine.check_invariants() {
            panic!("invariant broken: {e}");
        }
        let cfg = self.engine.config().clone();
        let mut asked = false;
        let gate_open = self.engine.gate_open;
        for action in actions {
            let epoch = match &action {
                Action::Register { epoch, .. }
                | Action::RequestWork { epoch, .. }
                | Action::Report { epoch, .. }
                | Action::Withdraw { epoch, .. } => Some(*epoch),
                _ => None,
            };
            if let Some(epoch) = epoch {
                assert!(
                    self.lease_epochs.contains(&epoch),
                    "a request for unconfirmed epoch {epoch}"
                );
            }
            match action {
                Action::Register { id, epoch, msg } => {
                    assert_eq!(msg.session, cfg.session);
                    let keys =
                        msg.running.into_iter().map(|r| ((r.work_id, r.attempt), true)).collect();
                    self.open.insert(id, Sent { kind: "register", epoch, at: now, slots: 0, keys });
                }
                Action::RequestWork { id, epoch, msg } => {
                    assert_eq!(msg.session, cfg.session);
                    asked |= msg.slots > 0;
                    assert!(
                        gate_open || msg.slots <= 1,
                        "asked for {} with the gate closed",
                        msg.slots
                    );
                    let sent = Sent {
                        kind: "request",
                        epoch,
                        at: now,
                        slots: msg.slots,
                        keys: Vec::new(),
                    };
                    self.open.insert(id, sent);
                }
                Action::Report { id, epoch, msg } => {
                    assert_eq!(msg.session, cfg.session);
                    asked |= msg.slots > 0;
                    assert!(gate_open || msg.slots == 0, "a report asked for work, gate closed");
                    let mut keys = Vec::new();
                    for o in msg.outcomes {
                        let key = (o.work_id, o.attempt);
                        assert_eq!(o.token, token(&key), "{key:?} reported with the wrong token");
                        let final_ = o.status != OutcomeStatus::Progress;
                        if final_ {
                            self.owed.insert(key.clone(), now);
                        }
                        keys.push((key, final_));
                    }
                    self.open.insert(
                        id,
                        Sent { kind: "report", epoch, at: now, slots: msg.slots, keys },
                    );
                }
                Action::Withdraw { msg, .. } => assert_eq!(msg.slots, 0),
                Action::Start { assignment: a, .. } => {
                    let key = (a.work_id, a.attempt);
                    // Again only for a later master, that holds the attempt as this worker's
                    // without knowing its predecessor's verdict on it.
                    let epoch = self.engine.epoch();
                    if let Some(before) = self.started.insert(key.clone(), epoch) {
                        assert!(epoch > before, "{key:?} started twice in epoch {epoch}");
                    }
                    assert!(!self.revoked.contains(&key), "{key:?} started after it was revoked");
                    let given = self.given.get(&key).expect("started what was given");
                    assert!(
                        now < given.received + given.timeout,
                        "{key:?} started after its time was up"
                    );
                    assert!(
                        given.overdue <= given.timeout,
                        "{key:?} started though received past its deadline"
                    );
                    self.running.insert(key);
                }
                Action::Abort { work_id, attempt } => {
                    let key = (work_id, attempt);
                    assert!(self.running.remove(&key), "aborted {key:?}, which was not running");
                    self.aborted.push(key);
                }
                Action::CheckLease { announced } => self.checks.push(announced),
                Action::Extend { work_id, attempt, .. } => {
                    let key = (work_id, attempt);
                    assert!(self.running.contains(&key), "extended {key:?}, which is not running");
                }
                Action::Log(_) | Action::Stopped => {}
            }
        }
        if self.first_epoch.is_none() && self.engine.epoch() > 0 {
            self.first_epoch = Some(self.engine.epoch());
        }
        assert!(self.lease_epochs.contains(&self.engine.epoch()), "follows an unconfirmed epoch");
        if self.engine.stopped() {
            return;
        }
        let running: BTreeSet<Key> = self.engine.running().cloned().collect();
        assert_eq!(running, self.running, "the engine's running jobs are those started");
        if asked && !self.engine.gate_open {
            assert!(self.engine.attempts.is_empty(), "asked for work with the gate closed");
        }
        for key in self.engine.pending() {
            self.owed.entry(key.clone()).or_insert(now);
        }
        for (key, last) in &self.owed {
            assert!(self.engine.is_pending(key), "{key:?} dropped before its verdict");
            assert!(
                now < last + cfg.resend_interval,
                "{key:?} not re-sent since {last} (now {now})"
            );
        }
        // Exactly the requests still out to the current master ask for slots: those sent to a
        // master since replaced were released (their late replies never count again).
        let expected =
            self.open.values().filter(|s| !self.released(s)).map(|s| s.slots).sum::<u32>();
        let slots = self.engine.slots();
        assert_eq!(slots.asked, expected, "asked-for slots are not those of the current requests");
        if asked || !self.late_grant {
            assert!(slots.used() <= slots.concurrency, "over capacity: {slots:?}");
        }
    }

    /// Fresh assignments (and now and then one handed out before), at most `max`.
    pub(super) fn assignments(
        &mut self,
        max: u32,
        extra: u16,
        sent_at: Millis,
    ) -> Vec<(Assignment, Given)> {
        // Now and then more than asked: no master does that, but a late grant to a released
        // request has the same effect, and it fills the backlog.
        let max = if extra & 0x4000 != 0 && extra.is_multiple_of(3) { 3 } else { max };
        let count = u32::from(extra % 4).min(max);
        let timeout = [300, 1000, 4000][usize::from(extra >> 2) % 3];
        // The master sent it somewhere in the round trip: how long ago, on its clock.
        let ago = (self.now - sent_at) * u64::from(extra >> 4 & 3) / 3;
        let mut out = Vec::new();
        for i in 0..count {
            let again = (extra & 0x8000 != 0 && i == 0 && !self.given.is_empty())
                .then(|| self.given.keys().nth(usize::from(extra) % self.given.len()))
                .flatten();
            let key = match again {
                Some(key) => key.clone(),
                _ => {
                    self.items += 1;
                    let attempt = 1 + u32::from(extra >> 6 & 1);
                    (WorkId::parse(&format!("i{}", self.items)).expect("valid id"), attempt)
                }
            };
            let deadline_ms = self.now + WALL - ago + timeout;
            let overdue = (self.now + WALL).saturating_sub(deadline_ms);
            let given = Given { received: self.now, timeout, overdue, epoch: 0 };
            let assignment = Assignment {
                work_id: key.0.clone(),
                queue: QueueName::parse("q").expect("valid queue"),
                attempt: key.1,
                deadline_ms,
                timeout_ms: timeout,
                payload: Bytes::new(),
                token: token(&key),
            };
            out.push((assignment, given));
        }
        out
    }

    /// The assignments of a reply; if the engine takes the reply, it receives them now (the
    /// first time it receives an attempt is what counts).
    pub(super) fn hand_out(
        &mut self,
        given: Vec<(Assignment, Given)>,
        accepted: bool,
        epoch: u64,
    ) -> Vec<Assignment> {
        let mut out = Vec::new();
        for (a, given) in given {
            let key = (a.work_id.clone(), a.attempt);
            // The first hand-out counts, but a later master's hand-out again may start it anew.
            if accepted && self.given.get(&key).is_none_or(|g| g.epoch < epoch) {
                self.given.insert(key, Given { epoch, ..given });
            }
            out.push(a);
        }
        out
    }
}
