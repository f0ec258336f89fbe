//! The Python library's worker (`worker/python`, run as real Python processes) against the real
//! master: the seed's own acceptance test with Python workers, a fleet of Rust, Python and
//! `--forward` workers (the service behind it a plain nats-py responder) on one queue through a
//! leader's `kill -9`, a Python worker's own `kill -9` mid-job, and its cancel, SIGTERM drain
//! and deregistration (a new process takes its id at once). Each ends with the
//! journal/results audit: every id completed exactly once. And the Python client
//! (`tests/client_check.py`): submissions with options and duplicates, waiting for a result,
//! one job, listings, pause, resume, cancel, retry, refusals.
//!
//! Driven from here rather than by pytest: the scenarios need what the Rust harness already
//! has (servers, master processes, the audit, condition waits with deadlines), and `cargo test`
//! stays the one test command. The Python environment comes from `scripts/python-env`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use jetwork_master::core::Event;
use jetwork_shared::WorkId;
use jetwork_tests::load::steady;
use jetwork_tests::{
    binaries, python, shipped_nats_conf, wait_until, Audit, InProcess, NatsServer, Process, Procs,
};

const WAIT: Duration = Duration::from_secs(90);

/// How many jobs a Python worker has started, from its `took …` lines.
fn taken(process: &Process) -> usize {
    process.logs().lines().filter(|line| line.starts_with("took ")).count()
}

/// The workers whose attempts completed a job under the leader of `epoch`, by the journal.
fn workers_that_completed(audit: &Audit, epoch: u64) -> BTreeSet<String> {
    let mut started = BTreeMap::new();
    let mut completed = BTreeSet::new();
    for (_, written, event) in &audit.events {
        match event {
            Event::WorkStarted { work_id, worker, attempt, .. } => {
                started.insert((work_id.clone(), *attempt), worker.to_string());
            }
            Event::WorkCompleted { work_id, attempt, .. } if *written == epoch => {
                if let Some(worker) = started.get(&(work_id.clone(), *attempt)) {
                    completed.insert(worker.clone());
                }
            }
            _ => {}
        }
    }
    completed
}

