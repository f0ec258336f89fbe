//! Replay: rebuilding the state from `JETWORK_JOURNAL` when a candidate wins the lease.
//!
//! The state is the newest usable snapshot plus every event stored after it, up to the
//! stream's last sequence when replay began. Replay refuses to guess:
//! - a read that fails (timeout, no responders, a stream leader election) is
//!   [`ReplayError::Unavailable`]: the candidate gives the lease back and tries again later;
//!   it is never mistaken for a missing or corrupt message;
//! - reads that must be current (the newest marker, snapshot parts) go to the stream leader,
//!   never to a replica that may lag;
//! - events are read one sequence after the other from exactly where the snapshot says, and
//!   a hole in that range stops the takeover;
//! - a message outside the fenced chain of leader writes ([`Chain`]) is logged and left out;
//!   a message inside it that cannot be decoded stops the takeover
//!   ([`ReplayError::Broken`], explained): skipping it would silently drop decisions;
//! - once history has been purged (the stream no longer starts at 1), there is no falling
//!   back to an empty state: without a usable snapshot the takeover stops, because an empty
//!   state would forget accepted work and re-run finished submissions.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{pull::OrderedConfig, DeliverPolicy},
    message::StreamMessage,
    stream::{LastRawMessageErrorKind, Stream},
};
use async_nats::HeaderMap;
use futures::StreamExt;
use jetwork_shared::{codec, headers, subjects};
use thiserror::Error;

use super::chain::{self, Chain};
use super::{SnapshotMarker, FORMAT};
use crate::core::{JournalBatch, State};

/// Why a journal could not be replayed.
#[derive(Debug, Error)]
pub enum ReplayError {
    /// The journal could not be read right now; try again.
    #[error("journal unavailable: {0}")]
    Unavailable(String),
    /// What is stored cannot be turned into a state without guessing; an operator must look.
    #[error("journal cannot be replayed: {0}")]
    Broken(String),
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
    /// Messages left out because they were not written by a leader.
    pub foreign: u64,
}

/// A snapshot that can be replayed from.
struct Snapshot {
    state: State,
    /// Its first part: replay resumes here.
    first_seq: u64,
    /// The term that wrote it.
    epoch: u64,
}

/// Why a snapshot cannot be used (a reason to try an older one, not to stop).
type Unusable = String;

/// Reads the journal for a candidate holding lease revision `epoch`: the latest snapshot,
/// then every event after it.
pub async fn replay(js: &jetstream::Context, epoch: u64) -> Result<Replayed, ReplayError> {
    let unavailable = |e: &dyn std::fmt::Display| ReplayError::Unavailable(e.to_string());
    let mut stream = js.get_stream(subjects::JOURNAL_STREAM).await.map_err(|e| unavailable(&e))?;
    let info = stream.info().await.map_err(|e| unavailable(&e))?.state.clone();
    let (first_seq, last_seq) = (info.first_sequence, info.last_sequence);
    if info.messages == 0 {
        if last_seq == 0 {
            return Ok(Replayed {
                state: State::default(),
                last_seq,
                from_seq: 1,
                events: 0,
                foreign: 0,
            });
        }
        return Err(ReplayError::Broken(format!(
            "the journal is empty but has held {last_seq} messages: its whole history was \
             purged, so accepted work and finished submissions are unknown"
        )));
    }
    let snapshot = newest_snapshot(&stream, first_seq, epoch).await?;
    let (mut state, from_seq, mut chain) = match snapshot {
        Some(s) => (s.state, s.first_seq, Chain::new(epoch, s.epoch)),
        None if first_seq <= 1 => (State::default(), 1, Chain::new(epoch, 0)),
        None => {
            return Err(ReplayError::Broken(format!(
                "history before sequence {first_seq} was purged and no snapshot at or after \
                 it can be read; replaying what is left would forget work accepted before it"
            )))
        }
    };
    let mut replayed =
        Replayed { state: State::default(), last_seq, from_seq, events: 0, foreign: 0 };
    // An ordered consumer recreates itself when its deliveries skip; the stream-sequence
    // check below refuses any hole that is left.
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: from_seq },
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable(&e))?;
    let mut messages = consumer.messages().await.map_err(|e| unavailable(&e))?;
    let mut expected = from_seq;
    // Only up to `last_seq`: a foreign write landing meanwhile is not this replay's business
    // (the new leader's fenced first write fails on it, and the takeover starts over).
    while expected <= last_seq {
        // Bounded: a candidate stuck reading would hold the lease while no one leads.
        let message = match tokio::time::timeout(Duration::from_secs(10), messages.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(e))) => return Err(unavailable(&e)),
            Ok(None) => return Err(ReplayError::Unavailable("replay stream ended".into())),
            Err(_) => return Err(ReplayError::Unavailable("replay stalled for 10s".into())),
        };
        let seq = message.info().map_err(|e| unavailable(&e))?.stream_sequence;
        if seq != expected {
            return Err(ReplayError::Broken(format!(
                "the journal has a hole: sequence {seq} follows {}",
                expected - 1
            )));
        }
        expected += 1;
        let subject = message.subject.as_str();
        let (epoch_header, fence) = chain_headers(message.headers.as_ref());
        if let Err(why) = chain.admit(seq, subject, epoch_header, fence) {
            tracing::error!(seq, subject, %why, "left out a journal message not written by a leader");
            replayed.foreign += 1;
            continue;
        }
        readable(seq, message.headers.as_ref())?;
        if subject == subjects::JOURNAL_EVENTS || subject == subjects::JOURNAL_EPOCH {
            let batch: JournalBatch = codec::decode(&message.payload).map_err(|e| {
                ReplayError::Broken(format!(
                    "journal message {seq} (epoch {}) cannot be decoded: {e}; it was written \
                     by a leader, so skipping it would drop decisions (written by a newer \
                     jetwork version?)",
                    chain.term()
                ))
            })?;
            for event in &batch.events {
                state.apply(event);
            }
            replayed.events += batch.events.len() as u64;
        }
    }
    replayed.state = state;
    Ok(replayed)
}

