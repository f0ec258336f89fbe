//! [`Liveness`]: when this leader last heard from each worker (a registration, a heartbeat, a
//! request or a report), so that only a worker that stopped talking altogether is lost.
//!
//! Soft: never journaled. Hearing from a worker decides nothing; losing it does, and
//! `WorkerLost` is journaled. Journaling every heartbeat (one per worker per
//! `register_interval`: a thousand writes a second for 10,000 idle workers) bought only a
//! `last_seen` that no replay needs: the state's `Worker::last_seen` is a floor (the
//! registration, and every takeover's `EpochStarted`, which counts as hearing from every
//! worker), so a new leader gives each worker a full `worker_timeout` from its takeover before
//! it can lose it, exactly as before.
//!
//! Invariant: an entry is never older than the floor it raises, and a lost worker's entry
//! goes with it.

use jetwork_shared::fast_hash::FastMap;

use jetwork_shared::WorkerId;

use super::Millis;

/// The last time each worker was heard from under this leader.
#[derive(Debug, Clone, Default)]
pub struct Liveness {
    heard: FastMap<WorkerId, Millis>,
}

impl Liveness {
    /// `worker` was heard from at `at`.
    pub fn heard(&mut self, worker: &WorkerId, at: Millis) {
        match self.heard.get_mut(worker) {
            Some(last) => *last = (*last).max(at),
            None => {
                self.heard.insert(worker.clone(), at);
            }
        }
    }

    /// When `worker` was last heard from: its entry, or `floor` (what the state recorded) if
    /// that is later.
    pub fn last(&self, worker: &WorkerId, floor: Millis) -> Millis {
        self.heard.get(worker).map_or(floor, |heard| (*heard).max(floor))
    }

    /// `worker` is gone.
    pub fn forget(&mut self, worker: &WorkerId) {
        self.heard.remove(worker);
    }

    /// Forgets everything (a new term: `EpochStarted` is the new floor).
    pub fn clear(&mut self) {
        self.heard.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_time_heard_is_never_before_the_floor_and_goes_with_the_worker() {
        let mut liveness = Liveness::default();
        let w = WorkerId::parse("w").unwrap();
        assert_eq!(liveness.last(&w, 100), 100);
        liveness.heard(&w, 500);
        liveness.heard(&w, 300);
        assert_eq!(liveness.last(&w, 100), 500, "a late, older message does not go back");
        assert_eq!(liveness.last(&w, 900), 900, "a later floor (a takeover) wins");
        liveness.forget(&w);
        assert_eq!(liveness.last(&w, 100), 100);
    }
}
