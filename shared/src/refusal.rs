//! [`Refusal`]: what JetStream answered when it refused a request, read out of an async-nats
//! error (its error code sits in the error's `source()` chain, or in the kind of a stream
//! creation error), and whether the refusal is about storage: a reservation the server
//! cannot make, or a write its store (or the stream's cap) has no room for.
//!
//! The codes are nats-server's (`server/errors.json`); the ones jetwork meets, checked against
//! nats-server 2.15.1: 10047 when a stream's `max_bytes` cannot be reserved at creation, 10023
//! when the server's whole store is full at a write, 10077 when a stream's own cap refuses a
//! write ("maximum bytes exceeded", "maximum messages per subject exceeded").

use std::error::Error as StdError;

use async_nats::jetstream::context::{CreateStreamError, CreateStreamErrorKind};

/// "resource limits exceeded for account": the account's JetStream limits refuse a write.
pub const ACCOUNT_RESOURCES_EXCEEDED: u64 = 10002;
/// "insufficient resources": the server's store is full.
pub const INSUFFICIENT_RESOURCES: u64 = 10023;
/// "insufficient memory resources available": a memory stream's cap cannot be reserved.
pub const MEMORY_RESOURCES_EXCEEDED: u64 = 10028;
/// "insufficient storage resources available": a file stream's cap cannot be reserved.
pub const STORAGE_RESOURCES_EXCEEDED: u64 = 10047;
/// A write the stream's own limits refuse; the description says which ("maximum bytes
/// exceeded", "maximum messages per subject exceeded", …).
pub const STORE_FAILED: u64 = 10077;
/// "stream max bytes exceeds account limit max stream bytes".
pub const MAX_STREAM_BYTES_EXCEEDED: u64 = 10122;
/// "duplicate message id is in process": an earlier publish with the same `Nats-Msg-Id` is
/// still being stored (a replicated stream without quorum). Not a refusal: ask again.
pub const DUPLICATE_IN_PROCESS: u64 = 10158;

/// A refusal by JetStream: its error code and its words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u64,
    pub description: String,
}

impl Refusal {
    /// The JetStream refusal inside `error`, if it is one (a timeout or a lost connection is
    /// not: the server did not answer).
    pub fn of(error: &(dyn StdError + 'static)) -> Option<Refusal> {
        let mut current = Some(error);
        while let Some(e) = current {
            if let Some(js) = e.downcast_ref::<async_nats::jetstream::Error>() {
                return Some(Refusal::from_jetstream(js));
            }
            if let Some(create) = e.downcast_ref::<CreateStreamError>() {
                if let CreateStreamErrorKind::JetStream(js) = create.kind() {
                    return Some(Refusal::from_jetstream(&js));
                }
            }
            current = e.source();
        }
        None
    }

    fn from_jetstream(error: &async_nats::jetstream::Error) -> Refusal {
        // The description is only reachable through the error's display ("<words> (code …,
        // error code …)").
        let text = error.to_string();
        let description = match text.rfind(" (code ") {
            Some(end) => text[..end].to_owned(),
            None => text,
        };
        Refusal { code: error.error_code().0, description }
    }

    /// Whether the server refused for lack of room: the store, an account limit, or a
    /// stream's own byte or message caps.
    pub fn is_storage(&self) -> bool {
        matches!(
            self.code,
            ACCOUNT_RESOURCES_EXCEEDED
                | INSUFFICIENT_RESOURCES
                | MEMORY_RESOURCES_EXCEEDED
                | STORAGE_RESOURCES_EXCEEDED
                | STORE_FAILED
                | MAX_STREAM_BYTES_EXCEEDED
        )
    }

    /// Whether a stream's cap could not be reserved (at creation or update).
    pub fn is_reservation(&self) -> bool {
        matches!(
            self.code,
            MEMORY_RESOURCES_EXCEEDED | STORAGE_RESOURCES_EXCEEDED | MAX_STREAM_BYTES_EXCEEDED
        )
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (JetStream error {})", self.description, self.code)
    }
}
