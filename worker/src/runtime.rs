//! The worker's I/O shell around [`crate::core::Engine`]: one task running one `select!` loop
//! that turns what happens into [`Input`]s and carries out the engine's [`Action`]s.
//!
//! ```text
//!  jetwork.worker.<id>.ready ─┐                                   ┌─► request tasks (NATS request/reply,
//!  jetwork.worker.<id>.cancel ┤
//!  jetwork.master.elected ────┤                                   │     lease check of newer epochs)
//!  replies, lease reads ──────┼─► Input ─► Engine::step ─► Action ┼─► job tasks (JoinSet, abort handles)
//!  job ends, progress ────────┤     (stamped with now/wall)       ├─► lease reads
//!  shutdown, tick ────────────┘                                   └─► tracing (rate-limited kinds)
//! ```
//!
//! What it owns, and the engine does not: the NATS client and subscriptions, the job tasks
//! and their abort handles, the clocks (a monotonic origin and the wall clock), the tick timer
//! and the lease reads. Its promises to the engine:
//! - every `Register`, `RequestWork` and `Report` action gets exactly one reply input with the
//!   same id: the reply, or the [`Failure`] that stood in for it (timeout included);
//! - a reply claiming an epoch newer than the action's is delivered only if the lease names
//!   that epoch (anyone could answer on a master subject; only the leader counts), otherwise
//!   as [`Failure::Unconfirmed`];
//! - a job the engine aborted never produces an input (its late end is dropped by the engine
//!   if it races with the abort).
//!
//! The handler's [`crate::Gate`], if it has one, is watched too: each change becomes an
//! [`Input::Gate`].
//!
//! Once the engine has stopped, the shell deregisters the worker
//! (`jetwork.master.deregister`): its id is free for the next process at once, and anything
//! the master still counts as its (an outcome whose verdict never came) is re-queued at once
//! rather than after `worker_timeout`.
//!
//! It also reports what it sees ([`Observed`]): readiness follows the engine's registration
//! and the handler's gate (checked after every step, stored only on a change), and, with
//! metrics on, jobs started, completed and failed and their run times per queue, busy slots
//! and reconnects.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use futures::StreamExt;
use jetwork_shared::fast_hash::FastMap;
use jetwork_shared::jobs::Revoke;
use jetwork_shared::log_limit::LogLimit;
use jetwork_shared::protocol::{
    Assignment, Deregister, Deregistered, LeaseHolder, MasterElected, Registered, ReportReply,
    WorkGrant, WorkReady,
};
use jetwork_shared::{clock, codec, headers, leader, subjects, QueueName, WorkId};
use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};

use crate::core::{Action, Config, Engine, Failure, Input, Level, Limit, Log, Millis, RequestId};
use crate::metrics::{QueueSeries, WorkerMetrics};
use crate::{Deadline, Handler, Job, JobError};
use jetwork_shared::observe::Health;

/// Where the runtime reports what it sees: readiness, and metrics when they are on.
pub struct Observed {
    pub health: Health,
    pub metrics: Option<WorkerMetrics>,
}

/// A running job as the runtime tracks it: its attempt, and (metrics on) when it started and
/// its queue's series.
struct Running {
    key: (WorkId, u32),
    queue: QueueName,
    clock: Option<(Instant, QueueSeries)>,
}

/// The shortest and longest tick: the engine's timers are as precise as the tick.
const MIN_TICK: Duration = Duration::from_millis(20);
const MAX_TICK: Duration = Duration::from_millis(250);

/// An answer from a task the runtime spawned, before it is stamped into an [`Input`].
enum Answer {
    Registered(RequestId, Result<Registered, Failure>),
    Granted(RequestId, Result<WorkGrant, Failure>),
    Reported(RequestId, Result<ReportReply, Failure>),
    Lease(u64, Result<Option<LeaseHolder>, String>),
}

/// Replies that carry the sender's epoch.
trait Epoch {
    fn epoch(&self) -> u64;
}

