//! [`Event`]: the journal's vocabulary. Each event records a decision already validated by
//! the engine, with every value the decision produced (deadlines, attempt numbers, reasons)
//! spelled out, so applying it needs no policy, clock or lookup outside the state.
//!
//! Events are journaled in batches ([`JournalBatch`], one MessagePack message on
//! `jetwork.journal.events`). The encoding is an externally tagged map
//! (`{"WorkAccepted": {"work_id": …}}`); `docs/architecture.md` has the catalogue.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use jetwork_shared::job_options::JobOptions;
use jetwork_shared::schedules::ScheduleName;
use jetwork_shared::{Login, QueueName, Token, WorkId, WorkerId};

use super::{Cadence, Millis, PublicationKey};

/// One recorded decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// A master became leader for `epoch` (its lease revision). Every worker known from the
    /// journal is treated as seen at `at`, giving live workers time to re-register; every
    /// running attempt due before `grace_until` is due then instead, giving workers time to
    /// re-send the results they could not deliver while no master led (0: no grace, as in
    /// journals written before it existed).
    EpochStarted {
        epoch: u64,
        leader: String,
        at: Millis,
        #[serde(default)]
        grace_until: Millis,
        /// Set by the first leader of format 5 or later, and kept: the last sequence stored in
        /// `JETWORK_SUBMIT` when it took over a journal older masters wrote (0 for a journal
        /// nobody wrote before). Older masters submitted retries and ticks on the clients'
        /// subjects; those stored up to here are still honoured (`State::legacy_through`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        legacy_through: Option<u64>,
    },
    /// A submission was accepted as work: it is now ready to be handed out (or, if its
    /// options delay it past `at`, waits until then). `prior_attempts`: for a retry, the
    /// attempts its earlier runs used (its own attempts are numbered on from there).
    /// `options`: what the submission asked for itself, times already absolute. `jumped`: taken
    /// out of turn, ahead of the queue's unread backlog (a priority jump): the cursor stays
    /// where it is, and passes this submission later (`SubmissionPassed`).
    WorkAccepted {
        work_id: WorkId,
        queue: QueueName,
        seq: u64,
        size: u64,
        at: Millis,
        #[serde(default)]
        prior_attempts: u32,
        #[serde(default, skip_serializing_if = "JobOptions::is_default")]
        options: JobOptions,
        #[serde(default, skip_serializing_if = "is_false")]
        jumped: bool,
    },
    /// The queue's reader reached a submission taken earlier out of turn (`WorkAccepted` with
    /// `jumped`): the cursor moves past it, and nothing else happens.
    SubmissionPassed { queue: QueueName, seq: u64 },
    /// A submission could not be accepted (invalid id, or its id is still in flight).
    SubmissionRejected {
        queue: QueueName,
        seq: u64,
        msg_id: Option<String>,
        reason: String,
        at: Millis,
    },
    /// A worker registered, or changed its queues or capacity. `session` is the token its
    /// process presents with every request (only that process may act under the id).
    WorkerRegistered {
        worker: WorkerId,
        session: Token,
        /// The login it registered under (format 6; absent: none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        login: Option<Login>,
        queues: Vec<QueueName>,
        capacity: u32,
        at: Millis,
    },
    /// A worker was heard from. Written by masters before format 6 (now heartbeats are not
    /// journaled: see `liveness.rs`); still read from older journals.
    WorkerSeen { worker: WorkerId, at: Millis },
    /// A worker was forgotten (silent too long). Its work was re-queued by earlier events.
    WorkerLost { worker: WorkerId, reason: String, at: Millis },
    /// Attempt `attempt` of a ready item was handed to `worker` at `at`, due by `deadline`.
    /// `token` went with the hand-out: reports about this attempt must carry it.
    WorkStarted {
        work_id: WorkId,
        worker: WorkerId,
        attempt: u32,
        deadline: Millis,
        token: Token,
        #[serde(default)]
        at: Millis,
    },
    /// The running attempt reported progress; its deadline moved.
    WorkProgressed { work_id: WorkId, attempt: u32, deadline: Millis },
    /// Attempt `attempt` ended without a result at `at`. The item is ready again, or, if
    /// `not_before` is later than `at`, waits until then (its back-off).
    WorkRequeued {
        work_id: WorkId,
        attempt: u32,
        reason: String,
        #[serde(default)]
        not_before: Millis,
        #[serde(default)]
        at: Millis,
    },
    /// These waiting items are ready again, each to the front of its queue in this order.
    WorkDue { work_ids: Vec<WorkId> },
    /// An operator cancelled the item (ready, waiting or running) at `at`.
    WorkCancelled { work_id: WorkId, reason: String, at: Millis },
    /// An operator paused the queue: nothing of it is handed out until it is resumed.
    QueuePaused { queue: QueueName, at: Millis },
    /// An operator resumed the queue.
    QueueResumed { queue: QueueName, at: Millis },
    /// The item finished with `result`, produced by `attempt`.
    WorkCompleted { work_id: WorkId, attempt: u32, result: Bytes, at: Millis },
    /// The item used up its attempts; `attempt` was the last one.
    WorkFailed { work_id: WorkId, attempt: u32, reason: String, at: Millis },
    /// These results or rejections are durably stored in `JETWORK_RESULTS`.
    Published { keys: Vec<PublicationKey> },
    /// An operator added a recurring schedule; its first tick is due at `next`.
    ScheduleAdded {
        name: ScheduleName,
        queue: QueueName,
        cadence: Cadence,
        payload: Bytes,
        next: Millis,
        at: Millis,
    },
    /// An operator removed a schedule (ticks it already fired are still submitted).
    ScheduleRemoved { name: ScheduleName, at: Millis },
    /// The schedule's tick at `scheduled` fired as `work_id` (to be submitted until confirmed);
    /// `missed` earlier ticks were passed over (due while no master led); the next is at `next`.
    /// The tick is pending (`State::unsubmitted`) until its submission is read back.
    ScheduleFired {
        name: ScheduleName,
        work_id: WorkId,
        scheduled: Millis,
        missed: u64,
        next: Millis,
        at: Millis,
        /// The tick's submission's `Nats-Msg-Id` (drawn, so nobody can pre-empt it); absent in
        /// journals older than format 5 (the work id then).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        key: String,
    },
    /// Journals older than format 5: these fired ticks are durably stored in
    /// `JETWORK_SUBMIT`, and leave `unsubmitted` (since format 5 they stay until read back,
    /// `SubmissionsStored`).
    TicksSubmitted { work_ids: Vec<WorkId> },
    /// The master's own submissions of these work ids (ticks, retries) are durably stored in
    /// `JETWORK_SUBMIT` (or were already): no leader submits them again. They stay pending
    /// until read back.
    SubmissionsStored { work_ids: Vec<WorkId> },
    /// An operator's retry of a finished job was decided: the new run is submitted on
    /// `jetwork.internal.<queue>` under `key` and, when read back, runs with `prior_attempts`
    /// and `options` (decided here); its payload is the retried outcome's, stored at
    /// `payload_seq` in `JETWORK_RESULTS`.
    RetryDecided {
        work_id: WorkId,
        queue: QueueName,
        key: String,
        prior_attempts: u32,
        #[serde(default, skip_serializing_if = "JobOptions::is_default")]
        options: JobOptions,
        payload_seq: u64,
        at: Millis,
    },
    /// A pending submission of the master's own (a tick, a retry) ends without running: its
    /// submission was refused when read back (the reason was stored as its rejection), or
    /// its payload is gone.
    PendingDropped { work_id: WorkId, reason: String, at: Millis },
    /// An operator purged the queue at `at`: every submission of it stored at or before
    /// `through_seq` and read from now on is not run but finished as `cancelled` (the held
    /// items were cancelled by the `WorkCancelled` events before this one).
    QueuePurged { queue: QueueName, through_seq: u64, at: Millis },
    /// A queue nobody serves, with nothing in flight and none of its submissions stored at or
    /// below its cursor any more, was forgotten: its cursor, counters and marks go (a later
    /// reader starts it afresh). Format 6.
    QueueForgotten { queue: QueueName, at: Millis },
}

/// The payload of one `jetwork.journal.events` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalBatch {
    pub events: Vec<Event>,
}

/// Whether a flag is unset (for flags left out of the encoding when unset).
fn is_false(flag: &bool) -> bool {
    !*flag
}
