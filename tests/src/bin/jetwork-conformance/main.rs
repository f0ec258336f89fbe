//! `jetwork-conformance`: plays a fake master against any worker implementation and drives it
//! through the protocol's hard cases (stale and forged epochs, unconfirmed elections, revokes,
//! superseded and finished verdicts, lost verdicts and re-sends, a leader change mid-report,
//! capacity, shutdown), saying which it gets wrong.
//!
//! ```sh
//! jetwork-conformance --worker-cmd 'python3 my_worker.py'
//! jetwork-conformance --worker-cmd 'jetwork-worker --queue conformance --progress-every 1s --exec "$PWD/echo.sh"' --case revoke-stops-the-attempt
//! jetwork-conformance --list
//! ```
//!
//! The worker command runs under `sh -c`, once per case, with `NATS_URL` set to the server
//! the kit uses (its own nats-server on a free port, unless `--nats` names one where it may
//! subscribe to `jetwork.master.>` and write the `jetwork-lease` bucket: not a production
//! server, the kit takes the lease). What the worker must be set up to do:
//! - serve one queue of any name, at any capacity (2 to 8 exercises the slot accounting best);
//! - **the handler contract**: a job's payload is ASCII `<seconds> <tag>`; the handler waits
//!   that many seconds (a decimal) and returns the payload itself as the result;
//! - send progress for a job running longer than its timeout (at least every second or two);
//! - keep `register_interval` at its default (10 s) or above 2 × `--react-within`, and
//!   `resend_interval` below `--resend-within` (1 s is quick).

mod cases;
mod fake_master;
mod ledger;
mod worker_process;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use clap::Parser;
use jetwork_shared::config::StreamsConfig;
use jetwork_shared::topology;

use crate::cases::{Case, Timing};
use crate::fake_master::FakeMaster;

/// The epoch each case starts at (its lease value); the cases also use the ones around it.
const FIRST_EPOCH: u64 = 5;
/// How long a fresh worker process may take to register.
const REGISTER_WITHIN: Duration = Duration::from_secs(30);

/// Plays a fake jetwork master against a worker and checks the protocol's hard cases.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// The worker to test, run with `sh -c` once per case (`NATS_URL` is set for it).
    #[arg(long, required_unless_present = "list")]
    worker_cmd: Option<String>,
    /// A NATS server to use instead of starting one (it must have JetStream).
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    /// Run only these cases (repeat or comma-separate; `--list` names them).
    #[arg(long, value_delimiter = ',')]
    case: Vec<String>,
    /// List the cases and what each requires, then exit.
    #[arg(long)]
    list: bool,
    /// The longest the worker may take to send an unanswered outcome again.
    #[arg(long, default_value = "8s", value_parser = humantime::parse_duration)]
    resend_within: Duration,
    /// The longest the worker may take for what the protocol says to do at once.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    react_within: Duration,
    /// Where the worker's output goes, one file per case (default: a new temporary directory).
    #[arg(long, value_name = "DIR")]
    logs: Option<PathBuf>,
}

/// Fails with exit code 1 when a case failed, after its own server (if any) is stopped:
/// returning, not `process::exit`, lets it go with its temporary store.
#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    if args.list {
        for case in Case::ALL {
            println!("{:<42} {}", case.name(), case.rule());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let cases = chosen(&args.case)?;
    let command = args.worker_cmd.clone().context("--worker-cmd is required")?;
    let logs = match &args.logs {
        Some(dir) => dir.clone(),
        None => tempfile::Builder::new().prefix("jetwork-conformance-").tempdir()?.keep(),
    };
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let own_server = match &args.nats {
        Some(_) => None,
        None => Some(jetwork_tests::NatsServer::start().context("starting nats-server")?),
    };
    let url = match (&args.nats, &own_server) {
        (Some(url), _) => url.clone(),
        (None, Some(server)) => server.url(),
        (None, None) => unreachable!("a server was started"),
    };
    let client = async_nats::connect(&url).await.with_context(|| format!("connecting to {url}"))?;
    let js = jetstream::new(client.clone());
    let lease =
        topology::ensure_lease_bucket(&js, &StreamsConfig::default(), Duration::from_secs(3600))
            .await
            .context("creating the lease bucket")?;
    let timing = Timing { resend_within: args.resend_within, react_within: args.react_within };

    let mut failed = 0;
    for case in &cases {
        let started = Instant::now();
        let log = logs.join(format!("{}.log", case.name()));
        let outcome = async {
            let mut master =
                FakeMaster::start(client.clone(), lease.clone(), &command, &url, &log, FIRST_EPOCH)
                    .await?;
            master.registered(REGISTER_WITHIN).await?;
            case.run(&mut master, timing).await
        }
        .await;
        let took = started.elapsed().as_secs_f64();
        match outcome {
            Ok(()) => println!("ok    {:<42} {took:5.1} s", case.name()),
            Err(e) => {
                failed += 1;
                println!("FAIL  {:<42} {took:5.1} s", case.name());
                println!("      the worker must: {}", case.rule());
                println!("      {e:#}");
                println!("      worker output: {}", log.display());
            }
        }
    }
    println!("{} of {} cases passed", cases.len() - failed, cases.len());
    Ok(if failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// The cases named on the command line, or all.
fn chosen(names: &[String]) -> anyhow::Result<Vec<Case>> {
    if names.is_empty() {
        return Ok(Case::ALL.to_vec());
    }
    names
        .iter()
        .map(|name| {
            Case::named(name).with_context(|| format!("no case named {name:?} (see --list)"))
        })
        .collect()
}
