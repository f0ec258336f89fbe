//! The worker's loop: register, pull work, run jobs, report outcomes until acknowledged.
//!
//! ```text
//!  start ─► register ──(work_ready / jetwork.worker.<id>.ready)──► request ─► grant ─► run jobs
//!              ▲  every register_interval, and at once on jetwork.master.elected     │
//!              └────────────────────────────────────────────────────────────────────┘
//!  job ends ─► outcome kept until a verdict arrives; re-sent every resend_interval;
//!              the report that carries it also asks for the slots it frees
//! ```
//!
//! At most one report is in flight: outcomes that finish during its round trip go together in
//! the next one, so under load one request and one journal write carry many outcomes.
//!
//! Invariants:
//! - an outcome stays in `unacked` until the master answers it with a verdict, so a lost
//!   reply or a master crash only delays it; the master records each at most once;
//! - slots: running + backlog + unacked + asked-for never exceeds `concurrency` (a job's slot
//!   is free only once the master has its outcome, as the master counts it);
//! - replies from an older epoch than the newest seen are ignored, so a deposed master cannot
//!   steer this worker; what it said is re-asked of the current leader;
//! - a newer epoch is believed only once the lease names it (`jetwork_shared::leader`):
//!   an election announcement or a reply claiming an epoch the lease does not confirm is
//!   ignored, so a forged announcement cannot make this worker stop following the leader;
//! - every request carries this process's session, and every report about an attempt the
//!   token it was handed out with (kept in `tokens` while the attempt is held).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;

use bytes::Bytes;
use futures::StreamExt;
use jetwork_shared::log_limit::LogLimit;
use jetwork_shared::protocol::{
    Assignment, LeaseHolder, MasterElected, Outcome, OutcomeStatus, RegisterWorker, Registered,
    Report, ReportReply, RequestWork, RunningWork, VerdictKind, WorkGrant, WorkReady,
};
use jetwork_shared::{codec, headers, leader, subjects, QueueName, Token, WorkId, WorkerId};
use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use crate::exec::last_chars;
use crate::{Handler, Job};

/// Most result bytes carried by one report (the rest go in the next).
const REPORT_BYTES: usize = 512 * 1024;
/// Longest failure reason sent (the tail is kept: that is where errors usually are).
const MAX_REASON: usize = 4096;
/// Progress for one attempt is sent at most this often, however often the handler reports it
/// (each accepted progress is a journal write on the master).
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Why a request to the master got no useful answer.
#[derive(Debug)]
enum Failure {
    /// Nobody serves the endpoint: no leader right now.
    NoMaster,
    /// The leader does not know this worker.
    UnknownWorker,
    /// Another live worker process holds this worker id (409), or the master knows the id
    /// under another session (403).
    IdInUse(String),
    /// The leader refused the request.
    Refused(String),
    /// The reply names an epoch the lease does not confirm (a forged or deposed responder).
    Unconfirmed(u64),
    /// Timed out, or could not be sent or decoded.
    Failed(String),
}

enum ReplyTo {
    Registered(Result<Registered, Failure>),
    Granted {
        generation: u64,
        asked: u32,
        waited: bool,
        result: Result<WorkGrant, Failure>,
    },
    Reported {
        asked: u32,
        sent: Vec<(WorkId, u32)>,
        result: Result<ReportReply, Failure>,
    },
    /// What the lease said after an election announcement for `announced`.
    Leader {
        announced: u64,
        holder: Result<Option<LeaseHolder>, leader::LeaseReadError>,
    },
}

/// What a request task needs to check a reply's epoch against the lease.
#[derive(Clone)]
struct Confirm {
    js: jetstream::Context,
    /// The newest epoch this worker has confirmed.
    epoch: Arc<AtomicU64>,
}

/// Replies that carry the sender's epoch.
trait Epoch {
    fn epoch(&self) -> u64;
}

impl Epoch for Registered {
    fn epoch(&self) -> u64 {
        self.epoch
    }
}

impl Epoch for WorkGrant {
    fn epoch(&self) -> u64 {
        self.epoch
    }
}

impl Epoch for ReportReply {
    fn epoch(&self) -> u64 {
        self.epoch
    }
}

struct Unacked {
    status: OutcomeStatus,
    result: Bytes,
    reason: Option<String>,
    /// When it was last sent; `None`: not yet.
    sent_at: Option<Instant>,
}

