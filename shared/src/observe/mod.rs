//! What a running jetwork process shows about itself: Prometheus metrics and health probes on
//! an optional HTTP listener (`metrics_listen`), off unless configured.
//!
//! - [`AtomicHistogram`]: a lock-free histogram for hot paths.
//! - [`Health`]: liveness (connected to NATS) and readiness (the component's own verdict).
//! - [`ObserveServer`]: `GET /metrics`, `/healthz`, `/readyz`, on the shared
//!   [`HttpListener`](crate::http_listener::HttpListener).
//! - [`register_build_info`]: `jetwork_build_info{component, version, …} 1`.
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

/// Registers `jetwork_build_info{component="<component>",version="<version>",…} 1`: which
/// build runs where, a constant series that dashboards join on (`version` is the crate's,
/// `extra` adds labels such as the journal format a master writes). Every label value is
/// fixed by the build, so the series never multiplies.
pub fn register_build_info(
    registry: &mut prometheus_client::registry::Registry,
    component: &str,
    version: &str,
    extra: &[(&str, String)],
) {
    let mut labels = vec![
        ("component".to_owned(), component.to_owned()),
        ("version".to_owned(), version.to_owned()),
    ];
    labels.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    // The text encoder appends `_info` to an info metric's name.
    registry.register(
        "jetwork_build",
        "The build of this process: component and version (always 1)",
        prometheus_client::metrics::info::Info::new(labels),
    );
}
