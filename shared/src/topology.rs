//! The JetStream streams and KV bucket jetwork runs on, defined once.
//!
//! | name | subjects | role |
//! |---|---|---|
//! | `JETWORK_SUBMIT` | `jetwork.submit.*`, `jetwork.internal.*` | pending work (clients' and the master's own); JetStream is the submit "receptionist"; with `streams.republish_submissions`, republishes each stored client submission's headers on `jetwork.submitted.<queue>` |
//! | `JETWORK_JOURNAL` | `jetwork.journal.>` | the master's fenced event journal and snapshots |
//! | `JETWORK_RESULTS` | `jetwork.results.>`, `jetwork.rejected.>` | published results, kept for `results_retention` |
//! | KV `jetwork-lease` | `$KV.jetwork-lease.master` | the leader lease; the revision it was taken at is the epoch |
//!
//! Invariants kept here: `JETWORK_SUBMIT` holds only `jetwork.submit.*` and `jetwork.internal.*`
//! (so `jetwork.*.<queue>` is exactly a queue's submissions, `subjects::submissions_of`), and has
//! no `max_age` (acknowledged work never expires
//! before it is finished; the master purges finished work) and its `duplicate_window` is the
//! dedup horizon; the journal has no age limit and never discards (only the master purges it,
//! below a snapshot); all three allow direct gets (used to fetch payloads, results and
//! snapshots).
//!
//! Storage: each stream and the lease bucket has its own byte cap (`max_bytes`), which
//! JetStream reserves against the server's store when the stream is created, so no stream can
//! starve another (a flood of submissions fills `JETWORK_SUBMIT` to its cap, never the
//! journal's room). The submit stream and the journal discard nothing (`discard: New`: a write
//! over a cap is refused with JetStream's reason; a submission once acknowledged stays); the
//! submit stream also caps each queue's subject (`max_msgs_per_subject`, discard-new per
//! subject), so a flood of one queue is refused before it fills the stream. The results
//! stream drops its oldest outcomes at its cap. A cap the server cannot reserve is an error
//! ([`TopologyError::insufficient_storage`]) naming the settings.
//!
//! Protection against other writers: no stream allows deleting single messages
//! (`deny_delete`), and `JETWORK_RESULTS` cannot be purged (`deny_purge`): once set, JetStream
//! lets nobody, administrators included, turn either off. The submit stream and the journal
//! must stay purgeable, because the master trims them (finished submissions, history before a
//! snapshot); there, NATS permissions keep purges to the master's user (`nats.conf`), and the
//! leader notices anyone else's (`master/src/integrity.rs`).

use std::time::Duration;

use async_nats::jetstream::{
    self, kv,
    stream::{Config, DiscardPolicy, Republish, RetentionPolicy, StorageType},
};
use thiserror::Error;

use crate::config::{StorageKind, StreamsConfig};
use crate::refusal::Refusal;
use crate::subjects;

/// Whether to bring existing streams in line with the configuration or only fill gaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnsureMode {
    /// The master owns the configuration: create or update.
    CreateOrUpdate,
    /// Workers and frontends: create what is missing, leave existing streams alone.
    CreateIfMissing,
}

/// A stream or bucket could not be created or updated.
#[derive(Debug, Error)]
#[error("cannot set up {what}: {message}")]
pub struct TopologyError {
    pub what: String,
    pub message: String,
    /// The server cannot reserve the bytes the settings ask for: waiting will not mend it, the
    /// settings or the server's store must change (the message names both).
    pub insufficient_storage: bool,
}

