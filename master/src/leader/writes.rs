//! Journal writes and what rides on them: group commit of the stepped decisions, snapshots
//! when due, and the effects held back until the write that justifies them is acknowledged.
//!
//! Invariants:
//! - an effect runs only once the journal write holding its events (or, if it has none, the
//!   latest write issued before it) is acknowledged, and effects run in order; the one
//!   exception is an answer to a worker's request for work or report (`master.early_replies`,
//!   [`Leader::answer_workers_early`]), which may go as soon as it is decided, while the lease
//!   is certainly valid, at most one write is in flight and fewer than `max_batch` events
//!   wait: what it says is then either recorded by this term or unknown to every later one
//!   (architecture, "Early replies");
//! - while a write is in flight, new decisions wait with their effects and go out together as
//!   the next write (group commit), unless `max_batch` events have gathered;
//! - a snapshot is the state after every event issued before its first part, written into
//!   the same fenced chain: its copy of the state is taken right after a write, encoded off
//!   the loop, and decisions taken meanwhile wait (with their effects) until its parts are
//!   issued ([`Snapshots`]);
//! - while the journal has no room ([`super::room::JournalRoom`]), events wait; what is
//!   pending may go only followed by a snapshot, when only a newer snapshot can make room.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use jetwork_shared::clock::now_ms;
use jetwork_shared::jobs::Revoke;
use jetwork_shared::protocol::{MasterElected, WorkReady};
use jetwork_shared::{codec, subjects, Login, WorkerId};

use super::replies::{self, ReplyContext};
use super::snapshots::{Encoded, GROWTH_DIVISOR};
use super::{deposed, Exit, Leader, Room};
use crate::core::{Command, Effect, Event, JournalBatch, Output};
use crate::journal::{EncodedSnapshot, JournalError};
use crate::lease::LeaseGuard;

/// Effects waiting for the journal write they depend on.
#[derive(Default)]
pub struct Effects {
    /// (ticket of the write, effect), in the order they are to run.
    queue: VecDeque<(u64, Effect)>,
}

impl Effects {
    /// Holds `effects` until write `ticket` is acknowledged.
    pub fn queue(&mut self, ticket: u64, effects: Vec<Effect>) {
        self.queue.extend(effects.into_iter().map(|effect| (ticket, effect)));
    }

    /// The next effect whose write is acknowledged (`acked` = writes acknowledged so far).
    fn next_ready(&mut self, acked: u64) -> Option<Effect> {
        match self.queue.front() {
            Some((ticket, _)) if *ticket <= acked => self.queue.pop_front().map(|(_, e)| e),
            _ => None,
        }
    }
}

impl Leader {
    /// Journals what the stepped commands decided, snapshots when due, and queues their
    /// effects behind the write.
    pub(super) async fn flush(&mut self, lease: &LeaseGuard) -> Result<(), Exit> {
        let notifications = self.engine.notifications(now_ms());
        self.pending.effects.extend(notifications);
        self.answer_workers_early(lease).await;
        let settings = &self.env.settings.master;
        let batch_full = self.pending.events.len() >= settings.max_batch;
        let waiting = self.journal.inflight() > 0 && !batch_full;
        // Group commit: wait for the write in flight; and no event may come between a
        // snapshot's copy of the state and its parts.
        if !self.pending.events.is_empty() && (waiting || self.snapshots.encoding()) {
            return Ok(());
        }
        // A journal without room holds events back until a snapshot and a purge make some
        // (`room.rs`): a write it refused would end the term, and the next one's claim too.
        // Asked on every turn, events pending or not: while the journal is full the loop takes
        // no new input, so a quiet leader must still start the snapshot or purge that frees it.
        let written = self.journal.written_bytes();
        match self.room.plan(written, self.snapshots.purge_floor()) {
            Room::Free => {}
            // One on its way makes the same room once stored: a second would only take more
            // of the reserve.
            Room::Snapshot if !self.snapshots.in_progress() => self.snapshots.make_due(),
            Room::Snapshot | Room::AwaitPurge => {
                self.maybe_purge(true);
                if !self.pending.events.is_empty() {
                    return Ok(());
                }
            }
        }
        let Output { events, effects } = std::mem::take(&mut self.pending);
        if !events.is_empty() || self.snapshots.due() {
            // The fence would refuse a deposed leader's write anyway; this check spares the
            // round trip and makes the reason in the log the true one.
            if !lease.is_valid() {
                return Err(Exit::Deposed("lease validity passed before a journal write".into()));
            }
            self.snapshots.written(events.len());
            if !events.is_empty() {
                self.write_events(events).await.map_err(deposed)?;
            }
            let held = self.engine.state().work.len();
            let written = self.journal.written_bytes();
            if self.snapshots.should_write(&self.env.settings, held, written) {
                // Encoded off the loop; its parts are written when it is ready
                // (`write_snapshot`), before any later event.
                self.snapshots.start(self.engine.state(), self.journal.part_size());
            }
        }
        self.effects.queue(self.journal.issued(), effects);
        self.release_effects().await;
        Ok(())
    }

