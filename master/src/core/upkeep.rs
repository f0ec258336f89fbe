//! Housekeeping decisions the leader takes from the state, kept pure here so they are tested
//! like every other decision (golden scripts `upkeep`): how far each queue's submissions may
//! be purged, how many more submissions each queue's reader may pull, and which items' payloads
//! are worth reading back ahead of their hand-out ([`ready_next`], [`falling_due`]).
//!
//! The purge floor is safety-critical. A submission must stay in `JETWORK_SUBMIT` until its
//! work is finished and its outcome stored (its payload is read back after a takeover, and a
//! rejection's payload goes out with the notice), and everything at or above the cursor is
//! unread. So the floor of a queue is the lowest of its cursor + 1, the sequence of any item
//! of it still in flight, and the sequence of any outcome of it not yet confirmed published.
//! The dedup horizon (kept by the runtime, on the server's clock) only lowers it further.

use std::collections::BTreeMap;

use jetwork_shared::{QueueName, WorkId};

use super::{Millis, Publication, State};

/// For each queue with a cursor: every submission below this sequence may be purged.
pub fn purge_floors(state: &State) -> BTreeMap<QueueName, u64> {
    let mut floors: BTreeMap<QueueName, u64> =
        state.queues.iter().map(|(queue, q)| (queue.clone(), q.cursor + 1)).collect();
    let mut lower = |queue: &QueueName, seq: u64| {
        if let Some(floor) = floors.get_mut(queue) {
            *floor = (*floor).min(seq);
        }
    };
    for work in state.work.values() {
        lower(&work.queue, work.seq);
    }
    for publication in state.unpublished.values() {
        let (Publication::Completed { queue, seq, .. }
        | Publication::Failed { queue, seq, .. }
        | Publication::Cancelled { queue, seq, .. }
        | Publication::Rejected { queue, seq, .. }) = publication;
        lower(queue, *seq);
    }
    floors
}

/// How many more submissions a queue's reader may be granted: enough to fill the free slots
/// of the workers serving the queue plus `prefetch` read ahead, minus what is already ready
/// or asked for. The backlog beyond that stays in the stream, which keeps the master's memory
/// flat however long the queue.
pub fn read_ahead(free_slots: u64, prefetch: u64, ready: u64, outstanding: u64) -> u64 {
    (free_slots + prefetch).saturating_sub(ready + outstanding)
}

/// An item about to be handed out: where its payload is stored and how large it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upcoming<'a> {
    pub work_id: &'a WorkId,
    pub queue: &'a QueueName,
    /// Its `JETWORK_SUBMIT` sequence.
    pub seq: u64,
    pub size: u64,
}

impl<'a> Upcoming<'a> {
    /// `work_id`'s item, if in flight.
    pub fn of(state: &'a State, work_id: &WorkId) -> Option<Self> {
        let (work_id, work) = state.work.get_key_value(work_id)?;
        Some(Upcoming { work_id, queue: &work.queue, seq: work.seq, size: work.size })
    }
}

/// The next `limit` ready items to be handed out, in about the order they will be: those of
/// every queue that is not paused, each queue's in its hand-out order, the queues taken in turn
/// (as a grant takes them). Costs at most `limit` steps, however many items are ready, and no
/// lookup (a caller looks up, with [`Upcoming::of`], only the items it wants).
///
/// With [`falling_due`], what the leader keeps the payloads of at hand: a delayed item's
/// payload is not kept while it waits, and none is after a takeover, so without reading them
/// back ahead of time each hand-out of such items would wait on stream reads.
pub fn ready_next(state: &State, limit: usize) -> Vec<&WorkId> {
    let mut out = Vec::new();
    let mut lanes: Vec<_> = state
        .queues
        .values()
        .filter(|q| !q.paused && q.ready_count() > 0)
        .map(|q| q.ready_in_order())
        .collect();
    while out.len() < limit && !lanes.is_empty() {
        lanes.retain_mut(|lane| match lane.next() {
            Some(work_id) if out.len() < limit => {
                out.push(work_id);
                true
            }
            Some(_) => true,
            None => false,
        });
    }
    out
}

/// Where a walk through the waiting items stopped: the last one looked at.
pub type DueCursor = (Millis, WorkId);