impl TopologyError {
    /// `what` failed with `error`; a refused reservation of the setting `cap` (its name and
    /// value) is explained with every cap jetwork reserves.
    fn new(
        what: String,
        error: &(dyn std::error::Error + 'static),
        cfg: &StreamsConfig,
        cap: (&str, i64),
    ) -> Self {
        let refusal = Refusal::of(error);
        let Some(refusal) = refusal.filter(Refusal::is_reservation) else {
            return TopologyError { what, message: error.to_string(), insufficient_storage: false };
        };
        let (setting, value) = cap;
        let total = cfg.reserved_bytes().map_or_else(String::new, |t| format!(" = {t}"));
        let store = match cfg.storage {
            StorageKind::File => "max_file_store",
            StorageKind::Memory => "max_memory_store",
        };
        let message = format!(
            "the server cannot reserve streams.{setting} = {value} bytes for it: {refusal}. \
             jetwork reserves streams.max_pending_bytes + journal_max_bytes + results_max_bytes \
             + lease_max_bytes ({} + {} + {} + {}) × streams.replicas ({}){total} bytes, each \
             stream its own, so that no stream can starve another: raise the server's \
             jetstream {store}, or lower these settings (docs/configuration.md)",
            cfg.max_pending_bytes,
            cfg.journal_max_bytes,
            cfg.results_max_bytes,
            cfg.lease_max_bytes,
            cfg.replicas,
        );
        TopologyError { what, message, insufficient_storage: true }
    }
}

/// The setting that caps the bytes of stream `name`, and its value.
fn byte_cap(cfg: &StreamsConfig, name: &str) -> (&'static str, i64) {
    match name {
        subjects::SUBMIT_STREAM => ("max_pending_bytes", cfg.max_pending_bytes),
        subjects::JOURNAL_STREAM => ("journal_max_bytes", cfg.journal_max_bytes),
        subjects::RESULTS_STREAM => ("results_max_bytes", cfg.results_max_bytes),
        _ => ("lease_max_bytes", cfg.lease_max_bytes),
    }
}

fn storage(kind: StorageKind) -> StorageType {
    match kind {
        StorageKind::File => StorageType::File,
        StorageKind::Memory => StorageType::Memory,
    }
}

/// The definition of `JETWORK_SUBMIT`.
pub fn submit_stream(cfg: &StreamsConfig) -> Config {
    Config {
        name: subjects::SUBMIT_STREAM.to_owned(),
        description: Some("jetwork: submitted work, kept until finished".to_owned()),
        subjects: vec![subjects::SUBMIT_ALL.to_owned(), subjects::INTERNAL_ALL.to_owned()],
        retention: RetentionPolicy::Limits,
        storage: storage(cfg.storage),
        num_replicas: cfg.replicas,
        duplicate_window: cfg.dedup_horizon,
        max_message_size: i32::try_from(cfg.max_payload).unwrap_or(i32::MAX),
        max_messages: cfg.max_pending_messages,
        max_bytes: cfg.max_pending_bytes,
        // Refused at submit time, never dropped once acknowledged: beyond a cap the
        // submitter gets JetStream's error naming it.
        discard: DiscardPolicy::New,
        max_messages_per_subject: cfg.max_pending_per_queue,
        discard_new_per_subject: cfg.max_pending_per_queue > 0,
        allow_direct: true,
        deny_delete: true,
        // The leader learns of priority submissions stored behind an unread backlog from
        // their headers (priority jumps); headers only, so the payload is not sent twice. Off
        // by default: it costs a message per job, and the jetwork client announces its own
        // priority submissions.
        republish: cfg.republish_submissions.then(|| Republish {
            source: subjects::SUBMIT_ALL.to_owned(),
            destination: subjects::SUBMITTED_MAPPING.to_owned(),
            headers_only: true,
        }),
        ..Default::default()
    }
}

/// The definition of `JETWORK_JOURNAL`.
pub fn journal_stream(cfg: &StreamsConfig) -> Config {
    Config {
        name: subjects::JOURNAL_STREAM.to_owned(),
        description: Some(
            "jetwork: the master's journal (fenced, written by the leader only)".to_owned(),
        ),
        subjects: vec![subjects::JOURNAL_ALL.to_owned()],
        retention: RetentionPolicy::Limits,
        storage: storage(cfg.storage),
        num_replicas: cfg.replicas,
        duplicate_window: Duration::from_secs(60),
        max_bytes: cfg.journal_max_bytes,
        // Never discard: the journal is the master's state. At the cap a write is refused (and
        // the leader steps down); snapshots and purges keep it well below (`leader/writes.rs`).
        discard: DiscardPolicy::New,
        allow_direct: true,
        deny_delete: true,
        ..Default::default()
    }
}

/// The definition of `JETWORK_RESULTS`.
pub fn results_stream(cfg: &StreamsConfig) -> Config {
    Config {
        name: subjects::RESULTS_STREAM.to_owned(),
        description: Some("jetwork: results and rejected submissions".to_owned()),
        subjects: vec![subjects::OUTCOMES_ALL.to_owned(), subjects::REJECTED_ALL.to_owned()],
        retention: RetentionPolicy::Limits,
        storage: storage(cfg.storage),
        num_replicas: cfg.replicas,
        max_age: cfg.results_retention,
        max_bytes: cfg.results_max_bytes,
        // At the cap the oldest outcomes go (kept for less than `results_retention` then):
        // refusing would stall publications, whose outcomes the leader holds until stored.
        discard: DiscardPolicy::Old,
        duplicate_window: cfg.results_retention.min(Duration::from_secs(120)),
        allow_direct: true,
        deny_delete: true,
        deny_purge: true,
        // Live subscribers get each outcome once, when it is stored: a publication the master
        // sends again (after a lost acknowledgement, or a takeover) is refused or dropped as a
        // duplicate by the stream and so never republished. At most once, like any core
        // NATS delivery: whoever must not miss one also reads the store.
        republish: Some(Republish {
            source: subjects::OUTCOMES_ALL.to_owned(),
            destination: subjects::RESULTS_ALL.to_owned(),
            headers_only: false,
        }),
        ..Default::default()
    }
}

/// The definition of the lease bucket: one key, one revision of history, every write restarts
/// its age, and expiry leaves a marker so standbys watching the key see it at once.
pub fn lease_bucket(cfg: &StreamsConfig, ttl: Duration) -> kv::Config {
    kv::Config {
        bucket: subjects::LEASE_BUCKET.to_owned(),
        description: "jetwork: master lease (revision when taken = epoch)".to_owned(),
        history: 1,
        max_age: ttl,
        storage: storage(cfg.storage),
        num_replicas: cfg.replicas,
        max_bytes: cfg.lease_max_bytes,
        limit_markers: Some(Duration::from_secs(1)),
        ..Default::default()
    }
}

/// Creates (or, in [`EnsureMode::CreateOrUpdate`], also updates) the three streams.
pub async fn ensure_streams(
    js: &jetstream::Context,
    cfg: &StreamsConfig,
    mode: EnsureMode,
) -> Result<(), TopologyError> {
    // The journal first: it is the master's state, and the others must not take its room.
    for config in [journal_stream(cfg), submit_stream(cfg), results_stream(cfg)] {
        let what = format!("stream {}", config.name);
        let cap = byte_cap(cfg, &config.name);
        let ensure = || async {
            match mode {
                EnsureMode::CreateOrUpdate => {
                    js.create_or_update_stream(config.clone()).await.map(|_| ())
                }
                EnsureMode::CreateIfMissing => {
                    js.get_or_create_stream(config.clone()).await.map(|_| ())
                }
            }
        };
        let mut result = patiently(&what, ensure).await;
        if matches!(result, Err(Tried::Failed(_))) && js.get_stream(&config.name).await.is_ok() {
            // Two candidates started together both found no stream and both created it: the
            // server reserved its room for the first and refused the second's create for lack
            // of room (10047), the stream existing all the same. Asked again, it is an update
            // that reserves nothing new.
            result = patiently(&what, ensure).await;
        }
        result.map_err(|e| e.into_topology(what, cfg, cap))?;
    }
    Ok(())
}

/// How long each try of creating or updating a stream may take: short at first, since on a
/// fresh cluster two candidates creating the same stream at once both go unanswered (the
/// server answers neither; the stream exists all the same), and the next try, an update,
/// returns at once. Longer later, for a cluster that is merely slow.
const ENSURE_TRIES: [Duration; 5] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_millis(1000),
    Duration::from_millis(2000),
    Duration::from_millis(5000),
];

