//! [`Client`]: submitting work and reading results, for the CLI and for programs.
//!
//! Submission is a JetStream publish to `jetwork.submit.<queue>` with the work id as
//! `Nats-Msg-Id`: the acknowledgement comes from JetStream once the work is stored, whether or
//! not a master is running, and a retry with the same id is deduplicated. So the client
//! retries until acknowledged (a timeout or "no responders" while the server or its stream
//! leader is unavailable) and reports failure only after `submit_timeout`.

use std::time::Duration;

use async_nats::jetstream::{
    self, context::PublishErrorKind, message::PublishMessage, stream::DirectGetErrorKind,
};
use bytes::Bytes;
use futures::StreamExt;
use jetwork_shared::backoff::Backoff;
use jetwork_shared::job_options;
use jetwork_shared::protocol::{StatusQuery, StatusReport};
use jetwork_shared::refusal::{self, Refusal};
use jetwork_shared::{connect, headers, subjects, topology, QueueName, WorkId};
use serde::Serialize;
use thiserror::Error;
use tokio::time::Instant;

use crate::FrontendSettings;

/// A frontend operation failed.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error(transparent)]
    Shared(#[from] jetwork_shared::Error),
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("submission of {work_id} was not acknowledged within {waited:?}: {last_error}")]
    NotAccepted { work_id: WorkId, waited: Duration, last_error: String },
    #[error("submission of {work_id} refused: {reason}")]
    Refused { work_id: WorkId, reason: String },
    #[error("no master answered: {0}")]
    NoMaster(String),
    #[error("no result for {work_id} within {waited:?}")]
    NoResult { work_id: WorkId, waited: Duration },
    #[error("submission {seq} ({work_id}) was stored, then rejected by the master: {reason}")]
    Rejected { work_id: WorkId, seq: u64, reason: String },
    #[error("NATS: {0}")]
    Nats(String),
    /// NATS refused this user what the command needs (the server's words, and which role of
    /// the shipped `nats.conf` has the permission).
    #[error(transparent)]
    Denied(#[from] connect::Denied),
}

/// A stored submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Submitted {
    pub work_id: WorkId,
    pub queue: QueueName,
    /// Its sequence in `JETWORK_SUBMIT`.
    pub seq: u64,
    /// True if this id was already stored (within the dedup horizon): nothing new was queued.
    pub duplicate: bool,
}

/// How a work item ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResultStatus {
    Completed,
    Failed,
    /// Cancelled by an operator.
    Cancelled,
}

/// A published result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkResult {
    pub work_id: WorkId,
    pub queue: QueueName,
    pub status: ResultStatus,
    pub attempt: u32,
    /// The `JETWORK_SUBMIT` sequence of the submission it answers (0 if not given).
    pub submit_seq: u64,
    /// The result bytes; for `failed` and `cancelled`, the submitted payload (so the job can
    /// be retried), with the reason in `reason`.
    pub payload: Bytes,
    pub reason: Option<String>,
}

impl WorkResult {
    /// Reads a result from a message on `jetwork.results.<queue>.<id>` (live) or
    /// `jetwork.outcomes.<queue>.<id>` (stored).
    pub fn from_message(
        subject: &str,
        headers: Option<&async_nats::HeaderMap>,
        payload: Bytes,
    ) -> Option<Self> {
        let (queue, id) = subjects::result_parts(subject)?;
        let get = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str().to_owned());
        let status = match get(headers::STATUS).as_deref() {
            Some(headers::STATUS_COMPLETED) => ResultStatus::Completed,
            Some(headers::STATUS_FAILED) => ResultStatus::Failed,
            Some(headers::STATUS_CANCELLED) => ResultStatus::Cancelled,
            _ => return None,
        };
        Some(WorkResult {
            work_id: WorkId::parse(id).ok()?,
            queue: QueueName::parse(queue).ok()?,
            status,
            attempt: get(headers::ATTEMPT).and_then(|a| a.parse().ok()).unwrap_or(0),
            submit_seq: get(headers::SUBMIT_SEQ).and_then(|s| s.parse().ok()).unwrap_or(0),
            payload,
            reason: get(headers::REASON),
        })
    }
}

/// A connection for submitting work and reading results.
#[derive(Clone)]
pub struct Client {
    nats: async_nats::Client,
    js: jetstream::Context,
    settings: FrontendSettings,
    /// The connection's permission violations (requests the server refused fail at once).
    denials: connect::Denials,
    /// The prefix of its reply subjects (`nats.inbox_prefix`, or its default).
    inbox: String,
}

