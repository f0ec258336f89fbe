//! Handing out work: requests for work (held open as long polls when nothing is ready),
//! grants across a worker's queues, and "work ready" notifications to idle workers.
//!
//! A worker gets at most `min(slots, free slots, max_grant)` items, where its free slots are
//! those of `min(declared capacity, login's max_slots, grant window)` not taken (`slot_limit`),
//! under `max_grant_bytes` of payload, taking its queues in turn so one busy queue cannot starve another. Each
//! hand-out is a `WorkStarted` event with a fresh token and deadline, journaled with the step
//! that decides it; the grant may go before that write lands (`Effect::Reply { early }`,
//! `master.early_replies`) unless it hands out an item's last attempt.

use jetwork_shared::protocol::{RequestWork, RunningWork};
use jetwork_shared::{Login, QueueName, WorkId, WorkerId};

use super::super::{AssignmentRef, Effect, Event, Millis, Reply, RequestId};
use super::{wrong_login, wrong_session, Engine, Parked};

impl Engine {
    /// A worker asks for up to `slots` items. Refused (and nothing recorded) for an unknown
    /// worker (it must register first, so the master knows its queues and capacity) or a
    /// session that is not the registered one (someone else using its id).
    pub(super) fn request_work(
        &mut self,
        request: RequestId,
        msg: RequestWork,
        login: Option<Login>,
        now: Millis,
    ) {
        match self.state.workers.get(&msg.worker_id) {
            None => {
                let message = format!("unknown worker {}: register first", msg.worker_id);
                return self.error(request, 404, message);
            }
            Some(w) if w.session != msg.session => {
                return self.error(request, 403, wrong_session(&msg.worker_id));
            }
            Some(w) if w.login != login => {
                return self.error(request, 403, wrong_login(&msg.worker_id, w, login.as_ref()));
            }
            Some(_) => {}
        }
        self.touch(&msg.worker_id, now);
        // It asked: any notice it was sent has done its job, and the next one may go at once.
        self.notice_over(&msg.worker_id);
        // A newer request replaces an open one (the worker gave up on it, or re-sent it).
        if let Some(old) = self.unhold(&msg.worker_id) {
            self.reply_to_worker(old.request, Reply::Grant { assignments: Vec::new() }, false);
        }
        let assignments = self.grant(&msg.worker_id, msg.slots, msg.running.as_deref(), now);
        // Nothing to hand out now: hold the request open (a long poll) rather than answer
        // empty and make the worker wait for a notice, so the next submission for it is
        // accepted and handed out in the same journal write. The wait is capped: a worker's
        // request timeout is its own, and a held request costs a reply subject at most.
        let wait = msg.wait_ms.min(self.policy.max_request_wait);
        if assignments.is_empty() && wait > 0 && msg.slots > 0 {
            let parked = Parked { request, slots: msg.slots, until: now.saturating_add(wait) };
            self.hold(&msg.worker_id, parked);
            return;
        }
        let last = self.any_last_attempt(&assignments);
        self.reply_to_worker(request, Reply::Grant { assignments }, last);
    }

    /// Answers open requests: with work as soon as some is ready for them, empty once their
    /// wait is over. Runs after every command, so work accepted or re-queued by it is handed
    /// out in the same journal write.
    pub(super) fn serve_parked(&mut self, now: Millis) {
        if self.parked.is_empty() {
            return;
        }
        // Only the requests that may be answered now are looked at: for each queue with work
        // to hand out, those of its workers with free slots (listed by `available`), by worker
        // id, until the queue has nothing more to hand out; then those whose wait is over.
        // Each one answered leaves the lists, so every loop ends.
        let ready: Vec<QueueName> =
            self.ready.iter().filter(|q| self.dispatchable(q, now) > 0).cloned().collect();
        for queue in &ready {
            while self.dispatchable(queue, now) > 0 {
                self.settle_slots();
                let Some(worker) = self.available.first_held(queue).cloned() else { break };
                // Never without progress, even were the lists out of step with the requests
                // (they are checked against them after every step in the tests).
                if !self.answer_held(&worker, now) {
                    break;
                }
            }
        }
        let due: Vec<WorkerId> = self.parked.due(now).cloned().collect();
        for worker in due {
            self.answer_held(&worker, now);
        }
    }

