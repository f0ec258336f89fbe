//! [`Confirmations`]: the bookkeeping shared by the leader's writers to other streams (result
//! publications, schedule ticks): which keys the server confirmed (to journal with the next
//! write) and which failed and are tried again a little later.
//!
//! Invariant: a key is in at most one of the two lists at a time, and leaves `retry` only
//! through [`Confirmations::due`], which turns it back into the effect that writes it, so a
//! retry runs behind the journal like the first attempt.

use std::time::Duration;

use std::time::Instant;

/// How long a failed write waits before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Confirmed keys, and failed ones waiting to be tried again.
pub struct Confirmations<K> {
    confirmed: Vec<K>,
    retry: Vec<(Instant, K)>,
}

impl<K> Default for Confirmations<K> {
    fn default() -> Self {
        Confirmations { confirmed: Vec::new(), retry: Vec::new() }
    }
}

impl<K> Confirmations<K> {
    /// The server stored `key`.
    pub fn confirm(&mut self, key: K) {
        self.confirmed.push(key);
    }

    /// Writing `key` failed: try again after [`RETRY_AFTER`].
    pub fn retry_later(&mut self, key: K) {
        self.retry.push((Instant::now() + RETRY_AFTER, key));
    }

    /// Keys confirmed and not yet taken.
    pub fn confirmed(&self) -> usize {
        self.confirmed.len()
    }

    /// The confirmed keys to journal, if any.
    pub fn take_confirmed(&mut self) -> Option<Vec<K>> {
        (!self.confirmed.is_empty()).then(|| std::mem::take(&mut self.confirmed))
    }

    /// The keys due to be tried again.
    pub fn due(&mut self) -> Vec<K> {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.retry).into_iter().partition(|(at, _)| *at <= now);
        self.retry = later;
        due.into_iter().map(|(_, key)| key).collect()
    }
}
