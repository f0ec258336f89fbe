//! Connecting to NATS the same way in every binary: named connection, the configured
//! authentication (user/password, token, nkey seed, JWT credentials) and TLS (CA, client
//! certificate), the inbox prefix (by default `_INBOX_<user>` with a user name), unlimited
//! reconnects once connected (the client library default) with connection events logged and
//! permission violations reported ([`Denials`]), and a JetStream context whose publish
//! acknowledgements apply back-pressure instead of failing when too many are in flight.
//!
//! The first connection is attempted here, not in the client library's background retry:
//! that retry loops forever without saying why, even when the server refuses the
//! credentials. Each failed attempt is classified ([`Cause`]): a permanent cause (refused
//! credentials, TLS, unusable key material) fails at once with a message naming the URL and
//! the cause; a transient one (connection refused, time-out, DNS) is logged and retried, so a
//! binary started before nats-server comes up once it does.
//!
//! A connection can also be watched for [`Interruptions`]: moments at which messages in
//! flight to this client may have been lost (a reconnect, or a subscription the client library
//! dropped messages for because it was not read fast enough). Core NATS does not redeliver,
//! so anything that must not miss a message (the master's queue readers) re-reads from its
//! last known position when the count moves. The count covers every subscription of the
//! connection: whatever must not be reset by a flood on some other subject needs a connection
//! of its own (the master's intake has one). Dropped messages are logged at most once a
//! second per connection, with the count left out, so a flood cannot flood the log too.

mod denials;
mod failure;

use crate::backoff::Backoff;
use crate::log_limit::LogLimit;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use async_nats::{jetstream, ConnectOptions, ServerAddr};
use thiserror::Error;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::{redact_url, Auth, NatsConfig, Resolved};
pub use denials::{Denials, Denied, Essentials};
pub use failure::Cause;

/// Failures of a reconnect attempt that will not go away by themselves.
const PERMANENT_KINDS: [async_nats::ConnectErrorKind; 3] = [
    async_nats::ConnectErrorKind::AuthorizationViolation,
    async_nats::ConnectErrorKind::Authentication,
    async_nats::ConnectErrorKind::Tls,
];

/// Could not connect. `url` has its secrets replaced by `***`.
#[derive(Debug, Error)]
#[error("cannot connect to NATS at {url}: {message}")]
pub struct ConnectError {
    pub url: String,
    pub cause: Cause,
    pub message: String,
}

/// A count of the moments at which messages in flight to a connection may have been lost.
#[derive(Debug, Clone)]
pub struct Interruptions(watch::Receiver<u64>);

impl Interruptions {
    /// The count so far.
    pub fn count(&self) -> u64 {
        *self.0.borrow()
    }

