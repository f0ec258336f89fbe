//! [`Engine`]: turns [`Command`]s into [`Event`]s and [`Effect`]s against the [`State`].
//!
//! Each step validates first and records second: a command that cannot be honoured produces
//! a reply (a verdict or an error) and no event. Events are applied to the state the moment
//! they are emitted, so later decisions in the same step see them (a completion frees the
//! slot that the same report's request for more work then fills).
//!
//! Rules the engine keeps, which make at-least-once execution effectively-once acceptance:
//! - a report about an attempt counts only with the token that attempt was handed out with,
//!   and a request under a registered worker id only with that worker's session: nobody can
//!   act as another worker or report about work that was not handed to them;
//! - a result is accepted for an item in flight from any attempt that was actually handed
//!   out (the first result wins; a slower attempt's later report gets `finished`);
//! - a failure or progress report counts only from the current attempt on its current
//!   worker (anything else gets `superseded`), so a stale worker cannot fail or prolong work
//!   that is now someone else's;
//! - an item is finished exactly once: finishing removes it from `work`, and every later
//!   report about it is answered from that absence;
//! - an attempt that ends without a result re-queues the item at the front of its queue
//!   until `max_attempts` hand-outs have been used, then fails it with the last reason.

use std::collections::{BTreeMap, BTreeSet};

use jetwork_shared::headers;
use jetwork_shared::protocol::{
    Outcome, OutcomeStatus, RegisterWorker, Registered, Report, RequestWork, Verdict, VerdictKind,
};
use jetwork_shared::{QueueName, Token, WorkId, WorkerId};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::{
    AssignmentRef, Command, Effect, Event, Millis, Policy, Publication, PublicationKey, Reply,
    ReplyError, RequestId, State,
};

/// Longest reason (from a worker or about one) kept in events and headers.
const MAX_REASON: usize = 1024;

/// A submission as the engine receives it (see [`Command::Submitted`]).
struct Submission {
    queue: QueueName,
    seq: u64,
    after: u64,
    msg_id: Option<String>,
    size: u64,
    unreadable: Option<String>,
}

/// The output of one [`Engine::step`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    /// To journal, in order, before any effect runs.
    pub events: Vec<Event>,
    /// To run once the events are durable.
    pub effects: Vec<Effect>,
}

/// The master's decision engine.
#[derive(Debug, Clone)]
pub struct Engine {
    state: State,
    policy: Policy,
    /// When each worker was last told that work is ready (soft: not journaled; it only
    /// throttles notifications). Cleared when the worker asks for work.
    notified: BTreeMap<WorkerId, Millis>,
    /// Requests for work held open until work arrives or their wait ends (soft: a request
    /// lives only as long as this leader; a new one answers none of them).
    parked: BTreeMap<WorkerId, Parked>,
    /// Draws attempt tokens (soft: seeded by each takeover; the tokens it draws are journaled
    /// in `WorkStarted`, so replay never needs it).
    tokens: ChaCha20Rng,
    /// The workers serving each queue (derived from the state, kept in step by `emit`): with
    /// thousands of workers, who serves a queue must not cost a scan of all of them.
    serving: BTreeMap<QueueName, BTreeSet<WorkerId>>,
    out: Output,
}

/// A request for work held open (a long poll).
#[derive(Debug, Clone)]
struct Parked {
    request: RequestId,
    slots: u32,
    until: Millis,
}

impl Engine {
    /// An engine over a replayed (or empty) state.
    pub fn new(state: State, policy: Policy) -> Self {
        let mut serving: BTreeMap<QueueName, BTreeSet<WorkerId>> = BTreeMap::new();
        for (id, worker) in &state.workers {
            for queue in &worker.queues {
                serving.entry(queue.clone()).or_default().insert(id.clone());
            }
        }
        Engine {
            serving,
            state,
            policy,
            notified: BTreeMap::new(),
            parked: BTreeMap::new(),
            tokens: ChaCha20Rng::from_seed([0; 32]),
            out: Output::default(),
        }
    }

