//! [`RecentFailures`]: the failures seen stored since the dashboard (or `status --watch`)
//! started, newest first, one entry per job.
//!
//! Invariants: at most [`RecentFailures::capacity`] entries; a job is listed once, by its newest
//! failure. A retried job may fail again, and an outcome may be read twice (the feed's
//! consumer made again after a loss starts after the last outcome it saw, but a master that
//! stored a job's outcome again after a takeover stores a second message): either way the row
//! is replaced, not repeated.

use std::collections::VecDeque;

use crate::results_feed::Failure;

/// The newest failures, one per job.
#[derive(Debug, Clone)]
pub struct RecentFailures {
    /// Oldest first.
    entries: VecDeque<Failure>,
    capacity: usize,
}

impl RecentFailures {
    /// Keeps at most `capacity` (at least one).
    pub fn new(capacity: usize) -> Self {
        RecentFailures { entries: VecDeque::new(), capacity: capacity.max(1) }
    }

    /// Most failures kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Records `failure`, replacing an earlier one of the same job.
    pub fn push(&mut self, failure: Failure) {
        self.entries.retain(|f| f.work_id != failure.work_id);
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(failure);
    }

    /// Newest first.
    pub fn newest_first(&self) -> impl Iterator<Item = &Failure> {
        self.entries.iter().rev()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(id: &str, attempt: &str) -> Failure {
        Failure {
            work_id: id.to_owned(),
            queue: "default".to_owned(),
            attempt: attempt.to_owned(),
            reason: "boom".to_owned(),
        }
    }

    #[test]
    fn a_job_is_listed_once_by_its_newest_failure_and_the_oldest_go() {
        let mut recent = RecentFailures::new(2);
        recent.push(failure("a", "1"));
        recent.push(failure("a", "1"));
        let listed: Vec<_> = recent.newest_first().map(|f| f.work_id.as_str()).collect();
        assert_eq!(listed, ["a"], "the same outcome seen twice is one row");
        recent.push(failure("b", "1"));
        recent.push(failure("a", "2"));
        let listed: Vec<_> =
            recent.newest_first().map(|f| (f.work_id.as_str(), f.attempt.as_str())).collect();
        assert_eq!(listed, [("a", "2"), ("b", "1")], "a retried job's new failure replaces it");
        recent.push(failure("c", "1"));
        let listed: Vec<_> = recent.newest_first().map(|f| f.work_id.as_str()).collect();
        assert_eq!(listed, ["c", "a"]);
        assert_eq!(recent.capacity(), 2);
    }
}
