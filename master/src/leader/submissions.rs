//! [`Submitter`]: the leader's side of the master's own submissions, a schedule's tick or an
//! operator's retry. Each is submitted only after the decision behind it is journaled
//! (`ScheduleFired`, `RetryDecided`; it runs as an effect), to `jetwork.internal.<queue>`
//! (which only the master's user may publish to) with `Nats-Msg-Id` = its key (drawn by the
//! engine) and `Jetwork-Work-Id` = the work id it runs, plus headers that only inform a reader
//! of the stream (`Jetwork-Schedule` and `-Scheduled-At` on a tick, `-Prior-Attempts` on a
//! retry): intake honours the submission against the journaled decision, not its headers.
//!
//! A tick's payload is in the state; a retry's is read back from its retried outcome in
//! `JETWORK_RESULTS` (stored with failed and cancelled outcomes). Stored (or refused as a
//! duplicate: already stored) counts as confirmed, and the confirmations are journaled
//! (`SubmissionsStored`) with the next write. A failed submission is tried again a second
//! later; a retry whose outcome is gone from the results stream (the stream leader says so)
//! is dropped by the engine. A leader that dies first leaves the submission pending, and its
//! successor submits it again under the same key.

use jetwork_shared::fast_hash::FastSet;
use std::future::IntoFuture;

use async_nats::jetstream::{self, message::PublishMessage, stream::LastRawMessageErrorKind};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use jetwork_shared::clock::now_ms;
use jetwork_shared::{headers, subjects, Unavailable, WorkId};

use super::confirmations::Confirmations;
use crate::core::{Command, Effect, State};

/// How one submission ended: stored at this sequence of `JETWORK_SUBMIT` (or already).
pub type Outcome = Result<u64, SubmitError>;

/// Why a submission did not go through.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Tried again a second later.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// A retry's payload is gone with its outcome (older than the results retention): it
    /// cannot be submitted.
    #[error("the retried outcome at {0} is gone from JETWORK_RESULTS")]
    PayloadGone(u64),
}

type Task = BoxFuture<'static, (WorkId, Outcome)>;

/// Submissions in flight, confirmed, and waiting to be retried.
pub struct Submitter {
    js: jetstream::Context,
    inflight: FuturesUnordered<Task>,
    /// Work ids in flight.
    keys: FastSet<WorkId>,
    /// Stored (not yet journaled as `SubmissionsStored`), and failed ones to try again.
    confirmations: Confirmations<WorkId>,
}

/// What one submission carries.
struct Message {
    subject: String,
    key: String,
    /// A tick's payload, or where a retry's is.
    payload: Payload,
    /// Headers for a reader of the stream (the engine ignores them).
    informative: Vec<(&'static str, String)>,
}

enum Payload {
    Inline(Bytes),
    Outcome(u64),
}

impl Submitter {
    pub fn new(js: jetstream::Context) -> Self {
        Submitter {
            js,
            inflight: FuturesUnordered::new(),
            keys: FastSet::default(),
            confirmations: Confirmations::default(),
        }
    }

    /// Starts submitting the pending submission of `work_id` (a no-op if it is confirmed
    /// stored already, no longer pending, or on its way).
    pub fn start(&mut self, work_id: WorkId, state: &State) {
        let Some(message) = message(&work_id, state) else { return };
        if !self.keys.insert(work_id.clone()) {
            return;
        }
        let js = self.js.clone();
        self.inflight.push(Box::pin(async move {
            let outcome = submit(&js, &work_id, message).await;
            (work_id, outcome)
        }));
    }

    /// The next finished submission (pending forever while none is in flight).
    pub async fn next(&mut self) -> (WorkId, Outcome) {
        match self.inflight.next().await {
            Some((work_id, outcome)) => {
                self.keys.remove(&work_id);
                (work_id, outcome)
            }
            None => std::future::pending().await,
        }
    }

