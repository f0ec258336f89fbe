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
//!   only once that write is acknowledged: a result is never published, nor a registration
//!   answered, for anything that is not durable. The one exception, `master.early_replies`
//!   (on by default), is the answer to a worker's request for work or report, which goes as
//!   soon as it is decided while few decisions are unrecorded and the lease is certainly
//!   valid (`writes.rs`); what it says is recorded by this term, or by no term, and a later
//!   leader knows nothing of it (architecture, "Early replies").
//! - **Decide in order, write in groups.** Inputs that are ready together are stepped one by
//!   one (each sees the state left by the previous). While a journal write is in flight, new
//!   decisions wait, with their effects, and go out together as the next write (group
//!   commit); a full batch is pipelined behind it, chained by expected sequence.
//! - **Stop at the first doubt.** A failed or fenced journal write, a lost lease, a lease past
//!   its validity, or a foreign write seen in the journal ends the term at once, before
//!   anything else is written; the next term (here or elsewhere) starts from what the journal
//!   actually holds.
//! - **Nothing slow on the loop.** Anything that waits on the network besides the journal
//!   (payloads read back, publications, status, purges, integrity checks) runs in a task and
//!   comes back as an `Internal` message.
//!
//! Priority jumps: the term's [`Scout`] reports priority submissions as they are stored; one
//! its queue's reader has not delivered by then is read out of turn (by a task, several at
//! once, delivered in the order seen) and stepped like a delivery, marked `jump` (the engine
//! decides whether it may jump). Both routes decode a stored message the same way
//! (`intake::decode`).
//!
//! Operators' requests are decoded into commands like workers' (their JSON answered 400 when
//! unreadable); what deciding them needs from the streams (a finished job's stored outcome, a
//! queue's last submission) the engine asks for (`Effect::LookUp`), a task reads, and the answer
//! is stepped (`Command::LookedUp`). Only read-only views (status, one job, a listing, the
//! schedules) are answered here without the engine.
//!
//! The parts, one per file: `service` (the endpoints and requests awaiting replies),
//! `replies` (encoding replies, filling grants with payloads), `cache` (payloads of work
//! in flight), `prefetch` (payloads read back ahead of their hand-out), `readers` (who
//! reads each served queue: the stream reader or one of its own, paced by credits), `publications` (results and rejections),
//! `submissions` (the master's own submissions: ticks and retries), `lookups` (reading what
//! the engine asked for), `writes`
//! (journal writes, snapshots, effects behind them, the hand-over on shutdown), `snapshots`
//! (when one is due, encoding it off the loop, how far history may go), `room` (holding
//! events back before the journal fills), `upkeep`
//! (purges and integrity checks), `observe` (metrics, job decisions at debug level,
//! `$SRV.STATS` data).

mod cache;
mod confirmations;
mod lookups;
mod observe;
mod outcome_log;
mod prefetch;
mod publications;
mod readers;
mod replies;
mod room;
mod service;
mod snapshots;
mod submissions;
mod upkeep;
mod writes;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;

use async_nats::jetstream;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use jetwork_shared::clock::now_ms;
use jetwork_shared::connect;
use jetwork_shared::fast_hash::FastSet;
use jetwork_shared::{subjects, QueueName, Unavailable, WorkId};
use tokio::sync::mpsc;

use crate::config::MasterSettings;
use crate::core::{Command, Engine, Event, JournalBatch, Output};
use crate::intake::{Delivery, IntakeConnection, OutOfTurn, ReaderEnv, PASSING};
use crate::integrity::Observation;
use crate::journal::{Journal, JournalError, Replayed};
use crate::lease::LeaseGuard;
use crate::metrics::{BadMessage, MasterMetrics};
use crate::payloads;
use crate::readiness::Readiness;
use crate::scout::{Scout, Sighting};
use cache::PayloadCache;
use observe::Observer;
use outcome_log::OutcomeLog;
use prefetch::{Limits as PrefetchLimits, Prefetch};
use publications::Publications;
use readers::Readers;
use room::{JournalRoom, Room};
use service::{Endpoints, Requests};
use snapshots::Snapshots;
use submissions::Submitter;
use upkeep::Upkeep;
use writes::Effects;

