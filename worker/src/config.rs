//! The worker's configuration: the `[worker]` section, plus `[nats]` and `[streams]`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use jetwork_shared::config::{self, ConfigError, LogConfig, NatsConfig, StreamsConfig};
use jetwork_shared::{Login, QueueName, WorkerId};
use serde::{Deserialize, Serialize};

/// Everything a worker reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerSettings {
    pub nats: NatsConfig,
    pub streams: StreamsConfig,
    pub worker: WorkerConfig,
    pub log: LogConfig,
}

/// The `[worker]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Worker id; when absent a random `<login>-<uuid>` (`w-<uuid>` without a login). Must be
    /// unique among running workers, and one of its login's ids (`<login>` or `<login>-…`).
    pub id: Option<String>,
    /// The login the worker registers under (`jetwork.master.register.<login>.<id>`): the NATS
    /// user's, whose permissions bind the worker to it. When absent, `nats.user` if that is
    /// set; `""` registers without a login (masters that configure no logins accept that).
    pub login: Option<String>,
    /// Queues to take work from.
    pub queues: Vec<String>,
    /// Items run at once.
    pub concurrency: u32,
    /// Heartbeat: how often to re-register.
    #[serde(with = "humantime_serde")]
    pub register_interval: Duration,
    /// How long to wait for a verdict before re-sending an outcome.
    #[serde(with = "humantime_serde")]
    pub resend_interval: Duration,
    /// Timeout of one request to the master.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Report progress for every running item this often (keeps long jobs alive without the
    /// handler calling `progress`). Off when absent.
    #[serde(default, with = "humantime_serde")]
    pub progress_every: Option<Duration>,
    /// On shutdown, how long running items may take to finish before they are abandoned.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Shell command run per item (`sh -c`); the built-in squarer when absent (and no
    /// `forward`).
    pub exec: Option<String>,
    /// NATS subject each item is sent to as a request (any NATS service answers it); not with
    /// `exec`.
    pub forward: Option<String>,
    /// Address of the HTTP listener for `/metrics`, `/healthz` and `/readyz`; none when
    /// absent (the default).
    pub metrics_listen: Option<SocketAddr>,
    /// Most connections the `metrics_listen` listener serves at once; beyond it a new one is
    /// answered 503 and closed at once.
    pub http_max_connections: usize,
    /// An `exec` command exiting with this status fails its job at once, without more
    /// attempts (bad input, a permanent refusal). Every other failure is retried.
    pub non_retryable_exit_code: Option<i32>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            id: None,
            login: None,
            queues: vec!["default".to_owned()],
            concurrency: 1,
            register_interval: Duration::from_secs(10),
            resend_interval: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            progress_every: None,
            shutdown_grace: Duration::from_secs(10),
            exec: None,
            forward: None,
            metrics_listen: None,
            http_max_connections: 256,
            non_retryable_exit_code: None,
        }
    }
}

