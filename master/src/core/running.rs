//! [`RunningCounts`]: how many attempts run per queue, for the queues' concurrency limits.
//! Derived from the state (the items with a running attempt) and kept in step by the engine,
//! which compares an item before and after each event it emits, so that a limit is checked
//! in constant time however much is in flight. Soft: never journaled, rebuilt from the state
//! by [`RunningCounts::of`].
//!
//! Invariant (checked after every step in the tests): each queue's count is the number of its
//! items with a running attempt, and a queue with none has no entry.

use std::collections::BTreeMap;

use jetwork_shared::QueueName;

use super::State;

/// Running attempts by queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunningCounts {
    by_queue: BTreeMap<QueueName, u64>,
}

impl RunningCounts {
    /// The counts of `state`.
    pub fn of(state: &State) -> Self {
        let mut counts = RunningCounts::default();
        for work in state.work.values().filter(|w| w.running.is_some()) {
            counts.change(&work.queue, false, true);
        }
        counts
    }

    /// An item of `queue` went from running (`was`) to running (`is`) or not.
    pub fn change(&mut self, queue: &QueueName, was: bool, is: bool) {
        match (was, is) {
            (false, true) => *self.by_queue.entry(queue.clone()).or_default() += 1,
            (true, false) => {
                if let Some(count) = self.by_queue.get_mut(queue) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        self.by_queue.remove(queue);
                    }
                }
            }
            _ => {}
        }
    }

    /// Attempts of `queue` running now.
    pub fn get(&self, queue: &QueueName) -> u64 {
        self.by_queue.get(queue).copied().unwrap_or(0)
    }

    /// Whether the counts are those of `state`.
    pub fn check(&self, state: &State) -> Result<(), String> {
        let actual = RunningCounts::of(state);
        if *self != actual {
            return Err(format!("running counts {:?}, but the state has {:?}", self, actual));
        }
        Ok(())
    }
}
