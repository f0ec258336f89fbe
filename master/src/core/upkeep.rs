//! Housekeeping decisions the leader takes from the state, kept pure here so they are tested
//! like every other decision (golden scripts `upkeep`): how far each queue's submissions may
//! be purged, and how many more submissions each queue's reader may pull.
//!
//! The purge floor is safety-critical. A submission must stay in `JETWORK_SUBMIT` until its
//! work is finished and its outcome stored (its payload is read back after a takeover, and a
//! rejection's payload goes out with the notice), and everything at or above the cursor is
//! unread. So the floor of a queue is the lowest of its cursor + 1, the sequence of any item
//! of it still in flight, and the sequence of any outcome of it not yet confirmed published.
//! The dedup horizon (kept by the runtime, on the server's clock) only lowers it further.

use std::collections::BTreeMap;

use jetwork_shared::QueueName;

use super::{Publication, State};

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
}