/// Static settings of a worker runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub id: WorkerId,
    pub queues: Vec<QueueName>,
    pub concurrency: u32,
    pub register_interval: Duration,
    pub resend_interval: Duration,
    pub request_timeout: Duration,
    pub progress_every: Option<Duration>,
    pub shutdown_grace: Duration,
    /// Largest result the master accepts; a larger one fails the attempt here.
    pub max_result: usize,
}

struct Runtime<H> {
    client: async_nats::Client,
    cfg: RuntimeConfig,
    handler: Arc<H>,
    /// This process's session: only it may act under `cfg.id` while it lives.
    session: Token,
    /// The newest epoch confirmed by the lease.
    epoch: u64,
    confirm: Confirm,
    /// A lease check for an announcement is in flight.
    verifying: bool,
    /// The token of every attempt held (running, waiting to start, or with an outcome to
    /// report).
    tokens: HashMap<(WorkId, u32), Token>,
    /// Lines about things anyone can cause are rate-limited.
    forged_log: LogLimit,
    id_log: LogLimit,
    registered: bool,
    registering: bool,
    requesting: bool,
    /// Identifies the request for work in flight; a new master's election abandons it (the
    /// old master will never answer a request it was holding open).
    request_generation: u64,
    /// Slots asked for by the request in flight.
    requested: u32,
    /// When the request in flight was sent.
    requested_at: Instant,
    /// When the report awaiting its reply was sent: outcomes that finish meanwhile ride the
    /// next one. Cleared by the reply, by a new master's election (the report may have gone
    /// to a dead one) and after `resend_interval`.
    reporting: Option<Instant>,
    want_work: bool,
    asked: u32,
    running: HashMap<(WorkId, u32), AbortHandle>,
    tasks: HashMap<tokio::task::Id, (WorkId, u32)>,
    jobs: JoinSet<Result<Bytes, String>>,
    backlog: VecDeque<Assignment>,
    unacked: BTreeMap<(WorkId, u32), Unacked>,
    /// Attempts with progress to report, and when progress was last sent for each.
    progress: std::collections::BTreeSet<(WorkId, u32)>,
    progress_sent: HashMap<(WorkId, u32), Instant>,
    progress_tx: mpsc::UnboundedSender<(WorkId, u32)>,
    replies: mpsc::UnboundedSender<ReplyTo>,
    stopping: Option<Instant>,
}

