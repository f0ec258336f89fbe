//! Configuration shared by every binary, and the loader that layers its sources.
//!
//! Sources, later ones winning: built-in defaults (the `Default` impls here and in each
//! component), an optional TOML file (`--config <path>`, or the path in `JETWORK_CONFIG`), and
//! environment variables `JETWORK_<SECTION>__<KEY>` (for example
//! `JETWORK_MASTER__WORK_TIMEOUT=3s`, `JETWORK_NATS__URL=nats://host:4222`). Command-line
//! flags are applied by each binary on top (the connection flags, the same in every binary,
//! are [`crate::cli::NatsArgs`]).
//!
//! The `[nats]` section (servers, authentication, TLS) lives in [`NatsConfig`], whose rules
//! are checked at load like the others'.
//!
//! Durations are written the humantime way (`250ms`, `10s`, `2m`, `24h`). Every section
//! rejects unknown keys, so a typo is an error at start-up instead of a silently ignored
//! setting; unknown *sections* are ignored so one file can configure all components.

mod log;
mod nats;
mod nats_url;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use thiserror::Error;

pub use log::{LogConfig, LogFormat};
pub use nats::{Auth, NatsConfig, Resolved, DEFAULT_INBOX_PREFIX};
pub use nats_url::redact as redact_url;

/// The environment variable prefix for overrides.
pub const ENV_PREFIX: &str = "JETWORK";
/// The environment variable naming a config file when `--config` is absent.
pub const CONFIG_FILE_ENV: &str = "JETWORK_CONFIG";

/// Settings whose environment value is taken as it is written: the environment source would
/// otherwise read a password `0123` as the number 123, or `1e3` as 1000.
const VERBATIM_KEYS: &[&str] = &[
    "nats.url",
    "nats.name",
    "nats.user",
    "nats.password",
    "nats.token",
    "nats.nkey_seed_file",
    "nats.credentials",
    "nats.tls_ca_file",
    "nats.tls_cert_file",
    "nats.tls_key_file",
    "nats.inbox_prefix",
];

/// Configuration could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("config file {path} does not exist")]
    MissingFile { path: PathBuf },
    #[error("invalid configuration: {0}")]
    Invalid(#[from] config::ConfigError),
    #[error("invalid configuration: {0}")]
    Rule(String),
}

/// Settings of the JetStream streams and buckets (see [`crate::topology`]). The master applies
/// them on start; other components only create what is missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamsConfig {
    /// Replicas of every stream and bucket (1 for a single server, 3 for a cluster).
    pub replicas: usize,
    /// `file` or `memory`. Only `file` survives a nats-server restart.
    pub storage: StorageKind,
    /// A work id submitted again within this horizon is acknowledged and not run again.
    #[serde(with = "humantime_serde")]
    pub dedup_horizon: Duration,
    /// How long results (and rejections) are kept in `JETWORK_RESULTS`.
    #[serde(with = "humantime_serde")]
    pub results_retention: Duration,
    /// How long journal history older than the latest snapshot is kept for inspection.
    #[serde(with = "humantime_serde")]
    pub journal_retention: Duration,
    /// Largest accepted submission payload, in bytes (larger ones get an error reply).
    pub max_payload: u32,
    /// Largest accepted result, in bytes; a larger result fails its attempt.
    pub max_result: u32,
    /// Cap on stored submissions (all queues); beyond it submitters get an error reply. -1:
    /// no cap (the byte cap still bounds them).
    pub max_pending_messages: i64,
    /// Bytes `JETWORK_SUBMIT` reserves and may hold (submissions waiting, and finished ones
    /// kept for the dedup horizon); beyond it every submitter gets JetStream's "maximum bytes
    /// exceeded". -1: no cap (the stream can then fill the server's store and starve the
    /// journal).
    pub max_pending_bytes: i64,
    /// Cap on the submissions one queue's subject holds (JetStream's `max_msgs_per_subject`
    /// with discard-new per subject: beyond it that queue's submitters get "maximum messages
    /// per subject exceeded", other queues go on). It counts finished submissions kept for
    /// the dedup horizon too, and applies to `jetwork.submit.<queue>` and to the master's
    /// own `jetwork.internal.<queue>` each. -1: no cap.
    pub max_pending_per_queue: i64,
    /// Bytes `JETWORK_JOURNAL` reserves and may hold. The journal never discards: the leader
    /// keeps it under this with snapshots and purges. -1: no cap.
    pub journal_max_bytes: i64,
    /// Bytes `JETWORK_RESULTS` reserves and may hold; beyond it the oldest outcomes go, so
    /// some are then kept for less than `results_retention`. -1: no cap.
    pub results_max_bytes: i64,
    /// Bytes the lease bucket reserves and may hold (it holds one small key). -1: no cap.
    pub lease_max_bytes: i64,
    /// Whether `JETWORK_SUBMIT` republishes the headers of every stored submission on
    /// `jetwork.submitted.<queue>`, so a priority job can jump an unread backlog whoever
    /// submitted it. Off: only submitters that announce their priority jobs there themselves
    /// (the jetwork client does) have them jump; every job then costs one message less.
    pub republish_submissions: bool,
}

