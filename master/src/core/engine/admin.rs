//! What operators may do: cancel a job, run a failed or cancelled one again (one, or a
//! queue's in bulk), purge a queue's pending work, pause or resume a queue. Every decision is
//! made here, on the state; where it needs a fact the state does not hold (a finished job's
//! stored outcome, a queue's last stored submission), the engine asks the runtime to read it
//! ([`Effect::LookUp`]) and decides when the answer comes back ([`Engine::looked_up`]), on the
//! state as it is then.
//!
//! - **Cancel.** A job the state holds (ready, waiting, running) is finished as `cancelled`: it
//!   leaves the state, its outcome (with the operator's reason) is published, and every later
//!   report about it is answered `finished`, so a worker that goes on running it can change
//!   nothing; a running attempt's worker is told to stop (`Effect::Revoke`, a hint). A job the
//!   state does not hold is looked up: one that has finished is refused (409), one with no
//!   outcome is unknown (404), one that started meanwhile is cancelled.
//! - **Retry.** Only a job whose latest stored outcome is `failed` or `cancelled` runs again,
//!   and only while nothing else of its id is under way: not in flight (409), not with its
//!   outcome still being published (503: asked again a moment later it goes through), no retry
//!   or tick of it pending (409). The decision, `RetryDecided`, says everything the new run is
//!   (its key, the attempts its earlier runs used, the options it keeps: priority, attempts,
//!   timeout and time to start, counted from now; not its delay) and where its payload is; the
//!   runtime then submits it on `jetwork.internal.<queue>`, and intake takes that submission
//!   only against this decision. A bulk retry is the same decision for each job the scan of
//!   stored outcomes found, skipping those under way.
//! - **Purge.** The queue's last stored submission is looked up; then every submission of the
//!   queue stored up to it is cancelled: the items held (ready or waiting) with a sequence at or
//!   below it at once, and those still unread as they are read (`QueuePurged` records the
//!   sequence; intake cancels them). Anything stored after it (including what a reader
//!   delivered while the lookup ran) runs as usual, and running attempts are left to finish.
//! - **Pause** stops hand-outs from the queue, nothing else. Pausing a paused queue (or resuming
//!   a running one) records nothing and says so.
//! - **Unknown queues.** Pausing or purging a queue the master has never seen (not in the
//!   state, served by no worker, no schedule's, nothing stored on its subject: looked up like a
//!   purge) is refused (404) rather than recorded: a typo must not create a queue that then
//!   lives on in `status`, the metrics and the dashboard. A queue with submissions waiting
//!   unread (nobody serves it yet) is known, so an operator can still pause it ahead of its
//!   workers' deploy.

use jetwork_shared::job_options::format_time;
use jetwork_shared::jobs::{BulkRetry, BulkRetryReply, JobState, PurgeReply};
use jetwork_shared::{headers, QueueName, WorkId};

use super::super::{Effect, Event, Found, LookUp, Millis, Reply, RequestId, StoredOutcome};
use super::{Engine, MAX_REASON};

/// The reason a purged job is finished with.
pub(super) const PURGED: &str = "cancelled: purged by an operator";

/// Operators' requests waiting for their lookups at once; beyond it they are refused (503).
const MAX_LOOKUPS: usize = 64;

/// What an operator asked for, while the runtime reads what deciding it needs.
#[derive(Debug, Clone)]
pub(super) enum Asked {
    Cancel { work_id: WorkId, reason: Option<String> },
    Retry { work_id: WorkId },
    RetryAll { queue: QueueName, state: JobState, limit: u32 },
    Purge { queue: QueueName },
    Pause { queue: QueueName },
}

impl Engine {
    pub(super) fn cancel(
        &mut self,
        request: RequestId,
        work_id: WorkId,
        reason: Option<String>,
        now: Millis,
    ) {
        if self.state.work.contains_key(&work_id) {
            return self.cancel_held(request, work_id, reason, now);
        }
        if self.state.pending_submission(&work_id).is_some() {
            return self.cancel_pending(request, work_id, now);
        }
        let lookup = LookUp::Outcome { work_id: work_id.clone(), queue: None };
        self.look_up(request, lookup, Asked::Cancel { work_id, reason });
    }