/// The newest snapshot that can be used, looking at older markers when the newest one cannot.
async fn newest_snapshot(
    stream: &Stream,
    first_seq: u64,
    epoch: u64,
) -> Result<Option<Snapshot>, ReplayError> {
    let newest = match stream.get_last_raw_message_by_subject(subjects::JOURNAL_SNAPSHOT).await {
        Ok(message) => message,
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
        Err(e) => return Err(ReplayError::Unavailable(format!("newest snapshot marker: {e}"))),
    };
    let newest_seq = newest.sequence;
    match usable(stream, newest_seq, &newest.headers, &newest.payload, first_seq, epoch).await? {
        Ok(snapshot) => return Ok(Some(snapshot)),
        Err(why) => {
            tracing::error!(seq = newest_seq, %why, "newest snapshot unusable; looking for an older one")
        }
    }
    let older = older_markers(stream, first_seq, newest_seq).await?;
    for (seq, headers, payload) in older.into_iter().rev() {
        match usable(stream, seq, &headers, &payload, first_seq, epoch).await? {
            Ok(snapshot) => return Ok(Some(snapshot)),
            Err(why) => tracing::error!(seq, %why, "older snapshot unusable"),
        }
    }
    Ok(None)
}

/// Every marker stored before `newest_seq`, oldest first.
async fn older_markers(
    stream: &Stream,
    first_seq: u64,
    newest_seq: u64,
) -> Result<Vec<(u64, HeaderMap, bytes::Bytes)>, ReplayError> {
    let unavailable = |e: &dyn std::fmt::Display| ReplayError::Unavailable(e.to_string());
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: subjects::JOURNAL_SNAPSHOT.to_owned(),
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: first_seq.max(1) },
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable(&e))?;
    let mut messages = consumer.messages().await.map_err(|e| unavailable(&e))?;
    let mut markers = Vec::new();
    loop {
        let message = match tokio::time::timeout(Duration::from_secs(10), messages.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(e))) => return Err(unavailable(&e)),
            Ok(None) => return Err(ReplayError::Unavailable("marker scan ended".into())),
            Err(_) => return Err(ReplayError::Unavailable("marker scan stalled for 10s".into())),
        };
        let seq = message.info().map_err(|e| unavailable(&e))?.stream_sequence;
        // The newest marker was already judged; it is always stored, so the scan ends.
        if seq >= newest_seq {
            return Ok(markers);
        }
        markers.push((seq, message.headers.clone().unwrap_or_default(), message.payload.clone()));
    }
}

