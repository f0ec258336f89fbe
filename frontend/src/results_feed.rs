//! [`ResultsFeed`]: the outcomes `JETWORK_RESULTS` stores from now on, headers only, as the
//! dashboard's failures list and `status --watch` read them. Payloads never travel to them:
//! the feed reads the stream through an ephemeral pull consumer with `headers_only`, filtered
//! on the stored outcomes (`jetwork.outcomes.>`), that acknowledges nothing.
//!
//! It runs on a task of its own and hands out [`Event`]s: each failure, and whether it is
//! reading. A consumer that is lost — NATS restarted (an ephemeral consumer lives in the
//! server's memory), the stream's leader changed, the consumer went idle and was removed,
//! two idle heartbeats missed, a delivery skipped — is replaced by a new one from the stream
//! sequence after the last outcome seen, so nothing is read twice or skipped; until one is
//! made it retries every [`RETRY_MIN`]…[`RETRY_MAX`], saying why ([`Event::Trouble`]).
//!
//! Invariants: only ephemeral consumers (created on `$JS.API.CONSUMER.CREATE.JETWORK_RESULTS`,
//! where the server refuses a durable name), so a lost or abandoned one goes away by itself
//! after [`INACTIVE`]; the first one starts at the outcomes stored after it is created
//! (`DeliverPolicy::New`), later ones at the sequence after the last seen. At most
//! [`EVENTS`] events wait for the reader (then the feed waits too). Who may send what it reads:
//! only the master may write `jetwork.outcomes.>` (`nats.conf`); the header values are still
//! only shown as text, capped at [`MAX_FIELD`] characters each.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use futures::StreamExt;
use jetwork_shared::connect::Denied;
use jetwork_shared::{headers, subjects};
use tokio::sync::mpsc;

use crate::{Client, ClientError};

/// Events waiting for the reader, at most.
pub const EVENTS: usize = 256;
/// First wait before making a consumer again after a failure.
pub const RETRY_MIN: Duration = Duration::from_millis(250);
/// Longest wait between two tries.
pub const RETRY_MAX: Duration = Duration::from_secs(5);
/// How long an ephemeral consumer nobody pulls from lives on the server.
pub const INACTIVE: Duration = Duration::from_secs(30);
/// The server sends an idle heartbeat this often while there is nothing to deliver; two
/// missed mean the consumer (or the connection) is gone.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long one pull request waits.
const EXPIRES: Duration = Duration::from_secs(10);
/// Outcomes asked for at once.
const BATCH: usize = 100;
/// Longest work id, queue, attempt or reason kept, in characters.
pub const MAX_FIELD: usize = 2048;

/// A failure stored in the results stream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    pub work_id: String,
    pub queue: String,
    pub attempt: String,
    pub reason: String,
}

impl Failure {
    /// The failure a stored outcome (its subject and headers) records, if it records one.
    pub fn of(subject: &str, headers: Option<&async_nats::HeaderMap>) -> Option<Failure> {
        let h = headers?;
        if h.get(headers::STATUS)?.as_str() != headers::STATUS_FAILED {
            return None;
        }
        let (queue, work_id) = subjects::result_parts(subject).unwrap_or_default();
        let get = |name: &str, or: &str| {
            let value = h.get(name).map_or(or, |v| v.as_str());
            value.chars().take(MAX_FIELD).collect::<String>()
        };
        Some(Failure {
            work_id: get(headers::WORK_ID, work_id),
            queue: get(headers::QUEUE, queue),
            attempt: get(headers::ATTEMPT, ""),
            reason: get(headers::REASON, ""),
        })
    }
}

/// What the feed reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A failure was stored.
    Failure(Failure),
    /// A consumer is reading (the first one, or a new one after [`Event::Trouble`]).
    Reading,
    /// No consumer is reading, and why; the feed keeps trying.
    Trouble(String),
    /// NATS refuses this user the consumer (creating it, or pulling from it); the feed keeps
    /// trying (permissions can be reloaded).
    Refused(Denied),
}

