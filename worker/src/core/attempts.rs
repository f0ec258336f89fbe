//! [`Attempts`]: every attempt this worker holds, from the grant until the master has its
//! outcome: waiting to start (the backlog), running, or ended with an outcome awaiting a
//! verdict (pending). Also the progress waiting to be reported.
//!
//! Invariants:
//! - an attempt is in at most one of backlog, running and pending, and moves only forward
//!   (backlog → running → pending → gone); an attempt held or recently gone under a token is
//!   never taken again under that token ([`Attempts::granted_before`]): a master never hands
//!   out one attempt twice, so a second grant of it can only be a duplicate, and running it
//!   again would be waste. Under *another* token it is a new master's hand-out (its
//!   predecessor granted it, or accepted its outcome, early and never recorded that): it
//!   replaces the token where the attempt is held ([`Attempts::regrant`]) or, gone, is taken
//!   as new. Under the same token from a later epoch than the one whose verdict it left with,
//!   it is a new master's hand-out again of a grant its predecessor recorded, when the
//!   predecessor's verdict was not recorded: it is taken as new too (not so one revoked or
//!   dropped: a revocation always follows the record);
//! - each held attempt has one token, the last granted; a verdict settles a pending outcome
//!   only if its report carried that token;
//! - a pending outcome leaves only through [`Attempts::acknowledge`] (a verdict); a worker
//!   that gives up on shutdown stops with it;
//! - a backlog item is never started once `received + timeout_ms` has passed: by then the
//!   master has handed the attempt out again;
//! - `carrier` marks a pending outcome whose slot a report in flight is already asking for,
//!   so it is not counted twice; it always names a current report (the engine clears it
//!   when that report is answered, fails or is released).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use bytes::Bytes;
use jetwork_shared::fast_hash::FastMap;
use jetwork_shared::protocol::{Assignment, Outcome, OutcomeStatus, RunningWork};
use jetwork_shared::Token;

use super::{Key, Millis, RequestId};

/// How many attempts that left are remembered, to refuse them if granted again.
const REMEMBERED: usize = 4096;

/// An assignment waiting for a free slot.
#[derive(Debug, Clone)]
struct Queued {
    assignment: Assignment,
    /// When the master's deadline passes, on the runtime's clock: received + `timeout_ms`.
    expires: Millis,
}

/// An outcome awaiting its verdict.
#[derive(Debug, Clone)]
struct Pending {
    /// The attempt's token, echoed so the master knows the outcome is genuine.
    token: Token,
    status: OutcomeStatus,
    result: Bytes,
    reason: Option<String>,
    /// For a failure: another attempt cannot help.
    non_retryable: bool,
    /// When it was last sent; `None`: not yet, or due at once (a new master).
    sent_at: Option<Millis>,
    /// The current report whose slots include this outcome's.
    carrier: Option<RequestId>,
    /// The master revoked the attempt while its outcome waited: once it leaves, no later
    /// grant of it is taken under this token (a revocation follows the record).
    revoked: bool,
}

/// Where an attempt granted again under a new token was held, now under that token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Regranted {
    /// Waiting to start.
    Waiting,
    /// Its job runs on.
    Running,
    /// Its outcome goes again.
    Reported,
}

impl fmt::Display for Regranted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Regranted::Waiting => "it waits to start",
            Regranted::Running => "its job runs on",
            Regranted::Reported => "its outcome goes again",
        })
    }
}

/// What became of the head of the backlog when a slot was free.
#[derive(Debug, Clone)]
pub(super) enum Dequeued {
    /// Start it; the master's deadline passes at `expires`.
    Start { assignment: Assignment, expires: Millis },
    /// Its time was up (`late` ms ago): dropped.
    Expired { key: Key, late: Millis },
}

/// The outcomes (and progress) due in the next report.
#[derive(Debug, Default)]
pub(super) struct Batch {
    /// Completed and failed outcomes, oldest-sent first.
    pub outcomes: Vec<Outcome>,
    /// Those of `outcomes` whose slot no report in flight asks for yet.
    pub fresh: Vec<Key>,
}

/// The attempts a worker holds.
#[derive(Debug, Clone, Default)]
pub(super) struct Attempts {
    backlog: VecDeque<Queued>,
    /// Running attempts and their tokens.
    running: BTreeMap<Key, Token>,
    pending: BTreeMap<Key, Pending>,
    /// Running attempts with progress to report.
    progress: BTreeSet<Key>,
    /// When progress was last sent, per running attempt.
    progress_sent: BTreeMap<Key, Millis>,
    /// Attempts that left (acknowledged, revoked, dropped) with their tokens, newest last, at
    /// most [`REMEMBERED`], and the same as a map to the last token each left under and, if
    /// it left with a verdict, the epoch followed then (hashed: only ever asked "is it there",
    /// once or twice per job, and a tree of 4,096 ids cost a twentieth of a busy worker's
    /// time). An attempt that left under two tokens (granted again by a new master) is
    /// remembered under the second: a copy of the first could only come from a master two
    /// terms back, whose replies are ignored as stale anyway.
    gone: VecDeque<(Key, Token)>,
    gone_tokens: FastMap<Key, (Token, Option<u64>)>,
    /// The epoch of the master followed (see [`Attempts::follow`]).
    epoch: u64,
}

