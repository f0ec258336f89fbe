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