/// Why a term ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Asked to stop: handed over cleanly.
    Shutdown,
    /// Lost the right to lead (the reason is logged).
    Deposed(String),
    /// A journal write failed (refused for lack of storage or permission, or unanswered):
    /// whether the journal can be written at all is in doubt (see `readiness.rs`).
    JournalFailed(String),
}

/// What the leader needs from its surroundings.
///
/// Three NATS connections, one per kind of traffic, so that a flood of what anyone may send
/// costs only the connection it arrives on: `client` (the journal, the lease, publications,
/// reads: nothing anyone else can send to), `requests` (the endpoints and the priority
/// notices: anyone with publish rights can flood them; the client library then drops the
/// excess of that subscription, or the server cuts that connection if it falls too far behind)
/// and `intake` (the queue readers, which must see every delivery).
#[derive(Clone)]
pub struct Env {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub settings: MasterSettings,
    /// This candidate's unique name (in the lease, logs and status).
    pub holder: String,
    /// The connection the queue readers and out-of-turn reads use, and nothing else.
    pub intake: IntakeConnection,
    /// The candidate's metrics, when they are on.
    pub metrics: Option<MasterMetrics>,
    /// What the candidate's `/readyz` says (a journal write going through is news to it).
    pub readiness: Readiness,
    /// The connection the endpoints and the priority notices are received on.
    pub requests: async_nats::Client,
}

/// Messages from tasks the leader spawned.
enum Internal {
    /// A decision to step (a payload found missing).
    Command(Command),
    /// Payloads read back for grants, to keep for later grants.
    Payloads(Vec<(WorkId, Bytes)>),
    /// Payloads read ahead of their hand-out: those asked for, and those found (with the
    /// submit sequence each was read from).
    Prefetched { requested: Vec<WorkId>, found: Vec<(WorkId, u64, Bytes)> },
    /// What the streams looked like.
    Integrity(Result<Observation, Unavailable>),
    /// What is still unread in the submit stream, per queue (metrics).
    Survey(crate::backlog::Survey),
    /// The journal's size after a purge, asked for when this leader had written `mark` bytes.
    JournalFill { fill: crate::housekeeping::JournalFill, mark: u64 },
}

/// Leads one term: claims the journal, serves until deposed or shut down, then stops.
pub async fn lead<F: Future<Output = ()>>(
    env: &Env,
    mut lease: LeaseGuard,
    replayed: Replayed,
    mut shutdown: Pin<&mut F>,
) -> Exit {
    let epoch = lease.epoch();
    // The last term's epoch, as the journal has it (0 for a new journal).
    let previous_epoch = replayed.state.epoch;
    let mut leader = Leader::new(env, epoch, replayed);
    let exit = match leader.claim(&mut lease).await {
        Err(exit) => exit,
        Ok(()) => match service::start(env, epoch, leader.observer.stats.clone()).await {
            Err(e) => Exit::Deposed(format!("cannot start the service endpoints: {e}")),
            Ok((service, mut endpoints)) => {
                // An epoch is the lease key's revision when taken, and every renewal
                // advances the revision: say so, or epochs 1, 100, 119 read as lost terms.
                tracing::info!(
                    epoch,
                    previous_epoch,
                    leader = %env.holder,
                    "leading in epoch {epoch} (the lease's revision when taken: every renewal \
                     advances it, so epochs jump between terms; the last term's was \
                     {previous_epoch})"
                );
                if let Some(metrics) = &env.metrics {
                    metrics.leading(epoch);
                }
                let exit = leader.run(&mut lease, &mut endpoints, shutdown.as_mut()).await;
                drop(endpoints);
                let _ = service.stop().await;
                exit
            }
        },
    };
    leader.readers.clear();
    leader.upkeep.stop();
    if let Some(metrics) = &env.metrics {
        metrics.standing_by();
    }
    match &exit {
        Exit::Shutdown => {
            leader.hand_over(&lease).await;
            lease.stop(true).await;
        }
        Exit::Deposed(why) | Exit::JournalFailed(why) => {
            tracing::warn!(epoch, %why, "stepping down");
            // Give the lease back if it is still ours (a compare-and-set on our revision), so
            // the next term need not wait for it to expire.
            lease.stop(true).await;
        }
    }
    exit
}

