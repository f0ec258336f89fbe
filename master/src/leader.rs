//! The leader: the one I/O loop that drives the [`Engine`] while this master holds the lease.
//!
//! ```text
//!  service requests ─┐                                   ┌─► journal (fenced, pipelined)
//!  submissions ──────┼─► Command ─► Engine::step ─► events┤
//!  ticks, internal ──┘                            effects└─► queued until their events are
//!                                                            acknowledged, then: replies,
//!                                                            notifications, publications
//! ```
//!
//! Rules this loop keeps:
//! - **Persist first, act second.** Every effect waits in a queue tagged with the journal write
//!   that holds its events (or, if it has none, the latest write issued before it), and runs
//!   only once that write is acknowledged. A worker is never told "accepted" about anything
//!   that is not durable, and a grant is never sent for an attempt that is not journaled.
//! - **Decide in order, write in groups.** Inputs that are ready together are stepped one by
//!   one (each sees the state left by the previous). While a journal write is in flight, new
//!   decisions wait, with their effects, and go out together as the next write (group
//!   commit); a full batch is pipelined behind it, chained by expected sequence.
//! - **Stop at the first doubt.** A failed or fenced journal write, a lost lease, or a lease
//!   past its validity ends the term at once, before anything else is written; the next term
//!   (here or elsewhere) starts from what the journal actually holds.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::service::{self, ServiceExt};
use bytes::Bytes;
use futures::stream::{select_all, BoxStream, SelectAll};
use futures::{FutureExt, StreamExt};
use jetwork_shared::clock::now_ms;
use jetwork_shared::connect::{self, Interruptions};
use jetwork_shared::log_limit::LogLimit;
use jetwork_shared::protocol::{
    Assignment, MasterElected, RegisterWorker, Report, ReportReply, RequestWork, StatusQuery,
    WorkGrant, WorkReady,
};
use jetwork_shared::{codec, subjects, QueueName, WorkId};
use tokio::sync::mpsc;

use crate::config::MasterSettings;
use crate::core::{
    AssignmentRef, Command, Effect, Engine, Event, JournalBatch, Output, Publication,
    PublicationKey, Reply, RequestId,
};
use crate::housekeeping;
use crate::intake::{QueueReader, ReaderEnv, Submission};
use crate::integrity::{self, Observation};
use crate::journal::{Journal, JournalError, Replayed};
use crate::lease::LeaseGuard;
use crate::payloads;
use crate::publisher::{self, Published, Publisher};

/// Why a term ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Asked to stop: handed over cleanly.
    Shutdown,
    /// Lost the right to lead (the reason is logged).
    Deposed(String),
}

/// What the leader needs from its surroundings.
#[derive(Clone)]
pub struct Env {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub settings: MasterSettings,
    /// This candidate's unique name (in the lease, logs and status).
    pub holder: String,
    /// Moments the connection may have lost messages in flight (the queue readers re-read).
    pub interruptions: Interruptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Register,
    Request,
    Report,
    Status,
}

/// Messages from tasks the leader spawned.
enum Internal {
    Command(Command),
    Payloads(Vec<(WorkId, Bytes)>),
    Integrity(Result<Observation, String>),
}

/// Leads one term: claims the journal, serves until deposed or shut down, then stops.
pub async fn lead<F: Future<Output = ()>>(
    env: &Env,
    mut lease: LeaseGuard,
    replayed: Replayed,
    mut shutdown: Pin<&mut F>,
) -> Exit {
    let epoch = lease.epoch();
    let mut leader = Leader::new(env, epoch, replayed);
    let exit = match leader.claim(&mut lease).await {
        Err(exit) => exit,
        Ok(()) => match start_service(env, epoch).await {
            Err(e) => Exit::Deposed(format!("cannot start the service endpoints: {e}")),
            Ok((service, mut endpoints)) => {
                tracing::info!(epoch, leader = %env.holder, "leading");
                let exit = leader.run(&mut lease, &mut endpoints, shutdown.as_mut()).await;
                drop(endpoints);
                let _ = service.stop().await;
                exit
            }
        },
    };
    leader.readers.clear();
    if let Some(purging) = leader.purging.take() {
        purging.abort();
    }
    match &exit {
        Exit::Shutdown => {
            leader.hand_over(&lease).await;
            lease.stop(true).await;
        }
        Exit::Deposed(why) => {
            tracing::warn!(epoch, %why, "stepping down");
            // Give the lease back if it is still ours (a compare-and-set on our revision), so
            // the next term need not wait for it to expire.
            lease.stop(true).await;
        }
    }
    exit
}