    /// Resolves at the next interruption after this call (pending forever if the connection
    /// is gone).
    pub async fn next(&mut self) {
        self.0.borrow_and_update();
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// `cfg` for one more connection of the same process, named `<cfg.name or default_name>-<role>`
/// (so the server's connection list tells them apart); everything else is the same.
pub fn for_role(cfg: &NatsConfig, default_name: &str, role: &str) -> NatsConfig {
    let name = cfg.name.as_deref().unwrap_or(default_name);
    NatsConfig { name: Some(format!("{name}-{role}")), ..cfg.clone() }
}

/// Connects to the servers in `cfg.url`, named `cfg.name` or else `default_name`. Waits for
/// the first connection as long as the causes of failure are transient; fails at once on a
/// permanent one.
pub async fn connect(
    cfg: &NatsConfig,
    default_name: &str,
) -> Result<async_nats::Client, ConnectError> {
    Ok(establish(cfg, default_name, None).await?.0)
}

/// [`connect`], giving up after `wait` even on transient causes (for one-shot commands).
pub async fn connect_within(
    cfg: &NatsConfig,
    default_name: &str,
    wait: Duration,
) -> Result<async_nats::Client, ConnectError> {
    Ok(establish(cfg, default_name, Some(wait)).await?.0)
}

/// [`connect_within`], and the connection's [`Denials`], so requests the server refuses fail
/// at once.
pub async fn connect_with_denials(
    cfg: &NatsConfig,
    default_name: &str,
    wait: Duration,
) -> Result<(async_nats::Client, Denials), ConnectError> {
    let denials = Denials::default();
    let (client, _) =
        establish_reporting(cfg, default_name, Some(wait), denials.clone(), None).await?;
    Ok((client, denials))
}

/// [`connect`], reporting the connection's permission violations to `denials` (shared by
/// the connections of one process, so that it can stop when refused what it cannot run
/// without: [`Denials::refused`]).
pub async fn connect_reporting(
    cfg: &NatsConfig,
    default_name: &str,
    denials: &Denials,
) -> Result<async_nats::Client, ConnectError> {
    Ok(establish_reporting(cfg, default_name, None, denials.clone(), None).await?.0)
}

/// [`connect_reporting`], and watch the connection for [`Interruptions`].
pub async fn connect_watched(
    cfg: &NatsConfig,
    default_name: &str,
    denials: &Denials,
) -> Result<(async_nats::Client, Interruptions), ConnectError> {
    establish_reporting(cfg, default_name, None, denials.clone(), None).await
}

/// [`connect_reporting`], with at most `capacity` messages waiting in each subscription
/// (instead of the client library's 65,536): for a connection whose subjects anyone may
/// flood, so that what a flood piles up stays bounded. Beyond it the library drops that
/// subscription's excess (an [`Interruptions`] of this connection only).
pub async fn connect_bounded(
    cfg: &NatsConfig,
    default_name: &str,
    capacity: usize,
    denials: &Denials,
) -> Result<async_nats::Client, ConnectError> {
    Ok(establish_reporting(cfg, default_name, None, denials.clone(), Some(capacity)).await?.0)
}

/// Tries until connected, a permanent failure, or `wait` has passed.
async fn establish(
    cfg: &NatsConfig,
    default_name: &str,
    wait: Option<Duration>,
) -> Result<(async_nats::Client, Interruptions), ConnectError> {
    establish_reporting(cfg, default_name, wait, Denials::default(), None).await
}

/// [`establish`], reporting the connection's permission violations to `denials`, with
/// `capacity` messages per subscription if given.
async fn establish_reporting(
    cfg: &NatsConfig,
    default_name: &str,
    wait: Option<Duration>,
    denials: Denials,
    capacity: Option<usize>,
) -> Result<(async_nats::Client, Interruptions), ConnectError> {
    let resolved = cfg.resolve().map_err(|e| ConnectError {
        url: redact_url(&cfg.url),
        cause: Cause::Settings,
        message: e.to_string(),
    })?;
    let url = resolved.shown_url.clone();
    let fail =
        |(cause, message): (Cause, String)| ConnectError { url: url.clone(), cause, message };
    let servers = resolved
        .servers
        .iter()
        .map(|s| s.parse::<ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail((Cause::Settings, format!("invalid URL: {e}"))))?;
    let seed = preflight(cfg, &resolved).await.map_err(fail)?;
    let name = cfg.name.as_deref().unwrap_or(default_name);
    let (interrupted, interruptions) = watch::channel(0u64);
    let drops = Arc::new(Mutex::new(LogLimit::default()));

    let started = Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    let mut reported: Option<(String, Instant)> = None;
    loop {
        let events = Events {
            interrupted: interrupted.clone(),
            denials: denials.clone(),
            drops: drops.clone(),
        };
        let mut options =
            options(cfg, &resolved, name, seed.as_deref(), events).await.map_err(fail)?;
        if let Some(capacity) = capacity {
            options = options.subscription_capacity(capacity);
        }
        let err = match options.connect(servers.clone()).await {
            Ok(client) => {
                if reported.is_some() {
                    tracing::info!(url = %url, "connected to NATS");
                }
                return Ok((client, Interruptions(interruptions)));
            }
            Err(err) => err,
        };
        let (cause, message) = failure::classify(&err, &resolved.auth);
        if cause.is_permanent() {
            return Err(fail((cause, message)));
        }
        let waited = started.elapsed();
        if let Some(wait) = wait.filter(|wait| waited >= *wait) {
            return Err(fail((cause, format!("{message}; gave up after {wait:?}"))));
        }
        // Say why we wait when the cause is new, and again every 30 s while it lasts.
        let repeat = match &reported {
            Some((said, at)) => *said != message || at.elapsed() >= Duration::from_secs(30),
            None => true,
        };
        if repeat {
            tracing::warn!(url = %url, cause = %message, waited = ?waited, "cannot connect to NATS yet; retrying");
            reported = Some((message, Instant::now()));
        }
        let delay = backoff.next_delay();
        let pause = match wait {
            Some(wait) => delay.min(wait.saturating_sub(waited)),
            None => delay,
        };
        tokio::time::sleep(pause).await;
    }
}

/// Reads and checks the key material before the first attempt, so a bad file is reported as
/// such (naming the setting) instead of as a failed handshake. Returns the nkey seed.
async fn preflight(
    cfg: &NatsConfig,
    resolved: &Resolved,
) -> Result<Option<String>, (Cause, String)> {
    let settings = |message: String| (Cause::Settings, message);
    if let Some(path) = &cfg.tls_ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| settings(format!("nats.tls_ca_file {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(settings(format!(
                "nats.tls_ca_file {} holds no PEM certificate",
                path.display()
            )));
        }
    }
    if let (Some(cert), Some(key)) = (&cfg.tls_cert_file, &cfg.tls_key_file) {
        let certs = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| settings(format!("nats.tls_cert_file {}: {e}", cert.display())))?;
        if certs.is_empty() {
            return Err(settings(format!(
                "nats.tls_cert_file {} holds no PEM certificate",
                cert.display()
            )));
        }
        PrivateKeyDer::from_pem_file(key).map_err(|e| {
            settings(format!("nats.tls_key_file {}: no usable private key ({e})", key.display()))
        })?;
    }
    let Auth::NkeySeedFile(path) = &resolved.auth else {
        return Ok(None);
    };
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| settings(format!("nats.nkey_seed_file {}: {e}", path.display())))?;
    let seed = text.trim();
    let valid = nkeys::KeyPair::from_seed(seed).is_ok();
    if !valid || !seed.starts_with("SU") {
        let what = if valid { "a seed, but not a user's (SU…)" } else { "not an nkey seed" };
        return Err(settings(format!("invalid nkey seed in {}: {what}", path.display())));
    }
    Ok(Some(seed.to_owned()))
}

