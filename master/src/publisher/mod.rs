//! Publishing finished work to `JETWORK_RESULTS`: the outcome of a run on
//! `jetwork.outcomes.<queue>.<work id>` (the stream republishes it, once, on
//! `jetwork.results.<queue>.<work id>` for live subscribers), the rejection of a submission on
//! `jetwork.rejected.<queue>.<submit seq>`.
//!
//! A publication is started only after the event that calls for it is journaled, and it stays
//! in the state's `unpublished` set until the stream has acknowledged it and that fact is
//! journaled too (`Published`). A leader that dies in between leaves it in `unpublished`, and
//! the next leader publishes it again.
//!
//! **Fenced per subject, not by clocks.** Each publication expects its subject to hold no
//! newer message than the one it follows (`Nats-Expected-Last-Subject-Sequence`, 0 at first),
//! so JetStream refuses a second copy however late it comes: a re-publication by the next
//! leader, or a publication a deposed leader had in flight when it was paused for minutes.
//! When refused, the publisher reads what the subject holds (from the stream leader) and
//! decides by its `Jetwork-Submit-Seq`: the same run means already stored; an older run (the
//! id was submitted again after the dedup horizon) means publish on top of it; a newer run
//! means this publication is stale and is dropped. So every run has exactly one stored
//! outcome, and an older run's can never land after a newer one's. Outcomes carry no
//! `Nats-Msg-Id` (the fence does what it would, without a duplicate-window entry per job on the
//! server); a rejection, which has no fence, carries `rejected-<submit seq>`.
//!
//! **Live once.** Nobody publishes on the live subject: the stream republishes what it
//! stores, so a copy it refuses or drops as a duplicate never reaches a live subscriber. A
//! publication that may already be stored (inherited from the previous leader, or retried
//! after an unclear failure) still looks at the subject first, which spares the refused copy.
//!
//! **Two ways.** A publication with its payload in hand and nothing to look at first (almost
//! every outcome) goes the short way: sent at once with the fence for an empty subject, its
//! acknowledgement gathered with the others on one subscription (`acks.rs`). A refusal by the
//! fence sends it the long way, a task of its own that reads the subject and decides as above;
//! so do those that must look at the subject first or read a rejected submission's payload
//! back from `JETWORK_SUBMIT`. Either way it runs off the leader's loop, and each publication
//! ends in one [`Outcome`].

pub mod acks;

use std::collections::VecDeque;

use jetwork_shared::fast_hash::FastSet;
use std::future::IntoFuture;
use std::time::Duration;

use async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE;
use async_nats::jetstream::{
    self, context::PublishErrorKind, message::PublishMessage, stream::LastRawMessageErrorKind,
};
use async_nats::{HeaderMap, HeaderName};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use jetwork_shared::jobs::AttemptRecord;
use jetwork_shared::{headers, subjects, QueueName, Unavailable, WorkId};

use crate::core::{Publication, PublicationKey};
use crate::payloads;
use acks::{Acks, Answer};

/// Longest reason put in a header (the engine's reasons, with their prefixes, fit whole).
const MAX_REASON_HEADER: usize = 1536;
// The names every outcome carries, made once: a name given as `&str` is validated and copied
// into a new buffer on every insert, seven times per job.
const SUBMIT_SEQ: HeaderName = HeaderName::from_static(headers::SUBMIT_SEQ);
const STATUS: HeaderName = HeaderName::from_static(headers::STATUS);
const ATTEMPT: HeaderName = HeaderName::from_static(headers::ATTEMPT);
const WORK_ID: HeaderName = HeaderName::from_static(headers::WORK_ID);
const QUEUE: HeaderName = HeaderName::from_static(headers::QUEUE);
const RAN: HeaderName = HeaderName::from_static(headers::RAN);

/// Publications in flight at once, both ways; more wait their turn. The long way stays well
/// under the JetStream context's 4096 acknowledgement credits, so starting one never blocks.
const MAX_IN_FLIGHT: usize = 1024;
/// How many times a publication is retried on top of a newly found older run within one go.
const MAX_CONFLICTS: usize = 3;

