//! [`Readers`]: one queue reader (`intake.rs`) per queue a registered worker serves, each with
//! a generation number, paced by the credits the leader grants.
//!
//! - A reader is started at the queue's cursor + 1 when some worker serves the queue, and
//!   retired (its consumer deleted) when nobody does: readers never outnumber the served
//!   queues (`max_served_queues`).
//! - A reader is replaced when the engine asks for a queue to be read again (`Reread`); the
//!   replaced one's leftovers still in the channel carry the old generation and are ignored.
//! - A queue with purged submissions still unread (`QueueState::purging`) is read whether or
//!   not a worker serves it, at least [`PURGE_READ`] at a time, until they are all read (and
//!   cancelled).
//! - Credits: a queue's reader may pull the free slots of the workers serving it plus its
//!   read-ahead (`max(prefetch, prefetch_shared / served queues)`: a lone served queue stays
//!   further ahead, many take no more than `prefetch` each), minus what is ready or
//!   already asked for (`core::upkeep::read_ahead`), so the
//!   backlog stays in the stream; and nothing while the queue, or all queues, hold as many
//!   delayed or backing-off items as allowed (`Engine::may_read`: those items are not ready,
//!   so the read-ahead bound alone would read on without end).

use std::collections::{BTreeMap, BTreeSet};

use jetwork_shared::QueueName;

use crate::core::{upkeep, Engine};
use crate::intake::{QueueReader, ReaderEnv};

/// Submissions a purging queue's reader may have asked for at once.
const PURGE_READ: u64 = 256;

/// The readers of the served queues.
pub struct Readers {
    by_queue: BTreeMap<QueueName, QueueReader>,
    env: ReaderEnv,
    /// Readers started so far: each gets the next number.
    generations: u64,
    /// The queues not read for now because too many of their items wait (logged once as they
    /// stop and once as they go on).
    held: BTreeSet<QueueName>,
}

impl Readers {
    /// No readers yet; those started will read with `env`.
    pub fn new(env: ReaderEnv) -> Self {
        Readers { by_queue: BTreeMap::new(), env, generations: 0, held: BTreeSet::new() }
    }

    /// Starts readers for the queues workers serve, and those with purged submissions still
    /// to read; retires the others.
    pub fn refresh(&mut self, engine: &Engine) {
        let served: BTreeSet<&QueueName> =
            engine.served_queues().chain(engine.purging_queues()).collect();
        self.by_queue.retain(|queue, _| served.contains(queue));
        let state = engine.state();
        let missing: Vec<(QueueName, u64)> = served
            .into_iter()
            .filter(|queue| !self.by_queue.contains_key(*queue))
            .map(|queue| (queue.clone(), state.queues.get(queue).map_or(0, |q| q.cursor) + 1))
            .collect();
        for (queue, start) in missing {
            self.start(queue, start);
        }
    }

    /// Reads `queue` again from `from` with a new reader (if the queue is read at all).
    pub fn restart(&mut self, queue: QueueName, from: u64) {
        if self.by_queue.contains_key(&queue) {
            tracing::warn!(%queue, from, "a submission did not follow on from the cursor; reading the queue again");
            self.start(queue, from);
        }
    }

    fn start(&mut self, queue: QueueName, start: u64) {
        tracing::debug!(%queue, start, "reading submissions");
        self.generations += 1;
        let reader = QueueReader::spawn(&self.env, queue.clone(), start, self.generations);
        self.by_queue.insert(queue, reader);
    }

    /// Whether a delivery of `queue` by reader `generation` comes from the queue's current
    /// reader (and counts it if so).
    pub fn delivered(&mut self, queue: &QueueName, generation: u64) -> bool {
        match self.by_queue.get_mut(queue) {
            Some(reader) if reader.generation() == generation => {
                reader.delivered();
                true
            }
            _ => false,
        }
    }

    /// Grants each reader what its queue can take: its free slots and its share of the
    /// read-ahead, `(prefetch, prefetch_shared)` (`master.prefetch`, `master.prefetch_shared`).
    pub fn grant(&mut self, engine: &Engine, (prefetch, shared): (u32, u32)) {
        let state = engine.state();
        let served: BTreeSet<&QueueName> = engine.served_queues().collect();
        let queues = u32::try_from(served.len()).unwrap_or(u32::MAX).max(1);
        let prefetch = u64::from(prefetch.max(shared / queues));
        for (queue, reader) in self.by_queue.iter_mut() {
            let ready = state.ready_len(queue) as u64;
            let outstanding = reader.outstanding();
            // A queue nobody serves is read only for its purge: nothing of it is read ahead.
            let may_read = engine.may_read(queue);
            note_held(&mut self.held, queue, may_read, engine);
            let mut credits = match served.contains(queue) && may_read {
                true => upkeep::read_ahead(engine.free_slots(queue), prefetch, ready, outstanding),
                false => 0,
            };
            if state.queues.get(queue).is_some_and(|q| q.purging()) {
                // Purged submissions are cancelled as they are read, whoever asks for work.
                credits = credits.max(PURGE_READ.saturating_sub(outstanding));
            }
            reader.grant(credits);
        }
    }

    /// Stops every reader (the term is over).
    pub fn clear(&mut self) {
        self.by_queue.clear();
        self.held.clear();
    }
}

/// Logs a queue's reading stopping or going on at the limits on waiting items.
fn note_held(held: &mut BTreeSet<QueueName>, queue: &QueueName, may_read: bool, engine: &Engine) {
    match may_read {
        true if held.remove(queue) => {
            tracing::info!(%queue, "reading the queue again: fewer items wait")
        }
        false if !held.contains(queue) => {
            let (waiting, all) = engine.waiting(queue);
            let policy = engine.policy();
            tracing::warn!(
                %queue,
                waiting,
                all_queues = all,
                max_waiting_per_queue = policy.max_waiting_per_queue,
                max_waiting = policy.max_waiting,
                "not reading the queue's submissions for now: too many of its items (or of all \
                 queues) wait out a delay or back-off; they stay stored and are read once some \
                 fall due or finish"
            );
            held.insert(queue.clone());
        }
        _ => {}
    }
}
