//! Logging for the binaries: `tracing` to stderr, filtered by `RUST_LOG`, as text or as JSON
//! lines (`[log] format`). Libraries only emit events; binaries call [`init`] once, after
//! reading their configuration.
//!
//! Fields are recorded as they are given: jetwork logs identifiers (`work_id`, `queue`,
//! `worker`) with `%` (their plain text), so a JSON line carries `"queue":"default"`, never a
//! Rust debug rendering.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber with `default` as the filter when `RUST_LOG` is unset
/// (`info` for services, `warn` for one-shot commands; the client library at `warn` in either
/// case), writing `format`. Later calls do nothing.
pub fn init(default: &str, format: LogFormat) {
    // The NATS client library logs every connection event at info, one line per message it
    // drops for a slow subscription: anyone who floods a subscribed subject would flood the
    // log. Its warnings still show; jetwork logs the events that matter itself (`connect.rs`).
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default},async_nats=warn")));
    match format {
        LogFormat::Text => {
            // Colour only on a terminal, so log files stay greppable.
            let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_target(false)
                .with_ansi(ansi)
                .with_writer(std::io::stderr)
                .try_init();
        }
        LogFormat::Json => {
            let _ = tracing_subscriber::fmt()
                .json()
                .with_env_filter(filter)
                .with_target(false)
                .with_current_span(false)
                .with_writer(std::io::stderr)
                .try_init();
        }
    }
}
