//! Logging for the binaries: `tracing` to stderr, filtered by `RUST_LOG`. Libraries only emit
//! events; binaries call [`init`] once.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber with `default` as the filter when `RUST_LOG` is unset
/// (`info` for services, `warn` for one-shot commands). Later calls do nothing.
pub fn init(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colour only on a terminal, so log files stay greppable.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}
