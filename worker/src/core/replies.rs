//! How the [`Engine`] takes the master's answers and elections: replies to registrations,
//! requests and reports, announcements and the lease reads that confirm them.
//!
//! Rules kept here:
//! - a reply from an epoch older than the newest confirmed one is ignored: a deposed master
//!   cannot steer this worker (what it said is asked again of the current leader);
//! - a newer epoch is followed only once the lease names it: the runtime checks a reply's
//!   epoch before it delivers the reply, and an announcement is checked with
//!   [`Action::CheckLease`]; the first epoch is simply adopted, any later one *releases*
//!   every request in flight (see `flights.rs`) and re-sends every pending outcome at once;
//! - a verdict ends the re-sending of an outcome only if that report carried it (a verdict
//!   about progress must not drop a completion of the same attempt sent later);
//! - an assignment is not taken twice (the same attempt under the same token), and not taken
//!   when its time is already up;
//! - the same attempt under another token is a new master's hand-out of what its predecessor
//!   granted early and never recorded: it replaces the old token wherever the attempt is held
//!   (a job that runs goes on, and its outcome goes under the new token), and runs again if
//!   it had left; so does one under the same token that left in an earlier epoch (the
//!   predecessor recorded the grant but not its verdict on the outcome);
//! - an assignment of a newer attempt of an item still running here stops the older attempt
//!   first (the master gave up on it), so one item never runs twice on this worker even if the
//!   revocation the master sends with the grant is not there;
//! - a request whose answer never came is asked again at once: requests and reports list what
//!   the worker holds, and the master hands out again what it granted and the worker does not
//!   hold (a grant lost on its way), so a lost grant costs a request timeout, not a deadline.

use jetwork_shared::protocol::{
    Assignment, LeaseHolder, Registered, ReportReply, VerdictKind, WorkGrant,
};

use super::attempts::Regranted;
use super::flights::Kind;
use super::{Action, Engine, Failure, Key, Level, Limit, Millis, RequestId};

impl Engine {
    pub(super) fn on_registered(
        &mut self,
        id: RequestId,
        reply: Result<Registered, Failure>,
        now: Millis,
    ) {
        // A reply to no request of ours (or of another kind) is a runtime bug: ignored.
        let Some(flight) = self.flights.take(id, |k| *k == Kind::Register) else {
            return self.log(Level::Debug, format!("a registration reply to no request #{id}"));
        };
        match reply {
            Ok(r) if r.epoch >= self.epoch => {
                if !self.registered {
                    self.log(
                        Level::Info,
                        format!("registered with the master of epoch {}", r.epoch),
                    );
                }
                // This reply is the registration the new master needs: none more is sent.
                self.adopt(r.epoch);
                self.registered = true;
                // Attempts listed as held that the master has handed to others, or finished.
                for held in r.revoked {
                    self.revoke((held.work_id, held.attempt));
                }
                if r.work_ready {
                    self.want_work = true;
                }
            }
            Ok(r) => self.stale("registration", r.epoch),
            Err(failure) => self.failed("register", failure, flight.current, now),
        }
    }

    pub(super) fn on_granted(
        &mut self,
        id: RequestId,
        reply: Result<WorkGrant, Failure>,
        now: Millis,
        wall: Millis,
    ) {
        let Some(flight) = self.flights.take(id, |k| matches!(k, Kind::Work { .. })) else {
            return self.log(Level::Debug, format!("a grant for no request #{id}"));
        };
        let Kind::Work { slots, waited } = flight.kind else { return };
        match reply {
            Ok(grant) if grant.epoch >= self.epoch => {
                // A reply from a newer (confirmed) master is as good as an announcement.
                if self.adopt(grant.epoch) {
                    self.register(now);
                }
                // Only the current request's answer says whether to ask again; a released
                // one's slots were asked of the new master already.
                if flight.current {
                    // A full grant suggests more is waiting; an empty one after a held-open
                    // wait means none came: ask (and wait) again. An empty one at once (a
                    // master that does not hold requests) waits for a notice instead.
                    let count = u32::try_from(grant.assignments.len()).unwrap_or(u32::MAX);
                    let held = waited
                        && now.saturating_sub(flight.sent_at) >= self.cfg.request_timeout / 4;
                    let full = slots > 0 && count == slots;
                    self.want_work |= full || (held && count == 0);
                }
                // Even a released request's grant is taken: a confirmed master journaled these
                // attempts as ours, and would otherwise wait for their deadlines.
                for assignment in grant.assignments {
                    self.accept(assignment, now, wall, flight.sent_at);
                }
            }
            Ok(grant) => self.stale("grant", grant.epoch),
            Err(failure) => {
                self.list_held = true;
                // The answer may have been a grant lost on its way: ask again at once. The
                // request lists what this worker holds, so the master hands those attempts
                // out again instead of letting them wait for their deadlines.
                let lost = matches!(failure, Failure::Failed(_)) && flight.current;
                self.failed("request", failure, flight.current, now);
                self.want_work |= lost;
            }
        }
    }

