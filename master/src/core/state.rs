//! [`State`]: everything the master knows that must survive it, rebuilt by replaying the
//! journal and saved whole in snapshots.
//!
//! Invariants (checked by [`State::check_invariants`] in tests):
//! - every work item is exactly one of: ready (listed once in its queue's `ready`, or in the
//!   `prioritized` lane of its own priority), waiting (out a back-off or a delay: listed once
//!   in `waiting`, keyed by when it is ready again), or running
//!   (listed in its worker's `running` and once in `deadlines`);
//! - `deadlines` holds exactly the running items, keyed by their current deadline;
//! - `expiring` holds exactly the items whose submission set an expiry, keyed by it;
//! - a finished item is gone from `work`; until its result is stored it waits in
//!   `unpublished`;
//! - `cursor` of a queue is the highest submit sequence consumed from that queue, so
//!   re-reading the stream after a takeover never accepts a submission twice; `jumped` holds
//!   the submissions past it taken out of turn (priority jumps), which the cursor passes
//!   without taking them again: every entry is above the cursor; `jumped_ids` holds the work
//!   ids of those taken as work, each with its highest such sequence (also above the cursor);
//! - a work id has at most one pending submission of the master's own (a tick in
//!   `unsubmitted`, a retry in `retries`), and a retry is pending only while its id is not in
//!   flight.
//!
//! Memory is bounded by what is being dispatched: ready items are read ahead only as far as
//! workers can take them (the backlog stays in `JETWORK_SUBMIT`), running items by the
//! workers' capacity, and `unpublished` by results in flight to the results stream.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use jetwork_shared::job_options::JobOptions;
use jetwork_shared::jobs::{AttemptOutcome, AttemptRecord};
use jetwork_shared::schedules::ScheduleName;
use jetwork_shared::{headers, Login, QueueName, Token, WorkId, WorkerId};

use super::{Event, FiredTick, Millis, PendingRetry, Schedule};

/// The durable state of the master.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Epoch (lease revision) of the leader that wrote the latest `EpochStarted`.
    pub epoch: u64,
    /// That leader's id.
    pub leader: String,
    pub queues: BTreeMap<QueueName, QueueState>,
    /// Work read from the submit stream and not finished. Ordered, so that a snapshot of
    /// the same state is always the same bytes.
    pub work: BTreeMap<WorkId, Work>,
    /// Running items by deadline.
    pub deadlines: BTreeSet<(Millis, WorkId)>,
    /// Items waiting out a back-off or a delay, by the time they are ready again.
    #[serde(default)]
    pub waiting: BTreeSet<(Millis, WorkId)>,
    /// Items that must start by a time (`Jetwork-Expires`), by that time.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub expiring: BTreeSet<(Millis, WorkId)>,
    pub workers: BTreeMap<WorkerId, Worker>,
    /// Finished items and rejections whose publication is not yet confirmed.
    pub unpublished: BTreeMap<PublicationKey, Publication>,
    /// Recurring schedules, by name. (Left out of the encoding while empty, so a state
    /// without schedules encodes exactly as before they existed.)
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub schedules: BTreeMap<ScheduleName, Schedule>,
    /// Fired ticks whose submission has not been read back yet, by work id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unsubmitted: BTreeMap<WorkId, FiredTick>,
    /// Decided retries whose submission has not been read back yet, by work id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub retries: BTreeMap<WorkId, PendingRetry>,
    /// Submissions stored up to this `JETWORK_SUBMIT` sequence may be retries and ticks an
    /// older master (before format 5) put on the clients' subject: their bookkeeping headers
    /// are honoured there. `None` until a leader of format 5 or later has led.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_through: Option<u64>,
}

