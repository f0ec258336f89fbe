//! [`TickSubmitter`]: the leader's side of submitting the ticks of recurring schedules. A tick
//! is submitted only after its `ScheduleFired` is journaled (it runs as an effect), to
//! `jetwork.submit.<queue>` with `Nats-Msg-Id` = the tick's work id, `Jetwork-Schedule` and
//! `Jetwork-Scheduled-At`. Stored (or refused as a duplicate: already stored) counts as
//! confirmed, and the confirmations are journaled (`TicksSubmitted`) with the next write.
//! A failed submission is tried again a second later; a leader that dies first leaves the
//! tick in `unsubmitted`, and its successor submits it again under the same id.

use std::collections::HashSet;
use std::future::IntoFuture;

use async_nats::jetstream::{self, message::PublishMessage};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use jetwork_shared::{headers, subjects, Unavailable, WorkId};

use super::confirmations::Confirmations;
use crate::core::{Effect, State};

type Task = BoxFuture<'static, (WorkId, Result<(), Unavailable>)>;

/// Tick submissions in flight, confirmed, and waiting to be retried.
pub struct TickSubmitter {
    js: jetstream::Context,
    inflight: FuturesUnordered<Task>,
    /// Work ids in flight.
    keys: HashSet<WorkId>,
    /// Stored (not yet journaled as `TicksSubmitted`), and failed ones to try again.
    confirmations: Confirmations<WorkId>,
}

impl TickSubmitter {
    pub fn new(js: jetstream::Context) -> Self {
        TickSubmitter {
            js,
            inflight: FuturesUnordered::new(),
            keys: HashSet::new(),
            confirmations: Confirmations::default(),
        }
    }

    /// Starts submitting the fired tick `work_id` (a no-op if it is confirmed already, or on
    /// its way).
    pub fn start(&mut self, work_id: WorkId, state: &State) {
        let Some(tick) = state.unsubmitted.get(&work_id) else { return };
        if !self.keys.insert(work_id.clone()) {
            return;
        }
        let subject = subjects::submit(&tick.queue);
        let message = PublishMessage::build()
            .payload(tick.payload.clone())
            .message_id(work_id.as_str())
            .header(headers::SCHEDULE, tick.schedule.as_str())
            .header(headers::SCHEDULED_AT, tick.scheduled.to_string().as_str());
        let js = self.js.clone();
        self.inflight.push(Box::pin(async move {
            let what = || format!("submitting the scheduled tick {work_id}");
            let sent = match js.send_publish(subject, message).await {
                Ok(ack) => ack.into_future().await.map_err(|e| Unavailable::new(what(), e)),
                Err(e) => Err(Unavailable::new(what(), e)),
            };
            // A duplicate acknowledgement means this id is stored already: just as good.
            (work_id, sent.map(drop))
        }));
    }

    /// The next finished submission (pending forever while none is in flight).
    pub async fn next(&mut self) -> (WorkId, Result<(), Unavailable>) {
        match self.inflight.next().await {
            Some((work_id, outcome)) => {
                self.keys.remove(&work_id);
                (work_id, outcome)
            }
            None => std::future::pending().await,
        }
    }

    /// Takes note of how a submission ended.
    pub fn done(&mut self, work_id: WorkId, outcome: Result<(), Unavailable>) {
        match outcome {
            Ok(()) => self.confirmations.confirm(work_id),
            Err(e) => {
                // Safe to repeat: the same `Nats-Msg-Id` makes a second copy a duplicate.
                tracing::warn!(%work_id, error = %e, "tick submission failed; retrying in 1s");
                self.confirmations.retry_later(work_id);
            }
        }
    }

    /// The confirmed ticks to record, if any.
    pub fn take_confirmed(&mut self) -> Option<Vec<WorkId>> {
        self.confirmations.take_confirmed()
    }

    /// Submissions due to be tried again, as effects (they run behind the journal like any).
    pub fn due(&mut self) -> Vec<Effect> {
        self.confirmations.due().into_iter().map(|work_id| Effect::SubmitTick { work_id }).collect()
    }

    /// Whether nothing is being submitted.
    pub fn is_idle(&self) -> bool {
        self.inflight.is_empty()
    }
}