/// The state of one term.
struct Leader {
    env: Env,
    epoch: u64,
    engine: Engine,
    journal: Journal,
    /// Output of the commands stepped since the last flush (group commit gathers here).
    pending: Output,
    effects: Effects,
    requests: Requests,
    cache: PayloadCache,
    /// Which payloads to read back ahead of their hand-out.
    prefetch: Prefetch,
    readers: Readers,
    publications: Publications,
    /// The master's own submissions (ticks, retries) being submitted.
    submissions: Submitter,
    snapshots: Snapshots,
    /// How full the journal is: events wait while it has no room.
    room: JournalRoom,
    upkeep: Upkeep,
    observer: Observer,
    /// The operator's lines about jobs that end other than completed.
    outcomes: OutcomeLog,
    intake_rx: mpsc::UnboundedReceiver<Delivery>,
    /// Priority submissions as they are stored, from the term's scout.
    _scout: Scout,
    sightings_rx: mpsc::Receiver<Sighting>,
    /// Asks for submissions to be read out of turn (`intake::out_of_turn_reader`).
    jumps: mpsc::Sender<crate::intake::OutOfTurn>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    /// Set when something seen off the loop ends the term.
    deposed: Option<String>,
}

impl Leader {
    fn new(env: &Env, epoch: u64, replayed: Replayed) -> Self {
        let max_message = env.client.server_info().max_payload.max(64 * 1024);
        let (intake_tx, intake_rx) = mpsc::unbounded_channel();
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        let (sightings_tx, sightings_rx) = mpsc::channel(MAX_SIGHTINGS);
        tracing::info!(
            epoch,
            events = replayed.events,
            foreign = replayed.foreign,
            from_seq = replayed.from_seq,
            last_seq = replayed.last_seq,
            in_flight = replayed.state.work.len(),
            workers = replayed.state.workers.len(),
            "journal replayed"
        );
        // Results and grants travel in NATS messages: keep them under the server's limit.
        let (policy, lowered) = env.settings.policy().fitted_to(max_message as u64);
        if lowered {
            tracing::warn!(
                max_payload = max_message,
                "streams.max_result exceeds what the server's max_payload allows; lowering it"
            );
        }
        let observer = Observer::new(
            env.metrics.clone(),
            env.settings.master.max_served_queues as usize,
            policy.work_timeout,
        );
        let mut journal = Journal::new(
            connect::jetstream(&env.client, &env.settings.nats),
            epoch,
            replayed.last_seq,
            max_message,
        );
        if let Some(metrics) = &env.metrics {
            journal.observe_writes(metrics.journal_write_seconds.clone());
        }
        Leader {
            engine: Engine::new(replayed.state, policy),
            // The journal and the publisher each get their own JetStream context, so their
            // publish-acknowledgement credits are separate: result publications in flight can
            // never hold up a journal write (which would stall the loop that frees them).
            journal,
            publications: Publications::new(
                env.client.clone(),
                connect::jetstream(&env.client, &env.settings.nats),
                env.settings.nats.request_timeout,
            ),
            submissions: Submitter::new(connect::jetstream(&env.client, &env.settings.nats)),
            readers: Readers::new(ReaderEnv::new(
                &env.intake,
                intake_tx.clone(),
                env.metrics.as_ref().map(|m| m.intake_rereads.clone()),
            )),
            snapshots: Snapshots::new(replayed.events, replayed.from_seq),
            room: JournalRoom::new(env.settings.streams.journal_max_bytes),
            env: env.clone(),
            epoch,
            pending: Output::default(),
            effects: Effects::default(),
            requests: Requests::new(env.metrics.clone()),
            cache: PayloadCache::default(),
            prefetch: Prefetch::new(PrefetchLimits::of(&env.settings.master)),
            upkeep: Upkeep::default(),
            observer,
            outcomes: OutcomeLog::new(),
            intake_rx,
            _scout: Scout::spawn(env.requests.clone(), sightings_tx),
            sightings_rx,
            jumps: crate::intake::out_of_turn_reader(env.intake.client.clone(), intake_tx.clone()),
            internal_tx,
            internal_rx,
            deposed: None,
        }
    }

