//! Reading submissions from `JETWORK_SUBMIT`, one reader task per queue, only as fast as the
//! leader asks, and never past a message it did not receive.
//!
//! Each [`QueueReader`] owns an ephemeral pull consumer filtered to the queue's submissions
//! (`jetwork.*.<queue>`: the clients' `jetwork.submit.<queue>` and the master's own
//! `jetwork.internal.<queue>`, in stream order), starting where the leader tells it (the
//! queue's cursor + 1). The leader grants it credits
//! (one per submission it wants); the reader pulls at most that many, so the backlog stays in
//! the stream and the master's memory only holds what workers can take plus a small
//! read-ahead. A pull waits on the server for new submissions, so a submission reaches the
//! leader within milliseconds of being stored.
//!
//! **No silent gaps.** The consumer does not acknowledge (`AckPolicy::None`) and the server never
//! redelivers, so a message lost between the server and this process (a network blip, a reconnect,
//! a slow-subscription drop) would otherwise be skipped for good: the next pull simply continues
//! after it. The reader therefore checks every delivery against the consumer's own count of
//! deliveries (`consumer_sequence`, which grows by exactly one per message sent to us), checks
//! whenever a pull ends short that the server sent no more than arrived (by the count of unsent
//! messages in the status that ends the pull, or, without it, by asking the consumer), and watches
//! its connection for [`Interruptions`]. On any doubt it drops the consumer and starts a new one
//! right after the last submission it actually passed on (counted in
//! `jetwork_master_intake_rereads_total`). Each submission it passes on carries `after`, the
//! previous one it passed on (or the position it started from), and the engine only moves a queue's
//! cursor along that unbroken chain (see `Submission::after`), so even a reader bug cannot skip
//! work silently.
//!
//! **Without a consumer.** Creating a consumer takes the JetStream meta leader; when the node
//! it ran on dies, creating one waits for the next meta election (seconds). Meanwhile the reader
//! reads by batched direct gets from its position (`next_by_subj`: the queue's submissions in
//! stream order, none skipped), which any replica of the stream answers, and tries a consumer
//! again a second after a creation failed. Deliveries go the same way, with the same `after`
//! chain.
//!
//! **Creations are never abandoned, and few at a time.** A reader has at most one creation in
//! flight and waits for its answer however long it takes (the request's own timeout ends it),
//! reading by direct gets meanwhile: a creation given up on the client side still completes on
//! the server, and trying again at once would leave an unread consumer behind each time. All
//! readers together have at most [`MAX_CREATING`] creations in flight. A thousand queues
//! getting work at once otherwise sent a thousand creations together; each took the server
//! longer than the wait, every reader tried again each second, and the server spent all its
//! time creating consumers nobody read while no work moved. For the same reason direct gets
//! are few at a time ([`MAX_READING_DIRECTLY`]) and polled less often while they find nothing:
//! each is a scan of the stream on the server.
//!
//! **A connection of its own.** The readers and the out-of-turn reads use the master's intake
//! connection ([`IntakeConnection`], `<nats.name>-intake` in the server's connection list),
//! not the one that carries the endpoints, the priority notices, the journal and the lease.
//! Its only subscriptions are the readers' pull inboxes (each pull asks for at most
//! `MAX_PULL` messages, far below the client library's per-subscription buffer) and the
//! replies to out-of-turn reads, so its [`Interruptions`] are its own reconnects: a flood of
//! status requests or notices, which makes the client library drop messages of *those*
//! subscriptions on the other connection, no longer makes every reader abandon its consumer
//! and back off. What a reader must not miss still only reaches it through its own
//! connection, so every way a delivery can be lost is still watched.
//!
//! **One route into the engine.** Whether a stored message comes from a queue's consumer or is
//! read out of turn by its sequence (a priority jump, [`out_of_turn_reader`]), it becomes a
//! [`Delivery`] through the same function (`decode`): the same headers read the same way,
//! the same malformed-header marker, the same origin by subject. The engine decides the rest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{
    self,
    consumer::{pull, AckPolicy, Consumer, DeliverPolicy},
};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use jetwork_shared::config::NatsConfig;
use jetwork_shared::connect::{self, ConnectError, Interruptions};
use jetwork_shared::job_options::JobOptions;
use jetwork_shared::{headers, subjects, QueueName, Unavailable};
use prometheus_client::metrics::counter::Counter;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::core::{Bookkeeping, Origin, Submission};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One stored submission read from the stream: what the engine is told
/// ([`Submission`], stamped with `now` by the leader when it steps it), and what stays with
/// the runtime.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub submission: Submission,
    /// Which reader of the queue read it (a replaced reader's leftovers are ignored); 0 for an
    /// out-of-turn read, [`PASSING`] for one read for its cursor to pass it.
    pub generation: u64,
    pub payload: Bytes,
    /// When the server stored it (milliseconds since the Unix epoch, the server's clock).
    pub stored_ms: u64,
}