/// Runs the worker until `shutdown` resolves and its jobs are finished (or the grace period
/// is over).
pub async fn run<H: Handler>(
    client: async_nats::Client,
    cfg: RuntimeConfig,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> Result<(), async_nats::SubscribeError> {
    tokio::pin!(shutdown);
    let mut ready = client.subscribe(subjects::worker_ready(&cfg.id)).await?;
    let mut elected = client.subscribe(subjects::MASTER_ELECTED).await?;
    let (progress_tx, mut progress_rx) = mpsc::unbounded_channel();
    let (replies, mut replies_rx) = mpsc::unbounded_channel();
    tracing::info!(worker = %cfg.id, queues = ?cfg.queues, concurrency = cfg.concurrency, "worker starting");
    let confirm =
        Confirm { js: jetstream::new(client.clone()), epoch: Arc::new(AtomicU64::new(0)) };
    let mut rt = Runtime {
        client,
        handler: Arc::new(handler),
        session: Token::random(),
        epoch: 0,
        confirm,
        verifying: false,
        tokens: HashMap::new(),
        forged_log: LogLimit::new(Duration::from_secs(10)),
        id_log: LogLimit::new(Duration::from_secs(10)),
        registered: false,
        registering: false,
        requesting: false,
        request_generation: 0,
        requested: 0,
        requested_at: Instant::now(),
        reporting: None,
        want_work: true,
        asked: 0,
        running: HashMap::new(),
        tasks: HashMap::new(),
        jobs: JoinSet::new(),
        backlog: VecDeque::new(),
        unacked: BTreeMap::new(),
        progress: Default::default(),
        progress_sent: HashMap::new(),
        progress_tx,
        replies,
        stopping: None,
        cfg,
    };
    let mut heartbeat = tokio::time::interval(rt.cfg.register_interval);
    let retry_every = rt.cfg.register_interval.min(Duration::from_millis(500));
    let mut retry = tokio::time::interval(retry_every);
    let resend_every = (rt.cfg.resend_interval / 4).max(Duration::from_millis(20));
    let mut resend = tokio::time::interval(resend_every);
    let mut keepalive =
        tokio::time::interval(rt.cfg.progress_every.unwrap_or(Duration::from_secs(3600)));
    keepalive.reset();
    loop {
        tokio::select! {
            _ = &mut shutdown, if rt.stopping.is_none() => {
                tracing::info!(worker = %rt.cfg.id, running = rt.running.len(), "shutting down; finishing running jobs");
                rt.stopping = Some(Instant::now() + rt.cfg.shutdown_grace);
                rt.withdraw_request();
            }
            Some(joined) = rt.jobs.join_next_with_id(), if !rt.jobs.is_empty() => rt.job_done(joined),
            Some(progress) = progress_rx.recv() => {
                rt.progress.insert(progress);
            }
            Some(reply) = replies_rx.recv() => rt.on_reply(reply),
            Some(message) = ready.next() => {
                if let Ok(note) = codec::decode::<WorkReady>(&message.payload) {
                    if note.epoch >= rt.epoch {
                        rt.want_work = true;
                    }
                }
            }
            Some(message) = elected.next() => {
                match codec::decode::<MasterElected>(&message.payload) {
                    Ok(note) if note.epoch > rt.epoch => rt.verify_leader(note.epoch),
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "ignoring an unreadable election announcement"),
                }
            }
            _ = heartbeat.tick() => rt.register(),
            _ = retry.tick(), if !rt.registered => rt.register(),
            _ = resend.tick() => {}
            _ = keepalive.tick(), if rt.cfg.progress_every.is_some() => {
                let running: Vec<_> = rt.running.keys().cloned().collect();
                rt.progress.extend(running);
            }
        }
        if let Some(deadline) = rt.stopping {
            if rt.running.is_empty() && rt.backlog.is_empty() && rt.unacked.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                rt.abandon();
                if Instant::now() >= deadline + rt.cfg.resend_interval {
                    tracing::warn!(
                        unacked = rt.unacked.len(),
                        "giving up on unacknowledged outcomes"
                    );
                    break;
                }
            }
        }
        rt.pump();
    }
    tracing::info!(worker = %rt.cfg.id, "worker stopped");
    Ok(())
}

impl<H: Handler> Runtime<H> {
    fn register(&mut self) {
        if self.registering {
            return;
        }
        self.registering = true;
        let mut running: Vec<RunningWork> = self
            .running
            .keys()
            .map(|(work_id, attempt)| RunningWork { work_id: work_id.clone(), attempt: *attempt })
            .collect();
        running.extend(
            self.unacked.keys().map(|(work_id, attempt)| RunningWork {
                work_id: work_id.clone(),
                attempt: *attempt,
            }),
        );
        running.extend(
            self.backlog
                .iter()
                .map(|a| RunningWork { work_id: a.work_id.clone(), attempt: a.attempt }),
        );
        let msg = RegisterWorker {
            worker_id: self.cfg.id.clone(),
            session: self.session,
            queues: self.cfg.queues.clone(),
            capacity: self.cfg.concurrency,
            running,
        };
        let (client, replies, timeout) =
            (self.client.clone(), self.replies.clone(), self.cfg.request_timeout);
        let confirm = self.confirm.clone();
        tokio::spawn(async move {
            let result = request(&client, &confirm, subjects::MASTER_REGISTER, &msg, timeout).await;
            let _ = replies.send(ReplyTo::Registered(result));
        });
    }

    fn free(&self) -> u32 {
        let used =
            self.running.len() + self.backlog.len() + self.unacked.len() + self.asked as usize;
        self.cfg.concurrency.saturating_sub(u32::try_from(used).unwrap_or(u32::MAX))
    }