    /// Writes the snapshot encoded off the loop: its parts and marker, chained right after the
    /// writes issued before its copy of the state was taken (nothing was written since).
    pub(super) async fn write_snapshot(
        &mut self,
        encoded: Result<EncodedSnapshot, JournalError>,
        figures: Encoded,
        lease: &LeaseGuard,
    ) -> Result<(), Exit> {
        let encoded = encoded.map_err(deposed)?;
        if !lease.is_valid() {
            return Err(Exit::Deposed("lease validity passed before a snapshot".into()));
        }
        let started = Instant::now();
        let bytes = encoded.bytes();
        let (_, first_seq) = self.journal.write_snapshot(encoded).await.map_err(deposed)?;
        self.snapshots.wrote(self.journal.written_bytes());
        let issued = started.elapsed();
        tracing::debug!(
            first_seq,
            bytes,
            copy_ms = figures.copied.as_secs_f64() * 1e3,
            encode_ms = figures.encoded.as_secs_f64() * 1e3,
            issue_ms = issued.as_secs_f64() * 1e3,
            "snapshot written"
        );
        let cap = self.env.settings.streams.journal_max_bytes;
        if cap > 0 && bytes > cap as u64 / GROWTH_DIVISOR {
            tracing::warn!(
                bytes,
                journal_max_bytes = cap,
                "a snapshot takes more than a quarter of the journal's cap: the journal may \
                 fill (the leader then steps down); raise streams.journal_max_bytes"
            );
        }
        Ok(())
    }

    /// Writes events as one or more batches, each under the server's payload limit.
    async fn write_events(&mut self, events: Vec<Event>) -> Result<(), JournalError> {
        let limit = self.journal.max_payload();
        let mut chunks = vec![events];
        while let Some(chunk) = chunks.pop() {
            let batch = JournalBatch { events: chunk };
            let encoded = codec::encode(&batch).map_err(JournalError::Encode)?;
            // The server refuses a message over its max_payload; halving finds batches that
            // fit without estimating encoded sizes. A single oversize event cannot be split
            // and fails the write (the engine's limits keep events far below it).
            if encoded.len() > limit && batch.events.len() > 1 {
                let mut first = batch.events;
                let second = first.split_off(first.len() / 2);
                chunks.push(second);
                chunks.push(first);
                continue;
            }
            if let Some(metrics) = &self.env.metrics {
                metrics.journal_batch_events.observe(batch.events.len() as f64);
            }
            self.journal.append(subjects::JOURNAL_EVENTS, encoded).await?;
        }
        Ok(())
    }

    /// Sends the answers to workers' requests for work and reports decided since the last
    /// write (those the engine marked `early`: none naming an item on its last attempt) now,
    /// without waiting for the write that will record them (`master.early_replies`): it saves
    /// every job a journal round trip between its worker's report and its next grant. Only
    /// while at most one write is in flight and fewer than `max_batch` events wait, so no more
    /// than a batch of decisions is ever unrecorded, and a journal that falls behind or has no
    /// room holds workers back again once that batch is full; and only while the lease is
    /// certainly valid, as for a write. Registrations, errors and everything else still wait.
    async fn answer_workers_early(&mut self, lease: &LeaseGuard) {
        let settings = &self.env.settings.master;
        let early = |effect: &Effect| matches!(effect, Effect::Reply { early: true, .. });
        if !settings.early_replies
            || self.journal.inflight() > 1
            || self.pending.events.len() >= settings.max_batch
            || !self.pending.effects.iter().any(early)
            || !lease.is_valid()
        {
            return;
        }
        let (answers, held): (Vec<Effect>, Vec<Effect>) =
            std::mem::take(&mut self.pending.effects).into_iter().partition(early);
        self.pending.effects = held;
        for answer in answers {
            self.execute(answer).await;
        }
    }

    /// Runs every queued effect whose journal write is acknowledged, in order.
    pub(super) async fn release_effects(&mut self) {
        while let Some(effect) = self.effects.next_ready(self.journal.acked()) {
            self.execute(effect).await;
        }
    }

