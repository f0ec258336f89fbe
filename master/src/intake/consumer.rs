//! [`Puller`]: one ephemeral pull consumer on `JETWORK_SUBMIT` read without acknowledgements,
//! and the checks that no delivery it sends is missed: the part the queue readers and the
//! stream reader share.
//!
//! The consumer does not acknowledge (`AckPolicy::None`) and the server never redelivers, so
//! a message lost between the server and this process (a network blip, a reconnect, a
//! slow-subscription drop) would otherwise be skipped for good: the next pull simply continues
//! after it. Every delivery is therefore checked against the consumer's own count of
//! deliveries (`consumer_sequence`, which grows by exactly one per message sent to us); a pull
//! that ends short is checked against the count of unsent messages in the status that ends it,
//! or, without it, by asking the consumer ([`Puller::doubt`]); and the intake connection's
//! [`Interruptions`](jetwork_shared::connect::Interruptions) are watched throughout. On any doubt
//! ([`Pulled::Broken`], [`Pulled::Short`] the server does not account for) the reader drops the
//! consumer and starts a new one right after the last message it actually passed on.
//!
//! **Creations are never abandoned, and few at a time.** A reader has at most one creation in
//! flight and waits for its answer however long it takes (the request's own timeout ends it):
//! a creation given up on the client side still completes on the server, and trying again at
//! once would leave an unread consumer behind each time. All readers together have at most
//! [`MAX_CREATING`] creations in flight.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, Consumer, DeliverPolicy};
use futures::StreamExt;
use jetwork_shared::{subjects, Unavailable};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::{unreadable, ReaderEnv, Stored};

/// How long a pull waits on the server for submissions.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// How long the reader waits for its consumer to say how much it sent.
const DOUBT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long creating a consumer may take before the reader does without it meanwhile, and how
/// often it tries again while it has none.
pub(super) const CREATE_TIMEOUT: Duration = Duration::from_secs(1);
const CREATE_EVERY: Duration = Duration::from_secs(1);
/// Consumer creations in flight at once, over all the readers of a leader.
pub const MAX_CREATING: usize = 16;

/// A consumer and how many messages it has delivered to us.
pub(super) struct Cursor {
    pub consumer: Consumer<pull::Config>,
    pub delivered: u64,
}

/// A creation in flight: it ends with the consumer or why there is none.
type Creating = JoinHandle<Result<Consumer<pull::Config>, Unavailable>>;

/// A reader's consumer: the one it reads, or the one being created (at most one of each: a
/// reader whose consumer broke may read otherwise while the next is created).
#[derive(Default)]
pub(super) struct ConsumerSlot {
    pub cursor: Option<Cursor>,
    creating: Option<Creating>,
}

/// How one pull ended.
pub(super) enum Pulled {
    /// Every message asked for arrived, in order.
    Full,
    /// Fewer arrived, and the server's status at the pull's expiry says it left exactly the
    /// rest unsent: none was lost, and the consumer need not be asked.
    Accounted,
    /// Fewer arrived (the pull expired) without that status: check with the server that none
    /// were lost.
    Short,
    /// A delivery was missing, the connection was interrupted, or the pull failed: start a new
    /// consumer at the position.
    Broken(String),
    /// The reader asked to stop the pull and read from another position.
    Restart,
    /// The leader is gone.
    Closed,
}

/// What a reader did with a message delivered in turn.
pub(super) enum Taken {
    /// Passed on (or deliberately left): the position moves past it.
    Passed,
    /// The message is not what this consumer should deliver.
    Broken(String),
    /// Not taken: the reader goes on from another position ([`Pulled::Restart`]).
    Restart,
    /// The leader is gone.
    Closed,
}

/// What a reader does with the messages its consumer delivers.
pub(super) trait Take {
    /// A message at or after the reader's position, in stream order, none skipped.
    fn take(&mut self, stored: Stored<'_>) -> Taken;

    /// Something else the reader attends to while a pull waits on the server (it never ends
    /// by default); `true` ends the pull ([`Pulled::Restart`]). It must be cancel-safe: a
    /// delivery arriving ends the wait.
    fn meanwhile(&mut self) -> impl Future<Output = bool> + Send {
        std::future::pending()
    }
}

/// One reader's consumers: which submissions they deliver (`filter`; empty: the whole stream),
/// and what the logs (and the consumers' descriptions) call the reader.
#[derive(Clone)]
pub(super) struct Puller {
    pub env: ReaderEnv,
    filter: String,
    pub what: String,
    /// Permits for its creations: the queue readers share [`MAX_CREATING`]; the stream
    /// reader has one of its own, so that it never waits behind theirs.
    creating: Arc<Semaphore>,
}

impl Puller {
    /// The consumers of a queue reader (`filter`: its queue's submissions).
    pub fn new(env: ReaderEnv, filter: String, what: String) -> Self {
        let creating = env.creating.clone();
        Puller { env, filter, what, creating }
    }

