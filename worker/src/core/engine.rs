//! [`Engine`]: turns [`Input`]s into [`Action`]s. This file holds the state, the step, the
//! timers and what is sent when; the handling of the master's replies and of elections is in
//! `replies.rs`.
//!
//! Every step ends the same way: the shutdown check, the timers (heartbeat, keepalive), then
//! the pump, which starts what can start and sends what is due:
//! - at most one report in flight: outcomes that end during its round trip go together in
//!   the next one (under load one request and one journal write carry many outcomes; an idle
//!   worker's lone outcome still leaves at once). An outcome unanswered for
//!   `resend_interval` goes again regardless, so none waits longer than that between sends;
//! - a report asks for the slots its outcomes free (the master frees them when it records
//!   them, and can fill them in the same reply), plus any other free slot;
//! - otherwise, when work is wanted and slots are free, one long-poll request for work.

use bytes::Bytes;
use jetwork_shared::protocol::{OutcomeStatus, RegisterWorker, Report, RequestWork};
use jetwork_shared::QueueName;

use super::attempts::{Attempts, Dequeued};
use super::flights::{Flights, Kind};
use super::{last_chars, Action, Config, Input, JobRef, Key, Level, Limit, Log, Millis, Slots};
use crate::JobError;

/// Why abandoned attempts failed.
const ABANDONED: &str = "worker shut down before the job finished";

/// The worker's decision engine.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(super) cfg: Config,
    /// The newest epoch the lease confirmed (0: none yet). Replies from older epochs are
    /// ignored: a deposed master cannot steer this worker.
    pub(super) epoch: u64,
    /// The master answered a registration (and has not since said it does not know us).
    pub(super) registered: bool,
    /// A lease read for an announcement is in flight (one at a time: a flood of forged
    /// announcements costs one read per round trip).
    pub(super) verifying: bool,
    /// There may be work for us: ask when slots are free.
    pub(super) want_work: bool,
    /// The handler can take work (its [`crate::Gate`] is open). While it cannot, nothing is
    /// asked for while any attempt is held, and one job at a time once none is: the handler
    /// needs a job to find out whether it can work again.
    pub(super) gate_open: bool,
    /// The next request or report that asks for work lists what this worker holds, so the
    /// master hands out again a grant that never arrived. Only a reply this worker did not
    /// take can have carried such a grant: set when a request or report fails or
    /// its reply is ignored (stale), and when a newer master is followed; cleared once a
    /// message carrying the list is sent (if its reply is lost in turn, that sets it again).
    /// Listing it every time would cost the master a look at every held attempt per report.
    pub(super) list_held: bool,
    /// When the last registration was sent.
    last_register: Option<Millis>,
    /// When the next keepalive progress is due (with `progress_every`).
    keepalive_at: Option<Millis>,
    /// After a shutdown request: when the grace period ends.
    stopping: Option<Millis>,
    stopped: bool,
    pub(super) attempts: Attempts,
    pub(super) flights: Flights,
    out: Vec<Action>,
}

impl Engine {
    /// An engine that has not started: its first step registers.
    pub fn new(cfg: Config) -> Self {
        Engine {
            cfg,
            epoch: 0,
            registered: false,
            verifying: false,
            want_work: true,
            gate_open: true,
            list_held: false,
            last_register: None,
            keepalive_at: None,
            stopping: None,
            stopped: false,
            attempts: Attempts::default(),
            flights: Flights::default(),
            out: Vec::new(),
        }
    }

    /// Handles one input; returns what to do, in order.
    pub fn step(&mut self, input: Input) -> Vec<Action> {
        if self.stopped {
            return Vec::new();
        }
        let now = input.now();
        match input {
            Input::Start { .. } => {
                let cfg = &self.cfg;
                let queues: Vec<_> = cfg.queues.iter().map(|q| q.as_str()).collect();
                let text = format!(
                    "worker starting: queues {}, concurrency {}",
                    queues.join(","),
                    cfg.concurrency
                );
                self.log(Level::Info, text);
            }
            Input::Registered { id, reply, .. } => self.on_registered(id, reply, now),
            Input::Granted { id, reply, wall, .. } => self.on_granted(id, reply, now, wall),
            Input::Reported { id, reply, wall, .. } => self.on_reported(id, reply, now, wall),
            Input::Elected { epoch, .. } => self.on_elected(epoch),
            Input::Lease { announced, read, .. } => self.on_lease(announced, read, now),
            Input::WorkReady { epoch, .. } => {
                // A notice from an older master may be stale, but costs one request at most.
                if epoch >= self.epoch {
                    self.want_work = true;
                }
            }
            Input::JobEnded { work_id, attempt, result, .. } => {
                self.on_job_ended((work_id, attempt), result)
            }
            Input::Cancelled { epoch, work_id, attempt, .. } => {
                self.on_cancelled(epoch, (work_id, attempt))
            }
            Input::Progress { work_id, attempt, .. } => {
                self.attempts.note_progress((work_id, attempt))
            }
            Input::Gate { open, .. } => self.on_gate(open),
            Input::Shutdown { .. } => self.on_shutdown(now),
            Input::Tick { .. } => {}
        }
        self.after(now);
        std::mem::take(&mut self.out)
    }