/// A stored message, however it was read.
struct Stored<'a> {
    subject: &'a str,
    seq: u64,
    stored_ms: u64,
    headers: Option<&'a HeaderMap>,
    /// The client library's note that the header block could not be read in full.
    malformed: Option<String>,
    payload: Bytes,
}

/// The one way a stored message becomes a [`Delivery`] of `queue` (`None` if it is not a
/// submission of that queue: its subject says so). `after`: the reader's guarantee (see
/// [`Submission::after`]); `jump`: read out of turn.
fn decode(stored: Stored<'_>, queue: &QueueName, after: u64, jump: bool) -> Option<Delivery> {
    let (named, internal) = subjects::queue_of_submission(stored.subject)?;
    if named != queue.as_str() {
        return None;
    }
    let get = |name: &str| stored.headers.and_then(|h| h.get(name)).map(|v| v.as_str());
    let options = match stored.headers {
        None => Ok(JobOptions::default()),
        Some(_) => JobOptions::from_headers(get, stored.stored_ms),
    };
    let submission = Submission {
        queue: queue.clone(),
        seq: stored.seq,
        after,
        jump,
        origin: if internal { Origin::Master } else { Origin::Client },
        msg_id: get(headers::NATS_MSG_ID).map(str::to_owned),
        size: stored.payload.len() as u64,
        unreadable: stored.malformed,
        bookkeeping: Bookkeeping::read(get),
        options,
        now: 0,
    };
    Some(Delivery {
        submission,
        generation: 0,
        payload: stored.payload,
        stored_ms: stored.stored_ms,
    })
}

/// Most submissions requested in one pull.
const MAX_PULL: usize = 256;
/// How long a pull waits on the server for submissions.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// How long the reader waits for its consumer to say how much it sent.
const DOUBT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long creating a consumer may take before the reader reads by direct gets meanwhile,
/// and how often it tries again while it has none.
const CREATE_TIMEOUT: Duration = Duration::from_secs(1);
const CREATE_EVERY: Duration = Duration::from_secs(1);
/// Consumer creations in flight at once, over all the readers of a leader.
pub const MAX_CREATING: usize = 16;
/// Without a consumer: how long a batched direct get may take, the most bytes it may return,
/// and the pause before asking again when it found nothing new.
const DIRECT_TIMEOUT: Duration = Duration::from_secs(1);
const DIRECT_MAX_BYTES: usize = 4 << 20;
const DIRECT_POLL: Duration = Duration::from_millis(100);
/// How many times the pause doubles while direct gets find nothing (100 ms up to 1.6 s).
const DIRECT_POLL_DOUBLINGS: u32 = 4;
/// Batched direct gets in flight at once, over all the readers of a leader.
pub const MAX_READING_DIRECTLY: usize = 16;

/// The reader of one queue.
#[derive(Debug)]
pub struct QueueReader {
    credits: Arc<Semaphore>,
    requested: u64,
    received: u64,
    generation: u64,
    /// Stops the reader task, which then deletes its consumer.
    stop: CancellationToken,
}