    /// Answers `worker`'s held request: with what it can take now, if anything (a lost
    /// worker's request is answered empty: nobody will act on a grant sent to it, and the
    /// attempts would only time out). Whether it held one.
    fn answer_held(&mut self, worker: &WorkerId, now: Millis) -> bool {
        let Some(parked) = self.unhold(worker) else { return false };
        let ready = self.state.workers.get(worker).is_some_and(|w| {
            self.free_of(worker, w) > 0 && w.queues.iter().any(|q| self.dispatchable(q, now) > 0)
        });
        let assignments = if ready { self.assign(worker, parked.slots, now) } else { Vec::new() };
        let last = self.any_last_attempt(&assignments);
        self.reply_to_worker(parked.request, Reply::Grant { assignments }, last);
        true
    }

    /// Hands up to `slots` ready items from the worker's queues to it, taking the queues in
    /// turn so one busy queue cannot starve another.
    /// What a request or report asking for `slots` gets: the attempts of `worker` it did not
    /// list in `held` (lost grants, handed out again), then new ones for the rest.
    pub(super) fn grant(
        &mut self,
        worker: &WorkerId,
        slots: u32,
        held: Option<&[RunningWork]>,
        now: Millis,
    ) -> Vec<AssignmentRef> {
        let mut assignments = match held {
            Some(held) if slots > 0 => self.lost_grants(worker, held, slots, now),
            _ => Vec::new(),
        };
        let left = slots.saturating_sub(u32::try_from(assignments.len()).unwrap_or(u32::MAX));
        if left > 0 {
            assignments.extend(self.assign(worker, left, now));
        }
        assignments
    }

    /// The attempts handed to `worker` that it does not hold (`held` is everything it does, as
    /// it sent the request), still within their deadlines: grants lost on their way. At most
    /// `limit`, and within one grant's byte budget. Nothing is recorded: the same attempt goes
    /// again, with its token and deadline, and its slot was counted when it was first handed
    /// out. A worker that got it after all ignores the copy.
    fn lost_grants(
        &self,
        worker: &WorkerId,
        held: &[RunningWork],
        limit: u32,
        now: Millis,
    ) -> Vec<AssignmentRef> {
        let Some(w) = self.state.workers.get(worker) else { return Vec::new() };
        // A set: each of the worker's attempts is looked up in the list (up to its capacity).
        let held: std::collections::HashSet<(&WorkId, u32)> =
            held.iter().map(|h| (&h.work_id, h.attempt)).collect();
        let holds = |id: &WorkId, attempt: u32| held.contains(&(id, attempt));
        let mut lost = Vec::new();
        let mut bytes = 0u64;
        for work_id in &w.running {
            if lost.len() >= limit as usize {
                break;
            }
            let Some(work) = self.state.work.get(work_id) else { continue };
            let Some(running) = work.running.as_ref().filter(|r| r.worker == *worker) else {
                continue;
            };
            if running.deadline <= now || holds(work_id, work.attempt) {
                continue;
            }
            if !lost.is_empty() && bytes + work.size > self.policy.max_grant_bytes {
                break;
            }
            let index = work.attempt.saturating_sub(work.prior_attempts + 1) as usize;
            let Some(&token) = work.tokens.get(index) else { continue };
            bytes += work.size;
            let timeout =
                work.options.timeout.unwrap_or(self.policy.rules(&work.queue).work_timeout);
            lost.push(AssignmentRef {
                work_id: work_id.clone(),
                queue: work.queue.clone(),
                seq: work.seq,
                attempt: work.attempt,
                deadline: running.deadline,
                timeout,
                token,
            });
        }
        lost
    }

