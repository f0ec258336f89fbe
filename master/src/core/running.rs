//! [`RunningCounts`]: how many attempts run per queue, for the queues' concurrency limits.
//! Derived from the state (the items with a running attempt) and kept in step by the engine,
//! which compares an item before and after each event it emits, so that a limit is checked
//! in constant time however much is in flight. Soft: never journaled, rebuilt from the state
//! by [`RunningCounts::of`].
//!
//! Only queues with a concurrency limit are counted: keeping the count costs two clones per
//! event about an item, which a queue without a limit (the common case, and the one the
//! throughput benchmark measures) should not pay.
//!
//! Invariant (checked after every step in the tests): each limited queue's count is the number
//! of its items with a running attempt, and a queue with none, or without a limit, has no
//! entry.

use std::collections::{BTreeMap, BTreeSet};

use jetwork_shared::QueueName;

use super::{Policy, State};

/// Running attempts by queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunningCounts {
    by_queue: BTreeMap<QueueName, u64>,
    /// The queues with a concurrency limit (the only ones counted).
    limited: BTreeSet<QueueName>,
}

impl RunningCounts {
    /// The counts of `state` for the queues `policy` limits.
    pub fn of(state: &State, policy: &Policy) -> Self {
        let limited = policy
            .queues
            .iter()
            .filter(|(_, rules)| rules.concurrency.is_some())
            .map(|(queue, _)| queue.clone())
            .collect();
        let mut counts = RunningCounts { by_queue: BTreeMap::new(), limited };
        for work in state.work.values().filter(|w| w.running.is_some()) {
            counts.change(&work.queue, false, true);
        }
        counts
    }

    /// Whether any queue is counted (if none, events need not be looked at).
    pub fn any_limited(&self) -> bool {
        !self.limited.is_empty()
    }

    /// Whether `queue` is counted.
    pub fn counts(&self, queue: &QueueName) -> bool {
        self.limited.contains(queue)
    }

    /// An item of `queue` went from running (`was`) to running (`is`) or not.
    pub fn change(&mut self, queue: &QueueName, was: bool, is: bool) {
        if !self.counts(queue) {
            return;
        }
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
        let mut actual = RunningCounts { by_queue: BTreeMap::new(), limited: self.limited.clone() };
        for work in state.work.values().filter(|w| w.running.is_some()) {
            actual.change(&work.queue, false, true);
        }
        if *self != actual {
            return Err(format!("running counts {:?}, but the state has {:?}", self, actual));
        }
        Ok(())
    }
}
