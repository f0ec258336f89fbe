//! [`AvailableWorkers`]: by queue, the workers with free slots that hold a request open
//! (`held`), and those that hold none and were not told of work recently (`idle`, with their
//! free slots), each in worker id order. With them, handing ready work to held requests and
//! telling idle workers about it costs what is handed out or told, not a walk over every
//! worker serving the queue: with 10,000 registered workers and more work ready than they
//! could take, that walk after every batch of commands was most of the leader's time (issue
//! 24's workers phase).
//!
//! Derived, never journaled: built from the state, the held requests, the notices and the
//! grant windows (`Engine::count_available`), then moved by the engine after changes to any
//! of them, as the free-slot counts are: in place ([`AvailableWorkers::change`], once per step
//! for each worker that changed, from what the lists held for it before its first change to
//! what it has now: `Engine::slots_changing`, `Engine::settle_slots`), or out and back in
//! whole for a registration or a loss, whose queues change too. The engine settles them before
//! it reads them; in between, within a step, they may be behind. Invariant (checked by
//! `Engine::check_index` after every step in the tests): a worker is listed under each queue
//! it serves exactly when it has free slots and does not stand [`Availability::Notified`], as
//! held or idle by what it stands; an idle entry holds the worker's free slots, and each
//! queue's idle sum is theirs. A queue's entry stays, empty, until nobody serves it.

use std::collections::{BTreeMap, BTreeSet};

use jetwork_shared::fast_hash::FastMap;
use jetwork_shared::{QueueName, WorkerId};

/// Where a worker stands as far as handing it work goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// It holds a request for work open: ready work is handed to it directly.
    Held,
    /// It was told that work is ready, not long ago: its slots count as covered.
    Notified,
    /// Neither: it is told when work it could take is ready.
    Idle,
}

/// One queue's available workers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Listed {
    held: BTreeSet<WorkerId>,
    idle: BTreeMap<WorkerId, u32>,
    idle_free: u64,
}

impl Listed {
    fn is_empty(&self) -> bool {
        self.held.is_empty() && self.idle.is_empty()
    }
}

/// Available workers by queue served.
#[derive(Debug, Clone, Default)]
pub struct AvailableWorkers {
    by_queue: FastMap<QueueName, Listed>,
}

/// A worker's free slots and where it stands.
pub type Slots = (u32, Availability);

/// Whether a worker with these slots is listed at all.
fn listed((free, standing): Slots) -> bool {
    free > 0 && standing != Availability::Notified
}

impl AvailableWorkers {
    /// `worker`, serving `queues`, now has `slots`.
    pub fn add(&mut self, worker: &WorkerId, queues: &[QueueName], slots: Slots) {
        let (free, standing) = slots;
        if !listed(slots) {
            return;
        }
        for queue in queues {
            let listed = match self.by_queue.get_mut(queue) {
                Some(listed) => listed,
                None => self.by_queue.entry(queue.clone()).or_default(),
            };
            if standing == Availability::Held {
                listed.held.insert(worker.clone());
            } else if listed.idle.insert(worker.clone(), free).is_none() {
                listed.idle_free += u64::from(free);
            }
        }
    }

    /// Takes back what [`add`](Self::add) listed with the same arguments.
    pub fn remove(&mut self, worker: &WorkerId, queues: &[QueueName], slots: Slots) {
        let standing = slots.1;
        if !listed(slots) {
            return;
        }
        for queue in queues {
            let Some(listed) = self.by_queue.get_mut(queue) else { continue };
            if standing == Availability::Held {
                listed.held.remove(worker);
            } else if let Some(free) = listed.idle.remove(worker) {
                listed.idle_free = listed.idle_free.saturating_sub(u64::from(free));
            }
            // The entry stays, empty, until nobody serves the queue (`forget`): a lone idle
            // worker leaves and joins the lists as its slots fill up and free again, and
            // dropping and making the entry each time cost more than the rest of the
            // bookkeeping.
        }
    }

    /// `worker`, serving `queues`, had `before` (free slots, standing) and has `after`: the
    /// same as [`remove`](Self::remove) then [`add`](Self::add), in place where it stays
    /// listed as it was.
    pub fn change(&mut self, worker: &WorkerId, queues: &[QueueName], before: Slots, after: Slots) {
        let stays = before.0 > 0 && after.0 > 0 && before.1 == after.1;
        match before.1 {
            _ if !stays => {
                self.remove(worker, queues, before);
                self.add(worker, queues, after);
            }
            Availability::Idle => {
                for queue in queues {
                    let Some(listed) = self.by_queue.get_mut(queue) else { continue };
                    if let Some(free) = listed.idle.get_mut(worker) {
                        listed.idle_free = (listed.idle_free + u64::from(after.0))
                            .saturating_sub(u64::from(*free));
                        *free = after.0;
                    }
                }
            }
            // Listed (held) or not (notified) regardless of how many slots are free.
            Availability::Held | Availability::Notified => {}
        }
    }