/// One queue's position in the submit stream and its ready items.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueState {
    /// Highest `JETWORK_SUBMIT` sequence consumed from this queue.
    pub cursor: u64,
    /// Ready items of priority 0, next to hand out first. Re-queued items go to the front.
    pub ready: VecDeque<WorkId>,
    /// Ready items of priorities 1 to 9, like `ready`, each lane handed out before any lower
    /// one. No lane is empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prioritized: BTreeMap<u8, VecDeque<WorkId>>,
    pub accepted: u64,
    pub completed: u64,
    pub failed: u64,
    pub rejected: u64,
    #[serde(default)]
    pub cancelled: u64,
    /// Paused by an operator: nothing of it is handed out (submissions are still stored and
    /// read ahead as usual).
    #[serde(default)]
    pub paused: bool,
    /// Purged by an operator through this submit sequence: a submission of the queue at or
    /// before it that is read from now on is finished as `cancelled`, not run. Left out of
    /// the encoding while 0 (a state with no purge encodes as before purges existed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub purged_through: u64,
    /// Submissions past the cursor already taken out of turn: priority submissions read
    /// ahead of the unread backlog (see `engine/intake.rs`). When the reader reaches one, the
    /// cursor passes it (`SubmissionPassed`) instead of taking it again. Left out of the
    /// encoding while empty.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub jumped: BTreeSet<u64>,
    /// The work ids accepted out of turn whose submissions the cursor has not passed yet, each
    /// with the highest such sequence: a submission of one of them stored *before* that is
    /// refused when read, since a later run of its id was taken first (runs of an id are
    /// ordered by their submissions; see `engine/intake.rs`). Left out of the encoding while
    /// empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub jumped_ids: BTreeMap<WorkId, u64>,
}

impl State {
    /// The master's own pending submission of `work_id` (a tick or a retry), if any: its
    /// queue and its key (`Nats-Msg-Id`; a tick fired before format 5 has its work id).
    pub fn pending_submission<'a>(
        &'a self,
        work_id: &'a WorkId,
    ) -> Option<(&'a QueueName, &'a str)> {
        if let Some(tick) = self.unsubmitted.get(work_id) {
            let key = if tick.key.is_empty() { work_id.as_str() } else { &tick.key };
            return Some((&tick.queue, key));
        }
        self.retries.get(work_id).map(|retry| (&retry.queue, retry.key.as_str()))
    }

    /// Where the first `limit` queues are read up to: (queue, cursor, submissions past the
    /// cursor already taken out of turn), for counting what is still unread in the stream.
    pub fn read_positions(&self, limit: usize) -> Vec<(QueueName, u64, u64)> {
        let position = |(queue, q): (&QueueName, &QueueState)| {
            (queue.clone(), q.cursor, q.jumped.len() as u64)
        };
        self.queues.iter().take(limit).map(position).collect()
    }
}

/// Whether a count is 0 (for fields left out of the encoding when unset).
fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl QueueState {
    /// Whether submissions up to `purged_through` are still to be read (and cancelled): the
    /// queue must be read on even if no worker asks for its work.
    pub fn purging(&self) -> bool {
        self.purged_through > self.cursor
    }

    /// Moves the cursor up to `seq` (never back); jumped submissions it passes are done with.
    fn advance(&mut self, seq: u64) {
        self.cursor = self.cursor.max(seq);
        if self.jumped.first().is_some_and(|first| *first <= self.cursor) {
            self.jumped = self.jumped.split_off(&(self.cursor + 1));
            let cursor = self.cursor;
            self.jumped_ids.retain(|_, jumped| *jumped > cursor);
        }
    }
}

/// A work item in flight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Work {
    pub queue: QueueName,
    /// Its sequence in `JETWORK_SUBMIT`, where the payload stays until it is finished.
    pub seq: u64,
    pub size: u64,
    /// The latest attempt handed out (`prior_attempts` while this run has never run).
    pub attempt: u32,
    /// For a retry: the attempts its earlier runs used. This run's attempts are numbered
    /// `prior_attempts + 1, …`; a report about an earlier one is about a finished run.
    #[serde(default)]
    pub prior_attempts: u32,
    /// Set while an attempt runs.
    pub running: Option<Running>,
    /// Why the previous attempt ended, if one did.
    pub last_error: Option<String>,
    /// The token of each attempt of this run handed out (attempt `prior_attempts + n` at
    /// index `n − 1`): a result from any of them is accepted, but only with its token.
    pub tokens: Vec<Token>,
    /// While waiting out a back-off: when it is ready again.
    #[serde(default)]
    pub waiting_until: Option<Millis>,
    /// Its attempts so far (the latest [`AttemptRecord::MAX_KEPT`]).
    #[serde(default)]
    pub history: Vec<AttemptRecord>,
    /// What its submission asked for (delay, priority, attempts, timeout, expiry).
    #[serde(default, skip_serializing_if = "JobOptions::is_default")]
    pub options: JobOptions,
}

