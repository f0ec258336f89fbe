//! `jetwork-master`: runs one master candidate. Any number may run; one leads.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use jetwork_master::MasterSettings;
use jetwork_shared::cli::{LogArgs, NatsArgs};

/// A jetwork master candidate: stands by until it wins the lease, then leads.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    log: LogArgs,
    /// Serve /metrics, /healthz and /readyz on this address (overrides
    /// `master.metrics_listen`), e.g. 0.0.0.0:9100.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Configuration file (TOML); `JETWORK_*` variables override it.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// A name for this candidate (overrides `master.id`).
    #[arg(long)]
    id: Option<String>,
}

// mimalloc: glibc malloc spent a fifth of the master's time under load (perf), mostly
// in contention and consolidation between the runtime's threads.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// One thread: the master's work is one decision loop plus its NATS connection, and keeping
// them on one thread avoids a cross-thread wake-up per message (measured: 4×64 throughput
// 23–27k jobs/s multi-threaded, 31–33k on one thread, on 2 cores).
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    jetwork_shared::cli::exit_code(run(Args::parse()).await)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut settings =
        MasterSettings::load(args.config.as_deref()).context("loading configuration")?;
    args.nats.apply(&mut settings.nats);
    args.log.apply(&mut settings.log);
    jetwork_shared::telemetry::init("info", settings.log.format);
    without_transparent_huge_pages();
    if let Some(id) = args.id {
        settings.master.id = id;
    }
    if args.metrics_listen.is_some() {
        settings.master.metrics_listen = args.metrics_listen;
    }
    settings.validate().context("checking configuration")?;
    jetwork_master::run(settings, jetwork_shared::shutdown::shutdown_signal())
        .await
        .context("master failed")?;
    Ok(())
}

/// Turns transparent huge pages off for the master's process.
///
/// mimalloc asks the kernel for huge pages on its arenas and gives freed memory back after a
/// moment; each time it hands that memory out again, the first touch faults in and zeroes a
/// whole 2 MiB page. The master allocates a fresh read buffer for every large message, so with
/// 256 KiB payloads it spent 64 % of its time zeroing pages in the kernel (`clear_page_erms`,
/// `perf`), and with 10,000 workers about 6 %; with huge pages off a fault zeroes 4 KiB. Only
/// the master: it starts no processes, which would inherit the flag, and the benchmark's
/// other processes showed no gain without huge pages (`docs/performance.md`, "Huge pages").
/// A failure costs speed, never correctness, so it is only logged.
fn without_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(error) = nix::sys::prctl::set_thp_disable(true) {
        tracing::warn!(%error, "could not turn transparent huge pages off: large messages will cost more CPU");
    }
}