    pub(super) fn on_reported(
        &mut self,
        id: RequestId,
        reply: Result<ReportReply, Failure>,
        now: Millis,
        wall: Millis,
    ) {
        let Some(flight) = self.flights.take(id, |k| matches!(k, Kind::Report { .. })) else {
            return self.log(Level::Debug, format!("a report reply to no request #{id}"));
        };
        let Kind::Report { slots, sent } = flight.kind else { return };
        // Whatever the answer, this report no longer asks for anything: outcomes it carried
        // that are still pending count as held again.
        self.attempts.uncarry(id);
        match reply {
            Ok(reply) if reply.epoch >= self.epoch => {
                if self.adopt(reply.epoch) {
                    self.register(now);
                }
                for verdict in reply.verdicts {
                    // Only an entry the master could not read has none: this worker sends none.
                    let Some(work_id) = verdict.work_id else { continue };
                    let key = (work_id, verdict.attempt);
                    match verdict.verdict {
                        VerdictKind::Rejected => {
                            let why = verdict.reason.unwrap_or_default();
                            let text = format!(
                                "{}@{}: the master rejected the outcome: {why}",
                                key.0, key.1
                            );
                            self.log_job(Level::Warn, &key, None, text);
                        }
                        // Progress from an attempt the master has handed out again.
                        VerdictKind::Superseded if self.attempts.is_running(&key) => {
                            self.revoke(key.clone())
                        }
                        VerdictKind::Accepted if self.attempts.is_running(&key) => {
                            if let Some(timeout) = verdict.timeout_ms {
                                let (work_id, attempt) = key.clone();
                                let expires = now.saturating_add(timeout);
                                self.push(Action::Extend { work_id, attempt, expires });
                            }
                        }
                        _ => {}
                    }
                    if let Some(token) = sent.get(&key) {
                        self.attempts.acknowledge(&key, *token);
                    }
                }
                // Fewer items than asked means nothing more is ready now; a held-open request
                // gets the next one the moment it is submitted.
                if flight.current && slots > 0 {
                    self.want_work = true;
                }
                for assignment in reply.assignments {
                    self.accept(assignment, now, wall, flight.sent_at);
                }
            }
            Ok(reply) => self.stale("report reply", reply.epoch),
            Err(failure) => {
                self.list_held |= slots > 0;
                self.failed("report", failure, flight.current, now)
            }
        }
    }

    /// An election announcement: believed only once the lease confirms it.
    pub(super) fn on_elected(&mut self, epoch: u64) {
        if epoch > self.epoch && !self.verifying {
            self.verifying = true;
            self.push(Action::CheckLease { announced: epoch });
        }
    }

    pub(super) fn on_lease(
        &mut self,
        announced: u64,
        read: Result<Option<LeaseHolder>, String>,
        now: Millis,
    ) {
        self.verifying = false;
        match read {
            Ok(Some(lease)) if lease.epoch > self.epoch => {
                let text = format!(
                    "new master {} of epoch {} (confirmed by the lease); registering",
                    lease.holder, lease.epoch
                );
                self.log(Level::Info, text);
                if self.adopt(lease.epoch) {
                    self.register(now);
                }
            }
            // Taken a moment ago, epoch not written yet: the announcement came early (or was
            // forged); the next heartbeat finds the leader either way.
            Ok(Some(lease)) if lease.epoch == 0 => {}
            Ok(lease) => {
                let lease = lease.map_or("nobody".to_owned(), |l| format!("epoch {}", l.epoch));
                let text = format!(
                    "ignoring an election announcement of epoch {announced} the lease does not \
                     confirm (it holds {lease})"
                );
                self.log_limited(Level::Warn, Limit::ForgedAnnouncement, text);
            }
            Err(e) => {
                let text =
                    format!("cannot read the lease ({e}); the next heartbeat finds the leader");
                self.log(Level::Debug, text);
            }
        }
    }

    /// Follows the leader of `epoch` (confirmed by the lease) if it is newer; returns whether
    /// it was. A master after the first knows nothing of what was asked of its predecessor.
    fn adopt(&mut self, epoch: u64) -> bool {
        if epoch <= self.epoch {
            return false;
        }
        let first = self.epoch == 0;
        self.epoch = epoch;
        self.attempts.follow(epoch);
        if !first {
            // The new master may hold attempts the old one granted us in replies we dropped.
            self.list_held = true;
            // The old master will not answer what it holds (or is dead): ask the new one for
            // those slots now rather than after `request_timeout`, and send it every outcome
            // before its deadlines hand the work to others.
            let (slots, requesting) = self.flights.release();
            self.attempts.resend_all();
            if slots > 0 || requesting {
                self.want_work = true;
            }
            let text = format!("epoch {epoch}: released {slots} slots asked of the old master");
            self.log(Level::Debug, text);
        }
        true
    }