    /// Cancels a retry or tick of `work_id` decided but not read back yet: the decision ends,
    /// so its submission, stored or not, is refused when read and never runs.
    fn cancel_pending(&mut self, request: RequestId, work_id: WorkId, now: Millis) {
        let what = if self.state.retries.contains_key(&work_id) { "retry" } else { "tick" };
        let reason = format!("the {what} was cancelled by an operator before it ran");
        let message = format!(
            "cancelled the pending {what} of {work_id}: it will not run (its submission, if \
             already stored, is refused when read)"
        );
        self.emit(Event::PendingDropped { work_id, reason, at: now });
        self.reply(request, Reply::Done { message });
    }

    /// Cancels a job the state holds.
    fn cancel_held(
        &mut self,
        request: RequestId,
        work_id: WorkId,
        reason: Option<String>,
        now: Millis,
    ) {
        let Some(work) = self.state.work.get(&work_id) else { return };
        let was = match (&work.running, work.waiting_until) {
            (Some(running), _) => {
                let (worker, attempt) = (running.worker.clone(), work.attempt);
                self.out.effects.push(Effect::Revoke {
                    worker: worker.clone(),
                    work_id: work_id.clone(),
                    attempt,
                });
                format!("was running attempt {attempt} on worker {worker}")
            }
            (None, Some(until)) => {
                format!("was waiting (back-off or delay) until {}", format_time(until))
            }
            (None, None) => "was ready".to_owned(),
        };
        let reason = match reason {
            Some(why) => format!("cancelled: {}", headers::sanitize(&why, MAX_REASON)),
            None => "cancelled by an operator".to_owned(),
        };
        let message = format!("cancelled {work_id} (it {was})");
        self.emit(Event::WorkCancelled { work_id, reason, at: now });
        self.reply(request, Reply::Done { message });
    }

    pub(super) fn retry(&mut self, request: RequestId, work_id: WorkId, queue: Option<QueueName>) {
        if let Some((code, why)) = self.under_way(&work_id) {
            return self.error(request, code, why);
        }
        let lookup = LookUp::Outcome { work_id: work_id.clone(), queue };
        self.look_up(request, lookup, Asked::Retry { work_id });
    }

    pub(super) fn retry_all(
        &mut self,
        request: RequestId,
        queue: QueueName,
        state: JobState,
        since_ms: u64,
        limit: u32,
    ) {
        if !matches!(state, JobState::Failed | JobState::Cancelled) {
            let why =
                format!("only failed or cancelled jobs can be retried, not {}", state.as_str());
            return self.error(request, 400, why);
        }
        let limit = limit.clamp(1, BulkRetry::MAX_LIMIT);
        let lookup = LookUp::Outcomes { queue: queue.clone(), state, since_ms, limit };
        self.look_up(request, lookup, Asked::RetryAll { queue, state, limit });
    }

    pub(super) fn purge(&mut self, request: RequestId, queue: QueueName) {
        let lookup = LookUp::LastSubmitted { queue: queue.clone() };
        self.look_up(request, lookup, Asked::Purge { queue });
    }

    /// Asks the runtime to read `lookup` for `request` (or refuses it when too many wait).
    fn look_up(&mut self, request: RequestId, lookup: LookUp, asked: Asked) {
        if self.lookups.len() >= MAX_LOOKUPS {
            let why = "busy: too many operator requests at once; retry shortly".to_owned();
            return self.error(request, 503, why);
        }
        self.lookups.insert(request, asked);
        self.out.effects.push(Effect::LookUp { request, lookup });
    }