impl QueueState {
    /// The ready items of priority `priority`.
    fn lane(&mut self, priority: u8) -> &mut VecDeque<WorkId> {
        match priority {
            0 => &mut self.ready,
            p => self.prioritized.entry(p).or_default(),
        }
    }

    /// Makes `id` ready, after the others of its priority.
    pub fn push_back(&mut self, id: WorkId, priority: u8) {
        self.lane(priority).push_back(id);
    }

    /// Makes `id` ready, before the others of its priority.
    pub fn push_front(&mut self, id: WorkId, priority: u8) {
        self.lane(priority).push_front(id);
    }

    /// Takes `id` out of the ready items of priority `priority`.
    pub fn remove(&mut self, id: &WorkId, priority: u8) {
        remove_from(self.lane(priority), id);
        if priority > 0 && self.prioritized.get(&priority).is_some_and(VecDeque::is_empty) {
            self.prioritized.remove(&priority);
        }
    }

    /// The ready item to hand out next: the first of the highest priority.
    pub fn next(&self) -> Option<&WorkId> {
        self.prioritized.values().next_back().and_then(|lane| lane.front()).or(self.ready.front())
    }

    /// Whether any item is ready (no lane is empty).
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty() || !self.prioritized.is_empty()
    }

    /// How many items are ready.
    pub fn ready_count(&self) -> usize {
        self.ready.len() + self.prioritized.values().map(VecDeque::len).sum::<usize>()
    }

    /// The ready items in the order they would be handed out.
    pub fn ready_in_order(&self) -> impl Iterator<Item = &WorkId> {
        self.prioritized.values().rev().flatten().chain(self.ready.iter())
    }
}

impl Work {
    /// The token attempt `attempt` of this run was handed out with (`None` for an attempt of
    /// an earlier run, or one never handed out).
    pub fn token(&self, attempt: u32) -> Option<&Token> {
        let index = attempt.checked_sub(self.prior_attempts)?.checked_sub(1)?;
        self.tokens.get(index as usize)
    }

    /// Attempts this run has used.
    pub fn attempts_in_run(&self) -> u32 {
        self.attempt.saturating_sub(self.prior_attempts)
    }
}

/// The attempt currently running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    pub worker: WorkerId,
    pub deadline: Millis,
}

/// A registered worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Worker {
    /// The session its process registered with.
    pub session: Token,
    /// The login it registered under (`None`: on the endpoints without one). Its requests
    /// must come under the same, and its notices go to subjects with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<Login>,
    pub queues: Vec<QueueName>,
    pub capacity: u32,
    pub running: BTreeSet<WorkId>,
    pub last_seen: Millis,
}

impl Worker {
    /// Slots not taken by running items.
    pub fn free(&self) -> u32 {
        self.capacity.saturating_sub(u32::try_from(self.running.len()).unwrap_or(u32::MAX))
    }
}

/// Identifies something to publish to `JETWORK_RESULTS`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PublicationKey {
    /// The result of a finished work item.
    Result(WorkId),
    /// The rejection of the submission at this `JETWORK_SUBMIT` sequence.
    Rejection(u64),
}