    /// Takes note of how a submission ended; what the engine must decide about it, if anything.
    pub fn done(&mut self, work_id: WorkId, outcome: Outcome) -> Option<Command> {
        match outcome {
            Ok(_) => self.confirmations.confirm(work_id),
            Err(SubmitError::PayloadGone(seq)) => {
                tracing::warn!(%work_id, seq, "the retried outcome is gone: the retry is dropped");
                return Some(Command::PayloadMissing { work_id, now: now_ms() });
            }
            Err(e) => {
                // Safe to repeat: the same `Nats-Msg-Id` makes a second copy a duplicate, and
                // intake takes only one copy against the pending decision.
                tracing::warn!(%work_id, error = %e, "submission failed; retrying in 1s");
                self.confirmations.retry_later(work_id);
            }
        }
        None
    }

    /// The confirmed submissions to record, if any.
    pub fn take_confirmed(&mut self) -> Option<Vec<WorkId>> {
        self.confirmations.take_confirmed()
    }

    /// Submissions due to be tried again, as effects (they run behind the journal like any).
    pub fn due(&mut self) -> Vec<Effect> {
        self.confirmations.due().into_iter().map(|work_id| Effect::Submit { work_id }).collect()
    }

    /// Whether nothing is being submitted.
    pub fn is_idle(&self) -> bool {
        self.inflight.is_empty()
    }
}

/// The message for the pending submission of `work_id`, if it is pending and not yet stored.
fn message(work_id: &WorkId, state: &State) -> Option<Message> {
    if let Some(tick) = state.unsubmitted.get(work_id).filter(|tick| !tick.stored) {
        let key = if tick.key.is_empty() { work_id.to_string() } else { tick.key.clone() };
        return Some(Message {
            subject: subjects::internal(&tick.queue),
            key,
            payload: Payload::Inline(tick.payload.clone()),
            informative: vec![
                (headers::SCHEDULE, tick.schedule.to_string()),
                (headers::SCHEDULED_AT, tick.scheduled.to_string()),
            ],
        });
    }
    let retry = state.retries.get(work_id).filter(|retry| !retry.stored)?;
    Some(Message {
        subject: subjects::internal(&retry.queue),
        key: retry.key.clone(),
        payload: Payload::Outcome(retry.payload_seq),
        informative: vec![(headers::PRIOR_ATTEMPTS, retry.prior_attempts.to_string())],
    })
}

async fn submit(js: &jetstream::Context, work_id: &WorkId, message: Message) -> Outcome {
    let what = || format!("submitting {work_id} for the master");
    let payload = match message.payload {
        Payload::Inline(payload) => payload,
        Payload::Outcome(seq) => retried_payload(js, seq).await?,
    };
    let mut publish = PublishMessage::build()
        .payload(payload)
        .message_id(message.key)
        .header(headers::WORK_ID, work_id.as_str());
    for (name, value) in message.informative {
        publish = publish.header(name, value.as_str());
    }
    let ack =
        js.send_publish(message.subject, publish).await.map_err(|e| Unavailable::new(what(), e))?;
    // A duplicate acknowledgement means this key is stored already: just as good.
    let ack = ack.into_future().await.map_err(|e| Unavailable::new(what(), e))?;
    Ok(ack.sequence)
}

/// The payload stored with the outcome at `seq` in `JETWORK_RESULTS`, read from the stream
/// leader (so "gone" is the leader's word, never a lagging replica's).
async fn retried_payload(js: &jetstream::Context, seq: u64) -> Result<Bytes, SubmitError> {
    let what = || format!("reading the retried outcome at {seq}");
    let stream = js
        .get_stream_no_info(subjects::RESULTS_STREAM)
        .await
        .map_err(|e| Unavailable::new(what(), e))?;
    match stream.get_raw_message(seq).await {
        Ok(message) => Ok(message.payload),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
            Err(SubmitError::PayloadGone(seq))
        }
        Err(e) => Err(Unavailable::new(what(), e).into()),
    }
}
