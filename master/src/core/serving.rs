//! [`Serving`]: which registered workers serve each queue. Derived from the state (each
//! worker's queue list) and kept in step by the engine as it emits registrations and losses,
//! so that with thousands of workers nothing has to scan all of them to find who serves a
//! queue. Soft: never journaled, rebuilt from the state by [`Serving::of`].
//!
//! Invariant (checked after every step in the tests): a queue is a key exactly while at least
//! one registered worker lists it, and its set holds exactly those workers.

use std::collections::{BTreeMap, BTreeSet};

use jetwork_shared::{QueueName, WorkerId};

use super::State;

/// Workers by the queues they serve.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Serving {
    by_queue: BTreeMap<QueueName, BTreeSet<WorkerId>>,
}

impl Serving {
    /// The index of `state`'s workers.
    pub fn of(state: &State) -> Self {
        let mut serving = Serving::default();
        for (id, worker) in &state.workers {
            serving.add(id, &worker.queues);
        }
        serving
    }

    /// Records that `worker` serves `queues`.
    pub fn add(&mut self, worker: &WorkerId, queues: &[QueueName]) {
        for queue in queues {
            self.by_queue.entry(queue.clone()).or_default().insert(worker.clone());
        }
    }

    /// Records that `worker` no longer serves `queues`; a queue nobody serves any more goes.
    pub fn remove(&mut self, worker: &WorkerId, queues: &[QueueName]) {
        for queue in queues {
            if let Some(serving) = self.by_queue.get_mut(queue) {
                serving.remove(worker);
                if serving.is_empty() {
                    self.by_queue.remove(queue);
                }
            }
        }
    }

    /// How many queues some worker serves.
    pub fn len(&self) -> usize {
        self.by_queue.len()
    }

    /// Whether no worker serves any queue.
    pub fn is_empty(&self) -> bool {
        self.by_queue.is_empty()
    }

    /// The queues some worker serves, in name order.
    pub fn queues(&self) -> impl Iterator<Item = &QueueName> {
        self.by_queue.keys()
    }

    /// The workers serving `queue`.
    pub fn workers(&self, queue: &QueueName) -> impl Iterator<Item = &WorkerId> {
        self.by_queue.get(queue).into_iter().flatten()
    }

    /// How many workers serve `queue`.
    pub fn count(&self, queue: &QueueName) -> usize {
        self.by_queue.get(queue).map_or(0, BTreeSet::len)
    }

    /// How many distinct queues would be served if `worker` served `queues` from now on (the
    /// ones only it serves today are given up).
    pub fn served_after(&self, worker: &WorkerId, queues: &[QueueName]) -> usize {
        let only_this_one =
            |serving: &BTreeSet<WorkerId>| serving.len() == 1 && serving.contains(worker);
        let kept = self.by_queue.values().filter(|serving| !only_this_one(serving)).count();
        let added =
            queues.iter().filter(|q| self.by_queue.get(*q).is_none_or(&only_this_one)).count();
        kept + added
    }

    /// Checks the index against `state` (the tests call it after every step).
    pub fn check(&self, state: &State) -> Result<(), String> {
        let derived = Serving::of(state);
        if derived != *self {
            return Err(format!("serving index {self:?} != derived {derived:?}"));
        }
        Ok(())
    }
}
