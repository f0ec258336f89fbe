//! [`Credits`]: how many submissions of one queue the leader has asked a reader for, and how
//! many came. The reader takes a permit of the shared semaphore for each submission it passes
//! on, so it never reads more than the leader asked for.

use std::sync::Arc;

use tokio::sync::Semaphore;

/// The leader's side of a queue's credits.
#[derive(Debug)]
pub struct Credits {
    permits: Arc<Semaphore>,
    requested: u64,
    received: u64,
}

impl Default for Credits {
    fn default() -> Self {
        Credits { permits: Arc::new(Semaphore::new(0)), requested: 0, received: 0 }
    }
}

impl Credits {
    /// The reader's side: one permit per submission it may pass on.
    pub fn permits(&self) -> Arc<Semaphore> {
        self.permits.clone()
    }

    /// Credits granted and not yet used.
    pub fn outstanding(&self) -> u64 {
        self.requested.saturating_sub(self.received)
    }

    /// Asks for `n` more submissions.
    pub fn grant(&mut self, n: u64) {
        if n > 0 {
            self.requested += n;
            self.permits.add_permits(usize::try_from(n).unwrap_or(usize::MAX));
        }
    }

    /// Counts one submission delivered.
    pub fn delivered(&mut self) {
        self.received += 1;
    }
}
