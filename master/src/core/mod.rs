//! The master's decision logic: a pure, synchronous, deterministic state machine.
//!
//! ```text
//!   Command (input, carries `now` and ids) ──► Engine::step ──► Events ──► journal (runtime)
//!                                               │    │
//!                                               │    └─ applies each event to State as it goes
//!                                               └──────► Effects (replies, notifications,
//!                                                        publications) run by the runtime
//!                                                        only after the events are journaled
//! ```
//!
//! Contract:
//! - Nothing under `core/` is async, reads a clock, draws randomness or touches NATS. Time
//!   arrives as `now` (milliseconds) inside a [`Command`]; ids and the token seed arrive
//!   inside commands too. `scripts/check` refuses a change that brings an async runtime, the
//!   NATS client, async functions, a clock or an entropy source here.
//! - [`State::apply`] is total: it never fails and never panics, whatever the event (the
//!   property tests feed it arbitrary command sequences). Every
//!   check happens in [`Engine::step`] *before* an event exists, so a journaled event can
//!   always be replayed (the Akka sample's "poison event" cannot happen here).
//! - Replaying the journal is `events.fold(State::default(), apply)` and yields exactly the
//!   state the leader had when it wrote them (`replay_equals_live` in the tests).
//! - The engine holds two kinds of state: [`State`], rebuilt by replay and saved in
//!   snapshots, and a little soft bookkeeping (who was notified when) that only affects
//!   how often notifications are re-sent, never what is decided about work.

mod available_workers;
mod bookkeeping;
mod cadence;
mod command;
mod effect;
mod engine;
mod event;
mod free_slots;
mod grant_window;
mod invariants;
mod liveness;
mod login_counts;
mod lookup;
mod pending_retry;
pub mod policy;
mod rate;
mod ready_queues;
mod running;
mod schedule;
mod serving;
mod state;
mod status;
mod stored_outcome;
mod submission;
pub mod upkeep;
mod waiting;

#[cfg(test)]
mod format_test;
#[cfg(test)]
mod golden_test;
#[cfg(test)]
mod replay_test;

pub use available_workers::{Availability, AvailableWorkers, Slots};
pub use bookkeeping::Bookkeeping;
pub use cadence::Cadence;
pub use command::Command;
pub use effect::{AssignmentRef, Effect, Reply, ReplyError};
pub use engine::{Engine, Output, EXPIRED};
pub use event::{Event, JournalBatch};
pub use free_slots::FreeSlots;
pub use grant_window::GrantWindows;
pub use liveness::Liveness;
pub use login_counts::LoginCounts;
pub use lookup::{Found, LookUp};
pub use pending_retry::PendingRetry;
pub use policy::Policy;
pub use rate::RateLimits;
pub use ready_queues::ReadyQueues;
pub use running::RunningCounts;
pub use schedule::{FiredTick, Schedule};
pub use serving::Serving;
pub use state::{Publication, PublicationKey, QueueState, Running, State, Work, Worker};
pub use stored_outcome::StoredOutcome;
pub use submission::{Origin, Submission};
pub use waiting::WaitingCounts;

/// Milliseconds since the Unix epoch, on the leader's clock.
pub type Millis = u64;

/// The runtime's handle for a request waiting for its reply.
pub type RequestId = u64;
