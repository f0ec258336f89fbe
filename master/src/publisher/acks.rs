//! [`Acks`]: JetStream publications whose acknowledgements all come back on one subscription
//! of the master's, for the messages it sends by the thousand (outcomes, one per job).
//!
//! `jetstream::Context::send_publish` costs, per message: a fresh inbox string, a one-shot
//! channel through the client's request multiplexer, two timers and a JSON parse into an
//! untagged enum. Here a message's reply subject is `<inbox>.<id>`, under one inbox this
//! subscription covers; one timer finds the overdue; and an acknowledgement of a stored
//! message is told by its first bytes (the server writes `{"stream":` first, and an error
//! first as `{"error":`), so only a refusal is parsed.
//!
//! Invariants:
//! - Each tracked id gets exactly one [`Answer`]: the first message on its reply subject, or
//!   `TimedOut` once `timeout` has passed since it was sent. Anything later on that subject is
//!   ignored.
//! - An answer counts only on its own reply subject: `<inbox>.<id>`, the id a random 64-bit
//!   number (ChaCha, seeded by the operating system). The inbox's name is no secret (a
//!   rejection's reply subject reaches the subscribers of `jetwork.rejected.>`), and in the
//!   shipped roles only `admin` may publish under the master's prefix; even so, a forged
//!   acknowledgement cannot be aimed at a publication still awaited, since its id cannot be
//!   guessed. (A forged "stored" would have the leader record an outcome the stream never got.)
//! - An answer already received counts before any deadline: the leader's loop may not have
//!   asked for one for longer than `timeout` (a snapshot, a slow journal write).
//! - [`Acks::publish`] is cancel-safe: dropped before it returns, nothing was sent.

use std::collections::VecDeque;

use jetwork_shared::fast_hash::FastMap;
use std::fmt::Write;
use std::pin::Pin;
use std::time::Duration;

use async_nats::{Client, HeaderMap, Message, StatusCode, Subject, Subscriber};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::Deserialize;
use tokio::time::{Instant, Sleep};

/// What the stream answered about one publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Stored (or found to be a duplicate of a stored message, for one with a msg-id).
    Stored,
    /// Refused by its fence: the subject holds a newer message than the one it expected.
    WrongLastSequence,
    /// Anything else; the publication may or may not have been stored.
    Failed(AckError),
}

/// Why a publication got no acknowledgement of being stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("no acknowledgement within {0:?}")]
    TimedOut(Duration),
    #[error("no stream listens on the subject (no responders)")]
    NoResponders,
    #[error("refused by the stream: {description} (code {code}, error code {err_code})")]
    Refused { code: u16, err_code: u64, description: String },
    #[error("unreadable acknowledgement: {0}")]
    Unreadable(String),
    #[error("the connection's subscription for acknowledgements ended")]
    Closed,
    #[error("could not send: {0}")]
    NotSent(String),
}

/// Publications awaiting their acknowledgement, each with the caller's `T`.
pub struct Acks<T> {
    client: Client,
    /// `<inbox>.`: a reply subject is this and an id.
    prefix: String,
    subscription: Option<Subscriber>,
    timeout: Duration,
    /// Draws the ids (see the module docs).
    ids: ChaCha20Rng,
    pending: FastMap<u64, T>,
    /// Ids in the order sent, with when; answered ones are dropped lazily from the front.
    sent: VecDeque<(u64, Instant)>,
    /// Fires at the front's deadline (or later): the overdue are answered `TimedOut` then.
    sweep: Pin<Box<Sleep>>,
}

