//! Forgetting idle queues: a queue the state knows (its cursor, counters, pause and purge
//! marks) that nobody serves and that holds nothing in flight is dropped from the state
//! (`QueueForgotten`), so a stream of made-up queue names served once each cannot grow the
//! state, its snapshots and `status` for ever.
//!
//! What is forgotten is only what can be rebuilt: a later reader of the queue starts from the
//! beginning of the submit stream, and must find nothing there it has read before. So a queue
//! is forgotten only when the runtime has seen that the stream holds none of its submissions
//! at or below the cursor (finished submissions are purged once the dedup horizon has
//! passed); every other condition is the engine's own, checked again when the observation
//! comes back, since a submission may have been read meanwhile (it would be at or below the
//! cursor, and the check refuses).
//!
//! Invariant: a forgotten queue had no ready, running, waiting, unpublished or pending
//! master-submitted items, was not paused, had no purge cut-off beyond its cursor, no
//! submissions taken out of turn, and no worker serving it.

use std::collections::BTreeSet;

use jetwork_shared::QueueName;

use super::super::{Event, Millis, Publication};
use super::Engine;

/// Most queues looked at per round (each costs the runtime one read of the stream).
pub const MAX_FORGET_PER_ROUND: usize = 64;

impl Engine {
    /// Queues that could be forgotten if the stream holds none of their submissions at or
    /// below their cursor: at most `MAX_FORGET_PER_ROUND` (64), with their cursors.
    pub fn forgettable_queues(&self) -> Vec<(QueueName, u64)> {
        // The queues' own records first: only if some queue is idle are the items looked at
        // (a scan of everything in flight, once per purge round at most).
        let mut idle = self.state.queues.iter().filter(|(queue, _)| self.idle(queue)).peekable();
        if idle.peek().is_none() {
            return Vec::new();
        }
        let busy = self.queues_with_items();
        idle.filter(|(queue, _)| !busy.contains(*queue))
            .take(MAX_FORGET_PER_ROUND)
            .map(|(queue, q)| (queue.clone(), q.cursor))
            .collect()
    }

    /// What the runtime found: the first submission of each queue still stored (`None`:
    /// none). Each queue still idle whose stored submissions all lie beyond its cursor is
    /// forgotten.
    pub(super) fn forget_queues(
        &mut self,
        first_stored: Vec<(QueueName, Option<u64>)>,
        now: Millis,
    ) {
        let busy = self.queues_with_items();
        for (queue, first) in first_stored {
            let Some(q) = self.state.queues.get(&queue) else { continue };
            let unread_only = first.is_none_or(|seq| seq > q.cursor);
            if unread_only && !busy.contains(&queue) && self.idle(&queue) {
                self.emit(Event::QueueForgotten { queue, at: now });
            }
        }
    }

    /// Whether `queue`'s own record holds nothing that forgetting would lose (its items are
    /// checked by [`Engine::queues_with_items`]).
    fn idle(&self, queue: &QueueName) -> bool {
        let Some(q) = self.state.queues.get(queue) else { return false };
        self.serving.workers(queue).next().is_none()
            && !q.paused
            && q.ready.is_empty()
            && q.prioritized.is_empty()
            && q.jumped.is_empty()
            && q.jumped_ids.is_empty()
            && q.purged_through <= q.cursor
    }

    /// Queues with an item in flight, an unpublished outcome or a master submission pending.
    fn queues_with_items(&self) -> BTreeSet<QueueName> {
        let state = &self.state;
        let publications = state.unpublished.values().map(|publication| match publication {
            Publication::Completed { queue, .. }
            | Publication::Failed { queue, .. }
            | Publication::Cancelled { queue, .. }
            | Publication::Rejected { queue, .. } => queue,
        });
        state
            .work
            .values()
            .map(|work| &work.queue)
            .chain(publications)
            .chain(state.unsubmitted.values().map(|tick| &tick.queue))
            .chain(state.retries.values().map(|retry| &retry.queue))
            .cloned()
            .collect()
    }
}