    /// The current state, including the effect of events not yet journaled.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Handles one command.
    pub fn step(&mut self, command: Command) -> Output {
        let now = command.now();
        match command {
            Command::Takeover { epoch, leader, seed, now } => {
                self.tokens = ChaCha20Rng::from_seed(seed);
                self.takeover(epoch, leader, now)
            }
            Command::Submitted { queue, seq, after, msg_id, size, unreadable, now } => {
                let submission = Submission { queue, seq, after, msg_id, size, unreadable };
                self.submitted(submission, now)
            }
            Command::Register { request, msg, now } => self.register(request, msg, now),
            Command::RequestWork { request, msg, now } => self.request_work(request, msg, now),
            Command::Report { request, msg, now } => self.report(request, msg, now),
            Command::Tick { now } => self.tick(now),
            Command::Published { keys } => self.published(keys),
            Command::PayloadMissing { work_id, now } => self.payload_missing(work_id, now),
        }
        if let Some(now) = now {
            self.serve_parked(now);
        }
        std::mem::take(&mut self.out)
    }

    /// Workers to tell that work is waiting: for each queue with ready items, idle workers
    /// serving it until their free slots cover the ready items, skipping workers told less
    /// than `notify_interval` ago (their slots count as covered). Called by the runtime after
    /// each batch of commands and on every tick, which also re-sends lost notifications.
    pub fn notifications(&mut self, now: Millis) -> Vec<Effect> {
        let mut effects = Vec::new();
        for (queue, q) in self.state.queues.iter().filter(|(_, q)| !q.ready.is_empty()) {
            let mut needed = q.ready.len() as u64;
            let serving = self.serving.get(queue).into_iter().flatten();
            for (id, worker) in serving.filter_map(|id| Some((id, self.state.workers.get(id)?))) {
                if needed == 0 {
                    break;
                }
                if worker.free() == 0 {
                    continue;
                }
                if self.parked.contains_key(id) {
                    // Its open request is served directly; its slots are covered.
                    needed = needed.saturating_sub(u64::from(worker.free()));
                    continue;
                }
                let recently = self
                    .notified
                    .get(id)
                    .is_some_and(|at| now < at.saturating_add(self.policy.notify_interval));
                if !recently {
                    effects.push(Effect::NotifyReady { worker: id.clone() });
                    self.notified.insert(id.clone(), now);
                }
                needed = needed.saturating_sub(u64::from(worker.free()));
            }
        }
        effects
    }

    /// Records an event: applies it, queues it for the journal, and queues the publication
    /// it calls for, if any.
    fn emit(&mut self, event: Event) {
        if let Event::WorkerRegistered { worker, .. } | Event::WorkerLost { worker, .. } = &event {
            self.unindex(worker);
        }
        self.state.apply(&event);
        if let Event::WorkerRegistered { worker, queues, .. } = &event {
            for queue in queues {
                self.serving.entry(queue.clone()).or_default().insert(worker.clone());
            }
        }
        let key = match &event {
            Event::WorkCompleted { work_id, .. } | Event::WorkFailed { work_id, .. } => {
                Some(PublicationKey::Result(work_id.clone()))
            }
            Event::SubmissionRejected { seq, .. } => Some(PublicationKey::Rejection(*seq)),
            _ => None,
        };
        self.out.events.push(event);
        if let Some(key) = key {
            self.out.effects.push(Effect::Publish { key });
        }
    }

    /// How many distinct queues would be served if `worker` served `queues` from now on.
    fn served_after(&self, worker: &WorkerId, queues: &[QueueName]) -> usize {
        let only_this_one =
            |serving: &BTreeSet<WorkerId>| serving.len() == 1 && serving.contains(worker);
        let kept = self.serving.values().filter(|serving| !only_this_one(serving)).count();
        let added =
            queues.iter().filter(|q| self.serving.get(*q).is_none_or(&only_this_one)).count();
        kept + added
    }

    /// Takes `worker` out of the index of who serves what.
    fn unindex(&mut self, worker: &WorkerId) {
        let Some(w) = self.state.workers.get(worker) else { return };
        for queue in &w.queues {
            if let Some(serving) = self.serving.get_mut(queue) {
                serving.remove(worker);
                if serving.is_empty() {
                    self.serving.remove(queue);
                }
            }
        }
    }

