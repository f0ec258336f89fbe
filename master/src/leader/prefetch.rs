//! [`Prefetch`]: payloads read back from `JETWORK_SUBMIT` ahead of their hand-out, so a grant
//! does not wait on stream reads.
//!
//! The cache (`cache.rs`) holds the payload of what is read ahead from the queues, but not of
//! a delayed item while it waits (a backlog of them would hold every payload), and nothing
//! after a takeover. A grant of such items would read each payload while its worker waits:
//! a round trip per grant, on the path of every due job. Instead the leader reads ahead:
//! - the items falling due within [`Limits::horizon`], soonest first, walked with a cursor so
//!   each is looked at once (an item put back to wait before the cursor rewinds it);
//! - the ready items next in line, while some may lack their payloads (after a takeover, or
//!   when items fall due faster than they could be read ahead: a burst all due at once).
//!
//! They are read in batches (`payloads::read_many`), at most every [`Limits::every`].
//!
//! Bounded: payloads read ahead for items that have not started yet, with those being read,
//! are at most [`Limits::items`] and [`Limits::bytes`] (sizes are known from the state before
//! reading). An item leaves that count when it starts (its payload is then the in-flight
//! cache's, bounded by the workers' capacity) or finishes. What was not found is left to the
//! grant, which reads it itself and can tell a payload that is gone from one not stored yet.
//!
//! Which items come next is the core's pure decision (`core::upkeep::{ready_next,
//! falling_due}`); this only keeps the bookkeeping, so it is tested without NATS.

use jetwork_shared::fast_hash::{FastMap, FastSet};
use std::ops::Bound;

use jetwork_shared::{QueueName, WorkId};

use super::cache::PayloadCache;
use crate::core::upkeep::{self, DueCursor, Upcoming};
use crate::core::{Event, Millis, State};

/// How far ahead, how much, and how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Waiting items falling due within this long are read ahead (ms).
    pub horizon: Millis,
    /// Most items read ahead and not started (or being read).
    pub items: usize,
    /// Most payload bytes of those.
    pub bytes: u64,
    /// Looked at no more often than this (ms).
    pub every: Millis,
}

impl Limits {
    /// The configured limits (`master.read_ahead_horizon`, `max_read_ahead_payloads`,
    /// `max_read_ahead_bytes`), looked at every 10 ms at most.
    pub fn of(settings: &crate::config::MasterConfig) -> Self {
        Limits {
            horizon: Millis::try_from(settings.read_ahead_horizon.as_millis())
                .unwrap_or(Millis::MAX),
            items: settings.max_read_ahead_payloads as usize,
            bytes: settings.max_read_ahead_bytes,
            every: 10,
        }
    }
}

/// One payload to read ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub work_id: WorkId,
    pub queue: QueueName,
    pub seq: u64,
}

/// What one plan may still read, and what it reads.
struct Room {
    items: usize,
    bytes: u64,
    reads: Vec<Read>,
}

/// The read-ahead bookkeeping of one term.
#[derive(Debug)]
pub struct Prefetch {
    limits: Limits,
    /// Being read: size by work id.
    reading: FastMap<WorkId, u64>,
    reading_bytes: u64,
    /// Read ahead and kept in the cache, not started yet: size by work id.
    ahead: FastMap<WorkId, u64>,
    ahead_bytes: u64,
    /// Ready items a read ahead did not find: left to their grant.
    missed: FastSet<WorkId>,
    /// The last waiting item looked at.
    cursor: Option<DueCursor>,
    /// Ready items may lack their payloads: the ready ones are looked at too.
    cold: bool,
    last: Option<Millis>,
}

impl Prefetch {
    /// For a new term: nothing is cached yet, so the ready items are looked at first.
    pub fn new(limits: Limits) -> Self {
        Prefetch {
            limits,
            reading: FastMap::default(),
            reading_bytes: 0,
            ahead: FastMap::default(),
            ahead_bytes: 0,
            missed: FastSet::default(),
            cursor: None,
            cold: true,
            last: None,
        }
    }

    /// Items read ahead and not started, with those being read.
    pub fn held(&self) -> (usize, u64) {
        (self.ahead.len() + self.reading.len(), self.ahead_bytes + self.reading_bytes)
    }

