//! [`OutcomeLog`]: the lines an operator reads about jobs, one per terminal outcome that is
//! not a plain success, as the leader decides it — failed for good, cancelled (by an operator
//! or a purge), expired (info), and submissions rejected (warn: a client sent something
//! wrong) — with `work_id`, `queue`, `attempts`, `worker` (of the last attempt) and `reason`
//! as structured fields. Completions stay at debug (`observe.rs`): at any job rate they would
//! drown these.
//!
//! Logged when the engine emits the event (the core has no logging), before its journal
//! write: if that write fails, the term ends and the next leader decides the job again, and
//! may log it again. A takeover itself never logs a decision twice (replay logs nothing).
//!
//! Costs one match per event. Failures, cancellations and expiries follow the jobs submitted
//! and run; rejections are what anyone allowed to submit can cause at will, so their lines are
//! limited to one per [`REJECTION_EVERY`] (with the count left out since the last).

use std::time::Duration;

use jetwork_shared::log_limit::LogLimit;
use jetwork_shared::WorkId;

use crate::core::{Event, Publication, PublicationKey, State, EXPIRED};

/// At most one rejection line per this long (ten a second).
pub const REJECTION_EVERY: Duration = Duration::from_millis(100);

/// Writes the outcome lines of one term.
pub struct OutcomeLog {
    rejections: LogLimit,
}

impl OutcomeLog {
    pub fn new() -> Self {
        OutcomeLog { rejections: LogLimit::new(REJECTION_EVERY) }
    }

    /// Logs the terminal outcomes among `events` (`state` is the state after them).
    pub fn log(&mut self, events: &[Event], state: &State) {
        for event in events {
            match event {
                Event::WorkFailed { work_id, attempt, reason, .. } => {
                    let (queue, worker) = finished(state, work_id);
                    let attempts = attempt;
                    tracing::info!(%work_id, queue, attempts, worker, %reason, "work failed for good");
                }
                Event::WorkCancelled { work_id, reason, .. } => {
                    let (queue, worker) = finished(state, work_id);
                    let attempts = attempts_of(state, work_id);
                    if reason.starts_with(EXPIRED) {
                        tracing::info!(%work_id, queue, attempts, worker, %reason, "work expired");
                    } else {
                        tracing::info!(%work_id, queue, attempts, worker, %reason, "work cancelled");
                    }
                }
                Event::SubmissionRejected { queue, seq, msg_id, reason, .. } => {
                    let Some(left_out) = self.rejections.allow() else { continue };
                    // The submission's id as sent (`Nats-Msg-Id`), if it had one: it may be
                    // the very reason it was refused, so it is a plain string, not a WorkId.
                    let work_id = msg_id.as_deref().unwrap_or_default();
                    tracing::warn!(
                        work_id,
                        %queue,
                        seq,
                        attempts = 0,
                        %reason,
                        rejections_not_logged = left_out,
                        "submission rejected"
                    );
                }
                _ => {}
            }
        }
    }
}

/// The queue of a finished item and the worker of its last attempt ("" if it never ran): the
/// item has left the state, and its outcome waiting to be published names them.
fn finished<'a>(state: &'a State, work_id: &WorkId) -> (&'a str, &'a str) {
    match state.unpublished.get(&PublicationKey::Result(work_id.clone())) {
        Some(
            Publication::Completed { queue, history, .. }
            | Publication::Failed { queue, history, .. }
            | Publication::Cancelled { queue, history, .. },
        ) => (queue.as_str(), history.last().map_or("", |a| a.worker.as_str())),
        _ => ("", ""),
    }
}

/// Attempts a cancelled item used (0 if it never started).
fn attempts_of(state: &State, work_id: &WorkId) -> u32 {
    match state.unpublished.get(&PublicationKey::Result(work_id.clone())) {
        Some(Publication::Cancelled { attempt, .. }) => *attempt,
        _ => 0,
    }
}