/// What to publish.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Publication {
    /// `seq` is the submission's sequence: it tells this run of the work id from a later
    /// submission of the same id (after the dedup horizon).
    Completed {
        work_id: WorkId,
        queue: QueueName,
        seq: u64,
        attempt: u32,
        result: Bytes,
        #[serde(default)]
        history: Vec<AttemptRecord>,
    },
    Failed {
        work_id: WorkId,
        queue: QueueName,
        seq: u64,
        attempt: u32,
        reason: String,
        #[serde(default)]
        history: Vec<AttemptRecord>,
        /// What the run asked for: stored with the outcome, so a retry keeps what it may.
        #[serde(default, skip_serializing_if = "JobOptions::is_default")]
        options: JobOptions,
    },
    /// Cancelled by an operator (`reason` is theirs, or says so).
    Cancelled {
        work_id: WorkId,
        queue: QueueName,
        seq: u64,
        attempt: u32,
        reason: String,
        history: Vec<AttemptRecord>,
        #[serde(default, skip_serializing_if = "JobOptions::is_default")]
        options: JobOptions,
    },
    Rejected {
        queue: QueueName,
        seq: u64,
        msg_id: Option<String>,
        reason: String,
    },
}

impl Publication {
    /// The `JETWORK_SUBMIT` sequence of the submission it answers: it identifies the run.
    pub fn submit_seq(&self) -> u64 {
        match self {
            Publication::Completed { seq, .. }
            | Publication::Failed { seq, .. }
            | Publication::Cancelled { seq, .. }
            | Publication::Rejected { seq, .. } => *seq,
        }
    }
}

