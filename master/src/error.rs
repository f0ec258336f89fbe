//! The master's error type. Every variant says which resource failed and why; the candidate
//! loop decides what to do (step down and campaign again, or give up at start-up).

use thiserror::Error;

/// A failure in the master runtime.
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Shared(#[from] jetwork_shared::Error),
    #[error("lease: {0}")]
    Lease(String),
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    #[error("NATS: {0}")]
    Nats(String),
}

/// A result with the master's [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
