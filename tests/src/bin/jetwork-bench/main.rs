//! `jetwork-bench`: jetwork measured side by side with a raw JetStream work queue (the
//! baseline) in one run, each case on its own fresh nats-server (file store, loopback).
//!
//! Phases (`--phases`, all by default): `throughput` (jobs/s at 1 and 4 worker processes ×
//! concurrency 1 and 64), `latency` (submit→start and submit→result percentiles at fixed
//! rates), `failover` (`kill -9` and SIGTERM of the leader under load: time until dispatching
//! resumes, jobs lost), `backlog` (master memory with a large backlog, draining it, takeover
//! time with that history versus none), `lifecycle` (jetwork alone: a rate-limited queue's
//! achieved start rate; a large backlog of delayed jobs, all held at once, falling due at a
//! pace the workers sustain — master memory, lateness once due —; the same number all due at
//! once — how fast due work is released —; and a priority-9 job jumping a backlog, within the
//! read-ahead and beyond it), `idle` (what 10,000 registered, heartbeating, idle workers cost
//! the leader's CPU). Prints a Markdown table and writes JSON lines.
//!
//! Opt-in (`--phases python`): `python`, jetwork with workers on the Python library next to
//! the raw JetStream consumer a Python user would write and to the Rust workers.
//!
//! Opt-in (`--phases cluster`): `cluster`, the same comparison on a 3-node nats-server cluster
//! with every stream replicated three times (throughput, latency), and issue 21's fault table
//! measured there (the dispatch pause, jobs lost and results delivered twice per node or
//! master fault).
//!
//! Opt-in, the cost as work grows: `workers` (10 → 1,000 → 10,000 registered workers spoken
//! by hand from this process: jobs/s, the master's CPU per job, the status reply's size),
//! `queues` (1 → 1,000 queues with the work spread evenly: jobs/s, the master's memory, the
//! consumers on the submit stream), `payloads` (100 B, 16 KiB, 256 KiB payloads, jetwork and
//! the baseline side by side: jobs/s and MB/s).
//!
//! `--quick` shrinks every phase to a smoke size (CI's run: seconds per phase, figures
//! meaningless); flags given explicitly still win.
//!
//! ```sh
//! scripts/bench                      # builds in release mode and runs every phase
//! scripts/bench --phases throughput --runs 3
//! scripts/bench --phases lifecycle --lifecycle-rate 200 --delayed 100000 --delayed-rate 5000
//! scripts/bench --phases lifecycle --lifecycle-cases delayed,burst --runs 1
//! scripts/bench --phases cluster --runs 1
//! scripts/bench --phases python --runs 3
//! scripts/bench --phases workers,queues,payloads --runs 1
//! scripts/bench --phases workers --worker-counts 10,1000 --worker-jobs 20000
//! scripts/bench --quick --phases throughput,workers
//! ```
//!
//! The same binary is also the worker process of both systems (`worker`, `baseline-worker`):
//! a tiny job that answers with its submit and start times, so results carry the latencies.

mod backlog;
mod baseline;
mod cluster;
mod cpu;
mod deployment;
mod failover;
mod fleet;
mod idle;
mod latency;
mod lifecycle;
mod load;
mod payloads;
mod python_fleet;
mod queues;
mod replicated;
mod report;
mod samples;
mod stamp;
mod throughput;
mod workers;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// Benchmarks jetwork against a raw JetStream work queue.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    #[command(subcommand)]
    mode: Option<Mode>,
    #[command(flatten)]
    options: Options,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Internal: a jetwork worker process running the benchmark job.
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        id: String,
        #[arg(long)]
        concurrency: u32,
        /// How long each job takes after stamping its start (0: it answers at once).
        #[arg(long, default_value_t = 0)]
        job_ms: u64,
    },
    /// Internal: a baseline worker process.
    #[command(hide = true)]
    BaselineWorker {
        #[arg(long)]
        id: String,
        #[arg(long)]
        concurrency: usize,
    },
}