impl Attempts {
    /// From now on the master of `epoch` is followed.
    pub fn follow(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    /// Whether the attempt is held under `token`, or left recently under it: a grant of it is
    /// a copy. Not so if it left with a verdict from an earlier epoch than the one followed
    /// now: this master holds it as this worker's, its predecessor's verdict (sent before the
    /// journal write recording it, which never landed) unknown to it, and the attempt runs
    /// again rather than wait for its deadline.
    pub fn granted_before(&self, key: &Key, token: Token) -> bool {
        let left = self.gone_tokens.get(key);
        left.is_some_and(|(t, verdict)| *t == token && verdict.is_none_or(|e| e >= self.epoch))
            || self.running.get(key) == Some(&token)
            || self.pending.get(key).is_some_and(|p| p.token == token)
            || self.backlog.iter().any(|q| {
                q.assignment.work_id == key.0
                    && q.assignment.attempt == key.1
                    && q.assignment.token == token
            })
    }

    /// The attempt is granted again under another token than the one it is held under (a new
    /// master's hand-out): from now on it is held under that one, and a waiting one with the
    /// new grant's deadline (`expires`); an outcome awaiting its verdict goes again at once.
    /// Says where it was held, or `None` if it was not.
    pub fn regrant(&mut self, a: &Assignment, expires: Millis) -> Option<Regranted> {
        let key = (a.work_id.clone(), a.attempt);
        if let Some(token) = self.running.get_mut(&key) {
            *token = a.token;
            return Some(Regranted::Running);
        }
        if let Some(p) = self.pending.get_mut(&key) {
            p.token = a.token;
            // Due at once. A report that carried it under the old token settles nothing now
            // (`acknowledge`), but still asks for its slot (`carrier`) until it is answered.
            p.sent_at = None;
            return Some(Regranted::Reported);
        }
        let waiting = self
            .backlog
            .iter_mut()
            .find(|q| q.assignment.work_id == a.work_id && q.assignment.attempt == a.attempt)?;
        *waiting = Queued { assignment: a.clone(), expires };
        Some(Regranted::Waiting)
    }

    /// Whether the attempt's job runs.
    pub fn is_running(&self, key: &Key) -> bool {
        self.running.contains_key(key)
    }

    /// Whether the attempt has an outcome awaiting a verdict.
    pub fn is_pending(&self, key: &Key) -> bool {
        self.pending.contains_key(key)
    }

    /// Nothing held at all.
    pub fn is_empty(&self) -> bool {
        self.backlog.is_empty() && self.running.is_empty() && self.pending.is_empty()
    }

    /// `(backlog, running, pending, of which carried)`, for [`super::Slots`].
    pub fn counts(&self) -> (u32, u32, u32, u32) {
        let carried = self.pending.values().filter(|p| p.carrier.is_some()).count();
        let pending = self.pending.len();
        (count(self.backlog.len()), count(self.running.len()), count(pending), count(carried))
    }

    /// Running attempts, in key order.
    pub fn running(&self) -> impl Iterator<Item = &Key> {
        self.running.keys()
    }

    /// Attempts with an outcome awaiting a verdict, in key order.
    pub fn pending(&self) -> impl Iterator<Item = &Key> {
        self.pending.keys()
    }

    /// Attempts waiting to start, next first, with when their time is up.
    pub fn backlog(&self) -> impl Iterator<Item = (Key, Millis)> + '_ {
        self.backlog
            .iter()
            .map(|q| ((q.assignment.work_id.clone(), q.assignment.attempt), q.expires))
    }

    /// Each pending outcome with when it was last sent and its carrier (for tests).
    #[cfg(test)]
    pub fn pending_detail(
        &self,
    ) -> impl Iterator<Item = (&Key, Option<Millis>, Option<RequestId>)> {
        self.pending.iter().map(|(k, p)| (k, p.sent_at, p.carrier))
    }

    /// The carrier of each carried outcome (for the engine's invariant check).
    pub fn carriers(&self) -> impl Iterator<Item = (&Key, RequestId)> {
        self.pending.iter().filter_map(|(k, p)| p.carrier.map(|c| (k, c)))
    }