/// How a publication ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// Stored now.
    Stored,
    /// The subject already holds this run's outcome (an earlier attempt, or another leader).
    AlreadyStored,
    /// The subject holds a newer run's outcome: this one is stale and was not stored.
    Superseded { stored_run: u64 },
}

/// Why a publication did not finish this time (both are retried).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The stream or the payload could not be reached.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// The subject kept getting new messages while this one tried to follow them.
    #[error("{subject} kept changing while publishing")]
    Contended { subject: String },
}

/// The outcome of one publication task: done (in some way), or failed for now.
pub type Outcome = Result<Published, PublishError>;

type Task = BoxFuture<'static, (PublicationKey, Outcome)>;

/// Publications in flight, and those waiting for a place.
///
/// Most go the short way ([`acks::Acks`]): sent at once with the fence for a subject that holds
/// nothing yet, the acknowledgement gathered with the others. The rest go the long way, a task
/// each (`publish`): those that may already be stored (`verify_first`), those whose payload
/// must be read back first, and any the short way found refused by its fence.
pub struct Publisher {
    js: jetstream::Context,
    /// The long way.
    inflight: FuturesUnordered<Task>,
    /// The short way: sent, awaiting the acknowledgement.
    acks: Acks<Direct>,
    /// The short way: to send (in order; one leaves only once sent).
    unsent: VecDeque<Direct>,
    /// Answers taken from `acks` and not yet returned (from a failed send).
    ready: VecDeque<(PublicationKey, Outcome)>,
    /// Keys in flight or waiting.
    keys: FastSet<PublicationKey>,
    waiting: VecDeque<Waiting>,
}

/// A publication waiting for a place in flight.
struct Waiting {
    key: PublicationKey,
    publication: Publication,
    payload: Option<Bytes>,
    verify_first: bool,
}

/// A publication going the short way: its payload is in hand.
struct Direct {
    key: PublicationKey,
    publication: Publication,
    payload: Bytes,
}

impl Publisher {
    /// `timeout`: how long an acknowledgement may take (then the publication is retried).
    pub fn new(client: async_nats::Client, js: jetstream::Context, timeout: Duration) -> Self {
        Publisher {
            js,
            inflight: FuturesUnordered::new(),
            acks: Acks::new(client, timeout),
            unsent: VecDeque::new(),
            ready: VecDeque::new(),
            keys: FastSet::default(),
            waiting: VecDeque::new(),
        }
    }

    /// Whether nothing is in flight or waiting.
    pub fn is_empty(&self) -> bool {
        self.inflight.is_empty()
            && self.waiting.is_empty()
            && self.acks.is_empty()
            && self.unsent.is_empty()
            && self.ready.is_empty()
    }

    /// Starts publishing, unless `key` is already on its way. `payload` is a rejected
    /// submission's bytes if the leader still has them (otherwise they are read back). With
    /// `verify_first`, the subject is read before publishing (see the module docs).
    pub fn start(
        &mut self,
        key: PublicationKey,
        publication: Publication,
        payload: Option<Bytes>,
        verify_first: bool,
    ) {
        if self.keys.insert(key.clone()) {
            self.waiting.push_back(Waiting { key, publication, payload, verify_first });
            self.launch();
        }
    }

    fn in_flight(&self) -> usize {
        self.inflight.len() + self.acks.len() + self.unsent.len()
    }

    /// Moves waiting publications into flight while there is room.
    fn launch(&mut self) {
        while self.in_flight() < MAX_IN_FLIGHT {
            let Some(next) = self.waiting.pop_front() else { return };
            let Waiting { key, publication, payload, verify_first } = next;
            let payload = match (&publication, payload) {
                (Publication::Completed { .. }, _) => Some(Bytes::new()),
                (_, payload) => payload,
            };
            match payload {
                Some(payload) if !verify_first => {
                    self.unsent.push_back(Direct { key, publication, payload });
                }
                payload => self.long_way(key, publication, payload, verify_first),
            }
        }
    }

    /// Publishes in a task of its own.
    fn long_way(
        &mut self,
        key: PublicationKey,
        publication: Publication,
        payload: Option<Bytes>,
        verify_first: bool,
    ) {
        let js = self.js.clone();
        self.inflight.push(Box::pin(async move {
            let outcome = publish(&js, &publication, payload, verify_first).await;
            (key, outcome)
        }));
    }

