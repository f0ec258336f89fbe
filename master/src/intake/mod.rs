//! Reading submissions from `JETWORK_SUBMIT` only as fast as the leader asks, and never past
//! a message it did not receive.
//!
//! Two kinds of reader, each on an ephemeral pull consumer the leader's credits pace (one per
//! submission it wants), so the backlog stays in the stream and the master's memory only holds
//! what workers can take plus a small read-ahead:
//! - the [`StreamReader`] (one per term): an unfiltered consumer reading the queues the leader
//!   joined to it, in stream order. Served queues are read here while their submissions fit
//!   their read-ahead: a consumer filtered to one queue walks over every other queue's
//!   messages on the server, so a thousand filtered consumers cost a thousand walks per
//!   message.
//! - a [`QueueReader`] per queue read otherwise: a queue whose backlog is beyond its
//!   read-ahead (its submissions stay in the stream until credits come), one only read for
//!   its purge, and every queue while the stream reader cannot read. It reads by direct gets
//!   while it cannot create a consumer.
//!
//! A pull waits on the server for new submissions, so a submission reaches the leader within
//! milliseconds of being stored.
//!
//! **No silent gaps.** Every delivery is checked against its consumer's count of deliveries,
//! every pull that ends short is accounted for, and the connection's [`Interruptions`] are
//! watched (`consumer.rs`); on any doubt a reader starts a new consumer right after the last
//! message it actually handled (counted in `jetwork_master_intake_rereads_total`). Each
//! submission passed on carries `after`, the previous one of its queue that reader passed on
//! (or the cursor it started from), and the engine only moves a queue's cursor along that
//! unbroken chain (see `Submission::after`): a reader that claims "nothing between" falsely is
//! the one way to skip work, and each reader's docs say why its claim holds.
//!
//! **Creations are never abandoned, and few at a time** ([`MAX_CREATING`] over all queue readers; the stream reader has one of its own):
//! a thousand queues getting work at once otherwise sent a thousand creations together, each
//! took the server longer than the wait, every reader tried again each second, and the server
//! spent all its time creating consumers nobody read while no work moved. For the same reason
//! direct gets are few at a time ([`MAX_READING_DIRECTLY`]) and polled less often while they
//! find nothing: each is a scan of the stream on the server.
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
//! **One route into the engine.** Whether a stored message comes from a consumer or is read
//! by its sequence (a priority jump, [`out_of_turn_reader`]), it becomes a [`Delivery`]
//! through the same function (`decode`): the same headers read the same way, the same
//! malformed-header marker, the same origin by subject. The engine decides the rest.

mod consumer;
mod credits;
mod queue_reader;
mod stream_reader;

use std::sync::Arc;

use async_nats::jetstream;
use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use jetwork_shared::config::NatsConfig;
use jetwork_shared::connect::{self, ConnectError, Interruptions};
use jetwork_shared::job_options::JobOptions;
use jetwork_shared::{headers, subjects, QueueName};
use prometheus_client::metrics::counter::Counter;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::core::{Bookkeeping, Origin, Submission};
use tokio::sync::{mpsc, Semaphore};

pub use consumer::MAX_CREATING;
pub use credits::Credits;
pub use queue_reader::{QueueReader, MAX_READING_DIRECTLY};
pub use stream_reader::{Notice, StreamReader};

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
pub(crate) struct Stored<'a> {
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
pub(crate) fn decode(
    stored: Stored<'_>,
    queue: &QueueName,
    after: u64,
    jump: bool,
) -> Option<Delivery> {
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
    /// Permits for consumer creations in flight ([`MAX_CREATING`] over all queue readers).
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

/// Whether the client library could not read the message's header block in full (see
/// `vendor/async-nats/JETWORK-PATCH.md`): anyone may publish such a submission, and JetStream
/// stores it as it came.
pub(crate) fn unreadable(message: &jetstream::Message) -> Option<String> {
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
pub(crate) fn stored_reply(message: &async_nats::Message) -> Option<Stored<'_>> {
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
