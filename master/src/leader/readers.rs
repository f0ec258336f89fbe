//! [`Readers`]: who reads each queue's submissions for the leader: the term's stream reader
//! (`intake/stream_reader.rs`) or a queue reader of its own (`intake/queue_reader.rs`), each
//! time under a new generation number, paced by the credits the leader grants.
//!
//! - A queue is read when some worker serves it, and no longer when nobody does: readers
//!   never outnumber the served queues (`max_served_queues`).
//! - A served queue is first asked to join the stream reader at its cursor; the join goes
//!   out with the queue's first credits. The queue gets a reader of its own when the join is
//!   refused, when it spills (its next submission finds no credits: its backlog is beyond its
//!   read-ahead), when the engine asks for it to be read again (`Reread`), and when the stream
//!   reader has no consumer (that reader then reads by direct gets at once, without waiting
//!   for a creation of its own). It asks to join again once its own reader waits for
//!   submissions (it holds credits it could not use): [`JOIN_AGAIN`] after a spill, doubling
//!   up to [`JOIN_AGAIN_MAX`] while it keeps spilling, and [`JOIN_AGAIN_MAX`] after a refusal.
//! - A replaced reader's leftovers still in the channel carry its old generation and are
//!   ignored.
//! - A queue with purged submissions still unread (`QueueState::purging`) is read whether or
//!   not a worker serves it (by a reader of its own, unless it is joined already), granted at
//!   least [`PURGE_READ`] at a time, until they are all read (and cancelled).
//! - Credits: a queue may be read the free slots of the workers serving it plus its
//!   read-ahead (`max(prefetch, prefetch_shared / served queues)`: a lone served queue stays
//!   further ahead, many take no more than `prefetch` each), minus what is ready or
//!   already asked for (`core::upkeep::read_ahead`), so the
//!   backlog stays in the stream; and nothing while the queue, or all queues, hold as many
//!   delayed or backing-off items as allowed (`Engine::may_read`: those items are not ready,
//!   so the read-ahead bound alone would read on without end).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use jetwork_shared::QueueName;
use tokio::sync::mpsc;

use crate::core::{upkeep, Engine};
use crate::intake::{Credits, Notice, QueueReader, ReaderEnv, StreamReader};

/// Submissions a purging queue's reader may have asked for at once.
const PURGE_READ: u64 = 256;
/// How long a queue that spilled keeps its own reader at least; doubled at each spill in a
/// row, up to [`JOIN_AGAIN_MAX`] (a refusal waits that at once).
const JOIN_AGAIN: Duration = Duration::from_secs(1);
const JOIN_AGAIN_MAX: Duration = Duration::from_secs(30);

/// Who reads a queue.
enum Reading {
    /// A reader of its own.
    Own(QueueReader),
    /// The stream reader, as reader `generation`, with these credits; `asked`: whether the
    /// join went out (it waits for the queue's first credits, so that the first submission
    /// read does not find none and spill).
    Streamed { generation: u64, credits: Credits, asked: bool },
}

impl Reading {
    fn generation(&self) -> u64 {
        match self {
            Reading::Own(reader) => reader.generation(),
            Reading::Streamed { generation, .. } => *generation,
        }
    }

    fn credits(&mut self) -> &mut Credits {
        match self {
            Reading::Own(reader) => reader.credits(),
            Reading::Streamed { credits, .. } => credits,
        }
    }
}

/// When a queue with a reader of its own may ask to join again, and how long the next wait is.
#[derive(Clone, Copy)]
struct Backoff {
    not_before: Instant,
    next: Duration,
}

/// The readers of the served queues.
pub struct Readers {
    by_queue: BTreeMap<QueueName, Reading>,
    env: ReaderEnv,
    stream: StreamReader,
    notices: mpsc::UnboundedReceiver<Notice>,
    /// Readers started so far: each gets the next number.
    generations: u64,
    /// The queues that failed to join or spilled, and when they may ask again.
    backoff: BTreeMap<QueueName, Backoff>,
    /// The queues not read for now because too many of their items wait (logged once as they
    /// stop and once as they go on).
    held: BTreeSet<QueueName>,
}