async fn start_service(
    env: &Env,
    epoch: u64,
) -> Result<(service::Service, SelectAll<BoxStream<'static, (Endpoint, service::Request)>>), String>
{
    let mut metadata = std::collections::HashMap::new();
    metadata.insert("epoch".to_owned(), epoch.to_string());
    metadata.insert("leader".to_owned(), env.holder.clone());
    let service = env
        .client
        .service_builder()
        .description("jetwork master (the elected leader)")
        .metadata(metadata)
        // A queue group of its own: a deposed leader that is frozen but still subscribed
        // must not take requests away from its successor. Each request reaches every
        // subscribed master, and the requester keeps the first reply, the live leader's.
        .queue_group(&env.holder)
        .start(subjects::SERVICE_NAME, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| e.to_string())?;
    let group = service.group("jetwork.master");
    let mut streams: Vec<BoxStream<'static, (Endpoint, service::Request)>> = Vec::new();
    for (name, kind) in [
        ("register", Endpoint::Register),
        ("request", Endpoint::Request),
        ("report", Endpoint::Report),
        ("status", Endpoint::Status),
    ] {
        let endpoint = group.endpoint(name).await.map_err(|e| e.to_string())?;
        streams.push(endpoint.map(move |request| (kind, request)).boxed());
    }
    Ok((service, select_all(streams)))
}

struct Leader {
    env: Env,
    epoch: u64,
    engine: Engine,
    journal: Journal,
    /// Requests waiting for their reply effect.
    requests: HashMap<RequestId, service::Request>,
    next_request: RequestId,
    /// Output of the commands stepped since the last flush.
    pending: Output,
    /// Effects waiting for the journal write they depend on: (ticket, effect).
    effects: VecDeque<(u64, Effect)>,
    /// Payloads of work in flight, so grants need no stream read.
    payloads: HashMap<WorkId, Bytes>,
    /// Payloads of rejected submissions until their rejection is published.
    rejected_payloads: HashMap<u64, Bytes>,
    readers: BTreeMap<QueueName, QueueReader>,
    /// What each reader is started with (its submissions go to `intake_rx`).
    reader_env: ReaderEnv,
    /// Readers started so far: each gets the next number, so a replaced reader's leftovers
    /// still in the channel are told apart and ignored.
    generations: u64,
    intake_rx: mpsc::UnboundedReceiver<Submission>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    publisher: Publisher,
    retry_publish: Vec<(Instant, PublicationKey)>,
    confirmed: Vec<PublicationKey>,
    events_since_snapshot: u64,
    last_snapshot: Instant,
    last_purge: Instant,
    purging: Option<tokio::task::JoinHandle<()>>,
    snapshot_for_purge: Option<u64>,
    /// Publications that may already be stored (inherited from the previous leader, or whose
    /// last attempt failed unclearly): the subject is read before publishing them again.
    inherited: std::collections::HashSet<PublicationKey>,
    /// First sequence of the newest snapshot this term knows to be stored (replay's start
    /// when it has written none): history before it may go, history after it must not.
    snapshot_floor: u64,
    /// Write a snapshot at the next flush, events or not (history was purged by someone).
    snapshot_due: bool,
    /// When the streams were last checked, and whether a check is under way.
    last_integrity: Instant,
    checking: bool,
    /// Set when something seen off the loop ends the term.
    deposed: Option<String>,
    /// Status requests being worked on.
    status_in_flight: Arc<AtomicUsize>,
    /// Bad requests are logged at most once a second (anyone can send them).
    bad_requests: LogLimit,
}

/// Status requests worked on at once.
const STATUS_IN_FLIGHT: usize = 2;

impl Leader {
    fn new(env: &Env, epoch: u64, replayed: Replayed) -> Self {
        let max_message = env.client.server_info().max_payload.max(64 * 1024);
        let (intake_tx, intake_rx) = mpsc::unbounded_channel();
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        tracing::info!(
            epoch,
            events = replayed.events,
            from_seq = replayed.from_seq,
            last_seq = replayed.last_seq,
            in_flight = replayed.state.work.len(),
            workers = replayed.state.workers.len(),
            "journal replayed"
        );
        // Results and grants travel in NATS messages: keep them under the server's limit.
        let mut policy = env.settings.policy();
        let room = (max_message as u64).saturating_sub(64 * 1024);
        if policy.max_result > room || policy.max_grant_bytes > room {
            tracing::warn!(
                max_payload = max_message,
                "streams.max_result exceeds what the server's max_payload allows; lowering it"
            );
            policy.max_result = policy.max_result.min(room);
            policy.max_grant_bytes = policy.max_grant_bytes.min(room);
        }
        Leader {
            engine: Engine::new(replayed.state, policy),
            // The journal and the publisher each get their own JetStream context, so their
            // publish-acknowledgement credits are separate: result publications in flight can
            // never hold up a journal write (which would stall the loop that frees them).
            journal: Journal::new(
                connect::jetstream(&env.client, &env.settings.nats),
                epoch,
                replayed.last_seq,
                max_message,
            ),
            env: env.clone(),
            epoch,
            requests: HashMap::new(),
            next_request: 0,
            pending: Output::default(),
            effects: VecDeque::new(),
            payloads: HashMap::new(),
            rejected_payloads: HashMap::new(),
            readers: BTreeMap::new(),
            reader_env: ReaderEnv {
                js: env.js.clone(),
                interruptions: env.interruptions.clone(),
                tx: intake_tx,
            },
            generations: 0,
            intake_rx,
            internal_tx,
            internal_rx,
            publisher: Publisher::new(connect::jetstream(&env.client, &env.settings.nats)),
            retry_publish: Vec::new(),
            confirmed: Vec::new(),
            events_since_snapshot: replayed.events,
            last_snapshot: Instant::now(),
            last_purge: Instant::now(),
            purging: None,
            snapshot_for_purge: None,
            inherited: Default::default(),
            snapshot_floor: replayed.from_seq,
            snapshot_due: false,
            last_integrity: Instant::now(),
            checking: false,
            deposed: None,
            status_in_flight: Arc::new(AtomicUsize::new(0)),
            bad_requests: LogLimit::default(),
        }
    }

    /// Writes the term's first message, `EpochStarted` on `jetwork.journal.epoch`, chained on
    /// the replayed tail, and waits for it. From its acknowledgement on, any write by an
    /// earlier leader fails. Its effects (the announcement, re-publications) run once serving.
    async fn claim(&mut self, lease: &mut LeaseGuard) -> Result<(), Exit> {
        self.inherited = self.engine.state().unpublished.keys().cloned().collect();
        let output = self.engine.step(Command::Takeover {
            epoch: self.epoch,
            leader: self.env.holder.clone(),
            seed: random_seed(),
            now: now_ms(),
        });
        if !lease.is_valid() {
            return Err(Exit::Deposed("lease expired during replay".into()));
        }
        let batch = JournalBatch { events: output.events };
        self.events_since_snapshot += batch.events.len() as u64;
        let ticket = self.journal.append_batch(&batch, true).await.map_err(deposed)?;
        self.journal.next_ack().await.map_err(deposed)?;
        // The announcement and re-publications wait until the endpoints are up (`run`), so
        // workers that re-register on the announcement find someone to answer.
        for effect in output.effects {
            self.effects.push_back((ticket, effect));
        }
        Ok(())
    }

    async fn run<F: Future<Output = ()>>(
        &mut self,
        lease: &mut LeaseGuard,
        endpoints: &mut SelectAll<BoxStream<'static, (Endpoint, service::Request)>>,
        mut shutdown: Pin<&mut F>,
    ) -> Exit {
        let settings = self.env.settings.master.clone();
        let mut tick = tokio::time::interval(settings.tick_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.release_effects().await;
        self.refresh_readers();
        loop {
            let accepting = self.journal.inflight() < settings.max_inflight_writes;
            tokio::select! {
                biased;
                _ = &mut shutdown => return Exit::Shutdown,
                _ = lease.lost() => return Exit::Deposed("lease lost".into()),
                ack = self.journal.next_ack() => {
                    if let Err(e) = ack {
                        return deposed(e);
                    }
                    if let Some(first_seq) = self.journal.take_confirmed_snapshot() {
                        self.snapshot_for_purge = Some(first_seq);
                        self.snapshot_floor = first_seq;
                    }
                    self.release_effects().await;
                }
                Some(internal) = self.internal_rx.recv() => self.internal(internal),
                (key, outcome) = self.publisher.next() => self.publication_done(key, outcome),
                _ = tick.tick() => self.tick(),
                Some((kind, request)) = endpoints.next(), if accepting => {
                    self.inbound(kind, request).await;
                }
                Some(submission) = self.intake_rx.recv(), if accepting => self.submitted(submission),
            }
            if accepting {
                self.drain_ready(endpoints, settings.max_batch).await;
            }
            if let Some(why) = self.deposed.take() {
                return Exit::Deposed(why);
            }
            // Publications are recorded when a write goes out anyway, or when many gather (and
            // on every tick): a write of their own would delay the decisions queued behind it.
            if !self.pending.events.is_empty() || self.confirmed.len() >= settings.max_batch {
                self.record_published();
            }
            if let Err(exit) = self.flush(lease).await {
                return exit;
            }
            self.grant_credits();
        }
    }

    /// Takes every input that is already waiting (up to `limit`), so that one journal write
    /// carries the decisions of all of them.
    async fn drain_ready(
        &mut self,
        endpoints: &mut SelectAll<BoxStream<'static, (Endpoint, service::Request)>>,
        limit: usize,
    ) {
        let mut taken = 0;
        while taken < limit {
            let before = taken;
            if let Ok(submission) = self.intake_rx.try_recv() {
                self.submitted(submission);
                taken += 1;
            }
            if let Some(Some((kind, request))) = endpoints.next().now_or_never() {
                self.inbound(kind, request).await;
                taken += 1;
            }
            if let Ok(internal) = self.internal_rx.try_recv() {
                self.internal(internal);
                taken += 1;
            }
            if let Some((key, outcome)) = self.publisher.next().now_or_never() {
                self.publication_done(key, outcome);
                taken += 1;
            }
            if taken == before {
                break;
            }
        }
    }

    fn step(&mut self, command: Command) {
        let output = self.engine.step(command);
        self.pending.events.extend(output.events);
        self.pending.effects.extend(output.effects);
    }

    fn submitted(&mut self, submission: Submission) {
        let Submission { queue, seq, after, generation, msg_id, unreadable, payload } = submission;
        match self.readers.get_mut(&queue) {
            Some(reader) if reader.generation() == generation => reader.delivered(),
            // Read by a reader that has been replaced: the new one reads it again.
            _ => return,
        }
        let size = payload.len() as u64;
        let now = now_ms();
        let submitted = Command::Submitted { queue, seq, after, msg_id, size, unreadable, now };
        let output = self.engine.step(submitted);
        for event in &output.events {
            match event {
                Event::WorkAccepted { work_id, .. } => {
                    self.payloads.insert(work_id.clone(), payload.clone());
                }
                Event::SubmissionRejected { seq, queue, reason, .. } => {
                    tracing::warn!(%queue, seq, %reason, "submission rejected");
                    self.rejected_payloads.insert(*seq, payload.clone());
                }
                _ => {}
            }
        }
        self.pending.events.extend(output.events);
        self.pending.effects.extend(output.effects);
    }

    async fn inbound(&mut self, kind: Endpoint, request: service::Request) {
        let now = now_ms();
        self.next_request += 1;
        let id = self.next_request;
        let payload = &request.message.payload;
        let command = match kind {
            Endpoint::Status => return self.status(request),
            Endpoint::Register => codec::decode::<RegisterWorker>(payload)
                .map(|msg| Command::Register { request: id, msg, now }),
            Endpoint::Request => codec::decode::<RequestWork>(payload)
                .map(|msg| Command::RequestWork { request: id, msg, now }),
            Endpoint::Report => codec::decode::<Report>(payload).map(|msg| Command::Report {
                request: id,
                msg,
                now,
            }),
        };
        match command {
            Ok(command) => {
                self.requests.insert(id, request);
                self.step(command);
            }
            Err(e) => {
                if let Some(suppressed) = self.bad_requests.allow() {
                    tracing::warn!(endpoint = ?kind, subject = %request.message.subject, error = %e, suppressed, "bad request");
                }
                let error =
                    service::error::Error { status: format!("bad request: {e}"), code: 400 };
                let _ = request.respond(Err(error)).await;
            }
        }
    }

    /// Answers a status request off the loop. At most [`STATUS_IN_FLIGHT`] are worked on at
    /// once (each costs the server a few API calls); more get 503 and a reason at once, so a
    /// flood of status requests cannot slow the server or this loop down.
    fn status(&mut self, request: service::Request) {
        if self.status_in_flight.load(Ordering::Relaxed) >= STATUS_IN_FLIGHT {
            let status = "busy: too many status requests at once; retry shortly".to_owned();
            let error = service::error::Error { status, code: 503 };
            tokio::spawn(async move {
                let _ = request.respond(Err(error)).await;
            });
            return;
        }
        let query: StatusQuery =
            serde_json::from_slice(&request.message.payload).unwrap_or_default();
        let state = self.engine.state();
        let mut report = state.status(now_ms(), query);
        let cursors: Vec<(QueueName, u64)> =
            state.queues.iter().map(|(q, s)| (q.clone(), s.cursor)).collect();
        let js = self.env.js.clone();
        let in_flight = self.status_in_flight.clone();
        in_flight.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            housekeeping::complete_status(&js, &mut report, cursors, query).await;
            let reply = match serde_json::to_vec(&report) {
                Ok(body) => Ok(body.into()),
                Err(e) => {
                    Err(service::error::Error { status: format!("cannot encode: {e}"), code: 500 })
                }
            };
            let _ = request.respond(reply).await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }

    fn internal(&mut self, internal: Internal) {
        match internal {
            Internal::Command(command) => self.step(command),
            Internal::Integrity(observed) => self.integrity(observed),
            Internal::Payloads(payloads) => {
                for (work_id, payload) in payloads {
                    if self.engine.state().work.contains_key(&work_id) {
                        self.payloads.insert(work_id, payload);
                    }
                }
            }
        }
    }

    fn publication_done(&mut self, key: PublicationKey, outcome: publisher::Outcome) {
        match outcome {
            Ok(published) => {
                if let Published::Superseded { stored_run } = published {
                    tracing::warn!(
                        ?key,
                        stored_run,
                        "a newer run's outcome is already stored; not publishing this one"
                    );
                }
                if let PublicationKey::Rejection(seq) = &key {
                    self.rejected_payloads.remove(seq);
                }
                self.confirmed.push(key);
            }
            Err(e) => {
                // Retrying is safe: the subject fence refuses a second copy if this one landed;
                // reading first spares live subscribers the copy.
                tracing::warn!(?key, error = %e, "publication failed; retrying in 1s");
                self.inherited.insert(key.clone());
                self.retry_publish.push((Instant::now() + Duration::from_secs(1), key));
            }
        }
    }

    /// Journals that the confirmed publications are stored. Nothing waits on this record: a
    /// leader that dies before writing it leaves them unpublished, and the next one checks
    /// the results stream before publishing them again.
    fn record_published(&mut self) {
        if !self.confirmed.is_empty() {
            let keys = std::mem::take(&mut self.confirmed);
            self.step(Command::Published { keys });
        }
    }

    fn tick(&mut self) {
        let now = now_ms();
        self.step(Command::Tick { now });
        self.record_published();
        let due: Vec<PublicationKey> = {
            let instant = Instant::now();
            let (due, later) = std::mem::take(&mut self.retry_publish)
                .into_iter()
                .partition(|(at, _)| *at <= instant);
            self.retry_publish = later;
            due.into_iter().map(|(_, key)| key).collect()
        };
        // Retried publications run like fresh ones, behind the journal like every effect.
        self.pending.effects.extend(due.into_iter().map(|key| Effect::Publish { key }));
        self.refresh_readers();
        self.maybe_purge();
        self.maybe_check_integrity();
    }

    /// Looks at the streams every `integrity_interval`, off the loop.
    fn maybe_check_integrity(&mut self) {
        let interval = self.env.settings.master.integrity_interval;
        if self.checking || self.last_integrity.elapsed() < interval {
            return;
        }
        self.checking = true;
        self.last_integrity = Instant::now();
        let (js, streams) = (self.env.js.clone(), self.env.settings.streams.clone());
        let internal = self.internal_tx.clone();
        tokio::spawn(async move {
            let observed = integrity::observe(&js, &streams).await;
            let _ = internal.send(Internal::Integrity(observed));
        });
    }

    /// Acts on what the streams look like (see `integrity.rs`).
    fn integrity(&mut self, observed: Result<Observation, String>) {
        self.checking = false;
        let observed = match observed {
            Ok(observed) => observed,
            Err(e) => return tracing::debug!(error = %e, "cannot check the streams this time"),
        };
        for drift in &observed.drift {
            tracing::error!(%drift, "stream settings were changed by someone other than the master; putting them back");
        }
        if observed.journal_last > self.journal.tail() {
            let why = format!(
                "the journal holds sequence {} though this leader wrote up to {}: a foreign write",
                observed.journal_last,
                self.journal.tail()
            );
            tracing::error!(%why, "stepping down; the next term leaves the foreign write out");
            self.deposed = Some(why);
        }
        if observed.journal_first > self.snapshot_floor {
            tracing::error!(
                first = observed.journal_first,
                snapshot = self.snapshot_floor,
                "journal history was purged past the latest snapshot by someone else; writing a snapshot now"
            );
            self.snapshot_due = true;
            // Until the new snapshot is confirmed, do not report this again.
            self.snapshot_floor = observed.journal_first;
        }
    }

    /// Journals what the stepped commands decided, snapshots when due, and queues their
    /// effects behind the write.
    async fn flush(&mut self, lease: &LeaseGuard) -> Result<(), Exit> {
        let notifications = self.engine.notifications(now_ms());
        self.pending.effects.extend(notifications);
        // Group commit: while a write is in flight, keep gathering decisions (and hold back
        // their effects with them) until it is acknowledged or the batch is full.
        let batch_full = self.pending.events.len() >= self.env.settings.master.max_batch;
        if !self.pending.events.is_empty() && self.journal.inflight() > 0 && !batch_full {
            return Ok(());
        }
        let Output { events, effects } = std::mem::take(&mut self.pending);
        if !events.is_empty() || self.snapshot_due {
            if !lease.is_valid() {
                return Err(Exit::Deposed("lease validity passed before a journal write".into()));
            }
            self.events_since_snapshot += events.len() as u64;
            if !events.is_empty() {
                self.write_events(events).await.map_err(deposed)?;
            }
            let settings = &self.env.settings.master;
            if self.snapshot_due
                || self.events_since_snapshot >= settings.snapshot_every
                || self.last_snapshot.elapsed() >= settings.snapshot_interval
            {
                self.journal.write_snapshot(self.engine.state()).await.map_err(deposed)?;
                tracing::debug!(events = self.events_since_snapshot, "snapshot written");
                self.events_since_snapshot = 0;
                self.last_snapshot = Instant::now();
                self.snapshot_due = false;
            }
        }
        let ticket = self.journal.issued();
        self.effects.extend(effects.into_iter().map(|effect| (ticket, effect)));
        self.release_effects().await;
        Ok(())
    }

    /// Writes events as one or more batches, each under the server's payload limit.
    async fn write_events(&mut self, events: Vec<Event>) -> Result<(), JournalError> {
        let limit = self.journal.max_payload();
        let mut chunks = vec![events];
        while let Some(chunk) = chunks.pop() {
            let batch = JournalBatch { events: chunk };
            let encoded =
                codec::encode(&batch).map_err(|e| JournalError::Unavailable(e.to_string()))?;
            if encoded.len() > limit && batch.events.len() > 1 {
                let mut first = batch.events;
                let second = first.split_off(first.len() / 2);
                chunks.push(second);
                chunks.push(first);
                continue;
            }
            self.journal.append(subjects::JOURNAL_EVENTS, encoded).await?;
        }
        Ok(())
    }

    /// Runs every queued effect whose journal write is acknowledged.
    async fn release_effects(&mut self) {
        while let Some((ticket, _)) = self.effects.front() {
            if *ticket > self.journal.acked() {
                break;
            }
            let Some((_, effect)) = self.effects.pop_front() else { break };
            self.execute(effect).await;
        }
    }

    async fn execute(&mut self, effect: Effect) {
        match effect {
            Effect::Reply { request, reply } => {
                if let Some(pending) = self.requests.remove(&request) {
                    self.reply(pending, reply).await;
                }
            }
            Effect::NotifyReady { worker } => {
                if let Ok(body) = codec::encode(&WorkReady { epoch: self.epoch }) {
                    let _ = self.env.client.publish(subjects::worker_ready(&worker), body).await;
                }
            }
            Effect::Announce { epoch, leader } => {
                if let Ok(body) = codec::encode(&MasterElected { epoch, leader }) {
                    let _ = self.env.client.publish(subjects::MASTER_ELECTED, body).await;
                }
            }
            Effect::Publish { key } => self.publish(key),
            Effect::Reread { queue, from } => {
                if self.readers.contains_key(&queue) {
                    tracing::warn!(%queue, from, "a submission did not follow on from the cursor; reading the queue again");
                    self.start_reader(queue, from);
                }
            }
        }
    }

    fn publish(&mut self, key: PublicationKey) {
        let Some(publication) = self.engine.state().unpublished.get(&key).cloned() else { return };
        let payload = match &publication {
            Publication::Rejected { seq, .. } => self.rejected_payloads.get(seq).cloned(),
            Publication::Completed { work_id, .. } | Publication::Failed { work_id, .. } => {
                self.payloads.remove(work_id);
                None
            }
        };
        let verify_first = self.inherited.remove(&key);
        self.publisher.start(key, publication, payload, verify_first);
    }

    async fn reply(&mut self, request: service::Request, reply: Reply) {
        let epoch = self.epoch;
        let (assignments, build): (
            Vec<AssignmentRef>,
            Box<dyn FnOnce(Vec<Assignment>) -> Bytes + Send>,
        ) = match reply {
            Reply::Registered(registered) => {
                let body = codec::encode(&registered).unwrap_or_default();
                let _ = request.respond(Ok(body)).await;
                return;
            }
            Reply::Error(e) => {
                let error = service::error::Error { status: e.message, code: e.code as usize };
                let _ = request.respond(Err(error)).await;
                return;
            }
            Reply::Grant { assignments } => (
                assignments,
                Box::new(move |assignments| {
                    codec::encode(&WorkGrant { epoch, assignments }).unwrap_or_default()
                }),
            ),
            Reply::Report { verdicts, assignments } => (
                assignments,
                Box::new(move |assignments| {
                    codec::encode(&ReportReply { epoch, verdicts, assignments }).unwrap_or_default()
                }),
            ),
        };
        let missing: Vec<AssignmentRef> = assignments
            .iter()
            .filter(|a| !self.payloads.contains_key(&a.work_id))
            .cloned()
            .collect();
        if missing.is_empty() {
            let full = assignments
                .iter()
                .map(|a| assignment(a, self.payloads[&a.work_id].clone()))
                .collect();
            let _ = request.respond(Ok(build(full))).await;
            return;
        }
        // After a takeover the payloads are still in the stream: fetch them off the loop.
        let mut known: HashMap<WorkId, Bytes> = assignments
            .iter()
            .filter_map(|a| Some((a.work_id.clone(), self.payloads.get(&a.work_id)?.clone())))
            .collect();
        let js = self.env.js.clone();
        let internal = self.internal_tx.clone();
        tokio::spawn(async move {
            let mut fetched = Vec::new();
            for a in &missing {
                match payloads::read(&js, a.seq).await {
                    Ok(Some(payload)) => {
                        fetched.push((a.work_id.clone(), payload.clone()));
                        known.insert(a.work_id.clone(), payload);
                    }
                    Ok(None) => {
                        tracing::error!(work_id = %a.work_id, seq = a.seq, "payload missing from the submit stream");
                        let now = now_ms();
                        let missing = Command::PayloadMissing { work_id: a.work_id.clone(), now };
                        let _ = internal.send(Internal::Command(missing));
                    }
                    // Left out of the grant: the attempt times out and is handed out again.
                    Err(e) => {
                        tracing::warn!(work_id = %a.work_id, seq = a.seq, error = %e, "cannot read a payload; the attempt will be retried")
                    }
                }
            }
            let _ = internal.send(Internal::Payloads(fetched));
            let full = assignments
                .iter()
                .filter_map(|a| Some(assignment(a, known.get(&a.work_id)?.clone())))
                .collect();
            let _ = request.respond(Ok(build(full))).await;
        });
    }

    /// Starts readers for queues that workers serve, and grants each what its queue can take:
    /// the free worker slots plus the read-ahead, minus what is ready or already asked for.
    fn grant_credits(&mut self) {
        let prefetch = u64::from(self.env.settings.master.prefetch);
        let state = self.engine.state();
        for (queue, reader) in self.readers.iter_mut() {
            let target = self.engine.free_slots(queue) + prefetch;
            let have = state.ready_len(queue) as u64 + reader.outstanding();
            if target > have {
                reader.grant(target - have);
            }
        }
    }

    /// Starts readers for queues that registered workers serve, and retires those of queues
    /// nobody serves any more (their consumers are deleted), so readers never outnumber the
    /// queues that registered workers declare (each capped by `max_queues_per_worker`).
    fn refresh_readers(&mut self) {
        let served: std::collections::BTreeSet<&QueueName> = self.engine.served_queues().collect();
        self.readers.retain(|queue, _| served.contains(queue));
        let state = self.engine.state();
        let wanted: Vec<(QueueName, u64)> = served
            .into_iter()
            .filter(|queue| !self.readers.contains_key(*queue))
            .map(|queue| (queue.clone(), state.queues.get(queue).map_or(0, |q| q.cursor) + 1))
            .collect();
        for (queue, start) in wanted {
            self.start_reader(queue, start);
        }
    }

    /// Starts (or restarts) the reader of `queue` at sequence `start`.
    fn start_reader(&mut self, queue: QueueName, start: u64) {
        tracing::debug!(%queue, start, "reading submissions");
        self.generations += 1;
        let reader = QueueReader::spawn(&self.reader_env, queue.clone(), start, self.generations);
        self.readers.insert(queue, reader);
    }

    fn maybe_purge(&mut self) {
        if self.last_purge.elapsed() < self.env.settings.master.purge_interval {
            return;
        }
        if self.purging.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        self.last_purge = Instant::now();
        let state = self.engine.state();
        let floors: Vec<(QueueName, u64)> = state
            .queues
            .iter()
            .map(|(queue, q)| {
                let needed = state.lowest_needed_seq(queue).unwrap_or(u64::MAX);
                (queue.clone(), (q.cursor + 1).min(needed))
            })
            .collect();
        let js = self.env.js.clone();
        let streams = self.env.settings.streams.clone();
        let snapshot = self.snapshot_for_purge.take();
        self.purging = Some(tokio::spawn(async move {
            housekeeping::purge_submissions(&js, floors, streams.dedup_horizon).await;
            if let Some(first_seq) = snapshot {
                housekeeping::purge_journal(&js, first_seq, streams.journal_retention).await;
            }
        }));
    }

    /// On a clean shutdown: let in-flight writes land and their effects run (replies,
    /// publications), so the next leader starts from a quiet journal.
    async fn hand_over(&mut self, lease: &LeaseGuard) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        // Decisions held back for group commit are written first (their effects then run).
        self.record_published();
        while !self.pending.events.is_empty() && lease.is_valid() {
            if self.journal.inflight() > 0 {
                match tokio::time::timeout_at(deadline, self.journal.next_ack()).await {
                    Ok(Ok(_)) => self.release_effects().await,
                    Ok(Err(_)) | Err(_) => break,
                }
            }
            if self.flush(lease).await.is_err() {
                break;
            }
        }
        while self.journal.inflight() > 0 {
            match tokio::time::timeout_at(deadline, self.journal.next_ack()).await {
                Ok(Ok(_)) => self.release_effects().await,
                _ => break,
            }
        }
        while !self.publisher.is_empty() {
            match tokio::time::timeout_at(deadline, self.publisher.next()).await {
                Ok((key, outcome)) => self.publication_done(key, outcome),
                Err(_) => break,
            }
        }
        tracing::info!(epoch = self.epoch, "handed over");
    }
}

fn deposed(e: JournalError) -> Exit {
    Exit::Deposed(e.to_string())
}

/// 32 bytes from the operating system's generator (two v4 UUIDs' worth), for the engine's
/// token generator: attempt tokens must be unguessable.
fn random_seed() -> [u8; 32] {
    let mut seed = [0; 32];
    seed[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    seed[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    seed
}

fn assignment(a: &AssignmentRef, payload: Bytes) -> Assignment {
    Assignment {
        token: a.token,
        work_id: a.work_id.clone(),
        queue: a.queue.clone(),
        attempt: a.attempt,
        deadline_ms: a.deadline,
        timeout_ms: a.timeout,
        payload,
    }
}
