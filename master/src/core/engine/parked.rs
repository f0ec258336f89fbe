//! [`ParkedRequests`]: requests for work held open (long polls) until work arrives for them or
//! their wait ends, indexed by worker and by the time their wait ends.
//!
//! Invariant: `by_until` holds exactly one `(until, worker)` entry per held request, so the
//! requests whose wait is over are found without looking at the others. With thousands of idle
//! workers each holding a request, the engine looks at these after every command: a scan of
//! them all there made every command cost as much as the idle fleet (issue 24's workers
//! phase: 10,000 long-polling workers left requests unanswered for seconds).

use std::collections::{BTreeMap, BTreeSet};

use jetwork_shared::WorkerId;

use super::super::{Millis, RequestId};

/// A request for work held open.
#[derive(Debug, Clone, Copy)]
pub(super) struct Parked {
    pub request: RequestId,
    pub slots: u32,
    pub until: Millis,
}

/// The held requests, one per worker at most.
#[derive(Debug, Clone, Default)]
pub(super) struct ParkedRequests {
    by_worker: BTreeMap<WorkerId, Parked>,
    by_until: BTreeSet<(Millis, WorkerId)>,
}

impl ParkedRequests {
    pub fn is_empty(&self) -> bool {
        self.by_worker.is_empty()
    }

    pub fn contains(&self, worker: &WorkerId) -> bool {
        self.by_worker.contains_key(worker)
    }

    /// Holds `parked` for `worker`; the request it held before, if any, is returned (the
    /// caller answers it).
    pub fn insert(&mut self, worker: WorkerId, parked: Parked) -> Option<Parked> {
        self.by_until.insert((parked.until, worker.clone()));
        let old = self.by_worker.insert(worker.clone(), parked);
        if let Some(old) = &old {
            if old.until != parked.until {
                self.by_until.remove(&(old.until, worker));
            }
        }
        old
    }

    pub fn remove(&mut self, worker: &WorkerId) -> Option<Parked> {
        let parked = self.by_worker.remove(worker)?;
        self.by_until.remove(&(parked.until, worker.clone()));
        Some(parked)
    }

    pub fn clear(&mut self) {
        self.by_worker.clear();
        self.by_until.clear();
    }

    /// The workers whose wait is over at `now`.
    pub fn due(&self, now: Millis) -> impl Iterator<Item = &WorkerId> {
        self.by_until.iter().take_while(move |(until, _)| *until <= now).map(|(_, w)| w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(id: &str) -> WorkerId {
        WorkerId::parse(id).expect("a valid worker id")
    }

    fn parked(request: RequestId, until: Millis) -> Parked {
        Parked { request, slots: 1, until }
    }

    #[test]
    fn the_index_by_time_follows_every_change() {
        let mut held = ParkedRequests::default();
        held.insert(worker("a"), parked(1, 300));
        held.insert(worker("b"), parked(2, 100));
        held.insert(worker("c"), parked(3, 200));
        let due = |held: &ParkedRequests, now| held.due(now).cloned().collect::<Vec<_>>();
        assert_eq!(due(&held, 99), Vec::<WorkerId>::new());
        assert_eq!(due(&held, 200), vec![worker("b"), worker("c")]);
        // A newer request of the same worker replaces the old one, and its time.
        let old = held.insert(worker("b"), parked(4, 500));
        assert_eq!(old.map(|p| p.request), Some(2));
        assert_eq!(due(&held, 300), vec![worker("c"), worker("a")]);
        assert_eq!(held.remove(&worker("c")).map(|p| p.request), Some(3));
        assert_eq!(due(&held, 1_000), vec![worker("a"), worker("b")]);
        assert!(held.contains(&worker("a")) && !held.contains(&worker("c")));
        held.clear();
        assert!(held.is_empty() && due(&held, u64::MAX).is_empty());
    }
}