/// The master's intake connection: the queue readers and the out-of-turn reads, and nothing
/// else, so that its [`Interruptions`] are intake's own (see the module's docs). Opened once
/// per master process with the same settings as its main connection; clones share it.
#[derive(Clone)]
pub struct IntakeConnection {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub interruptions: Interruptions,
}

impl IntakeConnection {
    /// Connects with `nats` (waiting for the server like the main connection), named
    /// `<nats.name or default_name>-intake`.
    pub async fn connect(
        nats: &NatsConfig,
        default_name: &str,
        denials: &connect::Denials,
    ) -> Result<Self, ConnectError> {
        let settings = connect::for_role(nats, default_name, "intake");
        let (client, interruptions) =
            connect::connect_watched(&settings, default_name, denials).await?;
        let js = connect::jetstream(&client, &settings);
        Ok(IntakeConnection { client, js, interruptions })
    }
}

/// What a reader needs from the leader.
#[derive(Clone)]
pub struct ReaderEnv {
    pub js: jetstream::Context,
    pub interruptions: Interruptions,
    pub tx: mpsc::UnboundedSender<Delivery>,
    /// Counts each time a reader doubts its deliveries and reads again, when metrics are on.
    pub rereads: Option<Counter>,
    /// Permits for consumer creations in flight ([`MAX_CREATING`] in all).
    creating: Arc<Semaphore>,
    /// Permits for batched direct gets in flight ([`MAX_READING_DIRECTLY`] in all).
    reading_directly: Arc<Semaphore>,
}

impl ReaderEnv {
    /// Readers on `intake`, sending what they read to `tx`.
    pub fn new(
        intake: &IntakeConnection,
        tx: mpsc::UnboundedSender<Delivery>,
        rereads: Option<Counter>,
    ) -> Self {
        ReaderEnv {
            js: intake.js.clone(),
            interruptions: intake.interruptions.clone(),
            tx,
            rereads,
            creating: Arc::new(Semaphore::new(MAX_CREATING)),
            reading_directly: Arc::new(Semaphore::new(MAX_READING_DIRECTLY)),
        }
    }
}

impl QueueReader {
    /// Starts reading `queue` from sequence `start` (the cursor + 1).
    pub fn spawn(env: &ReaderEnv, queue: QueueName, start: u64, generation: u64) -> Self {
        let credits = Arc::new(Semaphore::new(0));
        let position = Position { next_seq: start.max(1), after: start.saturating_sub(1) };
        let stop = CancellationToken::new();
        let reader = Reader { env: env.clone(), queue, generation, credits: credits.clone() };
        let stopped = stop.clone();
        tokio::spawn(async move {
            let mut consumer = ConsumerSlot::default();
            tokio::select! {
                () = reader.run(position, &mut consumer) => {}
                () = stopped.cancelled() => {}
            }
            // A reader that is replaced or no longer needed leaves no consumer behind, not
            // even one still being created.
            if let Some(cursor) = consumer.cursor {
                reader.retire(cursor.consumer);
            }
            if let Some(creating) = consumer.creating {
                let reader = reader.clone();
                tokio::spawn(async move {
                    if let Ok(Ok(created)) = creating.await {
                        reader.retire(created);
                    }
                });
            }
        });
        QueueReader { credits, requested: 0, received: 0, generation, stop }
    }

    /// Which reader of its queue this is.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Credits granted and not yet used.
    pub fn outstanding(&self) -> u64 {
        self.requested.saturating_sub(self.received)
    }

    /// Asks for `n` more submissions.
    pub fn grant(&mut self, n: u64) {
        if n > 0 {
            self.requested += n;
            self.credits.add_permits(usize::try_from(n).unwrap_or(usize::MAX));
        }
    }

    /// Counts one submission delivered by this reader.
    pub fn delivered(&mut self) {
        self.received += 1;
    }
}