    /// What the runtime read for a request: decided now, on the current state.
    pub(super) fn looked_up(&mut self, request: RequestId, found: Found, now: Millis) {
        let Some(asked) = self.lookups.remove(&request) else { return };
        match (asked, found) {
            (_, Found::Unavailable(why)) => self.error(request, 503, why),
            (Asked::Cancel { work_id, reason }, Found::Outcome(outcome)) => {
                if self.state.work.contains_key(&work_id) {
                    return self.cancel_held(request, work_id, reason, now);
                }
                if self.state.pending_submission(&work_id).is_some() {
                    return self.cancel_pending(request, work_id, now);
                }
                match outcome {
                    Some(done) => {
                        let why =
                            format!("{work_id} has already finished: {}", done.state.as_str());
                        self.error(request, 409, why);
                    }
                    None => self.error(request, 404, unknown(&work_id)),
                }
            }
            (Asked::Retry { work_id }, Found::Outcome(outcome)) => {
                if let Some((code, why)) = self.under_way(&work_id) {
                    return self.error(request, code, why);
                }
                let Some(outcome) = outcome.filter(|o| o.work_id == work_id) else {
                    let why = format!(
                        "no stored outcome for {work_id}: it has not finished, or it is older \
                         than the results retention"
                    );
                    return self.error(request, 404, why);
                };
                if !matches!(outcome.state, JobState::Failed | JobState::Cancelled) {
                    let why = format!(
                        "{work_id} completed: only failed or cancelled jobs can be retried"
                    );
                    return self.error(request, 409, why);
                }
                let message = format!(
                    "{work_id} runs again in queue {} (its attempts continue from {})",
                    outcome.queue, outcome.attempts
                );
                self.decide_retry(outcome, now);
                self.reply(request, Reply::Done { message });
            }
            (Asked::RetryAll { queue, state, limit }, Found::Outcomes { outcomes, truncated }) => {
                let mut reply = BulkRetryReply { truncated, ..BulkRetryReply::default() };
                for outcome in outcomes {
                    if reply.retried >= limit {
                        reply.truncated = true;
                        break;
                    }
                    let elsewhere = outcome.queue != queue || outcome.state != state;
                    if elsewhere || self.under_way(&outcome.work_id).is_some() {
                        reply.skipped += 1;
                        continue;
                    }
                    self.decide_retry(outcome, now);
                    reply.retried += 1;
                }
                reply.message = format!(
                    "queue {queue}: retried {} {} jobs, skipped {} (running again, being \
                     stored, or already being retried){}",
                    reply.retried,
                    state.as_str(),
                    reply.skipped,
                    if reply.truncated { "; more may be left (ask again)" } else { "" }
                );
                self.reply(request, Reply::RetriedAll(reply));
            }
            (Asked::Purge { queue }, Found::LastSubmitted { through_seq, unread }) => {
                if through_seq == 0 && !self.knows(&queue) {
                    return self.error(request, 404, unknown_queue(&queue));
                }
                self.purge_through(request, queue, through_seq, unread, now);
            }
            (Asked::Pause { queue }, Found::LastSubmitted { through_seq, .. }) => {
                if through_seq == 0 && !self.knows(&queue) {
                    return self.error(request, 404, unknown_queue(&queue));
                }
                self.set_paused(request, queue, true, now);
            }
            (asked, found) => {
                let why = format!("internal error: {asked:?} was answered with {found:?}");
                self.error(request, 500, why);
            }
        }
    }

    /// Why `work_id` cannot be retried now, whatever its outcome: something of it is under way.
    fn under_way(&self, work_id: &WorkId) -> Option<(u16, String)> {
        if let Some(info) = self.state.job(work_id) {
            let why = format!(
                "{work_id} is in flight ({}): only failed or cancelled jobs can be retried",
                info.state.as_str()
            );
            return Some((409, why));
        }
        let recording = super::super::PublicationKey::Result(work_id.clone());
        if self.state.unpublished.contains_key(&recording) {
            let why = format!(
                "{work_id} has just finished and its outcome is still being stored; retry shortly"
            );
            return Some((503, why));
        }
        if self.state.pending_submission(work_id).is_some() {
            let why = format!("{work_id} is already about to run again (a retry or a tick)");
            return Some((409, why));
        }
        None
    }

