//! [`LogLimit`]: at most one log line per interval for a kind of event anyone can cause (bad
//! requests, forged announcements), with the count of lines left out since the last one, so a
//! flood of garbage cannot flood the logs or slow the process down writing them.

use std::time::{Duration, Instant};

/// Allows one line per `every`.
#[derive(Debug, Clone)]
pub struct LogLimit {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimit {
    /// A limit of one line per `every`.
    pub fn new(every: Duration) -> Self {
        LogLimit { every, last: None, suppressed: 0 }
    }

    /// `Some(lines left out since the last one)` if a line may be logged now.
    pub fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + self.every) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

impl Default for LogLimit {
    /// One line per second.
    fn default() -> Self {
        LogLimit::new(Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_a_count_of_the_rest() {
        let mut limit = LogLimit::new(Duration::from_secs(3600));
        assert_eq!(limit.allow(), Some(0));
        assert_eq!(limit.allow(), None);
        assert_eq!(limit.allow(), None);
        limit.last = Some(Instant::now() - Duration::from_secs(3601));
        assert_eq!(limit.allow(), Some(2));
    }
}