impl Event {
    /// Why failures are not being read, if this says so.
    pub fn trouble(&self) -> Option<String> {
        match self {
            Event::Trouble(why) => Some(why.clone()),
            Event::Refused(denied) => Some(ClientError::from(denied.clone()).to_string()),
            Event::Failure(_) | Event::Reading => None,
        }
    }
}

/// The feed: a task reading the results stream, and its events.
#[derive(Debug)]
pub struct ResultsFeed {
    events: mpsc::Receiver<Event>,
    task: tokio::task::JoinHandle<()>,
}

impl ResultsFeed {
    /// Starts reading the outcomes stored from now on, as `client`'s NATS user.
    pub fn start(client: &Client) -> Self {
        let (tx, events) = mpsc::channel(EVENTS);
        let task = tokio::spawn(feed(client.clone(), tx));
        ResultsFeed { events, task }
    }

    /// The next event (`None` once the feed's task is gone). Cancel-safe: an event not yet
    /// taken stays for the next call.
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }
}

impl Drop for ResultsFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why one consumer stopped being read.
enum Lost {
    /// The reader is gone: stop.
    Closed,
    /// Make a new consumer (after a pause), reporting this ([`Event::Trouble`] or
    /// [`Event::Refused`]).
    Again(Event),
}

/// Reads consumer after consumer until the reader goes away.
async fn feed(client: Client, tx: mpsc::Sender<Event>) {
    // The stream sequence of the last outcome seen (or passed over): `None` until the first
    // consumer says where "new" starts.
    let mut last_seq: Option<u64> = None;
    let mut wait = RETRY_MIN;
    let mut troubled = false;
    loop {
        let lost = match open(&client, last_seq).await {
            Ok(consumer) => {
                last_seq.get_or_insert(consumer.cached_info().delivered.stream_sequence);
                wait = RETRY_MIN;
                if tx.send(Event::Reading).await.is_err() {
                    return;
                }
                troubled = false;
                read(&client, &consumer, &mut last_seq, &tx).await
            }
            Err(trouble) => Lost::Again(trouble),
        };
        let trouble = match lost {
            Lost::Closed => return,
            Lost::Again(trouble) => trouble,
        };
        if !troubled {
            let reason = trouble.trouble().unwrap_or_default();
            tracing::warn!(%reason, "the results feed has no consumer; making a new one");
        }
        troubled = true;
        if tx.send(trouble).await.is_err() {
            return;
        }
        // A lost consumer is made again a moment later; while that keeps failing, less often.
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY_MAX);
    }
}

/// Creates a consumer starting after `last_seq` (at what is stored from now on, if `None`).
async fn open(
    client: &Client,
    last_seq: Option<u64>,
) -> Result<async_nats::jetstream::consumer::PullConsumer, Event> {
    let deliver_policy = match last_seq {
        None => DeliverPolicy::New,
        Some(seq) => DeliverPolicy::ByStartSequence { start_sequence: seq + 1 },
    };
    let config = pull::Config {
        description: Some("jetwork: failures for the dashboard or status --watch".to_owned()),
        deliver_policy,
        ack_policy: AckPolicy::None,
        filter_subject: subjects::OUTCOMES_ALL.to_owned(),
        headers_only: true,
        inactive_threshold: INACTIVE,
        memory_storage: true,
        num_replicas: 1,
        ..Default::default()
    };
    let create = client.jetstream().create_consumer_on_stream(config, subjects::RESULTS_STREAM);
    match client.unless_denied(&consumer_create(), create).await {
        Ok(Ok(consumer)) => Ok(consumer),
        Ok(Err(e)) => Err(Event::Trouble(format!("cannot read {}: {e}", subjects::RESULTS_STREAM))),
        Err(denied) => Err(Event::Refused(denied)),
    }
}