    /// The next finished publication. Pending forever when none is in flight. Cancel-safe.
    pub async fn next(&mut self) -> (PublicationKey, Outcome) {
        loop {
            if let Some((key, outcome)) = self.ready.pop_front() {
                return self.finished(key, outcome);
            }
            self.send_unsent().await;
            if !self.ready.is_empty() {
                continue;
            }
            tokio::select! {
                Some((key, outcome)) = self.inflight.next(), if !self.inflight.is_empty() => {
                    return self.finished(key, outcome);
                }
                (direct, answer) = self.acks.next() => {
                    let Direct { key, publication, payload } = direct;
                    let outcome = match answer {
                        Answer::Stored => Ok(Published::Stored),
                        Answer::WrongLastSequence => {
                            // Something is stored there already: whose is it? The long way
                            // reads the subject and decides.
                            tracing::debug!(?key, "refused by its fence; reading the subject");
                            self.long_way(key, publication, Some(payload), true);
                            continue;
                        }
                        Answer::Failed(e) => {
                            let subject = subject(&publication);
                            Err(Unavailable::new(format!("publishing {subject}"), e).into())
                        }
                    };
                    return self.finished(key, outcome);
                }
            }
        }
    }

    /// Sends what goes the short way. An entry leaves `unsent` only once sent, so a drop
    /// midway loses nothing.
    async fn send_unsent(&mut self) {
        while let Some(direct) = self.unsent.front() {
            let (to, headers, body) = fenced(&direct.publication, direct.payload.clone(), 0);
            let sent = self.acks.publish(to.into(), headers, body).await;
            let Some(direct) = self.unsent.pop_front() else { return };
            match sent {
                Ok(id) => self.acks.track(id, direct),
                Err(e) => {
                    let subject = subject(&direct.publication);
                    let error = Unavailable::new(format!("publishing {subject}"), e);
                    self.ready.push_back((direct.key, Err(error.into())));
                }
            }
        }
    }

    fn finished(&mut self, key: PublicationKey, outcome: Outcome) -> (PublicationKey, Outcome) {
        self.keys.remove(&key);
        self.launch();
        (key, outcome)
    }
}

/// Publishes one outcome, fenced on its subject (see the module docs).
async fn publish(
    js: &jetstream::Context,
    publication: &Publication,
    payload: Option<Bytes>,
    verify_first: bool,
) -> Outcome {
    let payload = match (publication, payload) {
        (Publication::Completed { .. }, _) => Bytes::new(),
        (_, Some(payload)) => payload,
        (_, None) => {
            // Kept in the stream until this outcome is published (the purge floor); gone
            // only if removed by hand, and then the outcome goes out without it.
            payloads::read(js, publication.submit_seq()).await?.unwrap_or_default()
        }
    };
    let run = publication.submit_seq();
    let subject = subject(publication);
    let mut follows = 0;
    if verify_first {
        match stored(js, &subject, run).await? {
            Stored::Nothing => {}
            Stored::Other(seq) => follows = seq,
            Stored::Decided(published) => return Ok(published),
        }
    }
    for _ in 0..MAX_CONFLICTS {
        let (_, message) = build(publication, payload.clone());
        let message = message.expected_last_subject_sequence(follows);
        let sent = match js.send_publish(subject.clone(), message).await {
            Ok(ack) => ack.into_future().await,
            Err(e) => return Err(Unavailable::new(format!("publishing {subject}"), e).into()),
        };
        match sent {
            Ok(_) => return Ok(Published::Stored),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {}
            Err(e) => return Err(Unavailable::new(format!("publishing {subject}"), e).into()),
        }
        // Something is stored on the subject already: whose is it?
        match stored(js, &subject, run).await? {
            Stored::Nothing => follows = 0,
            Stored::Other(seq) => follows = seq,
            Stored::Decided(published) => return Ok(published),
        }
    }
    Err(PublishError::Contended { subject })
}