impl State {
    /// Folds one event into the state. Total: an event that does not fit the state (which
    /// the engine never produces) changes nothing rather than failing, so replay can never
    /// be stuck on a journal entry.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::EpochStarted { epoch, leader, at, grace_until, legacy_through } => {
                self.epoch = *epoch;
                self.leader.clone_from(leader);
                if self.legacy_through.is_none() {
                    self.legacy_through = *legacy_through;
                }
                for worker in self.workers.values_mut() {
                    worker.last_seen = worker.last_seen.max(*at);
                }
                self.extend_deadlines(*grace_until);
            }
            Event::WorkAccepted {
                work_id,
                queue,
                seq,
                size,
                prior_attempts,
                options,
                at,
                jumped,
            } => {
                let q = self.queues.entry(queue.clone()).or_default();
                match jumped {
                    true => {
                        q.jumped.insert(*seq);
                        let highest = q.jumped_ids.entry(work_id.clone()).or_default();
                        *highest = (*highest).max(*seq);
                    }
                    false => q.advance(*seq),
                }
                // A pending tick or retry read back from the stream is taken: it must never be
                // submitted again, and a copy stored again later is not its submission.
                self.unsubmitted.remove(work_id);
                self.retries.remove(work_id);
                if self.work.contains_key(work_id) {
                    return;
                }
                q.accepted += 1;
                // A delayed item waits like one backing off; the tick makes it ready.
                let waiting_until = (options.not_before > *at).then_some(options.not_before);
                match waiting_until {
                    Some(until) => {
                        self.waiting.insert((until, work_id.clone()));
                    }
                    None => q.push_back(work_id.clone(), options.priority),
                }
                if options.expires > 0 {
                    self.expiring.insert((options.expires, work_id.clone()));
                }
                self.work.insert(
                    work_id.clone(),
                    Work {
                        queue: queue.clone(),
                        seq: *seq,
                        size: *size,
                        attempt: *prior_attempts,
                        prior_attempts: *prior_attempts,
                        running: None,
                        last_error: None,
                        tokens: Vec::new(),
                        waiting_until,
                        history: Vec::new(),
                        options: *options,
                    },
                );
            }
            Event::SubmissionPassed { queue, seq } => {
                self.queues.entry(queue.clone()).or_default().advance(*seq);
            }
            Event::SubmissionRejected { queue, seq, msg_id, reason, .. } => {
                let q = self.queues.entry(queue.clone()).or_default();
                q.advance(*seq);
                q.rejected += 1;
                self.unpublished.insert(
                    PublicationKey::Rejection(*seq),
                    Publication::Rejected {
                        queue: queue.clone(),
                        seq: *seq,
                        msg_id: msg_id.clone(),
                        reason: reason.clone(),
                    },
                );
            }
            Event::WorkerRegistered { worker, session, login, queues, capacity, at } => {
                let entry = self.workers.entry(worker.clone()).or_insert_with(|| Worker {
                    session: *session,
                    login: None,
                    queues: Vec::new(),
                    capacity: 0,
                    running: BTreeSet::new(),
                    last_seen: *at,
                });
                entry.session = *session;
                entry.login.clone_from(login);
                entry.queues.clone_from(queues);
                entry.capacity = *capacity;
                entry.last_seen = entry.last_seen.max(*at);
            }
            Event::WorkerSeen { worker, at } => {
                if let Some(w) = self.workers.get_mut(worker) {
                    w.last_seen = w.last_seen.max(*at);
                }
            }
            Event::WorkerLost { worker, .. } => {
                // Anything still listed as running on it keeps its deadline and is re-queued
                // when that passes; the engine re-queues it before losing the worker anyway.
                self.workers.remove(worker);
            }
            Event::WorkStarted { work_id, worker, attempt, deadline, token, at } => {
                let Some(work) = self.work.get_mut(work_id) else { return };
                if work.running.is_some() || work.waiting_until.is_some() {
                    return;
                }
                record_start(&mut work.history, *attempt, worker, *at);
                // This run's attempt n's token sits at n − 1 (attempts are handed out 1, 2, 3, …
                // after the prior ones).
                let index = attempt.saturating_sub(work.prior_attempts).saturating_sub(1);
                work.tokens.resize(index as usize, Token::default());
                work.tokens.push(*token);
                if let Some(q) = self.queues.get_mut(&work.queue) {
                    q.remove(work_id, work.options.priority);
                }
                work.attempt = *attempt;
                work.running = Some(Running { worker: worker.clone(), deadline: *deadline });
                self.deadlines.insert((*deadline, work_id.clone()));
                if let Some(w) = self.workers.get_mut(worker) {
                    w.running.insert(work_id.clone());
                }
            }
            Event::WorkProgressed { work_id, deadline, .. } => {
                let Some(running) = self.work.get_mut(work_id).and_then(|w| w.running.as_mut())
                else {
                    return;
                };
                self.deadlines.remove(&(running.deadline, work_id.clone()));
                running.deadline = *deadline;
                self.deadlines.insert((*deadline, work_id.clone()));
            }
            Event::WorkRequeued { work_id, reason, not_before, at, .. } => {
                let Some(work) = self.work.get_mut(work_id) else { return };
                let Some(running) = work.running.take() else { return };
                work.last_error = Some(reason.clone());
                record_end(&mut work.history, *at, AttemptOutcome::Failed, Some(reason));
                self.deadlines.remove(&(running.deadline, work_id.clone()));
                if let Some(w) = self.workers.get_mut(&running.worker) {
                    w.running.remove(work_id);
                }
                if *not_before > *at {
                    work.waiting_until = Some(*not_before);
                    self.waiting.insert((*not_before, work_id.clone()));
                } else {
                    let q = self.queues.entry(work.queue.clone()).or_default();
                    q.push_front(work_id.clone(), work.options.priority);
                }
            }
            Event::WorkDue { work_ids } => {
                for work_id in work_ids {
                    let Some(work) = self.work.get_mut(work_id) else { continue };
                    let Some(until) = work.waiting_until.take() else { continue };
                    self.waiting.remove(&(until, work_id.clone()));
                    let q = self.queues.entry(work.queue.clone()).or_default();
                    q.push_front(work_id.clone(), work.options.priority);
                }
            }
            Event::WorkCancelled { work_id, reason, at } => {
                let Some(mut work) = self.finish(work_id) else { return };
                record_end(&mut work.history, *at, AttemptOutcome::Cancelled, Some(reason));
                let q = self.queues.entry(work.queue.clone()).or_default();
                q.cancelled += 1;
                self.unpublished.insert(
                    PublicationKey::Result(work_id.clone()),
                    Publication::Cancelled {
                        work_id: work_id.clone(),
                        queue: work.queue,
                        seq: work.seq,
                        attempt: work.attempt,
                        reason: reason.clone(),
                        history: work.history,
                        options: work.options,
                    },
                );
            }
            Event::QueuePaused { queue, .. } => {
                self.queues.entry(queue.clone()).or_default().paused = true;
            }
            Event::QueueResumed { queue, .. } => {
                self.queues.entry(queue.clone()).or_default().paused = false;
            }
            Event::QueueForgotten { queue, .. } => {
                self.queues.remove(queue);
            }
            Event::QueuePurged { queue, through_seq, .. } => {
                let q = self.queues.entry(queue.clone()).or_default();
                q.purged_through = q.purged_through.max(*through_seq);
            }
            Event::WorkCompleted { work_id, attempt, result, at } => {
                let Some(mut work) = self.finish(work_id) else { return };
                record_completion(&mut work.history, *attempt, *at);
                let q = self.queues.entry(work.queue.clone()).or_default();
                q.completed += 1;
                self.unpublished.insert(
                    PublicationKey::Result(work_id.clone()),
                    Publication::Completed {
                        work_id: work_id.clone(),
                        queue: work.queue,
                        seq: work.seq,
                        attempt: *attempt,
                        result: result.clone(),
                        history: work.history,
                    },
                );
            }
            Event::WorkFailed { work_id, attempt, reason, at } => {
                let Some(mut work) = self.finish(work_id) else { return };
                record_end(&mut work.history, *at, AttemptOutcome::Failed, Some(reason));
                let q = self.queues.entry(work.queue.clone()).or_default();
                q.failed += 1;
                self.unpublished.insert(
                    PublicationKey::Result(work_id.clone()),
                    Publication::Failed {
                        work_id: work_id.clone(),
                        queue: work.queue,
                        seq: work.seq,
                        attempt: *attempt,
                        reason: reason.clone(),
                        history: work.history,
                        options: work.options,
                    },
                );
            }
            Event::Published { keys } => {
                for key in keys {
                    self.unpublished.remove(key);
                }
            }
            Event::ScheduleAdded { name, queue, cadence, payload, next, at } => {
                let schedule = Schedule {
                    queue: queue.clone(),
                    cadence: cadence.clone(),
                    payload: payload.clone(),
                    added: *at,
                    next: *next,
                    fired: 0,
                    missed: 0,
                    last: None,
                };
                self.schedules.insert(name.clone(), schedule);
            }
            Event::ScheduleRemoved { name, .. } => {
                self.schedules.remove(name);
            }
            Event::ScheduleFired { name, work_id, scheduled, missed, next, key, .. } => {
                let Some(schedule) = self.schedules.get_mut(name) else { return };
                schedule.next = *next;
                schedule.fired += 1;
                schedule.missed += missed;
                schedule.last = Some(*scheduled);
                let tick = FiredTick {
                    schedule: name.clone(),
                    queue: schedule.queue.clone(),
                    payload: schedule.payload.clone(),
                    scheduled: *scheduled,
                    key: key.clone(),
                    stored: false,
                };
                self.unsubmitted.insert(work_id.clone(), tick);
            }
            Event::TicksSubmitted { work_ids } => {
                for work_id in work_ids {
                    self.unsubmitted.remove(work_id);
                }
            }
            Event::SubmissionsStored { work_ids } => {
                for work_id in work_ids {
                    if let Some(tick) = self.unsubmitted.get_mut(work_id) {
                        tick.stored = true;
                        tick.payload = Bytes::new();
                    }
                    if let Some(retry) = self.retries.get_mut(work_id) {
                        retry.stored = true;
                    }
                }
            }
            Event::RetryDecided {
                work_id,
                queue,
                key,
                prior_attempts,
                options,
                payload_seq,
                ..
            } => {
                let retry = PendingRetry {
                    queue: queue.clone(),
                    key: key.clone(),
                    prior_attempts: *prior_attempts,
                    options: *options,
                    payload_seq: *payload_seq,
                    stored: false,
                };
                self.retries.insert(work_id.clone(), retry);
            }
            Event::PendingDropped { work_id, .. } => {
                self.unsubmitted.remove(work_id);
                self.retries.remove(work_id);
            }
        }
    }

    /// Moves every running attempt's deadline that falls before `until` to `until`.
    fn extend_deadlines(&mut self, until: Millis) {
        let due: Vec<(Millis, WorkId)> =
            self.deadlines.iter().take_while(|(deadline, _)| *deadline < until).cloned().collect();
        for (deadline, work_id) in due {
            self.deadlines.remove(&(deadline, work_id.clone()));
            if let Some(running) = self.work.get_mut(&work_id).and_then(|w| w.running.as_mut()) {
                running.deadline = until;
                self.deadlines.insert((until, work_id));
            }
        }
    }

    /// Removes a finished item from wherever it is (ready, waiting or running).
    fn finish(&mut self, work_id: &WorkId) -> Option<Work> {
        let work = self.work.remove(work_id)?;
        if work.options.expires > 0 {
            self.expiring.remove(&(work.options.expires, work_id.clone()));
        }
        match (&work.running, work.waiting_until) {
            (Some(running), _) => {
                self.deadlines.remove(&(running.deadline, work_id.clone()));
                if let Some(w) = self.workers.get_mut(&running.worker) {
                    w.running.remove(work_id);
                }
            }
            (None, Some(until)) => {
                self.waiting.remove(&(until, work_id.clone()));
            }
            (None, None) => {
                if let Some(q) = self.queues.get_mut(&work.queue) {
                    q.remove(work_id, work.options.priority);
                }
            }
        }
        Some(work)
    }

    /// Ready items in `queue`.
    pub fn ready_len(&self, queue: &QueueName) -> usize {
        self.queues.get(queue).map_or(0, QueueState::ready_count)
    }

    /// Ready items in `queue` that may be handed out (none while it is paused).
    pub fn dispatchable(&self, queue: &QueueName) -> usize {
        self.queues.get(queue).filter(|q| !q.paused).map_or(0, QueueState::ready_count)
    }
}

