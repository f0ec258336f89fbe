//! [`GrantWindows`]: how many attempts each worker may hold at once as far as its track record
//! goes, so a worker that declares a large capacity and works through nothing holds little.
//! A worker's window starts at `Policy::initial_window` (or at what it already holds, after a
//! takeover), grows by one with each outcome of its that is accepted (additive growth per
//! outcome doubles it every round of work, as TCP's slow start does) and halves, to at least
//! one, when one of its attempts misses its deadline. What a worker holds is bounded by
//! `min(window, declared capacity, the login's max_slots)`.
//!
//! Soft: never journaled (every hand-out is, in `WorkStarted`, so replay does not need the
//! windows). A new leader starts every worker afresh, at least at what it holds.
//!
//! Invariant: a window is at least 1 and only workers that were granted, reported or missed
//! a deadline under this leader have an entry; a lost worker's entry goes with it.

use jetwork_shared::fast_hash::FastMap;

use jetwork_shared::WorkerId;

/// Windows by worker.
#[derive(Debug, Clone, Default)]
pub struct GrantWindows {
    by_worker: FastMap<WorkerId, u32>,
}

impl GrantWindows {
    /// The window of `worker`, which holds `held` attempts now; `initial` if it has none yet.
    pub fn get(&self, worker: &WorkerId, held: u32, initial: u32) -> u32 {
        self.by_worker.get(worker).copied().unwrap_or_else(|| initial.max(held)).max(1)
    }

    /// An outcome of `worker`'s was accepted: one more, up to `ceiling` (beyond what it may
    /// hold anyway, growing would only make a later halving meaningless).
    pub fn grow(&mut self, worker: &WorkerId, held: u32, initial: u32, ceiling: u32) {
        let window = self.get(worker, held, initial);
        self.by_worker.insert(worker.clone(), window.saturating_add(1).min(ceiling.max(1)));
    }

    /// One of `worker`'s attempts missed its deadline: half as many, at least one.
    pub fn shrink(&mut self, worker: &WorkerId, held: u32, initial: u32) {
        let window = self.get(worker, held, initial);
        self.by_worker.insert(worker.clone(), (window / 2).max(1));
    }

    /// `worker` is gone.
    pub fn forget(&mut self, worker: &WorkerId) {
        self.by_worker.remove(worker);
    }

    /// Forgets every window (a new term).
    pub fn clear(&mut self) {
        self.by_worker.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_starts_small_grows_per_outcome_and_halves_on_a_missed_deadline() {
        let mut windows = GrantWindows::default();
        let w = WorkerId::parse("w").unwrap();
        assert_eq!(windows.get(&w, 0, 4), 4);
        assert_eq!(windows.get(&w, 9, 4), 9, "after a takeover: at least what it holds");
        for _ in 0..10 {
            windows.grow(&w, 0, 4, 8);
        }
        assert_eq!(windows.get(&w, 0, 4), 8, "never beyond the ceiling");
        windows.shrink(&w, 0, 4);
        assert_eq!(windows.get(&w, 0, 4), 4);
        for _ in 0..5 {
            windows.shrink(&w, 0, 4);
        }
        assert_eq!(windows.get(&w, 0, 4), 1, "at least one");
        windows.forget(&w);
        assert_eq!(windows.get(&w, 0, 4), 4);
    }
}