    /// Forgets `queue`, which nobody serves any more (nobody is listed under it).
    pub fn forget(&mut self, queue: &QueueName) {
        self.by_queue.remove(queue);
    }

    /// Whether both list the same workers (a queue with nobody listed is the same as one
    /// without an entry).
    pub fn same_as(&self, other: &AvailableWorkers) -> bool {
        let covers = |a: &AvailableWorkers, b: &AvailableWorkers| {
            a.by_queue.iter().all(|(queue, listed)| match b.by_queue.get(queue) {
                Some(theirs) => listed == theirs,
                None => listed.is_empty(),
            })
        };
        covers(self, other) && covers(other, self)
    }

    /// The first worker (by id) serving `queue` with free slots and a request held open.
    pub fn first_held(&self, queue: &QueueName) -> Option<&WorkerId> {
        self.by_queue.get(queue).and_then(|listed| listed.held.first())
    }

    /// The idle workers serving `queue`, by id, each with its free slots.
    pub fn idle(&self, queue: &QueueName) -> impl Iterator<Item = (&WorkerId, u32)> {
        self.by_queue
            .get(queue)
            .into_iter()
            .flat_map(|listed| listed.idle.iter())
            .map(|(w, f)| (w, *f))
    }

    /// The free slots of the idle workers serving `queue`.
    pub fn idle_free(&self, queue: &QueueName) -> u64 {
        self.by_queue.get(queue).map_or(0, |listed| listed.idle_free)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(id: &str) -> WorkerId {
        WorkerId::parse(id).expect("a valid worker id")
    }

    fn queue(name: &str) -> QueueName {
        QueueName::parse(name).expect("a valid queue name")
    }

    #[test]
    fn lists_follow_what_workers_gain_lose_and_stand() {
        let (a, b) = (queue("a"), queue("b"));
        let both = [a.clone(), b.clone()];
        let mut available = AvailableWorkers::default();
        available.add(&worker("w2"), &both, (3, Availability::Idle));
        available.add(&worker("w1"), std::slice::from_ref(&a), (2, Availability::Idle));
        available.add(&worker("w3"), &both, (4, Availability::Held));
        available.add(&worker("w4"), &both, (4, Availability::Notified));
        available.add(&worker("w5"), &both, (0, Availability::Held));
        let idle = |q: &QueueName, available: &AvailableWorkers| {
            available.idle(q).map(|(w, f)| (w.to_string(), f)).collect::<Vec<_>>()
        };
        assert_eq!(idle(&a, &available), [("w1".to_string(), 2), ("w2".to_string(), 3)]);
        assert_eq!((available.idle_free(&a), available.idle_free(&b)), (5, 3));
        assert_eq!(available.first_held(&b), Some(&worker("w3")));
        available.change(&worker("w2"), &both, (3, Availability::Idle), (1, Availability::Idle));
        assert_eq!((available.idle_free(&a), available.idle_free(&b)), (3, 1));
        available.change(&worker("w2"), &both, (1, Availability::Idle), (0, Availability::Idle));
        assert_eq!((available.idle_free(&a), available.idle_free(&b)), (2, 0));
        available.change(&worker("w2"), &both, (0, Availability::Idle), (3, Availability::Idle));
        available.change(&worker("w3"), &both, (4, Availability::Held), (2, Availability::Held));
        assert_eq!(available.first_held(&a), Some(&worker("w3")));
        available.change(&worker("w3"), &both, (2, Availability::Held), (2, Availability::Idle));
        assert_eq!((available.first_held(&a), available.idle_free(&a)), (None, 7));
        available.change(&worker("w3"), &both, (2, Availability::Idle), (4, Availability::Held));
        available.remove(&worker("w3"), &both, (4, Availability::Held));
        available.remove(&worker("w2"), &both, (3, Availability::Idle));
        assert_eq!(available.first_held(&a), None);
        assert_eq!((available.idle_free(&a), available.idle_free(&b)), (2, 0));
        available.remove(&worker("w1"), std::slice::from_ref(&a), (2, Availability::Idle));
        assert!(available.same_as(&AvailableWorkers::default()), "nobody listed is no entry");
        available.add(&worker("w1"), std::slice::from_ref(&a), (1, Availability::Held));
        assert!(!available.same_as(&AvailableWorkers::default()));
        available.forget(&a);
        available.forget(&b);
        assert!(available.by_queue.is_empty());
    }
}
