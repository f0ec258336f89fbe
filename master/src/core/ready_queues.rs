//! [`ReadyQueues`]: the queues with ready items. Answering held requests (after every command)
//! and telling idle workers of work (after every batch) start from the queues that have
//! something to hand out, and a hand-out looks only at those of the worker's queues, instead
//! of at every queue the master knows: with 1,000 queues those walks were a third of the
//! leader's time (issue 24's queues phase).
//!
//! Derived, never journaled: built from the state by [`ReadyQueues::of`], then moved by the
//! engine around every event that can add or take a ready item (`Engine::emit`: the queues an
//! event names, or whose items it names, are [`watch`](ReadyQueues::watch)ed before it and
//! looked at again after it). Invariant (checked by `Engine::check_index` after every step in
//! the tests): a queue is listed exactly when it has ready items, paused or not (whether they
//! may be handed out now is the engine's question: `Engine::dispatchable`).

use std::collections::BTreeSet;

use jetwork_shared::QueueName;

use super::{Event, State};

/// The queues an event may add ready items to or take them from.
pub enum Watched {
    None,
    One(QueueName),
    Many(Vec<QueueName>),
}

/// The queues with ready items.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadyQueues {
    queues: BTreeSet<QueueName>,
}

impl ReadyQueues {
    /// The queues of `state` with ready items.
    pub fn of(state: &State) -> Self {
        let ready = state.queues.iter().filter(|(_, q)| q.has_ready());
        ReadyQueues { queues: ready.map(|(queue, _)| queue.clone()).collect() }
    }

    /// Before `event` is applied to `state`: the queues whose ready items it may change.
    pub fn watch(state: &State, event: &Event) -> Watched {
        let queue_of = |work_id| state.work.get(work_id).map(|w| w.queue.clone());
        let one = |queue: Option<QueueName>| queue.map_or(Watched::None, Watched::One);
        match event {
            Event::WorkAccepted { queue, .. }
            | Event::SubmissionPassed { queue, .. }
            | Event::SubmissionRejected { queue, .. }
            | Event::QueuePaused { queue, .. }
            | Event::QueueResumed { queue, .. }
            | Event::QueuePurged { queue, .. }
            | Event::QueueForgotten { queue, .. } => Watched::One(queue.clone()),
            Event::WorkStarted { work_id, .. }
            | Event::WorkRequeued { work_id, .. }
            | Event::WorkCancelled { work_id, .. }
            | Event::WorkCompleted { work_id, .. }
            | Event::WorkFailed { work_id, .. } => one(queue_of(work_id)),
            Event::WorkDue { work_ids } => {
                let mut queues: Vec<QueueName> = work_ids.iter().filter_map(queue_of).collect();
                queues.sort_unstable();
                queues.dedup();
                Watched::Many(queues)
            }
            _ => Watched::None,
        }
    }

    /// After the event: the watched queues listed again by what they hold now.
    pub fn settle(&mut self, state: &State, watched: Watched) {
        match watched {
            Watched::None => {}
            Watched::One(queue) => self.look_at(state, queue),
            Watched::Many(queues) => queues.into_iter().for_each(|q| self.look_at(state, q)),
        }
    }

    fn look_at(&mut self, state: &State, queue: QueueName) {
        match state.queues.get(&queue).is_some_and(|q| q.has_ready()) {
            true => {
                self.queues.insert(queue);
            }
            false => {
                self.queues.remove(&queue);
            }
        }
    }

    /// The queues with ready items, in name order.
    pub fn iter(&self) -> impl Iterator<Item = &QueueName> {
        self.queues.iter()
    }

    /// Whether `queue` has ready items.
    pub fn contains(&self, queue: &QueueName) -> bool {
        self.queues.contains(queue)
    }

    /// Whether the list is that of `state`.
    pub fn check(&self, state: &State) -> Result<(), String> {
        let counted = ReadyQueues::of(state);
        match counted == *self {
            true => Ok(()),
            false => Err(format!("ready queues {:?}, counted {:?}", self.queues, counted.queues)),
        }
    }
}