    /// Writes the term's first message, `EpochStarted` on `jetwork.journal.epoch`, chained on
    /// the replayed tail, and waits for it. From its acknowledgement on, any write by an
    /// earlier leader fails. Its effects (the announcement, re-publications) run once serving.
    async fn claim(&mut self, lease: &mut LeaseGuard) -> Result<(), Exit> {
        self.publications.inherit(self.engine.state());
        // The engine decides whether it needs it (the first time this version leads a journal
        // older masters wrote).
        // Asked again while the lease lasts: a stream electing its leader (a node just died)
        // answers "no stream found" for a few seconds, which is no reason to give up the term.
        let submitted_through = loop {
            match crate::housekeeping::last_sequence(&self.env.js, subjects::SUBMIT_STREAM).await {
                Ok(seq) => break seq,
                Err(e) if lease.is_valid() => {
                    tracing::debug!(error = %e, "cannot read the submit stream's tail yet; asking again");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(e) => return Err(Exit::Deposed(e.to_string())),
            }
        };
        let output = self.engine.step(Command::Takeover {
            epoch: self.epoch,
            leader: self.env.holder.clone(),
            seed: random_seed(),
            submitted_through,
            now: now_ms(),
        });
        if !lease.is_valid() {
            return Err(Exit::Deposed("lease expired during replay".into()));
        }
        self.make_room_to_claim().await;
        let batch = JournalBatch { events: output.events };
        self.snapshots.written(batch.events.len());
        let ticket = self.journal.append_batch(&batch, true).await.map_err(deposed)?;
        while self.journal.acked() < ticket {
            if let Err(e) = self.journal.next_ack().await {
                self.recover_journal(e, lease).await?;
            }
        }
        self.env.readiness.journal_written();
        // The announcement and re-publications wait until the endpoints are up (`run`), so
        // workers that re-register on the announcement find someone to answer.
        self.effects.queue(ticket, output.effects);
        Ok(())
    }

    /// A journal acknowledgement failed with `e`. Unless it says another leader wrote, the
    /// writes' outcomes are learnt from the stream and what did not land is sent again, for
    /// as long as the lease is valid: a blip of the link or a stream electing its leader
    /// costs its own length, not the term ([`crate::journal`], "Riding through a blip").
    async fn recover_journal(&mut self, e: JournalError, lease: &LeaseGuard) -> Result<(), Exit> {
        if !matches!(e, JournalError::Unavailable(_)) {
            return Err(deposed(e));
        }
        tracing::warn!(epoch = self.epoch, error = %e, "a journal write went unacknowledged; asking the stream what landed");
        self.journal.recover(|| lease.is_valid()).await.map_err(deposed)?;
        self.env.readiness.journal_written();
        if let Some(first_seq) = self.journal.take_confirmed_snapshot() {
            self.snapshots.confirmed(first_seq);
        }
        self.release_effects().await;
        Ok(())
    }

    async fn run<F: Future<Output = ()>>(
        &mut self,
        lease: &mut LeaseGuard,
        endpoints: &mut Endpoints,
        mut shutdown: Pin<&mut F>,
    ) -> Exit {
        let settings = self.env.settings.master.clone();
        let mut tick = tokio::time::interval(settings.tick_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.release_effects().await;
        self.readers.refresh(&self.engine);
        loop {
            // Back-pressure: with too many writes unacknowledged, take no new requests or
            // submissions (acknowledgements, ticks and tasks' results still come in).
            // And while the journal has no room, take nothing that would add events to wait.
            let accepting = self.journal.inflight() < settings.max_inflight_writes
                && !self.room.full(self.journal.written_bytes());
            // A delay, back-off or expiry ending before the next regular tick: wake for it,
            // so delayed work starts on time however coarse `tick_interval` is.
            // At most one such wake per `DUE_GRANULARITY`: a stream of jobs falling due one by one
            // is released in batches (one journal write each), not one loop turn per job.
            let due = self.engine.next_due().map(|at| {
                let wait = at.saturating_sub(now_ms()).max(DUE_GRANULARITY_MS);
                tokio::time::Instant::now() + std::time::Duration::from_millis(wait)
            });
            tokio::select! {
                biased;
                _ = &mut shutdown => return Exit::Shutdown,
                _ = lease.lost() => return Exit::Deposed("lease lost".into()),
                ack = self.journal.next_ack() => {
                    if let Err(e) = ack {
                        if let Err(exit) = self.recover_journal(e, lease).await {
                            return exit;
                        }
                    }
                    if let Some(first_seq) = self.journal.take_confirmed_snapshot() {
                        self.snapshots.confirmed(first_seq);
                    }
                    self.release_effects().await;
                }
                (encoded, figures) = self.snapshots.encoded(), if self.snapshots.encoding() => {
                    if let Err(exit) = self.write_snapshot(encoded, figures, lease).await {
                        return exit;
                    }
                }
                Some(internal) = self.internal_rx.recv() => self.internal(internal),
                (key, outcome) = self.publications.next() => self.publications.done(key, outcome, &mut self.cache),
                (work_id, outcome) = self.submissions.next() => self.submitted_own(work_id, outcome),
                _ = tick.tick() => self.tick(),
                () = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                    self.step(Command::Tick { now: now_ms() });
                }
                Some((kind, request)) = endpoints.next(), if accepting => {
                    self.inbound(kind, request).await;
                }
                Some(submission) = self.intake_rx.recv(), if accepting => self.submitted(submission),
                Some(sighting) = self.sightings_rx.recv(), if accepting => self.sighted(sighting),
                Some(notice) = self.readers.next_notice() => self.readers.noticed(notice, &self.engine),
            }
            if accepting {
                self.drain_ready(endpoints, settings.max_batch).await;
            }
            if let Some(why) = self.deposed.take() {
                return Exit::Deposed(why);
            }
            // Publications are recorded when a write goes out anyway, or when many gather (and
            // on every tick): a write of their own would delay the decisions queued behind it.
            if !self.pending.events.is_empty()
                || self.publications.confirmed() >= settings.max_batch
            {
                self.record_published();
            }
            if let Err(exit) = self.flush(lease).await {
                return exit;
            }
            let shared = (settings.prefetch, settings.prefetch_shared);
            self.readers.grant(&self.engine, shared);
            self.prefetch_payloads();
        }
    }

    /// Reads back, off the loop, the payloads the next hand-outs will need and the cache does
    /// not hold (delayed items about to fall due, ready items after a takeover); they come back
    /// as [`Internal::Prefetched`].
    fn prefetch_payloads(&mut self) {
        let reads = self.prefetch.plan(self.engine.state(), &self.cache, now_ms());
        if reads.is_empty() {
            return;
        }
        let (js, internal) = (self.env.js.clone(), self.internal_tx.clone());
        tokio::spawn(async move {
            let requested: Vec<WorkId> = reads.iter().map(|r| r.work_id.clone()).collect();
            let mut by_queue: HashMap<QueueName, HashMap<u64, WorkId>> = HashMap::new();
            for read in reads {
                by_queue.entry(read.queue).or_default().insert(read.seq, read.work_id);
            }
            let batches = by_queue.iter().map(|(queue, items)| {
                let seqs: Vec<u64> = items.keys().copied().collect();
                let js = &js;
                async move { (queue, payloads::read_many(js, queue, &seqs).await) }
            });
            let mut found = Vec::new();
            for (queue, payloads) in futures::future::join_all(batches).await {
                let items = &by_queue[queue];
                let named = payloads.into_iter();
                found.extend(named.filter_map(|(seq, p)| Some((items.get(&seq)?.clone(), seq, p))));
            }
            let _ = internal.send(Internal::Prefetched { requested, found });
        });
    }

    /// Takes every input that is already waiting (up to `limit`), so that one journal write
    /// carries the decisions of all of them.
    async fn drain_ready(&mut self, endpoints: &mut Endpoints, limit: usize) {
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
            if let Some((key, outcome)) = self.publications.next().now_or_never() {
                self.publications.done(key, outcome, &mut self.cache);
                taken += 1;
            }
            if let Some((work_id, outcome)) = self.submissions.next().now_or_never() {
                self.submitted_own(work_id, outcome);
                taken += 1;
            }
            if taken == before {
                break;
            }
        }
    }

