//! `jetwork-frontend`: submit work, wait for results, show the master's status, run the demo.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use jetwork_frontend::dashboard::{self, AllowedHost, DashboardOptions};
use jetwork_frontend::demo::{self, DemoOptions};
use jetwork_frontend::submit_options::SubmitOptions;
use jetwork_frontend::{
    job_view, schedule_view, status_view, watch, Client, ClientError, FrontendSettings,
    ResultStatus, WorkResult,
};
use jetwork_shared::cli::{LogArgs, NatsArgs};
use jetwork_shared::jobs::{BulkRetry, JobState, JobsQuery};
use jetwork_shared::protocol::StatusQuery;
use jetwork_shared::schedules::{ScheduleAdd, ScheduleName};
use jetwork_shared::{QueueName, WorkId};

/// Talks to jetwork: submit work, fetch results, inspect the master.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    log: LogArgs,
    /// Configuration file (TOML); `JETWORK_*` variables override it.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Log at info level, and on failure print the full error report (with a backtrace when
    /// RUST_BACKTRACE is set); without it, only the error and its causes.
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Submit one work item and print its id (and, with --wait, its result).
    Submit {
        /// Queue to submit to (default: `frontend.queue`).
        #[arg(long, short)]
        queue: Option<String>,
        /// Work id (letters, digits, '-', '_'; at most 128). Default: a fresh UUID.
        #[arg(long)]
        id: Option<String>,
        /// Wait for the result and print it; exit status 1 if the work failed.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        #[command(flatten)]
        options: SubmitOptions,
        /// The payload, or `-` (the default) to read it from stdin.
        payload: Option<String>,
    },
    /// Print the stored result of a work id.
    Result {
        id: String,
        /// Its queue (default: search all queues).
        #[arg(long, short)]
        queue: Option<String>,
    },
    /// Show the leader's view: queues (pending, in progress, done) and workers.
    Status {
        /// Print the raw JSON report.
        #[arg(long)]
        json: bool,
        /// Workers to list (the report gives the total; at most 1000).
        #[arg(long, default_value_t = 100)]
        workers: u32,
        /// Workers to skip before listing (in id order).
        #[arg(long, default_value_t = 0)]
        workers_offset: u32,
        /// Queues to list (the report gives the total; at most 1000).
        #[arg(long, default_value_t = 100)]
        queues: u32,
        /// Queues to skip before listing (in name order).
        #[arg(long, default_value_t = 0)]
        queues_offset: u32,
        /// Refresh the view until interrupted, with rates per queue and recent failures.
        #[arg(long)]
        watch: bool,
        /// How often --watch refreshes.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// With --watch: stop after this many frames.
        #[arg(long, hide = true)]
        count: Option<u64>,
    },
    /// The sample's work producer: submit 1..=count steadily, log results, print a summary.
    Demo {
        #[arg(long, short)]
        queue: Option<String>,
        #[arg(long, default_value_t = 100)]
        count: u64,
        /// Pause between submissions.
        #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// How long to wait for outstanding results after the last submission.
        #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
        wait: Duration,
    },
    /// Create the streams (so `nats pub jetwork.submit.<queue>` works before anything else ran).
    Init,
    /// Show one job: its state, its attempts (worker, start, run time, outcome, reason).
    Job {
        id: String,
        /// Its queue, if finished (default: search all queues).
        #[arg(long, short)]
        queue: Option<String>,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// List jobs, newest first: in flight (ready, waiting, running), then finished ones.
    Jobs {
        /// Only this queue (default: every queue).
        #[arg(long, short)]
        queue: Option<String>,
        /// Only jobs in this state: ready, waiting, running, completed, failed, cancelled.
        #[arg(long, short)]
        state: Option<String>,
        /// At most this many (at most 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job the master holds (ready, waiting out a back-off, or running: its worker
    /// is told to stop). Needs the operator's permissions.
    Cancel {
        id: String,
        /// Why (stored as the job's reason).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Run a failed or cancelled job again under its id; or, with `--failed` or
    /// `--cancelled` and no id, every such job of `--queue` (newest outcome first, at most
    /// `--limit`; a job already running again is skipped). Needs the operator's permissions.
    Retry {
        #[arg(required_unless_present_any = ["failed", "cancelled"])]
        id: Option<String>,
        /// Its queue (default: search all queues); required with `--failed`/`--cancelled`.
        #[arg(long, short, required_if_eq_any = [("failed", "true"), ("cancelled", "true")])]
        queue: Option<String>,
        /// Every failed job of the queue (the dead-letter replay).
        #[arg(long, conflicts_with_all = ["id", "cancelled"])]
        failed: bool,
        /// Every cancelled job of the queue.
        #[arg(long, conflicts_with = "id")]
        cancelled: bool,
        /// Only jobs whose outcome was stored this recently (`30m`, `1h`, `2d`).
        #[arg(long, value_parser = humantime::parse_duration, requires = "queue")]
        since: Option<Duration>,
        /// At most this many (at most 10000).
        #[arg(long, default_value_t = BulkRetry::DEFAULT_LIMIT, requires = "queue")]
        limit: u32,
    },
    /// Cancel all pending work of a queue: the jobs held ready or waiting, and every
    /// submission still unread in its backlog (stored as cancelled as it is read). Running
    /// jobs finish; later submissions run as usual. Operator only.
    Purge { queue: String },
    /// Stop handing out a queue's work (submissions are still accepted). Operator only.
    Pause { queue: String },
    /// Hand out a paused queue's work again. Operator only.
    Resume { queue: String },
    /// Recurring schedules: each tick submits the payload to the queue once, under the work id
    /// `<name>-<YYYYMMDDTHHMMSSZ>` (UTC). Adding and removing need the operator's permissions.
    #[command(subcommand)]
    Schedule(ScheduleCmd),
    /// Serve the web dashboard: queues, throughput, workers, failures, one job's page.
    Dashboard {
        /// Address to listen on (a port of 0 picks a free one; the address is logged).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// How often the leader's status is sampled (and pages refresh).
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        refresh: Duration,
        /// How far back the charts go (the dashboard keeps it: 360 points, 10 s each for 1h).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        history: Duration,
        /// Offer the operator's actions (retry, cancel, pause); read-only without it.
        #[arg(long)]
        allow_actions: bool,
        /// Also answer for this name (`jobs.example.com`, any port; `proxy.internal:8443`,
        /// that port): a reverse proxy's, or the machine's when listening on 0.0.0.0.
        /// Repeatable; adds to `frontend.dashboard_allowed_hosts`. The listen address (and
        /// localhost, on loopback or a wildcard address) is always allowed.
        #[arg(long = "allowed-host", value_name = "HOST[:PORT]")]
        allowed_hosts: Vec<AllowedHost>,
        /// Most connections served at once; beyond it a new one is answered 503 and closed
        /// (default: `frontend.dashboard_max_connections`, 256).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        max_connections: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
enum ScheduleCmd {
    /// Add a schedule (a name in use is refused: remove it first).
    Add {
        /// Its name (letters, digits, '-', '_'; at most 64; not `seq`).
        name: String,
        /// Queue each tick is submitted to (default: `frontend.queue`).
        #[arg(long, short)]
        queue: Option<String>,
        /// Tick at every multiple of this interval since the epoch (UTC): 30s, 5m, 1h.
        #[arg(long, conflicts_with = "cron", required_unless_present = "cron")]
        every: Option<String>,
        /// Tick by a five-field cron expression, in UTC: '0 3 * * *'.
        #[arg(long)]
        cron: Option<String>,
        /// The payload of every tick (text), or `-` (the default) to read it from stdin.
        payload: Option<String>,
    },
    /// List the schedules: cadence, next and last tick, ticks fired and missed.
    Ls {
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a schedule (ticks it already fired still run).
    Rm { name: String },
}

// mimalloc: glibc malloc took a fifth of a jetwork process's time under load (perf).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let verbose = args.verbose;
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // `{:?}` is anyhow's report, with a backtrace when RUST_BACKTRACE is set: only
            // when asked for. Otherwise the error and its causes on one line.
            if verbose {
                eprintln!("Error: {e:?}");
            } else {
                eprintln!("Error: {e:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    // Long-running commands log what they do; the others only warnings, unless `-v`.
    let informative =
        args.verbose || matches!(args.command, Cmd::Demo { .. } | Cmd::Dashboard { .. });
    let mut settings =
        FrontendSettings::load(args.config.as_deref()).context("loading configuration")?;
    args.nats.apply(&mut settings.nats);
    args.log.apply(&mut settings.log);
    jetwork_shared::telemetry::init(if informative { "info" } else { "warn" }, settings.log.format);
    settings.nats.validate().context("checking configuration")?;
    let default_queue = settings.frontend.queue.clone();
    let queue_or_default = |q: Option<String>| -> anyhow::Result<QueueName> {
        QueueName::parse(q.as_deref().unwrap_or(&default_queue)).context("invalid queue")
    };
    let client = Client::connect(settings.clone()).await.context("connecting")?;
    match args.command {
        Cmd::Submit { queue, id, wait, timeout, options, payload } => {
            let headers = options.headers().map_err(|e| anyhow::anyhow!(e))?;
            let queue = queue_or_default(queue)?;
            let id =
                id.map(|id| WorkId::parse_submitted(&id)).transpose().context("invalid work id")?;
            let payload = match payload.as_deref() {
                None | Some("-") => {
                    let mut buf = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut buf)
                        .context("reading the payload from stdin")?;
                    Bytes::from(buf)
                }
                Some(text) => Bytes::from(text.to_owned()),
            };
            let submitted = client.submit_with(&queue, id, payload, &headers).await?;
            println!("{}", submitted.work_id);
            if submitted.duplicate {
                eprintln!("note: {} was already submitted; not queued again", submitted.work_id);
            }
            if wait {
                let result = client.wait_for(&submitted, timeout).await?;
                print_outcome(&result)?;
            }
        }
        Cmd::Result { id, queue } => {
            let id = WorkId::parse(&id).context("invalid work id")?;
            let queue = queue.map(|q| QueueName::parse(&q)).transpose().context("invalid queue")?;
            match client.result(queue.as_ref(), &id).await? {
                Some(result) => print_outcome(&result)?,
                None => bail!("no stored result for {id} (not finished yet, or older than the results retention)"),
            }
        }
        Cmd::Status {
            json,
            workers,
            workers_offset,
            queues,
            queues_offset,
            watch,
            interval,
            count,
        } => {
            let query = StatusQuery {
                workers_limit: workers,
                workers_offset,
                queues_limit: queues,
                queues_offset,
            };
            if watch {
                return Ok(watch::run(&client, query, interval, count).await?);
            }
            let report = match client.status_page(query).await {
                Ok(report) => report,
                Err(ClientError::NoMaster(why)) => {
                    let lease = client.lease().await;
                    bail!("{}", watch::no_leader("status", &why, lease, now_utc()).trim_end())
                }
                Err(e) => return Err(e.into()),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", status_view::render(&report));
            }
        }
        Cmd::Demo { queue, count, interval, wait } => {
            let options = DemoOptions { queue: queue_or_default(queue)?, count, interval, wait };
            let summary = demo::run(&client, options).await?;
            println!(
                "summary: submitted={} completed={} failed={} lost={} duplicate_results={} not_accepted={}",
                summary.submitted, summary.completed, summary.failed, summary.lost, summary.duplicate_results, summary.not_accepted
            );
            if summary.lost > 0 || summary.duplicate_results > 0 {
                bail!("the demo lost or duplicated results");
            }
        }
        Cmd::Init => {
            client.init().await?;
            println!("streams ready");
        }
        Cmd::Job { id, queue, json } => {
            let id = WorkId::parse(&id).context("invalid work id")?;
            let queue = queue.map(|q| QueueName::parse(&q)).transpose().context("invalid queue")?;
            let job = client.job(&id, queue.as_ref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&job)?);
            } else {
                print!("{}", job_view::render(&job, jetwork_shared::clock::now_ms()));
            }
        }
        Cmd::Jobs { queue, state, limit, json } => {
            let queue = queue.map(|q| QueueName::parse(&q)).transpose().context("invalid queue")?;
            let state = state
                .map(|s| serde_json::from_value::<JobState>(serde_json::Value::String(s)))
                .transpose()
                .context("invalid state (ready, waiting, running, completed, failed, cancelled)")?;
            let page = client.jobs(&JobsQuery { queue, state, limit: Some(limit) }).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                print!("{}", job_view::render_list(&page, jetwork_shared::clock::now_ms()));
            }
        }
        Cmd::Cancel { id, reason } => {
            let id = WorkId::parse(&id).context("invalid work id")?;
            println!("{}", client.cancel(&id, reason).await?.message);
        }
        Cmd::Retry { id, queue, failed: _, cancelled, since, limit } => {
            let queue = queue.map(|q| QueueName::parse(&q)).transpose().context("invalid queue")?;
            match (id, queue) {
                (Some(id), queue) => {
                    let id = WorkId::parse(&id).context("invalid work id")?;
                    println!("{}", client.retry(&id, queue.as_ref()).await?.message);
                }
                (None, Some(queue)) => {
                    let state = if cancelled { JobState::Cancelled } else { JobState::Failed };
                    // The outcome's stored time is the server's clock; this machine's is
                    // taken to agree with it.
                    let since_ms = since.map(|ago| {
                        let ago = u64::try_from(ago.as_millis()).unwrap_or(u64::MAX);
                        jetwork_shared::clock::now_ms().saturating_sub(ago)
                    });
                    let request =
                        BulkRetry { queue, state: Some(state), since_ms, limit: Some(limit) };
                    let reply = client.retry_all(&request).await?;
                    println!("{}", reply.message);
                    for error in &reply.errors {
                        println!("  {error}");
                    }
                }
                (None, None) => bail!("retry needs a work id, or --queue with --failed"),
            }
        }
        Cmd::Purge { queue } => {
            let queue = QueueName::parse(&queue).context("invalid queue")?;
            println!("{}", client.purge(&queue).await?.message);
        }
        Cmd::Pause { queue } => {
            let queue = QueueName::parse(&queue).context("invalid queue")?;
            println!("{}", client.pause(&queue, true).await?.message);
        }
        Cmd::Resume { queue } => {
            let queue = QueueName::parse(&queue).context("invalid queue")?;
            println!("{}", client.pause(&queue, false).await?.message);
        }
        Cmd::Schedule(ScheduleCmd::Add { name, queue, every, cron, payload }) => {
            let name = ScheduleName::parse(&name).context("invalid schedule name")?;
            let queue = queue_or_default(queue)?;
            let payload = match payload.as_deref() {
                None | Some("-") => {
                    let mut buf = String::new();
                    std::io::stdin()
                        .read_to_string(&mut buf)
                        .context("reading the payload from stdin (text)")?;
                    buf
                }
                Some(text) => text.to_owned(),
            };
            let add = ScheduleAdd { name, queue, every, cron, payload };
            println!("{}", client.schedule_add(&add).await?.message);
        }
        Cmd::Schedule(ScheduleCmd::Ls { json }) => {
            let page = client.schedules().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                print!("{}", schedule_view::render(&page));
            }
        }
        Cmd::Schedule(ScheduleCmd::Rm { name }) => {
            let name = ScheduleName::parse(&name).context("invalid schedule name")?;
            println!("{}", client.schedule_rm(&name).await?.message);
        }
        Cmd::Dashboard {
            listen,
            refresh,
            history,
            allow_actions,
            allowed_hosts,
            max_connections,
        } => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let addr = listener.local_addr()?;
            // The address on stdout, so a script (or a test) that asked for port 0 finds it.
            println!("dashboard on http://{addr}/");
            let mut allowed = settings.frontend.dashboard_allowed_hosts()?;
            allowed.extend(allowed_hosts);
            let max_connections =
                max_connections.map_or(settings.frontend.dashboard_max_connections, |n| n as usize);
            let options = DashboardOptions {
                refresh,
                history,
                allow_actions,
                allowed_hosts: allowed,
                max_connections,
            };
            tokio::select! {
                served = dashboard::serve(client, listener, options) => served?,
                () = jetwork_shared::shutdown::shutdown_signal() => {}
            }
        }
    }
    Ok(())
}

