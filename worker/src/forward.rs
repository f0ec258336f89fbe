//! [`Forward`]: the `--forward SUBJECT` handler. Each job is sent as a NATS request to
//! `SUBJECT`, where any NATS service answers it (a queue group of responders in any language:
//! `nats reply`, a NATS micro service, a ten-line script); the reply is the outcome.
//!
//! The request: the payload as submitted, and the headers `Jetwork-Work-Id`,
//! `Jetwork-Queue`, `Jetwork-Attempt`, `Jetwork-Deadline` (when this worker stops waiting,
//! Unix ms on its clock) and `Jetwork-Progress` (a subject for progress). The reply:
//! - a plain reply (or `Jetwork-Status: completed`): its payload is the result;
//! - the NATS micro-service error headers (`Nats-Service-Error`, `Nats-Service-Error-Code`):
//!   the attempt fails with them as the reason, for good when the code is 4xx;
//! - `Jetwork-Status: failed`: the attempt fails, with `Jetwork-Reason` (or else the payload)
//!   as the reason;
//! - `Jetwork-Non-Retryable: true` on a failure fails the job for good; any other
//!   `Jetwork-Status`, or headers the client cannot read, fail the attempt (retryable).
//!
//! Deadlines: the worker waits for the reply until shortly before the master's deadline for
//! the attempt (the job's timeout less a tenth of it, at most a second less), so its "no
//! reply" failure reaches the master before the master times the attempt out. Every message
//! on the progress subject reports progress (which extends the master's deadline) and moves
//! this one by a whole timeout. The reply and progress subjects are under this connection's
//! inbox prefix, in one subscription per attempt that ends (unsubscribes) with it; on an
//! abort (a cancel, a revocation, a shutdown) the wait is dropped and the service is not told.
//!
//! No responders: the request is tried again every [`PROBE_EVERY`] until the deadline is
//! near (then the attempt fails), and the handler's [`Gate`] is closed meanwhile: the worker
//! asks for no more work while it holds any, and for one job at a time once it holds none.
//! The first reply or progress from a responder opens it again.
//!
//! Who may send what: the reply and progress subjects are unguessable inboxes, named only in
//! the request, so only a responder that received it (or someone allowed to read the service
//! subject) can answer; an answer is trusted as the service's own. Everything else published
//! into the attempt's inbox is ignored.

use std::sync::Arc;
use std::time::Duration;

use async_nats::{HeaderMap, Message, StatusCode};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::StreamExt;
use jetwork_shared::{clock, headers};
use tokio::time::Instant;

use crate::{Gate, Handler, Job, JobError};

/// How long a request that met no responders waits before it is sent again.
pub const PROBE_EVERY: Duration = Duration::from_millis(250);
/// At most this much of an attempt's timeout is kept back for its failure to reach the
/// master (a tenth of it, when that is less).
const MAX_MARGIN: Duration = Duration::from_secs(1);
/// Longest reason taken from a reply's payload.
const MAX_REASON: usize = 2048;

/// A `--forward` subject is not one a request can be sent to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot forward to {subject:?}: {why}")]
pub struct SubjectError {
    pub subject: String,
    pub why: &'static str,
}

/// Forwards every job to a NATS service.
#[derive(Debug, Clone)]
pub struct Forward {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: async_nats::Client,
    subject: String,
    gate: Gate,
}

impl Forward {
    /// A handler sending each job as a request to `subject` over `client`.
    pub fn new(client: async_nats::Client, subject: &str) -> Result<Self, SubjectError> {
        check_subject(subject)?;
        let inner = Inner { client, subject: subject.to_owned(), gate: Gate::new() };
        Ok(Forward { inner: Arc::new(inner) })
    }
}

impl Handler for Forward {
    fn handle(&self, job: Job) -> BoxFuture<'static, Result<Bytes, JobError>> {
        Box::pin(self.inner.clone().run(job))
    }

    fn gate(&self) -> Option<Gate> {
        Some(self.inner.gate.clone())
    }
}

/// Checks that `subject` is one a message can be published to: dot-separated non-empty
/// tokens, no wildcards, no whitespace.
pub fn check_subject(subject: &str) -> Result<(), SubjectError> {
    let why = if subject.is_empty() {
        Some("it is empty")
    } else if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("it contains whitespace")
    } else if subject.split('.').any(str::is_empty) {
        Some("it has an empty token")
    } else if subject.split('.').any(|t| t == "*" || t == ">") {
        Some("it has a wildcard")
    } else {
        None
    };
    match why {
        Some(why) => Err(SubjectError { subject: subject.to_owned(), why }),
        None => Ok(()),
    }
}