    /// The newest epoch confirmed by the lease (0: none yet).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether a confirmed master has accepted this worker's registration (and no request
    /// since has said otherwise): the worker's readiness.
    pub fn is_registered(&self) -> bool {
        self.registered
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Whether the engine has stopped (it then ignores every input).
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// How the slots are used.
    pub fn slots(&self) -> Slots {
        let (backlog, running, pending, carried) = self.attempts.counts();
        let asked = self.flights.asked();
        Slots { concurrency: self.cfg.concurrency, backlog, running, pending, carried, asked }
    }

    /// The attempts whose jobs run, in key order.
    pub fn running(&self) -> impl Iterator<Item = &Key> {
        self.attempts.running()
    }

    /// The attempts with an outcome awaiting a verdict, in key order.
    pub fn pending(&self) -> impl Iterator<Item = &Key> {
        self.attempts.pending()
    }

    /// Whether this attempt's job runs.
    pub fn is_running(&self, key: &Key) -> bool {
        self.attempts.is_running(key)
    }

    /// Whether this attempt has an outcome awaiting a verdict.
    pub fn is_pending(&self, key: &Key) -> bool {
        self.attempts.is_pending(key)
    }

    /// Checks the invariants the rest of the engine relies on (for tests).
    pub fn check_invariants(&self) -> Result<(), String> {
        let slots = self.slots();
        if slots.running > slots.concurrency {
            return Err(format!("{} jobs run with {} slots", slots.running, slots.concurrency));
        }
        let mut seen = std::collections::BTreeSet::new();
        let backlog = self.attempts.backlog().map(|(k, _)| k);
        let held = self.attempts.running().chain(self.attempts.pending()).cloned();
        for key in backlog.chain(held) {
            if !seen.insert(key.clone()) {
                return Err(format!("{}@{} held twice", key.0, key.1));
            }
        }
        for (key, carrier) in self.attempts.carriers() {
            let current = self
                .flights
                .iter()
                .any(|(id, f)| id == carrier && f.current && matches!(f.kind, Kind::Report { .. }));
            if !current {
                return Err(format!(
                    "{}@{} carried by #{carrier}, not a current report",
                    key.0, key.1
                ));
            }
        }
        let current = |is: fn(&Kind) -> bool| {
            self.flights.iter().filter(|(_, f)| f.current && is(&f.kind)).count()
        };
        if current(|k| *k == Kind::Register) > 1 || current(|k| matches!(k, Kind::Work { .. })) > 1
        {
            return Err("two current registrations or requests for work".to_owned());
        }
        Ok(())
    }

    /// Free slots: what a request for work may ask for.
    pub(super) fn free(&self) -> u32 {
        self.cfg.concurrency.saturating_sub(self.slots().used())
    }

    pub(super) fn log(&mut self, level: Level, text: String) {
        self.out.push(Action::Log(Log { level, limit: None, text, job: None }));
    }

    /// A line about the attempt `key` (of `queue`, if known here).
    pub(super) fn log_job(
        &mut self,
        level: Level,
        key: &Key,
        queue: Option<&QueueName>,
        text: String,
    ) {
        let job = Some(JobRef { key: key.clone(), queue: queue.cloned() });
        self.out.push(Action::Log(Log { level, limit: None, text, job }));
    }

    pub(super) fn log_limited(&mut self, level: Level, limit: Limit, text: String) {
        self.out.push(Action::Log(Log { level, limit: Some(limit), text, job: None }));
    }

    pub(super) fn push(&mut self, action: Action) {
        self.out.push(action);
    }

    /// Sends a registration, unless one is in flight; it lists every attempt held, so the
    /// master can revoke those that are no longer ours.
    pub(super) fn register(&mut self, now: Millis) {
        if self.flights.registering() {
            return;
        }
        let msg = RegisterWorker {
            worker_id: self.cfg.id.clone(),
            session: self.cfg.session,
            queues: self.cfg.queues.clone(),
            capacity: self.cfg.concurrency,
            running: self.attempts.held(),
        };
        let id = self.flights.open(Kind::Register, now);
        self.last_register = Some(now);
        self.push(Action::Register { id, epoch: self.epoch, msg });
    }

    /// A job ended: its outcome is kept until the master answers it.
    fn on_job_ended(&mut self, key: Key, result: Result<Bytes, JobError>) {
        // Aborted jobs can still end (the abort raced with the end): the attempt is no
        // longer ours to report, and its slot was already given back.
        if !self.attempts.is_running(&key) {
            let text = format!("{}@{} ended after it was stopped; ignored", key.0, key.1);
            return self.log_job(Level::Debug, &key, None, text);
        }
        // A result the master would refuse fails the attempt here, with a reason, so the
        // master re-queues it now instead of at its deadline.
        let limit = self.cfg.max_result;
        let (status, result, failure) = match result {
            Ok(result) if result.len() <= limit => (OutcomeStatus::Completed, result, None),
            Ok(result) => {
                let why =
                    format!("result of {} bytes exceeds the limit of {limit} bytes", result.len());
                (OutcomeStatus::Failed, Bytes::new(), Some(JobError::retryable(why)))
            }
            Err(error) => (OutcomeStatus::Failed, Bytes::new(), Some(error)),
        };
        let non_retryable = failure.as_ref().is_some_and(|f| !f.retryable);
        // The tail of a long reason is kept: that is where errors usually are.
        let reason = failure.map(|f| last_chars(&f.reason, self.cfg.max_reason).to_owned());
        if let Some(why) = &reason {
            let kind = if non_retryable { "failed for good" } else { "failed" };
            let text = format!("{}@{} {kind}: {why}", key.0, key.1);
            self.log_job(Level::Warn, &key, None, text);
        }
        self.attempts.end(key, status, result, reason, non_retryable);
    }

    /// The master cancelled this attempt's job: stop it (or drop it, if it waits for a
    /// slot). Its outcome, if it already ended, is still reported; the master answers it
    /// `finished`.
    fn on_cancelled(&mut self, epoch: u64, key: Key) {
        if epoch != self.epoch || epoch == 0 {
            let text = format!(
                "{}@{}: a cancellation from epoch {epoch}, but the master is epoch {}; ignored",
                key.0, key.1, self.epoch
            );
            return self.log_job(Level::Debug, &key, None, text);
        }
        if self.attempts.revoke(&key) {
            let text = format!("{}@{} cancelled; stopping it", key.0, key.1);
            self.log_job(Level::Info, &key, None, text);
            self.push(Action::Abort { work_id: key.0, attempt: key.1 });
        }
    }

    /// Stop taking work; running jobs get `shutdown_grace` to finish.
    fn on_shutdown(&mut self, now: Millis) {
        if self.stopping.is_some() {
            return;
        }
        let running = self.slots().running;
        self.log(Level::Info, format!("shutting down; finishing {running} running jobs"));
        self.stopping = Some(now.saturating_add(self.cfg.shutdown_grace));
        self.withdraw();
    }

    /// The handler's gate opened or closed.
    fn on_gate(&mut self, open: bool) {
        if open == self.gate_open {
            return;
        }
        self.gate_open = open;
        if open {
            self.log(Level::Info, "the handler can take work again".to_owned());
            self.want_work = true;
        } else {
            let text = "the handler cannot take work now: asking for none while a job is held, \
                        then for one job at a time";
            self.log(Level::Info, text.to_owned());
            self.withdraw();
        }
    }

    /// Answers a request for work the master may be holding open with a request for no slots
    /// (it then answers the held one empty), so no work is handed out that would only wait.
    fn withdraw(&mut self) {
        if self.flights.requesting() {
            let msg = RequestWork {
                worker_id: self.cfg.id.clone(),
                session: self.cfg.session,
                slots: 0,
                wait_ms: 0,
                running: None,
            };
            self.push(Action::Withdraw { epoch: self.epoch, msg });
        }
    }

    /// The end of every step: shutdown, timers, then the pump.
    fn after(&mut self, now: Millis) {
        if let Some(deadline) = self.stopping {
            // Nothing left to run or report: done (a request still in flight is not waited
            // for; its grant would only be work this worker cannot do).
            if self.attempts.is_empty() {
                return self.stop();
            }
            // Grace over: what still runs (or waits) is reported failed, so the master
            // re-queues it at once rather than at its deadline.
            if now >= deadline {
                for (work_id, attempt) in self.attempts.abandon(ABANDONED) {
                    self.push(Action::Abort { work_id, attempt });
                }
                // One more resend interval for the outcomes to reach the master, then go.
                if now >= deadline.saturating_add(self.cfg.resend_interval) {
                    let (.., pending, _) = self.attempts.counts();
                    let text = format!("giving up on {pending} unacknowledged outcomes");
                    self.log(Level::Warn, text);
                    return self.stop();
                }
            }
        }
        // The heartbeat keeps this worker alive on the master and lets it revoke what is no
        // longer ours; unregistered (no master, or the id in use), it retries sooner.
        let interval =
            if self.registered { self.cfg.register_interval } else { self.cfg.retry_interval() };
        if self.last_register.is_none_or(|at| now >= at.saturating_add(interval)) {
            self.register(now);
        }
        // The keepalive: progress for every running job, so long jobs whose handler never
        // reports progress are not timed out by the master.
        if let Some(every) = self.cfg.progress_every {
            match self.keepalive_at {
                Some(at) if now >= at => {
                    self.attempts.keepalive();
                    self.keepalive_at = Some(now.saturating_add(every));
                }
                Some(_) => {}
                None => self.keepalive_at = Some(now.saturating_add(every)),
            }
        }
        self.pump(now);
    }

    fn stop(&mut self) {
        self.log(Level::Info, "worker stopped".to_owned());
        self.push(Action::Stopped);
        self.stopped = true;
    }

    /// What this worker holds, to list in a request for work, if a grant may have been lost
    /// since the last list was sent (see [`Engine::list_held`]).
    fn held_if_unsure(&mut self) -> Option<Vec<jetwork_shared::protocol::RunningWork>> {
        std::mem::take(&mut self.list_held).then(|| self.attempts.held())
    }

    /// Starts what can start, then sends what is due: a report, or else a request for work.
    fn pump(&mut self, now: Millis) {
        while let Some(next) = self.attempts.dequeue(self.cfg.concurrency, now) {
            match next {
                Dequeued::Start { assignment, expires } => {
                    self.push(Action::Start { assignment, expires })
                }
                Dequeued::Expired { key, late } => {
                    let text = format!(
                        "{}@{}: its time was up {late} ms ago, before a slot was free; dropped \
                         (the master has handed it out again)",
                        key.0, key.1
                    );
                    self.log_job(Level::Warn, &key, None, text);
                }
            }
        }
        // One report at a time: what ends during its round trip goes in the next one, so under
        // load one request and one journal write carry many outcomes. An outcome unanswered
        // for `resend_interval` does not wait any longer, though.
        let resend = self.cfg.resend_interval;
        if self.flights.report_recent(now, resend) && !self.attempts.resend_due(now, resend) {
            return;
        }
        let batch = self.attempts.due_outcomes(now, resend, self.cfg.report_bytes);
        let progress = self.attempts.due_progress(now, self.cfg.progress_interval);
        // No work is asked for while stopping (it would only be abandoned) or unregistered
        // (the master hands nothing to a worker it does not know). While the handler's gate is
        // closed, one job at a time, and only once nothing is held: the handler probes with it.
        let probing = !self.gate_open;
        let asking =
            self.stopping.is_none() && self.registered && (!probing || self.attempts.is_empty());
        let capacity = if probing { 1 } else { self.cfg.concurrency };
        if !batch.outcomes.is_empty() || !progress.is_empty() {
            // Once this report carries the fresh outcomes their slots are its to ask for:
            // whatever is free after that (every slot is counted once, so this never asks for
            // more than the worker has).
            let fresh = u32::try_from(batch.fresh.len()).unwrap_or(u32::MAX);
            let used = self.slots().used().saturating_sub(fresh);
            let slots = if asking { capacity.saturating_sub(used) } else { 0 };
            let sent =
                batch.outcomes.iter().map(|o| ((o.work_id.clone(), o.attempt), o.token)).collect();
            let id = self.flights.open(Kind::Report { slots, sent }, now);
            if slots > 0 {
                self.attempts.carry(&batch.fresh, id);
            }
            let mut outcomes = batch.outcomes;
            outcomes.extend(progress);
            let (worker_id, session) = (self.cfg.id.clone(), self.cfg.session);
            // What it holds, so a grant lost on its way is handed out again in the reply.
            let running = (slots > 0).then(|| self.held_if_unsure()).flatten();
            let msg = Report { worker_id, session, outcomes, slots, running };
            return self.push(Action::Report { id, epoch: self.epoch, msg });
        }
        let slots = self.free().min(capacity);
        if self.want_work && asking && !self.flights.requesting() && slots > 0 {
            self.want_work = false;
            // Long poll: the master holds the request until work arrives (and hands it out in
            // the same journal write that accepts it), well within our request timeout.
            let wait_ms = self.cfg.long_poll();
            let id = self.flights.open(Kind::Work { slots, waited: wait_ms > 0 }, now);
            let (worker_id, session) = (self.cfg.id.clone(), self.cfg.session);
            let running = self.held_if_unsure();
            let msg = RequestWork { worker_id, session, slots, wait_ms, running };
            self.push(Action::RequestWork { id, epoch: self.epoch, msg });
        }
    }
}