    /// Checks that the index of who serves what matches the state (tests call it after every
    /// step).
    #[cfg(test)]
    pub(crate) fn check_index(&self) -> Result<(), String> {
        let mut derived: BTreeMap<QueueName, BTreeSet<WorkerId>> = BTreeMap::new();
        for (id, worker) in &self.state.workers {
            for queue in &worker.queues {
                derived.entry(queue.clone()).or_default().insert(id.clone());
            }
        }
        if derived != self.serving {
            return Err(format!("serving index {:?} != derived {derived:?}", self.serving));
        }
        Ok(())
    }

    /// The queues some registered worker serves.
    pub fn served_queues(&self) -> impl Iterator<Item = &QueueName> {
        self.serving.keys()
    }

    /// Free slots of all workers serving `queue` (a worker serving several queues counts for
    /// each: an upper bound used to decide how far to read ahead).
    pub fn free_slots(&self, queue: &QueueName) -> u64 {
        let serving = self.serving.get(queue).into_iter().flatten();
        serving.filter_map(|id| self.state.workers.get(id)).map(|w| u64::from(w.free())).sum()
    }

    fn reply(&mut self, request: RequestId, reply: Reply) {
        self.out.effects.push(Effect::Reply { request, reply });
    }

    fn error(&mut self, request: RequestId, code: u16, message: String) {
        self.reply(request, Reply::Error(ReplyError { code, message }));
    }

    fn takeover(&mut self, epoch: u64, leader: String, now: Millis) {
        self.notified.clear();
        self.parked.clear();
        self.emit(Event::EpochStarted { epoch, leader: leader.clone(), at: now });
        self.out.effects.push(Effect::Announce { epoch, leader });
        // Whatever the previous leader finished but had not yet published goes out now; the
        // results stream refuses a second copy, so publishing twice is harmless.
        let keys: Vec<_> = self.state.unpublished.keys().cloned().collect();
        self.out.effects.extend(keys.into_iter().map(|key| Effect::Publish { key }));
    }

