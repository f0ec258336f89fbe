//! The shared crate's error type: the ways start-up plumbing (configuration, connection,
//! topology) and message decoding can fail.

use thiserror::Error;

/// An error from the shared plumbing.
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Connect(#[from] crate::connect::ConnectError),
    #[error(transparent)]
    Topology(#[from] crate::topology::TopologyError),
    #[error(transparent)]
    Codec(#[from] crate::codec::CodecError),
}

/// A result with the shared [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A request to NATS or JetStream that failed for now: the server or the network is in
/// trouble, or a stream leader is being elected. Always worth retrying later; says what was
/// being done and keeps the client's error as its source.
#[derive(Debug, Error)]
#[error("{what}: {source}")]
pub struct Unavailable {
    pub what: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl Unavailable {
    /// `what` failed because of `source`.
    pub fn new(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Unavailable { what: what.into(), source: source.into() }
    }
}
