//! [`Slots`]: how a worker's `concurrency` slots are used, as the master counts them: an
//! attempt holds a slot from its grant until the master has its outcome. Each slot is counted
//! once: an outcome whose slot a report in flight is asking for again counts in `asked`, not
//! in `pending`.

/// How the slots are used, in [`super::Engine::slots`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slots {
    pub concurrency: u32,
    /// Granted, waiting for a free slot.
    pub backlog: u32,
    pub running: u32,
    /// Outcomes awaiting a verdict.
    pub pending: u32,
    /// Of those, outcomes whose slot a report in flight is asking for (counted there).
    pub carried: u32,
    /// Asked for by current requests and reports.
    pub asked: u32,
}

impl Slots {
    /// Slots in use: each counted once.
    pub fn used(&self) -> u32 {
        let pending = self.pending.saturating_sub(self.carried);
        self.backlog.saturating_add(self.running).saturating_add(pending).saturating_add(self.asked)
    }
}
