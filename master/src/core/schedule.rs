//! [`Schedule`]: a recurring schedule as the state holds it, and [`FiredTick`], a tick that was
//! fired (journaled) and whose submission to `JETWORK_SUBMIT` has not been read back yet.
//!
//! Invariants:
//! - a schedule's `next` is the first tick after the latest one fired (or after the time it
//!   was added): every tick before `next` was either fired once or counted in `missed`;
//! - a tick is in `State::unsubmitted` from its `ScheduleFired` until its submission is read
//!   back from the stream (accepted or rejected), or, in journals older than format 5, until
//!   its `TicksSubmitted`. Until it is `stored`, every leader (re-)submits it under its key,
//!   which makes a re-submission a duplicate JetStream drops; reading it back consumes the
//!   entry, so a copy stored again after the dedup horizon finds none and is refused (see
//!   "Recurring schedules" in `docs/architecture.md`).

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

/// A fired tick waiting for its submission to be read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FiredTick {
    pub schedule: ScheduleName,
    pub queue: QueueName,
    /// Submitted as its body (emptied once it is stored: never needed again).
    pub payload: Bytes,
    /// The tick's scheduled time (which its work id encodes).
    pub scheduled: Millis,
    /// Its submission's `Nats-Msg-Id`: drawn by the engine, so nobody can guess it and make
    /// JetStream drop the tick as a duplicate of their own message. Empty in journals older
    /// than format 5: the work id then.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// Confirmed stored in `JETWORK_SUBMIT`: not submitted again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stored: bool,
}

/// What a tick costs the stores beyond its payload: the submission's headers and the stream's
/// framing, its `ScheduleFired` in the journal, its outcome in `JETWORK_RESULTS`.
pub const TICK_OVERHEAD: u64 = 512;

/// The most bytes per second a schedule of `cadence` with a payload of `payload` bytes
/// submits: a tick's cost over the shortest gap between its ticks (seen from `now`). `0` if
/// it does not tick twice.
pub fn peak_bytes_per_second(cadence: &Cadence, payload: u64, now: Millis) -> u64 {
    match cadence.shortest_gap(now) {
        Some(gap) => (payload + TICK_OVERHEAD).saturating_mul(1_000) / gap.max(1),
        None => 0,
    }
}

impl Schedule {
    /// The peak bytes per second of this schedule (see the free function of that name).
    pub fn peak_bytes_per_second(&self, now: Millis) -> u64 {
        peak_bytes_per_second(&self.cadence, self.payload.len() as u64, now)
    }

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