impl Epoch for Deregistered {
    fn epoch(&self) -> u64 {
        self.epoch
    }
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

/// Everything the loop does I/O with.
struct Shell<H> {
    client: async_nats::Client,
    js: jetstream::Context,
    handler: Arc<H>,
    cfg: Config,
    origin: Instant,
    answers: mpsc::UnboundedSender<Answer>,
    progress: mpsc::UnboundedSender<(WorkId, u32)>,
    jobs: JoinSet<Result<Bytes, JobError>>,
    /// Running jobs, to abort them.
    running: FastMap<(WorkId, u32), AbortHandle>,
    /// Running jobs' deadlines, moved on as the master extends them.
    deadlines: FastMap<(WorkId, u32), tokio::sync::watch::Sender<Instant>>,
    /// Which attempt each job task runs.
    tasks: FastMap<tokio::task::Id, Running>,
    observed: Observed,
    /// Readiness as last reported (registered with a confirmed leader, and its epoch).
    reported: (bool, u64),
    /// Why the handler's gate is closed (`None`: open), now and as last reported.
    closed: Option<String>,
    reported_closed: Option<String>,
    /// The queue of the job that ended last: the engine's lines about its end name the
    /// attempt only, and its task is gone by then.
    last_ended: Option<((WorkId, u32), QueueName)>,
    /// Lines about things anyone can cause are rate-limited, per kind.
    forged_log: LogLimit,
    id_log: LogLimit,
    refused_log: LogLimit,
}

/// Runs the worker until `shutdown` resolves and its jobs are finished (or the grace period
/// is over).
pub async fn run<H: Handler>(
    client: async_nats::Client,
    cfg: Config,
    handler: H,
    observed: Observed,
    shutdown: impl Future<Output = ()>,
) -> Result<(), async_nats::SubscribeError> {
    tokio::pin!(shutdown);
    let login = cfg.login.as_ref();
    let mut ready = client.subscribe(subjects::worker_ready(login, &cfg.id)).await?;
    let mut cancel = client.subscribe(subjects::worker_cancel(login, &cfg.id)).await?;
    let mut elected = client.subscribe(subjects::MASTER_ELECTED).await?;
    let (progress, mut progress_rx) = mpsc::unbounded_channel();
    let (answers, mut answers_rx) = mpsc::unbounded_channel();
    let mut gate = handler.gate().map(|gate| gate.watch());
    // Ticks drive every timer in the engine: a quarter of the shortest interval, bounded.
    let shortest = cfg.resend_interval.min(cfg.register_interval) / 4;
    let mut tick = tokio::time::interval(Duration::from_millis(shortest).clamp(MIN_TICK, MAX_TICK));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut shell = Shell {
        js: jetstream::new(client.clone()),
        client,
        handler: Arc::new(handler),
        cfg: cfg.clone(),
        origin: Instant::now(),
        answers,
        progress,
        jobs: JoinSet::new(),
        running: FastMap::default(),
        deadlines: FastMap::default(),
        tasks: FastMap::default(),
        forged_log: LogLimit::new(Duration::from_secs(10)),
        id_log: LogLimit::new(Duration::from_secs(10)),
        refused_log: LogLimit::new(Duration::from_secs(10)),
        observed,
        reported: (false, 0),
        closed: None,
        reported_closed: None,
        last_ended: None,
    };
    let mut engine = Engine::new(cfg);
    let mut input = Input::Start { now: shell.now() };
    let mut shutting_down = false;
    loop {
        let stopped = shell.execute(engine.step(input));
        shell.report(&engine);
        if stopped {
            shell.deregister(engine.epoch()).await;
            break;
        }
        input = loop {
            let next = tokio::select! {
                _ = &mut shutdown, if !shutting_down => {
                    shutting_down = true;
                    Some(Input::Shutdown { now: shell.now() })
                }
                Some(joined) = shell.jobs.join_next_with_id(), if !shell.jobs.is_empty() => {
                    shell.job_done(joined)
                }
                Some((work_id, attempt)) = progress_rx.recv() => {
                    Some(Input::Progress { work_id, attempt, now: shell.now() })
                }
                Some(answer) = answers_rx.recv() => Some(shell.stamp(answer)),
                closed = next_gate(&mut gate) => {
                    if let Some(why) = &closed {
                        tracing::warn!(worker = %shell.cfg.id, "taking no work: {why}");
                    }
                    let open = closed.is_none();
                    shell.closed = closed;
                    Some(Input::Gate { open, now: shell.now() })
                }
                Some(message) = ready.next() => match codec::decode::<WorkReady>(&message.payload) {
                    Ok(note) => Some(Input::WorkReady { epoch: note.epoch, now: shell.now() }),
                    Err(_) => None,
                },
                Some(message) = cancel.next() => match codec::decode::<Revoke>(&message.payload) {
                    Ok(r) => Some(Input::Cancelled {
                        epoch: r.epoch,
                        work_id: r.work_id,
                        attempt: r.attempt,
                        now: shell.now(),
                    }),
                    Err(e) => {
                        tracing::debug!(error = %e, "ignoring an unreadable cancellation");
                        None
                    }
                },
                Some(message) = elected.next() => match codec::decode::<MasterElected>(&message.payload) {
                    Ok(note) => Some(Input::Elected { epoch: note.epoch, now: shell.now() }),
                    Err(e) => {
                        tracing::debug!(error = %e, "ignoring an unreadable election announcement");
                        None
                    }
                },
                _ = tick.tick() => {
                    if let Some(metrics) = &shell.observed.metrics {
                        let connects = shell.client.statistics().connects.load(std::sync::atomic::Ordering::Relaxed);
                        metrics.connections(connects);
                    }
                    Some(Input::Tick { now: shell.now() })
                }
            };
            if let Some(next) = next {
                break next;
            }
        };
    }
    Ok(())
}

impl<H: Handler> Shell<H> {
    /// Milliseconds on the monotonic clock since the worker started.
    fn now(&self) -> Millis {
        clock::millis(self.origin.elapsed())
    }

