//! The frontend's configuration: the `[frontend]` section, plus `[nats]` and `[streams]`.

use std::path::Path;
use std::time::Duration;

use jetwork_shared::config::{self, ConfigError, LogConfig, NatsConfig, StreamsConfig};
use serde::{Deserialize, Serialize};

use crate::dashboard::AllowedHost;

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
    /// Names the dashboard answers for besides what its listen address is reachable as
    /// (`jobs.example.com`, `proxy.internal:8443`): a reverse proxy's, the machine's.
    pub dashboard_allowed_hosts: Vec<String>,
    /// Most connections the dashboard serves at once; beyond it a new one is answered 503 and
    /// closed at once (`--max-connections` overrides it).
    pub dashboard_max_connections: usize,
}

impl Default for FrontendConfig {
    fn default() -> Self {
        FrontendConfig {
            queue: "default".to_owned(),
            submit_timeout: Duration::from_secs(60),
            retry_delay: Duration::from_secs(1),
            dashboard_allowed_hosts: Vec::new(),
            dashboard_max_connections: 256,
        }
    }
}

impl FrontendSettings {
    /// Loads defaults, the optional file and `JETWORK_*` overrides
    /// (`JETWORK_FRONTEND__DASHBOARD_ALLOWED_HOSTS` takes a comma-separated list), then checks
    /// them.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let settings: FrontendSettings = config::load(file, &["frontend.dashboard_allowed_hosts"])?;
        settings.nats.validate()?;
        settings.streams.validate()?;
        settings.frontend.dashboard_allowed_hosts()?;
        if settings.frontend.dashboard_max_connections == 0 {
            let why = "frontend.dashboard_max_connections must be at least 1";
            return Err(ConfigError::Rule(why.to_owned()));
        }
        Ok(settings)
    }
}

impl FrontendConfig {
    /// `dashboard_allowed_hosts`, read.
    pub fn dashboard_allowed_hosts(&self) -> Result<Vec<AllowedHost>, ConfigError> {
        self.dashboard_allowed_hosts
            .iter()
            .map(|name| {
                name.parse().map_err(|e| {
                    ConfigError::Rule(format!("frontend.dashboard_allowed_hosts: {e}"))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_hosts_come_from_the_file_and_are_checked() {
        let dir = std::env::temp_dir().join(format!("jetwork-frontend-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("frontend.toml");
        std::fs::write(&file, "[frontend]\ndashboard_allowed_hosts = [\"jobs.example.com\"]\n")
            .unwrap();
        let settings = FrontendSettings::load(Some(&file)).unwrap();
        let names = settings.frontend.dashboard_allowed_hosts().unwrap();
        assert_eq!(names, vec!["jobs.example.com".parse::<AllowedHost>().unwrap()]);

        std::fs::write(&file, "[frontend]\ndashboard_allowed_hosts = [\"http://x/\"]\n").unwrap();
        let e = FrontendSettings::load(Some(&file)).unwrap_err().to_string();
        assert!(e.contains("frontend.dashboard_allowed_hosts"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
