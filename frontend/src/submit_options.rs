//! [`SubmitOptions`]: the `submit` flags that become per-job option headers (`--delay`,
//! `--not-before`, `--priority`, `--max-attempts`, `--attempt-timeout`, `--expires`). Checked here
//! with the master's own rules (`jetwork_shared::job_options`) so a mistake is reported before
//! anything is stored; the master checks again, since anyone may submit with `nats`.

use jetwork_shared::clock::now_ms;
use jetwork_shared::job_options::{self, JobOptions};

/// Per-job options of one submission.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SubmitOptions {
    /// Start no earlier than this long after it is stored (`30s`, `5m`, `1h 30m`).
    #[arg(long, conflicts_with = "not_before")]
    pub delay: Option<String>,
    /// Start no earlier than this time (RFC 3339, `2026-12-01T03:00:00Z`).
    #[arg(long)]
    pub not_before: Option<String>,
    /// 0 (default) to 9: higher is handed out first within its queue.
    #[arg(long)]
    pub priority: Option<String>,
    /// Attempts it may use (overrides the queue's `max_attempts`).
    #[arg(long)]
    pub max_attempts: Option<String>,
    /// How long one attempt may run without a result or progress (`30s`; header
    /// `Jetwork-Timeout`).
    #[arg(long)]
    pub attempt_timeout: Option<String>,
    /// Start by then (a duration after it is stored, or an RFC 3339 time), else it ends
    /// `cancelled` as expired.
    #[arg(long)]
    pub expires: Option<String>,
}

impl SubmitOptions {
    /// The headers to submit with, once they pass the master's rules.
    pub fn headers(&self) -> Result<Vec<(&'static str, String)>, String> {
        let given = [
            (job_options::DELAY, &self.delay),
            (job_options::NOT_BEFORE, &self.not_before),
            (job_options::PRIORITY, &self.priority),
            (job_options::MAX_ATTEMPTS_HEADER, &self.max_attempts),
            (job_options::TIMEOUT, &self.attempt_timeout),
            (job_options::EXPIRES, &self.expires),
        ];
        let headers: Vec<(&'static str, String)> =
            given.into_iter().filter_map(|(name, v)| Some((name, v.clone()?))).collect();
        let get = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        JobOptions::from_headers(get, now_ms())?;
        Ok(headers)
    }
}