    /// Decides to run the job of `outcome` again (see the module docs).
    fn decide_retry(&mut self, outcome: StoredOutcome, now: Millis) {
        let StoredOutcome { work_id, queue, attempts, options, results_seq, .. } = outcome;
        let key = self.submission_key(&work_id);
        self.emit(Event::RetryDecided {
            work_id: work_id.clone(),
            queue,
            key,
            prior_attempts: attempts.min(headers::MAX_PRIOR_ATTEMPTS),
            options: options.for_retry(now),
            payload_seq: results_seq,
            at: now,
        });
        self.out.effects.push(Effect::Submit { work_id });
    }

    /// Purges `queue` through `through_seq`, its last stored submission when looked up.
    fn purge_through(
        &mut self,
        request: RequestId,
        queue: QueueName,
        through_seq: u64,
        unread: u64,
        now: Millis,
    ) {
        // Only what was stored by the cut-off: a submission read while the lookup ran, or
        // jumped ahead, stored after it is not the operator's to purge.
        let (held, running): (Vec<_>, Vec<_>) = self
            .state
            .work
            .iter()
            .filter(|(_, w)| w.queue == queue && w.seq <= through_seq)
            .partition(|(_, w)| w.running.is_none());
        let held: Vec<WorkId> = held.into_iter().map(|(id, _)| id.clone()).collect();
        let running = running.len() as u64;
        let cancelled = held.len() as u64;
        for work_id in held {
            self.emit(Event::WorkCancelled { work_id, reason: PURGED.to_owned(), at: now });
        }
        let (cursor, purged) =
            self.state.queues.get(&queue).map_or((0, 0), |q| (q.cursor, q.purged_through));
        // Nothing past what was read or purged already: recording it would change nothing.
        let backlog = match through_seq > cursor.max(purged) {
            true => {
                self.emit(Event::QueuePurged { queue: queue.clone(), through_seq, at: now });
                unread
            }
            false => 0,
        };
        let through_seq = through_seq.max(purged);
        let message = format!(
            "queue {queue} purged through submission {through_seq}: {cancelled} held jobs \
             cancelled, {backlog} unread submissions will be stored as cancelled as they are \
             read, {running} running attempts left to finish"
        );
        let reply = PurgeReply { message, cancelled, backlog, through_seq, running };
        self.reply(request, Reply::Purged(reply));
    }

    pub(super) fn pause(
        &mut self,
        request: RequestId,
        queue: QueueName,
        paused: bool,
        now: Millis,
    ) {
        if paused && !self.knows(&queue) {
            let lookup = LookUp::LastSubmitted { queue: queue.clone() };
            return self.look_up(request, lookup, Asked::Pause { queue });
        }
        self.set_paused(request, queue, paused, now);
    }

    /// Whether the master knows `queue` without reading the stream: its state holds it, a
    /// worker serves it, or a schedule submits to it.
    fn knows(&self, queue: &QueueName) -> bool {
        self.state.queues.contains_key(queue)
            || self.serving.workers(queue).next().is_some()
            || self.state.schedules.values().any(|schedule| schedule.queue == *queue)
    }

    fn set_paused(&mut self, request: RequestId, queue: QueueName, paused: bool, now: Millis) {
        let current = self.state.queues.get(&queue).is_some_and(|q| q.paused);
        let verb = if paused { "paused" } else { "resumed" };
        if current == paused {
            let message = format!("queue {queue} was already {verb}; nothing changed");
            return self.reply(request, Reply::Done { message });
        }
        let message = format!("queue {queue} {verb}");
        let event = if paused {
            Event::QueuePaused { queue, at: now }
        } else {
            Event::QueueResumed { queue, at: now }
        };
        self.emit(event);
        self.reply(request, Reply::Done { message });
    }
}

fn unknown_queue(queue: &QueueName) -> String {
    format!(
        "queue {queue} is unknown: nothing was ever submitted to it or served from it (nothing \
         of it is stored, no worker serves it, and the master holds nothing of it)"
    )
}

fn unknown(work_id: &WorkId) -> String {
    format!(
        "{work_id} is unknown: not in flight and no stored outcome (it may still wait unread in \
         its queue's backlog, or be older than the results retention)"
    )
}