    /// An answer as an input, stamped with when it arrived.
    fn stamp(&self, answer: Answer) -> Input {
        let (now, wall) = (self.now(), clock::now_ms());
        match answer {
            Answer::Registered(id, reply) => Input::Registered { id, reply, now },
            Answer::Granted(id, reply) => Input::Granted { id, reply, now, wall },
            Answer::Reported(id, reply) => Input::Reported { id, reply, now, wall },
            Answer::Lease(announced, read) => Input::Lease { announced, read, now },
        }
    }

    /// Carries out the actions of one step; returns true once the engine has stopped.
    fn execute(&mut self, actions: Vec<Action>) -> bool {
        for action in actions {
            match action {
                Action::Register { id, epoch, msg } => {
                    let subject = self.endpoint(subjects::MASTER_REGISTER);
                    self.send(subject, msg, epoch, move |r| Answer::Registered(id, r))
                }
                Action::RequestWork { id, epoch, msg } => {
                    let subject = self.endpoint(subjects::MASTER_REQUEST);
                    self.send(subject, msg, epoch, move |r| Answer::Granted(id, r))
                }
                Action::Report { id, epoch, msg } => {
                    let subject = self.endpoint(subjects::MASTER_REPORT);
                    self.send(subject, msg, epoch, move |r| Answer::Reported(id, r))
                }
                Action::Withdraw { epoch, msg } => {
                    let (client, js) = (self.client.clone(), self.js.clone());
                    let timeout = Duration::from_millis(self.cfg.request_timeout);
                    let subject = self.endpoint(subjects::MASTER_REQUEST);
                    tokio::spawn(async move {
                        let _: Result<WorkGrant, Failure> =
                            request(&client, &js, epoch, &subject, &msg, timeout).await;
                    });
                }
                Action::Start { assignment, expires } => self.start(assignment, expires),
                Action::Abort { work_id, attempt } => {
                    self.deadlines.remove(&(work_id.clone(), attempt));
                    if let Some(abort) = self.running.remove(&(work_id, attempt)) {
                        abort.abort();
                    }
                }
                Action::Extend { work_id, attempt, expires } => {
                    if let Some(deadline) = self.deadlines.get(&(work_id, attempt)) {
                        let at = self.origin + Duration::from_millis(expires);
                        deadline.send_if_modified(|current| {
                            let later = at > *current;
                            if later {
                                *current = at;
                            }
                            later
                        });
                    }
                }
                Action::CheckLease { announced } => {
                    let (js, answers) = (self.js.clone(), self.answers.clone());
                    tokio::spawn(async move {
                        let read = leader::current(&js).await.map_err(|e| e.to_string());
                        let _ = answers.send(Answer::Lease(announced, read));
                    });
                }
                Action::Log(log) => self.log(log),
                Action::Stopped => return true,
            }
        }
        false
    }

    /// Releases the worker id at the master (see the module comment). Best effort, one try
    /// within the request timeout: a master that does not answer (none leads, or one older
    /// than the endpoint) forgets the worker after `worker_timeout`, as it always did.
    async fn deregister(&self, epoch: u64) {
        let msg = Deregister { worker_id: self.cfg.id.clone(), session: self.cfg.session };
        let subject = self.endpoint(subjects::MASTER_DEREGISTER);
        let timeout = Duration::from_millis(self.cfg.request_timeout);
        let worker = &self.cfg.id;
        match request::<_, Deregistered>(&self.client, &self.js, epoch, &subject, &msg, timeout)
            .await
        {
            Ok(released) => {
                tracing::info!(%worker, requeued = released.requeued, "deregistered: the worker id is free")
            }
            Err(Failure::UnknownWorker) => {
                tracing::info!(%worker, "deregistered: the master holds nothing under this id")
            }
            Err(e) => {
                tracing::warn!(%worker, error = %e, "could not deregister; the master forgets this worker once it has been silent for its worker_timeout")
            }
        }
    }