/// A new attempt in a history, which keeps only the latest [`AttemptRecord::MAX_KEPT`].
fn record_start(history: &mut Vec<AttemptRecord>, attempt: u32, worker: &WorkerId, at: Millis) {
    if history.len() >= AttemptRecord::MAX_KEPT {
        history.remove(0);
    }
    history.push(AttemptRecord {
        attempt,
        worker: worker.clone(),
        started_ms: at,
        ended_ms: 0,
        outcome: AttemptOutcome::Running,
        reason: None,
    });
}

/// The running attempt in a history ended (nothing changes if none runs).
fn record_end(
    history: &mut [AttemptRecord],
    at: Millis,
    outcome: AttemptOutcome,
    reason: Option<&String>,
) {
    if let Some(last) = history.last_mut().filter(|r| r.outcome == AttemptOutcome::Running) {
        last.ended_ms = at;
        last.outcome = outcome;
        last.reason = reason.map(|r| headers::sanitize(r, AttemptRecord::MAX_REASON));
    }
}

/// Attempt `attempt` delivered the result. A result may come from an earlier attempt than the
/// one running (the first result wins): that one is marked completed, and the running one,
/// if it is another, ends as cancelled (its result is no longer wanted).
fn record_completion(history: &mut [AttemptRecord], attempt: u32, at: Millis) {
    for record in history.iter_mut() {
        if record.attempt == attempt {
            record.outcome = AttemptOutcome::Completed;
            record.ended_ms = at;
            record.reason = None;
        } else if record.outcome == AttemptOutcome::Running {
            record.outcome = AttemptOutcome::Cancelled;
            record.ended_ms = at;
            record.reason = Some(format!("attempt {attempt} delivered the result first"));
        }
    }
}

fn remove_from(deque: &mut VecDeque<WorkId>, id: &WorkId) {
    if deque.front() == Some(id) {
        deque.pop_front();
    } else if let Some(pos) = deque.iter().position(|x| x == id) {
        deque.remove(pos);
    }
}