/// Reads the snapshot whose marker is stored at `seq`. The outer error stops the takeover
/// (unavailable, or undecodable although written by a leader); the inner one only rules this
/// snapshot out.
async fn usable(
    stream: &Stream,
    seq: u64,
    headers: &HeaderMap,
    payload: &[u8],
    first_seq: u64,
    limit: u64,
) -> Result<Result<Snapshot, Unusable>, ReplayError> {
    let (epoch_header, fence) = chain_headers(Some(headers));
    let epoch = match chain::written_by(limit, seq, epoch_header, fence) {
        Ok(epoch) => epoch,
        Err(why) => return Ok(Err(format!("marker not written by a leader: {why}"))),
    };
    readable(seq, Some(headers))?;
    let marker: SnapshotMarker = match codec::decode(payload) {
        Ok(marker) => marker,
        Err(e) => return Ok(Err(format!("undecodable marker: {e}"))),
    };
    if marker.parts == 0 || marker.first_seq.checked_add(u64::from(marker.parts)) != Some(seq) {
        return Ok(Err("marker does not follow its parts".into()));
    }
    if marker.first_seq < first_seq {
        return Ok(Err(format!("its parts were purged (the journal starts at {first_seq})")));
    }
    // The marker's size is a hint, not a promise: a forged one must not reserve gigabytes.
    let mut bytes = Vec::with_capacity(usize::try_from(marker.bytes.min(64 << 20)).unwrap_or(0));
    for index in 0..u64::from(marker.parts) {
        let part_seq = marker.first_seq + index;
        let part = match stream.get_raw_message(part_seq).await {
            Ok(part) => part,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
                return Ok(Err(format!("part {} of {} is gone", index + 1, marker.parts)))
            }
            Err(e) => {
                return Err(ReplayError::Unavailable(format!("snapshot part {part_seq}: {e}")))
            }
        };
        if let Err(why) = check_part(&part, part_seq, index, &marker, epoch, limit) {
            return Ok(Err(why));
        }
        bytes.extend_from_slice(&part.payload);
    }
    match codec::decode(&bytes) {
        Ok(state) => Ok(Ok(Snapshot { state, first_seq: marker.first_seq, epoch })),
        Err(e) => Err(ReplayError::Broken(format!(
            "the snapshot at {} (epoch {epoch}) cannot be decoded: {e} (written by a newer \
             jetwork version?)",
            marker.first_seq
        ))),
    }
}

/// Checks that a stored part is the one the marker names, written by the same term.
fn check_part(
    part: &StreamMessage,
    seq: u64,
    index: u64,
    marker: &SnapshotMarker,
    epoch: u64,
    limit: u64,
) -> Result<(), Unusable> {
    let (epoch_header, fence) = chain_headers(Some(&part.headers));
    let written = chain::written_by(limit, seq, epoch_header, fence)?;
    let expected = format!("{}/{}", index + 1, marker.parts);
    let label = part.headers.get(headers::SNAPSHOT_PART).map(|v| v.as_str());
    if part.subject.as_str() != subjects::JOURNAL_SNAPSHOT_DATA || label != Some(&expected) {
        return Err(format!("sequence {seq} is not snapshot part {expected}"));
    }
    if written != epoch {
        return Err(format!("part {expected} was written by epoch {written}, not {epoch}"));
    }
    Ok(())
}

/// Refuses a leader's message written in a newer format than this master reads: applying it
/// half-understood, or skipping it, would both diverge from the leader that wrote it.
fn readable(seq: u64, headers: Option<&HeaderMap>) -> Result<(), ReplayError> {
    // No header: written before formats were numbered, which is format 1.
    let format = headers
        .and_then(|h| h.get(headers::JOURNAL_FORMAT))
        .map_or(Ok(1), |v| v.as_str().parse::<u32>())
        .map_err(|_| {
            ReplayError::Broken(format!("journal message {seq} has a malformed format"))
        })?;
    if format > FORMAT {
        return Err(ReplayError::Broken(format!(
            "journal message {seq} is in format {format}, written by a newer jetwork; this master \
             reads formats up to {FORMAT}: upgrade it (see \"Upgrades\" in docs/architecture.md)"
        )));
    }
    Ok(())
}

/// The `Jetwork-Epoch` and `Nats-Expected-Last-Sequence` headers of a stored message.
fn chain_headers(headers: Option<&HeaderMap>) -> (Option<&str>, Option<&str>) {
    let get = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
    (get(headers::EPOCH), get(headers::NATS_EXPECTED_LAST_SEQUENCE))
}
