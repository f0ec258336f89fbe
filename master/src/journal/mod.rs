//! The journal: the `JETWORK_JOURNAL` stream, written only by the leader, read back (from the
//! latest snapshot) by every new leader ([`replay`]).
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
//! each expecting its predecessor) and acknowledgements are checked in order.
//!
//! **Riding through a blip.** Every write also carries `Nats-Msg-Id: j<epoch>-<sequence>`, so
//! its outcome can be learnt from the stream when its acknowledgement is lost. A write whose
//! acknowledgement does not come within [`ACK_TIMEOUT`] (a blip of the link, a stream electing
//! its leader) is not the end of the term: [`Journal::recover`] asks the stream leader what
//! the chain's next sequence holds. This write (by its msg-id) means it landed; nothing means
//! it did not, and it is sent again with the same msg-id and expectation (in R3 a copy that
//! lands twice is a duplicate the server drops; in R1 the second is refused by the
//! expectation and looked up again); anything else means another leader wrote there: fenced.
//! It tries as long as the lease is valid; then the term ends, and whoever leads next
//! resolves what is left by replaying what is actually stored. The fence is unchanged: a late
//! copy of a write can only land where the chain expects it, so it can never land twice.
//!
//! **Cancel-safe acknowledgements.** The leader races [`Journal::next_ack`] against its other
//! inputs, so it may be dropped at any await. A write leaves the in-flight count only once
//! its outcome is returned: one refused as out of place stays `unsettled` while the stream is
//! asked whose message is there, and the next call asks again. It counts as in flight
//! meanwhile, so group commit and back-pressure wait for it as for any other write; before, a
//! dropped check lost the refusal, and the leader wrote on behind a write that never landed.

mod chain;
#[cfg(test)]
mod cost_test;
mod replay;

use std::collections::VecDeque;
use std::future::IntoFuture;
use std::time::{Duration, Instant};

use async_nats::jetstream::{
    self, context::PublishErrorKind, message::PublishMessage, stream::LastRawMessageErrorKind,
};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::StreamExt;
use jetwork_shared::observe::AtomicHistogram;
use jetwork_shared::{codec, headers, subjects};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::core::{JournalBatch, State};

pub use chain::Chain;

/// The journal encoding this master writes and the newest it reads (header `Jetwork-Format`,
/// absent meaning 1). Change it with any change an older master could not decode — a new
/// event kind, a field it would need — and keep decoding the older formats; the golden
/// encodings in `core/format_test.rs` fail until you do. `docs/architecture.md` ("Upgrades")
/// says how masters of two formats coexist.
///
/// 1. The first numbered format.
/// 2. Job lifecycle: back-off waits (`WorkRequeued.not_before`, `WorkDue`), cancellations,
///    queue pauses, attempt start times and histories.
/// 3. Per-job options (`WorkAccepted.options`: delay, priority, attempts, timeout, expiry),
///    priority lanes and the expiry index in snapshots, schedules, purges.
/// 4. Priority jumps (`WorkAccepted.jumped`, `SubmissionPassed`, `QueueState.jumped`).
/// 5. The master's own submissions on `jetwork.internal.<queue>` taken only against its
///    journaled decisions: operator retries decided by the engine (`RetryDecided`,
///    `State::retries`), ticks pending until read back (`ScheduleFired.key`,
///    `SubmissionsStored`, `PendingDropped`), `EpochStarted.legacy_through`; the ids of jumped
///    submissions (`QueueState.jumped_ids`); the time to start a retry keeps
///    (`JobOptions.expires_after`, options on failed and cancelled publications).
/// 6. Worker logins (`WorkerRegistered.login`, `Worker.login` in snapshots): a worker bound to
///    a login gets its notices on subjects with it, which an older master would not use.
pub const FORMAT: u32 = 6;
pub use replay::{replay, ReplayError, Replayed};