const MIB: i64 = 1 << 20;
const GIB: i64 = 1 << 30;

/// Where JetStream keeps a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    File,
    Memory,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        StreamsConfig {
            replicas: 1,
            storage: StorageKind::File,
            dedup_horizon: Duration::from_secs(120),
            results_retention: Duration::from_secs(24 * 3600),
            journal_retention: Duration::from_secs(3600),
            max_payload: 512 * 1024,
            max_result: 512 * 1024,
            max_pending_messages: -1,
            max_pending_bytes: 4 * GIB,
            max_pending_per_queue: 10_000_000,
            journal_max_bytes: GIB,
            results_max_bytes: GIB,
            lease_max_bytes: MIB,
            republish_submissions: false,
        }
    }
}

impl StreamsConfig {
    /// Checks the rules that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.replicas == 0 || self.replicas > 5 {
            return Err(ConfigError::Rule(format!(
                "streams.replicas must be between 1 and 5, not {}",
                self.replicas
            )));
        }
        if self.dedup_horizon < Duration::from_millis(100) {
            return Err(ConfigError::Rule("streams.dedup_horizon must be at least 100ms".into()));
        }
        if self.results_retention < Duration::from_secs(1) {
            return Err(ConfigError::Rule("streams.results_retention must be at least 1s".into()));
        }
        if self.max_payload == 0 || self.max_result == 0 {
            return Err(ConfigError::Rule("streams.max_payload and max_result must be > 0".into()));
        }
        let caps = [
            ("max_pending_messages", self.max_pending_messages, 1),
            ("max_pending_per_queue", self.max_pending_per_queue, 1),
            // One submission (one result) of the largest size must fit.
            ("max_pending_bytes", self.max_pending_bytes, i64::from(self.max_payload)),
            ("results_max_bytes", self.results_max_bytes, i64::from(self.max_result)),
            // A snapshot part is up to 512 KiB, and a snapshot must fit with room to spare.
            ("journal_max_bytes", self.journal_max_bytes, MIB),
            ("lease_max_bytes", self.lease_max_bytes, 64 * 1024),
        ];
        for (name, value, least) in caps {
            if value != -1 && value < least {
                return Err(ConfigError::Rule(format!(
                    "streams.{name} must be -1 (no cap) or at least {least}, not {value}"
                )));
            }
        }
        Ok(())
    }

    /// The bytes the streams and the lease bucket reserve on the server, replicas included
    /// (`None` when any of them has no cap: then nothing bounds their total).
    pub fn reserved_bytes(&self) -> Option<i64> {
        let caps = [
            self.max_pending_bytes,
            self.journal_max_bytes,
            self.results_max_bytes,
            self.lease_max_bytes,
        ];
        if caps.contains(&-1) {
            return None;
        }
        let replicas = i64::try_from(self.replicas).unwrap_or(i64::MAX);
        Some(caps.iter().sum::<i64>().saturating_mul(replicas))
    }
}