/// What a connection's events are reported to.
#[derive(Clone)]
struct Events {
    interrupted: watch::Sender<u64>,
    denials: Denials,
    /// Slow-subscription drops logged: anyone who may publish to a subscribed subject can
    /// cause them by the thousand.
    drops: Arc<Mutex<LogLimit>>,
}

/// The client library's options for one attempt.
async fn options(
    cfg: &NatsConfig,
    resolved: &Resolved,
    name: &str,
    seed: Option<&str>,
    events: Events,
) -> Result<ConnectOptions, (Cause, String)> {
    let name = name.to_owned();
    let mut options = ConnectOptions::new()
        .name(&name)
        .request_timeout(Some(cfg.request_timeout))
        .ping_interval(cfg.ping_interval)
        .event_callback(move |event| {
            let Events { interrupted, denials, drops } = events.clone();
            let name = name.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!(connection = %name, "connected to NATS");
                        interrupted.send_modify(|n| *n += 1);
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!(connection = %name, "disconnected from NATS")
                    }
                    async_nats::Event::SlowConsumer(sid) => {
                        interrupted.send_modify(|n| *n += 1);
                        let allowed = drops.lock().unwrap_or_else(PoisonError::into_inner).allow();
                        if let Some(suppressed) = allowed {
                            tracing::warn!(connection = %name, sid, suppressed, "messages dropped for a slow subscription");
                        }
                    }
                    // Permission violations and the like: an operator needs to see these.
                    async_nats::Event::ServerError(e) => {
                        denials.report(&e.to_string());
                        tracing::warn!(error = %e, "NATS server error")
                    }
                    // While reconnecting, the library retries even refused credentials or TLS
                    // forever; say so (an unreachable server is only worth a debug line).
                    async_nats::Event::ClientError(async_nats::ClientError::Other(kind))
                        if PERMANENT_KINDS.iter().any(|k| kind == k.to_string()) =>
                    {
                        tracing::warn!(cause = %kind, "NATS refuses this client while reconnecting; still retrying")
                    }
                    other => tracing::debug!(event = %other, "NATS connection event"),
                }
            }
        });
    options = match &resolved.auth {
        Auth::None => options,
        Auth::UserPassword { user, password } => {
            options.user_and_password(user.clone(), password.clone())
        }
        Auth::Token(token) => options.token(token.clone()),
        Auth::NkeySeedFile(_) => options.nkey(seed.unwrap_or_default().to_owned()),
        Auth::Credentials(path) => options.credentials_file(path).await.map_err(|e| {
            (Cause::Settings, format!("invalid credentials file {}: {e}", path.display()))
        })?,
    };
    if let Some(ca) = &cfg.tls_ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&cfg.tls_cert_file, &cfg.tls_key_file) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    if resolved.tls_required {
        options = options.require_tls(true);
    }
    if resolved.inbox_prefix != crate::config::DEFAULT_INBOX_PREFIX {
        options = options.custom_inbox_prefix(&resolved.inbox_prefix);
    }
    Ok(options)
}

/// A JetStream context with the configured timeout and publish back-pressure.
pub fn jetstream(client: &async_nats::Client, cfg: &NatsConfig) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(cfg.request_timeout)
        .max_ack_inflight(4096)
        .backpressure_on_inflight(true)
        .build(client.clone())
}