/// A journal operation failed.
#[derive(Debug, Error)]
pub enum JournalError {
    /// Another master wrote to the journal: this one is deposed.
    #[error("fenced: the journal moved past sequence {expected} ({detail})")]
    Fenced { expected: u64, detail: String },
    /// The write's outcome is unknown or the stream could not be reached.
    #[error("journal unavailable: {0}")]
    Unavailable(String),
    /// JetStream refused the write for lack of room (the journal's cap, the store): sending
    /// it again would be refused again.
    #[error("journal refused the write: {0}")]
    Refused(String),
    /// A batch or snapshot could not be encoded (a bug: nothing was written).
    #[error("cannot encode a journal write: {0}")]
    Encode(#[from] jetwork_shared::codec::CodecError),
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

/// How long a journal write waits for its acknowledgement before the leader asks the stream
/// whether it landed ([`Journal::recover`]). Short: a late acknowledgement only costs a read,
/// while a lost one would otherwise hold every decision for `nats.request_timeout`.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one look-up of a write's outcome may take, and the pause between look-ups while
/// the stream cannot answer.
const LOOKUP_TIMEOUT: Duration = Duration::from_millis(500);
const LOOKUP_PAUSE: Duration = Duration::from_millis(200);

/// What JetStream stores for a journal message besides its payload, estimated generously:
/// the subject, the headers (epoch, format, expected sequence, snapshot part) and the
/// record's framing.
const STORED_OVERHEAD: usize = 256;

/// A state encoded into the parts of a snapshot, ready to be written. Encoding is the costly
/// part of a snapshot (100k held items: ~17 MB), so the leader does it off its loop, on a copy
/// of the state.
#[derive(Debug)]
pub struct EncodedSnapshot {
    parts: Vec<Bytes>,
    bytes: u64,
}

impl EncodedSnapshot {
    /// Encodes `state` into parts of `part_size` bytes ([`Journal::part_size`]). Encoded
    /// straight into parts: a large state is held once more while it is written, not also in
    /// a growing buffer and in copied parts.
    pub fn encode(state: &State, part_size: usize) -> Result<Self, JournalError> {
        let mut parts = Parts::new(part_size);
        codec::encode_into(&mut parts, state)?;
        let (parts, bytes) = parts.finish();
        Ok(EncodedSnapshot { parts, bytes })
    }

    /// The encoding's size.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

type AckResult = Result<jetstream::publish::PublishAck, jetstream::context::PublishError>;
type AckFuture = BoxFuture<'static, AckResult>;

/// A write issued and not yet acknowledged: all it takes to send it again.
#[derive(Debug, Clone)]
struct Write {
    ticket: u64,
    /// The sequence it follows; it lands at `expected + 1` or nowhere.
    expected: u64,
    subject: &'static str,
    payload: Bytes,
    part: Option<String>,
}

impl Write {
    /// Its `Nats-Msg-Id`: unique to its place in this term's chain.
    fn msg_id(&self, epoch: u64) -> String {
        format!("j{epoch}-{}", self.expected + 1)
    }
}

/// The leader's writer: a fenced, pipelined chain of appends.
pub struct Journal {
    js: jetstream::Context,
    epoch: u64,
    /// Sequence the next write expects to follow (the last sequence issued in the chain).
    tail: u64,
    /// Writes in flight: (ticket, sequence expected for it, ack, when it was sent).
    inflight: FuturesOrdered<BoxFuture<'static, (u64, u64, AckResult, Instant)>>,
    /// The write taken out of `inflight` whose refusal ("wrong last sequence") is being
    /// checked against the stream: (ticket, sequence expected, the refusal). Kept here until
    /// the check ends, so a [`Journal::next_ack`] dropped mid-check (it is raced in the
    /// leader's `select!`) makes the check again on the next call instead of losing the write.
    unsettled: Option<(u64, u64, String)>,
    /// The writes issued and not acknowledged, in order (what [`Journal::recover`] resends).
    unacked: VecDeque<Write>,
    issued: u64,
    acked: u64,
    /// Largest message the server accepts.
    max_message: usize,
    /// Stream sequences at which snapshot markers were written and not yet acknowledged.
    pending_markers: VecDeque<(u64, u64)>,
    /// See [`Journal::written_bytes`].
    written_bytes: u64,
    /// Where write round trips are recorded, when metrics are on.
    write_seconds: Option<AtomicHistogram>,
}

impl Journal {
    /// A writer for `epoch` continuing the chain after `last_seq` (the replayed tail).
    pub fn new(js: jetstream::Context, epoch: u64, last_seq: u64, max_message: usize) -> Self {
        Journal {
            js,
            epoch,
            tail: last_seq,
            inflight: FuturesOrdered::new(),
            unsettled: None,
            unacked: VecDeque::new(),
            issued: 0,
            acked: 0,
            max_message,
            pending_markers: VecDeque::new(),
            written_bytes: 0,
            write_seconds: None,
        }
    }

    /// Records every write's round trip (send to acknowledgement) in `histogram`.
    pub fn observe_writes(&mut self, histogram: AtomicHistogram) {
        self.write_seconds = Some(histogram);
    }

    /// Largest payload one write may carry (headers get the rest of `max_payload`).
    pub fn max_payload(&self) -> usize {
        self.max_message.saturating_sub(1024)
    }

    /// The sequence of the last write issued (where the chain ends as far as this leader
    /// knows): a stored message beyond it was written by someone else.
    pub fn tail(&self) -> u64 {
        self.tail
    }

    /// Writes issued so far; a write's ticket is the value of this counter after issuing it.
    pub fn issued(&self) -> u64 {
        self.issued
    }

    /// Writes acknowledged so far, in order.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Writes awaiting acknowledgement (one whose refusal is being checked included).
    pub fn inflight(&self) -> usize {
        self.inflight.len() + usize::from(self.unsettled.is_some())
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
        let payload = codec::encode(batch)?;
        let subject = if epoch_marker { subjects::JOURNAL_EPOCH } else { subjects::JOURNAL_EVENTS };
        self.append(subject, payload).await
    }

    async fn append_with(
        &mut self,
        subject: &'static str,
        payload: Bytes,
        part: Option<String>,
    ) -> Result<u64, JournalError> {
        let write = Write { ticket: self.issued + 1, expected: self.tail, subject, payload, part };
        let payload_len = write.payload.len();
        self.send(&write).await?;
        self.tail += 1;
        self.issued += 1;
        self.written_bytes += (payload_len + STORED_OVERHEAD) as u64;
        self.unacked.push_back(write);
        Ok(self.issued)
    }

    /// Sends `write` (again, after a lost acknowledgement) and puts its acknowledgement in
    /// line.
    async fn send(&mut self, write: &Write) -> Result<(), JournalError> {
        let mut message = PublishMessage::build()
            .payload(write.payload.clone())
            .expected_last_sequence(write.expected)
            .message_id(write.msg_id(self.epoch))
            .header(headers::EPOCH, self.epoch.to_string().as_str())
            .header(headers::JOURNAL_FORMAT, FORMAT.to_string().as_str());
        if let Some(part) = &write.part {
            message = message.header(headers::SNAPSHOT_PART, part.as_str());
        }
        let ack =
            self.js.send_publish(write.subject, message).await.map_err(|e| {
                JournalError::Unavailable(format!("cannot send journal write: {e}"))
            })?;
        let (ticket, expected) = (write.ticket, write.expected);
        let sent = Instant::now();
        let ack = async move {
            match tokio::time::timeout(ACK_TIMEOUT, ack.into_future()).await {
                Ok(result) => result,
                Err(_) => Err(PublishErrorKind::TimedOut.into()),
            }
        };
        let ack: AckFuture = Box::pin(ack);
        self.inflight.push_back(Box::pin(async move { (ticket, expected, ack.await, sent) }));
        Ok(())
    }

    /// Waits for the next acknowledgement, in issue order, and checks it landed where the
    /// chain expects. Pending forever when nothing is in flight. An error other than
    /// [`JournalError::Fenced`] leaves the write's outcome to [`Journal::recover`].
    ///
    /// Cancel-safe: dropped before it returns, it has lost nothing (an acknowledgement is
    /// taken from `inflight` only when ready, and a refusal being checked stays in
    /// `unsettled`), so the leader may race it against its other inputs.
    pub async fn next_ack(&mut self) -> Result<u64, JournalError> {
        if self.unsettled.is_none() {
            let Some((ticket, expected, result, sent)) = self.inflight.next().await else {
                return std::future::pending().await;
            };
            if let Some(settled) = self.acknowledged(ticket, expected, result, sent) {
                return settled;
            }
        }
        let Some((ticket, expected, refusal)) = self.unsettled.clone() else {
            return std::future::pending().await;
        };
        let landed = self.landed(ticket, expected).await;
        self.unsettled = None;
        match landed {
            Ok(true) => {
                self.confirmed(ticket);
                Ok(ticket)
            }
            Ok(false) => Err(JournalError::Fenced { expected, detail: refusal }),
            Err(read) => Err(JournalError::Unavailable(format!("{refusal}; then {read}"))),
        }
    }

    /// What the acknowledgement of write `ticket` says, or `None` when it was refused as out
    /// of place ("wrong last sequence") and only the stream can tell (now `unsettled`).
    fn acknowledged(
        &mut self,
        ticket: u64,
        expected: u64,
        result: AckResult,
        sent: Instant,
    ) -> Option<Result<u64, JournalError>> {
        if let Some(histogram) = &self.write_seconds {
            histogram.observe(sent.elapsed().as_secs_f64());
        }
        let settled = match result {
            Ok(ack) if ack.sequence == expected + 1 => {
                self.confirmed(ticket);
                Ok(ticket)
            }
            Ok(ack) => Err(JournalError::Fenced {
                expected,
                detail: format!("write landed at {} (duplicate: {})", ack.sequence, ack.duplicate),
            }),
            // In R1 the expectation is checked before the msg-id: a copy of a write that has
            // landed already (sent again by `recover`) is refused this way. Only the stream
            // can tell whether it was this write or another leader's.
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                self.unsettled = Some((ticket, expected, e.to_string()));
                return None;
            }
            // A store or cap that is full answers the same to every copy: nothing to look up
            // or send again (other answers, such as a cluster between leaders, pass).
            Err(e) if jetwork_shared::refusal::Refusal::of(&e).is_some_and(|r| r.is_storage()) => {
                Err(JournalError::Refused(e.to_string()))
            }
            Err(e) => Err(JournalError::Unavailable(e.to_string())),
        };
        Some(settled)
    }

    /// Write `ticket` is acknowledged (acknowledgements come in order).
    fn confirmed(&mut self, ticket: u64) {
        while self.unacked.front().is_some_and(|w| w.ticket <= ticket) {
            self.unacked.pop_front();
        }
        self.acked = self.acked.max(ticket);
    }

    /// Whether write `ticket`, expecting `expected`, is stored at `expected + 1`: asked of
    /// the stream leader. `Ok(false)` means another write is there.
    async fn landed(&mut self, ticket: u64, expected: u64) -> Result<bool, String> {
        let Some(write) = self.unacked.iter().find(|w| w.ticket == ticket).cloned() else {
            return Ok(true);
        };
        match Self::stored_at(&self.js, expected + 1).await? {
            Some(id) => Ok(id == write.msg_id(self.epoch)),
            None => Err(format!("nothing stored at {} yet", expected + 1)),
        }
    }

    /// The msg-id of the message at `seq`, `None` if there is none (yet), read from the
    /// stream leader (a replica may lag behind the write).
    async fn stored_at(js: &jetstream::Context, seq: u64) -> Result<Option<String>, String> {
        let read = async {
            let stream =
                js.get_stream_no_info(subjects::JOURNAL_STREAM).await.map_err(|e| e.to_string())?;
            match stream.get_raw_message(seq).await {
                Ok(message) => Ok(Some(
                    message
                        .headers
                        .get(headers::NATS_MSG_ID)
                        .map(|v| v.as_str().to_owned())
                        .unwrap_or_default(),
                )),
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        };
        tokio::time::timeout(LOOKUP_TIMEOUT, read)
            .await
            .unwrap_or_else(|_| Err(format!("reading sequence {seq} timed out")))
    }

    /// After an acknowledgement was lost ([`JournalError::Unavailable`] from
    /// [`Journal::next_ack`]): learns from the stream which unacknowledged writes landed and
    /// sends the rest again, in order, with their msg-ids and expectations. Tries while
    /// `valid()` (the lease) holds. `Ok` once every write is either acknowledged or sent
    /// again (their acknowledgements then come through [`Journal::next_ack`] as usual).
    pub async fn recover(&mut self, valid: impl Fn() -> bool) -> Result<(), JournalError> {
        // The acknowledgements still awaited may yet come, but they are no longer needed:
        // the stream itself says what landed.
        self.inflight = FuturesOrdered::new();
        self.unsettled = None;
        let mut last_error = String::new();
        loop {
            let Some(write) = self.unacked.front().cloned() else {
                return Ok(());
            };
            if !valid() {
                return Err(JournalError::Unavailable(format!(
                    "the lease ran out before the journal could be reached: {last_error}"
                )));
            }
            match Self::stored_at(&self.js, write.expected + 1).await {
                Ok(Some(id)) if id == write.msg_id(self.epoch) => self.confirmed(write.ticket),
                Ok(Some(id)) => {
                    return Err(JournalError::Fenced {
                        expected: write.expected,
                        detail: format!("sequence {} holds {id:?}", write.expected + 1),
                    })
                }
                Ok(None) => {
                    let again: Vec<Write> = self.unacked.iter().cloned().collect();
                    tracing::info!(
                        epoch = self.epoch,
                        writes = again.len(),
                        from = write.expected + 1,
                        "journal writes lost in a blip; sending them again"
                    );
                    for write in &again {
                        self.send(write).await?;
                    }
                    return Ok(());
                }
                Err(e) => {
                    last_error = e;
                    tokio::time::sleep(LOOKUP_PAUSE).await;
                }
            }
        }
    }

    /// The size of a snapshot's parts. Replay reads parts from the stream leader, whose
    /// replies carry the payload in base64 (4 bytes per 3): a part's reply must stay within
    /// the server's message limit.
    pub fn part_size(&self) -> usize {
        (self.max_payload().saturating_sub(4096) / 4 * 3).clamp(1024, 512 * 1024)
    }

    /// Bytes of every write issued so far, with what JetStream stores besides the payload
    /// (subject, headers, framing) estimated: how much this leader has added to the journal.
    pub fn written_bytes(&self) -> u64 {
        self.written_bytes
    }

    /// What this leader has written to the journal and had acknowledged (bytes, counted as
    /// [`Journal::written_bytes`] counts them): a figure of the stream's size read now
    /// includes at least this much of it.
    pub fn acked_bytes(&self) -> u64 {
        let unacked: u64 =
            self.unacked.iter().map(|w| (w.payload.len() + STORED_OVERHEAD) as u64).sum();
        self.written_bytes.saturating_sub(unacked)
    }

    /// Writes an encoded state ([`EncodedSnapshot::encode`]) as a snapshot: its parts, then
    /// the marker. The state must be the one after every event issued so far (no event may
    /// be written between taking it and this call: replay resumes at the first part). Returns
    /// the marker's ticket and the snapshot's first sequence (history before it may go).
    pub async fn write_snapshot(
        &mut self,
        encoded: EncodedSnapshot,
    ) -> Result<(u64, u64), JournalError> {
        let EncodedSnapshot { parts, bytes } = encoded;
        let first_seq = self.tail + 1;
        let count = parts.len();
        for (index, part) in parts.into_iter().enumerate() {
            let label = format!("{}/{count}", index + 1);
            self.append_with(subjects::JOURNAL_SNAPSHOT_DATA, part, Some(label)).await?;
        }
        let marker = SnapshotMarker {
            first_seq,
            parts: u32::try_from(count).unwrap_or(u32::MAX),
            bytes,
            epoch: self.epoch,
        };
        let payload = codec::encode(&marker)?;
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

/// A writer that keeps what is written in parts of `size` bytes, each its own allocation.
struct Parts {
    size: usize,
    done: Vec<Bytes>,
    current: Vec<u8>,
    total: u64,
}

impl Parts {
    fn new(size: usize) -> Self {
        Parts { size, done: Vec::new(), current: Vec::new(), total: 0 }
    }

    /// The parts (at least one, possibly empty) and their total length.
    fn finish(mut self) -> (Vec<Bytes>, u64) {
        if !self.current.is_empty() || self.done.is_empty() {
            self.done.push(Bytes::from(self.current));
        }
        (self.done, self.total)
    }
}

impl std::io::Write for Parts {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            if self.current.len() >= self.size {
                let full = std::mem::replace(&mut self.current, Vec::with_capacity(self.size));
                self.done.push(Bytes::from(full));
            }
            if self.current.capacity() == 0 {
                self.current.reserve_exact(self.size);
            }
            let n = (self.size - self.current.len()).min(rest.len());
            self.current.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
        self.total += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod parts_tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn parts_hold_the_encoding_in_pieces_of_the_part_size() {
        let state = State { leader: "x".repeat(5000), ..State::default() };
        let whole = codec::encode(&state).unwrap();
        let mut parts = Parts::new(1024);
        codec::encode_into(&mut parts, &state).unwrap();
        let (parts, total) = parts.finish();
        assert_eq!(total, whole.len() as u64);
        assert!(parts.iter().all(|p| p.len() <= 1024) && parts.len() == whole.len().div_ceil(1024));
        assert_eq!(parts.concat(), whole.to_vec(), "the same bytes as one encoding");
        let (empty, total) = Parts::new(1024).finish();
        assert_eq!((empty, total), (vec![Bytes::new()], 0), "one empty part for nothing");
        let mut exact = Parts::new(4);
        exact.write_all(b"12345678").unwrap();
        assert_eq!(
            exact.finish().0,
            vec![Bytes::from_static(b"1234"), Bytes::from_static(b"5678")]
        );
    }
}
