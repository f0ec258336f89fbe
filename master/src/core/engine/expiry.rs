//! Expiry (`Jetwork-Expires`): an item that has not started by its time never does. It ends
//! `cancelled` with a reason saying it expired, like Celery's expired tasks.
//!
//! Checked on every tick (the index is ordered by time, so only the due prefix is looked at)
//! and again at each hand-out, so an item is never started after its time even between ticks.
//! An attempt already running when the time passes runs on (it started in time); if it ends
//! without a result, the item is not started again, and expires on the next tick.

use jetwork_shared::job_options::format_time;
use jetwork_shared::WorkId;

use super::super::{Event, Millis};
use super::Engine;

/// How the reason of a cancellation by expiry starts (the runtime logs those as expired).
pub const EXPIRED: &str = "expired:";

impl Engine {
    /// Ends every item past its start-by time that is not running.
    pub(super) fn expire_due(&mut self, now: Millis) {
        let due: Vec<(Millis, WorkId)> = self
            .state
            .expiring
            .iter()
            .take_while(|(at, _)| *at <= now)
            .filter(|(_, id)| self.state.work.get(id).is_some_and(|w| w.running.is_none()))
            .cloned()
            .collect();
        for (at, work_id) in due {
            self.expire(&work_id, at, now);
        }
    }

    /// Ends `work_id`, which had to start by `at`.
    pub(super) fn expire(&mut self, work_id: &WorkId, at: Millis, now: Millis) {
        let reason = format!("{EXPIRED} not started by {}", format_time(at));
        self.emit(Event::WorkCancelled { work_id: work_id.clone(), reason, at: now });
    }
}