    /// The consumers of the stream reader: unfiltered (the server reads a filtered consumer's
    /// next message by matching the filter against each stream block's subjects, a thousand
    /// of them with a thousand queues, even where the filter takes every subject), with a
    /// creation permit of their own.
    pub fn unshared(env: ReaderEnv, what: String) -> Self {
        let creating = Arc::new(Semaphore::new(1));
        Puller { env, filter: String::new(), what, creating }
    }

    /// Pulls up to `want` messages from `next_seq` on and hands each to `taker`, checking
    /// each against the consumer's delivery count; `got` counts what arrived.
    pub async fn pull(
        &self,
        cursor: &mut Cursor,
        want: usize,
        next_seq: &mut u64,
        got: &mut usize,
        taker: &mut impl Take,
    ) -> Pulled {
        let interruptions = self.env.interruptions.clone();
        let before = interruptions.count();
        // No idle heartbeat: async-nats 0.51's `Batch` neither checks for missed ones nor
        // wakes for the message after one (it stalls until the pull's expiry and drops what
        // arrived meanwhile: the reader would then read it again, seconds late). A consumer on
        // a dead node shows as a pull that ends short and a consumer that does not answer.
        let batch = cursor.consumer.batch().max_messages(want).expires(PULL_EXPIRES);
        let mut batch = match batch.messages().await {
            Ok(batch) => batch,
            Err(e) => return Pulled::Broken(format!("pull failed: {e}")),
        };
        let mut interrupted = interruptions.clone();
        loop {
            // Checked on every message as well: an interruption between two polls of
            // `interrupted` would otherwise only be seen when the pull ends.
            if interruptions.count() != before {
                return Pulled::Broken("connection interrupted".into());
            }
            let item = tokio::select! {
                item = batch.next() => item,
                () = interrupted.next() => return Pulled::Broken("connection interrupted".into()),
                restart = taker.meanwhile() => match restart {
                    true => return Pulled::Restart,
                    false => continue,
                },
            };
            let message = match item {
                None => break,
                Some(Ok(message)) => message,
                Some(Err(e)) => return Pulled::Broken(format!("pull interrupted: {e}")),
            };
            let info = match message.info() {
                Ok(info) => info,
                Err(e) => return Pulled::Broken(format!("delivery without metadata: {e}")),
            };
            let (delivered, seq) = (info.consumer_sequence, info.stream_sequence);
            if delivered != cursor.delivered + 1 {
                return Pulled::Broken(format!(
                    "delivery {delivered} arrived after {}: a message was lost in flight",
                    cursor.delivered
                ));
            }
            cursor.delivered = delivered;
            *got += 1;
            if seq < *next_seq {
                continue;
            }
            let stored_ms =
                u64::try_from(info.published.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
            let stored = Stored {
                subject: message.subject.as_str(),
                seq,
                stored_ms,
                headers: message.headers.as_ref(),
                malformed: unreadable(&message),
                payload: message.payload.clone(),
            };
            match taker.take(stored) {
                Taken::Passed => *next_seq = seq + 1,
                Taken::Broken(why) => return Pulled::Broken(why),
                Taken::Restart => return Pulled::Restart,
                Taken::Closed => return Pulled::Closed,
            }
        }
        if interruptions.count() != before {
            return Pulled::Broken("connection interrupted".into());
        }
        if *got >= want {
            Pulled::Full
        } else if batch.unfilled() == Some(want - *got) {
            Pulled::Accounted
        } else {
            Pulled::Short
        }
    }

    /// After a pull that ended short, asks the server how many messages the consumer sent us:
    /// more than arrived means some were lost on the way (including the end of the pull).
    /// Returns why the consumer can no longer be trusted, if it cannot.
    pub async fn doubt(&self, cursor: &mut Cursor) -> Option<String> {
        let info = match tokio::time::timeout(DOUBT_TIMEOUT, cursor.consumer.info()).await {
            Ok(Ok(info)) => info,
            Ok(Err(e)) => return Some(format!("cannot ask the consumer what it sent: {e}")),
            Err(_) => return Some("the consumer did not say what it sent within 1s".into()),
        };
        let sent = info.delivered.consumer_sequence;
        (sent != cursor.delivered)
            .then(|| format!("the server sent {sent} messages, {} arrived", cursor.delivered))
    }

    /// After a pull, checks it ([`Puller::doubt`] when it ended short): `Ok` if the consumer
    /// still delivers everything.
    pub async fn check(&self, cursor: &mut Cursor, pulled: Pulled) -> Result<(), Checked> {
        match pulled {
            Pulled::Closed => Err(Checked::Closed),
            Pulled::Restart => Err(Checked::Restart),
            Pulled::Full | Pulled::Accounted => Ok(()),
            Pulled::Short => {
                self.doubt(cursor).await.map_or(Ok(()), |why| Err(Checked::Broken(why)))
            }
            Pulled::Broken(why) => Err(Checked::Broken(why)),
        }
    }

    /// Drops the slot's consumer after a doubt, counting and logging it: the reader reads again
    /// from `next_seq` with a new one.
    pub fn reread(&self, slot: &mut ConsumerSlot, next_seq: u64, why: &str) {
        if let Some(rereads) = &self.env.rereads {
            rereads.inc();
        }
        tracing::warn!(
            reader = %self.what,
            next_seq,
            %why,
            "submit reader may have missed deliveries; reading again from its position"
        );
        if let Some(old) = slot.cursor.take() {
            self.retire(old.consumer);
        }
    }

    /// Drops the slot's consumer (not its creation in flight) without doubting it: the reader
    /// goes on from another position.
    pub fn discard(&self, slot: &mut ConsumerSlot) {
        if let Some(old) = slot.cursor.take() {
            self.retire(old.consumer);
        }
    }

    /// Gives the slot a consumer if it can: starts a creation from `start` unless one is in
    /// flight (or the last failed under [`CREATE_EVERY`] ago), then waits for it at most
    /// [`CREATE_TIMEOUT`]. A creation still unanswered stays in flight for the next round.
    pub async fn await_consumer(
        &self,
        slot: &mut ConsumerSlot,
        start: u64,
        failed_at: &mut Option<Instant>,
    ) {
        let mut fresh = false;
        if slot.creating.is_none() {
            if failed_at.is_some_and(|at| at.elapsed() < CREATE_EVERY) {
                return;
            }
            let this = self.clone();
            slot.creating = Some(tokio::spawn(async move { this.create(start).await }));
            fresh = true;
        }
        let Some(creating) = slot.creating.as_mut() else { return };
        let created = match tokio::time::timeout(CREATE_TIMEOUT, creating).await {
            Ok(created) => created,
            Err(_) => {
                if fresh {
                    tracing::info!(reader = %self.what, "creating the submit reader takes over 1s; reading otherwise meanwhile");
                }
                return;
            }
        };
        slot.creating = None;
        match created {
            Ok(Ok(consumer)) => slot.cursor = Some(Cursor { consumer, delivered: 0 }),
            Ok(Err(e)) => {
                *failed_at = Some(Instant::now());
                tracing::warn!(reader = %self.what, error = %e, "cannot create the submit reader; reading otherwise meanwhile");
            }
            Err(e) => {
                *failed_at = Some(Instant::now());
                tracing::error!(reader = %self.what, error = %e, "the submit reader's creation task ended abnormally");
            }
        }
    }

    /// Leaves no consumer behind, not even one still being created: for a reader that stops.
    pub fn release(&self, slot: ConsumerSlot) {
        if let Some(cursor) = slot.cursor {
            self.retire(cursor.consumer);
        }
        if let Some(creating) = slot.creating {
            let this = self.clone();
            tokio::spawn(async move {
                if let Ok(Ok(created)) = creating.await {
                    this.retire(created);
                }
            });
        }
    }

    /// Deletes a consumer that is no longer read, without waiting (it would expire anyway).
    fn retire(&self, consumer: Consumer<pull::Config>) {
        let js = self.env.js.clone();
        let name = consumer.cached_info().name.clone();
        tokio::spawn(async move {
            if let Ok(stream) = js.get_stream_no_info(subjects::SUBMIT_STREAM).await {
                let _ = stream.delete_consumer(&name).await;
            }
        });
    }

    /// Creates the consumer that reads from `start`, once one of the leader's
    /// [`MAX_CREATING`] permits is free. A consumer created when the reader no longer wants it
    /// (it stopped, or read on otherwise) is retired by the reader, or expires unread.
    async fn create(&self, start: u64) -> Result<Consumer<pull::Config>, Unavailable> {
        let what = || format!("creating the submit reader of {}", self.what);
        let _permit = self.creating.acquire().await.map_err(|e| Unavailable::new(what(), e))?;
        let stream = self
            .env
            .js
            .get_stream(subjects::SUBMIT_STREAM)
            .await
            .map_err(|e| Unavailable::new(what(), e))?;
        stream
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: start.max(1) },
                ack_policy: AckPolicy::None,
                filter_subject: self.filter.clone(),
                inactive_threshold: Duration::from_secs(60),
                memory_storage: true,
                description: Some(format!("jetwork master: submission reader of {}", self.what)),
                ..Default::default()
            })
            .await
            .map_err(|e| Unavailable::new(what(), e))
    }
}

/// Why a reader's consumer does not go on after a pull.
pub(super) enum Checked {
    /// It may have missed deliveries: read again with a new one.
    Broken(String),
    /// The reader wants to read from another position.
    Restart,
    /// The leader is gone.
    Closed,
}
