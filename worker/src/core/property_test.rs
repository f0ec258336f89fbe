//! Property tests of the engine: random input sequences from a modelled world (a master that
//! answers requests in any order, late, with failures, from stale or forged epochs; elections
//! and forged announcements; jobs that end, fail, report progress; a shutdown), checking after
//! every step that
//! - slots are never over capacity: no more jobs run than `concurrency`; a step that asks
//!   for slots leaves `used ≤ concurrency`; the slots counted as asked for are exactly those
//!   of the requests and reports out to the current master (a new master releases the rest,
//!   and their late replies never count again); and unless a grant answered a request released by
//!   a new master (the one way the master can overfill a worker; the world also overfills
//!   now and then, to fill the backlog), `used ≤ concurrency` always;
//! - every completed or failed outcome stays pending until a verdict for it arrives, and is
//!   sent again before `resend_interval` has passed since it was last sent;
//! - a cancellation from the followed master stops the attempt at once (aborted if it runs,
//!   never started if it waits); one from any other epoch changes nothing;
//! - no attempt is started twice in one epoch (a later master may hand out again one whose
//!   verdict its predecessor never recorded: it runs again), nor after it was revoked, nor
//!   once its time is up (`received + timeout_ms`, or received more than a timeout past its
//!   deadline);
//! - no request carries (and the engine never follows) an epoch the lease has not held;
//! - while the handler's gate is closed, work is asked for only when nothing is held, one
//!   job at a time;
//! - every outcome carries its attempt's token, every request this process's session, and
//!   the engine's running jobs are exactly those started and not yet ended or aborted.
//!
//! The world (`world_test.rs`) keeps the runtime's promises to the engine and checks these
//! properties; this file drives it with random operations.

use bytes::Bytes;
use jetwork_shared::protocol::{
    LeaseHolder, Registered, ReportReply, RunningWork, Verdict, VerdictKind, WorkGrant,
};
use proptest::prelude::*;

use super::world_test::{World, WALL};
use super::*;

/// Forged epochs are far above any the lease reaches in one run.
const FORGED: u64 = 1000;

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    Tick,
    /// Answer open request `pick` (an index): `how` picks success or a failure, `epoch` the
    /// epoch claimed (current, stale, forged), `extra` revocations or assignments and verdicts.
    Reply {
        pick: u8,
        how: u8,
        epoch: u8,
        extra: u16,
    },
    Elect,
    Forge(u8),
    Lease(u8),
    Ready(u8),
    End {
        pick: u8,
        how: u8,
    },
    Progress(u8),
    /// The master cancels attempt `pick` of those handed out; `stale` names another epoch.
    Cancel {
        pick: u8,
        stale: bool,
    },
    /// A shutdown request, when the value is small (most runs never shut down).
    Shutdown(u8),
    /// The handler's gate opens or closes.
    Gate(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u64..2500).prop_map(Op::Advance),
        2 => Just(Op::Tick),
        8 => (any::<u8>(), any::<u8>(), any::<u8>(), any::<u16>())
            .prop_map(|(pick, how, epoch, extra)| Op::Reply { pick, how, epoch, extra }),
        2 => Just(Op::Elect),
        1 => any::<u8>().prop_map(Op::Forge),
        3 => any::<u8>().prop_map(Op::Lease),
        1 => any::<u8>().prop_map(Op::Ready),
        5 => (any::<u8>(), any::<u8>()).prop_map(|(pick, how)| Op::End { pick, how }),
        2 => any::<u8>().prop_map(Op::Progress),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(pick, stale)| Op::Cancel { pick, stale }),
        1 => any::<u8>().prop_map(Op::Shutdown),
        1 => any::<bool>().prop_map(Op::Gate),
    ]
}

