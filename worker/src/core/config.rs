//! [`Config`]: the worker's settings as the engine sees them, all durations in milliseconds.
//! Fixed for the life of the engine; the runtime builds it from `WorkerSettings` and draws the
//! session token, so the engine itself never draws anything.

use jetwork_shared::{Login, QueueName, Token, WorkerId};

use super::Millis;

/// Settings of one [`super::Engine`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The worker id every request is made under.
    pub id: WorkerId,
    /// The login its requests come under (their subjects carry it), if any.
    pub login: Option<Login>,
    /// This process's session, sent with every request: while it lives, only it may act
    /// under `id`.
    pub session: Token,
    /// Queues to take work from.
    pub queues: Vec<QueueName>,
    /// Attempts held at once (running, waiting to start, or with an outcome the master has
    /// not acknowledged).
    pub concurrency: u32,
    /// Heartbeat: how often to register again once registered.
    pub register_interval: Millis,
    /// How long an outcome waits for a verdict before it is sent again.
    pub resend_interval: Millis,
    /// How long the runtime waits for any reply (it then answers with a failure).
    pub request_timeout: Millis,
    /// Report progress for every running job this often, whatever the handler does.
    pub progress_every: Option<Millis>,
    /// Progress for one attempt goes out at most this often, however often the handler
    /// reports it: each accepted progress costs the master a journal write.
    pub progress_interval: Millis,
    /// After a shutdown request, how long running jobs may take before they are abandoned.
    pub shutdown_grace: Millis,
    /// Largest result the master accepts: a larger one fails the attempt here.
    pub max_result: usize,
    /// Most result bytes in one report (at least one outcome goes, whatever its size).
    pub report_bytes: usize,
    /// Longest failure reason sent (its tail is kept: that is where errors usually are).
    pub max_reason: usize,
}

impl Config {
    /// The defaults of `WorkerConfig`, for the given identity.
    pub fn new(id: WorkerId, session: Token, queues: Vec<QueueName>, concurrency: u32) -> Self {
        Config {
            id,
            login: None,
            session,
            queues,
            concurrency,
            register_interval: 10_000,
            resend_interval: 5_000,
            request_timeout: 5_000,
            progress_every: None,
            progress_interval: 1_000,
            shutdown_grace: 10_000,
            max_result: 512 * 1024,
            report_bytes: 512 * 1024,
            max_reason: 4096,
        }
    }

    /// While not registered, how often to try: soon (a master may be up any moment), but no
    /// more often than the heartbeat.
    pub fn retry_interval(&self) -> Millis {
        self.register_interval.min(500)
    }

    /// How long the master may hold a request for work open: half the request timeout, so
    /// its empty answer still arrives well before the request times out.
    pub fn long_poll(&self) -> Millis {
        self.request_timeout / 2
    }
}
