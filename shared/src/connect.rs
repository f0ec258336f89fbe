//! Connecting to NATS the same way in every binary: named connection, optional credentials,
//! unlimited reconnects (the client library default) with connection events logged, and a
//! JetStream context whose publish acknowledgements apply back-pressure instead of failing
//! when too many are in flight.
//!
//! A connection can also be watched for [`Interruptions`]: moments at which messages in
//! flight to this client may have been lost (a reconnect, or a subscription the client library
//! dropped messages for because it was not read fast enough). Core NATS does not redeliver,
//! so anything that must not miss a message (the master's queue readers) re-reads from its
//! last known position when the count moves.

use async_nats::jetstream;
use thiserror::Error;
use tokio::sync::watch;

use crate::config::NatsConfig;

/// Could not connect.
#[derive(Debug, Error)]
#[error("cannot connect to NATS at {url}: {message}")]
pub struct ConnectError {
    pub url: String,
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

/// Connects to the servers in `cfg.url` as `name`. Waits for the first connection, retrying
/// (so a binary started before nats-server comes up once it does).
pub async fn connect(cfg: &NatsConfig, name: &str) -> Result<async_nats::Client, ConnectError> {
    Ok(connect_watched(cfg, name).await?.0)
}

/// [`connect`], and watch the connection for [`Interruptions`].
pub async fn connect_watched(
    cfg: &NatsConfig,
    name: &str,
) -> Result<(async_nats::Client, Interruptions), ConnectError> {
    let err = |message: String| ConnectError { url: cfg.url.clone(), message };
    let (interrupted, interruptions) = watch::channel(0u64);
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .request_timeout(Some(cfg.request_timeout))
        .retry_on_initial_connect()
        .event_callback(move |event| {
            let interrupted = interrupted.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::debug!("connected to NATS");
                        interrupted.send_modify(|n| *n += 1);
                    }
                    async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS"),
                    async_nats::Event::SlowConsumer(sid) => {
                        tracing::warn!(sid, "messages dropped for a slow subscription");
                        interrupted.send_modify(|n| *n += 1);
                    }
                    other => tracing::debug!(event = %other, "NATS connection event"),
                }
            }
        });
    if let Some(path) = &cfg.credentials {
        options = options.credentials_file(path).await.map_err(|e| err(e.to_string()))?;
    }
    let urls: Vec<async_nats::ServerAddr> = cfg
        .url
        .split(',')
        .map(|u| u.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<_, _>>()
        .map_err(|e| err(format!("invalid URL: {e}")))?;
    let client = options.connect(urls).await.map_err(|e| err(e.to_string()))?;
    Ok((client, Interruptions(interruptions)))
}

/// A JetStream context with the configured timeout and publish back-pressure.
pub fn jetstream(client: &async_nats::Client, cfg: &NatsConfig) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(cfg.request_timeout)
        .max_ack_inflight(4096)
        .backpressure_on_inflight(true)
        .build(client.clone())
}