    /// Sends a request in a task of its own; its answer comes back through `answers`.
    fn send<T, R>(
        &self,
        subject: String,
        msg: T,
        epoch: u64,
        answer: impl FnOnce(Result<R, Failure>) -> Answer + Send + 'static,
    ) where
        T: Serialize + Send + Sync + 'static,
        R: DeserializeOwned + Epoch + Send + 'static,
    {
        let (client, js, answers) = (self.client.clone(), self.js.clone(), self.answers.clone());
        let timeout = Duration::from_millis(self.cfg.request_timeout);
        tokio::spawn(async move {
            let result = request(&client, &js, epoch, &subject, &msg, timeout).await;
            let _ = answers.send(answer(result));
        });
    }

    /// The subject of a master endpoint for this worker: under its login if it has one.
    fn endpoint(&self, endpoint: &str) -> String {
        match &self.cfg.login {
            Some(login) => subjects::worker_endpoint(endpoint, login, &self.cfg.id),
            None => endpoint.to_owned(),
        }
    }

    /// Readiness and the registration gauges, when they changed.
    fn report(&mut self, engine: &Engine) {
        let now = (engine.is_registered() && !engine.stopped(), engine.epoch());
        if now == self.reported && self.closed == self.reported_closed {
            return;
        }
        self.reported = now;
        self.reported_closed.clone_from(&self.closed);
        let (registered, epoch) = now;
        let (ready, why) = match (registered, &self.closed) {
            (true, None) => (true, format!("registered with the leader of epoch {epoch}")),
            (true, Some(why)) => (
                false,
                format!("registered with the leader of epoch {epoch}, but taking no work: {why}"),
            ),
            (false, _) if engine.stopped() => (false, "stopped".to_owned()),
            (false, _) => (false, "not registered with a leader".to_owned()),
        };
        self.observed.health.set_ready(ready, why);
        if let Some(metrics) = &self.observed.metrics {
            metrics.registered.set(i64::from(registered));
            metrics.epoch.set(i64::try_from(epoch).unwrap_or(i64::MAX));
        }
    }

    fn start(&mut self, a: Assignment, expires: Millis) {
        tracing::debug!(work_id = %a.work_id, queue = %a.queue, attempt = a.attempt, worker = %self.cfg.id, bytes = a.payload.len(), "executing work");
        let clock = self.observed.metrics.as_ref().and_then(|m| m.queue(&a.queue)).map(|series| {
            series.started.inc();
            (Instant::now(), series.clone())
        });
        let key = (a.work_id.clone(), a.attempt);
        let queue = a.queue.clone();
        let deadline =
            tokio::sync::watch::Sender::new(self.origin + Duration::from_millis(expires));
        let job = Job {
            work_id: a.work_id,
            queue: a.queue,
            attempt: a.attempt,
            payload: a.payload,
            timeout: Duration::from_millis(a.timeout_ms),
            deadline: Deadline::new(deadline.subscribe()),
            progress: self.progress.clone(),
        };
        let handler = self.handler.clone();
        let abort = self.jobs.spawn(async move { handler.handle(job).await });
        self.tasks.insert(abort.id(), Running { key: key.clone(), queue, clock });
        self.deadlines.insert(key.clone(), deadline);
        self.running.insert(key, abort);
        self.busy();
    }

    /// Sets the busy-slots gauge (metrics on).
    fn busy(&self) {
        if let Some(metrics) = &self.observed.metrics {
            metrics.slots_busy.set(i64::try_from(self.tasks.len()).unwrap_or(i64::MAX));
        }
    }