    /// Follows what a step decided: an item that starts or finishes leaves the count; ready
    /// items without their payloads make the ready ones worth a look; an item put back to wait
    /// before the cursor rewinds it.
    pub fn events(&mut self, events: &[Event], cache: &PayloadCache) {
        for event in events {
            match event {
                Event::WorkStarted { work_id, .. }
                | Event::WorkCompleted { work_id, .. }
                | Event::WorkFailed { work_id, .. }
                | Event::WorkCancelled { work_id, .. } => {
                    // Looked up only while something is held: this runs for every job.
                    if !self.ahead.is_empty() {
                        if let Some(size) = self.ahead.remove(work_id) {
                            self.ahead_bytes -= size;
                        }
                    }
                    if !self.missed.is_empty() {
                        self.missed.remove(work_id);
                    }
                }
                Event::WorkDue { work_ids } if !self.cold => {
                    self.cold = work_ids
                        .iter()
                        .any(|id| !cache.contains(id) && !self.reading.contains_key(id));
                }
                Event::WorkAccepted { work_id, options, at, .. } if options.not_before > *at => {
                    self.rewind(options.not_before, work_id);
                }
                Event::WorkRequeued { work_id, not_before, at, .. } if not_before > at => {
                    self.rewind(*not_before, work_id);
                }
                _ => {}
            }
        }
    }

    fn rewind(&mut self, at: Millis, work_id: &WorkId) {
        if self.cursor.as_ref().is_some_and(|(c_at, c_id)| (at, work_id) <= (*c_at, c_id)) {
            self.cursor = None;
        }
    }

    /// The payloads to read now (marked as being read), if any: at most every
    /// [`Limits::every`], within the bounds.
    pub fn plan(&mut self, state: &State, cache: &PayloadCache, now: Millis) -> Vec<Read> {
        if self.last.is_some_and(|last| now < last.saturating_add(self.limits.every)) {
            return Vec::new();
        }
        let (held, held_bytes) = self.held();
        let free = self.limits.items.saturating_sub(held);
        let free_bytes = self.limits.bytes.saturating_sub(held_bytes);
        let until = now.saturating_add(self.limits.horizon);
        // Looking at the ready items costs up to `items` lookups: only once a quarter of the
        // room is free again.
        let look_ready = self.cold && free >= (self.limits.items / 4).max(1);
        let from = self.cursor.as_ref().map_or(Bound::Unbounded, Bound::Excluded);
        let falling_due = state
            .waiting
            .range((from, Bound::Unbounded))
            .next()
            .is_some_and(|(at, _)| *at <= until);
        if free == 0 || (!look_ready && !falling_due) {
            return Vec::new();
        }
        self.last = Some(now);
        let mut room = Room { items: free, bytes: free_bytes, reads: Vec::new() };
        if look_ready {
            let next = upkeep::ready_next(state, self.limits.items);
            let seen_all = next.len() < self.limits.items;
            let mut lacking = false;
            for work_id in next {
                // Most are at hand (read ahead before): only the others are looked up.
                if cache.contains(work_id) || self.reading.contains_key(work_id) {
                    continue;
                }
                if !self.missed.is_empty() && self.missed.contains(work_id) {
                    continue;
                }
                let Some(u) = Upcoming::of(state, work_id) else { continue };
                match self.take(u, cache, &mut room) {
                    Some(true) => lacking = true,
                    Some(false) => {}
                    None => {
                        lacking = true;
                        break;
                    }
                }
            }
            // Every ready item has its payload (or is left to its grant): until more fall
            // due without theirs, the ready items need no look.
            if seen_all && !lacking {
                self.cold = false;
            }
        }
        if falling_due {
            let limit = room.items;
            for (key, u) in upkeep::falling_due(state, self.cursor.as_ref(), until, limit) {
                match self.take(u, cache, &mut room) {
                    Some(_) => self.cursor = Some(key.clone()),
                    None => break,
                }
            }
        }
        room.reads
    }

    /// Plans to read `u`'s payload if it is not at hand or being read: `Some(true)` if so,
    /// `Some(false)` if there is no need (or it could never fit: its grant reads it), `None`
    /// if there is no room now.
    fn take(&mut self, u: Upcoming<'_>, cache: &PayloadCache, room: &mut Room) -> Option<bool> {
        if cache.contains(u.work_id) || self.reading.contains_key(u.work_id) {
            return Some(false);
        }
        if u.size > self.limits.bytes {
            return Some(false);
        }
        if room.items == 0 || u.size > room.bytes {
            return None;
        }
        room.items -= 1;
        room.bytes -= u.size;
        self.reading.insert(u.work_id.clone(), u.size);
        self.reading_bytes += u.size;
        room.reads.push(Read { work_id: u.work_id.clone(), queue: u.queue.clone(), seq: u.seq });
        Some(true)
    }

