//! The `[log]` section, read by every binary: how log lines are written.

use serde::{Deserialize, Serialize};

/// The `[log]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (for people) or `json` (one object per line, for log collectors).
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `2026-01-01T00:00:00Z  INFO message key=value …`
    #[default]
    Text,
    /// `{"timestamp":…,"level":"INFO","fields":{"message":…,"key":…},…}` per line.
    Json,
}