/// Why a bounded try of a topology call failed.
enum Tried<E> {
    Failed(E),
    TimedOut(Duration),
}

impl<E: std::error::Error + 'static> Tried<E> {
    fn into_topology(self, what: String, cfg: &StreamsConfig, cap: (&str, i64)) -> TopologyError {
        match self {
            Tried::Failed(e) => TopologyError::new(what, &e, cfg, cap),
            Tried::TimedOut(after) => TopologyError {
                what,
                message: format!("no answer within {after:?}"),
                insufficient_storage: false,
            },
        }
    }
}

/// Runs `call` with the timeouts of [`ENSURE_TRIES`] until it answers; its error, or the last
/// timeout, if it never does.
async fn patiently<T, F, Fut, E>(what: &str, call: F) -> Result<T, Tried<E>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut waited = Duration::ZERO;
    for bound in ENSURE_TRIES {
        match tokio::time::timeout(bound, call()).await {
            Ok(result) => return result.map_err(Tried::Failed),
            Err(_) => {
                waited += bound;
                tracing::debug!(what, ?bound, "no answer yet; asking again");
            }
        }
    }
    Err(Tried::TimedOut(waited))
}

/// Creates or updates the lease bucket and returns it.
pub async fn ensure_lease_bucket(
    js: &jetstream::Context,
    cfg: &StreamsConfig,
    ttl: Duration,
) -> Result<kv::Store, TopologyError> {
    let what = format!("KV bucket {}", subjects::LEASE_BUCKET);
    let cap = byte_cap(cfg, subjects::LEASE_BUCKET);
    patiently(&what, || js.create_or_update_key_value(lease_bucket(cfg, ttl)))
        .await
        .map_err(|e| e.into_topology(what.clone(), cfg, cap))
}
