//! What workers report, and what happens when they report nothing: results, failures and
//! progress checked against the attempt they are about, and deadlines.
//!
//! - A report counts only with the token its attempt was handed out with.
//! - A result is accepted from any attempt that was handed out, while the item is in flight:
//!   the first result wins, and every later report about the item is answered "finished".
//! - A failure or progress counts only from the current attempt on its current worker
//!   (anything else is "superseded"): a stale worker cannot fail or prolong work that is now
//!   someone else's.
//! - An attempt that ends without a result (failure, deadline, lost worker, result too large)
//!   re-queues the item at the front of its queue, or fails it for good after its queue's
//!   `max_attempts` hand-outs. A reported failure (or a result too large) first waits out
//!   its queue's back-off; a deadline or a lost worker has waited long enough already. A
//!   failure reported as non-retryable fails the item at once.

use jetwork_shared::headers;
use jetwork_shared::protocol::{Outcome, OutcomeStatus, Report, Verdict, VerdictKind};
use jetwork_shared::report_entries::UnreadableOutcome;
use jetwork_shared::{Login, WorkId, WorkerId};

use super::super::{Event, Millis, Reply, RequestId, Work};
use super::{wrong_login, wrong_session, Engine, MAX_REASON};

/// Most work ids in one `WorkDue` event (128-character ids: 128 KiB at most, well within a
/// journal write).
pub(in super::super) const MAX_DUE_PER_EVENT: usize = 1024;

/// Whether an ended attempt's item waits out its back-off before it is ready again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in super::super) enum Retry {
    /// After a failure: the cause may still be there a moment later.
    AfterBackoff,
    /// After a deadline or a lost worker: the time is already spent.
    Now,
}

/// The verdict on an entry of a report that could not be read: `rejected`, with why.
fn unreadable_verdict(entry: UnreadableOutcome) -> Verdict {
    let reason = format!("unreadable outcome (entry {}): {}", entry.index, entry.reason);
    let reason = headers::sanitize(&reason, MAX_REASON);
    Verdict {
        work_id: entry.work_id,
        attempt: entry.attempt,
        verdict: VerdictKind::Rejected,
        deadline_ms: None,
        timeout_ms: None,
        reason: Some(reason),
    }
}

impl Engine {
    /// A report: one verdict per outcome, in order, and (for a known worker) the items its
    /// freed slots can take, in the same reply and the same journal write. An entry that could
    /// not be read (`unreadable`, by its position) is `rejected` with the reason; the others
    /// are judged as if it were not there.
    pub(super) fn report(
        &mut self,
        request: RequestId,
        msg: Report,
        unreadable: Vec<UnreadableOutcome>,
        login: Option<Login>,
        now: Millis,
    ) {
        // A worker forgotten meanwhile may still report: its results are worth taking (their
        // tokens prove them). A known worker id must come with its session and its login.
        let known = match self.state.workers.get(&msg.worker_id) {
            None => false,
            Some(w) if w.session != msg.session => {
                return self.error(request, 403, wrong_session(&msg.worker_id));
            }
            Some(w) if w.login != login => {
                return self.error(request, 403, wrong_login(&msg.worker_id, w, login.as_ref()));
            }
            Some(_) => true,
        };
        if known {
            self.touch(&msg.worker_id, now);
        }
        // Outcomes first: a completion frees the slot the same report then asks to fill.
        let mut verdicts = Vec::with_capacity(msg.outcomes.len() + unreadable.len());
        let mut unreadable = unreadable.into_iter().peekable();
        // Judged before each outcome changes the item: an accepted result leaves no item.
        let mut last = false;
        for outcome in msg.outcomes {
            while let Some(refused) = unreadable.next_if(|u| u.index <= verdicts.len()) {
                verdicts.push(unreadable_verdict(refused));
            }
            last |= self.on_last_attempt(&outcome.work_id);
            verdicts.push(self.outcome(&msg.worker_id, outcome, now));
        }
        verdicts.extend(unreadable.map(unreadable_verdict));
        let assignments = if known && msg.slots > 0 {
            self.notice_over(&msg.worker_id);
            self.grant(&msg.worker_id, msg.slots, msg.running.as_deref(), now)
        } else {
            Vec::new()
        };
        last |= self.any_last_attempt(&assignments);
        self.reply_to_worker(request, Reply::Report { verdicts, assignments }, last);
    }