    /// Steps the engine; its events and effects wait for the next flush.
    fn step(&mut self, command: Command) {
        let output = self.engine.step(command);
        self.follow(&output.events);
        self.pending.events.extend(output.events);
        self.pending.effects.extend(output.effects);
    }

    /// A submission from a reader: stepped if its reader is still the queue's current one,
    /// and its payload kept for the grant (or the rejection notice) it leads to.
    fn submitted(&mut self, delivery: Delivery) {
        let Delivery { mut submission, generation, payload, stored_ms } = delivery;
        if generation == PASSING {
            // Read for the cursor to pass it: only while it still would (nothing read since).
            let q = self.engine.state().queues.get(&submission.queue);
            if !q
                .is_some_and(|q| q.cursor == submission.after && q.jumped.contains(&submission.seq))
            {
                return;
            }
        } else if !submission.jump && !self.readers.delivered(&submission.queue, generation) {
            return; // Read by a reader that has been replaced: the new one reads it again.
        }
        if let (Some(metrics), Some(_)) = (&self.env.metrics, &submission.unreadable) {
            metrics.bad_message(BadMessage::UnreadableSubmission);
        }
        submission.now = now_ms();
        let output = self.engine.step(Command::Submitted(submission));
        self.cache.keep(&output.events, &payload, stored_ms);
        self.follow(&output.events);
        self.pending.events.extend(output.events);
        self.pending.effects.extend(output.effects);
    }