impl<T> Acks<T> {
    pub fn new(client: Client, timeout: Duration) -> Self {
        let prefix = format!("{}.", client.new_inbox());
        Acks {
            client,
            prefix,
            subscription: None,
            timeout,
            ids: ChaCha20Rng::from_seed(crate::leader::random_seed()),
            pending: FastMap::default(),
            sent: VecDeque::new(),
            sweep: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    /// How many wait for an answer.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Sends one message expecting an acknowledgement, and returns its id for
    /// [`Acks::track`]. Cancel-safe: if dropped before returning, nothing was sent.
    pub async fn publish(
        &mut self,
        subject: Subject,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<u64, AckError> {
        if self.subscription.is_none() {
            // Subscribed before the first message goes out: the connection sends commands in
            // order, so the server knows the subscription when the acknowledgement comes.
            let wildcard = format!("{}*", self.prefix);
            let subscription = self
                .client
                .subscribe(wildcard)
                .await
                .map_err(|e| AckError::NotSent(e.to_string()))?;
            self.subscription = Some(subscription);
        }
        let id = loop {
            let id = self.ids.next_u64();
            if !self.pending.contains_key(&id) {
                break id;
            }
        };
        let mut reply = String::with_capacity(self.prefix.len() + 20);
        reply.push_str(&self.prefix);
        let _ = write!(reply, "{id}");
        self.client
            .publish_with_reply_and_headers(subject, Subject::from(reply), headers, payload)
            .await
            .map_err(|e| AckError::NotSent(e.to_string()))?;
        Ok(id)
    }

    /// Waits for the answer to `id` (just returned by [`Acks::publish`]) on behalf of `entry`.
    pub fn track(&mut self, id: u64, entry: T) {
        let now = Instant::now();
        if self.pending.is_empty() {
            self.sweep.as_mut().reset(now + self.timeout);
        }
        self.pending.insert(id, entry);
        self.sent.push_back((id, now));
    }

    /// The next answer. Pending forever while nothing is awaited. Cancel-safe.
    pub async fn next(&mut self) -> (T, Answer) {
        loop {
            if self.front_is_overdue() {
                // What has arrived is read before anything is declared overdue.
                if let Some(subscription) = self.subscription.as_mut() {
                    match subscription.next().now_or_never() {
                        Some(Some(message)) => {
                            if let Some(answered) = self.answer(&message) {
                                return answered;
                            }
                            continue;
                        }
                        Some(None) => {
                            self.subscription = None;
                            continue;
                        }
                        None => {}
                    }
                }
                if let Some(overdue) = self.take_front() {
                    return overdue;
                }
            }
            let Some(subscription) = self.subscription.as_mut() else {
                // Nothing sent yet, or the subscription ended (the client is closing): what
                // waits will not be answered.
                let id = self.pending.keys().next().copied();
                return match id.and_then(|id| self.pending.remove(&id)) {
                    Some(entry) => (entry, Answer::Failed(AckError::Closed)),
                    None => std::future::pending().await,
                };
            };
            if self.pending.is_empty() {
                return std::future::pending().await;
            }
            tokio::select! {
                message = subscription.next() => match message {
                    Some(message) => {
                        if let Some(answered) = self.answer(&message) {
                            return answered;
                        }
                    }
                    None => self.subscription = None,
                },
                () = self.sweep.as_mut() => {
                    // The overdue are answered at the top of the loop; the timer is set for
                    // the oldest still awaited.
                    self.prune_front();
                    let oldest = self.sent.front().map(|(_, at)| *at + self.timeout);
                    let now = Instant::now();
                    self.sweep.as_mut().reset(oldest.unwrap_or(now + self.timeout).max(now));
                }
            }
        }
    }

    /// Drops answered ids from the front of `sent`, so it stays as long as what is awaited.
    fn prune_front(&mut self) {
        while self.sent.front().is_some_and(|(id, _)| !self.pending.contains_key(id)) {
            self.sent.pop_front();
        }
    }

    /// Whether the oldest awaited publication's time is up.
    fn front_is_overdue(&mut self) -> bool {
        self.prune_front();
        self.sent.front().is_some_and(|(_, at)| *at + self.timeout <= Instant::now())
    }

    /// The oldest awaited publication, answered as timed out.
    fn take_front(&mut self) -> Option<(T, Answer)> {
        let (id, _) = self.sent.pop_front()?;
        let entry = self.pending.remove(&id)?;
        Some((entry, Answer::Failed(AckError::TimedOut(self.timeout))))
    }

    /// The answer a message on the subscription gives, if it is one still awaited.
    fn answer(&mut self, message: &Message) -> Option<(T, Answer)> {
        let id = message.subject.strip_prefix(self.prefix.as_str())?.parse::<u64>().ok()?;
        let entry = self.pending.remove(&id)?;
        self.prune_front();
        Some((entry, read(message)))
    }
}

/// What an acknowledgement says.
pub fn read(message: &Message) -> Answer {
    if message.status == Some(StatusCode::NO_RESPONDERS) {
        return Answer::Failed(AckError::NoResponders);
    }
    read_payload(&message.payload)
}

/// What an acknowledgement's body says. The server writes a stored message's acknowledgement
/// as `{"stream":…,"seq":…}` and a refusal with its `error` first.
fn read_payload(payload: &[u8]) -> Answer {
    if payload.starts_with(b"{\"stream\":") {
        return Answer::Stored;
    }
    #[derive(Deserialize)]
    struct Reply {
        error: Option<ApiError>,
        stream: Option<String>,
    }
    #[derive(Deserialize)]
    struct ApiError {
        #[serde(default)]
        code: u16,
        #[serde(default)]
        err_code: u64,
        #[serde(default)]
        description: String,
    }
    /// JetStream's error code for a failed `Nats-Expected-Last-Subject-Sequence`.
    const WRONG_LAST_SEQUENCE: u64 = 10071;
    match serde_json::from_slice::<Reply>(payload) {
        Ok(Reply { error: Some(error), .. }) if error.err_code == WRONG_LAST_SEQUENCE => {
            Answer::WrongLastSequence
        }
        Ok(Reply { error: Some(ApiError { code, err_code, description }), .. }) => {
            Answer::Failed(AckError::Refused { code, err_code, description })
        }
        Ok(Reply { error: None, stream: Some(_) }) => Answer::Stored,
        Ok(Reply { error: None, stream: None }) => {
            Answer::Failed(AckError::Unreadable("neither a stream nor an error".to_owned()))
        }
        Err(e) => Answer::Failed(AckError::Unreadable(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_message_is_told_by_its_first_bytes() {
        assert_eq!(read_payload(br#"{"stream":"JETWORK_RESULTS","seq":42}"#), Answer::Stored);
        assert_eq!(
            read_payload(br#"{"stream":"JETWORK_RESULTS","seq":7,"duplicate":true}"#),
            Answer::Stored
        );
        // Written another way, it is still read.
        assert_eq!(read_payload(br#"{ "seq": 1, "stream": "S" }"#), Answer::Stored);
    }

    #[test]
    fn a_refused_fence_is_told_from_other_refusals() {
        let wrong = br#"{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 5"},"stream":"JETWORK_RESULTS","seq":0}"#;
        assert_eq!(read_payload(wrong), Answer::WrongLastSequence);
        let full =
            br#"{"error":{"code":503,"err_code":10077,"description":"maximum bytes exceeded"}}"#;
        assert_eq!(
            read_payload(full),
            Answer::Failed(AckError::Refused {
                code: 503,
                err_code: 10077,
                description: "maximum bytes exceeded".to_owned()
            })
        );
    }

    #[test]
    fn anything_else_is_a_failure_not_a_stored_message() {
        for garbage in [&b""[..], b"{}", b"null", b"{\"seq\":1}", b"\xff\xfe", b"{\"stream\""] {
            assert!(
                matches!(read_payload(garbage), Answer::Failed(AckError::Unreadable(_))),
                "{:?}",
                String::from_utf8_lossy(garbage)
            );
        }
    }
}
