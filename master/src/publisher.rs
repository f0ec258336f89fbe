//! Publishing finished work to `JETWORK_RESULTS`: results on
//! `jetwork.results.<queue>.<work id>` and rejected submissions on `jetwork.rejected.<queue>`.
//!
//! A publication is started only after the event that calls for it is journaled, and it stays
//! in the state's `unpublished` set until the stream has acknowledged it and that fact is
//! journaled too (`Published`). A leader that dies in between leaves it in `unpublished`, and
//! the next leader publishes it again. Copies are kept out twice over: every publication
//! carries a `Nats-Msg-Id` naming this run of this work id (`result-<id>-<submit seq>`, or
//! `rejected-<submit seq>`), which the stream deduplicates within its window; and a new
//! leader re-publishing a result first looks at the newest result stored on its subject and
//! skips it if that one is from the same run (`Jetwork-Submit-Seq`).

use std::collections::HashSet;
use std::future::IntoFuture;

use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use jetwork_shared::{headers, subjects};

use crate::core::{Publication, PublicationKey};

/// Longest reason put in a header.
const MAX_REASON_HEADER: usize = 512;
/// Publications in flight at once; more wait their turn. Well under the JetStream context's
/// 4096 acknowledgement credits, so starting one never blocks.
const MAX_IN_FLIGHT: usize = 1024;

/// Publications in flight, and those waiting for a place.
pub struct Publisher {
    js: jetstream::Context,
    inflight: FuturesUnordered<BoxFuture<'static, (PublicationKey, Result<(), String>)>>,
    /// Keys in flight or waiting.
    keys: HashSet<PublicationKey>,
    waiting:
        std::collections::VecDeque<(PublicationKey, Option<(String, u64)>, String, PublishMessage)>,
}

impl Publisher {
    pub fn new(js: jetstream::Context) -> Self {
        Publisher {
            js,
            inflight: FuturesUnordered::new(),
            keys: HashSet::new(),
            waiting: std::collections::VecDeque::new(),
        }
    }

    /// Whether `key` is being published now.
    pub fn is_publishing(&self, key: &PublicationKey) -> bool {
        self.keys.contains(key)
    }

    /// Publications in flight.
    pub fn len(&self) -> usize {
        self.inflight.len()
    }

    /// Whether nothing is in flight or waiting.
    pub fn is_empty(&self) -> bool {
        self.inflight.is_empty() && self.waiting.is_empty()
    }

    /// Starts publishing. `payload` is the rejected submission's bytes (unused for results).
    /// With `verify_first`, a result already stored for the same run is not published again.
    pub fn start(
        &mut self,
        key: PublicationKey,
        publication: &Publication,
        payload: Bytes,
        verify_first: bool,
    ) {
        if !self.keys.insert(key.clone()) {
            return;
        }
        let check = match publication {
            Publication::Completed { work_id, queue, seq, .. }
            | Publication::Failed { work_id, queue, seq, .. }
                if verify_first =>
            {
                Some((subjects::result(queue, work_id), *seq))
            }
            _ => None,
        };
        let (subject, message) = build(publication, payload);
        self.waiting.push_back((key, check, subject, message));
        self.launch();
    }

    /// Moves waiting publications into flight while there is room.
    fn launch(&mut self) {
        while self.inflight.len() < MAX_IN_FLIGHT {
            let Some((key, check, subject, message)) = self.waiting.pop_front() else { return };
            let js = self.js.clone();
            self.inflight.push(Box::pin(async move {
                if let Some((subject, seq)) = check {
                    if already_stored(&js, &subject, seq).await {
                        return (key, Ok(()));
                    }
                }
                let outcome = match js.send_publish(subject, message).await {
                    Err(e) => Err(e.to_string()),
                    Ok(ack) => ack.into_future().await.map(|_| ()).map_err(|e| e.to_string()),
                };
                (key, outcome)
            }));
        }
    }

    /// The next finished publication. Pending forever when none is in flight.
    pub async fn next(&mut self) -> (PublicationKey, Result<(), String>) {
        match self.inflight.next().await {
            Some((key, outcome)) => {
                self.keys.remove(&key);
                self.launch();
                (key, outcome)
            }
            None => std::future::pending().await,
        }
    }
}

/// The subject and message for a publication.
pub fn build(publication: &Publication, payload: Bytes) -> (String, PublishMessage) {
    match publication {
        Publication::Completed { work_id, queue, seq, attempt, result } => {
            let message = PublishMessage::build()
                .payload(result.clone())
                .message_id(format!("result-{work_id}-{seq}"))
                .header(headers::SUBMIT_SEQ, seq.to_string().as_str())
                .header(headers::STATUS, headers::STATUS_COMPLETED)
                .header(headers::ATTEMPT, attempt.to_string().as_str())
                .header(headers::WORK_ID, work_id.as_str())
                .header(headers::QUEUE, queue.as_str());
            (subjects::result(queue, work_id), message)
        }
        Publication::Failed { work_id, queue, seq, attempt, reason } => {
            let message = PublishMessage::build()
                .payload(Bytes::from(reason.clone()))
                .message_id(format!("result-{work_id}-{seq}"))
                .header(headers::SUBMIT_SEQ, seq.to_string().as_str())
                .header(headers::STATUS, headers::STATUS_FAILED)
                .header(headers::ATTEMPT, attempt.to_string().as_str())
                .header(headers::REASON, headers::sanitize(reason, MAX_REASON_HEADER).as_str())
                .header(headers::WORK_ID, work_id.as_str())
                .header(headers::QUEUE, queue.as_str());
            (subjects::result(queue, work_id), message)
        }
        Publication::Rejected { queue, seq, msg_id, reason } => {
            let mut message = PublishMessage::build()
                .payload(payload)
                .message_id(format!("rejected-{seq}"))
                .header(headers::STATUS, headers::STATUS_REJECTED)
                .header(headers::REASON, headers::sanitize(reason, MAX_REASON_HEADER).as_str())
                .header(headers::SUBMIT_SEQ, seq.to_string().as_str())
                .header(headers::QUEUE, queue.as_str());
            if let Some(id) = msg_id {
                message =
                    message.header(headers::SUBMITTED_ID, headers::sanitize(id, 256).as_str());
            }
            (subjects::rejected(queue), message)
        }
    }
}

/// Whether the newest result stored on `subject` is from the run at submit sequence `seq`.
async fn already_stored(js: &jetstream::Context, subject: &str, seq: u64) -> bool {
    let Ok(stream) = js.get_stream_no_info(subjects::RESULTS_STREAM).await else { return false };
    match stream.direct_get_last_for_subject(subject).await {
        Ok(stored) => {
            stored.headers.get(headers::SUBMIT_SEQ).is_some_and(|v| v.as_str() == seq.to_string())
        }
        Err(_) => false,
    }
}