    /// Reads planned earlier came back: `found` were read, `kept` of them went into the cache
    /// (the others had started, or were cached, meanwhile).
    pub fn read(&mut self, requested: &[WorkId], found: &FastSet<WorkId>, kept: &[WorkId]) {
        let kept: FastSet<&WorkId> = kept.iter().collect();
        for work_id in requested {
            let Some(size) = self.reading.remove(work_id) else { continue };
            self.reading_bytes -= size;
            if kept.contains(work_id) {
                self.ahead_bytes += size;
                self.ahead.insert(work_id.clone(), size);
            } else if !found.contains(work_id) {
                self.missed.insert(work_id.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use jetwork_shared::job_options::JobOptions;
    use jetwork_shared::{Token, WorkerId};

    use super::*;

    const T0: Millis = 1_000_000;

    fn id(n: u64) -> WorkId {
        WorkId::assigned(n)
    }

    fn queue() -> QueueName {
        QueueName::parse("q").unwrap()
    }

    /// Item `n` (submit sequence `n`, `size` bytes), due at `due` (ready at once if not after
    /// T0).
    fn accept(state: &mut State, n: u64, size: u64, due: Millis) -> Event {
        let options = JobOptions { not_before: due, ..JobOptions::default() };
        let event = Event::WorkAccepted {
            work_id: id(n),
            queue: queue(),
            seq: n,
            size,
            at: T0,
            prior_attempts: 0,
            options,
            jumped: false,
        };
        state.apply(&event);
        event
    }

    fn start(state: &mut State, n: u64) -> Event {
        let event = Event::WorkStarted {
            work_id: id(n),
            worker: WorkerId::parse("w").unwrap(),
            attempt: 1,
            deadline: T0 + 60_000,
            token: Token::default(),
            at: T0,
        };
        state.apply(&event);
        event
    }

    fn ids(reads: &[Read]) -> Vec<u64> {
        reads.iter().map(|r| r.seq).collect()
    }

    /// The planned reads came back, all found, into the cache.
    fn deliver(p: &mut Prefetch, reads: &[Read], cache: &mut PayloadCache, state: &State) {
        let payloads: Vec<(WorkId, u64, Bytes)> =
            reads.iter().map(|r| (r.work_id.clone(), r.seq, Bytes::from(vec![0u8; 10]))).collect();
        let found: FastSet<WorkId> = payloads.iter().map(|(id, ..)| id.clone()).collect();
        let requested: Vec<WorkId> = reads.iter().map(|r| r.work_id.clone()).collect();
        let kept = cache.prefetched(payloads, state);
        p.read(&requested, &found, &kept);
    }

    fn limits(items: usize, bytes: u64) -> Limits {
        Limits { horizon: 2_000, items, bytes, every: 10 }
    }

    #[test]
    fn reads_what_falls_due_within_the_horizon_soonest_first_and_nothing_beyond() {
        let mut state = State::default();
        for (n, due) in [(1, T0 + 2_500), (2, T0 + 500), (3, T0 + 1_999), (4, T0 + 60_000)] {
            accept(&mut state, n, 10, due);
        }
        let cache = PayloadCache::default();
        let mut p = Prefetch::new(limits(100, 1 << 20));
        assert_eq!(ids(&p.plan(&state, &cache, T0)), vec![2, 3], "due by T0 + 2 s");
        assert!(p.plan(&state, &cache, T0 + 5).is_empty(), "not again within `every`");
        assert!(p.plan(&state, &cache, T0 + 20).is_empty(), "nothing new within reach");
        assert_eq!(ids(&p.plan(&state, &cache, T0 + 600)), vec![1], "1 came within reach");
        assert!(p.plan(&state, &cache, T0 + 50_000).is_empty(), "each one is read once");
        assert_eq!(ids(&p.plan(&state, &cache, T0 + 58_000)), vec![4]);
    }

    #[test]
    fn the_count_and_bytes_read_ahead_are_bounded_until_items_start() {
        let mut state = State::default();
        for n in 1..=10 {
            accept(&mut state, n, 100, T0 + 100 + n);
        }
        let mut cache = PayloadCache::default();
        let mut p = Prefetch::new(limits(4, 1 << 20));
        let first = p.plan(&state, &cache, T0);
        assert_eq!(ids(&first), vec![1, 2, 3, 4]);
        assert!(p.plan(&state, &cache, T0 + 20).is_empty(), "4 being read: no room");
        deliver(&mut p, &first, &mut cache, &state);
        assert_eq!(p.held(), (4, 400), "counted at the sizes the state knows");
        assert!(p.plan(&state, &cache, T0 + 40).is_empty(), "4 held: no room");
        // Two of them fall due and start: their payloads are the in-flight cache's now.
        let due = Event::WorkDue { work_ids: vec![id(1), id(2)] };
        state.apply(&due);
        let started = [due, start(&mut state, 1), start(&mut state, 2)];
        p.events(&started, &cache);
        assert_eq!(p.held(), (2, 200));
        assert_eq!(ids(&p.plan(&state, &cache, T0 + 60)), vec![5, 6]);

        // Bytes: 250 bytes of room takes two items of 100, not a third.
        let mut p = Prefetch::new(limits(100, 250));
        let cache = PayloadCache::default();
        assert_eq!(ids(&p.plan(&state, &cache, T0)), vec![3, 4]);
        // One larger than the whole room is left to its grant, not waited for.
        let mut state = State::default();
        for (n, size) in [(1, 10), (2, 1_000), (3, 10)] {
            accept(&mut state, n, size, T0 + 100 + n);
        }
        let mut p = Prefetch::new(limits(100, 250));
        assert_eq!(ids(&p.plan(&state, &cache, T0)), vec![1, 3]);
    }

    #[test]
    fn an_item_put_back_to_wait_before_the_cursor_is_still_read() {
        let mut state = State::default();
        accept(&mut state, 1, 10, T0 + 1_000);
        let cache = PayloadCache::default();
        let mut p = Prefetch::new(limits(100, 1 << 20));
        assert_eq!(ids(&p.plan(&state, &cache, T0)), vec![1]);
        // A later submission due sooner than the cursor's position.
        let event = accept(&mut state, 2, 10, T0 + 500);
        p.events(&[event], &cache);
        assert_eq!(ids(&p.plan(&state, &cache, T0 + 20)), vec![2], "read, 1 not again");
    }

    #[test]
    fn ready_items_lacking_payloads_are_read_in_hand_out_order_and_misses_left_alone() {
        let mut state = State::default();
        // A term's start: three ready items whose payloads nobody holds.
        for n in 1..=3 {
            accept(&mut state, n, 10, 0);
        }
        let mut cache = PayloadCache::default();
        let mut p = Prefetch::new(limits(100, 1 << 20));
        let reads = p.plan(&state, &cache, T0);
        assert_eq!(ids(&reads), vec![1, 2, 3]);
        // 2 was not found: left to its grant, not asked for again.
        let found: Vec<(WorkId, u64, Bytes)> =
            [1, 3].iter().map(|n| (id(*n), *n, Bytes::from_static(b"x"))).collect();
        let found_ids: FastSet<WorkId> = found.iter().map(|(id, ..)| id.clone()).collect();
        let kept = cache.prefetched(found, &state);
        p.read(&[id(1), id(2), id(3)], &found_ids, &kept);
        assert!(p.plan(&state, &cache, T0 + 20).is_empty());
        assert!(!p.cold, "every ready item has its payload or is left to its grant");
        // Items falling due without their payloads make the ready ones worth a look again.
        let event = accept(&mut state, 4, 10, T0 + 50_000);
        p.events(&[event], &cache);
        let due = Event::WorkDue { work_ids: vec![id(4)] };
        state.apply(&due);
        p.events(&[due], &cache);
        assert_eq!(ids(&p.plan(&state, &cache, T0 + 40)), vec![4]);
    }

    #[test]
    fn a_paused_queue_is_not_read_ahead() {
        let mut state = State::default();
        accept(&mut state, 1, 10, 0);
        state.apply(&Event::QueuePaused { queue: queue(), at: T0 });
        let cache = PayloadCache::default();
        let mut p = Prefetch::new(limits(100, 1 << 20));
        assert!(p.plan(&state, &cache, T0).is_empty());
    }
}
