//! [`Schedule`]: a recurring schedule as the state holds it, and [`FiredTick`], a tick that was
//! fired (journaled) but whose submission to `JETWORK_SUBMIT` is not yet confirmed stored.
//!
//! Invariants:
//! - a schedule's `next` is the first tick after the latest one fired (or after the time it
//!   was added): every tick before `next` was either fired once or counted in `missed`;
//! - a tick is in `State::unsubmitted` from its `ScheduleFired` until its `TicksSubmitted`, or
//!   until its submission is read back and accepted (`WorkAccepted` under its id), whichever
//!   comes first; while it is there, every leader (re-)submits it under its derived work id,
//!   which makes the re-submission a duplicate JetStream drops (see "Recurring schedules" in
//!   `docs/architecture.md`).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use jetwork_shared::schedules::{ScheduleInfo, ScheduleName};
use jetwork_shared::QueueName;

use super::{Cadence, Millis};

/// A recurring schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub queue: QueueName,
    pub cadence: Cadence,
    /// Submitted as the body of every tick.
    pub payload: Bytes,
    pub added: Millis,
    /// When the next tick is due.
    pub next: Millis,
    /// Ticks fired so far.
    pub fired: u64,
    /// Ticks passed over (fell due while no master led; only the latest of a run is fired).
    pub missed: u64,
    /// The scheduled time of the latest tick fired.
    pub last: Option<Millis>,
}

/// A fired tick waiting for its submission to be confirmed stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FiredTick {
    pub schedule: ScheduleName,
    pub queue: QueueName,
    pub payload: Bytes,
    /// The tick's scheduled time (which its work id encodes).
    pub scheduled: Millis,
}

impl Schedule {
    /// How `jetwork.master.schedules` lists it.
    pub fn info(&self, name: &ScheduleName) -> ScheduleInfo {
        let (every, cron) = self.cadence.describe();
        ScheduleInfo {
            name: name.clone(),
            queue: self.queue.clone(),
            every,
            cron,
            next_ms: self.next,
            last_ms: self.last,
            fired: self.fired,
            missed: self.missed,
            payload_bytes: self.payload.len() as u64,
            added_ms: self.added,
        }
    }
}