impl Inner {
    async fn run(self: Arc<Self>, job: Job) -> Result<Bytes, JobError> {
        let subject = &self.subject;
        let margin = (job.timeout / 10).min(MAX_MARGIN);
        let lease = job.timeout.saturating_sub(margin);
        let mut deadline = Instant::now() + lease;
        let inbox = self.client.new_inbox();
        let (reply_to, progress_to) = (format!("{inbox}.reply"), format!("{inbox}.progress"));
        let mut inbox = self
            .client
            .subscribe(format!("{inbox}.*"))
            .await
            .map_err(|e| format!("cannot subscribe to the reply inbox: {e}"))?;
        loop {
            let request = request_headers(&job, deadline, &progress_to);
            self.client
                .publish_with_reply_and_headers(
                    subject.clone(),
                    reply_to.clone(),
                    request,
                    job.payload.clone(),
                )
                .await
                .map_err(|e| publish_failure(subject, &e))?;
            let reply = loop {
                tokio::select! {
                    message = inbox.next() => match message {
                        Some(m) if m.subject.as_str() == reply_to => break m,
                        Some(m) if m.subject.as_str() == progress_to => {
                            job.progress();
                            deadline = deadline.max(Instant::now() + lease);
                            self.gate.open();
                        }
                        Some(_) => {}
                        None => return Err("the reply subscription ended (connection closed)".into()),
                    },
                    _ = tokio::time::sleep_until(deadline) => {
                        let ms = lease.as_millis();
                        return Err(format!(
                            "no reply from {subject} within the attempt's deadline ({ms} ms \
                             without a reply or progress)"
                        )
                        .into());
                    }
                }
            };
            if reply.status == Some(StatusCode::NO_RESPONDERS) {
                self.gate.close(format!("no responders on {subject}"));
                let retry_at = Instant::now() + PROBE_EVERY;
                if retry_at >= deadline {
                    return Err(format!(
                        "no responders on {subject} until the attempt's deadline (is the \
                         service running?)"
                    )
                    .into());
                }
                tokio::time::sleep_until(retry_at).await;
                continue;
            }
            self.gate.open();
            return outcome(subject, reply);
        }
    }
}

/// The request's headers: the job's identity, the deadline (wall clock) and the progress
/// subject.
fn request_headers(job: &Job, deadline: Instant, progress_to: &str) -> HeaderMap {
    let left = deadline.saturating_duration_since(Instant::now());
    let wall = clock::now_ms().saturating_add(clock::millis(left));
    let mut h = HeaderMap::new();
    h.insert(headers::WORK_ID, job.work_id.as_str());
    h.insert(headers::QUEUE, job.queue.as_str());
    h.insert(headers::ATTEMPT, job.attempt.to_string().as_str());
    h.insert(headers::DEADLINE, wall.to_string().as_str());
    h.insert(headers::PROGRESS, progress_to);
    h
}

/// Why a request could not be sent: one too large for the server fails the job for good
/// (every attempt would be as large).
fn publish_failure(subject: &str, error: &async_nats::PublishError) -> JobError {
    let why = format!("cannot send the request to {subject}: {error}");
    match error.kind() {
        async_nats::client::PublishErrorKind::MaxPayloadExceeded => JobError::permanent(why),
        _ => JobError::retryable(why),
    }
}

/// The outcome a service's reply stands for (see the module's documentation).
fn outcome(subject: &str, reply: Message) -> Result<Bytes, JobError> {
    if let Some(status) = reply.status {
        let what = reply.description.unwrap_or_default();
        return Err(format!("{subject}: unexpected status {status} {what}").into());
    }
    let description = reply.description.as_deref().unwrap_or("");
    if description.starts_with(async_nats::connection::MALFORMED_HEADERS) {
        return Err(format!("{subject} replied with unreadable headers ({description})").into());
    }
    let get = |name: &str| {
        let value = reply.headers.as_ref().and_then(|h| h.get(name));
        value.map(|v| v.as_str().trim()).filter(|v| !v.is_empty())
    };
    let for_good = get(headers::NON_RETRYABLE).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let error = get(headers::NATS_SERVICE_ERROR);
    let code = get(headers::NATS_SERVICE_ERROR_CODE);
    if error.is_some() || code.is_some() {
        let client_error = code.and_then(|c| c.parse::<u16>().ok()).is_some_and(|c| c / 100 == 4);
        let text = error.map_or_else(|| payload_text(&reply.payload), str::to_owned);
        let reason = format!("{subject}: {} {text}", code.unwrap_or("error"));
        return Err(JobError { reason, retryable: !(client_error || for_good) });
    }
    match get(headers::STATUS) {
        None => Ok(reply.payload),
        Some(status) if status.eq_ignore_ascii_case(headers::STATUS_COMPLETED) => Ok(reply.payload),
        Some(status) if status.eq_ignore_ascii_case(headers::STATUS_FAILED) => {
            let text =
                get(headers::REASON).map_or_else(|| payload_text(&reply.payload), str::to_owned);
            let text = if text.is_empty() { "failed (no reason given)".to_owned() } else { text };
            Err(JobError { reason: format!("{subject}: {text}"), retryable: !for_good })
        }
        Some(other) => {
            let other: String = other.chars().take(64).collect();
            Err(format!("{subject} replied with an unknown {} {other:?}", headers::STATUS).into())
        }
    }
}