    /// A reply from a master older than the one followed: it may say anything (it may have
    /// been deposed mid-request), so none of it counts.
    fn stale(&mut self, what: &str, epoch: u64) {
        self.list_held = true;
        let text = format!("ignoring a {what} from epoch {epoch}, older than {}", self.epoch);
        self.log(Level::Debug, text);
    }

    /// A request got no usable reply. Only a current request's failure says anything about
    /// the master this worker follows now.
    fn failed(&mut self, what: &str, failure: Failure, current: bool, now: Millis) {
        if !current {
            return self.log(Level::Debug, format!("{what} to the old master: {failure}"));
        }
        match failure {
            // Not registered means: ask for nothing, and retry registering soon.
            Failure::NoMaster => {
                self.log(Level::Debug, format!("{what}: no master is serving right now"));
                self.registered = false;
            }
            Failure::UnknownWorker => {
                let text = format!("{what}: the master does not know this worker; registering");
                self.log(Level::Info, text);
                self.registered = false;
                self.register(now);
            }
            Failure::IdInUse(why) => {
                self.registered = false;
                let text = format!(
                    "{what}: worker id {} is held by another process ({why}); retrying",
                    self.cfg.id
                );
                self.log_limited(Level::Warn, Limit::IdInUse, text);
            }
            // Retried on the usual timers (a limit may clear, an operator may widen a login),
            // so said at most once a while, not at every retry.
            Failure::Refused(why) => {
                self.log_limited(
                    Level::Warn,
                    Limit::Refused,
                    format!("{what}: the master refused: {why}"),
                );
            }
            failure @ (Failure::Unconfirmed(_) | Failure::Failed(_)) => {
                self.log(Level::Debug, format!("{what} failed: {failure}"));
            }
        }
    }

    /// Takes an assignment from a confirmed master's reply, received at `now` (`wall` on the
    /// wall clock) in answer to a request sent at `sent_at`.
    fn accept(&mut self, a: Assignment, now: Millis, wall: Millis, sent_at: Millis) {
        let key = (a.work_id.clone(), a.attempt);
        if self.attempts.granted_before(&key, a.token) {
            // Held, or held a moment ago: a duplicate grant, never run twice.
            let text = format!("{}@{} granted twice; ignored", key.0, key.1);
            return self.log_job(Level::Debug, &key, Some(&a.queue), text);
        }
        // Already past its deadline? The master sent it at some moment between `sent_at` and
        // `now`, so its time may be up only if the round trip took `timeout_ms`; the master's
        // own deadline then decides, on the wall clock, with a whole `timeout_ms` of slack
        // for clock skew (a skewed clock must not make a worker drop everything).
        let overdue = wall.saturating_sub(a.deadline_ms);
        if now.saturating_sub(sent_at) >= a.timeout_ms && overdue > a.timeout_ms {
            let text = format!(
                "{}@{}: received {overdue} ms after its deadline; dropped (the master has \
                 handed it out again)",
                key.0, key.1
            );
            self.log_job(Level::Warn, &key, Some(&a.queue), text);
            self.attempts.forget(key, a.token);
            return;
        }
        // The same attempt under a new token: a new master knows nothing of its predecessor's
        // early grant (or early verdict), and this is its own hand-out. What is held of it
        // goes on under the new token; otherwise the attempt runs again (as below).
        // `timeout_ms` counts from when the master sent it: from here, at the latest.
        let expires = now.saturating_add(a.timeout_ms);
        if let Some(held) = self.attempts.regrant(&a, expires) {
            let text = format!(
                "{}@{} handed out again under a new token (a new master that never recorded \
                 the first grant); {held} under the new one",
                key.0, key.1
            );
            self.log_job(Level::Info, &key, Some(&a.queue), text);
            if held == Regranted::Running {
                self.push(Action::Extend { work_id: a.work_id, attempt: a.attempt, expires });
            }
            return;
        }
        // An older attempt of the same item still running here has timed out at the master
        // (that is why it handed the item out again): it stops before the new one can start,
        // so one item never runs twice on this worker, whatever the clocks say.
        let older: Vec<Key> = self
            .attempts
            .running()
            .filter(|(id, attempt)| *id == a.work_id && *attempt < a.attempt)
            .cloned()
            .collect();
        for old in older {
            if self.attempts.revoke(&old) {
                let text = format!(
                    "{}@{} superseded by attempt {} (the master handed it out again); stopping it",
                    old.0, old.1, a.attempt
                );
                self.log_job(Level::Info, &old, Some(&a.queue), text);
                self.push(Action::Abort { work_id: old.0, attempt: old.1 });
            }
        }
        self.attempts.queue(a, expires);
    }

    /// The master says this attempt is no longer ours: stop it if it runs, drop it if it
    /// waits. A newer attempt of the same item, if we hold one, carries on.
    fn revoke(&mut self, key: Key) {
        if self.attempts.revoke(&key) {
            let text = format!("{}@{} revoked by the master; stopping it", key.0, key.1);
            self.log_job(Level::Info, &key, None, text);
            self.push(Action::Abort { work_id: key.0, attempt: key.1 });
        }
    }
}
