//! Submissions: which stored submissions become work, which are refused, and how far each
//! queue's cursor moves.
//!
//! The cursor of a queue moves only along deliveries its reader vouches are unbroken
//! (`after ≤ cursor < seq`, see [`Submission::after`]): a submission that does not follow on
//! from the cursor is not taken and the queue is read again, so no stored submission can be
//! passed over. A taken submission is accepted as work, or rejected with a reason (stored as its
//! outcome); either moves the cursor. A submission its queue's purge covers
//! (`seq ≤ purged_through`) is accepted and at once cancelled, so its outcome is stored like any
//! other job's.
//!
//! **Who may say what.** A client's submission (`jetwork.submit.<queue>`) names its work id in
//! `Nats-Msg-Id` and asks for its own options; if it carries a header only the master sets
//! (`Jetwork-Retry-Of`, `-Prior-Attempts`, `-Schedule`, `-Scheduled-At`, `-Work-Id`) it is
//! rejected, naming them: it would claim a retry's or a tick's bookkeeping. (Older masters put
//! their retries and ticks there: those stored up to `State::legacy_through` are honoured as
//! they were.) The master's own submissions (`jetwork.internal.<queue>`) are taken only against
//! the decision the engine journaled for them (a pending tick or retry with the same key), which
//! also says what the run asks for; reading one back ends that decision, so a copy stored again
//! after the dedup horizon, or anything else on that subject, is refused.
//!
//! **Runs of an id, in order.** A work id may be submitted again after the dedup horizon, or
//! retried; each such submission is a run of its own, with its own outcome on the same results
//! subject, and the results are fenced by submit sequence (`publisher/mod.rs`): a run's outcome is
//! stored over an older run's, never under a newer one's. So the runs of an id must be taken in
//! the order they were stored, and they are, but for one exception: a priority jump. A
//! submission of an id stored *before* a run of that id that was taken out of turn would run
//! later and its outcome would be refused as stale; it is refused instead when read (a stored
//! rejection saying so), so every acknowledged submission still has exactly one stored outcome.
//! The queue's `jumped_ids` keeps what this needs until the cursor passes the jumped ones.
//!
//! **Priority jumps.** A priority submission stored behind a backlog the reader has not
//! reached may be read out of turn (`jump`) and accepted at once (`WorkAccepted` with
//! `jumped`), so it runs before the backlog. The cursor does not move over the backlog: the
//! submission is listed in its queue's `jumped` instead, and when the reader reaches it in turn
//! the cursor passes it (`SubmissionPassed`) without taking it again. So every stored
//! submission is still taken exactly once, in turn or out of it. Only what would be accepted in
//! turn may jump; anything doubtful waits for its turn, where it is decided with the reason.
//!
//! **Expiring submissions jump in a queue nobody serves** (in a served one, only priority
//! does: its reader gets there): no reader runs then, so without it a job submitted with an
//! expiry would be unknown to `job` and would not expire until a worker came. Taken out of turn, it is seen waiting and expires on
//! time like any accepted item. Bounded: the queues nobody serves hold at most
//! `max_priority_jumps` jumped submissions in all; past that an expiring submission waits
//! for its turn (it is then expired when read, if its time has passed).

use jetwork_shared::job_options::JobOptions;
use jetwork_shared::{headers, QueueName, WorkId};

use super::super::{Effect, Event, Origin, PublicationKey, Submission};
use super::Engine;

/// What a submission becomes, decided before anything is recorded.
enum Decision {
    Accept {
        work_id: WorkId,
        prior_attempts: u32,
        options: JobOptions,
    },
    /// Rejected with the reason; `ends`: the pending decision of the master's own it was
    /// read back for, which ends with it.
    Reject {
        reason: String,
        ends: Option<WorkId>,
    },
}

impl Engine {
    /// A stored submission, read in turn or out of turn.
    pub(super) fn submitted(&mut self, submission: Submission) {
        let (cursor, jumped_before) = self
            .state
            .queues
            .get(&submission.queue)
            .map_or((0, false), |q| (q.cursor, q.jumped.contains(&submission.seq)));
        if submission.seq <= cursor {
            return; // Read again after a reconnect or takeover: already consumed.
        }
        if submission.jump {
            // Seen again (its work may even have finished since): it was taken once.
            if !jumped_before {
                self.jump(submission);
            }
            return;
        }
        if submission.after > cursor {
            // Submissions between the cursor and `after` were delivered to nobody (a reader
            // lost messages in flight). Accepting this one would move the cursor over them and
            // they would never run: take nothing, and have the queue read again from the
            // cursor. Nothing is journaled, so this costs a re-read and no state.
            let (queue, from) = (submission.queue, cursor + 1);
            self.out.effects.push(Effect::Reread { queue, from });
            return;
        }
        if jumped_before {
            // Taken out of turn already: the cursor only moves past it.
            let (queue, seq) = (submission.queue, submission.seq);
            return self.emit(Event::SubmissionPassed { queue, seq });
        }
        self.take(submission);
    }