impl Client {
    /// Connects, and creates the streams if they do not exist yet (so work can be submitted
    /// before any master has run). A client user that may not create streams (the shipped
    /// `nats.conf`) is only warned: its submissions wait for a master to create them. A
    /// server that cannot be reached within
    /// `nats.request_timeout`, or that refuses the credentials or the TLS setup, is an error
    /// that says so.
    pub async fn connect(settings: FrontendSettings) -> Result<Self, ClientError> {
        let wait = settings.nats.request_timeout;
        let (nats, denials) =
            connect::connect_with_denials(&settings.nats, "jetwork-frontend", wait)
                .await
                .map_err(jetwork_shared::Error::from)?;
        let js = connect::jetstream(&nats, &settings.nats);
        let inbox = settings.nats.inbox();
        let client = Client { nats, js, settings, denials, inbox };
        // A user that may not even look the streams up learns so at once, from the command it
        // runs next (which needs permissions of its own), not after a timeout here. One that
        // may not read its reply inbox learns it here: nothing it asks can be answered.
        match client.init().await {
            Ok(()) => {}
            Err(ClientError::Denied(denied)) if client.inbox_refused().is_some() => {
                return Err(denied.into());
            }
            Err(e) => {
                tracing::warn!(error = %e, "the streams are not there and cannot be created by this user; submissions wait for a master to create them")
            }
        }
        Ok(client)
    }

    /// The server's refusal of this connection's reply inbox, if it refused it: then no
    /// request of this client can get its answer.
    fn inbox_refused(&self) -> Option<connect::Denied> {
        self.denials.refused_now(&connect::Essentials::inbox(&self.inbox))
    }

    /// Runs `request` (to `subject`, or subjects starting with it), unless NATS refuses this
    /// user the publish, the subscription or the reply inbox first: then it fails at once
    /// with the server's words.
    pub async fn unless_denied<T>(
        &self,
        subject: &str,
        request: impl std::future::Future<Output = T>,
    ) -> Result<T, connect::Denied> {
        self.denials.guard(subject, &self.inbox, request).await
    }

    /// [`unless_denied`](Self::unless_denied) for a request that fails with a [`ClientError`].
    async fn guarded<T>(
        &self,
        subject: &str,
        request: impl std::future::Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        self.unless_denied(subject, request).await?
    }

    /// Creates the streams if they are missing (`init`): a user that may not is told which
    /// permission it lacks.
    pub async fn init(&self) -> Result<(), ClientError> {
        let ensure = async {
            let mode = topology::EnsureMode::CreateIfMissing;
            topology::ensure_streams(&self.js, &self.settings.streams, mode)
                .await
                .map_err(|e| ClientError::Nats(e.to_string()))
        };
        self.guarded("$JS.API.STREAM.", ensure).await
    }

    /// The underlying NATS connection.
    pub fn nats(&self) -> &async_nats::Client {
        &self.nats
    }

    /// Its JetStream context.
    pub(crate) fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// The settings in use.
    pub fn settings(&self) -> &FrontendSettings {
        &self.settings
    }

    /// Submits `payload` to `queue` under `work_id` (a fresh UUID when `None`) and returns
    /// once it is stored, retrying until `submit_timeout`.
    pub async fn submit(
        &self,
        queue: &QueueName,
        work_id: Option<WorkId>,
        payload: Bytes,
    ) -> Result<Submitted, ClientError> {
        self.submit_with(queue, work_id, payload, &[]).await
    }