impl World {
    fn reply(&mut self, pick: u8, how: u8, epoch: u8, extra: u16) {
        if self.open.is_empty() {
            return;
        }
        let id = *self.open.keys().nth(usize::from(pick) % self.open.len()).expect("in range");
        let sent = self.open.remove(&id).expect("open");
        let (now, wall) = (self.now, self.now + WALL);
        let claimed = match epoch % 8 {
            0 => self.lease.saturating_sub(1).max(1),
            1 => FORGED + u64::from(epoch),
            _ => self.lease,
        };
        // The runtime's lease check of a newer epoch than the request's.
        let unconfirmed = claimed > sent.epoch && claimed != self.lease;
        let failure = match how % 10 {
            0 => Some(Failure::NoMaster),
            1 => Some(Failure::Failed("timed out".into())),
            2 => Some(Failure::UnknownWorker),
            3 if how % 30 == 3 => Some(Failure::IdInUse("409".into())),
            _ if unconfirmed => Some(Failure::Unconfirmed(claimed)),
            _ => None,
        };
        let accepted = failure.is_none() && claimed >= self.engine.epoch();
        let released = self.released(&sent);
        match sent.kind {
            "register" => {
                let revoked: Vec<RunningWork> = sent
                    .keys
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| extra & (1 << (i % 15)) != 0)
                    .map(|(_, ((work_id, attempt), _))| RunningWork {
                        work_id: work_id.clone(),
                        attempt: *attempt,
                    })
                    .collect();
                if accepted {
                    self.revoked.extend(revoked.iter().map(|r| (r.work_id.clone(), r.attempt)));
                }
                let work_ready = extra & 0x8000 != 0;
                let reply =
                    failure.map_or(Ok(Registered { epoch: claimed, revoked, work_ready }), Err);
                self.step(Input::Registered { id, reply, now });
            }
            "request" => {
                let assignments = self.assignments(sent.slots, extra, sent.at);
                let overfilled = assignments.len() > sent.slots as usize;
                let assignments = self.hand_out(assignments, accepted, claimed);
                self.late_grant |= accepted && (released || overfilled) && !assignments.is_empty();
                let reply = failure.map_or(Ok(WorkGrant { epoch: claimed, assignments }), Err);
                self.step(Input::Granted { id, reply, now, wall });
            }
            _ => {
                let assignments = self.assignments(sent.slots, extra, sent.at);
                let overfilled = assignments.len() > sent.slots as usize;
                let assignments = self.hand_out(assignments, accepted, claimed);
                self.late_grant |= accepted && (released || overfilled) && !assignments.is_empty();
                let kinds = [
                    VerdictKind::Accepted,
                    VerdictKind::Finished,
                    VerdictKind::Superseded,
                    VerdictKind::Rejected,
                ];
                let mut verdicts = Vec::new();
                for (i, ((work_id, attempt), final_)) in sent.keys.iter().enumerate() {
                    let verdict = kinds[usize::from(extra >> (2 * (i % 8))) % 4];
                    if accepted && *final_ {
                        self.owed.remove(&(work_id.clone(), *attempt));
                    }
                    let (work_id, attempt) = (work_id.clone(), *attempt);
                    verdicts.push(Verdict {
                        work_id: Some(work_id),
                        attempt,
                        verdict,
                        deadline_ms: None,
                        timeout_ms: None,
                        reason: None,
                    });
                }
                let reply =
                    failure.map_or(Ok(ReportReply { epoch: claimed, verdicts, assignments }), Err);
                self.step(Input::Reported { id, reply, now, wall });
            }
        }
    }

    fn run(&mut self, op: Op) {
        let now = self.now;
        match op {
            Op::Advance(ms) => self.now += ms,
            Op::Tick => self.step(Input::Tick { now }),
            Op::Reply { pick, how, epoch, extra } => self.reply(pick, how, epoch, extra),
            Op::Elect => {
                self.lease += 1;
                self.lease_epochs.insert(self.lease);
                self.step(Input::Elected { epoch: self.lease, now });
            }
            Op::Forge(d) => self.step(Input::Elected { epoch: FORGED + u64::from(d), now }),
            Op::Lease(how) => {
                if self.checks.is_empty() {
                    return;
                }
                let announced = self.checks.remove(0);
                let read = match how % 6 {
                    0 => Ok(None),
                    1 => Err("timed out".to_owned()),
                    2 => Ok(Some(LeaseHolder { holder: "m".into(), epoch: 0 })),
                    _ => Ok(Some(LeaseHolder { holder: "m".into(), epoch: self.lease })),
                };
                self.step(Input::Lease { announced, read, now });
            }
            Op::Ready(e) => self
                .step(Input::WorkReady { epoch: self.lease.saturating_sub(u64::from(e % 2)), now }),
            Op::End { pick, how } => {
                let candidates: Vec<Key> =
                    self.running.iter().chain(self.aborted.last()).cloned().collect();
                if candidates.is_empty() {
                    return;
                }
                let (work_id, attempt) = candidates[usize::from(pick) % candidates.len()].clone();
                let was_running = self.running.remove(&(work_id.clone(), attempt));
                let result = match how % 5 {
                    0 => Err(crate::JobError::retryable("boom")),
                    4 => Err(crate::JobError::permanent("bad input")),
                    1 => Ok(Bytes::from_static(b"far too large")),
                    _ => Ok(Bytes::from_static(b"ok")),
                };
                let key = (work_id.clone(), attempt);
                self.step(Input::JobEnded { work_id, attempt, result, now });
                if was_running && !self.engine.stopped() {
                    assert!(
                        self.engine.is_pending(&key),
                        "{key:?} ended, but no outcome is pending"
                    );
                }
            }
            Op::Progress(pick) => {
                let Some(key) = self.running.iter().nth(usize::from(pick) % 4).cloned() else {
                    return;
                };
                self.step(Input::Progress { work_id: key.0, attempt: key.1, now });
            }
            Op::Cancel { pick, stale } => {
                let Some(key) = self.given.keys().nth(usize::from(pick) % 4).cloned() else {
                    return;
                };
                let current = self.engine.epoch();
                let epoch = if stale { current.saturating_sub(1) } else { current };
                let obeyed = epoch == current && current > 0;
                // A tick first does what time alone would do at `now` (a shutdown grace
                // running out aborts jobs too), so what changes next is the cancellation's.
                self.step(Input::Tick { now });
                let was_running = self.running.contains(&key);
                let (work_id, attempt) = key.clone();
                self.step(Input::Cancelled { epoch, work_id, attempt, now });
                if obeyed {
                    self.revoked.insert(key.clone());
                    assert!(!self.running.contains(&key), "{key:?} runs after its cancellation");
                } else {
                    let running = self.running.contains(&key);
                    assert!(!was_running || running, "{key:?} stopped by a stale cancellation");
                }
            }
            Op::Shutdown(n) if n < 8 => self.step(Input::Shutdown { now }),
            Op::Shutdown(_) => {}
            Op::Gate(open) => self.step(Input::Gate { open, now }),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_after_every_step(ops in proptest::collection::vec(op(), 1..200)) {
        let mut world = World::new();
        world.step(Input::Start { now: 0 });
        for op in ops {
            world.run(op);
        }
    }
}
