//! Connecting to NATS the same way in every binary: named connection, optional credentials,
//! unlimited reconnects (the client library default) with connection events logged, and a
//! JetStream context whose publish acknowledgements apply back-pressure instead of failing
//! when too many are in flight.

use async_nats::jetstream;
use thiserror::Error;

use crate::config::NatsConfig;

/// Could not connect.
#[derive(Debug, Error)]
#[error("cannot connect to NATS at {url}: {message}")]
pub struct ConnectError {
    pub url: String,
    pub message: String,
}

/// Connects to the servers in `cfg.url` as `name`. Waits for the first connection, retrying
/// (so a binary started before nats-server comes up once it does).
pub async fn connect(cfg: &NatsConfig, name: &str) -> Result<async_nats::Client, ConnectError> {
    let err = |message: String| ConnectError { url: cfg.url.clone(), message };
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .request_timeout(Some(cfg.request_timeout))
        .retry_on_initial_connect()
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => tracing::debug!("connected to NATS"),
                async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS"),
                other => tracing::debug!(event = %other, "NATS connection event"),
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
    Ok(client)
}

/// A JetStream context with the configured timeout and publish back-pressure.
pub fn jetstream(client: &async_nats::Client, cfg: &NatsConfig) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(cfg.request_timeout)
        .max_ack_inflight(4096)
        .backpressure_on_inflight(true)
        .build(client.clone())
}
