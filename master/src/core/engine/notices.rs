//! [`Notices`]: when each worker was last told that work is ready, indexed by worker and by
//! time, so the notices that no longer cover a worker's slots (older than `notify_interval`)
//! are found without looking at the others.
//!
//! Soft (not journaled: it only throttles notifications). Invariant: `by_time` holds exactly
//! one `(at, worker)` entry per worker notified.

use std::collections::{BTreeMap, BTreeSet};

use jetwork_shared::WorkerId;

use super::super::Millis;

/// The notices in force, one per worker at most.
#[derive(Debug, Clone, Default)]
pub(super) struct Notices {
    by_worker: BTreeMap<WorkerId, Millis>,
    by_time: BTreeSet<(Millis, WorkerId)>,
}

impl Notices {
    pub fn contains(&self, worker: &WorkerId) -> bool {
        self.by_worker.contains_key(worker)
    }

    /// `worker` was told at `at` (a notice it had before is replaced).
    pub fn insert(&mut self, worker: WorkerId, at: Millis) {
        if let Some(old) = self.by_worker.insert(worker.clone(), at) {
            self.by_time.remove(&(old, worker.clone()));
        }
        self.by_time.insert((at, worker));
    }

    /// Forgets `worker`'s notice; whether it had one.
    pub fn remove(&mut self, worker: &WorkerId) -> bool {
        match self.by_worker.remove(worker) {
            Some(at) => self.by_time.remove(&(at, worker.clone())),
            None => false,
        }
    }

    pub fn clear(&mut self) {
        self.by_worker.clear();
        self.by_time.clear();
    }

    /// The workers told `interval` or longer before `now`, oldest notice first.
    pub fn older(&self, now: Millis, interval: Millis) -> impl Iterator<Item = &WorkerId> {
        self.by_time
            .iter()
            .take_while(move |(at, _)| at.saturating_add(interval) <= now)
            .map(|(_, worker)| worker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(id: &str) -> WorkerId {
        WorkerId::parse(id).expect("a valid worker id")
    }

    #[test]
    fn the_index_by_time_follows_every_change() {
        let mut notices = Notices::default();
        notices.insert(worker("a"), 300);
        notices.insert(worker("b"), 100);
        notices.insert(worker("c"), 200);
        let older = |n: &Notices, now| n.older(now, 1_000).cloned().collect::<Vec<_>>();
        assert_eq!(older(&notices, 1_099), Vec::<WorkerId>::new());
        assert_eq!(older(&notices, 1_200), [worker("b"), worker("c")]);
        // Told again: the newer notice replaces the older one, and its time.
        notices.insert(worker("b"), 500);
        assert_eq!(older(&notices, 1_300), [worker("c"), worker("a")]);
        assert!(notices.remove(&worker("c")) && !notices.remove(&worker("c")));
        assert_eq!(older(&notices, u64::MAX), [worker("a"), worker("b")]);
        assert!(notices.contains(&worker("a")) && !notices.contains(&worker("c")));
        notices.clear();
        assert!(older(&notices, u64::MAX).is_empty() && !notices.contains(&worker("a")));
    }
}
