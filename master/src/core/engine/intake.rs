//! Submissions: which stored submissions become work, which are refused, and how far each
//! queue's cursor moves.
//!
//! The cursor of a queue moves only along deliveries its reader vouches are unbroken
//! (`after ≤ cursor < seq`, see `Command::Submitted`): a submission that does not follow on
//! from the cursor is not taken and the queue is read again, so no stored submission can be
//! passed over. A taken submission is accepted as work, or rejected with a reason (its
//! headers could not be read, its id is invalid, or a run of the same id is still in flight or
//! being published, which only happens after the dedup horizon); either moves the cursor. A
//! submission its queue's purge covers (`seq ≤ purged_through`) is accepted and at once
//! cancelled, so its outcome is stored like any other job's.
//!
//! **Priority jumps.** A priority submission stored behind a backlog the reader has not
//! reached may be read out of turn (`Command::Submitted` with `jump`) and accepted at once
//! (`WorkAccepted` with `jumped`), so it runs before the backlog. The cursor does not move
//! over the backlog: the submission is listed in its queue's `jumped` instead, and when the
//! reader reaches it in turn the cursor passes it (`SubmissionPassed`) without taking it
//! again. So every stored submission is still taken exactly once, in turn or out of it.
//! Only what would be accepted in turn may jump; anything doubtful waits for its turn, where
//! it is decided with the reason.

use jetwork_shared::{headers, WorkId};

use super::super::{Command, Effect, Event, PublicationKey};
use super::Engine;

impl Engine {
    /// A [`Command::Submitted`]; any other command is ignored.
    pub(super) fn submitted(&mut self, submitted: Command) {
        let Command::Submitted {
            queue,
            seq,
            after,
            jump,
            msg_id,
            size,
            unreadable,
            prior_attempts,
            options,
            now,
        } = submitted
        else {
            return;
        };
        let (cursor, jumped_before) = self
            .state
            .queues
            .get(&queue)
            .map_or((0, false), |q| (q.cursor, q.jumped.contains(&seq)));
        if seq <= cursor {
            return; // Read again after a reconnect or takeover: already consumed.
        }
        let submission = Submission {
            queue,
            seq,
            msg_id,
            size,
            unreadable,
            prior_attempts,
            options,
            jumped: jump,
            now,
        };
        if jump {
            // Seen again (its work may even have finished since): it was taken once.
            if !jumped_before {
                self.jump(submission);
            }
            return;
        }
        if after > cursor {
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
            return self.emit(Event::SubmissionPassed { queue: submission.queue, seq });
        }
        self.take(submission);
    }

    /// A priority submission read out of turn, ahead of its queue's unread backlog: taken
    /// (accepted with `jumped`) only if it would be accepted in turn, asks for a priority
    /// above 0, is not purged, and the queue has fewer than `max_priority_jumps` jumped
    /// submissions its reader has not reached. Anything else is left for the reader, which
    /// takes or rejects it in turn with the reason: nothing is decided about a submission
    /// out of turn except that it may run early.
    fn jump(&mut self, submission: Submission) {
        let (jumped, purged_through) = self
            .state
            .queues
            .get(&submission.queue)
            .map_or((0, 0), |q| (q.jumped.len(), q.purged_through));
        let may_jump = jumped < self.policy.max_priority_jumps as usize
            && submission.seq > purged_through
            && submission.options.as_ref().is_ok_and(|o| o.priority > 0);
        if may_jump && self.refusal(&submission).is_none() {
            self.take(submission);
        }
    }

    /// Why a submission cannot be accepted as work, or its work id if it can.
    fn refusal(&self, submission: &Submission) -> Option<String> {
        let parsed = self.work_id_of(submission);
        match (&parsed, &submission.options) {
            (Err(reason), _) | (Ok(_), Err(reason)) => Some(reason.clone()),
            (Ok(work_id), _) if self.state.work.contains_key(work_id) => Some(format!(
                "work id {work_id} is still in flight (submitted again after the dedup horizon)"
            )),
            (Ok(work_id), _)
                if self
                    .state
                    .unpublished
                    .contains_key(&PublicationKey::Result(work_id.clone())) =>
            {
                Some(format!(
                    "work id {work_id} has just finished and its result is being published \
                     (submitted again after the dedup horizon)"
                ))
            }
            (Ok(_), Ok(_)) => None,
        }
    }

    /// The work id a submission names (or is given), or why it has none.
    fn work_id_of(&self, submission: &Submission) -> Result<WorkId, String> {
        match (&submission.unreadable, &submission.msg_id) {
            (Some(why), _) => Err(format!("unreadable submission: {why}")),
            (None, None) => Ok(WorkId::assigned(submission.seq)),
            (None, Some(raw)) => {
                WorkId::parse_submitted(raw).map_err(|e| format!("invalid Nats-Msg-Id: {e}"))
            }
        }
    }

    /// Accepts a submission as work, or rejects it with the reason.
    fn take(&mut self, submission: Submission) {
        let rejection = self.refusal(&submission);
        let parsed = self.work_id_of(&submission);
        let Submission { queue, seq, msg_id, size, prior_attempts, options, jumped, now, .. } =
            submission;
        let shown_id = msg_id.as_deref().map(|raw| headers::sanitize(raw, 256));
        match (rejection, parsed) {
            (Some(reason), _) => self.emit(Event::SubmissionRejected {
                queue,
                seq,
                msg_id: shown_id,
                reason,
                at: now,
            }),
            (None, Ok(work_id)) => {
                let prior_attempts = prior_attempts.min(headers::MAX_PRIOR_ATTEMPTS);
                let options = options.unwrap_or_default();
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
            (None, Err(_)) => {}
        }
    }
}

/// A submission as the rules see it (a [`Command::Submitted`] past the cursor checks).
struct Submission {
    queue: jetwork_shared::QueueName,
    seq: u64,
    msg_id: Option<String>,
    size: u64,
    unreadable: Option<String>,
    prior_attempts: u32,
    options: Result<jetwork_shared::job_options::JobOptions, String>,
    /// Taken out of turn (a priority jump).
    jumped: bool,
    now: super::super::Millis,
}
