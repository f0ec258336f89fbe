//! What a running jetwork process shows about itself: Prometheus metrics and health probes on
//! an optional HTTP listener (`metrics_listen`), off unless configured.
//!
//! - [`AtomicHistogram`]: a lock-free histogram for hot paths.
//! - [`Health`]: liveness (connected to NATS) and readiness (the component's own verdict).
//! - [`ObserveServer`]: `GET /metrics`, `/healthz`, `/readyz`.
//!
//! Each process builds its own `prometheus_client` registry (no global recorder), so several
//! masters and workers in one test process each export their own numbers.

mod health;
mod histogram;
mod server;

pub use health::{Health, Probe};
pub use histogram::{AtomicHistogram, COUNT_BUCKETS, SECONDS_BUCKETS, WRITE_SECONDS_BUCKETS};
pub use server::{bind, ObserveServer};

/// The label set of per-queue series: `queue="<name>"`.
pub type QueueLabel = [(&'static str, String); 1];

/// The label of `queue`.
pub fn queue_label(queue: &crate::QueueName) -> QueueLabel {
    [("queue", queue.as_str().to_owned())]
}