impl Drop for QueueReader {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Where a reader is: the next sequence to read and the last one passed on.
#[derive(Debug, Clone, Copy)]
struct Position {
    next_seq: u64,
    after: u64,
}

/// A consumer and how many messages it has delivered to us.
struct Cursor {
    consumer: jetstream::consumer::Consumer<pull::Config>,
    delivered: u64,
}

/// A creation in flight: it ends with the consumer or why there is none.
type Creating = JoinHandle<Result<Consumer<pull::Config>, Unavailable>>;

/// The reader's consumer: the one it reads, or the one being created (at most one of each:
/// a reader whose consumer broke may read by direct gets while the next is created).
#[derive(Default)]
struct ConsumerSlot {
    cursor: Option<Cursor>,
    creating: Option<Creating>,
}

/// The reader task's state.
#[derive(Clone)]
struct Reader {
    env: ReaderEnv,
    queue: QueueName,
    generation: u64,
    credits: Arc<Semaphore>,
}

/// How one pull ended.
enum Pulled {
    /// Every message asked for arrived, in order.
    Full,
    /// Fewer arrived, and the server's status at the pull's expiry says it left exactly the
    /// rest unsent: none was lost, and the consumer need not be asked.
    Accounted,
    /// Fewer arrived (the pull expired) without that status: check with the server that
    /// none were lost.
    Short,
    /// A delivery was missing, the connection was interrupted, or the pull failed: start a
    /// new consumer at the position.
    Broken(String),
    /// The leader is gone.
    Closed,
}

impl Reader {
    async fn run(&self, mut position: Position, slot: &mut ConsumerSlot) {
        let mut failed_at: Option<Instant> = None;
        let mut idle_polls = 0;
        loop {
            let Ok(first) = self.credits.acquire().await else { return };
            first.forget();
            let extra = self.credits.available_permits().min(MAX_PULL - 1);
            if let Ok(more) = self.credits.try_acquire_many(u32::try_from(extra).unwrap_or(0)) {
                more.forget();
            }
            let want = 1 + extra;
            if slot.cursor.is_none() {
                self.await_consumer(slot, position.next_seq, &mut failed_at).await;
            }
            let cursor = &mut slot.cursor;
            let mut got = 0;
            if let Some(current) = cursor.as_mut() {
                let pulled = self.pull(current, want, &mut position, &mut got).await;
                let broken = match pulled {
                    Pulled::Closed => return,
                    Pulled::Full | Pulled::Accounted => None,
                    Pulled::Short => self.doubt(current).await,
                    Pulled::Broken(why) => Some(why),
                };
                if let Some(why) = broken {
                    if let Some(rereads) = &self.env.rereads {
                        rereads.inc();
                    }
                    tracing::warn!(
                        queue = %self.queue,
                        next_seq = position.next_seq,
                        %why,
                        "submit reader may have missed deliveries; reading again from its position"
                    );
                    if let Some(old) = cursor.take() {
                        self.retire(old.consumer);
                    }
                    // A new consumer at once, and direct gets if that fails.
                    failed_at = None;
                }
            } else {
                let Ok(_permit) = self.env.reading_directly.acquire().await else { return };
                match self.read_directly(want, &mut position, &mut got).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(why) => {
                        tracing::debug!(queue = %self.queue, %why, "reading by direct gets failed; trying again")
                    }
                }
            }
            self.credits.add_permits(want - got);
            // Without a consumer nothing waits on the server for new submissions: poll, less
            // often while nothing comes (each get is a scan of the stream on the server).
            if cursor.is_none() && got == 0 {
                tokio::time::sleep(DIRECT_POLL * (1 << idle_polls)).await;
                idle_polls = (idle_polls + 1).min(DIRECT_POLL_DOUBLINGS);
            } else {
                idle_polls = 0;
            }
        }
    }

