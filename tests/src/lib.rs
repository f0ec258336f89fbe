//! The integration-test harness: real `nats-server` processes (own port, own store directory,
//! killed on drop) alone or as a 3-node JetStream cluster ([`NatsCluster`]), the real jetwork
//! binaries where a process must die, in-process masters
//! and workers where it need not, an auditor that reads the journal and the results stream
//! back, a fault-injecting proxy for one process's link to nats-server, a paced load and a
//! live-result subscriber for measuring dispatch pauses, and condition waits with deadlines.
//!
//! A test sets up its scenario with [`InProcess::build`] (server, settings, masters, client,
//! proxies, processes), runs its phases, and ends with the audit ([`InProcess::audit`],
//! [`InProcess::completed`], or [`Audit::read_as`] where only a server was set up).
//!
//! Timings: tests cannot pause nats-server's clocks (lease expiry, dedup windows), so they
//! run with short real durations ([`fast_settings`]): lease 2s, work timeout 3s, heartbeats
//! 250-500ms. Every wait is a condition polled until a generous deadline, so a loaded 2-core
//! machine slows the tests down without failing them.

pub mod audit;
pub mod binaries;
pub mod browser;
pub mod inproc;
pub mod live;
pub mod load;
pub mod manual;
pub mod nats_cluster;
pub mod nats_server;
pub mod paced;
pub mod process;
pub mod procs;
pub mod proxy;
pub mod python;
pub mod raw;
pub mod scrape;
pub mod service;
pub mod settings;
pub mod setup;
pub mod wait;

pub use audit::Audit;
pub use browser::Browser;
pub use live::LiveResults;
pub use nats_cluster::NatsCluster;
pub use nats_server::NatsServer;
pub use paced::PacedLoad;
pub use process::Process;
pub use procs::Procs;
pub use proxy::{Action, Direction, FaultProxy, Frame, Mode, Op, RuleId};
pub use scrape::{local_listener, Scrape, Scraper};
pub use service::{call_raw, Refusal};
pub use settings::{
    fast_env, fast_settings, shipped_logins, shipped_nats_conf, stream_caps_env, worker_password,
    Fast,
};
pub use setup::{InProcess, Setup};
pub use wait::{poll_for, wait_until};

/// Logs test output once per process (`RUST_LOG` to see more).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,jetwork_tests=info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}
