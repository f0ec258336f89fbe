//! `jetwork-worker`: runs jobs from one or more queues, with a shell command, a NATS service
//! (`--forward`) or the built-in squarer.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use jetwork_shared::cli::{LogArgs, NatsArgs};
use jetwork_shared::connect;
use jetwork_worker::{Forward, ShellCommand, WorkerSettings};

/// A jetwork worker: pulls work from the leading master and runs it.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Queue(s) to serve, comma separated.
    #[arg(long, short, value_delimiter = ',')]
    queue: Vec<String>,
    /// Shell command run per job (`sh -c`): payload on stdin, result on stdout, non-zero exit
    /// fails the attempt. Without it the built-in squarer runs (`n` → `n * n = n²`).
    #[arg(long, conflicts_with = "forward")]
    exec: Option<String>,
    /// NATS subject each job is sent to as a request: any NATS service answering there (a
    /// queue group of responders) runs the jobs; its reply is the result (docs/workers.md,
    /// "Any NATS service as a worker").
    #[arg(long, value_name = "SUBJECT")]
    forward: Option<String>,
    /// With `--exec`: this exit status fails the job at once, without more attempts (other
    /// non-zero statuses are retried).
    #[arg(long)]
    non_retryable_exit_code: Option<i32>,
    /// Jobs run at once.
    #[arg(long)]
    concurrency: Option<u32>,
    /// Report progress for running jobs this often (e.g. `5s`), keeping long jobs alive (with
    /// `--forward`, only the service's own progress lengthens the wait for its reply).
    #[arg(long, value_parser = humantime::parse_duration)]
    progress_every: Option<Duration>,
    /// Worker id (default: random).
    #[arg(long)]
    id: Option<String>,
    /// Serve /metrics, /healthz and /readyz on this address (overrides
    /// `worker.metrics_listen`), e.g. 0.0.0.0:9101.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    log: LogArgs,
    /// Configuration file (TOML); `JETWORK_*` variables override it.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

// mimalloc: glibc malloc took a fifth of a jetwork process's time under load (perf).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// One thread: the worker's jobs run in child processes (`--exec`), behind a NATS service
// (`--forward`) or take microseconds (the squarer), so its own work is I/O and bookkeeping. On
// one thread a reply, a finished job and the loop that handles them wake each other without
// crossing threads (futex wake-ups were a fifth of a busy worker's time on two).
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    jetwork_shared::cli::exit_code(run(Args::parse()).await)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut settings =
        WorkerSettings::load(args.config.as_deref()).context("loading configuration")?;
    args.nats.apply(&mut settings.nats);
    args.log.apply(&mut settings.log);
    jetwork_shared::telemetry::init("info", settings.log.format);
    let w = &mut settings.worker;
    if !args.queue.is_empty() {
        w.queues = args.queue;
    }
    if let Some(c) = args.concurrency {
        w.concurrency = c;
    }
    if args.progress_every.is_some() {
        w.progress_every = args.progress_every;
    }
    if args.id.is_some() {
        w.id = args.id;
    }
    if args.exec.is_some() {
        w.exec = args.exec;
    }
    if args.forward.is_some() {
        w.forward = args.forward;
    }
    if args.metrics_listen.is_some() {
        w.metrics_listen = args.metrics_listen;
    }
    if args.non_retryable_exit_code.is_some() {
        w.non_retryable_exit_code = args.non_retryable_exit_code;
    }
    settings.validate().context("checking the configuration")?;
    let shutdown = jetwork_shared::shutdown::shutdown_signal();
    tokio::pin!(shutdown);
    if let Some(subject) = settings.worker.forward.clone() {
        // The service's requests and replies go over a connection of their own, so a slow or
        // large reply never holds up the worker's heartbeats and reports.
        let name = match &settings.worker.id {
            Some(id) => format!("jetwork-worker {id} forward"),
            None => "jetwork-worker forward".to_owned(),
        };
        let client = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            connected = connect::connect(&settings.nats, &name) => connected?,
        };
        let handler = Forward::new(client, &subject)?;
        return jetwork_worker::run(settings, handler, shutdown).await.context("worker failed");
    }
    match settings.worker.exec.clone() {
        Some(command) => {
            let handler = ShellCommand::new(command, settings.streams.max_result as usize)
                .non_retryable_exit_code(settings.worker.non_retryable_exit_code);
            jetwork_worker::run(settings, handler, shutdown).await
        }
        None => jetwork_worker::run(settings, jetwork_worker::square, shutdown).await,
    }
    .context("worker failed")
}