/// Up to `limit` items waiting out a delay or a back-off that fall due by `until`, soonest
/// first, starting after `after` (the last one a previous call returned, so a caller can walk
/// the waiting items as time brings them within reach instead of looking at the same ones
/// again). Costs at most `limit` steps, however many items wait.
pub fn falling_due<'a>(
    state: &'a State,
    after: Option<&DueCursor>,
    until: Millis,
    limit: usize,
) -> Vec<(&'a DueCursor, Upcoming<'a>)> {
    use std::ops::Bound;
    let from = after.map_or(Bound::Unbounded, Bound::Excluded);
    state
        .waiting
        .range((from, Bound::Unbounded))
        .take_while(|(at, _)| *at <= until)
        .take(limit)
        .filter_map(|key| Some((key, Upcoming::of(state, &key.1)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ahead_fills_free_slots_and_prefetch_only() {
        assert_eq!(read_ahead(4, 256, 0, 0), 260);
        assert_eq!(read_ahead(4, 256, 10, 250), 0);
        assert_eq!(read_ahead(0, 256, 300, 0), 0);
        assert_eq!(read_ahead(64, 0, 10, 20), 34);
    }

    /// A state with, per queue, items `(seq, priority, due)` (due 0: ready at once).
    fn state_of(items: &[(&str, u64, u8, Millis)]) -> State {
        let mut state = State::default();
        for &(queue, seq, priority, due) in items {
            let options = jetwork_shared::job_options::JobOptions {
                not_before: due,
                priority,
                ..Default::default()
            };
            state.apply(&super::super::Event::WorkAccepted {
                work_id: WorkId::assigned(seq),
                queue: QueueName::parse(queue).unwrap(),
                seq,
                size: seq * 10,
                at: 1,
                prior_attempts: 0,
                options,
                jumped: false,
            });
        }
        state
    }

    fn ready_seqs(state: &State, limit: usize) -> Vec<u64> {
        let next = ready_next(state, limit);
        next.iter().map(|id| Upcoming::of(state, id).unwrap().seq).collect()
    }

    #[test]
    fn ready_next_follows_the_hand_out_order_taking_queues_in_turn() {
        let mut state = state_of(&[
            ("a", 1, 0, 0),
            ("a", 2, 0, 0),
            ("a", 3, 9, 0),
            ("b", 4, 0, 0),
            ("b", 5, 0, 0),
            ("c", 6, 0, 0),
            ("a", 7, 0, 500),
        ]);
        // Priority first within a queue; the queues in turn; nothing waiting.
        assert_eq!(ready_seqs(&state, 10), vec![3, 4, 6, 1, 5, 2]);
        assert_eq!(ready_seqs(&state, 4), vec![3, 4, 6, 1], "at most the limit");
        let b = QueueName::parse("b").unwrap();
        state.apply(&super::super::Event::QueuePaused { queue: b, at: 2 });
        assert_eq!(ready_seqs(&state, 10), vec![3, 6, 1, 2], "not a paused queue");
        let first = Upcoming::of(&state, ready_next(&state, 1)[0]).unwrap();
        assert_eq!((first.queue.as_str(), first.size), ("a", 30));
    }

    #[test]
    fn falling_due_walks_the_waiting_items_soonest_first_up_to_a_time() {
        let state = state_of(&[
            ("a", 1, 0, 300),
            ("a", 2, 0, 100),
            ("b", 3, 0, 200),
            ("a", 4, 0, 0),
            ("b", 5, 0, 10_000),
        ]);
        let walk = |after: Option<&DueCursor>, until, limit| {
            falling_due(&state, after, until, limit).iter().map(|(_, u)| u.seq).collect::<Vec<_>>()
        };
        assert_eq!(walk(None, 300, 10), vec![2, 3, 1], "not the ready one, none due later");
        assert_eq!(walk(None, 300, 2), vec![2, 3]);
        let due = falling_due(&state, None, 300, 2);
        let cursor = due.last().map(|(key, _)| (*key).clone());
        assert_eq!(walk(cursor.as_ref(), 300, 10), vec![1], "on from where it stopped");
        assert_eq!(walk(cursor.as_ref(), 20_000, 10), vec![1, 5]);
    }
}
