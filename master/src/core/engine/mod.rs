//! [`Engine`]: turns [`Command`]s into [`Event`]s and [`Effect`]s against the [`State`].
//!
//! Each step validates first and records second: a command that cannot be honoured produces
//! a reply (a verdict or an error) and no event. Events are applied to the state the moment
//! they are emitted, so later decisions in the same step see them (a completion frees the
//! slot that the same report's request for more work then fills).
//!
//! The rules, by concern: [`intake`] (which submissions become work, and the cursor),
//! [`workers`] (registration, sessions, limits, liveness), [`dispatch`] (grants, long polls,
//! notifications, priorities), [`outcomes`] (reports, deadlines, back-offs), [`expiry`]
//! (`Jetwork-Expires`), [`admin`] (cancel, retry, purge, pause, and the lookups they need),
//! [`schedules`] (recurring schedules and their ticks). Together they make at-least-once
//! execution effectively-once acceptance:
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
//!   (after its back-off, for a reported failure) until its `max_attempts` hand-outs (its
//!   submission's `Jetwork-Max-Attempts`, else its queue's) have been used, then fails it
//!   with the last reason.

mod admin;
mod dispatch;
mod expiry;
mod forgetting;
mod intake;
mod notices;
mod outcomes;
mod parked;
mod schedules;
mod workers;

use std::collections::BTreeMap;

use jetwork_shared::fast_hash::FastMap;
use jetwork_shared::protocol::{StatusQuery, StatusReport};
use jetwork_shared::{Login, QueueName, Token, WorkId, WorkerId};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::{
    AssignmentRef, Availability, AvailableWorkers, Command, Effect, Event, FreeSlots, GrantWindows,
    Liveness, LoginCounts, Millis, Policy, PublicationKey, RateLimits, ReadyQueues, Reply,
    ReplyError, RequestId, RunningCounts, Serving, Slots, State, WaitingCounts, Work, Worker,
};
use admin::Asked;
pub use expiry::EXPIRED;
use notices::Notices;
use parked::{Parked, ParkedRequests};

/// Longest reason (from a worker or about one) kept in events and headers.
const MAX_REASON: usize = 1024;

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
    /// throttles notifications). Cleared when the worker asks for work, and once older than
    /// `notify_interval`.
    notified: Notices,
    /// Requests for work held open until work arrives or their wait ends (soft: a request
    /// lives only as long as this leader; a new one answers none of them).
    parked: ParkedRequests,
    /// Draws attempt tokens (soft: seeded by each takeover; the tokens it draws are journaled
    /// in `WorkStarted`, so replay never needs it).
    tokens: ChaCha20Rng,
    /// Who serves each queue (derived from the state, kept in step by `emit`).
    serving: Serving,
    /// Attempts running per queue, for concurrency limits (derived, kept in step by `emit`).
    running: RunningCounts,
    /// Items waiting per queue and in all, for the limits on waiting work (derived, kept in
    /// step by `emit`).
    waiting: WaitingCounts,
    /// The queues with ready items (derived from the state; see `ready_queues.rs`).
    ready: ReadyQueues,
    /// Workers registered per login, for its limit (derived, kept in step by `emit`).
    logins: LoginCounts,
    /// How many attempts each worker may hold as far as its track record goes (soft: a new
    /// leader starts every worker afresh; see `grant_window.rs`).
    windows: GrantWindows,
    /// Free slots per queue and in all (derived from the state and the windows, moved by
    /// [`settle_slots`](Self::settle_slots) after events and window changes; see
    /// `free_slots.rs`).
    free: FreeSlots,
    /// The workers whose free slots or standing changed since the counts and lists were last
    /// settled, each with what they hold for it ([`settle_slots`](Self::settle_slots)).
    moved: FastMap<WorkerId, Slots>,
    /// By queue, the workers with free slots holding a request or idle (derived from the
    /// state, the held requests, the notices and the windows; kept in step with all four: see
    /// `available_workers.rs`).
    available: AvailableWorkers,
    /// When each worker was last heard from (soft: see `liveness.rs`).
    liveness: Liveness,
    /// Start rates used per queue (soft: a new leader starts with full buckets).
    rates: RateLimits,
    /// Operators' requests waiting for what the runtime reads for them (soft: a request lives
    /// only as long as this leader; see `lookup.rs`).
    lookups: BTreeMap<RequestId, Asked>,
    out: Output,
}

