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
        let cursor = self.state.queues.get(&queue).map_or(0, |q| q.cursor);
        if seq <= cursor {
            return; // Read again after a reconnect or takeover: already consumed.
        }
        if after > cursor {
            // Submissions between the cursor and `after` were delivered to nobody (a reader
            // lost messages in flight). Accepting this one would move the cursor over them and
            // they would never run: take nothing, and have the queue read again from the
            // cursor. Nothing is journaled, so this costs a re-read and no state.
            let from = cursor + 1;
            self.out.effects.push(Effect::Reread { queue, from });
            return;
        }
        let parsed = match (&unreadable, &msg_id) {
            (Some(why), _) => Err(format!("unreadable submission: {why}")),
            (None, None) => Ok(WorkId::assigned(seq)),
            (None, Some(raw)) => {
                WorkId::parse_submitted(raw).map_err(|e| format!("invalid Nats-Msg-Id: {e}"))
            }
        };
        let shown_id = msg_id.as_deref().map(|raw| headers::sanitize(raw, 256));
        let rejection = match (&parsed, &options) {
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
        };
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