    /// A priority submission read out of turn, ahead of its queue's unread backlog: taken
    /// (accepted with `jumped`) only if it would be accepted in turn, asks for a priority
    /// above 0, is not purged, the queue has fewer than `max_priority_jumps` jumped
    /// submissions its reader has not reached, and it may be read at all (`may_read`: not at
    /// its limit of waiting items). Anything else is left for the reader, which
    /// takes or rejects it in turn with the reason: nothing is decided about a submission
    /// out of turn except that it may run early.
    ///
    /// A submission of a queue nobody serves may jump only if it asks for an expiry (no
    /// reader will reach it, so without the jump it would be unknown to `job` and never
    /// expire), and while the queues nobody serves hold fewer than `max_priority_jumps`
    /// jumped submissions in all: their cursors do not move until someone serves them, so
    /// what they jumped stays listed until then.
    fn jump(&mut self, submission: Submission) {
        let max = self.policy.max_priority_jumps as usize;
        let (jumped, purged_through) = self
            .state
            .queues
            .get(&submission.queue)
            .map_or((0, 0), |q| (q.jumped.len(), q.purged_through));
        let served = self.serving.workers(&submission.queue).next().is_some();
        let room = match served {
            true => jumped < max,
            false => self.jumped_while_unserved() < max,
        };
        let may_jump = room
            && submission.seq > purged_through
            && self.may_read(&submission.queue)
            && matches!(self.decide(&submission), Decision::Accept { options, .. }
                if if served { options.priority > 0 } else { options.expires > 0 });
        if may_jump {
            self.take(submission);
        }
    }

    /// Submissions taken out of turn in the queues nobody serves, in all.
    fn jumped_while_unserved(&self) -> usize {
        let unserved = |queue: &&QueueName| self.serving.workers(queue).next().is_none();
        self.state.queues.iter().filter(|(q, _)| unserved(q)).map(|(_, q)| q.jumped.len()).sum()
    }

    /// What `submission` becomes (see the module docs), without recording anything.
    fn decide(&self, submission: &Submission) -> Decision {
        let unreadable = |ends| {
            let why = submission.unreadable.as_deref().unwrap_or_default();
            Decision::Reject { reason: format!("unreadable submission: {why}"), ends }
        };
        if submission.unreadable.is_some() && submission.origin == Origin::Client {
            return unreadable(None);
        }
        let taken = match submission.origin {
            Origin::Client => self.client_run(submission),
            Origin::Master => self.master_run(submission),
        };
        let (work_id, prior_attempts, options, ends) = match taken {
            Ok(run) => run,
            Err(refused) => return refused,
        };
        if submission.unreadable.is_some() {
            // The master's own, yet unreadable (its decision's work id and key read fine):
            // refused, and its decision ends with it.
            return unreadable(ends);
        }
        let reject = |reason: String| Decision::Reject { reason, ends: ends.clone() };
        if self.state.work.contains_key(&work_id) {
            return reject(format!(
                "work id {work_id} is still in flight (submitted again after the dedup horizon)"
            ));
        }
        if self.state.unpublished.contains_key(&PublicationKey::Result(work_id.clone())) {
            return reject(format!(
                "work id {work_id} has just finished and its result is being published \
                 (submitted again after the dedup horizon)"
            ));
        }
        if ends.is_none() && self.state.pending_submission(&work_id).is_some() {
            return reject(format!(
                "work id {work_id} is about to run again for the master (a retry or a scheduled \
                 tick is pending)"
            ));
        }
        let later =
            self.state.queues.get(&submission.queue).and_then(|q| q.jumped_ids.get(&work_id));
        if let Some(later) = later.filter(|later| **later > submission.seq) {
            return reject(format!(
                "work id {work_id} was submitted again later (submission {later}) and that run \
                 was taken first, out of turn (a priority jump): this earlier submission is not \
                 run, so the results of the id stay in the order of its runs"
            ));
        }
        Decision::Accept { work_id, prior_attempts, options }
    }