    /// Brings what the leader derives from the events (the operator's log lines, metrics, the
    /// read-ahead plan, the payloads kept) in line with a step's events.
    fn follow(&mut self, events: &[Event]) {
        self.pass_jumped(events);
        self.outcomes.log(events, self.engine.state());
        self.observe(events);
        self.prefetch.events(events, &self.cache);
        self.cache.events(events);
    }

    /// Moves the cursors of the queues nobody serves past what they jumped, as far as nothing
    /// unread lies before it: after each jump or pass there, the first submission after the
    /// cursor is read, and passed if it was jumped (`OutOfTurn::Pass`). So a queue whose
    /// submissions all jump (they all expire) keeps its cursor current and its jumped list
    /// short, and never fills the room for jumps (`max_priority_jumps`).
    fn pass_jumped(&mut self, events: &[Event]) {
        let moved = events.iter().filter_map(|event| match event {
            Event::WorkAccepted { queue, jumped: true, .. } => Some(queue),
            Event::SubmissionPassed { queue, .. } => Some(queue),
            _ => None,
        });
        let moved: BTreeSet<&QueueName> = moved.collect();
        for queue in moved {
            if self.engine.served_queues().any(|served| served == queue) {
                continue; // Its reader passes them.
            }
            let Some(q) = self.engine.state().queues.get(queue) else { continue };
            if let Some(&jumped) = q.jumped.first() {
                let (queue, cursor) = (queue.clone(), q.cursor);
                // Full: the next jump or pass asks again.
                let _ = self.jumps.try_send(OutOfTurn::Pass { queue, cursor, jumped });
            }
        }
    }

    /// How submitting one of the master's own submissions ended; a retry whose payload is gone
    /// is dropped by the engine, anything else failed is tried again. A stored retry of a
    /// priority or expiring job is sighted like a client's announced one: it jumps the unread
    /// backlog, or is taken while nobody serves its queue.
    fn submitted_own(&mut self, work_id: WorkId, outcome: submissions::Outcome) {
        if let Ok(seq) = &outcome {
            let retry = self.engine.state().retries.get(&work_id);
            if let Some(retry) = retry.filter(|r| r.options.priority > 0 || r.options.expires > 0) {
                let (queue, expiring) = (retry.queue.clone(), retry.options.expires > 0);
                self.sighted(Sighting { queue, seq: *seq, expiring });
            }
        }
        if let Some(command) = self.submissions.done(work_id, outcome) {
            self.step(command);
        }
    }