impl Readers {
    /// No readers yet; those started will read with `env`.
    pub fn new(env: ReaderEnv) -> Self {
        let (notify, notices) = mpsc::unbounded_channel();
        let stream = StreamReader::spawn(&env, notify);
        Readers {
            by_queue: BTreeMap::new(),
            env,
            stream,
            notices,
            generations: 0,
            backoff: BTreeMap::new(),
            held: BTreeSet::new(),
        }
    }

    /// Starts reading the queues workers serve, and those with purged submissions still to
    /// read; stops reading the others; asks queues with readers of their own that wait for
    /// submissions to join the stream reader again.
    pub fn refresh(&mut self, engine: &Engine) {
        let served: BTreeSet<&QueueName> = engine.served_queues().collect();
        let purging: BTreeSet<&QueueName> = engine.purging_queues().collect();
        let stream = &self.stream;
        self.by_queue.retain(|queue, _| {
            let keep = served.contains(queue) || purging.contains(queue);
            if !keep {
                stream.unfollow(queue);
            }
            keep
        });
        let now = Instant::now();
        // A queue's failures are forgotten once it has stayed joined as long as its next wait.
        let by_queue = &self.by_queue;
        self.backoff.retain(|queue, b| {
            let joined = matches!(by_queue.get(queue), Some(Reading::Streamed { asked: true, .. }));
            served.contains(queue) && !(joined && now >= b.not_before + b.next)
        });
        let mut joins = Vec::new();
        let mut own = Vec::new();
        let read: BTreeSet<&QueueName> = served.union(&purging).copied().collect();
        for queue in read {
            let waits = match self.by_queue.get_mut(queue) {
                None => true,
                Some(Reading::Streamed { .. }) => false,
                // Its reader holds credits it could not use: it waits for submissions.
                Some(Reading::Own(reader)) => reader.credits().outstanding() > 0,
            };
            let joinable = waits
                && served.contains(queue)
                && !purging.contains(queue)
                && self.backoff.get(queue).is_none_or(|b| now >= b.not_before);
            match (waits, joinable) {
                (true, true) => joins.push(queue.clone()),
                (true, false) if !self.by_queue.contains_key(queue) => own.push(queue.clone()),
                _ => {}
            }
        }
        for queue in joins {
            tracing::debug!(%queue, "reading submissions with the stream reader");
            self.generations += 1;
            let (generation, credits) = (self.generations, Credits::default());
            self.by_queue.insert(queue, Reading::Streamed { generation, credits, asked: false });
        }
        let state = engine.state();
        for queue in own {
            let start = state.queues.get(&queue).map_or(0, |q| q.cursor) + 1;
            self.start(queue, start, false);
        }
    }

    /// What the stream reader says of a joined queue: it spilled or could not join, so it gets a
    /// reader of its own from its cursor (if that join is still the queue's reading).
    pub fn noticed(&mut self, notice: Notice, engine: &Engine) {
        let unavailable = matches!(notice, Notice::Unavailable { .. });
        let refused = matches!(notice, Notice::Refused { .. });
        let (Notice::Spilled { queue, generation }
        | Notice::Refused { queue, generation }
        | Notice::Unavailable { queue, generation }) = notice;
        if self.by_queue.get(&queue).is_none_or(|r| r.generation() != generation) {
            return;
        }
        // A refusal (the queue's cursor is too far behind the stream reader, or that reader
        // cannot start) does not pass in a second: the longest wait at once. A quiet queue's
        // next try after its next submission succeeds: that submission puts its cursor where
        // the stream reader follows it from.
        let wait = match refused {
            true => JOIN_AGAIN_MAX,
            false => self.backoff.get(&queue).map_or(JOIN_AGAIN, |b| b.next),
        };
        let next = (wait * 2).min(JOIN_AGAIN_MAX);
        self.backoff.insert(queue.clone(), Backoff { not_before: Instant::now() + wait, next });
        let cursor = engine.state().queues.get(&queue).map_or(0, |q| q.cursor);
        self.start(queue, cursor + 1, unavailable);
    }

    /// The next notice of the stream reader.
    pub async fn next_notice(&mut self) -> Option<Notice> {
        self.notices.recv().await
    }

