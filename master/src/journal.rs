//! The journal: the `JETWORK_JOURNAL` stream, written only by the leader, read back in full
//! (from the latest snapshot) by every new leader.
//!
//! Message kinds, by subject:
//! - `jetwork.journal.epoch`: the first write of a leadership term, a [`JournalBatch`] holding
//!   its `EpochStarted` event;
//! - `jetwork.journal.events`: a [`JournalBatch`] of events;
//! - `jetwork.journal.snapshot.data`: one part of a MessagePack-encoded [`State`];
//! - `jetwork.journal.snapshot.done`: a [`SnapshotMarker`] naming the parts just written.
//!
//! **Fencing.** Every write carries `Nats-Expected-Last-Sequence` = the sequence of the message
//! before it, so the leader's writes form one unbroken chain that starts at the stream tail it
//! replayed up to. A new leader's epoch write extends the tail it saw; from that moment every
//! write of a deposed leader (whose chain expects an older tail) is refused by the server with
//! "wrong last sequence", whatever the lease timing. Writes are pipelined (several in flight,
//! each expecting its predecessor), acknowledgements are checked in order, and any failure
//! ends the term: the leader stops, and whoever leads next resolves an ambiguous write by
//! replaying what is actually stored.

use std::collections::VecDeque;
use std::future::IntoFuture;
use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{pull::OrderedConfig, DeliverPolicy},
    context::PublishErrorKind,
    message::PublishMessage,
    stream::DirectGetErrorKind,
};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::StreamExt;
use jetwork_shared::{codec, headers, subjects};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::core::{JournalBatch, State};

/// A journal operation failed.
#[derive(Debug, Error)]
pub enum JournalError {
    /// Another master wrote to the journal: this one is deposed.
    #[error("fenced: the journal moved past sequence {expected} ({detail})")]
    Fenced { expected: u64, detail: String },
    /// The write's outcome is unknown or the stream could not be reached.
    #[error("journal unavailable: {0}")]
    Unavailable(String),
    /// A stored message cannot be read; a leader must not start from a journal it cannot read.
    #[error("journal message {seq} is unreadable: {detail}")]
    Corrupt { seq: u64, detail: String },
}

/// Names the parts of a snapshot, written after them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotMarker {
    /// Stream sequence of the first part. The snapshot is the state after every event stored
    /// before it; replay resumes here.
    pub first_seq: u64,
    pub parts: u32,
    pub bytes: u64,
    pub epoch: u64,
}

/// The state rebuilt from the journal, and where the journal ends.
#[derive(Debug)]
pub struct Replayed {
    pub state: State,
    /// The stream's last sequence when replay started: the new leader's chain begins here.
    pub last_seq: u64,
    /// Where event replay started (a snapshot's first part, or the stream's start).
    pub from_seq: u64,
    /// Events applied after the snapshot.
    pub events: u64,
}

/// Reads the journal: the latest snapshot, then every event after it.
pub async fn replay(js: &jetstream::Context) -> Result<Replayed, JournalError> {
    let unavailable = |e: &dyn std::fmt::Display| JournalError::Unavailable(e.to_string());
    let mut stream = js.get_stream(subjects::JOURNAL_STREAM).await.map_err(|e| unavailable(&e))?;
    let info = stream.info().await.map_err(|e| unavailable(&e))?.state.clone();
    let last_seq = info.last_sequence;
    let (mut state, from_seq) = match latest_snapshot(&stream).await? {
        Some((state, first_seq)) => (state, first_seq),
        None => (State::default(), info.first_sequence.max(1)),
    };
    let mut events = 0u64;
    if info.messages > 0 && from_seq <= last_seq {
        let consumer = stream
            .create_consumer(OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: from_seq },
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(&e))?;
        let mut messages = consumer.messages().await.map_err(|e| unavailable(&e))?;
        loop {
            let next = tokio::time::timeout(Duration::from_secs(10), messages.next()).await;
            let message = match next {
                Ok(Some(Ok(message))) => message,
                Ok(Some(Err(e))) => return Err(unavailable(&e)),
                Ok(None) => return Err(JournalError::Unavailable("replay stream ended".into())),
                Err(_) => return Err(JournalError::Unavailable("replay stalled for 10s".into())),
            };
            let seq = message.info().map_err(|e| unavailable(&e))?.stream_sequence;
            let subject = message.subject.as_str();
            if subject == subjects::JOURNAL_EVENTS || subject == subjects::JOURNAL_EPOCH {
                match codec::decode::<JournalBatch>(&message.payload) {
                    Ok(batch) => {
                        for event in &batch.events {
                            state.apply(event);
                        }
                        events += batch.events.len() as u64;
                    }
                    // Only a foreign publisher can put an unreadable message here (every
                    // leader write is an encoded batch); it carries no decision, so it is
                    // skipped. Restrict `jetwork.journal.>` to the master's user in production.
                    Err(e) => {
                        tracing::error!(seq, error = %e, "skipping an unreadable journal message")
                    }
                }
            }
            if seq >= last_seq {
                break;
            }
        }
    }
    Ok(Replayed { state, last_seq, from_seq, events })
}