impl Engine {
    /// An engine over a replayed (or empty) state.
    pub fn new(state: State, policy: Policy) -> Self {
        let mut engine = Engine {
            serving: Serving::of(&state),
            running: RunningCounts::of(&state, &policy),
            waiting: WaitingCounts::of(&state),
            ready: ReadyQueues::of(&state),
            logins: LoginCounts::of(&state),
            windows: GrantWindows::default(),
            free: FreeSlots::default(),
            moved: FastMap::default(),
            available: AvailableWorkers::default(),
            liveness: Liveness::default(),
            rates: RateLimits::default(),
            state,
            policy,
            notified: Notices::default(),
            parked: ParkedRequests::default(),
            tokens: ChaCha20Rng::from_seed([0; 32]),
            lookups: BTreeMap::new(),
            out: Output::default(),
        };
        (engine.free, engine.available) = engine.count_available();
        engine
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
            Command::Takeover { epoch, leader, seed, submitted_through, now } => {
                self.tokens = ChaCha20Rng::from_seed(seed);
                self.takeover(epoch, leader, submitted_through, now)
            }
            Command::Submitted(submission) => self.submitted(submission),
            Command::Register { request, msg, login, now } => {
                self.register(request, msg, login, now)
            }
            Command::RequestWork { request, msg, login, now } => {
                self.request_work(request, msg, login, now)
            }
            Command::Report { request, msg, unreadable, login, now } => {
                self.report(request, msg, unreadable, login, now)
            }
            Command::Deregister { request, msg, login, now } => {
                self.deregister(request, msg, login, now)
            }
            Command::Tick { now } => {
                self.tick(now);
                self.fire_schedules(now);
            }
            Command::Published { keys } => self.published(keys),
            Command::PayloadMissing { work_id, now } => self.payload_missing(work_id, now),
            Command::Cancel { request, work_id, reason, now } => {
                self.cancel(request, work_id, reason, now)
            }
            Command::Retry { request, work_id, queue, .. } => self.retry(request, work_id, queue),
            Command::RetryAll { request, queue, state, since_ms, limit, .. } => {
                self.retry_all(request, queue, state, since_ms, limit)
            }
            Command::Purge { request, queue, .. } => self.purge(request, queue),
            Command::LookedUp { request, found, now } => self.looked_up(request, found, now),
            Command::Pause { request, queue, now } => self.pause(request, queue, true, now),
            Command::Resume { request, queue, now } => self.pause(request, queue, false, now),
            Command::ScheduleAdd { request, name, queue, cadence, payload, now } => {
                self.schedule_add(request, name, queue, cadence, payload, now)
            }
            Command::ScheduleRemove { request, name, now } => {
                self.schedule_remove(request, name, now)
            }
            Command::SubmissionsStored { work_ids } => self.submissions_stored(work_ids),
            Command::QueuesStored { first_stored, now } => self.forget_queues(first_stored, now),
        }
        if let Some(now) = now {
            self.serve_parked(now);
        }
        self.settle_slots();
        std::mem::take(&mut self.out)
    }

    /// Records an event: applies it, queues it for the journal, and queues the publication
    /// it calls for, if any.
    pub(super) fn emit(&mut self, event: Event) {
        // The worker whose free slots the event may change: what they were before it, moved to
        // what they are after it; a registration or loss (its queues change too) takes them
        // out whole before and puts them back in after.
        let whole = matches!(event, Event::WorkerRegistered { .. } | Event::WorkerLost { .. });
        let slots_of = match &event {
            Event::WorkerRegistered { worker, .. }
            | Event::WorkerLost { worker, .. }
            | Event::WorkStarted { worker, .. } => Some(worker.clone()),
            Event::WorkRequeued { work_id, .. }
            | Event::WorkCompleted { work_id, .. }
            | Event::WorkFailed { work_id, .. }
            | Event::WorkCancelled { work_id, .. } => self
                .state
                .work
                .get(work_id)
                .and_then(|w| w.running.as_ref())
                .map(|r| r.worker.clone()),
            _ => None,
        };
        match &slots_of {
            Some(worker) if whole => {
                self.settle_slots();
                self.slots_out(worker);
            }
            Some(worker) => self.slots_changing(worker),
            None => {}
        }
        // The index follows registrations and losses: out with the old queues, in with new.
        let mut left_queues = Vec::new();
        if let Event::WorkerRegistered { worker, .. } | Event::WorkerLost { worker, .. } = &event {
            if let Some(w) = self.state.workers.get(worker) {
                self.serving.remove(worker, &w.queues);
                self.logins.remove(w.login.as_ref());
                left_queues = w.queues.clone();
            }
        }
        if let Event::WorkerLost { worker, .. } = &event {
            self.windows.forget(worker);
            self.liveness.forget(worker);
        }
        // Whether the item the event is about runs, before and after it (only looked at when
        // some queue's concurrency is limited: it costs clones on every hand-out).
        let item = match &event {
            Event::WorkStarted { work_id, .. }
            | Event::WorkRequeued { work_id, .. }
            | Event::WorkCompleted { work_id, .. }
            | Event::WorkFailed { work_id, .. }
            | Event::WorkCancelled { work_id, .. }
                if self.running.any_limited() =>
            {
                self.state
                    .work
                    .get(work_id)
                    .filter(|w| self.running.counts(&w.queue))
                    .map(|w| (work_id.clone(), w.queue.clone(), w.running.is_some()))
            }
            _ => None,
        };
        let watched = WaitingCounts::watch(&self.state, &event);
        let ready = ReadyQueues::watch(&self.state, &event);
        self.state.apply(&event);
        self.waiting.settle(&self.state, watched);
        self.ready.settle(&self.state, ready);
        if let Some((work_id, queue, was)) = item {
            let is = self.state.work.get(&work_id).is_some_and(|w| w.running.is_some());
            self.running.change(&queue, was, is);
        }
        if let Event::WorkerRegistered { worker, queues, login, .. } = &event {
            self.serving.add(worker, queues);
            self.logins.add(login.as_ref());
        }
        if let Some(worker) = slots_of.as_ref().filter(|_| whole) {
            self.slots_in(worker);
        }
        // A queue nobody serves any more leaves the free-slot counts and the lists (it would
        // be 0 and empty anyway).
        for queue in left_queues {
            if self.serving.workers(&queue).next().is_none() {
                self.free.forget(&queue);
                self.available.forget(&queue);
            }
        }
        let key = match &event {
            Event::WorkCompleted { work_id, .. }
            | Event::WorkFailed { work_id, .. }
            | Event::WorkCancelled { work_id, .. } => Some(PublicationKey::Result(work_id.clone())),
            Event::SubmissionRejected { seq, .. } => Some(PublicationKey::Rejection(*seq)),
            _ => None,
        };
        self.out.events.push(event);
        if let Some(key) = key {
            self.out.effects.push(Effect::Publish { key });
        }
    }

    /// The queues whose purged submissions are still to be read (and cancelled): they are
    /// read whether or not a worker serves them.
    pub fn purging_queues(&self) -> impl Iterator<Item = &QueueName> {
        self.state.queues.iter().filter(|(_, q)| q.purging()).map(|(queue, _)| queue)
    }

    /// The queues some registered worker serves, in name order.
    pub fn served_queues(&self) -> impl Iterator<Item = &QueueName> {
        self.serving.queues()
    }

    /// How many queues some registered worker serves.
    pub fn served_count(&self) -> usize {
        self.serving.len()
    }

    /// The next time something waiting becomes due without any input: a back-off or delay
    /// ends, or an item expires. The runtime ticks then (besides its regular ticks), so a
    /// delayed job starts on time however coarse the tick interval is.
    pub fn next_due(&self) -> Option<Millis> {
        let waiting = self.state.waiting.first().map(|(at, _)| *at);
        // A running item past its expiry stays indexed until it ends (it started in time):
        // the first one that is not running is the next to expire.
        let expiring = self
            .state
            .expiring
            .iter()
            .find(|(_, id)| self.state.work.get(id).is_some_and(|w| w.running.is_none()))
            .map(|(at, _)| *at);
        waiting.into_iter().chain(expiring).min()
    }

    /// Free slots of all workers serving `queue` (a worker serving several queues counts for
    /// each: an upper bound used to decide how far to read ahead).
    pub fn free_slots(&self, queue: &QueueName) -> u64 {
        self.free.get(queue)
    }

    /// Free slots of all workers.
    pub fn free_slots_total(&self) -> u64 {
        self.free.total()
    }

    /// Takes `worker`'s free slots out of the counts and lists whole (before an event that
    /// changes its queues too: its registration or loss; other changes are noted by
    /// [`slots_changing`](Self::slots_changing) and moved in place by
    /// [`settle_slots`](Self::settle_slots)).
    fn slots_out(&mut self, worker: &WorkerId) {
        if let Some(w) = self.state.workers.get(worker) {
            let free = self.free_of(worker, w);
            self.free.remove(&w.queues, free);
            self.available.remove(worker, &w.queues, (free, self.standing(worker)));
        }
    }

    /// Puts `worker`'s free slots back into the counts and lists whole (after its
    /// registration or loss: see [`slots_out`](Self::slots_out)).
    fn slots_in(&mut self, worker: &WorkerId) {
        if let Some(w) = self.state.workers.get(worker) {
            let free = self.free_of(worker, w);
            self.free.add(&w.queues, free);
            self.available.add(worker, &w.queues, (free, self.standing(worker)));
        }
    }

    /// `worker`'s free slots and where it stands. None for a worker not registered.
    fn slots_now(&self, worker: &WorkerId) -> Option<Slots> {
        let w = self.state.workers.get(worker)?;
        Some((self.free_of(worker, w), self.standing(worker)))
    }

    /// Before a change to `worker`'s free slots or standing (not its queues: a registration or
    /// a loss goes out and back in whole): notes what the counts and lists hold for it, unless
    /// it changed already since they were last settled. They are moved once, by
    /// [`settle_slots`](Self::settle_slots): a report of 16 outcomes that hands out 16 new
    /// attempts moves a worker serving 64 queues once (or not at all), not 32 times 64.
    fn slots_changing(&mut self, worker: &WorkerId) {
        if !self.moved.contains_key(worker) {
            if let Some(before) = self.slots_now(worker) {
                self.moved.insert(worker.clone(), before);
            }
        }
    }

    /// Moves the free slots of the workers noted by [`slots_changing`](Self::slots_changing)
    /// in the counts and lists, from what they held to what they are now: the same as out and
    /// back in, at a fraction of the cost for the common change (a hand-out or an outcome moves
    /// an idle worker's free slots by one). Called before the counts or lists are read: by
    /// the end of every step and of [`notifications`](Self::notifications) they are exact.
    pub(super) fn settle_slots(&mut self) {
        if self.moved.is_empty() {
            return;
        }
        let moved = std::mem::take(&mut self.moved);
        for (worker, before) in &moved {
            let Some(w) = self.state.workers.get(worker) else { continue };
            let after = (self.free_of(worker, w), self.standing(worker));
            if after != *before {
                self.free.change(&w.queues, before.0, after.0);
                self.available.change(worker, &w.queues, *before, after);
            }
        }
        // The map's room is kept for the next step.
        self.moved = moved;
        self.moved.clear();
    }

    /// Where `worker` stands: holding a request, told of work, or neither.
    fn standing(&self, worker: &WorkerId) -> Availability {
        if self.parked.contains(worker) {
            Availability::Held
        } else if self.notified.contains(worker) {
            Availability::Notified
        } else {
            Availability::Idle
        }
    }

    /// The counts of free slots and the lists of available workers, recomputed from the
    /// state, the held requests, the notices and the windows.
    fn count_available(&self) -> (FreeSlots, AvailableWorkers) {
        let mut free = FreeSlots::default();
        let mut available = AvailableWorkers::default();
        for (id, w) in &self.state.workers {
            let slots = self.free_of(id, w);
            free.add(&w.queues, slots);
            available.add(id, &w.queues, (slots, self.standing(id)));
        }
        (free, available)
    }

    /// Holds `worker`'s request open (a long poll); one it held before is answered empty.
    fn hold(&mut self, worker: &WorkerId, parked: Parked) {
        self.slots_changing(worker);
        let old = self.parked.insert(worker.clone(), parked);
        if let Some(old) = old {
            self.reply_to_worker(old.request, Reply::Grant { assignments: Vec::new() }, false);
        }
    }

    /// Takes `worker`'s held request, if it has one (the caller answers it).
    fn unhold(&mut self, worker: &WorkerId) -> Option<Parked> {
        if !self.parked.contains(worker) {
            return None;
        }
        self.slots_changing(worker);
        self.parked.remove(worker)
    }

    /// `worker` was told that work is ready.
    fn notice_sent(&mut self, worker: &WorkerId, now: Millis) {
        self.slots_changing(worker);
        self.notified.insert(worker.clone(), now);
    }

    /// `worker`'s notice is over: it asked, or it was told long enough ago.
    fn notice_over(&mut self, worker: &WorkerId) {
        if !self.notified.contains(worker) {
            return;
        }
        self.slots_changing(worker);
        self.notified.remove(worker);
    }

    /// Attempts worker `id` may hold at once: the least of the capacity it declared, its
    /// login's `max_slots`, and its grant window (`grant_window.rs`).
    pub fn slot_limit(&self, id: &WorkerId, w: &Worker) -> u32 {
        let held = u32::try_from(w.running.len()).unwrap_or(u32::MAX);
        let window = self.windows.get(id, held, self.policy.initial_window);
        w.capacity.min(self.policy.max_slots_of(w.login.as_ref())).min(window)
    }

    /// When worker `id` was last heard from: under this leader, or as the state records it
    /// (its registration, the takeover), whichever is later.
    pub fn last_heard(&self, id: &WorkerId, w: &Worker) -> Millis {
        self.liveness.last(id, w.last_seen)
    }

    /// The leader's view for `jetwork.master.status` ([`State::status`], with each listed
    /// worker's `last_seen_ago_ms` as this leader heard it).
    pub fn status(&self, now: Millis, query: StatusQuery) -> StatusReport {
        let mut report = self.state.status(now, query);
        for listed in &mut report.workers {
            if let Some(w) = self.state.workers.get(&listed.worker_id) {
                listed.last_seen_ago_ms = now.saturating_sub(self.last_heard(&listed.worker_id, w));
            }
        }
        report
    }

    /// Slots of worker `id` not taken by running attempts, within its [`slot_limit`](Self::slot_limit).
    pub fn free_of(&self, id: &WorkerId, w: &Worker) -> u32 {
        let held = u32::try_from(w.running.len()).unwrap_or(u32::MAX);
        self.slot_limit(id, w).saturating_sub(held)
    }

    /// An outcome of `worker`'s was accepted: its window grows.
    pub(super) fn outcome_accepted(&mut self, worker: &WorkerId) {
        let Some(w) = self.state.workers.get(worker) else { return };
        let held = u32::try_from(w.running.len()).unwrap_or(u32::MAX);
        let ceiling = w.capacity.min(self.policy.max_slots_of(w.login.as_ref()));
        self.slots_changing(worker);
        self.windows.grow(worker, held, self.policy.initial_window, ceiling);
    }

    /// An attempt on `worker` missed its deadline: its window halves.
    pub(super) fn deadline_missed(&mut self, worker: &WorkerId) {
        let Some(w) = self.state.workers.get(worker) else { return };
        let held = u32::try_from(w.running.len()).unwrap_or(u32::MAX);
        self.slots_changing(worker);
        self.windows.shrink(worker, held, self.policy.initial_window);
    }

    /// Checks that the index of who serves what matches the state (the tests call it after
    /// every step).
    #[cfg(test)]
    pub(crate) fn check_index(&self) -> Result<(), String> {
        self.serving.check(&self.state)?;
        self.running.check(&self.state)?;
        self.waiting.check(&self.state)?;
        self.ready.check(&self.state)?;
        if !self.moved.is_empty() {
            return Err(format!("free slots not settled for {:?}", self.moved.keys()));
        }
        self.logins.check(&self.state)?;
        let (counted, available) = self.count_available();
        if !counted.same_as(&self.free) {
            return Err(format!("free slots {:?}, counted {counted:?}", self.free));
        }
        match available.same_as(&self.available) {
            true => Ok(()),
            false => Err(format!("available {:?}, counted {available:?}", self.available)),
        }
    }

    /// Whether `queue`'s reader may read more of its submissions: not while the queue, or all
    /// queues together, hold as many waiting items (delayed or backing off) as the policy
    /// allows. Only reading stops: what is stored stays in the stream, in order, and is read
    /// once some of the waiting items fall due or finish (the queue's later submissions,
    /// delayed or not, wait behind them: the head-of-line cost of the bound).
    pub fn may_read(&self, queue: &QueueName) -> bool {
        self.waiting.get(queue) < self.policy.max_waiting_per_queue
            && self.waiting.total() < self.policy.max_waiting
    }

    /// Items waiting out a delay or a back-off: those of `queue`, and in all.
    pub fn waiting(&self, queue: &QueueName) -> (u64, u64) {
        (self.waiting.get(queue), self.waiting.total())
    }

    /// Ready items of `queue` that may be handed out at `now`: none while it is paused, and
    /// no more than its concurrency limit and its start rate leave room for.
    pub(super) fn dispatchable(&self, queue: &QueueName, now: Millis) -> u64 {
        // A queue with nothing ready is told apart by the list of those with ready items,
        // without looking it up among every queue the master knows.
        if !self.ready.contains(queue) {
            return 0;
        }
        let mut ready = self.state.dispatchable(queue) as u64;
        let rules = self.policy.rules(queue);
        if let Some(limit) = rules.concurrency {
            ready = ready.min(u64::from(limit).saturating_sub(self.running.get(queue)));
        }
        if let Some(rate) = rules.rate {
            ready = ready.min(self.rates.available(queue, rate, now));
        }
        ready
    }

    pub(super) fn reply(&mut self, request: RequestId, reply: Reply) {
        self.out.effects.push(Effect::Reply { request, reply, early: false });
    }

    /// Answers a worker's request for work or report, which the runtime may send before its
    /// write unless `last` (it names an item on its last attempt: see [`Effect::Reply`]).
    pub(super) fn reply_to_worker(&mut self, request: RequestId, reply: Reply, last: bool) {
        self.out.effects.push(Effect::Reply { request, reply, early: !last });
    }

    /// The most hand-outs `work`'s run may have: its own `max_attempts`, else its queue's.
    pub(super) fn max_attempts(&self, work: &Work) -> u32 {
        work.options.max_attempts.unwrap_or(self.policy.rules(&work.queue).max_attempts)
    }

    /// Whether `work_id`'s item is in flight on the last attempt its run may have.
    pub(super) fn on_last_attempt(&self, work_id: &WorkId) -> bool {
        let work = self.state.work.get(work_id);
        work.is_some_and(|work| work.attempts_in_run() >= self.max_attempts(work))
    }

    /// Whether any of `assignments` is its item's last attempt.
    pub(super) fn any_last_attempt(&self, assignments: &[AssignmentRef]) -> bool {
        assignments.iter().any(|a| self.on_last_attempt(&a.work_id))
    }

    pub(super) fn error(&mut self, request: RequestId, code: u16, message: String) {
        self.reply(request, Reply::Error(ReplyError { code, message }));
    }

    fn takeover(&mut self, epoch: u64, leader: String, submitted_through: u64, now: Millis) {
        self.notified.clear();
        self.parked.clear();
        self.lookups.clear();
        self.windows.clear();
        (self.free, self.available) = self.count_available();
        self.moved.clear();
        self.liveness.clear();
        let grace_until = now.saturating_add(self.policy.takeover_grace);
        // Recorded once (the runtime always reads `submitted_through`): a journal nobody led
        // before has no older master's submissions to honour; one older masters led may have,
        // stored up to now.
        let legacy_through = match self.state.legacy_through {
            Some(_) => None,
            None if self.state.epoch == 0 => Some(0),
            None => Some(submitted_through),
        };
        self.emit(Event::EpochStarted {
            epoch,
            leader: leader.clone(),
            at: now,
            grace_until,
            legacy_through,
        });
        self.out.effects.push(Effect::Announce { epoch, leader });
        // Whatever the previous leader finished but had not yet published goes out now; the
        // results stream refuses a second copy, so publishing twice is harmless.
        let keys: Vec<_> = self.state.unpublished.keys().cloned().collect();
        self.out.effects.extend(keys.into_iter().map(|key| Effect::Publish { key }));
        // Likewise the master's own submissions not confirmed stored: the same `Nats-Msg-Id`
        // makes a copy already stored a duplicate the stream drops (and one stored again past
        // the duplicate window is refused when read: the first copy read ends it).
        let ticks = self.state.unsubmitted.iter().filter(|(_, tick)| !tick.stored);
        let retries = self.state.retries.iter().filter(|(_, retry)| !retry.stored);
        let unstored: Vec<_> =
            ticks.map(|(id, _)| id).chain(retries.map(|(id, _)| id)).cloned().collect();
        self.out.effects.extend(unstored.into_iter().map(|work_id| Effect::Submit { work_id }));
    }

    /// A fresh key for a submission of the master's own (`<work id>~<64 drawn bits>`): its
    /// `Nats-Msg-Id`, which nobody can guess, so nobody can make JetStream drop it as a
    /// duplicate of their own message.
    pub(super) fn submission_key(&mut self, work_id: &WorkId) -> String {
        format!("{work_id}~{:016x}", self.draw())
    }

    /// Records the master's own submissions the runtime confirmed stored (those still
    /// pending and not yet recorded).
    fn submissions_stored(&mut self, work_ids: Vec<WorkId>) {
        let unrecorded = |id: &WorkId| {
            self.state.unsubmitted.get(id).is_some_and(|t| !t.stored)
                || self.state.retries.get(id).is_some_and(|r| !r.stored)
        };
        let work_ids: Vec<_> = work_ids.into_iter().filter(|id| unrecorded(id)).collect();
        if !work_ids.is_empty() {
            self.emit(Event::SubmissionsStored { work_ids });
        }
    }

    /// A uniformly random number (for back-off jitter; its use is journaled as a time).
    pub(super) fn draw(&mut self) -> u64 {
        self.tokens.next_u64()
    }

    /// A fresh attempt token.
    pub(super) fn next_token(&mut self) -> Token {
        let high = u128::from(self.tokens.next_u64());
        Token::from_u128(high << 64 | u128::from(self.tokens.next_u64()))
    }

    fn published(&mut self, keys: Vec<PublicationKey>) {
        let keys: Vec<_> =
            keys.into_iter().filter(|k| self.state.unpublished.contains_key(k)).collect();
        if !keys.is_empty() {
            self.emit(Event::Published { keys });
        }
    }

    fn payload_missing(&mut self, work_id: WorkId, now: Millis) {
        if let Some(retry) = self.state.retries.get(&work_id) {
            let reason = format!(
                "the retried outcome (sequence {} in JETWORK_RESULTS) and its payload are gone: \
                 older than the results retention",
                retry.payload_seq
            );
            return self.emit(Event::PendingDropped { work_id, reason, at: now });
        }
        let Some(work) = self.state.work.get(&work_id) else { return };
        let (attempt, seq) = (work.attempt, work.seq);
        let reason =
            format!("payload is gone from JETWORK_SUBMIT (sequence {seq} was purged or deleted)");
        self.emit(Event::WorkFailed { work_id, attempt, reason, at: now });
    }
}

pub(super) fn wrong_login(worker: &WorkerId, w: &Worker, login: Option<&Login>) -> String {
    let named = |login: Option<&Login>| match login {
        Some(login) => format!("login {login}"),
        None => "no login".to_owned(),
    };
    format!(
        "worker id {worker} is registered under {}; this request came under {}",
        named(w.login.as_ref()),
        named(login)
    )
}

pub(super) fn wrong_session(worker: &WorkerId) -> String {
    format!("worker id {worker} is registered by another worker process (wrong session)")
}