/// What to run and how much.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Phases to run, comma separated: throughput, latency, failover, backlog, lifecycle, idle,
    /// and (only when named) cluster, python, workers, queues and payloads.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "throughput,latency,failover,backlog,lifecycle,idle"
    )]
    phases: Vec<String>,
    /// Jobs per run in the python phase.
    #[arg(long, default_value_t = 50_000)]
    python_jobs: u64,
    /// Jobs per throughput run with concurrency 64 (5–10 s of work on 2 cores; the default
    /// phases then run in about 8 minutes there).
    #[arg(long, default_value_t = 100_000)]
    jobs: u64,
    /// Jobs per throughput run with concurrency 1 (each job waits for the previous one).
    #[arg(long, default_value_t = 5_000)]
    serial_jobs: u64,
    /// Runs per throughput and latency case; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Submissions awaiting their acknowledgement at once, when submitting flat out.
    #[arg(long, default_value_t = 4096)]
    window: usize,
    /// Fixed submission rates for the latency phase (jobs/s), comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    rates: Vec<u64>,
    /// How long each latency run lasts (after a 1 s warm-up).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    latency_duration: Duration,
    /// Worker processes in the latency phase.
    #[arg(long, default_value_t = 2)]
    latency_workers: u32,
    /// Concurrency of each worker in the latency phase.
    #[arg(long, default_value_t = 64)]
    latency_concurrency: u32,
    /// Submission rate during the failover phase.
    #[arg(long, default_value_t = 1000)]
    failover_rate: u64,
    /// Jobs in the backlog phase.
    #[arg(long, default_value_t = 1_000_000)]
    backlog: u64,
    /// Lifecycle phase: the rate-limited queue's limit (starts/s); 5 × this many jobs are
    /// submitted at once.
    #[arg(long, default_value_t = 200)]
    lifecycle_rate: u32,
    /// Lifecycle phase: jobs submitted with a delay (at most `--backlog`), paced at
    /// `--delayed-rate`, all held at once before the first falls due.
    #[arg(long, default_value_t = 100_000)]
    delayed: u64,
    /// Lifecycle phase: how many delayed jobs are submitted a second, so they fall due at the
    /// same pace: a rate the workers sustain, so lateness measures the scheduler, not a queue.
    #[arg(long, default_value_t = 5_000)]
    delayed_rate: u64,
    /// Lifecycle phase: the delayed jobs' delay. Default: the time their submission takes at
    /// `--delayed-rate`, plus 3 s, so all are held before the first is due (a shorter one is
    /// lengthened to that).
    #[arg(long, value_parser = humantime::parse_duration)]
    delay: Option<Duration>,
    /// Lifecycle phase: jobs all due at the same instant (`Jetwork-Not-Before`), at most
    /// `--backlog`: how fast the master releases due work when more falls due than the
    /// workers can take (no target).
    #[arg(long, default_value_t = 100_000)]
    burst: u64,
    /// Lifecycle phase: unread normal jobs ahead of the priority-9 job (at most `--backlog`).
    #[arg(long, default_value_t = 100_000)]
    priority_backlog: u64,
    /// Idle phase: registered workers that run nothing, heartbeating every 10 s.
    #[arg(long, default_value_t = 10_000)]
    idle_workers: u32,
    /// Idle phase: how long the leader's CPU is measured, with none and with all registered.
    /// Two heartbeats of every worker fall in the default window.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "20s")]
    idle_window: Duration,
    /// Cluster phase: jobs per throughput run (2 worker processes × concurrency 64).
    #[arg(long, default_value_t = 50_000)]
    cluster_jobs: u64,
    /// Cluster phase: the latency run's rate (jobs/s).
    #[arg(long, default_value_t = 1000)]
    cluster_rate: u64,
    /// Cluster phase: the load during each fault (jobs/s; the issue's 200).
    #[arg(long, default_value_t = 200)]
    cluster_fault_rate: u64,
    /// Cluster phase: the masters' lease TTL in the fault runs (10 s on a cluster).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    cluster_lease_ttl: Duration,
    /// Cluster phase: how long the journal leader's node stays frozen.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "45s")]
    cluster_freeze: Duration,
    /// Cluster phase: how long two of the three nodes stay down.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    cluster_down: Duration,
    /// The masters' lease TTL (the failover phase waits for it after `kill -9`).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    lease_ttl: Duration,
    /// Throughput phase: run only this system (`jetwork` or `baseline`), for profiling.
    #[arg(long)]
    only: Option<String>,
    /// Throughput phase: run only the layouts with this concurrency, for profiling.
    #[arg(long)]
    only_concurrency: Option<u32>,
    /// Lifecycle phase: cases to run, comma separated: rate, delayed, burst, priority.
    #[arg(long, value_delimiter = ',', default_value = "rate,delayed,burst,priority")]
    lifecycle_cases: Vec<String>,
    /// Workers phase: registered workers (capacity 4 each) at each step, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "10,1000,10000")]
    worker_counts: Vec<u32>,
    /// Workers phase: jobs per step.
    #[arg(long, default_value_t = 50_000)]
    worker_jobs: u64,
    /// Queues phase: queues at each step, comma separated (the work spread evenly over them).
    #[arg(long, value_delimiter = ',', default_value = "1,1000")]
    queue_counts: Vec<u32>,
    /// Queues phase: jobs per step.
    #[arg(long, default_value_t = 50_000)]
    queue_jobs: u64,
    /// Queues phase: hand-spoken workers (capacity 16 each) sharing the queues out; each
    /// serves at most 64 queues (the master's default `max_queues_per_worker`).
    #[arg(long, default_value_t = 16)]
    queue_workers: u32,
    /// Payloads phase: payload sizes, comma separated (`100`, `16KiB`, `1MiB`).
    #[arg(long, value_delimiter = ',', value_parser = payloads::parse_size, default_value = "100,16KiB,256KiB")]
    payload_sizes: Vec<u64>,
    /// Payloads phase: jobs per run at each size (fewer if they would exceed
    /// `--payload-bytes`).
    #[arg(long, default_value_t = 50_000)]
    payload_jobs: u64,
    /// Payloads phase: the most payload bytes one run submits.
    #[arg(long, value_parser = payloads::parse_size, default_value = "512MiB")]
    payload_bytes: u64,
    /// Every phase at a smoke size, seconds each (CI's run; figures meaningless): 1 run, 3,000
    /// jobs (200 serial), rate 500/s for 1 s, a 5,000 backlog, 300 idle workers for 2 s, 10 and
    /// 200 workers, 1 and 64 queues over 4 workers, 2,000 jobs per growth step, payloads of at
    /// most 1,000 jobs and 32 MiB. Options given explicitly still win.
    #[arg(long)]
    quick: bool,
    /// The `jetwork-master` binary to run instead of this build's (for before/after
    /// comparisons of a change in the master).
    #[arg(long)]
    master_bin: Option<PathBuf>,
    /// Where to write the JSON lines.
    #[arg(long, default_value = "target/jetwork-bench.jsonl")]
    out: PathBuf,
}