    /// Reads `queue` again from `from` with a reader of its own (if the queue is read at all).
    pub fn restart(&mut self, queue: QueueName, from: u64) {
        if self.by_queue.contains_key(&queue) {
            tracing::warn!(%queue, from, "a submission did not follow on from the cursor; reading the queue again");
            self.start(queue, from, false);
        }
    }

    /// Gives `queue` a reader of its own from `start` (by direct gets first: `direct_first`).
    fn start(&mut self, queue: QueueName, start: u64, direct_first: bool) {
        tracing::debug!(%queue, start, "reading submissions with a reader of the queue's own");
        if matches!(self.by_queue.get(&queue), Some(Reading::Streamed { .. })) {
            self.stream.leave(&queue);
        }
        self.generations += 1;
        let reader =
            QueueReader::spawn(&self.env, queue.clone(), start, self.generations, direct_first);
        self.by_queue.insert(queue, Reading::Own(reader));
    }

    /// Whether a delivery of `queue` by reader `generation` comes from the queue's current
    /// reader (and counts it if so).
    pub fn delivered(&mut self, queue: &QueueName, generation: u64) -> bool {
        match self.by_queue.get_mut(queue) {
            Some(reading) if reading.generation() == generation => {
                reading.credits().delivered();
                true
            }
            _ => false,
        }
    }

    /// Grants each reader what its queue can take: its free slots and its share of the
    /// read-ahead, `(prefetch, prefetch_shared)` (`master.prefetch`, `master.prefetch_shared`).
    /// Runs after every loop turn: the state's queues and the served ones are walked alongside
    /// the readers (all in name order), so that neither is looked up for each queue.
    pub fn grant(&mut self, engine: &Engine, (prefetch, shared): (u32, u32)) {
        let state = engine.state();
        let queues = u32::try_from(engine.served_count()).unwrap_or(u32::MAX).max(1);
        let prefetch = u64::from(prefetch.max(shared / queues));
        let mut states = Alongside::new(state.queues.iter());
        let mut served = Alongside::new(engine.served_queues().map(|queue| (queue, ())));
        for (queue, reading) in self.by_queue.iter_mut() {
            let queue_state = states.find(queue);
            let ready = queue_state.map_or(0, |q| q.ready_count() as u64);
            let credits = reading.credits();
            let outstanding = credits.outstanding();
            // A queue nobody serves is read only for its purge: nothing of it is read ahead.
            let may_read = engine.may_read(queue);
            note_held(&mut self.held, queue, may_read, engine);
            let mut granted = match served.find(queue).is_some() && may_read {
                true => upkeep::read_ahead(engine.free_slots(queue), prefetch, ready, outstanding),
                false => 0,
            };
            if queue_state.is_some_and(|q| q.purging()) {
                // Purged submissions are cancelled as they are read, whoever asks for work.
                granted = granted.max(PURGE_READ.saturating_sub(outstanding));
            }
            credits.grant(granted);
            let has_credits = credits.outstanding() > 0;
            if let Reading::Streamed { generation, credits, asked: asked @ false } = reading {
                if !has_credits {
                    continue;
                }
                let cursor = queue_state.map_or(0, |q| q.cursor);
                self.stream.join(queue, cursor, *generation, credits.permits());
                *asked = true;
            }
        }
    }

    /// Stops every reader (the term is over).
    pub fn clear(&mut self) {
        for queue in self.by_queue.keys() {
            self.stream.unfollow(queue);
        }
        self.by_queue.clear();
        self.backoff.clear();
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

/// A walk over entries in ascending key order, alongside ascending keys asked for: the entry
/// of each key asked, if there is one, without a look-up.
struct Alongside<'a, V, I: Iterator<Item = (&'a QueueName, V)>> {
    entries: std::iter::Peekable<I>,
}

impl<'a, V, I: Iterator<Item = (&'a QueueName, V)>> Alongside<'a, V, I> {
    fn new(entries: I) -> Self {
        Alongside { entries: entries.peekable() }
    }

    /// The entry of `key` (each key asked for after the one before it).
    fn find(&mut self, key: &QueueName) -> Option<V> {
        while let Some((next, _)) = self.entries.peek() {
            match (*next).cmp(key) {
                std::cmp::Ordering::Less => {
                    self.entries.next();
                }
                std::cmp::Ordering::Equal => return self.entries.next().map(|(_, v)| v),
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }
}