    /// Reads up to `want` submissions from the position by one batched direct get and passes
    /// them on: while no consumer can be created (its node died and the JetStream meta leader
    /// that creates consumers is being elected, which takes seconds), any replica of the stream
    /// still answers these. `next_by_subj` returns the queue's submissions in stream order with
    /// none skipped; a replica that lags returns fewer, never a gap. A reply lost in flight
    /// shows as an interruption of the connection, and nothing after it is passed on.
    /// `Ok(false)`: the leader is gone.
    async fn read_directly(
        &self,
        want: usize,
        position: &mut Position,
        got: &mut usize,
    ) -> Result<bool, String> {
        let client = self.env.js.client();
        let before = self.env.interruptions.count();
        let inbox = client.new_inbox();
        let mut replies = client.subscribe(inbox.clone()).await.map_err(|e| e.to_string())?;
        let request = serde_json::json!({
            "seq": position.next_seq,
            "next_by_subj": subjects::submissions_of(&self.queue),
            "batch": want,
            "max_bytes": DIRECT_MAX_BYTES,
        });
        let get = subjects::direct_get(subjects::SUBMIT_STREAM);
        client
            .publish_with_reply(get, inbox, request.to_string().into())
            .await
            .map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + DIRECT_TIMEOUT;
        while let Ok(Some(message)) = tokio::time::timeout_at(deadline, replies.next()).await {
            if self.env.interruptions.count() != before {
                return Err("connection interrupted".into());
            }
            // The end of the batch (204), nothing from the position on (404), or an error.
            if message.status.is_some() {
                break;
            }
            let Some(stored) = stored_reply(&message) else {
                return Err("a direct get reply without its stream headers".into());
            };
            if stored.seq < position.next_seq {
                return Err(format!("sequence {} came before the position", stored.seq));
            }
            let seq = stored.seq;
            let Some(mut delivery) = decode(stored, &self.queue, position.after, false) else {
                return Err(format!("a message of another queue at {seq}"));
            };
            delivery.generation = self.generation;
            if self.env.tx.send(delivery).is_err() {
                return Ok(false);
            }
            *got += 1;
            *position = Position { next_seq: seq + 1, after: seq };
            if *got >= want {
                break;
            }
        }
        Ok(true)
    }

    /// Pulls up to `want` submissions and passes them on, checking each against the
    /// consumer's delivery count.
    async fn pull(
        &self,
        cursor: &mut Cursor,
        want: usize,
        position: &mut Position,
        got: &mut usize,
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
            if seq < position.next_seq {
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
            let Some(mut delivery) = decode(stored, &self.queue, position.after, false) else {
                // The filter lets only this queue's submissions through: anything else means
                // the consumer is not what it should be.
                return Pulled::Broken(format!("a message on {} arrived", message.subject));
            };
            delivery.generation = self.generation;
            if self.env.tx.send(delivery).is_err() {
                return Pulled::Closed;
            }
            *position = Position { next_seq: seq + 1, after: seq };
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
    async fn doubt(&self, cursor: &mut Cursor) -> Option<String> {
        let info = match tokio::time::timeout(DOUBT_TIMEOUT, cursor.consumer.info()).await {
            Ok(Ok(info)) => info,
            Ok(Err(e)) => return Some(format!("cannot ask the consumer what it sent: {e}")),
            Err(_) => return Some("the consumer did not say what it sent within 1s".into()),
        };
        let sent = info.delivered.consumer_sequence;
        (sent != cursor.delivered)
            .then(|| format!("the server sent {sent} messages, {} arrived", cursor.delivered))
    }

    /// Gives the slot a consumer if it can: starts a creation from `start` unless one is in
    /// flight (or the last failed under [`CREATE_EVERY`] ago), then waits for it at most
    /// [`CREATE_TIMEOUT`]. A creation still unanswered stays in flight for the next round;
    /// the reader reads by direct gets meanwhile.
    async fn await_consumer(
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
            let (env, queue) = (self.env.clone(), self.queue.clone());
            slot.creating = Some(tokio::spawn(create_consumer(env, queue, start)));
            fresh = true;
        }
        let Some(creating) = slot.creating.as_mut() else { return };
        let created = match tokio::time::timeout(CREATE_TIMEOUT, creating).await {
            Ok(created) => created,
            Err(_) => {
                if fresh {
                    tracing::info!(queue = %self.queue, "creating the submit reader takes over 1s; reading by direct gets meanwhile");
                }
                return;
            }
        };
        slot.creating = None;
        match created {
            Ok(Ok(consumer)) => slot.cursor = Some(Cursor { consumer, delivered: 0 }),
            Ok(Err(e)) => {
                *failed_at = Some(Instant::now());
                tracing::warn!(queue = %self.queue, error = %e, "cannot create the submit reader; reading by direct gets meanwhile");
            }
            Err(e) => {
                *failed_at = Some(Instant::now());
                tracing::error!(queue = %self.queue, error = %e, "the submit reader's creation task ended abnormally");
            }
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
}

/// Creates the consumer that reads `queue` from `start`, once one of the leader's
/// [`MAX_CREATING`] permits is free. A consumer created when the reader no longer wants it
/// (it stopped, or read on by direct gets) is retired by the reader, or expires unread.
async fn create_consumer(
    env: ReaderEnv,
    queue: QueueName,
    start: u64,
) -> Result<Consumer<pull::Config>, Unavailable> {
    let what = || format!("creating the reader of queue {queue}");
    let _permit = env.creating.acquire().await.map_err(|e| Unavailable::new(what(), e))?;
    let stream = env
        .js
        .get_stream(subjects::SUBMIT_STREAM)
        .await
        .map_err(|e| Unavailable::new(what(), e))?;
    stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: start.max(1) },
            ack_policy: AckPolicy::None,
            filter_subject: subjects::submissions_of(&queue),
            inactive_threshold: Duration::from_secs(60),
            memory_storage: true,
            description: Some("jetwork master: submission reader".to_owned()),
            ..Default::default()
        })
        .await
        .map_err(|e| Unavailable::new(what(), e))
}