impl WorkerSettings {
    /// Loads defaults, the optional file and `JETWORK_*` overrides (`JETWORK_WORKER__QUEUES`
    /// takes a comma-separated list), and checks the `[nats]` rules (the rest is checked by
    /// [`WorkerSettings::validate`] when the worker starts).
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let settings: WorkerSettings = config::load(file, &["worker.queues"])?;
        settings.nats.validate()?;
        Ok(settings)
    }

    /// The login the worker registers under: `worker.login` (`""`: none), else the NATS user
    /// where it can stand for one: a user name that is no valid login, or a `worker.id` that
    /// is not one of its ids, registers without a login, as workers did before logins (a
    /// master with `[logins]` then refuses it with a reason naming the subject to use).
    pub fn login(&self) -> Result<Option<Login>, ConfigError> {
        match (&self.worker.login, &self.nats.user) {
            (Some(login), _) if login.is_empty() => Ok(None),
            (Some(login), _) => Login::parse(login).map(Some).map_err(|e| {
                ConfigError::Rule(format!(
                    "worker.login {login:?}: {e}; set a valid name, or \"\" to register without one"
                ))
            }),
            (None, Some(user)) => {
                let Ok(login) = Login::parse(user) else { return Ok(None) };
                let its_id = match &self.worker.id {
                    Some(id) => WorkerId::parse(id).is_ok_and(|id| login.owns(&id)),
                    None => true,
                };
                Ok(its_id.then_some(login))
            }
            (None, None) => Ok(None),
        }
    }

    /// Checks the rules serde cannot express and returns the validated ids.
    pub fn validate(&self) -> Result<(WorkerId, Vec<QueueName>), ConfigError> {
        self.nats.validate()?;
        self.streams.validate()?;
        let w = &self.worker;
        let rule = |text: String| ConfigError::Rule(text);
        if w.http_max_connections == 0 {
            return Err(rule("worker.http_max_connections must be at least 1".into()));
        }
        if w.concurrency == 0 || w.concurrency > 10_000 {
            return Err(rule(format!(
                "worker.concurrency must be 1..=10000, not {}",
                w.concurrency
            )));
        }
        if w.register_interval < Duration::from_millis(50)
            || w.resend_interval < Duration::from_millis(50)
        {
            return Err(rule(
                "worker.register_interval and resend_interval must be at least 50ms".into(),
            ));
        }
        if let Some(subject) = &w.forward {
            if w.exec.is_some() {
                return Err(rule("worker.exec and worker.forward exclude each other".into()));
            }
            crate::forward::check_subject(subject)
                .map_err(|e| rule(format!("worker.forward: {e}")))?;
        }
        let login = self.login()?;
        let id = match (&w.id, &login) {
            (Some(id), _) => WorkerId::parse(id).map_err(|e| rule(format!("worker.id: {e}")))?,
            (None, Some(login)) => login.random_worker_id(),
            (None, None) => WorkerId::random(),
        };
        if let Some(login) = login.as_ref().filter(|login| !login.owns(&id)) {
            return Err(rule(format!(
                "worker.id {id} is not one of worker.login {login}'s ids ({login} or {login}-…)"
            )));
        }
        let mut queues = Vec::new();
        for q in &w.queues {
            queues
                .push(QueueName::parse(q.trim()).map_err(|e| rule(format!("worker.queues: {e}")))?);
        }
        if queues.is_empty() {
            return Err(rule("worker.queues must name at least one queue".into()));
        }
        Ok((id, queues))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_needs_a_publishable_subject_and_no_exec() {
        let mut settings = WorkerSettings::default();
        settings.worker.forward = Some("jetwork.svc.resize".to_owned());
        assert!(settings.validate().is_ok());
        settings.worker.exec = Some("cat".to_owned());
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("exclude each other"), "{err}");
        settings.worker.exec = None;
        settings.worker.forward = Some("jetwork.svc.>".to_owned());
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("worker.forward") && err.contains("wildcard"), "{err}");
    }

    #[test]
    fn the_login_is_worker_login_else_the_nats_user_where_the_id_is_its() {
        let mut settings = WorkerSettings::default();
        let login = |s: &WorkerSettings| s.login().unwrap().map(|l| l.as_str().to_owned());
        assert_eq!(login(&settings), None);
        settings.nats.user = Some("worker-1".to_owned());
        assert_eq!(login(&settings).as_deref(), Some("worker-1"), "a random id is the login's");
        let (id, _) = settings.validate().unwrap();
        assert!(id.as_str().starts_with("worker-1-"), "{id}");
        settings.worker.id = Some("worker-1-a".to_owned());
        assert_eq!(login(&settings).as_deref(), Some("worker-1"));
        settings.worker.id = Some("w1".to_owned());
        assert_eq!(login(&settings), None, "a shared user with its own ids: no login");
        assert!(settings.validate().is_ok());
        settings.worker.login = Some("worker-2".to_owned());
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("not one of worker.login worker-2's ids"), "{err}");
        settings.worker.login = Some(String::new());
        assert_eq!(login(&settings), None);
        settings.worker.login = None;
        settings.nats.user = Some("no.login".to_owned());
        settings.worker.id = None;
        assert_eq!(login(&settings), None, "a user name that is no login");
    }
}