/// What the subject holds, from the point of view of the run at submit sequence `run`.
enum Stored {
    Nothing,
    /// An older run's outcome, or something that is not an outcome at all, at this sequence:
    /// this run's outcome goes on top of it.
    Other(u64),
    /// This run's outcome (already stored) or a newer run's (this one is stale).
    Decided(Published),
}

/// Reads the newest message on `subject` from the stream leader.
async fn stored(js: &jetstream::Context, subject: &str, run: u64) -> Result<Stored, Unavailable> {
    let what = || format!("reading {subject}");
    let stream = js
        .get_stream_no_info(subjects::RESULTS_STREAM)
        .await
        .map_err(|e| Unavailable::new(what(), e))?;
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(stored) => {
            let stored_run = stored
                .headers
                .get(headers::SUBMIT_SEQ)
                .and_then(|v| v.as_str().parse::<u64>().ok());
            Ok(match stored_run {
                Some(stored_run) if stored_run == run => Stored::Decided(Published::AlreadyStored),
                Some(stored_run) if stored_run > run => {
                    Stored::Decided(Published::Superseded { stored_run })
                }
                _ => Stored::Other(stored.sequence),
            })
        }
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(Stored::Nothing),
        Err(e) => Err(Unavailable::new(what(), e)),
    }
}

/// The subject a publication is stored on.
fn subject(publication: &Publication) -> String {
    match publication {
        Publication::Completed { work_id, queue, .. }
        | Publication::Failed { work_id, queue, .. }
        | Publication::Cancelled { work_id, queue, .. } => subjects::stored_result(queue, work_id),
        Publication::Rejected { queue, seq, .. } => subjects::rejected(queue, *seq),
    }
}

/// The subject and message for a publication (without its fence). `payload` is the
/// submission's: it goes out with a failure, a cancellation or a rejection, so the stored
/// outcome can be read, and a failed or cancelled job retried, after the submission is purged.
pub fn build(publication: &Publication, payload: Bytes) -> (String, PublishMessage) {
    let message = PublishMessage::build()
        .payload(body(publication, payload))
        .headers(stored_headers(publication));
    (subject(publication), message)
}

/// What a publication sends with the fence `follows` (see [`build`]), for [`Acks`].
fn fenced(publication: &Publication, payload: Bytes, follows: u64) -> (String, HeaderMap, Bytes) {
    let mut headers = stored_headers(publication);
    headers.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, follows.to_string());
    (subject(publication), headers, body(publication, payload))
}

/// The body a publication is stored with: a completed job's result, else the submission's.
fn body(publication: &Publication, payload: Bytes) -> Bytes {
    match publication {
        Publication::Completed { result, .. } => result.clone(),
        _ => payload,
    }
}

/// The headers a publication is stored with (without its fence).
fn stored_headers(publication: &Publication) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut outcome = |work_id: &WorkId, queue: &QueueName, seq: u64, status, attempt: u32| {
        // No `Nats-Msg-Id`: the fence already stores one outcome per run, and a msg-id would
        // cost the server an entry in its duplicate window per job (1.2M entries at 10k jobs/s).
        h.insert(SUBMIT_SEQ, seq.to_string());
        h.insert(STATUS, status);
        h.insert(ATTEMPT, attempt.to_string());
        h.insert(WORK_ID, work_id.as_str());
        h.insert(QUEUE, queue.as_str());
    };
    match publication {
        Publication::Completed { work_id, queue, seq, attempt, history, .. } => {
            outcome(work_id, queue, *seq, headers::STATUS_COMPLETED, *attempt);
            // Most jobs complete at their first attempt: their history is written short,
            // since the server stores and delivers these bytes for every job.
            match AttemptRecord::ran_header(history, *attempt) {
                Some(ran) => h.insert(RAN, ran),
                None => h.insert(headers::HISTORY, history_header(history)),
            }
        }
        Publication::Failed { work_id, queue, seq, attempt, reason, history, options } => {
            outcome(work_id, queue, *seq, headers::STATUS_FAILED, *attempt);
            h.insert(headers::REASON, headers::sanitize(reason, MAX_REASON_HEADER));
            h.insert(headers::HISTORY, history_header(history));
            // What a retry of it keeps (it can be retried; a completed job cannot).
            for (name, value) in options.retry_headers() {
                h.insert(name, value);
            }
        }
        Publication::Cancelled { work_id, queue, seq, attempt, reason, history, options } => {
            outcome(work_id, queue, *seq, headers::STATUS_CANCELLED, *attempt);
            h.insert(headers::REASON, headers::sanitize(reason, MAX_REASON_HEADER));
            h.insert(headers::HISTORY, history_header(history));
            for (name, value) in options.retry_headers() {
                h.insert(name, value);
            }
        }
        Publication::Rejected { queue, seq, msg_id, reason } => {
            h.insert(headers::NATS_MSG_ID, format!("rejected-{seq}"));
            h.insert(headers::STATUS, headers::STATUS_REJECTED);
            h.insert(headers::REASON, headers::sanitize(reason, MAX_REASON_HEADER));
            h.insert(headers::SUBMIT_SEQ, seq.to_string());
            h.insert(headers::QUEUE, queue.as_str());
            if let Some(id) = msg_id {
                h.insert(headers::SUBMITTED_ID, headers::sanitize(id, 256));
            }
        }
    }
    h
}

