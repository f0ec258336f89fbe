//! The master's error type: what can end [`crate::run`]. Everything after start-up is handled
//! where it happens (a term ends, a task retries), by the typed errors of each module
//! (`JournalError`, `ReplayError`, `PublishError`, `AgeError`, `Unavailable`).

use thiserror::Error;

/// Why the master could not run.
#[derive(Debug, Error)]
pub enum Error {
    /// It could not connect (the cause says why: authorization, TLS, …).
    #[error(transparent)]
    Connect(#[from] jetwork_shared::Error),
    /// The server cannot reserve the storage the `[streams]` settings ask for (the message
    /// names them): waiting would not mend it.
    #[error(transparent)]
    Storage(jetwork_shared::topology::TopologyError),
    /// NATS refuses this master's user what it cannot run without (the server's words, and
    /// which setting or role of the shipped `nats.conf` it takes).
    #[error("the master cannot run as this NATS user: {0}")]
    Denied(jetwork_shared::connect::Denied),
    /// The metrics listener could not be opened (`master.metrics_listen`).
    #[error("cannot listen for metrics on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
}

/// A result with the master's [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
