//! Logging set-up for the binaries: `tracing` to stderr, filtered by `RUST_LOG` (default
//! `info`). Libraries only emit events; binaries call [`init`] once.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).try_init();
}