/// A progress bar of `len` steps.
pub fn bar(len: u64, label: &str) -> ProgressBar {
    let style =
        ProgressStyle::with_template("{prefix:48} [{bar:30}] {pos:>8}/{len:8} {elapsed:>4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    ProgressBar::new(len).with_style(style).with_prefix(label.to_owned())
}

// mimalloc: glibc malloc took a fifth of a jetwork process's time under load (perf).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Worker processes, jetwork's and the baseline's alike, run on one thread as the shipped
    // `jetwork-worker` does (see its `main`); the driver keeps a thread per core.
    let runtime = match args.mode {
        Some(_) => tokio::runtime::Builder::new_current_thread().enable_all().build()?,
        None => tokio::runtime::Builder::new_multi_thread().enable_all().build()?,
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    match args.mode {
        Some(Mode::Worker { id, concurrency, job_ms }) => {
            jetwork_worker_process(id, concurrency, Duration::from_millis(job_ms)).await
        }
        Some(Mode::BaselineWorker { id, concurrency }) => {
            let url = std::env::var("NATS_URL").context("NATS_URL")?;
            // Comma separated on a cluster.
            let servers = url
                .split(',')
                .map(str::parse::<async_nats::ServerAddr>)
                .collect::<Result<Vec<_>, _>>()?;
            let client = async_nats::ConnectOptions::new().name(id).connect(servers).await?;
            baseline::worker(client, concurrency).await
        }
        None => {
            let mut options = args.options;
            if options.quick {
                let matches = <Args as clap::CommandFactory>::command().get_matches();
                quick(&mut options, &matches)?;
            }
            benchmark(options).await
        }
    }
}

async fn jetwork_worker_process(
    id: String,
    concurrency: u32,
    job_time: Duration,
) -> anyhow::Result<()> {
    jetwork_shared::telemetry::init("warn", jetwork_shared::config::LogFormat::Text);
    let mut settings = jetwork_worker::WorkerSettings::load(None)?;
    if let Ok(url) = std::env::var("NATS_URL") {
        settings.nats.url = url;
    }
    settings.worker.id = Some(id);
    settings.worker.queues = vec![deployment::BENCH_QUEUE.to_owned()];
    settings.worker.concurrency = concurrency;
    let handler = move |job: jetwork_worker::Job| async move {
        let result = stamp::run(&job.payload);
        if !job_time.is_zero() {
            tokio::time::sleep(job_time).await;
        }
        Ok(result?)
    };
    jetwork_worker::run(settings, handler, jetwork_shared::shutdown::shutdown_signal()).await?;
    Ok(())
}

async fn benchmark(o: Options) -> anyhow::Result<()> {
    const PHASES: [&str; 11] = [
        "throughput",
        "latency",
        "failover",
        "backlog",
        "lifecycle",
        "idle",
        "cluster",
        "python",
        "workers",
        "queues",
        "payloads",
    ];
    for phase in &o.phases {
        if !PHASES.contains(&phase.as_str()) {
            anyhow::bail!("unknown phase {phase:?} ({})", PHASES.join(", "));
        }
    }
    for case in &o.lifecycle_cases {
        if !lifecycle::CASES.contains(&case.as_str()) {
            anyhow::bail!("unknown lifecycle case {case:?} ({})", lifecycle::CASES.join(", "));
        }
    }
    if o.quick {
        // A smoke run's data is small; so is a CI machine's disk.
        cluster::cap_streams(256 << 20);
    }
    let header = machine(&o);
    println!("{}", serde_json::to_string_pretty(&header)?);
    // Build (or find up to date) the release binaries before any clock starts.
    jetwork_tests::binaries::master();
    if let Some(binary) = &o.master_bin {
        anyhow::ensure!(binary.is_file(), "--master-bin {}: no such file", binary.display());
        cluster::use_master_binary(binary.clone());
    }
    let progress = MultiProgress::new();
    let mut report = report::Report::default();
    let wants = |p: &str| o.phases.iter().any(|x| x == p);
    if wants("throughput") {
        throughput::run(&o, &mut report, &progress).await?;
    }
    if wants("latency") {
        latency::run(&o, &mut report, &progress).await?;
    }
    if wants("failover") {
        failover::run(&o, &mut report, &progress).await?;
    }
    if wants("backlog") {
        backlog::run(&o, &mut report, &progress).await?;
    }
    if wants("lifecycle") {
        lifecycle::run(&o, &mut report, &progress).await?;
    }
    if wants("idle") {
        idle::run(&o, &mut report, &progress).await?;
    }
    if wants("cluster") {
        replicated::run(&o, &mut report, &progress).await?;
    }
    if wants("python") {
        python_fleet::run(&o, &mut report, &progress).await?;
    }
    if wants("workers") {
        workers::run(&o, &mut report, &progress).await?;
    }
    if wants("queues") {
        queues::run(&o, &mut report, &progress).await?;
    }
    if wants("payloads") {
        payloads::run(&o, &mut report, &progress).await?;
    }
    progress.clear()?;
    println!("\n{}", report.table());
    if let Some(dir) = o.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    report.write_jsonl(&o.out, &header)?;
    println!("JSON lines: {}", o.out.display());
    Ok(())
}

/// `--quick`: each option and its smoke-size value, as command-line arguments.
const QUICK: [(&str, &str); 18] = [
    ("runs", "1"),
    ("jobs", "3000"),
    ("serial_jobs", "200"),
    ("rates", "500"),
    ("latency_duration", "1s"),
    ("backlog", "5000"),
    ("idle_workers", "300"),
    ("idle_window", "2s"),
    ("python_jobs", "2000"),
    ("cluster_jobs", "3000"),
    ("worker_counts", "10,200"),
    ("worker_jobs", "2000"),
    ("queue_counts", "1,64"),
    ("queue_jobs", "2000"),
    ("queue_workers", "4"),
    ("payload_sizes", "100,16KiB,256KiB"),
    ("payload_jobs", "1000"),
    ("payload_bytes", "32MiB"),
];

/// Applies [`QUICK`] to every option not given on the command line.
fn quick(o: &mut Options, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    let small = quick_options()?;
    let explicit =
        |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    macro_rules! take {
        ($($field:ident),*) => {
            $(if !explicit(stringify!($field)) { o.$field = small.$field.clone(); })*
        };
    }
    take!(
        runs,
        jobs,
        serial_jobs,
        rates,
        latency_duration,
        backlog,
        idle_workers,
        idle_window,
        python_jobs,
        cluster_jobs,
        worker_counts,
        worker_jobs,
        queue_counts,
        queue_jobs,
        queue_workers,
        payload_sizes,
        payload_jobs,
        payload_bytes
    );
    Ok(())
}

/// The options with every [`QUICK`] value.
fn quick_options() -> anyhow::Result<Options> {
    let args = QUICK.iter().map(|(id, value)| format!("--{}={value}", id.replace('_', "-")));
    Ok(Args::try_parse_from(std::iter::once("jetwork-bench".to_owned()).chain(args))?.options)
}

/// What the figures were measured on.
fn machine(o: &Options) -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|m| m.trim().to_owned())
        .unwrap_or_default();
    let nats = std::process::Command::new("nats-server")
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default();
    serde_json::json!({
        "benchmark": "jetwork-bench",
        "unix_time": stamp::now_ns() / 1_000_000_000,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": model,
        "nats_server": nats,
        "store": "file, loopback; R1 (one server), R3 (3-node cluster) in the cluster phase",
        "options": format!("{o:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quick_values_parse() {
        let o = quick_options().expect("every QUICK value parses");
        assert_eq!(o.jobs, 3000);
        assert_eq!(o.worker_counts, vec![10, 200]);
        assert_eq!(o.payload_sizes, vec![100, 16 * 1024, 256 * 1024]);
    }
}
