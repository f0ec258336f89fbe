//! Everything the jetwork components agree on: the names of subjects, streams and buckets, the
//! validated identifiers that appear in them, the MessagePack wire messages exchanged between
//! master, workers and frontends, the headers on stored messages, configuration loading, and the
//! JetStream topology (stream and bucket definitions) that every component may create.
//!
//! Nothing in here talks to NATS on its own except [`topology`] and [`connect`], which the
//! binaries call at start-up. The protocol is documented for other-language implementers in
//! `docs/protocol.md`; this crate is the reference for it and the two must stay in step.

pub mod backoff;
pub mod cli;
pub mod clock;
pub mod codec;
pub mod config;
pub mod connect;
pub mod error;
pub mod fast_hash;
pub mod headers;
pub mod http_listener;
pub mod job_options;
pub mod jobs;
pub mod leader;
pub mod log_limit;
pub mod login;
pub mod msgpack_value;
pub mod name;
pub mod observe;
pub mod protocol;
pub mod queue_name;
pub mod refusal;
pub mod report_entries;
pub mod schedules;
pub mod shutdown;
pub mod subjects;
pub mod telemetry;
pub mod token;
pub mod topology;
pub mod work_id;
pub mod worker_id;

pub use error::{Error, Result, Unavailable};
pub use login::Login;
pub use queue_name::QueueName;
pub use token::Token;
pub use work_id::WorkId;
pub use worker_id::WorkerId;