/// A payload as a reason: text (lossy), trimmed, its first [`MAX_REASON`] characters.
fn payload_text(payload: &[u8]) -> String {
    String::from_utf8_lossy(payload).trim().chars().take(MAX_REASON).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(headers: &[(&str, &str)], payload: &str) -> Message {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, *v);
        }
        Message {
            subject: "_INBOX.x.reply".into(),
            reply: None,
            payload: Bytes::from(payload.to_owned()),
            headers: (!headers.is_empty()).then_some(map),
            status: None,
            description: None,
            length: 0,
        }
    }

    fn judge(headers: &[(&str, &str)], payload: &str) -> Result<Bytes, JobError> {
        outcome("svc", reply(headers, payload))
    }

    #[test]
    fn a_plain_reply_is_the_result() {
        assert_eq!(judge(&[], "42"), Ok(Bytes::from_static(b"42")));
        assert_eq!(judge(&[("Jetwork-Status", "completed")], ""), Ok(Bytes::new()));
        // Non-retryable means nothing on a success.
        assert_eq!(judge(&[("Jetwork-Non-Retryable", "true")], "x"), Ok(Bytes::from_static(b"x")));
    }

    #[test]
    fn micro_service_errors_fail_the_attempt_4xx_for_good() {
        let e =
            judge(&[("Nats-Service-Error", "overloaded"), ("Nats-Service-Error-Code", "500")], "")
                .unwrap_err();
        assert_eq!(e, JobError::retryable("svc: 500 overloaded"));
        let e =
            judge(&[("Nats-Service-Error", "bad image"), ("Nats-Service-Error-Code", "400")], "")
                .unwrap_err();
        assert_eq!(e, JobError::permanent("svc: 400 bad image"));
        // A code alone: the payload is the reason. An unreadable code is retried.
        let e = judge(&[("Nats-Service-Error-Code", "404")], "no such user").unwrap_err();
        assert_eq!(e, JobError::permanent("svc: 404 no such user"));
        let e = judge(&[("Nats-Service-Error-Code", "4oo")], "").unwrap_err();
        assert!(e.retryable, "{e:?}");
        let e = judge(
            &[
                ("Nats-Service-Error", "nope"),
                ("Nats-Service-Error-Code", "503"),
                ("Jetwork-Non-Retryable", "TRUE"),
            ],
            "",
        )
        .unwrap_err();
        assert!(!e.retryable);
    }

    #[test]
    fn jetwork_status_failed_takes_its_reason_from_the_header_or_payload() {
        let e = judge(&[("Jetwork-Status", "failed")], "disk full\n").unwrap_err();
        assert_eq!(e, JobError::retryable("svc: disk full"));
        let e = judge(
            &[
                ("Jetwork-Status", "FAILED"),
                ("Jetwork-Reason", "why"),
                ("Jetwork-Non-Retryable", "true"),
            ],
            "p",
        )
        .unwrap_err();
        assert_eq!(e, JobError::permanent("svc: why"));
        let e = judge(&[("Jetwork-Status", "failed"), ("Jetwork-Non-Retryable", "yes")], "")
            .unwrap_err();
        assert_eq!(e, JobError::retryable("svc: failed (no reason given)"));
    }

    #[test]
    fn anything_else_fails_the_attempt_with_a_reason() {
        let e = judge(&[("Jetwork-Status", "progress")], "").unwrap_err();
        assert!(e.retryable && e.reason.contains("unknown Jetwork-Status \"progress\""), "{e:?}");
        let mut garbled = reply(&[], "x");
        garbled.description =
            Some(format!("{}bad line", async_nats::connection::MALFORMED_HEADERS));
        let e = outcome("svc", garbled).unwrap_err();
        assert!(e.retryable && e.reason.contains("unreadable headers"), "{e:?}");
        let mut status = reply(&[], "");
        status.status = Some(StatusCode::TIMEOUT);
        assert!(outcome("svc", status).unwrap_err().reason.contains("unexpected status"));
        let long = "x".repeat(10_000);
        let e = judge(&[("Jetwork-Status", "failed")], &long).unwrap_err();
        assert!(e.reason.len() < 2100, "{}", e.reason.len());
    }

    #[test]
    fn subjects_must_be_publishable() {
        assert!(check_subject("jetwork.svc.resize").is_ok());
        for bad in ["", "a..b", ".a", "a.", "a.*", "a.>", "a b", "a\tb"] {
            assert!(check_subject(bad).is_err(), "{bad:?}");
        }
    }
}
