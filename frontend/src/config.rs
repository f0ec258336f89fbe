//! The frontend's configuration: the `[frontend]` section, plus `[nats]` and `[streams]`.

use std::path::Path;
use std::time::Duration;

use jetwork_shared::config::{self, ConfigError, LogConfig, NatsConfig, StreamsConfig};
use serde::{Deserialize, Serialize};

/// Everything the frontend reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FrontendSettings {
    pub nats: NatsConfig,
    pub streams: StreamsConfig,
    pub frontend: FrontendConfig,
    pub log: LogConfig,
}

/// The `[frontend]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FrontendConfig {
    /// Queue used when none is given.
    pub queue: String,
    /// How long one submission may keep retrying before it is reported as not accepted.
    #[serde(with = "humantime_serde")]
    pub submit_timeout: Duration,
    /// Pause between retries of a submission that was not acknowledged.
    #[serde(with = "humantime_serde")]
    pub retry_delay: Duration,
}

impl Default for FrontendConfig {
    fn default() -> Self {
        FrontendConfig {
            queue: "default".to_owned(),
            submit_timeout: Duration::from_secs(60),
            retry_delay: Duration::from_secs(1),
        }
    }
}

impl FrontendSettings {
    /// Loads defaults, the optional file and `JETWORK_*` overrides, then checks them.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let settings: FrontendSettings = config::load(file, &[])?;
        settings.nats.validate()?;
        settings.streams.validate()?;
        Ok(settings)
    }
}