    /// The verdict on one outcome. Every check comes before any event, so a refused outcome
    /// records nothing; every verdict tells the worker to stop re-sending.
    pub(super) fn outcome(&mut self, worker: &WorkerId, outcome: Outcome, now: Millis) -> Verdict {
        let Outcome { work_id, attempt, token, status, result, reason, non_retryable } = outcome;
        let mut verdict = Verdict {
            work_id: Some(work_id.clone()),
            attempt,
            verdict: VerdictKind::Finished,
            deadline_ms: None,
            timeout_ms: None,
            reason: None,
        };
        let Some(work) = self.state.work.get(&work_id) else {
            return verdict; // Finished earlier (or never existed): nothing to do.
        };
        if attempt <= work.prior_attempts {
            // An attempt of an earlier run of this id, which has finished (this run is a
            // retry): nothing it says concerns this run.
            return verdict;
        }
        if attempt > work.attempt {
            verdict.verdict = VerdictKind::Rejected;
            verdict.reason = Some(format!(
                "attempt {attempt} was never handed out (latest is {})",
                work.attempt
            ));
            return verdict;
        }
        // Only whoever received this hand-out knows its token: a report without it says nothing
        // about the work, whoever sends it (the worker id counts for nothing here).
        if work.token(attempt) != Some(&token) {
            verdict.verdict = VerdictKind::Rejected;
            verdict.reason = Some(format!("wrong token for attempt {attempt}"));
            return verdict;
        }
        // A result counts from any attempt (the first one in wins; re-running would only repeat
        // it), but failures and progress only from the current attempt on its current worker:
        // a stale attempt must not fail, or keep alive, work that is now someone else's.
        let current = self.is_current(worker, &work_id, attempt);
        match status {
            OutcomeStatus::Completed => {
                let limit = self.policy.max_result;
                if result.len() as u64 > limit {
                    let why = format!(
                        "result of {} bytes exceeds the limit of {limit} bytes",
                        result.len()
                    );
                    // Too large to store or publish: the current attempt fails (and is retried,
                    // in case the size depends on the run); a stale one is only refused.
                    if current {
                        self.end_attempt(&work_id, why.clone(), now, Retry::AfterBackoff);
                    }
                    verdict.verdict = VerdictKind::Rejected;
                    verdict.reason = Some(why);
                } else {
                    self.emit(Event::WorkCompleted { work_id, attempt, result, at: now });
                    self.outcome_accepted(worker);
                    verdict.verdict = VerdictKind::Accepted;
                }
            }
            OutcomeStatus::Failed if current => {
                // The reason goes into the journal and a header: one bounded line.
                let why = reason.unwrap_or_else(|| "failed (no reason given)".to_owned());
                let why = headers::sanitize(&why, MAX_REASON);
                if non_retryable {
                    // The worker knows retrying cannot help: spare the remaining attempts.
                    let reason = format!("failed (non-retryable) in attempt {attempt}: {why}");
                    self.emit(Event::WorkFailed { work_id, attempt, reason, at: now });
                } else {
                    self.end_attempt(&work_id, why, now, Retry::AfterBackoff);
                }
                self.outcome_accepted(worker);
                verdict.verdict = VerdictKind::Accepted;
            }
            OutcomeStatus::Progress if current => {
                let timeout = self.timeout_of(work);
                let deadline = now.saturating_add(timeout);
                self.emit(Event::WorkProgressed { work_id, attempt, deadline });
                verdict.verdict = VerdictKind::Accepted;
                verdict.deadline_ms = Some(deadline);
                verdict.timeout_ms = Some(timeout);
            }
            OutcomeStatus::Failed | OutcomeStatus::Progress => {
                verdict.verdict = VerdictKind::Superseded;
            }
        }
        verdict
    }

    /// True if `attempt` of `work_id` is running right now on `worker`.
    pub(super) fn is_current(&self, worker: &WorkerId, work_id: &WorkId, attempt: u32) -> bool {
        self.state.work.get(work_id).is_some_and(|w| {
            w.attempt == attempt && w.running.as_ref().is_some_and(|r| &r.worker == worker)
        })
    }

    /// Ends the running attempt of `work_id` without a result: re-queue (now, or after its
    /// back-off), or fail for good once its queue's attempts are used up.
    pub(in super::super) fn end_attempt(
        &mut self,
        work_id: &WorkId,
        reason: String,
        now: Millis,
        retry: Retry,
    ) {
        let Some(work) = self.state.work.get(work_id) else { return };
        let (attempt, used) = (work.attempt, work.attempts_in_run());
        let rules = self.policy.rules(&work.queue);
        if used >= self.max_attempts(work) {
            let reason = format!("gave up after {used} attempts; last: {reason}");
            self.emit(Event::WorkFailed { work_id: work_id.clone(), attempt, reason, at: now });
            return;
        }
        // The wait is drawn here and journaled as a time, so replay needs neither the policy
        // nor the generator.
        let not_before = match retry {
            Retry::AfterBackoff => {
                let draw = self.draw();
                match rules.backoff.delay(attempt, draw) {
                    0 => 0,
                    delay => now.saturating_add(delay),
                }
            }
            Retry::Now => 0,
        };
        let work_id = work_id.clone();
        self.emit(Event::WorkRequeued { work_id, attempt, reason, not_before, at: now });
    }