    /// The run a client's submission asks for: its work id (its `Nats-Msg-Id`, or assigned),
    /// none of the master's bookkeeping, its own options.
    fn client_run(
        &self,
        submission: &Submission,
    ) -> Result<(WorkId, u32, JobOptions, Option<WorkId>), Decision> {
        let reject = |reason: String| Decision::Reject { reason, ends: None };
        let options = submission.options.clone().map_err(reject)?;
        let claimed = submission.bookkeeping.present();
        // Set by every takeover since format 5: an engine not taken over honours nothing.
        let legacy = self.state.legacy_through.is_some_and(|through| submission.seq <= through);
        if !claimed.is_empty() && !legacy {
            let (verb, pronoun) = if claimed.len() == 1 { ("is", "it") } else { ("are", "them") };
            return Err(reject(format!(
                "{} {verb} set only by the master (on jetwork.internal.<queue>, for its retries \
                 and scheduled ticks): submit without {pronoun}",
                claimed.join(", "),
            )));
        }
        let bookkeeping = &submission.bookkeeping;
        // Stored by an older master before the upgrade: its retry named the id it ran again
        // and the attempts its earlier runs used; its tick is pending under its id.
        let retry_of = bookkeeping.retry_of.as_deref().filter(|_| legacy);
        let work_id = match (retry_of, &submission.msg_id) {
            (Some(id), _) => {
                WorkId::parse(id).map_err(|e| format!("invalid {}: {e}", headers::RETRY_OF))
            }
            (None, None) => Ok(WorkId::assigned(submission.seq)),
            (None, Some(raw)) => {
                WorkId::parse_submitted(raw).map_err(|e| format!("invalid Nats-Msg-Id: {e}"))
            }
        }
        .map_err(reject)?;
        let prior_attempts = match bookkeeping.prior_attempts.as_deref().filter(|_| legacy) {
            None => 0,
            Some(raw) => {
                raw.parse::<u32>().ok().filter(|n| *n <= headers::MAX_PRIOR_ATTEMPTS).ok_or_else(
                    || {
                        reject(format!(
                            "invalid {}: {:?} (expected 0..={})",
                            headers::PRIOR_ATTEMPTS,
                            headers::sanitize(raw, 64),
                            headers::MAX_PRIOR_ATTEMPTS
                        ))
                    },
                )?
            }
        };
        let legacy_tick = legacy && bookkeeping.schedule.is_some();
        let ends =
            (legacy_tick && self.state.unsubmitted.contains_key(&work_id)).then(|| work_id.clone());
        Ok((work_id, prior_attempts, options, ends))
    }

    /// The run a submission of the master's own asks for: the one its pending decision (a
    /// tick, a retry) journaled, if it is that decision's submission.
    fn master_run(
        &self,
        submission: &Submission,
    ) -> Result<(WorkId, u32, JobOptions, Option<WorkId>), Decision> {
        let not_ours = |why: &str| Decision::Reject {
            reason: format!(
                "not a submission the master has pending ({why}): a copy stored again after the \
                 dedup horizon, or not written by the master"
            ),
            ends: None,
        };
        let work_id = submission
            .bookkeeping
            .work_id
            .as_deref()
            .and_then(|raw| WorkId::parse(raw).ok())
            .ok_or_else(|| not_ours(&format!("no valid {}", headers::WORK_ID)))?;
        let pending = self.state.pending_submission(&work_id);
        match pending {
            Some((queue, key))
                if *queue == submission.queue && submission.msg_id.as_deref() == Some(key) => {}
            Some(_) => return Err(not_ours(&format!("{work_id} is pending under another key"))),
            None => return Err(not_ours(&format!("nothing pending for {work_id}"))),
        }
        let (prior_attempts, options) = match self.state.retries.get(&work_id) {
            Some(retry) => (retry.prior_attempts, retry.options),
            None => (0, JobOptions::default()),
        };
        Ok((work_id.clone(), prior_attempts, options, Some(work_id)))
    }

    /// Accepts a submission as work, or rejects it with the reason.
    fn take(&mut self, submission: Submission) {
        let decision = self.decide(&submission);
        let Submission { queue, seq, msg_id, size, jump: jumped, now, .. } = submission;
        match decision {
            Decision::Reject { reason, ends } => {
                let shown_id = msg_id.as_deref().map(|raw| headers::sanitize(raw, 256));
                if let Some(work_id) = ends {
                    let why = format!("its submission {seq} was refused: {reason}");
                    self.emit(Event::PendingDropped { work_id, reason: why, at: now });
                }
                self.emit(Event::SubmissionRejected {
                    queue,
                    seq,
                    msg_id: shown_id,
                    reason,
                    at: now,
                });
            }
            Decision::Accept { work_id, prior_attempts, options } => {
                let prior_attempts = prior_attempts.min(headers::MAX_PRIOR_ATTEMPTS);
                let purged = self.state.queues.get(&queue).is_some_and(|q| seq <= q.purged_through);
                self.emit(Event::WorkAccepted {
                    work_id: work_id.clone(),
                    queue,
                    seq,
                    size,
                    at: now,
                    prior_attempts,
                    options,
                    jumped,
                });
                if purged {
                    // Taken like any other (its id, its outcome stored under it), never run.
                    let reason = super::admin::PURGED.to_owned();
                    self.emit(Event::WorkCancelled { work_id, reason, at: now });
                } else if options.expires > 0 && options.expires <= now {
                    // Read after its time to start had passed (a backlog, or no leader then).
                    self.expire(&work_id, options.expires, now);
                }
            }
        }
    }
}