    /// Starts what can start, and sends what is due: outcomes and progress in a report
    /// (which also asks for the slots they free), or else a request for work.
    fn pump(&mut self) {
        while (self.running.len() as u32) < self.cfg.concurrency {
            let Some(assignment) = self.backlog.pop_front() else { break };
            self.start(assignment);
        }
        if self.reporting.is_some_and(|at| at.elapsed() < self.cfg.resend_interval) {
            // One report at a time: under load the outcomes that finish during a round trip
            // go together in the next report (one request and one journal write for many),
            // and when idle a lone outcome still leaves at once.
            return;
        }
        let now = Instant::now();
        let mut outcomes = Vec::new();
        let mut bytes = 0usize;
        for ((work_id, attempt), unacked) in self.unacked.iter_mut() {
            let due = unacked.sent_at.is_none_or(|at| now >= at + self.cfg.resend_interval);
            if !due || (bytes > 0 && bytes + unacked.result.len() > REPORT_BYTES) {
                continue;
            }
            bytes += unacked.result.len();
            if unacked.sent_at.is_some() {
                tracing::debug!(%work_id, attempt, "no verdict yet; re-sending the outcome");
            }
            unacked.sent_at = Some(now);
            outcomes.push(Outcome {
                work_id: work_id.clone(),
                attempt: *attempt,
                token: self.tokens.get(&(work_id.clone(), *attempt)).copied().unwrap_or_default(),
                status: unacked.status,
                result: unacked.result.clone(),
                reason: unacked.reason.clone(),
                non_retryable: false,
            });
        }
        let reported = outcomes.len() as u32;
        self.progress_sent.retain(|key, _| self.running.contains_key(key));
        let due: Vec<(WorkId, u32)> = self
            .progress
            .iter()
            .filter(|key| self.progress_sent.get(*key).is_none_or(|at| now >= *at + PROGRESS_EVERY))
            .cloned()
            .collect();
        for key in due {
            self.progress.remove(&key);
            if self.running.contains_key(&key) {
                self.progress_sent.insert(key.clone(), now);
                let token = self.tokens.get(&key).copied().unwrap_or_default();
                let (work_id, attempt) = key;
                let status = OutcomeStatus::Progress;
                outcomes.push(Outcome {
                    work_id,
                    attempt,
                    token,
                    status,
                    result: Bytes::new(),
                    reason: None,
                    non_retryable: false,
                });
            }
        }
        self.progress.retain(|key| self.running.contains_key(key));
        let slots =
            if self.stopping.is_some() || !self.registered { 0 } else { self.free() + reported };
        if !outcomes.is_empty() {
            self.asked += slots;
            let sent = outcomes
                .iter()
                .filter(|o| o.status != OutcomeStatus::Progress)
                .map(|o| (o.work_id.clone(), o.attempt))
                .collect();
            self.reporting = Some(now);
            let msg =
                Report { worker_id: self.cfg.id.clone(), session: self.session, outcomes, slots };
            let (client, replies, timeout) =
                (self.client.clone(), self.replies.clone(), self.cfg.request_timeout);
            let confirm = self.confirm.clone();
            tokio::spawn(async move {
                let result =
                    request(&client, &confirm, subjects::MASTER_REPORT, &msg, timeout).await;
                let _ = replies.send(ReplyTo::Reported { asked: slots, sent, result });
            });
            return;
        }
        if self.want_work
            && self.registered
            && !self.requesting
            && self.stopping.is_none()
            && slots > 0
        {
            self.want_work = false;
            self.requesting = true;
            self.request_generation += 1;
            self.requested = slots;
            self.requested_at = Instant::now();
            self.asked += slots;
            // Long poll: the master holds the request until work arrives (then hands it out in
            // the same journal write that accepts it), well within our request timeout.
            let wait = self.cfg.request_timeout / 2;
            let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
            let session = self.session;
            let msg = RequestWork { worker_id: self.cfg.id.clone(), session, slots, wait_ms };
            let (client, replies, timeout) =
                (self.client.clone(), self.replies.clone(), self.cfg.request_timeout);
            let generation = self.request_generation;
            let confirm = self.confirm.clone();
            tokio::spawn(async move {
                let result =
                    request(&client, &confirm, subjects::MASTER_REQUEST, &msg, timeout).await;
                let waited = wait_ms > 0;
                let _ = replies.send(ReplyTo::Granted { generation, asked: slots, waited, result });
            });
        }
    }

