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
//! dedup horizon; the journal has no age or size limit (only the master purges it, below a
//! snapshot); all three allow direct gets (used to fetch payloads, results and snapshots).
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
        discard: DiscardPolicy::New,
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
        subjects: vec![subjects::RESULTS_ALL.to_owned(), subjects::REJECTED_ALL.to_owned()],
        retention: RetentionPolicy::Limits,
        storage: storage(cfg.storage),
        num_replicas: cfg.replicas,
        max_age: cfg.results_retention,
        duplicate_window: cfg.results_retention.min(Duration::from_secs(120)),
        allow_direct: true,
        deny_delete: true,
        deny_purge: true,
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
    for config in [submit_stream(cfg), journal_stream(cfg), results_stream(cfg)] {
        let what = format!("stream {}", config.name);
        let result = match mode {
            EnsureMode::CreateOrUpdate => {
                js.create_or_update_stream(config).await.map(|_| ()).map_err(|e| e.to_string())
            }
            EnsureMode::CreateIfMissing => {
                js.get_or_create_stream(config).await.map(|_| ()).map_err(|e| e.to_string())
            }
        };
        result.map_err(|message| TopologyError { what, message })?;
    }
    Ok(())
}

/// Creates or updates the lease bucket and returns it.
pub async fn ensure_lease_bucket(
    js: &jetstream::Context,
    cfg: &StreamsConfig,
    ttl: Duration,
) -> Result<kv::Store, TopologyError> {
    js.create_or_update_key_value(lease_bucket(cfg, ttl)).await.map_err(|e| TopologyError {
        what: format!("KV bucket {}", subjects::LEASE_BUCKET),
        message: e.to_string(),
    })
}