    /// Time passes: attempts past their deadline end, and workers silent past the worker
    /// timeout are lost (their attempts re-queued first).
    pub(super) fn tick(&mut self, now: Millis) {
        // The deadline index is ordered: the expired ones are a prefix.
        let expired: Vec<WorkId> = self
            .state
            .deadlines
            .iter()
            .take_while(|(deadline, _)| *deadline <= now)
            .map(|(_, id)| id.clone())
            .collect();
        for work_id in self.newest_first(expired) {
            let Some(work) = self.state.work.get(&work_id) else { continue };
            let running = work.running.as_ref().map(|r| r.worker.clone());
            let timeout = self.timeout_of(work);
            if let Some(worker) = &running {
                self.deadline_missed(worker);
            }
            let worker = running.map_or_else(String::new, |w| w.to_string());
            let reason =
                format!("timed out on worker {worker}: no result or progress within {timeout} ms");
            self.end_attempt(&work_id, reason, now, Retry::Now);
        }
        // Back-offs that are over: one event for all of them, each item to the front of its
        // queue (it was submitted before anything read after it).
        let due: Vec<WorkId> = self
            .state
            .waiting
            .iter()
            .take_while(|(until, _)| *until <= now)
            .map(|(_, id)| id.clone())
            .collect();
        // In events of at most `MAX_DUE_PER_EVENT` ids: a journal write must stay under the
        // server's message limit, and one event cannot be split (100k delayed jobs due at one
        // instant would otherwise be one event of megabytes). Emitted newest first like the
        // ids within each, so the oldest still ends up at the very front.
        if !due.is_empty() {
            let work_ids = self.newest_first(due);
            for chunk in work_ids.chunks(MAX_DUE_PER_EVENT) {
                self.emit(Event::WorkDue { work_ids: chunk.to_vec() });
            }
        }
        self.expire_due(now);
        // A registration or any request counts as "heard from", so only a worker that stopped
        // talking altogether is lost.
        let silent: Vec<WorkerId> = self
            .state
            .workers
            .iter()
            .filter(|(id, w)| {
                now >= self.last_heard(id, w).saturating_add(self.policy.worker_timeout)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for worker in silent {
            self.lose_worker(&worker, now);
        }
    }

    /// How long an attempt of `work` may run without a result or progress.
    fn timeout_of(&self, work: &Work) -> Millis {
        work.options.timeout.unwrap_or_else(|| self.policy.rules(&work.queue).work_timeout)
    }

    /// Orders items for re-queueing: each goes to the front of its queue, so handling the
    /// newest submission first leaves the oldest at the very front, as it was submitted.
    pub(super) fn newest_first(&self, mut ids: Vec<WorkId>) -> Vec<WorkId> {
        ids.sort_by_key(|id| std::cmp::Reverse(self.state.work.get(id).map_or(0, |w| w.seq)));
        ids
    }
}

#[cfg(test)]
mod tests {
    use jetwork_shared::job_options::JobOptions;
    use jetwork_shared::QueueName;

    use super::super::super::{Command, Policy, State, Submission};
    use super::*;

    #[test]
    fn many_items_due_at_once_go_ready_in_events_of_bounded_size_oldest_first() {
        let mut engine = Engine::new(State::default(), Policy::default());
        let queue = QueueName::parse("q").unwrap();
        let n = 2 * MAX_DUE_PER_EVENT as u64 + 5;
        for seq in 1..=n {
            let options = Ok(JobOptions { not_before: 5_000, ..JobOptions::default() });
            let submission = Submission::plain(queue.clone(), seq, None, 1_000);
            engine.step(Command::Submitted(Submission { options, ..submission }));
        }
        assert_eq!(engine.state().waiting.len() as u64, n);
        let out = engine.step(Command::Tick { now: 5_000 });
        let sizes: Vec<usize> = out
            .events
            .iter()
            .filter_map(|e| match e {
                Event::WorkDue { work_ids } => Some(work_ids.len()),
                _ => None,
            })
            .collect();
        assert_eq!(sizes, vec![MAX_DUE_PER_EVENT, MAX_DUE_PER_EVENT, 5]);
        let ready: Vec<u64> = engine.state().queues[&queue]
            .ready
            .iter()
            .map(|id| engine.state().work[id].seq)
            .collect();
        assert_eq!(ready, (1..=n).collect::<Vec<_>>(), "in submission order, as one event would");
        // Replaying the events gives the same order.
        let mut replayed = State::default();
        for seq in 1..=n {
            replayed.apply(&Event::WorkAccepted {
                work_id: WorkId::assigned(seq),
                queue: queue.clone(),
                seq,
                size: 1,
                at: 1_000,
                prior_attempts: 0,
                options: JobOptions { not_before: 5_000, ..JobOptions::default() },
                jumped: false,
            });
        }
        for event in &out.events {
            replayed.apply(event);
        }
        assert_eq!(replayed.queues[&queue].ready, engine.state().queues[&queue].ready);
    }
}
