//! Logging and signals for the binaries: `tracing` to stderr, filtered by `RUST_LOG`, and the
//! shutdown signal every binary waits on. Libraries only emit events; binaries call [`init`]
//! once.

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

/// Resolves on SIGINT or SIGTERM (or, where signals cannot be installed, on Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = ctrl_c.await;
            return;
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutdown requested");
}
