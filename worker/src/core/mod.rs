//! The worker's decision logic: a pure, synchronous, deterministic state machine.
//!
//! ```text
//!   Input (carries `now`, ids, replies) ──► Engine::step ──► Actions, run by the runtime:
//!     start · replies to register/request/report    send register / request / report,
//!     election announcement · lease read            start or abort a job, check the lease,
//!     job ended · progress · work ready             withdraw the open request, log, stop
//!     shutdown · tick
//! ```
//!
//! The runtime (`crate::runtime`) owns NATS, the job tasks, the timers and the lease reads; it
//! turns everything that happens into an [`Input`], and does what the [`Action`]s say. Every
//! decision about slots, outcomes, epochs and shutdown is made here.
//!
//! Contract, which the tests in this module enforce:
//! - Nothing under `core/` is async, reads a clock, draws randomness or touches NATS
//!   (`scripts/check` greps for it). Time arrives as `now` (monotonic milliseconds from an
//!   origin the runtime picks) and, for replies, `wall` (milliseconds since the Unix epoch);
//!   the session token arrives in the [`Config`]; request ids are drawn from a counter.
//! - The runtime answers every request action with exactly one reply input carrying the same
//!   [`RequestId`] (the reply, or why there is none), and turns a reply whose epoch is newer
//!   than the action's `epoch` into [`Failure::Unconfirmed`] unless the lease names that epoch.
//! - Slots: `running + backlog + outcomes not riding a report + slots asked for ≤
//!   concurrency`, the way the master counts them (a job's slot is free once the master has its
//!   outcome). Only a grant answering a request released by a new master can exceed it (the
//!   extra items wait in the backlog, and nothing more is asked until there is room).
//! - Every completed or failed outcome stays until a verdict for it arrives, and is sent again
//!   whenever `resend_interval` has passed since it was last sent.
//! - A newer epoch is followed only once the lease confirms it.
//!
//! The golden scripts in `testscripts/` are the behaviour's specification, one scenario per
//! file; `property_test.rs` checks the invariants after every step of random input sequences.

mod action;
mod attempts;
mod config;
mod engine;
mod flights;
mod input;
mod replies;
mod slots;

#[cfg(test)]
mod golden_test;
#[cfg(test)]
mod property_test;
#[cfg(test)]
mod world_test;

pub use action::{Action, Level, Limit, Log};
pub use config::Config;
pub use engine::Engine;
pub use input::{Failure, Input};
pub use slots::Slots;

pub(crate) use attempts::last_chars;

/// Milliseconds: durations, and instants on the runtime's monotonic clock (from an origin it
/// chooses) or, where named `wall`, on the wall clock (since the Unix epoch).
pub type Millis = u64;

/// Identifies one request sent to the master, so that its reply can be matched to it: the
/// engine draws them in order, the runtime hands each back with the reply.
pub type RequestId = u64;

/// One attempt of one work item: the work id and the 1-based attempt number.
pub type Key = (jetwork_shared::WorkId, u32);