    /// Like [`submit`](Self::submit), with extra headers: per-job options
    /// (`jetwork_shared::job_options`, e.g. `Jetwork-Priority`).
    pub async fn submit_with(
        &self,
        queue: &QueueName,
        work_id: Option<WorkId>,
        payload: Bytes,
        headers: &[(&'static str, String)],
    ) -> Result<Submitted, ClientError> {
        let work_id = work_id.unwrap_or_else(|| {
            WorkId::parse(&uuid::Uuid::new_v4().to_string()).expect("a UUID is a valid work id")
        });
        let limit = self.settings.streams.max_payload as usize;
        if payload.len() > limit {
            return Err(ClientError::Refused {
                work_id,
                reason: format!(
                    "payload of {} bytes exceeds the limit of {limit} bytes",
                    payload.len()
                ),
            });
        }
        let subject = subjects::submit(queue);
        let started = Instant::now();
        let timeout = self.settings.frontend.submit_timeout;
        // A steady pace (retry_delay each time): the server is what is in trouble, and a
        // submitter should notice it coming back promptly.
        let delay = self.settings.frontend.retry_delay;
        let mut backoff = Backoff::new(delay, delay);
        loop {
            let mut message =
                PublishMessage::build().payload(payload.clone()).message_id(work_id.as_str());
            for (name, value) in headers {
                message = message.header(*name, value.as_str());
            }
            let attempt = async { self.js.send_publish(subject.clone(), message).await?.await };
            let error = match self.unless_denied(&subject, attempt).await? {
                Ok(ack) => {
                    self.announce(queue, ack.sequence, headers).await;
                    return Ok(Submitted {
                        work_id,
                        queue: queue.clone(),
                        seq: ack.sequence,
                        duplicate: ack.duplicate,
                    });
                }
                Err(e) => e,
            };
            // A copy of this very submission still being stored (a replicated stream waiting
            // for its quorum) is no refusal either: its outcome is what the next try learns.
            let in_process =
                Refusal::of(&error).is_some_and(|r| r.code == refusal::DUPLICATE_IN_PROCESS);
            let retryable = in_process
                || matches!(
                    error.kind(),
                    PublishErrorKind::TimedOut
                        | PublishErrorKind::StreamNotFound
                        | PublishErrorKind::BrokenPipe
                        | PublishErrorKind::MaxAckPending
                );
            if !retryable {
                return Err(ClientError::Refused { work_id, reason: refusal_reason(&error) });
            }
            if started.elapsed() + self.settings.frontend.retry_delay > timeout {
                return Err(ClientError::NotAccepted {
                    work_id,
                    waited: started.elapsed(),
                    last_error: error.to_string(),
                });
            }
            tracing::warn!(%work_id, error = %error, "work not accepted; retrying after a while");
            backoff.wait().await;
        }
    }

    /// Announces a stored submission that asks for a priority above 0 or for an expiry on
    /// `jetwork.submitted.<queue>`, so the leader can take it ahead of an unread backlog (a
    /// priority jump) or while nobody serves its queue (an expiring one: seen waiting, and
    /// expired on time). Best effort: without the notice, the job waits for its turn.
    async fn announce(&self, queue: &QueueName, seq: u64, headers: &[(&'static str, String)]) {
        let Some(notice) = job_options::submission_notice(seq, headers) else {
            return;
        };
        let subject = subjects::submitted(queue);
        // Flushed: a publish is only queued, and a process that exits once its submission is
        // acknowledged (the CLI) would take the notice with it.
        let sent = async {
            let published = self.nats.publish_with_headers(subject, notice, Bytes::new()).await;
            published.map_err(|e| e.to_string())?;
            self.nats.flush().await.map_err(|e| e.to_string())?;
            Ok::<(), String>(())
        };
        if let Err(e) = sent.await {
            tracing::debug!(%queue, seq, error = %e, "submission not announced; it waits for its turn");
        }
    }

    /// The stored result of `work_id`, if there is one (in any queue when `queue` is `None`).
    pub async fn result(
        &self,
        queue: Option<&QueueName>,
        work_id: &WorkId,
    ) -> Result<Option<WorkResult>, ClientError> {
        let subject = match queue {
            Some(q) => subjects::stored_result(q, work_id),
            None => subjects::stored_result_any_queue(work_id),
        };
        let stored = self.last_stored(subject).await?;
        Ok(stored.and_then(|m| {
            WorkResult::from_message(m.subject.as_str(), Some(&m.headers), m.payload)
        }))
    }

    /// The payload `work_id` was submitted with, stored at `seq` of `JETWORK_SUBMIT`, by a
    /// direct get (the operator role of the shipped `nats.conf` may not: the error says so).
    /// `None` if that sequence is gone, or holds another id's submission (a sequence from
    /// a stale or forged answer names nothing of this job).
    pub async fn submission(
        &self,
        work_id: &WorkId,
        seq: u64,
    ) -> Result<Option<Bytes>, ClientError> {
        let read = async {
            let stream = self
                .js
                .get_stream_no_info(subjects::SUBMIT_STREAM)
                .await
                .map_err(|e| ClientError::Nats(e.to_string()))?;
            match stream.direct_get(seq).await {
                Ok(m) => {
                    // A client's submission carries its id as the message id; the master's
                    // own (a retry, a schedule's tick) in `Jetwork-Work-Id`.
                    let named = |name: &str| {
                        m.headers.get(name).is_some_and(|v| v.as_str() == work_id.as_str())
                    };
                    Ok((named(headers::NATS_MSG_ID) || named(headers::WORK_ID))
                        .then_some(m.payload))
                }
                Err(e) if matches!(e.kind(), DirectGetErrorKind::NotFound) => Ok(None),
                Err(e) => Err(ClientError::Nats(e.to_string())),
            }
        };
        self.guarded(&subjects::direct_get(subjects::SUBMIT_STREAM), read).await
    }

    /// The last message `JETWORK_RESULTS` holds on `subject` (`None` if there is none).
    async fn last_stored(
        &self,
        subject: String,
    ) -> Result<Option<jetstream::message::StreamMessage>, ClientError> {
        let read = async {
            let stream = self
                .js
                .get_stream_no_info(subjects::RESULTS_STREAM)
                .await
                .map_err(|e| ClientError::Nats(e.to_string()))?;
            match stream.direct_get_last_for_subject(subject).await {
                Ok(m) => Ok(Some(m)),
                Err(e) if matches!(e.kind(), DirectGetErrorKind::NotFound) => Ok(None),
                Err(e) => Err(ClientError::Nats(e.to_string())),
            }
        };
        self.guarded(&subjects::direct_get(subjects::RESULTS_STREAM), read).await
    }

    /// Waits for the result of `work_id`: listens for it first, then checks whether it is
    /// already stored, so a result published in between is never missed.
    pub async fn wait_result(
        &self,
        queue: &QueueName,
        work_id: &WorkId,
        timeout: Duration,
    ) -> Result<WorkResult, ClientError> {
        self.wait_matching(queue, work_id, None, timeout).await
    }

    /// Waits for the result of this very submission: a result of an earlier submission of the
    /// same id (reused after the dedup horizon) does not count. A submission the master
    /// rejected (stored, but unreadable or clashing with a run in flight) ends the wait with
    /// [`ClientError::Rejected`].
    pub async fn wait_for(
        &self,
        submitted: &Submitted,
        timeout: Duration,
    ) -> Result<WorkResult, ClientError> {
        let (queue, work_id, seq) = (&submitted.queue, &submitted.work_id, submitted.seq);
        let rejected = async {
            let reason = self.wait_rejection(queue, seq, timeout).await?;
            Err(ClientError::Rejected { work_id: work_id.clone(), seq, reason })
        };
        let rejected_subject = subjects::rejected(queue, seq);
        let rejected = self.guarded(&rejected_subject, rejected);
        tokio::select! {
            result = self.wait_matching(queue, work_id, Some(seq), timeout) => result,
            rejected = rejected => rejected,
        }
    }

    /// The reason the submission stored at `seq` in `queue` was rejected, if it was.
    pub async fn rejection(
        &self,
        queue: &QueueName,
        seq: u64,
    ) -> Result<Option<String>, ClientError> {
        let stored = self.last_stored(subjects::rejected(queue, seq)).await?;
        Ok(stored.map(|m| {
            m.headers.get(headers::REASON).map(|v| v.as_str().to_owned()).unwrap_or_default()
        }))
    }

    /// Resolves with the rejection reason once the submission at `seq` is rejected; pending
    /// until then (the caller bounds it).
    async fn wait_rejection(
        &self,
        queue: &QueueName,
        seq: u64,
        timeout: Duration,
    ) -> Result<String, ClientError> {
        let mut live = self
            .nats
            .subscribe(subjects::rejected(queue, seq))
            .await
            .map_err(|e| ClientError::Nats(e.to_string()))?;
        let deadline = Instant::now() + timeout;
        loop {
            match self.rejection(queue, seq).await {
                Ok(Some(reason)) => return Ok(reason),
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "cannot look up a rejection yet"),
            }
            if Instant::now() >= deadline {
                return std::future::pending().await;
            }
            // Re-check the store now and then in case the connection dropped the live copy.
            let wake = (Instant::now() + Duration::from_secs(2)).min(deadline);
            if let Ok(Some(m)) = tokio::time::timeout_at(wake, live.next()).await {
                let reason = m.headers.as_ref().and_then(|h| h.get(headers::REASON));
                return Ok(reason.map(|v| v.as_str().to_owned()).unwrap_or_default());
            }
        }
    }

    /// Waits for the result of `work_id` (of the run at `run`, if given): the live subscription,
    /// unless the server refuses it.
    async fn wait_matching(
        &self,
        queue: &QueueName,
        work_id: &WorkId,
        run: Option<u64>,
        timeout: Duration,
    ) -> Result<WorkResult, ClientError> {
        let subject = subjects::result(queue, work_id);
        self.guarded(&subject, self.wait_stored(queue, work_id, run, timeout)).await
    }

    async fn wait_stored(
        &self,
        queue: &QueueName,
        work_id: &WorkId,
        run: Option<u64>,
        timeout: Duration,
    ) -> Result<WorkResult, ClientError> {
        let wanted = |r: &WorkResult| run.is_none_or(|seq| r.submit_seq == seq);
        let mut live = self
            .nats
            .subscribe(subjects::result(queue, work_id))
            .await
            .map_err(|e| ClientError::Nats(e.to_string()))?;
        if let Some(result) = self.result(Some(queue), work_id).await?.filter(wanted) {
            return Ok(result);
        }
        let deadline = Instant::now() + timeout;
        loop {
            // Re-check the store now and then in case the connection dropped the live copy.
            let wake = (Instant::now() + Duration::from_secs(2)).min(deadline);
            match tokio::time::timeout_at(wake, live.next()).await {
                Ok(Some(m)) => {
                    let result =
                        WorkResult::from_message(m.subject.as_str(), m.headers.as_ref(), m.payload);
                    if let Some(result) = result.filter(wanted) {
                        return Ok(result);
                    }
                }
                Ok(None) => return Err(ClientError::Nats("result subscription closed".into())),
                Err(_) => {
                    if let Some(result) = self.result(Some(queue), work_id).await?.filter(wanted) {
                        return Ok(result);
                    }
                    if Instant::now() >= deadline {
                        return Err(ClientError::NoResult {
                            work_id: work_id.clone(),
                            waited: timeout,
                        });
                    }
                }
            }
        }
    }

    /// Reads the lease: who leads (or last led) and until when, without asking a master.
    pub async fn lease(&self) -> Result<jetwork_shared::leader::LeaseView, ClientError> {
        let read = async {
            jetwork_shared::leader::view(&self.js)
                .await
                .map_err(|e| ClientError::Nats(e.to_string()))
        };
        let bucket = format!("KV_{}", subjects::LEASE_BUCKET);
        let info = format!("$JS.API.STREAM.INFO.{bucket}");
        self.guarded(&info, self.guarded(&subjects::direct_get(&bucket), read)).await
    }

    /// Why no master answered `asked` (for `why`), with what the lease says (one line).
    pub async fn no_master(&self, asked: &str, why: &str) -> String {
        // Boxed: every request to the master may end here, and inlining the lease read's
        // future into each of theirs would bloat them (and their callers' stacks).
        let lease = Box::pin(self.lease()).await;
        crate::no_leader::no_leader(asked, why, lease, time::OffsetDateTime::now_utc())
            .trim_end()
            .to_owned()
    }

    /// Asks the leading master for its view of queues and workers.
    pub async fn status(&self) -> Result<StatusReport, ClientError> {
        self.status_page(StatusQuery::default()).await
    }

    /// Asks the leading master for one page of its view (see [`StatusQuery`]).
    pub async fn status_page(&self, query: StatusQuery) -> Result<StatusReport, ClientError> {
        let body = serde_json::to_vec(&query).map_err(|e| ClientError::Invalid(e.to_string()))?;
        let asked = self.nats.request(subjects::MASTER_STATUS, body.into());
        let reply = self
            .unless_denied(subjects::MASTER_STATUS, asked)
            .await?
            .map_err(|e| ClientError::NoMaster(crate::no_leader::request_failure(&e)))?;
        if let Some(error) = reply.headers.as_ref().and_then(|h| h.get(headers::NATS_SERVICE_ERROR))
        {
            return Err(ClientError::NoMaster(error.as_str().to_owned()));
        }
        serde_json::from_slice(&reply.payload)
            .map_err(|e| ClientError::Nats(format!("bad status reply: {e}")))
    }
}

/// Why JetStream refused a submission, with the jetwork setting behind the limit it names.
fn refusal_reason(error: &(dyn std::error::Error + 'static)) -> String {
    let hint = match Refusal::of(error) {
        Some(r) if r.description.contains("maximum messages per subject") => {
            "; the queue is full: it holds streams.max_pending_per_queue submissions, finished \
             ones included for the dedup horizon"
        }
        Some(r) if r.description.contains("maximum bytes") => {
            "; the submit stream is full: it holds streams.max_pending_bytes"
        }
        Some(r) if r.description.contains("maximum messages") => {
            "; the submit stream is full: it holds streams.max_pending_messages submissions"
        }
        Some(r) if r.code == refusal::INSUFFICIENT_RESOURCES => {
            "; the NATS server's JetStream store is full"
        }
        _ => "",
    };
    format!("{error}{hint}")
}