async fn workers_registered(run: &InProcess, n: u64) -> anyhow::Result<()> {
    let client = &run.client;
    wait_until(&format!("{n} workers to register"), Duration::from_secs(60), || async {
        client.status().await.is_ok_and(|s| s.workers_total >= n)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_workers_perform_the_seed_spec_exactly_once() -> anyhow::Result<()> {
    let run = InProcess::build().masters(&["master"]).start().await?;
    let procs = run.procs()?;
    let start = |name: &str, args: &[&str]| {
        let mut all = vec!["tests/scenario_worker.py", "--id", name];
        all.extend_from_slice(args);
        python::start(&run.server, procs.dir(), name, all[0], &all[1..])
    };
    let _healthy: Vec<_> =
        (1..=3).map(|i| start(&format!("py-healthy-{i}"), &[])).collect::<Result<_, _>>()?;
    // Its 3rd job fails; on its 5th the process kills itself (SIGKILL) mid-job.
    let mut flaky = start("py-flaky", &["--fail-on", "3", "--die-on", "5", "--sleep-ms", "20"])?;
    workers_registered(&run, 4).await?;

    tracing::info!("--- work 1, sent until acknowledged, several times");
    let one = WorkId::parse("1")?;
    for _ in 0..3 {
        run.client.submit(&run.queue, Some(one.clone()), Bytes::from_static(b"1")).await?;
    }
    let result = run.result(&one, Duration::from_secs(30)).await?;
    assert_eq!(result.payload, Bytes::from_static(b"1 * 1 = 1"));

    tracing::info!("--- work 2..=100");
    let mut expected = vec![one];
    for n in 2..=100u32 {
        let id = WorkId::parse(&n.to_string())?;
        run.client.submit(&run.queue, Some(id.clone()), Bytes::from(n.to_string())).await?;
        expected.push(id);
    }
    let audit = run.completed(&expected, WAIT).await?;
    for n in [1u32, 2, 50, 100] {
        let id = WorkId::parse(&n.to_string())?;
        assert_eq!(audit.results[&id][0].payload, format!("{n} * {n} = {}", n * n).into_bytes());
    }
    assert_eq!(audit.results.len(), 100, "no result for an id that was never submitted");
    assert!(taken(&flaky) >= 5, "the flaky worker took part up to its death:\n{}", flaky.logs());
    assert!(!flaky.is_running(), "the flaky worker killed itself on its 5th job");
    let retries: usize = expected.iter().map(|id| audit.attempts(id).len() - 1).sum();
    assert!(retries >= 2, "2 flaky incidents but {retries} retried attempts");
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_python_and_forward_workers_share_a_queue_through_a_leader_kill() -> anyhow::Result<()>
{
    let run = InProcess::build().masters(&[]).start().await?;
    let procs = run.procs()?;
    let mut m1 = procs.master("m1")?;
    run.await_leader("m1", Duration::from_secs(20)).await?;
    let _m2 = procs.master("m2")?;
    let _rust = procs.worker("rust", &["--concurrency", "2"])?;
    let python = python::start(
        &run.server,
        procs.dir(),
        "python",
        "tests/scenario_worker.py",
        &["--id", "python", "--concurrency", "2"],
    )?;
    let _responder =
        python::start(&run.server, procs.dir(), "responder", "examples/forward_responder.py", &[])?;
    let _forward =
        procs.worker("forward", &["--concurrency", "2", "--forward", "jetwork.svc.square"])?;
    workers_registered(&run, 3).await?;
    // The submissions are numbers (the workers square them): `load-<n>` carries `<n>`.
    let load = steady(run.client.clone(), "load-", 400, Duration::from_millis(5));

    tracing::info!("--- kill -9 the leader part-way");
    let js = &run.js;
    wait_until("some results", Duration::from_secs(30), || async {
        Audit::read(js).await.map(|a| a.results.len() >= 50).unwrap_or(false)
    })
    .await?;
    m1.kill9()?;
    run.await_leader("m2", Duration::from_secs(20)).await?;

    let mut ids = load.await??;
    // Work arriving only under the new leader, over a couple of seconds: every worker that
    // followed it gets a share.
    let after = steady(run.client.clone(), "after-", 200, Duration::from_millis(10));
    ids.extend(after.await??);
    let audit = run.completed(&ids, WAIT).await?;
    let epochs: BTreeSet<u64> = audit.epochs.iter().map(|(_, e)| *e).collect();
    assert!(epochs.len() >= 2, "two leadership terms in the journal: {epochs:?}");
    // Every kind of worker followed the new leader: each completed jobs under it.
    let newest = epochs.last().copied().unwrap_or_default();
    let ran_by = workers_that_completed(&audit, newest);
    for worker in ["rust", "python", "forward"] {
        assert!(ran_by.contains(worker), "{worker} completed nothing after the kill: {ran_by:?}");
    }
    assert!(taken(&python) > 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_worker_killed_mid_job_loses_nothing() -> anyhow::Result<()> {
    let run = InProcess::build().masters(&[]).start().await?;
    let procs = run.procs()?;
    let _master = procs.master("m1")?;
    let mut slow = python::start(
        &run.server,
        procs.dir(),
        "py-slow",
        "tests/scenario_worker.py",
        &["--id", "py-slow", "--sleep-ms", "60000"],
    )?;
    workers_registered(&run, 1).await?;
    let id = run.submit("victim", b"7").await?;
    wait_until("the Python worker to run it", Duration::from_secs(30), || async {
        taken(&slow) >= 1
    })
    .await?;

    tracing::info!("--- kill -9 the Python worker mid-job; a Rust worker takes attempt 2");
    slow.kill9()?;
    let _rust = procs.worker("rust", &[])?;
    let result = run.result(&id, Duration::from_secs(30)).await?;
    assert_eq!(result.payload, Bytes::from_static(b"7 * 7 = 49"));
    assert_eq!(result.attempt, 2);
    let audit = run.audit().await?;
    assert_eq!(audit.attempts(&id), vec![1, 2]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_submits_reads_and_manages_jobs() -> anyhow::Result<()> {
    let run = InProcess::start(|_| {}).await?;
    let _worker = run.worker("rust", jetwork_worker::square);
    let procs = run.procs()?;
    let mut check =
        python::start(&run.server, procs.dir(), "client", "tests/client_check.py", &[])?;
    wait_until("the client check to finish", WAIT, || {
        let done = !check.is_running();
        async move { done }
    })
    .await?;
    let said = check.logs();
    assert!(said.contains("client check passed"), "the client check failed:\n{said}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_worker_obeys_a_cancel_and_drains_and_deregisters_on_sigterm() -> anyhow::Result<()>
{
    let run = InProcess::build().masters(&[]).start().await?;
    let mut procs = run.procs()?;
    // Long enough that nothing below can be the master's timers at work.
    procs.set("JETWORK_MASTER__WORKER_TIMEOUT", "60s").set("JETWORK_MASTER__WORK_TIMEOUT", "60s");
    let _master = procs.master("m1")?;
    let mut python = python::start(
        &run.server,
        procs.dir(),
        "py-stop",
        "tests/scenario_worker.py",
        &["--id", "py-stop", "--sleep-ms", "600000"],
    )?;
    workers_registered(&run, 1).await?;

    tracing::info!("--- an operator cancels the job it runs: it stops it");
    let cancelled = run.submit("cancelled", b"2").await?;
    wait_until("the Python worker to run it", WAIT, || async { taken(&python) >= 1 }).await?;
    run.client.cancel(&cancelled, Some("not needed".to_owned())).await?;
    wait_until("the Python worker to stop it", WAIT, || async {
        python.logs().contains("cancelled@1: stopped: cancelled by an operator")
    })
    .await?;

    tracing::info!("--- SIGTERM mid-job: it drains, reports the job failed, deregisters");
    let held = run.submit("held", b"3").await?;
    wait_until("the Python worker to run it", WAIT, || async { taken(&python) >= 2 }).await?;
    assert!(python.terminate(WAIT).await?, "the Python worker exits after draining");
    assert!(python.logs().contains("deregistered"), "{}", python.logs());

    tracing::info!("--- a new process under the same id registers at once and finishes the job");
    let _rust = procs.worker("py-stop", &[])?;
    let result = run.result(&held, Duration::from_secs(30)).await?;
    assert_eq!(result.payload, Bytes::from_static(b"3 * 3 = 9"));
    let audit = run.audit().await?;
    assert_eq!(audit.attempts(&held), vec![1, 2], "the drained attempt, then the new process's");
    assert_eq!(audit.attempts(&cancelled), vec![1]);
    Ok(())
}

/// The library with the shipped `nats.conf`, given only users and passwords (its inbox prefix
/// defaults to `_INBOX_<user>`, as the Rust binaries' does): a `worker-1` worker and a
/// `client` behind a real master, and not one permission violation in the server's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_library_works_with_the_shipped_roles_by_user_and_password() -> anyhow::Result<()>
{
    let server = NatsServer::start_with_config(&shipped_nats_conf()?)?;
    let procs = Procs::new(&server)?;
    let master_toml = concat!(env!("CARGO_MANIFEST_DIR"), "/../jetwork.toml");
    let master = procs.start(
        "m1",
        &binaries::master(),
        &["--config", master_toml, "--id", "m1"],
        &[("NATS_USER", "master"), ("NATS_PASSWORD", "master-local")],
    )?;
    wait_until("m1 to lead", WAIT, || {
        let leading = master.logs().contains("INFO leading");
        async move { leading }
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let mut check = python::start(&server, dir.path(), "roles", "tests/roles_check.py", &[])?;
    wait_until("the Python check to finish", WAIT, || {
        let done = !check.is_running();
        async move { done }
    })
    .await?;
    assert!(check.logs().contains("roles ok: python ran 7"), "{}", check.logs());
    let violations = std::fs::read_to_string(server.log_path())?;
    assert!(!violations.contains("Violation"), "the server refused something:\n{violations}");
    Ok(())
}
