//! [`WaitingCounts`]: how many items wait (out a delay or a back-off) per queue and in all, for
//! the limits on waiting work (`Policy::max_waiting_per_queue`, `max_waiting`). Derived from
//! the state (the items with `waiting_until` set) and kept in step by the engine as it emits
//! events, so a limit is checked in constant time however much waits. Soft: never journaled,
//! rebuilt from the state by [`WaitingCounts::of`].
//!
//! Invariant (checked after every step in the tests): each queue's count is the number of its
//! items waiting, the total is their sum, and a queue with none has no entry.

use std::collections::BTreeMap;

use jetwork_shared::{QueueName, WorkId};

use super::{Event, State};

/// The items an event may move into or out of waiting: each with its queue and whether it
/// waited before the event (see [`WaitingCounts::watch`]).
pub type Watched = Vec<(WorkId, QueueName, bool)>;

/// Waiting items by queue, and in all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WaitingCounts {
    by_queue: BTreeMap<QueueName, u64>,
    total: u64,
}

impl WaitingCounts {
    /// The counts of `state`.
    pub fn of(state: &State) -> Self {
        let mut counts = WaitingCounts::default();
        for work in state.work.values().filter(|w| w.waiting_until.is_some()) {
            counts.started(&work.queue);
        }
        counts
    }

    /// An item of `queue` began to wait.
    fn started(&mut self, queue: &QueueName) {
        *self.by_queue.entry(queue.clone()).or_default() += 1;
        self.total += 1;
    }

    /// An item of `queue` stopped waiting (it is due, or finished).
    fn ended(&mut self, queue: &QueueName) {
        if let Some(count) = self.by_queue.get_mut(queue) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.by_queue.remove(queue);
            }
            self.total = self.total.saturating_sub(1);
        }
    }

    /// Before `event` is applied to `state`: the items it may move into or out of waiting.
    /// Empty (no allocation) for the events of a plain job's life, which cost one lookup
    /// here when they finish an item.
    pub fn watch(state: &State, event: &Event) -> Watched {
        let item = |work_id: &WorkId| {
            let work = state.work.get(work_id)?;
            Some((work_id.clone(), work.queue.clone(), work.waiting_until.is_some()))
        };
        let waiting =
            |work_id: &WorkId| state.work.get(work_id).is_some_and(|w| w.waiting_until.is_some());
        match event {
            // An id in flight is not accepted again (its item stays as it is): only a new one.
            Event::WorkAccepted { work_id, queue, options, at, .. }
                if options.not_before > *at && !state.work.contains_key(work_id) =>
            {
                vec![(work_id.clone(), queue.clone(), false)]
            }
            Event::WorkRequeued { work_id, not_before, at, .. } if not_before > at => {
                item(work_id).into_iter().collect()
            }
            Event::WorkDue { work_ids } => work_ids.iter().filter_map(item).collect(),
            Event::WorkCompleted { work_id, .. }
            | Event::WorkFailed { work_id, .. }
            | Event::WorkCancelled { work_id, .. }
                if waiting(work_id) =>
            {
                item(work_id).into_iter().collect()
            }
            _ => Vec::new(),
        }
    }

    /// After the event [`watch`](Self::watch) looked at is applied to `state`: counts the
    /// items that began or stopped waiting.
    pub fn settle(&mut self, state: &State, watched: Watched) {
        for (work_id, queue, was) in watched {
            let is = state.work.get(&work_id).is_some_and(|w| w.waiting_until.is_some());
            match (was, is) {
                (false, true) => self.started(&queue),
                (true, false) => self.ended(&queue),
                _ => {}
            }
        }
    }

    /// Items of `queue` waiting now.
    pub fn get(&self, queue: &QueueName) -> u64 {
        self.by_queue.get(queue).copied().unwrap_or(0)
    }

    /// Items waiting now, in all.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Whether the counts are those of `state`.
    pub fn check(&self, state: &State) -> Result<(), String> {
        let actual = WaitingCounts::of(state);
        if *self != actual {
            return Err(format!("waiting counts {self:?}, but the state has {actual:?}"));
        }
        Ok(())
    }
}