    /// A priority or expiring submission the scout saw stored: if its queue is served (or it
    /// expires: then whether or not) and its reader has not delivered it yet, it is read out
    /// of turn (off the loop, delivered in the order seen) and comes back as a submission
    /// marked `jump`; the engine decides whether it may jump.
    fn sighted(&mut self, sighting: Sighting) {
        let Sighting { queue, seq, expiring } = sighting;
        let unread = self
            .engine
            .state()
            .queues
            .get(&queue)
            .is_none_or(|q| seq > q.cursor && !q.jumped.contains(&seq));
        if unread && (expiring || self.engine.served_queues().any(|served| *served == queue)) {
            // Full: too many at once, this one waits for its turn.
            let _ = self.jumps.try_send(OutOfTurn::Jump { queue, seq });
        }
    }

    /// A request on one of the endpoints: decoded into a command (garbage is answered 400
    /// at once) or, for the read-only views, answered off the loop.
    async fn inbound(&mut self, kind: service::Endpoint, request: async_nats::service::Request) {
        if self.requests.redirected(kind, &request) {
            return;
        }
        let state = self.engine.state();
        match kind {
            service::Endpoint::Status => {
                return self.requests.status(request, &self.engine, &self.env.js)
            }
            service::Endpoint::Job => return self.requests.job(request, state, &self.env.js),
            service::Endpoint::Jobs => return self.requests.list(request, state, &self.env.js),
            service::Endpoint::Schedules => return self.requests.schedules(request, state),
            _ => {}
        }
        if let Some(command) = self.requests.decode(kind, request, now_ms()).await {
            self.step(command);
        }
    }

    fn internal(&mut self, internal: Internal) {
        match internal {
            Internal::Command(command) => self.step(command),
            Internal::Integrity(observed) => self.integrity(observed),
            Internal::Payloads(payloads) => self.cache.fill(payloads, self.engine.state()),
            Internal::Prefetched { requested, found } => {
                let found_ids: FastSet<WorkId> = found.iter().map(|(id, ..)| id.clone()).collect();
                let kept = self.cache.prefetched(found, self.engine.state());
                self.prefetch.read(&requested, &found_ids, &kept);
            }
            Internal::Survey(unread) => self.observer.surveyed(unread),
            Internal::JournalFill { fill, mark } => self.room.observe(fill, mark),
        }
    }

    /// Journals that the confirmed publications are stored. Nothing waits on this record: a
    /// leader that dies before writing it leaves them unpublished, and the next one checks
    /// the results stream before publishing them again.
    fn record_published(&mut self) {
        if let Some(keys) = self.publications.take_confirmed() {
            self.step(Command::Published { keys });
        }
        if let Some(work_ids) = self.submissions.take_confirmed() {
            self.step(Command::SubmissionsStored { work_ids });
        }
    }

    fn tick(&mut self) {
        self.step(Command::Tick { now: now_ms() });
        self.record_published();
        // Retried publications run like fresh ones, behind the journal like every effect.
        self.pending.effects.extend(self.publications.due());
        self.pending.effects.extend(self.submissions.due());
        self.readers.refresh(&self.engine);
        self.maybe_purge(false);
        self.maybe_check_integrity();
        self.maybe_sync_observations();
    }
}

/// Sightings waiting for the loop; beyond it the scout drops new ones (they wait their turn).
const MAX_SIGHTINGS: usize = 1024;

/// The finest step at which the leader wakes for waiting work falling due (ms): the most a
/// delayed job starts late by, when a worker is free.
const DUE_GRANULARITY_MS: u64 = 10;

/// How a journal error ends the term: fenced, another leader wrote (the journal is
/// writable); otherwise this write did not go through.
fn deposed(e: JournalError) -> Exit {
    match e {
        JournalError::Fenced { .. } | JournalError::Encode(_) => Exit::Deposed(e.to_string()),
        JournalError::Unavailable(_) | JournalError::Refused(_) => {
            Exit::JournalFailed(e.to_string())
        }
    }
}

/// 32 bytes from the operating system's generator (two v4 UUIDs' worth), for the engine's
/// token generator (attempt tokens must be unguessable) and the publisher's reply ids.
pub(crate) fn random_seed() -> [u8; 32] {
    let mut seed = [0; 32];
    seed[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    seed[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    seed
}