    fn submitted(&mut self, submission: Submission, now: Millis) {
        let Submission { queue, seq, after, msg_id, size, unreadable } = submission;
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
        let rejection = match &parsed {
            Err(reason) => Some(reason.clone()),
            Ok(work_id) if self.state.work.contains_key(work_id) => Some(format!(
                "work id {work_id} is still in flight (submitted again after the dedup horizon)"
            )),
            Ok(work_id)
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
            Ok(_) => None,
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
                self.emit(Event::WorkAccepted { work_id, queue, seq, size, at: now })
            }
            (None, Err(_)) => {}
        }
    }

    fn register(&mut self, request: RequestId, msg: RegisterWorker, now: Millis) {
        if msg.capacity == 0 || msg.capacity > self.policy.max_capacity {
            let max = self.policy.max_capacity;
            return self.error(
                request,
                400,
                format!("capacity must be 1..={max}, not {}", msg.capacity),
            );
        }
        let mut queues = msg.queues;
        queues.sort();
        queues.dedup();
        let max_queues = self.policy.max_queues_per_worker as usize;
        if queues.is_empty() || queues.len() > max_queues {
            let message = format!("a worker must serve 1 to {max_queues} queues");
            return self.error(request, 400, message);
        }
        let worker = msg.worker_id;
        let session = msg.session;
        if let Some(existing) = self.state.workers.get(&worker) {
            if existing.session != session {
                if now < existing.last_seen.saturating_add(self.policy.worker_timeout) {
                    let message = format!(
                        "worker id {worker} is in use by another live worker process (a new \
                         process may take it once that one has been silent for {} ms)",
                        self.policy.worker_timeout
                    );
                    return self.error(request, 409, message);
                }
                // The old process is gone (silent past the timeout): the id is free again.
                self.lose_worker(&worker, now);
            }
        } else if self.state.workers.len() >= self.policy.max_workers as usize {
            let message = format!("the master serves at most {} workers", self.policy.max_workers);
            return self.error(request, 503, message);
        }
        let changed = match self.state.workers.get(&worker) {
            None => true,
            Some(w) => w.queues != queues || w.capacity != msg.capacity,
        };
        if changed && self.served_after(&worker, &queues) > self.policy.max_served_queues as usize {
            let max = self.policy.max_served_queues;
            let message = format!("the master serves at most {max} distinct queues");
            return self.error(request, 503, message);
        }
        if changed {
            self.emit(Event::WorkerRegistered {
                worker: worker.clone(),
                session,
                queues: queues.clone(),
                capacity: msg.capacity,
                at: now,
            });
        } else {
            self.touch(&worker, now);
        }
        let revoked = msg
            .running
            .into_iter()
            .filter(|held| !self.is_current(&worker, &held.work_id, held.attempt))
            .collect();
        let free = self.state.workers.get(&worker).map_or(0, |w| w.free());
        let work_ready = free > 0 && queues.iter().any(|q| self.state.ready_len(q) > 0);
        let epoch = self.state.epoch;
        self.reply(request, Reply::Registered(Registered { epoch, revoked, work_ready }));
    }

    fn request_work(&mut self, request: RequestId, msg: RequestWork, now: Millis) {
        match self.state.workers.get(&msg.worker_id) {
            None => {
                let message = format!("unknown worker {}: register first", msg.worker_id);
                return self.error(request, 404, message);
            }
            Some(w) if w.session != msg.session => {
                return self.error(request, 403, wrong_session(&msg.worker_id));
            }
            Some(_) => {}
        }
        self.touch(&msg.worker_id, now);
        self.notified.remove(&msg.worker_id);
        // A newer request replaces an open one (the worker gave up on it, or re-sent it).
        if let Some(old) = self.parked.remove(&msg.worker_id) {
            self.reply(old.request, Reply::Grant { assignments: Vec::new() });
        }
        let assignments = self.assign(&msg.worker_id, msg.slots, now);
        let wait = msg.wait_ms.min(self.policy.max_request_wait);
        if assignments.is_empty() && wait > 0 && msg.slots > 0 {
            let parked = Parked { request, slots: msg.slots, until: now.saturating_add(wait) };
            self.parked.insert(msg.worker_id, parked);
            return;
        }
        self.reply(request, Reply::Grant { assignments });
    }

    /// Answers open requests: with work as soon as some is ready for them, empty once their
    /// wait is over or their worker is gone. Runs after every command, so work accepted or
    /// re-queued by it is handed out in the same journal write.
    fn serve_parked(&mut self, now: Millis) {
        if self.parked.is_empty() {
            return;
        }
        let workers: Vec<WorkerId> = self.parked.keys().cloned().collect();
        for worker in workers {
            let Some(parked) = self.parked.get(&worker) else { continue };
            let (request, slots, until) = (parked.request, parked.slots, parked.until);
            let ready = self.state.workers.get(&worker).is_some_and(|w| {
                w.free() > 0 && w.queues.iter().any(|q| self.state.ready_len(q) > 0)
            });
            let gone = !self.state.workers.contains_key(&worker);
            if !ready && !gone && now < until {
                continue;
            }
            self.parked.remove(&worker);
            let assignments = if ready { self.assign(&worker, slots, now) } else { Vec::new() };
            self.reply(request, Reply::Grant { assignments });
        }
    }

    fn report(&mut self, request: RequestId, msg: Report, now: Millis) {
        // A worker forgotten meanwhile may still report: its results are worth taking (their
        // tokens prove them). A known worker id must come with its session.
        let known = match self.state.workers.get(&msg.worker_id) {
            None => false,
            Some(w) if w.session != msg.session => {
                return self.error(request, 403, wrong_session(&msg.worker_id));
            }
            Some(_) => true,
        };
        if known {
            self.touch(&msg.worker_id, now);
        }
        let verdicts = msg
            .outcomes
            .into_iter()
            .map(|outcome| self.outcome(&msg.worker_id, outcome, now))
            .collect();
        let assignments = if known && msg.slots > 0 {
            self.notified.remove(&msg.worker_id);
            self.assign(&msg.worker_id, msg.slots, now)
        } else {
            Vec::new()
        };
        self.reply(request, Reply::Report { verdicts, assignments });
    }

    fn outcome(&mut self, worker: &WorkerId, outcome: Outcome, now: Millis) -> Verdict {
        let Outcome { work_id, attempt, token, status, result, reason } = outcome;
        let mut verdict = Verdict {
            work_id: work_id.clone(),
            attempt,
            verdict: VerdictKind::Finished,
            deadline_ms: None,
            timeout_ms: None,
            reason: None,
        };
        let Some(work) = self.state.work.get(&work_id) else {
            return verdict; // Finished earlier (or never existed): nothing to do.
        };
        if attempt == 0 || attempt > work.attempt {
            verdict.verdict = VerdictKind::Rejected;
            verdict.reason = Some(format!(
                "attempt {attempt} was never handed out (latest is {})",
                work.attempt
            ));
            return verdict;
        }
        if work.tokens.get(attempt as usize - 1) != Some(&token) {
            verdict.verdict = VerdictKind::Rejected;
            verdict.reason = Some(format!("wrong token for attempt {attempt}"));
            return verdict;
        }
        let current = self.is_current(worker, &work_id, attempt);
        match status {
            OutcomeStatus::Completed => {
                let limit = self.policy.max_result;
                if result.len() as u64 > limit {
                    let why = format!(
                        "result of {} bytes exceeds the limit of {limit} bytes",
                        result.len()
                    );
                    if current {
                        self.end_attempt(&work_id, why.clone(), now);
                    }
                    verdict.verdict = VerdictKind::Rejected;
                    verdict.reason = Some(why);
                } else {
                    self.emit(Event::WorkCompleted { work_id, attempt, result, at: now });
                    verdict.verdict = VerdictKind::Accepted;
                }
            }
            OutcomeStatus::Failed if current => {
                let why = reason.unwrap_or_else(|| "failed (no reason given)".to_owned());
                self.end_attempt(&work_id, headers::sanitize(&why, MAX_REASON), now);
                verdict.verdict = VerdictKind::Accepted;
            }
            OutcomeStatus::Progress if current => {
                let deadline = now.saturating_add(self.policy.work_timeout);
                self.emit(Event::WorkProgressed { work_id, attempt, deadline });
                verdict.verdict = VerdictKind::Accepted;
                verdict.deadline_ms = Some(deadline);
                verdict.timeout_ms = Some(self.policy.work_timeout);
            }
            OutcomeStatus::Failed | OutcomeStatus::Progress => {
                verdict.verdict = VerdictKind::Superseded;
            }
        }
        verdict
    }

    /// True if `attempt` of `work_id` is running right now on `worker`.
    fn is_current(&self, worker: &WorkerId, work_id: &WorkId, attempt: u32) -> bool {
        self.state.work.get(work_id).is_some_and(|w| {
            w.attempt == attempt && w.running.as_ref().is_some_and(|r| &r.worker == worker)
        })
    }

    /// Hands up to `slots` ready items from the worker's queues to it, taking the queues in
    /// turn so one busy queue cannot starve another.
    fn assign(&mut self, worker: &WorkerId, slots: u32, now: Millis) -> Vec<AssignmentRef> {
        let Some(w) = self.state.workers.get(worker) else { return Vec::new() };
        let limit = slots.min(w.free()).min(self.policy.max_grant) as usize;
        let queues = w.queues.clone();
        let mut assignments: Vec<AssignmentRef> = Vec::new();
        let mut bytes = 0u64;
        'rounds: while assignments.len() < limit {
            let mut progressed = false;
            for queue in &queues {
                if assignments.len() >= limit {
                    break 'rounds;
                }
                let Some(work_id) =
                    self.state.queues.get(queue).and_then(|q| q.ready.front()).cloned()
                else {
                    continue;
                };
                let Some(work) = self.state.work.get(&work_id) else { continue };
                if !assignments.is_empty() && bytes + work.size > self.policy.max_grant_bytes {
                    break 'rounds;
                }
                bytes += work.size;
                let (seq, attempt) = (work.seq, work.attempt + 1);
                let deadline = now.saturating_add(self.policy.work_timeout);
                let token = self.next_token();
                self.emit(Event::WorkStarted {
                    work_id: work_id.clone(),
                    worker: worker.clone(),
                    attempt,
                    deadline,
                    token,
                });
                assignments.push(AssignmentRef {
                    work_id,
                    queue: queue.clone(),
                    seq,
                    attempt,
                    deadline,
                    timeout: self.policy.work_timeout,
                    token,
                });
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        assignments
    }

    /// Ends the running attempt of `work_id` without a result: re-queue, or fail for good
    /// once the attempts are used up.
    fn end_attempt(&mut self, work_id: &WorkId, reason: String, now: Millis) {
        let Some(work) = self.state.work.get(work_id) else { return };
        let attempt = work.attempt;
        if attempt >= self.policy.max_attempts {
            let reason = format!("gave up after {attempt} attempts; last: {reason}");
            self.emit(Event::WorkFailed { work_id: work_id.clone(), attempt, reason, at: now });
        } else {
            self.emit(Event::WorkRequeued { work_id: work_id.clone(), attempt, reason });
        }
    }

    /// Journals that a worker was heard from, at most once per `seen_resolution`.
    fn touch(&mut self, worker: &WorkerId, now: Millis) {
        let stale = self
            .state
            .workers
            .get(worker)
            .is_some_and(|w| now >= w.last_seen.saturating_add(self.policy.seen_resolution));
        if stale {
            self.emit(Event::WorkerSeen { worker: worker.clone(), at: now });
        }
    }

    fn tick(&mut self, now: Millis) {
        let expired: Vec<WorkId> = self
            .state
            .deadlines
            .iter()
            .take_while(|(deadline, _)| *deadline <= now)
            .map(|(_, id)| id.clone())
            .collect();
        for work_id in self.newest_first(expired) {
            let worker = self
                .state
                .work
                .get(&work_id)
                .and_then(|w| w.running.as_ref())
                .map_or_else(String::new, |r| r.worker.to_string());
            let reason = format!(
                "timed out on worker {worker}: no result or progress within {} ms",
                self.policy.work_timeout
            );
            self.end_attempt(&work_id, reason, now);
        }
        let silent: Vec<WorkerId> = self
            .state
            .workers
            .iter()
            .filter(|(_, w)| now >= w.last_seen.saturating_add(self.policy.worker_timeout))
            .map(|(id, _)| id.clone())
            .collect();
        for worker in silent {
            self.lose_worker(&worker, now);
        }
    }

    /// Forgets a worker that has been silent too long, re-queueing what it was running.
    fn lose_worker(&mut self, worker: &WorkerId, now: Millis) {
        let Some(w) = self.state.workers.get(worker) else { return };
        let reason = format!(
            "worker {worker} lost: not heard from for {} ms",
            now.saturating_sub(w.last_seen)
        );
        let running: Vec<WorkId> = w.running.iter().cloned().collect();
        for work_id in self.newest_first(running) {
            self.end_attempt(&work_id, reason.clone(), now);
        }
        self.notified.remove(worker);
        // A request it left open is answered now (empty): whoever takes the id next must not
        // see work handed out on it.
        if let Some(parked) = self.parked.remove(worker) {
            self.reply(parked.request, Reply::Grant { assignments: Vec::new() });
        }
        self.emit(Event::WorkerLost { worker: worker.clone(), reason, at: now });
    }

    /// A fresh attempt token.
    fn next_token(&mut self) -> Token {
        let high = u128::from(self.tokens.next_u64());
        Token::from_u128(high << 64 | u128::from(self.tokens.next_u64()))
    }

    /// Orders items for re-queueing: each goes to the front of its queue, so handling the
    /// newest submission first leaves the oldest at the very front, as it was submitted.
    fn newest_first(&self, mut ids: Vec<WorkId>) -> Vec<WorkId> {
        ids.sort_by_key(|id| std::cmp::Reverse(self.state.work.get(id).map_or(0, |w| w.seq)));
        ids
    }

    fn published(&mut self, keys: Vec<PublicationKey>) {
        let keys: Vec<_> =
            keys.into_iter().filter(|k| self.state.unpublished.contains_key(k)).collect();
        if !keys.is_empty() {
            self.emit(Event::Published { keys });
        }
    }

    fn payload_missing(&mut self, work_id: WorkId, now: Millis) {
        let Some(work) = self.state.work.get(&work_id) else { return };
        let (attempt, seq) = (work.attempt, work.seq);
        let reason =
            format!("payload is gone from JETWORK_SUBMIT (sequence {seq} was purged or deleted)");
        self.emit(Event::WorkFailed { work_id, attempt, reason, at: now });
    }
}

fn wrong_session(worker: &WorkerId) -> String {
    format!("worker id {worker} is registered by another worker process (wrong session)")
}

impl Publication {
    /// The `JETWORK_SUBMIT` sequence of the submission it answers: it identifies the run.
    pub fn submit_seq(&self) -> u64 {
        match self {
            Publication::Completed { seq, .. }
            | Publication::Failed { seq, .. }
            | Publication::Rejected { seq, .. } => *seq,
        }
    }
}