/// Whether the client library could not read the message's header block in full (see
/// `vendor/async-nats/JETWORK-PATCH.md`): anyone may publish such a submission, and JetStream
/// stores it as it came.
fn unreadable(message: &jetstream::Message) -> Option<String> {
    let description = message.description.as_deref()?;
    (message.status.is_none() && description.starts_with(async_nats::connection::MALFORMED_HEADERS))
        .then(|| description.to_owned())
}

/// Most submissions waiting to be read out of turn; beyond it, new ones wait their turn.
const MAX_OUT_OF_TURN: usize = 1024;

/// Reads in flight at once: a burst of notices (many honest ones, or a flood of forged ones,
/// each costing a read) drains in a few round trips instead of one per notice, so it does not
/// hold up the notices behind it.
const CONCURRENT_OUT_OF_TURN: usize = 32;

/// Starts the term's out-of-turn reader (priority jumps): it reads the submissions asked for
/// (several at once) and passes them to `tx` like a queue reader, in the order asked, so the
/// jumps of a queue are taken in the order they were stored (FIFO within a priority). It ends
/// when the returned sender is dropped. Asking never blocks: when it is full, `try_send` fails
/// and that submission waits for its turn.
pub fn out_of_turn_reader(
    client: async_nats::Client,
    tx: mpsc::UnboundedSender<Delivery>,
) -> mpsc::Sender<OutOfTurn> {
    let (ask, asked) = mpsc::channel::<OutOfTurn>(MAX_OUT_OF_TURN);
    tokio::spawn(async move {
        let asks = futures::stream::unfold(asked, |mut asked| async move {
            asked.recv().await.map(|ask| (ask, asked))
        });
        let reads = asks.map(|ask| {
            let client = client.clone();
            async move {
                match ask {
                    OutOfTurn::Jump { queue, seq } => read_out_of_turn(&client, &queue, seq).await,
                    OutOfTurn::Pass { queue, cursor, jumped } => {
                        read_to_pass(&client, &queue, cursor, jumped).await
                    }
                }
            }
        });
        // `buffered` keeps the order asked, whatever order the reads finish in.
        let read = reads.buffered(CONCURRENT_OUT_OF_TURN);
        futures::pin_mut!(read);
        while let Some(found) = read.next().await {
            if let Some(delivery) = found {
                if tx.send(delivery).is_err() {
                    return;
                }
            }
        }
    });
    ask
}