    /// What a registration lists as held: running first, then pending, then the backlog.
    pub fn held(&self) -> Vec<RunningWork> {
        let running = self.running.keys().chain(self.pending.keys());
        let mut held: Vec<_> = running
            .map(|(work_id, attempt)| RunningWork { work_id: work_id.clone(), attempt: *attempt })
            .collect();
        held.extend(self.backlog.iter().map(|q| RunningWork {
            work_id: q.assignment.work_id.clone(),
            attempt: q.assignment.attempt,
        }));
        held
    }

    /// Queues a new assignment; its time is up at `expires`.
    pub fn queue(&mut self, assignment: Assignment, expires: Millis) {
        self.backlog.push_back(Queued { assignment, expires });
    }

    /// Takes the next assignment to start while fewer than `concurrency` run, dropping those
    /// whose time is up on the way.
    pub fn dequeue(&mut self, concurrency: u32, now: Millis) -> Option<Dequeued> {
        if self.running.len() >= concurrency as usize {
            return None;
        }
        let Queued { assignment, expires } = self.backlog.pop_front()?;
        let key = (assignment.work_id.clone(), assignment.attempt);
        if now >= expires {
            self.forget(key.clone(), assignment.token);
            // The master has re-queued it by now (and may have handed it to another worker):
            // running it would only produce a result it answers with "finished".
            return Some(Dequeued::Expired { key, late: now - expires });
        }
        self.running.insert(key, assignment.token);
        Some(Dequeued::Start { assignment, expires })
    }

    /// Records the end of a running attempt as a pending outcome; false if it was not running
    /// (revoked or abandoned already: its end is no news).
    pub fn end(
        &mut self,
        key: Key,
        status: OutcomeStatus,
        result: Bytes,
        reason: Option<String>,
        non_retryable: bool,
    ) -> bool {
        let Some(token) = self.running.remove(&key) else { return false };
        self.forget_progress(&key);
        let (sent_at, carrier) = (None, None);
        let revoked = false;
        let pending =
            Pending { token, status, result, reason, non_retryable, sent_at, carrier, revoked };
        self.pending.insert(key, pending);
        true
    }

    /// Stops holding an attempt the master says is no longer ours (if it runs or waits; an
    /// outcome it already has may still be reported). Returns whether it was running.
    pub fn revoke(&mut self, key: &Key) -> bool {
        let mut tokens = Vec::new();
        self.backlog.retain(|q| {
            let it = q.assignment.work_id == key.0 && q.assignment.attempt == key.1;
            if it {
                tokens.push(q.assignment.token);
            }
            !it
        });
        self.forget_progress(key);
        // Revoked, it is not taken again under its token, whatever epoch grants it (it left
        // with a verdict already, or will).
        if let Some(p) = self.pending.get_mut(key) {
            p.revoked = true;
        }
        if let Some((_, verdict)) = self.gone_tokens.get_mut(key) {
            *verdict = None;
        }
        let running = self.running.remove(key);
        for token in running.iter().chain(&tokens) {
            self.forget(key.clone(), *token);
        }
        running.is_some()
    }

    /// The shutdown grace is over: everything running or waiting becomes a failure with
    /// `reason` (so the master re-queues it at once rather than at its deadline). Returns the
    /// attempts that were running, to abort.
    pub fn abandon(&mut self, reason: &str) -> Vec<Key> {
        let running: Vec<(Key, Token)> = std::mem::take(&mut self.running).into_iter().collect();
        let waiting = std::mem::take(&mut self.backlog)
            .into_iter()
            .map(|q| ((q.assignment.work_id, q.assignment.attempt), q.assignment.token));
        let aborted = running.iter().map(|(key, _)| key.clone()).collect();
        for (key, token) in running.into_iter().chain(waiting) {
            let pending = Pending {
                token,
                status: OutcomeStatus::Failed,
                result: Bytes::new(),
                reason: Some(reason.to_owned()),
                non_retryable: false,
                sent_at: None,
                carrier: None,
                revoked: false,
            };
            self.pending.insert(key, pending);
        }
        self.progress.clear();
        self.progress_sent.clear();
        aborted
    }

    /// A verdict arrived for a pending outcome sent under `token`: it is done, unless the
    /// attempt has been granted again under another token since (its outcome then still goes
    /// under that one).
    pub fn acknowledge(&mut self, key: &Key, token: Token) -> bool {
        if self.pending.get(key).is_none_or(|p| p.token != token) {
            return false;
        }
        let revoked = self.pending.remove(key).is_some_and(|p| p.revoked);
        self.remember(key.clone(), token, (!revoked).then_some(self.epoch));
        true
    }

    /// Remembers an attempt that left (or was never taken) under `token`, to refuse it if
    /// granted again under that token.
    pub fn forget(&mut self, key: Key, token: Token) {
        self.remember(key, token, None);
    }