    /// A job task ended: its result (a panic is a failure), unless it was aborted.
    fn job_done(
        &mut self,
        joined: Result<(tokio::task::Id, Result<Bytes, JobError>), tokio::task::JoinError>,
    ) -> Option<Input> {
        let (task, result) = match joined {
            Ok((task, result)) => (task, result),
            Err(e) if e.is_cancelled() => {
                self.tasks.remove(&e.id());
                self.busy();
                return None;
            }
            Err(e) => (e.id(), Err(JobError::retryable(format!("handler panicked: {e}")))),
        };
        let Running { key: (work_id, attempt), queue, clock } = self.tasks.remove(&task)?;
        self.last_ended = Some(((work_id.clone(), attempt), queue));
        self.busy();
        if let Some((started, series)) = clock {
            series.run_seconds.observe(started.elapsed().as_secs_f64());
            match &result {
                Ok(_) => series.completed.inc(),
                Err(_) => series.failed.inc(),
            };
        }
        self.running.remove(&(work_id.clone(), attempt));
        self.deadlines.remove(&(work_id.clone(), attempt));
        Some(Input::JobEnded { work_id, attempt, result, now: self.now() })
    }

    fn log(&mut self, log: Log) {
        let suppressed = match log.limit {
            None => 0,
            Some(limit) => {
                let limiter = match limit {
                    Limit::ForgedAnnouncement => &mut self.forged_log,
                    Limit::IdInUse => &mut self.id_log,
                    Limit::Refused => &mut self.refused_log,
                };
                match limiter.allow() {
                    Some(suppressed) => suppressed,
                    None => return,
                }
            }
        };
        let (worker, text) = (&self.cfg.id, log.text);
        if let Some(job) = log.job {
            let queue = job.queue.or_else(|| self.queue_of(&job.key));
            let queue = queue.as_ref().map_or("", |q| q.as_str());
            let (work_id, attempt) = (&job.key.0, job.key.1);
            match log.level {
                Level::Debug => tracing::debug!(%work_id, queue, attempt, %worker, "{text}"),
                Level::Info => tracing::info!(%work_id, queue, attempt, %worker, "{text}"),
                Level::Warn => tracing::warn!(%work_id, queue, attempt, %worker, "{text}"),
            }
            return;
        }
        match log.level {
            Level::Debug => tracing::debug!(%worker, "{text}"),
            Level::Info => tracing::info!(%worker, "{text}"),
            Level::Warn if suppressed > 0 => tracing::warn!(%worker, suppressed, "{text}"),
            Level::Warn => tracing::warn!(%worker, "{text}"),
        }
    }

    /// The queue of the attempt `key`, if it runs or has just ended.
    fn queue_of(&self, key: &(WorkId, u32)) -> Option<QueueName> {
        if let Some((ended, queue)) = &self.last_ended {
            if ended == key {
                return Some(queue.clone());
            }
        }
        self.tasks.values().find(|r| &r.key == key).map(|r| r.queue.clone())
    }
}

/// The gate's next state (`Some(why)`: closed); never, for a handler without a gate.
async fn next_gate(
    gate: &mut Option<tokio::sync::watch::Receiver<Option<String>>>,
) -> Option<String> {
    if let Some(watch) = gate {
        if watch.changed().await.is_ok() {
            return watch.borrow_and_update().clone();
        }
    }
    // No gate; or its sender is gone, which cannot happen while the handler lives.
    std::future::pending().await
}

/// Sends one MessagePack request to the master and decodes the reply, mapping the NATS
/// micro-service error headers and "no responders" to [`Failure`]s. A reply from an epoch newer
/// than `epoch` (the newest the engine had confirmed when it sent the request) is checked
/// against the lease first: anyone could answer on a master subject, but only the leader the
/// lease names counts.
async fn request<T: Serialize, R: DeserializeOwned + Epoch>(
    client: &async_nats::Client,
    js: &jetstream::Context,
    epoch: u64,
    subject: &str,
    body: &T,
    timeout: Duration,
) -> Result<R, Failure> {
    let payload = codec::encode(body).map_err(|e| Failure::Failed(e.to_string()))?;
    let request = async_nats::Request::new().payload(payload).timeout(Some(timeout));
    let reply = match client.send_request(subject.to_owned(), request).await {
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
                // Someone else's session on this id; any other 403 is about what this worker
                // may do (its login), which waiting for the id will not change.
                "403" if error.as_str().contains("session") => Failure::IdInUse(why),
                "409" => Failure::IdInUse(why),
                _ => Failure::Refused(why),
            });
        }
    }
    let decoded: R = codec::decode(&reply.payload).map_err(|e| Failure::Failed(e.to_string()))?;
    let claimed = decoded.epoch();
    if claimed > epoch {
        match leader::current(js).await {
            Ok(Some(lease)) if lease.epoch == claimed => {}
            _ => return Err(Failure::Unconfirmed(claimed)),
        }
    }
    Ok(decoded)
}