    async fn execute(&mut self, effect: Effect) {
        match effect {
            Effect::Reply { request, reply, .. } => {
                if let Some(pending) = self.requests.take(request) {
                    let ctx = ReplyContext {
                        epoch: self.epoch,
                        cache: &self.cache,
                        js: &self.env.js,
                        internal: &self.internal_tx,
                    };
                    replies::send(pending, reply, ctx).await;
                }
            }
            // Notifications are hints: a worker that misses one still asks on its own timer,
            // so a failed publish is not retried.
            Effect::NotifyReady { worker } => {
                if let Ok(body) = codec::encode(&WorkReady { epoch: self.epoch }) {
                    let subject = subjects::worker_ready(self.login_of(&worker), &worker);
                    let _ = self.env.client.publish(subject, body).await;
                }
            }
            Effect::Announce { epoch, leader } => {
                if let Ok(body) = codec::encode(&MasterElected { epoch, leader }) {
                    let _ = self.env.client.publish(subjects::MASTER_ELECTED, body).await;
                }
            }
            Effect::Publish { key } => {
                self.publications.start(key, self.engine.state(), &mut self.cache);
            }
            Effect::Submit { work_id } => self.submissions.start(work_id, self.engine.state()),
            Effect::LookUp { request, lookup } => {
                let position = match &lookup {
                    crate::core::LookUp::LastSubmitted { queue } => {
                        let q = self.engine.state().queues.get(queue);
                        q.map_or((0, 0), |q| (q.cursor, q.jumped.len() as u64))
                    }
                    _ => (0, 0),
                };
                super::lookups::start(&self.env.js, &self.internal_tx, request, lookup, position);
            }
            Effect::Reread { queue, from } => self.readers.restart(queue, from),
            // A hint like a notification: a worker that misses it learns at its next report
            // (the verdict is `finished`) and its attempt's result is refused anyway.
            Effect::Revoke { worker, work_id, attempt } => {
                let revoke = Revoke { epoch: self.epoch, work_id, attempt };
                if let Ok(body) = codec::encode(&revoke) {
                    let subject = subjects::worker_cancel(self.login_of(&worker), &worker);
                    let _ = self.env.client.publish(subject, body).await;
                }
            }
        }
    }

    /// The login `worker` registered under, which its notices' subjects carry (none if it
    /// has none, or is gone).
    fn login_of(&self, worker: &WorkerId) -> Option<&Login> {
        self.engine.state().workers.get(worker).and_then(|w| w.login.as_ref())
    }

    /// On a clean shutdown: let in-flight writes land and their effects run (replies,
    /// publications), so the next leader starts from a quiet journal.
    pub(super) async fn hand_over(&mut self, lease: &LeaseGuard) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        // A snapshot being encoded is not worth waiting for: the next leader replays the
        // events instead (and they can now be written).
        self.snapshots.abandon();
        // Decisions held back for group commit are written first (their effects then run).
        self.record_published();
        while !self.pending.events.is_empty() && lease.is_valid() {
            // Decisions held for room in the journal are not worth waiting for: the next
            // leader decides again (workers may have been answered early about some of them:
            // what that costs is argued in the architecture, "Early replies").
            if self.room.full(self.journal.written_bytes())
                || tokio::time::Instant::now() >= deadline
            {
                break;
            }
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
        while !self.submissions.is_idle() {
            match tokio::time::timeout_at(deadline, self.submissions.next()).await {
                Ok((work_id, outcome)) => self.submitted_own(work_id, outcome),
                Err(_) => break,
            }
        }
        // Confirmed submissions are recorded if a write can still go out (and the journal has
        // room); if not, the next leader submits them again (a duplicate the stream drops).
        let room = !self.room.full(self.journal.written_bytes());
        if let Some(work_ids) = self.submissions.take_confirmed().filter(|_| room) {
            self.step(Command::SubmissionsStored { work_ids });
            if self.flush(lease).await.is_ok() {
                while self.journal.inflight() > 0 {
                    match tokio::time::timeout_at(deadline, self.journal.next_ack()).await {
                        Ok(Ok(_)) => self.release_effects().await,
                        _ => break,
                    }
                }
            }
        }
        while !self.publications.is_idle() {
            match tokio::time::timeout_at(deadline, self.publications.next()).await {
                Ok((key, outcome)) => self.publications.done(key, outcome, &mut self.cache),
                Err(_) => break,
            }
        }
        tracing::info!(epoch = self.epoch, "handed over");
    }
}