    /// Remembers an attempt that left under `token`, with the epoch of its verdict if it left
    /// with one.
    fn remember(&mut self, key: Key, token: Token, verdict: Option<u64>) {
        let before = self.gone_tokens.insert(key.clone(), (token, verdict));
        if before.is_none_or(|(t, _)| t != token) {
            self.gone.push_back((key, token));
        }
        while self.gone.len() > REMEMBERED {
            if let Some((old, token)) = self.gone.pop_front() {
                // Only if it did not leave again since, under another token.
                if self.gone_tokens.get(&old).is_some_and(|(t, _)| *t == token) {
                    self.gone_tokens.remove(&old);
                }
            }
        }
    }

    /// A running job reported progress.
    pub fn note_progress(&mut self, key: Key) {
        if self.running.contains_key(&key) {
            self.progress.insert(key);
        }
    }

    /// Progress for every running job (the `progress_every` keepalive).
    pub fn keepalive(&mut self) {
        self.progress.extend(self.running.keys().cloned());
    }

    fn forget_progress(&mut self, key: &Key) {
        self.progress.remove(key);
        self.progress_sent.remove(key);
    }

    /// Whether an outcome that was sent has waited `resend` for its verdict: it goes again
    /// now, even while another report is in flight.
    pub fn resend_due(&self, now: Millis, resend: Millis) -> bool {
        self.pending.values().any(|p| p.sent_at.is_some_and(|at| now >= at.saturating_add(resend)))
    }

    /// The outcomes due now (never sent, or sent `resend` ago), oldest-sent first, up to
    /// `max_bytes` of results (the first always goes); marks them sent.
    pub fn due_outcomes(&mut self, now: Millis, resend: Millis, max_bytes: usize) -> Batch {
        let mut due: Vec<(Option<Millis>, &Key)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.sent_at.is_none_or(|at| now >= at.saturating_add(resend)))
            .map(|(k, p)| (p.sent_at, k))
            .collect();
        // Oldest first, so that a report filled up to `max_bytes` cannot starve the rest.
        due.sort();
        let keys: Vec<Key> = due.into_iter().map(|(_, k)| k.clone()).collect();
        let mut batch = Batch::default();
        let mut bytes = 0usize;
        for key in keys {
            let Some(p) = self.pending.get_mut(&key) else { continue };
            if bytes > 0 && bytes.saturating_add(p.result.len()) > max_bytes {
                continue;
            }
            bytes = bytes.saturating_add(p.result.len());
            p.sent_at = Some(now);
            if p.carrier.is_none() {
                batch.fresh.push(key.clone());
            }
            batch.outcomes.push(Outcome {
                work_id: key.0,
                attempt: key.1,
                token: p.token,
                status: p.status,
                result: p.result.clone(),
                reason: p.reason.clone(),
                non_retryable: p.non_retryable,
            });
        }
        batch
    }

    /// Progress outcomes due now: for running attempts with progress noted and none sent in
    /// the last `every`. Progress not yet due stays noted.
    pub fn due_progress(&mut self, now: Millis, every: Millis) -> Vec<Outcome> {
        let due: Vec<Key> = self
            .progress
            .iter()
            .filter(|k| self.progress_sent.get(*k).is_none_or(|at| now >= at.saturating_add(every)))
            .cloned()
            .collect();
        let mut outcomes = Vec::new();
        for key in due {
            self.progress.remove(&key);
            let Some(token) = self.running.get(&key) else { continue };
            self.progress_sent.insert(key.clone(), now);
            outcomes.push(Outcome {
                work_id: key.0,
                attempt: key.1,
                token: *token,
                status: OutcomeStatus::Progress,
                result: Bytes::new(),
                reason: None,
                non_retryable: false,
            });
        }
        outcomes
    }

    /// Report `id` asks for the slots of these outcomes.
    pub fn carry(&mut self, keys: &[Key], id: RequestId) {
        for key in keys {
            if let Some(p) = self.pending.get_mut(key) {
                p.carrier = Some(id);
            }
        }
    }

    /// Report `id` is no longer current: its outcomes count as held again.
    pub fn uncarry(&mut self, id: RequestId) {
        for p in self.pending.values_mut().filter(|p| p.carrier == Some(id)) {
            p.carrier = None;
        }
    }

    /// A new master: no report in flight counts any more, and every outcome goes to the new
    /// master at once (it knows nothing of what was sent to its predecessor).
    pub fn resend_all(&mut self) {
        for p in self.pending.values_mut() {
            p.carrier = None;
            p.sent_at = None;
        }
    }
}

/// A collection length as a slot count.
fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The last (at most) `max` bytes of `text`, cut at a character boundary.
pub(crate) fn last_chars(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_cut_at_character_boundaries() {
        assert_eq!(last_chars("héllo", 4), "llo");
        assert_eq!(last_chars("abc", 10), "abc");
    }
}