/// Loads a `T` from defaults, the optional file and `JETWORK_*` environment variables.
/// `list_keys` names keys (like `worker.queues`) whose env value is a comma-separated list.
pub fn load<T: DeserializeOwned>(
    file: Option<&Path>,
    list_keys: &[&str],
) -> Result<T, ConfigError> {
    let env_file = std::env::var_os(CONFIG_FILE_ENV).map(PathBuf::from);
    let file = file.map(Path::to_path_buf).or(env_file);
    let mut builder = config::Config::builder();
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError::MissingFile { path });
        }
        builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
    }
    let mut env = config::Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("_")
        .separator("__")
        .try_parsing(true)
        .ignore_empty(true);
    if !list_keys.is_empty() {
        env = env.list_separator(",");
        for key in list_keys {
            env = env.with_list_parse_key(key);
        }
    }
    let (parsed, verbatim) = split_env(std::env::vars());
    let env = env.source(Some(parsed));
    builder = builder.add_source(env);
    for (key, value) in verbatim {
        builder = builder.set_override(key, value)?;
    }
    Ok(builder.build()?.try_deserialize()?)
}

/// The `JETWORK_<SECTION>__<KEY>` variables: those the environment source may parse, and the
/// [`VERBATIM_KEYS`] as `(key, value)` overrides kept as strings.
fn split_env(
    vars: impl Iterator<Item = (String, String)>,
) -> (std::collections::HashMap<String, String>, Vec<(String, String)>) {
    let mut parsed = std::collections::HashMap::new();
    let mut verbatim = Vec::new();
    // JETWORK_CONFIG names the file, it is not a setting.
    for (name, value) in vars {
        if name == CONFIG_FILE_ENV || !name.starts_with("JETWORK_") || !name.contains("__") {
            continue;
        }
        let key = name["JETWORK_".len()..].to_lowercase().replace("__", ".");
        if VERBATIM_KEYS.contains(&key.as_str()) {
            if !value.is_empty() {
                verbatim.push((key, value));
            }
        } else {
            parsed.insert(name, value);
        }
    }
    verbatim.sort();
    (parsed, verbatim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Sample {
        nats: NatsConfig,
        streams: StreamsConfig,
    }

    #[test]
    fn defaults_then_file_then_nothing_else() {
        let mut file = toml_file();
        writeln!(file, "[nats]\nurl = \"nats://example:4222\"\n[streams]\ndedup_horizon = \"5m\"")
            .unwrap();
        let cfg: Sample = load(Some(file.path()), &[]).unwrap();
        assert_eq!(cfg.nats.url, "nats://example:4222");
        assert_eq!(cfg.streams.dedup_horizon, Duration::from_secs(300));
        assert_eq!(cfg.streams.replicas, 1);
    }

    #[test]
    fn unknown_keys_in_a_section_are_errors() {
        let mut file = toml_file();
        writeln!(file, "[nats]\nurll = \"x\"").unwrap();
        let err = load::<Sample>(Some(file.path()), &[]).unwrap_err();
        assert!(err.to_string().contains("urll"), "{err}");
    }

    #[test]
    fn secrets_in_the_environment_stay_strings() {
        let vars = [
            ("JETWORK_NATS__PASSWORD", "0123"),
            ("JETWORK_NATS__TOKEN", "1e3"),
            ("JETWORK_NATS__REQUEST_TIMEOUT", "2s"),
            ("JETWORK_NATS__EMPTY", ""),
            ("JETWORK_CONFIG", "x.toml"),
            ("NATS_URL", "nats://elsewhere:4222"),
        ];
        let (parsed, verbatim) =
            split_env(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        assert_eq!(
            verbatim,
            [("nats.password".into(), "0123".into()), ("nats.token".into(), "1e3".into())]
        );
        assert_eq!(parsed.len(), 2, "{parsed:?}");
        assert!(parsed.contains_key("JETWORK_NATS__REQUEST_TIMEOUT"));

        let mut file = toml_file();
        writeln!(file, "[nats]\nuser = \"app\"").unwrap();
        let cfg = config::Config::builder()
            .add_source(config::File::from(file.path()).format(config::FileFormat::Toml))
            .set_override("nats.password", "0123")
            .unwrap()
            .build()
            .unwrap()
            .try_deserialize::<Sample>()
            .unwrap();
        assert_eq!(cfg.nats.password.as_deref(), Some("0123"));
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let err = load::<Sample>(Some(Path::new("/nonexistent/jetwork.toml")), &[]).unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile { .. }));
    }

    /// A `.toml` file (the extension picks the format), removed when dropped.
    fn toml_file() -> tempfile::NamedTempFile {
        tempfile::Builder::new().suffix(".toml").tempfile().unwrap()
    }
}
