//! Journal writes and what rides on them: group commit of the stepped decisions, snapshots
//! when due, and the effects held back until the write that justifies them is acknowledged.
//!
//! Invariants:
//! - an effect runs only once the journal write holding its events (or, if it has none, the
//!   latest write issued before it) is acknowledged, and effects run in order;
//! - while a write is in flight, new decisions wait with their effects and go out together as
//!   the next write (group commit), unless `max_batch` events have gathered;
//! - a snapshot is the state after every event issued before its first part, written into
//!   the same fenced chain; history before it may be purged only once its marker is
//!   acknowledged ([`Snapshots::confirmed`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use jetwork_shared::clock::now_ms;
use jetwork_shared::jobs::Revoke;
use jetwork_shared::protocol::{MasterElected, WorkReady};
use jetwork_shared::{codec, subjects, Login, WorkerId};

use super::replies::{self, ReplyContext};
use super::{deposed, Exit, Leader};
use crate::config::MasterConfig;
use crate::core::{Command, Effect, Event, JournalBatch, Output};
use crate::journal::JournalError;
use crate::lease::LeaseGuard;

/// Items in flight from which a snapshot waits for at least [`SNAPSHOT_EVENTS_PER_ITEM`]
/// events per item ([`Snapshots::should_write`]), if `snapshot_every` is fewer.
const LARGE_STATE: u64 = 10_000;
const SNAPSHOT_EVENTS_PER_ITEM: u64 = 2;

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

/// When to write a snapshot, and how far the journal may be purged.
pub struct Snapshots {
    /// Events written since the last snapshot.
    events_since: u64,
    last: Instant,
    /// Write one at the next flush, events or not (history was purged by someone else).
    due: bool,
    /// First sequence of the newest snapshot known to be stored (replay's start when this
    /// term has written none): history before it may go, history after it must not.
    floor: u64,
    /// The latest confirmed snapshot's first sequence, for journal purges.
    for_purge: Option<u64>,
}

impl Snapshots {
    /// After a replay of `events` events from `from_seq`.
    pub fn new(events: u64, from_seq: u64) -> Self {
        Snapshots {
            events_since: events,
            last: Instant::now(),
            due: false,
            floor: from_seq,
            for_purge: None,
        }
    }

    /// `n` more events were written.
    pub fn written(&mut self, n: usize) {
        self.events_since += n as u64;
    }

    /// Whether to write one now, with `held` items in flight. A snapshot is the whole state,
    /// encoded on the loop (100k held items take ~0.1 s, during which nothing is dispatched),
    /// so a large state waits for proportionally more events: writing snapshots then costs at
    /// most a constant per event however large the state, and replay still reads at most about
    /// twice the state's items in events after one.
    fn should_write(&self, settings: &MasterConfig, held: usize) -> bool {
        let mut every = settings.snapshot_every;
        if held as u64 >= LARGE_STATE {
            every = every.max(SNAPSHOT_EVENTS_PER_ITEM * held as u64);
        }
        self.due
            || self.events_since >= every
            || (self.events_since > 0 && self.last.elapsed() >= settings.snapshot_interval)
    }

    fn wrote(&mut self) {
        self.events_since = 0;
        self.last = Instant::now();
        self.due = false;
    }

    /// The snapshot starting at `first_seq` is stored (its marker acknowledged).
    pub fn confirmed(&mut self, first_seq: u64) {
        self.for_purge = Some(first_seq);
        self.floor = first_seq;
    }

    /// The journal now starts at `first`: if that is past the latest snapshot, someone else
    /// purged it, and a snapshot is written at once. Returns whether it was.
    pub fn purged_to(&mut self, first: u64) -> Option<u64> {
        if first <= self.floor {
            return None;
        }
        let floor = self.floor;
        self.due = true;
        // Until the new snapshot is confirmed, do not report this again.
        self.floor = first;
        Some(floor)
    }

    /// The first sequence of the latest confirmed snapshot, for every purge until the next
    /// one: history below it may go once it is older than the retention, which the first
    /// purge after the snapshot may be too early for (and an idle leader writes no new one).
    pub fn for_purge(&self) -> Option<u64> {
        self.for_purge
    }
}

impl Leader {
    /// Journals what the stepped commands decided, snapshots when due, and queues their
    /// effects behind the write.
    pub(super) async fn flush(&mut self, lease: &LeaseGuard) -> Result<(), Exit> {
        let notifications = self.engine.notifications(now_ms());
        self.pending.effects.extend(notifications);
        let settings = &self.env.settings.master;
        let batch_full = self.pending.events.len() >= settings.max_batch;
        if !self.pending.events.is_empty() && self.journal.inflight() > 0 && !batch_full {
            return Ok(()); // Group commit: wait for the write in flight.
        }
        let Output { events, effects } = std::mem::take(&mut self.pending);
        if !events.is_empty() || self.snapshots.due {
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
            if self.snapshots.should_write(&self.env.settings.master, held) {
                self.journal.write_snapshot(self.engine.state()).await.map_err(deposed)?;
                tracing::debug!(events = self.snapshots.events_since, "snapshot written");
                self.snapshots.wrote();
            }
        }
        self.effects.queue(self.journal.issued(), effects);
        self.release_effects().await;
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

    /// Runs every queued effect whose journal write is acknowledged, in order.
    pub(super) async fn release_effects(&mut self) {
        while let Some(effect) = self.effects.next_ready(self.journal.acked()) {
            self.execute(effect).await;
        }
    }

    async fn execute(&mut self, effect: Effect) {
        match effect {
            Effect::Reply { request, reply } => {
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
        while !self.submissions.is_idle() {
            match tokio::time::timeout_at(deadline, self.submissions.next()).await {
                Ok((work_id, outcome)) => self.submitted_own(work_id, outcome),
                Err(_) => break,
            }
        }
        // Confirmed submissions are recorded if a write can still go out; if not, the next
        // leader submits them again (a duplicate the stream drops).
        if let Some(work_ids) = self.submissions.take_confirmed() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_state_waits_for_more_events_before_its_snapshot() {
        let settings = MasterConfig::default(); // every 50 000 events or 60 s
        let mut snapshots = Snapshots::new(0, 1);
        snapshots.written(60_000);
        assert!(snapshots.should_write(&settings, 100), "a small state: every 50 000 events");
        assert!(snapshots.should_write(&settings, 30_000), "60 000 ≥ 2 × 30 000");
        assert!(!snapshots.should_write(&settings, 100_000), "100k held: 200 000 events");
        snapshots.written(140_000);
        assert!(snapshots.should_write(&settings, 100_000));
        snapshots.wrote();
        assert!(!snapshots.should_write(&settings, 100_000), "nothing written since");
    }
}