    pub(super) fn assign(
        &mut self,
        worker: &WorkerId,
        slots: u32,
        now: Millis,
    ) -> Vec<AssignmentRef> {
        let Some(w) = self.state.workers.get(worker) else { return Vec::new() };
        // Never beyond what the worker said it can run (nor beyond its login's cap and its
        // window): the master counts a slot as busy from the hand-out until the outcome is
        // recorded, exactly as the worker does.
        let limit = slots.min(self.free_of(worker, w)).min(self.policy.max_grant) as usize;
        // Only the worker's queues with ready items: nothing in here makes an item ready, and
        // a worker may serve many queues (each round would look at all of them).
        let queues: Vec<QueueName> =
            w.queues.iter().filter(|q| self.ready.contains(q)).cloned().collect();
        let mut assignments: Vec<AssignmentRef> = Vec::new();
        let mut bytes = 0u64;
        'rounds: while assignments.len() < limit {
            let mut progressed = false;
            for queue in &queues {
                if assignments.len() >= limit {
                    break 'rounds;
                }
                // A paused queue keeps its ready items until it is resumed, and one at its
                // concurrency limit until an attempt of it ends.
                if self.dispatchable(queue, now) == 0 {
                    continue;
                }
                let Some(work_id) = self.state.queues.get(queue).and_then(|q| q.next()).cloned()
                else {
                    continue;
                };
                let Some(work) = self.state.work.get(&work_id) else { continue };
                // Past its start-by time (and the tick has not caught it yet): it ends here
                // instead of starting, and the queue is looked at again.
                if work.options.expires > 0 && work.options.expires <= now {
                    let at = work.options.expires;
                    self.expire(&work_id, at, now);
                    progressed = true;
                    continue;
                }
                // The grant is one NATS reply: stop before its payloads outgrow the limit (a
                // single item larger than it still goes, alone).
                if !assignments.is_empty() && bytes + work.size > self.policy.max_grant_bytes {
                    break 'rounds;
                }
                bytes += work.size;
                // Attempts count hand-outs; the deadline and the token are decided here and
                // written into the event, so a replay gives the same attempt back exactly.
                let (seq, attempt) = (work.seq, work.attempt + 1);
                let rules = self.policy.rules(queue);
                if let Some(rate) = rules.rate {
                    self.rates.take(queue, rate, now);
                }
                let timeout = work.options.timeout.unwrap_or(rules.work_timeout);
                let deadline = now.saturating_add(timeout);
                let token = self.next_token();
                self.emit(Event::WorkStarted {
                    work_id: work_id.clone(),
                    worker: worker.clone(),
                    attempt,
                    deadline,
                    token,
                    at: now,
                });
                assignments.push(AssignmentRef {
                    work_id,
                    queue: queue.clone(),
                    seq,
                    attempt,
                    deadline,
                    timeout,
                    token,
                });
                progressed = true;
            }
            // Every queue came up empty in this round: nothing left to hand out.
            if !progressed {
                break;
            }
        }
        assignments
    }

    /// Workers to tell that work is waiting: for each queue with ready items, idle workers
    /// serving it (by id) until their free slots and those of the workers holding a request
    /// or told less than `notify_interval` ago cover the ready items. Called by the runtime after each
    /// batch of commands and on every tick, which also re-sends lost notifications.
    pub fn notifications(&mut self, now: Millis) -> Vec<Effect> {
        // Notices this old no longer cover their workers' slots.
        let over: Vec<WorkerId> =
            self.notified.older(now, self.policy.notify_interval).cloned().collect();
        for worker in over {
            self.notice_over(&worker);
        }
        self.settle_slots();
        let mut effects = Vec::new();
        // Only queues with idle workers to tell (asked first: one look-up, where the rest
        // take several, and most ready queues have none while work flows).
        let ready: Vec<QueueName> = self
            .ready
            .iter()
            .filter(|q| self.available.idle_free(q) > 0 && self.dispatchable(q, now) > 0)
            .cloned()
            .collect();
        for queue in ready {
            // The workers told for the queue before are no longer idle.
            self.settle_slots();
            // Notify only as many workers as it takes to cover what may be handed out: waking
            // every idle worker for one item would have them all ask, and all but one get
            // nothing. The slots of workers told recently (or holding a request) are covered.
            let covered = self.free.get(&queue).saturating_sub(self.available.idle_free(&queue));
            let mut needed = self.dispatchable(&queue, now).saturating_sub(covered);
            let mut told = Vec::new();
            for (worker, free) in self.available.idle(&queue) {
                if needed == 0 {
                    break;
                }
                told.push(worker.clone());
                needed = needed.saturating_sub(u64::from(free));
            }
            for worker in told {
                self.notice_sent(&worker, now);
                effects.push(Effect::NotifyReady { worker });
            }
        }
        self.settle_slots();
        effects
    }
}