    fn on_reply(&mut self, reply: ReplyTo) {
        match reply {
            ReplyTo::Registered(result) => {
                self.registering = false;
                match result {
                    Ok(r) if r.epoch >= self.epoch => {
                        if !self.registered {
                            tracing::info!(worker = %self.cfg.id, epoch = r.epoch, "registered with the master");
                        }
                        self.adopt(r.epoch);
                        self.registered = true;
                        for held in &r.revoked {
                            self.revoke(&held.work_id, held.attempt);
                        }
                        if r.work_ready {
                            self.want_work = true;
                        }
                    }
                    Ok(_) => {}
                    Err(failure) => self.failed("register", failure),
                }
            }
            ReplyTo::Granted { generation, asked, waited, result } => {
                let current = generation == self.request_generation;
                if current {
                    self.requesting = false;
                    self.asked = self.asked.saturating_sub(asked);
                }
                match result {
                    Ok(grant) if grant.epoch >= self.epoch => {
                        if self.adopt(grant.epoch) {
                            self.register();
                        }
                        // A full grant suggests there is more waiting; an empty one after a
                        // held-open wait means none came: ask (and wait) again. An empty one
                        // at once (a master that does not hold requests) waits for a notice.
                        let held =
                            waited && self.requested_at.elapsed() >= self.cfg.request_timeout / 4;
                        let full = grant.assignments.len() as u32 == asked && asked > 0;
                        self.want_work |= full || (held && grant.assignments.is_empty());
                        for assignment in grant.assignments {
                            self.accept(assignment);
                        }
                    }
                    Ok(_) => {}
                    Err(failure) if current => self.failed("request", failure),
                    Err(_) => {}
                }
            }
            ReplyTo::Reported { asked, sent, result } => {
                self.reporting = None;
                self.asked = self.asked.saturating_sub(asked);
                match result {
                    Ok(reply) if reply.epoch >= self.epoch => {
                        if self.adopt(reply.epoch) {
                            self.register();
                        }
                        for verdict in reply.verdicts {
                            let key = (verdict.work_id.clone(), verdict.attempt);
                            match verdict.verdict {
                                VerdictKind::Rejected => tracing::warn!(
                                    work_id = %verdict.work_id,
                                    attempt = verdict.attempt,
                                    reason = verdict.reason.as_deref().unwrap_or(""),
                                    "master rejected an outcome"
                                ),
                                VerdictKind::Superseded if self.running.contains_key(&key) => {
                                    self.revoke(&verdict.work_id, verdict.attempt);
                                }
                                _ => {}
                            }
                            if sent.contains(&key) {
                                self.unacked.remove(&key);
                                self.forget_token(&key);
                            }
                        }
                        // Fewer items than asked: nothing more is ready; a held-open request
                        // gets the next item the moment it is submitted.
                        self.want_work |= asked > 0;
                        for assignment in reply.assignments {
                            self.accept(assignment);
                        }
                    }
                    Ok(_) => {}
                    Err(failure) => self.failed("report", failure),
                }
            }
            ReplyTo::Leader { announced, holder } => {
                self.verifying = false;
                match holder {
                    Ok(Some(lease)) if lease.epoch > self.epoch => {
                        tracing::info!(epoch = lease.epoch, leader = %lease.holder, "new master elected (confirmed by the lease); registering");
                        if self.adopt(lease.epoch) {
                            self.register();
                        }
                    }
                    // Taken a moment ago, epoch not written yet: the announcement came early
                    // (or was forged); the next heartbeat finds the leader either way.
                    Ok(Some(lease)) if lease.epoch == 0 => {}
                    Ok(lease) => {
                        if let Some(suppressed) = self.forged_log.allow() {
                            tracing::warn!(
                                announced,
                                lease = ?lease.map(|l| l.epoch),
                                suppressed,
                                "ignoring an election announcement the lease does not confirm"
                            );
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot read the lease; the next heartbeat finds the leader")
                    }
                }
            }
        }
    }

    /// Withdraws a request for work the master may be holding open (a request for no slots
    /// replaces it), so no work is handed to a worker that is shutting down.
    fn withdraw_request(&self) {
        if !self.requesting {
            return;
        }
        let (worker_id, session) = (self.cfg.id.clone(), self.session);
        let msg = RequestWork { worker_id, session, slots: 0, wait_ms: 0 };
        let (client, timeout) = (self.client.clone(), self.cfg.request_timeout);
        let confirm = self.confirm.clone();
        tokio::spawn(async move {
            let _: Result<WorkGrant, Failure> =
                request(&client, &confirm, subjects::MASTER_REQUEST, &msg, timeout).await;
        });
    }

    /// Checks an election announcement for `announced` against the lease (one check at a
    /// time: a flood of forged announcements costs one lease read per round trip).
    fn verify_leader(&mut self, announced: u64) {
        if self.verifying {
            return;
        }
        self.verifying = true;
        let (js, replies) = (self.confirm.js.clone(), self.replies.clone());
        tokio::spawn(async move {
            let holder = leader::current(&js).await;
            let _ = replies.send(ReplyTo::Leader { announced, holder });
        });
    }

    /// Follows the leader of `epoch` (confirmed by the lease) if it is newer than the one
    /// followed so far; returns whether it was.
    fn adopt(&mut self, epoch: u64) -> bool {
        if epoch <= self.epoch {
            return false;
        }
        let first = self.epoch == 0;
        self.epoch = epoch;
        self.confirm.epoch.store(epoch, Ordering::Relaxed);
        if !first {
            self.resend_to_new_master();
        }
        true
    }

    /// Drops the token of an attempt this worker no longer holds in any way.
    fn forget_token(&mut self, key: &(WorkId, u32)) {
        let held = self.running.contains_key(key)
            || self.unacked.contains_key(key)
            || self.backlog.iter().any(|a| a.work_id == key.0 && a.attempt == key.1);
        if !held {
            self.tokens.remove(key);
        }
    }

    /// A new master knows nothing of reports sent to its predecessor: send every outcome
    /// still awaiting a verdict to it now, before its deadlines hand the work to others.
    fn resend_to_new_master(&mut self) {
        self.reporting = None;
        if self.requesting {
            // The old master was holding it open; ask the new one instead.
            self.requesting = false;
            self.asked = self.asked.saturating_sub(self.requested);
            self.request_generation += 1;
            self.want_work = true;
        }
        for unacked in self.unacked.values_mut() {
            unacked.sent_at = None;
        }
    }

    fn failed(&mut self, what: &str, failure: Failure) {
        match failure {
            Failure::NoMaster => {
                tracing::debug!(what, "no master is serving right now");
                self.registered = false;
            }
            Failure::UnknownWorker => {
                tracing::info!(what, "the master does not know this worker; registering");
                self.registered = false;
                self.register();
            }
            Failure::IdInUse(why) => {
                self.registered = false;
                if let Some(suppressed) = self.id_log.allow() {
                    tracing::warn!(worker = %self.cfg.id, what, %why, suppressed, "this worker id is held by another process; retrying");
                }
            }
            Failure::Refused(why) => tracing::warn!(what, %why, "the master refused a request"),
            Failure::Unconfirmed(epoch) => {
                tracing::debug!(
                    what,
                    epoch,
                    "ignoring a reply from an epoch the lease does not confirm"
                )
            }
            Failure::Failed(why) => tracing::debug!(what, %why, "request to the master failed"),
        }
    }

    fn accept(&mut self, assignment: Assignment) {
        let key = (assignment.work_id.clone(), assignment.attempt);
        if self.running.contains_key(&key) || self.unacked.contains_key(&key) {
            return; // A duplicate grant (a re-sent reply): already have it.
        }
        self.tokens.insert(key, assignment.token);
        if (self.running.len() as u32) < self.cfg.concurrency {
            self.start(assignment);
        } else {
            self.backlog.push_back(assignment);
        }
    }

    fn start(&mut self, a: Assignment) {
        tracing::debug!(work_id = %a.work_id, queue = %a.queue, attempt = a.attempt, bytes = a.payload.len(), "executing work");
        let job = Job {
            work_id: a.work_id.clone(),
            queue: a.queue,
            attempt: a.attempt,
            payload: a.payload,
            timeout: Duration::from_millis(a.timeout_ms),
            progress: self.progress_tx.clone(),
        };
        let handler = self.handler.clone();
        let abort = self.jobs.spawn(async move { handler.handle(job).await });
        self.tasks.insert(abort.id(), (a.work_id.clone(), a.attempt));
        self.running.insert((a.work_id, a.attempt), abort);
    }

    fn job_done(
        &mut self,
        joined: Result<(tokio::task::Id, Result<Bytes, String>), tokio::task::JoinError>,
    ) {
        let (task, outcome) = match joined {
            Ok((task, outcome)) => (task, outcome),
            Err(e) if e.is_cancelled() => {
                self.tasks.remove(&e.id());
                return;
            }
            Err(e) => (e.id(), Err(format!("handler panicked: {e}"))),
        };
        let Some(key) = self.tasks.remove(&task) else { return };
        self.running.remove(&key);
        let (work_id, attempt) = &key;
        let limit = self.cfg.max_result;
        let outcome = match outcome {
            Ok(result) if result.len() > limit => {
                Err(format!("result of {} bytes exceeds the limit of {limit} bytes", result.len()))
            }
            other => other,
        };
        let unacked = match outcome {
            Ok(result) => {
                tracing::debug!(%work_id, attempt, bytes = result.len(), "work is complete");
                Unacked { status: OutcomeStatus::Completed, result, reason: None, sent_at: None }
            }
            Err(reason) => {
                tracing::warn!(%work_id, attempt, %reason, "work failed");
                Unacked {
                    status: OutcomeStatus::Failed,
                    result: Bytes::new(),
                    reason: Some(last_chars(&reason, MAX_REASON).to_owned()),
                    sent_at: None,
                }
            }
        };
        self.unacked.insert(key, unacked);
    }

    /// Stops running one attempt: it is no longer this worker's. A newer attempt of the same
    /// item, if this worker has one, carries on.
    fn revoke(&mut self, work_id: &WorkId, attempt: u32) {
        if let Some(abort) = self.running.remove(&(work_id.clone(), attempt)) {
            tracing::info!(%work_id, attempt, "attempt revoked by the master; stopping it");
            abort.abort();
        }
        self.backlog.retain(|a| !(&a.work_id == work_id && a.attempt == attempt));
        self.forget_token(&(work_id.clone(), attempt));
    }

    /// Shutdown grace is over: stop what still runs and report it failed, so the master
    /// re-queues it now rather than at its deadline.
    fn abandon(&mut self) {
        let keys: Vec<_> = self.running.keys().cloned().collect();
        for key in keys {
            if let Some(abort) = self.running.remove(&key) {
                abort.abort();
                let reason = Some("worker shut down before the job finished".to_owned());
                self.unacked.insert(
                    key,
                    Unacked {
                        status: OutcomeStatus::Failed,
                        result: Bytes::new(),
                        reason,
                        sent_at: None,
                    },
                );
            }
        }
        self.backlog.clear();
    }
}

/// Sends one MessagePack request to the master and decodes the reply, mapping the NATS
/// micro-service error headers and "no responders" to [`Failure`]s. A reply from an epoch newer
/// than the worker has confirmed is checked against the lease first: anyone could answer on a
/// master subject, but only the leader the lease names counts.
async fn request<T: Serialize, R: DeserializeOwned + Epoch>(
    client: &async_nats::Client,
    confirm: &Confirm,
    subject: &'static str,
    body: &T,
    timeout: Duration,
) -> Result<R, Failure> {
    let payload = codec::encode(body).map_err(|e| Failure::Failed(e.to_string()))?;
    let request = async_nats::Request::new().payload(payload).timeout(Some(timeout));
    let reply = match client.send_request(subject, request).await {
        Ok(reply) => reply,
        Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
            return Err(Failure::NoMaster)
        }
        Err(e) => return Err(Failure::Failed(e.to_string())),
    };
    if let Some(headers) = &reply.headers {
        if let Some(error) = headers.get(headers::NATS_SERVICE_ERROR) {
            let code = headers
                .get(headers::NATS_SERVICE_ERROR_CODE)
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default();
            let why = format!("{code} {}", error.as_str());
            return Err(match code.as_str() {
                "404" => Failure::UnknownWorker,
                "503" if error.as_str().contains("at most") => Failure::Refused(why),
                "503" => Failure::NoMaster,
                "403" | "409" => Failure::IdInUse(why),
                _ => Failure::Refused(why),
            });
        }
    }
    let decoded: R = codec::decode(&reply.payload).map_err(|e| Failure::Failed(e.to_string()))?;
    let epoch = decoded.epoch();
    if epoch > confirm.epoch.load(Ordering::Relaxed) {
        match leader::current(&confirm.js).await {
            Ok(Some(lease)) if lease.epoch == epoch => {}
            _ => return Err(Failure::Unconfirmed(epoch)),
        }
    }
    Ok(decoded)
}