/// A history as the [`headers::HISTORY`] value: compact JSON, one line (reasons are
/// sanitized to printable ASCII when recorded, and JSON escapes the rest).
fn history_header(history: &[AttemptRecord]) -> String {
    // Sized for the usual record (~100 bytes) so a one-attempt history with a short reason is
    // written without growing the buffer.
    let mut out = Vec::with_capacity(128 * history.len().max(1));
    match serde_json::to_writer(&mut out, history) {
        Ok(()) => String::from_utf8(out).unwrap_or_else(|_| "[]".to_owned()),
        Err(_) => "[]".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use jetwork_shared::job_options::JobOptions;
    use jetwork_shared::jobs::{AttemptOutcome, JobInfo, JobState};
    use jetwork_shared::WorkerId;

    use super::*;

    fn attempt(attempt: u32, outcome: AttemptOutcome, reason: Option<&str>) -> AttemptRecord {
        AttemptRecord {
            attempt,
            worker: WorkerId::parse(&format!("w-{attempt}")).unwrap(),
            started_ms: 1_764_460_800_000 + u64::from(attempt) * 1000,
            ended_ms: 1_764_460_800_042 + u64::from(attempt) * 1000,
            outcome,
            reason: reason.map(str::to_owned),
        }
    }

    fn completed(attempt: u32, history: Vec<AttemptRecord>) -> Publication {
        Publication::Completed {
            work_id: WorkId::parse("order-42").unwrap(),
            queue: QueueName::parse("emails").unwrap(),
            seq: 17,
            attempt,
            result: Bytes::from_static(b"done"),
            history,
        }
    }

    /// The headers a publication is stored with, by name (the fence is added later).
    fn sorted(publication: &Publication) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = stored_headers(publication)
            .iter()
            .flat_map(|(name, values)| {
                values.iter().map(move |v| (name.to_string(), v.as_str().to_owned()))
            })
            .collect();
        all.sort();
        all
    }

    /// What a reader of the stored outcome makes of it.
    fn read_back(publication: &Publication) -> JobInfo {
        let (subject, _) = build(publication, Bytes::new());
        let info = JobInfo::from_stored(&subject, &stored_headers(publication), 5);
        info.expect("an outcome")
    }

    #[test]
    fn one_attempt_that_completed_is_stored_short() {
        let history = vec![attempt(1, AttemptOutcome::Completed, None)];
        let publication = completed(1, history.clone());
        let pairs = |list: &[(&str, &str)]| {
            list.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect::<Vec<_>>()
        };
        assert_eq!(
            sorted(&publication),
            pairs(&[
                (headers::ATTEMPT, "1"),
                (headers::QUEUE, "emails"),
                (headers::RAN, "w-1 1764460801000 1764460801042"),
                (headers::STATUS, "completed"),
                (headers::SUBMIT_SEQ, "17"),
                (headers::WORK_ID, "order-42"),
            ])
        );
        let info = read_back(&publication);
        assert_eq!((info.state, info.attempts, info.history), (JobState::Completed, 1, history));
    }

    #[test]
    fn a_retried_run_completing_at_a_later_attempt_is_stored_short_too() {
        // A retry numbers its attempts on from the earlier runs: its one attempt may be the 4th.
        let history = vec![attempt(4, AttemptOutcome::Completed, None)];
        let publication = completed(4, history.clone());
        let headers = stored_headers(&publication);
        assert!(headers.get(headers::RAN).is_some() && headers.get(headers::HISTORY).is_none());
        assert_eq!(read_back(&publication).history, history);
    }

    #[test]
    fn every_other_history_is_stored_as_json() {
        use AttemptOutcome::{Cancelled, Completed, Failed};
        let id = || WorkId::parse("order-42").unwrap();
        let queue = || QueueName::parse("emails").unwrap();
        let failed_then_done =
            vec![attempt(1, Failed, Some("disk full")), attempt(2, Completed, None)];
        // A result from an earlier attempt than the one running: the later one is cancelled.
        let earlier_won = vec![
            attempt(1, Completed, None),
            attempt(2, Cancelled, Some("attempt 1 delivered the result first")),
        ];
        let publications = [
            completed(2, failed_then_done),
            completed(1, earlier_won),
            completed(1, vec![attempt(1, Completed, Some("odd"))]),
            // The one record is not the attempt that delivered the result.
            completed(2, vec![attempt(1, Completed, None)]),
            completed(1, vec![]),
            Publication::Failed {
                work_id: id(),
                queue: queue(),
                seq: 17,
                attempt: 1,
                reason: "no such customer".to_owned(),
                history: vec![attempt(1, Failed, Some("no such customer"))],
                options: JobOptions::default(),
            },
            Publication::Cancelled {
                work_id: id(),
                queue: queue(),
                seq: 17,
                attempt: 1,
                reason: "customer asked".to_owned(),
                history: vec![attempt(1, Cancelled, Some("customer asked"))],
                options: JobOptions::default(),
            },
            Publication::Cancelled {
                work_id: id(),
                queue: queue(),
                seq: 17,
                attempt: 0,
                reason: "purged".to_owned(),
                history: vec![],
                options: JobOptions::default(),
            },
        ];
        for publication in &publications {
            let history = match publication {
                Publication::Completed { history, .. }
                | Publication::Failed { history, .. }
                | Publication::Cancelled { history, .. } => history,
                Publication::Rejected { .. } => unreachable!(),
            };
            let stored = stored_headers(publication);
            assert!(stored.get(headers::RAN).is_none(), "{publication:?}");
            let json = stored.get(headers::HISTORY).map(|v| v.as_str().to_owned());
            assert_eq!(json, serde_json::to_string(history).ok(), "{publication:?}");
            assert_eq!(&read_back(publication).history, history);
        }
    }

    #[test]
    fn the_short_form_halves_a_typical_header() {
        let worker = WorkerId::random();
        let history = vec![AttemptRecord { worker, ..attempt(1, AttemptOutcome::Completed, None) }];
        let ran = AttemptRecord::ran_header(&history, 1).unwrap();
        let json = history_header(&history);
        let line = |name: &str, value: &str| name.len() + 2 + value.len() + 2;
        let (short, long) = (line(headers::RAN, &ran), line(headers::HISTORY, &json));
        // A worker's default id (`w-` and 32 hex digits), times of this century.
        assert_eq!((short, long), (77, 154), "{ran} / {json}");
    }

    #[test]
    fn rejections_carry_no_history() {
        let rejected = Publication::Rejected {
            queue: QueueName::parse("emails").unwrap(),
            seq: 9,
            msg_id: Some("bad\nid".to_owned()),
            reason: "invalid Jetwork-Priority".to_owned(),
        };
        let names: Vec<String> = sorted(&rejected).into_iter().map(|(name, _)| name).collect();
        assert_eq!(
            names,
            [
                headers::QUEUE,
                headers::REASON,
                headers::STATUS,
                headers::SUBMIT_SEQ,
                headers::SUBMITTED_ID,
                headers::NATS_MSG_ID
            ]
        );
    }
}