/// What the out-of-turn reader is asked to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutOfTurn {
    /// Submission `seq` of `queue`, which a sighting named (a jump).
    Jump { queue: QueueName, seq: u64 },
    /// The first submission of `queue` stored after its `cursor`, if that is `jumped` (taken
    /// out of turn already): delivered in turn ([`PASSING`]), so the cursor passes it. For the
    /// queues nobody serves, whose readers do not run: without it their cursors would stay
    /// behind what they jumped for good.
    Pass { queue: QueueName, cursor: u64, jumped: u64 },
}

/// The generation of a delivery read for the cursor to pass a jumped submission
/// ([`OutOfTurn::Pass`]): in turn (its `after` is the cursor it was read from), though no
/// queue reader read it.
pub const PASSING: u64 = u64::MAX;

/// Reads the first submission of `queue` after `cursor` with a direct get by subject; a
/// delivery in turn (`after` = `cursor`: the server found none of the queue's between) only if
/// it is `jumped`. Anything else (not yet taken, or not readable now) is left for a reader.
async fn read_to_pass(
    client: &async_nats::Client,
    queue: &QueueName,
    cursor: u64,
    jumped: u64,
) -> Option<Delivery> {
    let body =
        serde_json::json!({ "seq": cursor + 1, "next_by_subj": subjects::submissions_of(queue) });
    let asked =
        client.request(subjects::direct_get(subjects::SUBMIT_STREAM), body.to_string().into());
    let message = asked.await.ok().filter(|m| m.status.is_none())?;
    let stored = stored_reply(&message)?;
    if stored.seq != jumped {
        return None;
    }
    let mut delivery = decode(stored, queue, cursor, false)?;
    delivery.generation = PASSING;
    Some(delivery)
}

/// Reads submission `seq` of `queue` out of turn (a priority jump), by its sequence, with a
/// direct get answered as a plain message (so the client library's note about a malformed
/// header block reaches [`decode`] as it does from a consumer). `None` if it cannot be read now,
/// or the message at `seq` is not a submission of `queue` (the sighting that led here is not
/// trusted): it then waits for its turn.
async fn read_out_of_turn(
    client: &async_nats::Client,
    queue: &QueueName,
    seq: u64,
) -> Option<Delivery> {
    let body = serde_json::json!({ "seq": seq }).to_string();
    let asked = client.request(subjects::direct_get(subjects::SUBMIT_STREAM), body.into());
    let message = match asked.await {
        Ok(message) if message.status.is_none() => message,
        Ok(message) => {
            tracing::debug!(%queue, seq, status = ?message.status, "a priority submission is not there to read out of turn");
            return None;
        }
        Err(e) => {
            tracing::debug!(%queue, seq, error = %e, "cannot read a priority submission out of turn");
            return None;
        }
    };
    let stored = stored_reply(&message)?;
    if stored.seq != seq {
        return None;
    }
    let subject = stored.subject.to_owned();
    let delivery = decode(stored, queue, 0, true);
    if delivery.is_none() {
        tracing::debug!(%queue, seq, %subject, "a sighting named another message");
    }
    delivery
}

/// A stored message as a direct get returns it (a plain message, so the client library's note
/// about a malformed header block reaches [`decode`] as it does from a consumer). `None`
/// without the stream's headers.
fn stored_reply(message: &async_nats::Message) -> Option<Stored<'_>> {
    // The server's own headers come last: a client may have stored forged ones before them.
    let headers = message.headers.as_ref()?;
    let subject = headers::from_server(headers, headers::NATS_SUBJECT)?;
    let seq: u64 = headers::from_server(headers, headers::NATS_SEQUENCE)?.parse().ok()?;
    let stored_ms = headers::from_server(headers, headers::NATS_TIME_STAMP)
        .and_then(|at| OffsetDateTime::parse(at, &Rfc3339).ok())
        .and_then(|at| u64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok())?;
    let malformed = message
        .description
        .as_deref()
        .filter(|d| d.starts_with(async_nats::connection::MALFORMED_HEADERS))
        .map(str::to_owned);
    Some(Stored {
        subject,
        seq,
        stored_ms,
        headers: Some(headers),
        malformed,
        payload: message.payload.clone(),
    })
}
