//! jetwork's worker, as a library and (in `main.rs`) as the `jetwork-worker` binary.
//!
//! A worker registers with whichever master leads, pulls work when it has free slots, runs a
//! [`Handler`] per job, and reports each outcome until the master acknowledges it. Handlers
//! are async closures `Fn(Job) -> impl Future<Output = Result<Bytes, JobError>>` (a
//! [`JobError`] says whether another attempt could help); three come with the crate:
//! [`ShellCommand`] (`--exec`), [`Forward`] (`--forward`: any NATS service answers the jobs)
//! and [`square`] (the Akka sample's executor). A job the master cancels is stopped: its
//! future is dropped (and `--exec` kills the command's process group). A handler may close
//! its [`Gate`] to stop the worker taking work (`--forward` does while its service has no
//! responders).
//!
//! Every decision (slots, outcomes and their re-sending, epochs, revocations, shutdown) is made
//! by [`core::Engine`], a pure state machine; the runtime around it does the I/O (NATS, job
//! tasks, timers, lease reads) and feeds it inputs.
//!
//! ```no_run
//! # async fn demo(settings: jetwork_worker::WorkerSettings) -> Result<(), jetwork_worker::Error> {
//! jetwork_worker::run(settings, |job: jetwork_worker::Job| async move {
//!     Ok(bytes::Bytes::from(format!("{} bytes seen", job.payload.len())))
//! }, std::future::pending()).await
//! # }
//! ```

pub mod config;
pub mod core;
mod exec;
mod forward;
mod gate;
mod handler;
mod job;
mod job_error;
pub mod metrics;
mod runtime;
mod squarer;

use std::future::Future;
use std::sync::Arc;

use jetwork_shared::clock::millis;
use jetwork_shared::observe::{self, Health, ObserveServer};
use jetwork_shared::{connect, Token};
use tokio::net::TcpListener;

pub use config::{WorkerConfig, WorkerSettings};
pub use exec::{ShellCommand, PROGRESS_LINE};
pub use forward::{check_subject, Forward, SubjectError, PROBE_EVERY};
pub use gate::Gate;
pub use handler::Handler;
pub use job::{Deadline, Job, ProgressHandle};
pub use job_error::JobError;
pub use squarer::{square, square_payload};

/// A worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Shared(#[from] jetwork_shared::Error),
    #[error(transparent)]
    Config(#[from] jetwork_shared::config::ConfigError),
    #[error("cannot subscribe: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
    /// NATS refuses this worker's user what it cannot run without (the server's words, and
    /// which setting or user of the shipped `nats.conf` it takes).
    #[error("the worker cannot run as this NATS user: {0}")]
    Denied(jetwork_shared::connect::Denied),
    /// The metrics listener could not be opened (`worker.metrics_listen`).
    #[error("cannot listen for metrics on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
}

/// Runs a worker with `handler` until `shutdown` resolves (then finishes or abandons its
/// running jobs within `shutdown_grace`). With `worker.metrics_listen` set, serves
/// `/metrics`, `/healthz` and `/readyz` there.
pub async fn run<H: Handler>(
    settings: WorkerSettings,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let listener = match settings.worker.metrics_listen {
        Some(addr) => {
            Some(observe::bind(addr).await.map_err(|source| Error::Listen { addr, source })?)
        }
        None => None,
    };
    run_with_listener(settings, handler, listener, shutdown).await
}

/// [`run`], serving metrics and probes on `listener` (already bound) instead of
/// `worker.metrics_listen`; none when `None`.
///
/// A worker whose NATS user is refused what it cannot run without (its reply inbox, its
/// notices, the master's endpoints under its login, the lease: [`essentials`]) stops with
/// [`Error::Denied`] naming the permission, instead of running jobs it can never be told to
/// cancel.
pub async fn run_with_listener<H: Handler>(
    settings: WorkerSettings,
    handler: H,
    listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let (id, queues) = settings.validate()?;
    let health = Health::new();
    let (metrics, _server) = match listener {
        Some(listener) => {
            let (metrics, registry) =
                metrics::WorkerMetrics::new(&queues, settings.worker.concurrency);
            let max = settings.worker.http_max_connections;
            let server = ObserveServer::spawn(listener, Arc::new(registry), health.clone(), max);
            (Some(metrics), Some(server))
        }
        None => (None, None),
    };
    health.set_ready(false, "connecting to NATS");
    tokio::pin!(shutdown);
    // Connecting waits for a server that is not up yet: a shutdown meanwhile ends it.
    // A worker touches no stream: it talks to the master and reads the lease, which is all
    // its NATS user needs to be allowed (the master and frontends create the streams).
    let name = format!("jetwork-worker {id}");
    let denials = connect::Denials::default();
    let client = tokio::select! {
        _ = &mut shutdown => return Ok(()),
        connected = connect::connect_reporting(&settings.nats, &name, &denials) => {
            connected.map_err(jetwork_shared::Error::from)?
        }
    };
    health.connected(&client);
    health.set_ready(false, "not registered with a leader yet");
    let w = &settings.worker;
    // The session is drawn here, outside the pure core: it proves this process's identity.
    let mut cfg = crate::core::Config::new(id, Token::random(), queues, w.concurrency);
    cfg.login = settings.login()?;
    match &cfg.login {
        Some(login) => tracing::info!(worker = %cfg.id, %login, "registering under login {login}"),
        None => tracing::info!(worker = %cfg.id, "registering without a login"),
    }
    cfg.register_interval = millis(w.register_interval);
    cfg.resend_interval = millis(w.resend_interval);
    cfg.request_timeout = millis(w.request_timeout);
    cfg.progress_every = w.progress_every.map(millis);
    cfg.shutdown_grace = millis(w.shutdown_grace);
    cfg.max_result = usize::try_from(settings.streams.max_result).unwrap_or(usize::MAX);
    let essentials = essentials(&settings.nats.inbox());
    let observed = runtime::Observed { health, metrics };
    tokio::select! {
        ran = runtime::run(client, cfg, handler, observed, shutdown) => Ok(ran?),
        denied = denials.refused(&essentials) => {
            tracing::error!(error = %denied, "NATS refuses this worker what it cannot run without; stopping");
            Err(Error::Denied(denied))
        }
    }
}

/// What a worker cannot run without: replies on `inbox_prefix`, its "work ready" and cancel
/// notices and the leader's announcements, the master's worker endpoints (under its login),
/// and reading the lease (how it believes a new leader).
pub fn essentials(inbox_prefix: &str) -> connect::Essentials {
    let essentials = connect::Essentials::inbox(inbox_prefix)
        .subscribe("jetwork.worker.")
        .subscribe(jetwork_shared::subjects::MASTER_ELECTED)
        .publish(&format!("$JS.API.DIRECT.GET.KV_{}", jetwork_shared::subjects::LEASE_BUCKET));
    jetwork_shared::subjects::WORKER_ENDPOINTS
        .iter()
        .fold(essentials, |essentials, endpoint| essentials.publish(endpoint))
}