/// The newest usable snapshot and where replay resumes after it. The newest marker is tried
/// first; if it is unusable (a foreign write on the marker subject) older ones are scanned.
async fn latest_snapshot(
    stream: &jetstream::stream::Stream,
) -> Result<Option<(State, u64)>, JournalError> {
    let unavailable = |e: &dyn std::fmt::Display| JournalError::Unavailable(e.to_string());
    let newest = match stream.direct_get_last_for_subject(subjects::JOURNAL_SNAPSHOT).await {
        Ok(message) => message,
        Err(e) if matches!(e.kind(), DirectGetErrorKind::NotFound) => return Ok(None),
        Err(e) => return Err(unavailable(&e)),
    };
    match usable_snapshot(stream, newest.sequence, &newest.payload).await {
        Ok(found) => return Ok(Some(found)),
        Err(e) => {
            tracing::error!(seq = newest.sequence, error = %e, "newest snapshot unusable; looking for an older one")
        }
    }
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: subjects::JOURNAL_SNAPSHOT.to_owned(),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable(&e))?;
    let mut messages = consumer.messages().await.map_err(|e| unavailable(&e))?;
    let mut markers = Vec::new();
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_secs(2), messages.next()).await
    {
        let seq = message.info().map_err(|e| unavailable(&e))?.stream_sequence;
        markers.push((seq, message.payload.clone()));
        if seq >= newest.sequence {
            break;
        }
    }
    for (seq, payload) in markers.into_iter().rev() {
        if let Ok(found) = usable_snapshot(stream, seq, &payload).await {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// Decodes the marker stored at `seq` and the parts it names, which the leader writes right
/// before it.
async fn usable_snapshot(
    stream: &jetstream::stream::Stream,
    seq: u64,
    payload: &[u8],
) -> Result<(State, u64), JournalError> {
    let marker: SnapshotMarker =
        codec::decode(payload).map_err(|e| JournalError::Corrupt { seq, detail: e.to_string() })?;
    if marker.first_seq.checked_add(u64::from(marker.parts)) != Some(seq) || marker.parts == 0 {
        return Err(JournalError::Corrupt {
            seq,
            detail: "marker does not follow its parts".into(),
        });
    }
    Ok((read_snapshot(stream, &marker).await?, marker.first_seq))
}

async fn read_snapshot(
    stream: &jetstream::stream::Stream,
    marker: &SnapshotMarker,
) -> Result<State, JournalError> {
    // The marker's size is only a hint (it comes from the stream): cap the reservation.
    let mut bytes = Vec::with_capacity(usize::try_from(marker.bytes.min(64 << 20)).unwrap_or(0));
    for index in 0..u64::from(marker.parts) {
        let seq = marker.first_seq + index;
        let part = stream.direct_get(seq).await.map_err(|e| JournalError::Corrupt {
            seq,
            detail: format!("snapshot part {} of {}: {e}", index + 1, marker.parts),
        })?;
        let expected = format!("{}/{}", index + 1, marker.parts);
        let label = part.headers.get(headers::SNAPSHOT_PART).map(|v| v.as_str().to_owned());
        if part.subject.as_str() != subjects::JOURNAL_SNAPSHOT_DATA
            || label.as_deref() != Some(&expected)
        {
            return Err(JournalError::Corrupt {
                seq,
                detail: format!("expected snapshot part {expected}"),
            });
        }
        bytes.extend_from_slice(&part.payload);
    }
    codec::decode(&bytes)
        .map_err(|e| JournalError::Corrupt { seq: marker.first_seq, detail: e.to_string() })
}

type AckFuture =
    BoxFuture<'static, Result<jetstream::publish::PublishAck, jetstream::context::PublishError>>;

/// The leader's writer: a fenced, pipelined chain of appends.
pub struct Journal {
    js: jetstream::Context,
    epoch: u64,
    /// Sequence the next write expects to follow (the last sequence issued in the chain).
    tail: u64,
    /// Writes in flight: (ticket, sequence expected for it, ack).
    inflight: FuturesOrdered<
        BoxFuture<'static, (u64, u64, Result<jetstream::publish::PublishAck, String>)>,
    >,
    issued: u64,
    acked: u64,
    /// Largest message the server accepts.
    max_message: usize,
    /// Stream sequences at which snapshot markers were written and not yet acknowledged.
    pending_markers: VecDeque<(u64, u64)>,
}

impl Journal {
    /// A writer for `epoch` continuing the chain after `last_seq` (the replayed tail).
    pub fn new(js: jetstream::Context, epoch: u64, last_seq: u64, max_message: usize) -> Self {
        Journal {
            js,
            epoch,
            tail: last_seq,
            inflight: FuturesOrdered::new(),
            issued: 0,
            acked: 0,
            max_message,
            pending_markers: VecDeque::new(),
        }
    }

    /// Largest payload one write may carry (headers get the rest of `max_payload`).
    pub fn max_payload(&self) -> usize {
        self.max_message.saturating_sub(1024)
    }

    /// Writes issued so far; a write's ticket is the value of this counter after issuing it.
    pub fn issued(&self) -> u64 {
        self.issued
    }

    /// Writes acknowledged so far, in order.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Writes awaiting acknowledgement.
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// Issues one write in the chain and returns its ticket.
    pub async fn append(
        &mut self,
        subject: &'static str,
        payload: Bytes,
    ) -> Result<u64, JournalError> {
        self.append_with(subject, payload, None).await
    }

    /// Encodes and issues an event batch (on `jetwork.journal.epoch` for the term's first).
    pub async fn append_batch(
        &mut self,
        batch: &JournalBatch,
        epoch_marker: bool,
    ) -> Result<u64, JournalError> {
        let payload = codec::encode(batch).map_err(|e| JournalError::Unavailable(e.to_string()))?;
        let subject = if epoch_marker { subjects::JOURNAL_EPOCH } else { subjects::JOURNAL_EVENTS };
        self.append(subject, payload).await
    }

    async fn append_with(
        &mut self,
        subject: &'static str,
        payload: Bytes,
        part: Option<String>,
    ) -> Result<u64, JournalError> {
        let expected = self.tail;
        let mut message = PublishMessage::build()
            .payload(payload)
            .expected_last_sequence(expected)
            .header(headers::EPOCH, self.epoch.to_string().as_str());
        if let Some(part) = part {
            message = message.header(headers::SNAPSHOT_PART, part.as_str());
        }
        let ack =
            self.js.send_publish(subject, message).await.map_err(|e| {
                JournalError::Unavailable(format!("cannot send journal write: {e}"))
            })?;
        self.tail += 1;
        self.issued += 1;
        let ticket = self.issued;
        let ack: AckFuture = Box::pin(ack.into_future());
        self.inflight.push_back(Box::pin(async move {
            let result = ack.await.map_err(|e| match e.kind() {
                PublishErrorKind::WrongLastSequence => format!("fenced:{e}"),
                _ => e.to_string(),
            });
            (ticket, expected, result)
        }));
        Ok(ticket)
    }

    /// Waits for the next acknowledgement, in issue order, and checks it landed where the
    /// chain expects. Pending forever when nothing is in flight.
    pub async fn next_ack(&mut self) -> Result<u64, JournalError> {
        let Some((ticket, expected, result)) = self.inflight.next().await else {
            return std::future::pending().await;
        };
        match result {
            Ok(ack) if ack.sequence == expected + 1 => {
                self.acked = ticket;
                Ok(ticket)
            }
            Ok(ack) => Err(JournalError::Fenced {
                expected,
                detail: format!("write landed at {} (duplicate: {})", ack.sequence, ack.duplicate),
            }),
            Err(detail) if detail.starts_with("fenced:") => {
                Err(JournalError::Fenced { expected, detail: detail["fenced:".len()..].to_owned() })
            }
            Err(detail) => Err(JournalError::Unavailable(detail)),
        }
    }

    /// Writes `state` as a snapshot: its parts, then the marker. Returns the marker's ticket
    /// and the snapshot's first sequence (replay starts there; history before it may go).
    pub async fn write_snapshot(&mut self, state: &State) -> Result<(u64, u64), JournalError> {
        let bytes = codec::encode(state).map_err(|e| JournalError::Unavailable(e.to_string()))?;
        let part_size = self.max_payload().clamp(1024, 512 * 1024);
        let parts: Vec<Bytes> = if bytes.is_empty() {
            vec![Bytes::new()]
        } else {
            bytes.chunks(part_size).map(Bytes::copy_from_slice).collect()
        };
        let first_seq = self.tail + 1;
        let count = parts.len();
        for (index, part) in parts.into_iter().enumerate() {
            let label = format!("{}/{count}", index + 1);
            self.append_with(subjects::JOURNAL_SNAPSHOT_DATA, part, Some(label)).await?;
        }
        let marker = SnapshotMarker {
            first_seq,
            parts: u32::try_from(count).unwrap_or(u32::MAX),
            bytes: bytes.len() as u64,
            epoch: self.epoch,
        };
        let payload =
            codec::encode(&marker).map_err(|e| JournalError::Unavailable(e.to_string()))?;
        let ticket = self.append(subjects::JOURNAL_SNAPSHOT, payload).await?;
        self.pending_markers.push_back((ticket, first_seq));
        Ok((ticket, first_seq))
    }

    /// The first sequence of the newest snapshot whose marker is now acknowledged, if a new
    /// one is.
    pub fn take_confirmed_snapshot(&mut self) -> Option<u64> {
        let mut confirmed = None;
        while let Some(&(ticket, first_seq)) = self.pending_markers.front() {
            if ticket > self.acked {
                break;
            }
            confirmed = Some(first_seq);
            self.pending_markers.pop_front();
        }
        confirmed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_marker_round_trips() {
        let marker = SnapshotMarker { first_seq: 10, parts: 2, bytes: 700_000, epoch: 3 };
        let bytes = codec::encode(&marker).unwrap();
        assert_eq!(codec::decode::<SnapshotMarker>(&bytes).unwrap(), marker);
    }
}