/// Prints a completed job's result; a failed or cancelled one is an error with its reason.
fn print_outcome(result: &WorkResult) -> anyhow::Result<()> {
    let (id, attempt, reason) = (&result.work_id, result.attempt, result.reason.as_deref());
    match result.status {
        ResultStatus::Completed => print_result(&result.payload),
        ResultStatus::Failed => {
            bail!("work {id} failed after {attempt} attempt(s): {}", reason.unwrap_or_default())
        }
        ResultStatus::Cancelled => bail!("work {id} was cancelled: {}", reason.unwrap_or_default()),
    }
}

fn now_utc() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn print_result(payload: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(payload)?;
    if !payload.ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cmd, clap::Error> {
        let all = std::iter::once("jetwork-frontend").chain(args.iter().copied());
        Args::try_parse_from(all).map(|a| a.command)
    }

    #[test]
    fn retry_takes_an_id_or_a_queue_with_a_state() {
        assert!(matches!(parse(&["retry", "order-42"]), Ok(Cmd::Retry { id: Some(_), .. })));
        let bulk = parse(&["retry", "--queue", "emails", "--failed", "--since", "1h"]);
        match bulk {
            Ok(Cmd::Retry {
                id: None,
                queue: Some(q),
                failed: true,
                since: Some(s),
                limit,
                ..
            }) => {
                assert_eq!((q.as_str(), s, limit), ("emails", Duration::from_secs(3600), 100));
            }
            other => panic!("{other:?}"),
        }
        let cancelled = parse(&["retry", "-q", "emails", "--cancelled", "--limit", "5"]);
        assert!(matches!(cancelled, Ok(Cmd::Retry { cancelled: true, limit: 5, .. })));
        // Neither an id nor a state; a state without a queue; both states; an id and a state.
        for wrong in [
            &["retry"][..],
            &["retry", "--failed"],
            &["retry", "-q", "emails", "--failed", "--cancelled"],
            &["retry", "order-42", "--failed", "-q", "emails"],
        ] {
            assert!(parse(wrong).is_err(), "{wrong:?} was accepted");
        }
        assert!(matches!(parse(&["purge", "emails"]), Ok(Cmd::Purge { .. })));
        assert!(parse(&["purge"]).is_err());
    }

    #[test]
    fn the_dashboard_takes_allowed_hosts() {
        let names = ["dashboard", "--allowed-host", "jobs.example.com", "--allowed-host", "p:8443"];
        match parse(&names) {
            Ok(Cmd::Dashboard { allowed_hosts, .. }) => {
                let shown: Vec<String> = allowed_hosts.iter().map(|h| h.to_string()).collect();
                assert_eq!(shown, ["jobs.example.com", "p:8443"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["dashboard", "--allowed-host", "http://jobs.example.com/"]).is_err());
    }
}