/// Reads `consumer` until it is lost, moving `last_seq` along.
async fn read(
    client: &Client,
    consumer: &async_nats::jetstream::consumer::PullConsumer,
    last_seq: &mut Option<u64>,
    tx: &mpsc::Sender<Event>,
) -> Lost {
    let messages = consumer
        .stream()
        .max_messages_per_batch(BATCH)
        .expires(EXPIRES)
        .heartbeat(HEARTBEAT)
        .messages()
        .await;
    let mut messages = match messages {
        Ok(messages) => messages,
        Err(e) => return Lost::Again(Event::Trouble(format!("cannot pull: {e}"))),
    };
    let mut delivered = 0u64;
    let reading = async {
        loop {
            let message = match messages.next().await {
                Some(Ok(message)) => message,
                // Missed heartbeats, a consumer deleted (or gone with a restart), no responders:
                // whatever it was, a new consumer is the way on.
                Some(Err(e)) => {
                    return Lost::Again(Event::Trouble(format!("reading the results stream: {e}")))
                }
                None => return Lost::Again(Event::Trouble("the pull ended".to_owned())),
            };
            let Ok(info) = message.info() else { continue };
            if info.consumer_sequence != delivered + 1 {
                // A delivery went missing: start again after the last one seen.
                return Lost::Again(Event::Trouble(format!(
                    "delivery {} came after {delivered}: reading again from sequence {}",
                    info.consumer_sequence,
                    last_seq.map_or(0, |s| s + 1)
                )));
            }
            delivered = info.consumer_sequence;
            *last_seq = Some(info.stream_sequence);
            let subject = message.subject.as_str();
            if let Some(failure) = Failure::of(subject, message.headers.as_ref()) {
                if tx.send(Event::Failure(failure)).await.is_err() {
                    return Lost::Closed;
                }
            }
        }
    };
    // A refusal of the pulls (a user allowed to create the consumer but not to read it) is
    // reported at once rather than as missed heartbeats.
    match client.unless_denied(&consumer_next(), reading).await {
        Ok(lost) => lost,
        Err(denied) => Lost::Again(Event::Refused(denied)),
    }
}

/// The subject an ephemeral consumer on the results stream is created on.
pub fn consumer_create() -> String {
    format!("$JS.API.CONSUMER.CREATE.{}", subjects::RESULTS_STREAM)
}

/// The subjects its pulls are sent to (one per consumer name).
pub fn consumer_next() -> String {
    format!("$JS.API.CONSUMER.MSG.NEXT.{}", subjects::RESULTS_STREAM)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: &str, reason: &str) -> async_nats::HeaderMap {
        let mut h = async_nats::HeaderMap::new();
        h.insert(headers::STATUS, status);
        h.insert(headers::ATTEMPT, "3");
        h.insert(headers::REASON, reason);
        h
    }

    #[test]
    fn a_failure_is_read_from_the_headers_and_the_subject_fills_in() {
        let h = outcome(headers::STATUS_FAILED, "boom");
        let failure = Failure::of("jetwork.outcomes.emails.job-1", Some(&h));
        let expected = Failure {
            work_id: "job-1".into(),
            queue: "emails".into(),
            attempt: "3".into(),
            reason: "boom".into(),
        };
        assert_eq!(failure, Some(expected));
        let done = outcome(headers::STATUS_COMPLETED, "");
        assert_eq!(Failure::of("jetwork.outcomes.emails.job-2", Some(&done)), None);
        assert_eq!(Failure::of("jetwork.outcomes.emails.job-3", None), None);
        let long = outcome(headers::STATUS_FAILED, &"x".repeat(10 * MAX_FIELD));
        let capped = Failure::of("jetwork.outcomes.q.a", Some(&long)).map(|f| f.reason.len());
        assert_eq!(capped, Some(MAX_FIELD));
    }
}
