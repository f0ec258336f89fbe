//! Publishing finished work to `JETWORK_RESULTS`: results on
//! `jetwork.results.<queue>.<work id>` and rejected submissions on `jetwork.rejected.<queue>`.
//!
//! A publication is started only after the event that calls for it is journaled, and it stays
//! in the state's `unpublished` set until the stream has acknowledged it and that fact is
//! journaled too (`Published`). A leader that dies in between leaves it in `unpublished`, and
//! the next leader publishes it again. Copies are refused by the server:
//! a result is written with `Nats-Expected-Last-Subject-Sequence: 0` ("only if this work id
//! has no result yet"), so each work id has at most one result for as long as results are
//! retained; a rejection carries `Nats-Msg-Id: rejected-<seq>` (deduplicated in the window).

use std::collections::HashSet;
use std::future::IntoFuture;

use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use jetwork_shared::{headers, subjects};

use crate::core::{Publication, PublicationKey};

/// Longest reason put in a header.
const MAX_REASON_HEADER: usize = 512;

/// Publications in flight.
pub struct Publisher {
    js: jetstream::Context,
    inflight: FuturesUnordered<BoxFuture<'static, (PublicationKey, Result<(), String>)>>,
    keys: HashSet<PublicationKey>,
}

impl Publisher {
    pub fn new(js: jetstream::Context) -> Self {
        Publisher { js, inflight: FuturesUnordered::new(), keys: HashSet::new() }
    }

    /// Whether `key` is being published now.
    pub fn is_publishing(&self, key: &PublicationKey) -> bool {
        self.keys.contains(key)
    }

    /// Publications in flight.
    pub fn len(&self) -> usize {
        self.inflight.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.inflight.is_empty()
    }

    /// Starts publishing. `payload` is the rejected submission's bytes (unused for results).
    pub async fn start(&mut self, key: PublicationKey, publication: &Publication, payload: Bytes) {
        if !self.keys.insert(key.clone()) {
            return;
        }
        let (subject, message) = build(publication, payload);
        let sent = self.js.send_publish(subject, message).await;
        self.inflight.push(Box::pin(async move {
            let outcome = match sent {
                Err(e) => Err(e.to_string()),
                Ok(ack) => match ack.into_future().await {
                    Ok(_) => Ok(()),
                    // A result for this work id is already stored: it was published before.
                    Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(()),
                    Err(e) => Err(e.to_string()),
                },
            };
            (key, outcome)
        }));
    }

    /// The next finished publication. Pending forever when none is in flight.
    pub async fn next(&mut self) -> (PublicationKey, Result<(), String>) {
        match self.inflight.next().await {
            Some((key, outcome)) => {
                self.keys.remove(&key);
                (key, outcome)
            }
            None => std::future::pending().await,
        }
    }
}

/// The subject and message for a publication.
pub fn build(publication: &Publication, payload: Bytes) -> (String, PublishMessage) {
    match publication {
        Publication::Completed { work_id, queue, attempt, result } => {
            let message = PublishMessage::build()
                .payload(result.clone())
                .expected_last_subject_sequence(0)
                .header(headers::STATUS, headers::STATUS_COMPLETED)
                .header(headers::ATTEMPT, attempt.to_string().as_str())
                .header(headers::WORK_ID, work_id.as_str())
                .header(headers::QUEUE, queue.as_str());
            (subjects::result(queue, work_id), message)
        }
        Publication::Failed { work_id, queue, attempt, reason } => {
            let message = PublishMessage::build()
                .payload(Bytes::from(reason.clone()))
                .expected_last_subject_sequence(0)
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
