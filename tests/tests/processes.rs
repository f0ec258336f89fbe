//! Scenarios where a process must really die, freeze or be stopped: the real binaries, a real
//! nats-server. Each ends with the journal/results audit: nothing acknowledged lost, nothing
//! finished twice, and no journal write from a deposed master.

use std::time::Duration;

use bytes::Bytes;
use jetwork_frontend::ResultStatus;
use jetwork_master::core::Event;
use jetwork_shared::{QueueName, WorkId};
use jetwork_tests::load::steady;
use jetwork_tests::{wait_until, Audit, InProcess};

/// A scenario whose masters are processes the test starts.
async fn without_masters() -> anyhow::Result<InProcess> {
    InProcess::build().masters(&[]).start().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_loses_nothing() -> anyhow::Result<()> {
    let run = without_masters().await?;
    let procs = run.procs()?;
    let _master = procs.master("m1")?;
    let mut slow = procs.worker("slow", &["--exec", "sleep 60"])?;
    let client = &run.client;
    let id = run.submit("victim", b"payload").await?;
    wait_until("the slow worker to run it", Duration::from_secs(30), || async {
        client.status().await.is_ok_and(|s| {
            s.workers.iter().any(|w| w.worker_id.as_str() == "slow" && !w.running.is_empty())
        })
    })
    .await?;

    tracing::info!("--- kill -9 the worker mid-job; another worker takes attempt 2");
    slow.kill9()?;
    let _cat = procs.worker("cat", &["--exec", "cat"])?;
    let result = run.result(&id, Duration::from_secs(30)).await?;
    assert_eq!(result.payload, Bytes::from_static(b"payload"));
    assert_eq!(result.attempt, 2);
    let audit = run.audit().await?;
    assert_eq!(audit.attempts(&id), vec![1, 2]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exec_worker_runs_shell_commands() -> anyhow::Result<()> {
    let run = without_masters().await?;
    let mut procs = run.procs()?;
    procs.set("JETWORK_MASTER__MAX_ATTEMPTS", "5");
    // The queue's own rule wins over the master's.
    procs.set("JETWORK_QUEUES__SHELL__MAX_ATTEMPTS", "2");
    let _master = procs.master("m1")?;
    let script = r#"input=$(cat)
case "$input" in
  fail) echo "no space left on device" >&2; exit 3 ;;
  fatal) echo "malformed input" >&2; exit 4 ;;
  slow) for i in 1 2 3 4 5 6; do sleep 1; echo jetwork:progress >&2; done ;;
esac
printf '%s|%s|%s|%s' "$JETWORK_WORK_ID" "$JETWORK_QUEUE" "$JETWORK_ATTEMPT" "$input""#;
    let args = ["--queue", "shell", "--concurrency", "3", "--non-retryable-exit-code", "4"];
    let _worker = procs.worker("shell", &[&args[..], &["--exec", script]].concat())?;
    let client = &run.client;
    let queue = QueueName::parse("shell")?;
    let (ok, fail, slow) = (WorkId::parse("ok")?, WorkId::parse("fail")?, WorkId::parse("slow")?);
    client.submit(&queue, Some(ok.clone()), Bytes::from_static(b"hello")).await?;
    client.submit(&queue, Some(fail.clone()), Bytes::from_static(b"fail")).await?;
    client.submit(&queue, Some(slow.clone()), Bytes::from_static(b"slow")).await?;

    let result = client.wait_result(&queue, &ok, Duration::from_secs(30)).await?;
    assert_eq!(
        result.payload,
        Bytes::from_static(b"ok|shell|1|hello"),
        "stdin in, env set, stdout out"
    );
    let result = client.wait_result(&queue, &fail, Duration::from_secs(30)).await?;
    assert_eq!((result.status, result.attempt), (ResultStatus::Failed, 2));
    let reason = result.reason.unwrap_or_default();
    assert!(reason.contains("exit status 3: no space left on device"), "{reason}");
    let result = client.wait_result(&queue, &slow, Duration::from_secs(30)).await?;
    assert_eq!(
        (result.status, result.attempt),
        (ResultStatus::Completed, 1),
        "stderr progress kept it alive past 3s"
    );
    let fatal = WorkId::parse("fatal")?;
    client.submit(&queue, Some(fatal.clone()), Bytes::from_static(b"fatal")).await?;
    let result = client.wait_result(&queue, &fatal, Duration::from_secs(30)).await?;
    assert_eq!((result.status, result.attempt), (ResultStatus::Failed, 1), "exit 4: for good");

    tracing::info!("--- the CLI shows the job's attempts");
    let (ok_exit, shown) = procs.frontend(&["job", "fail"]).await?;
    assert!(ok_exit, "{shown}");
    assert!(shown.contains("failed") && shown.contains("no space left on device"), "{shown}");
    // A job that completed at its one attempt has its attempt stored short: shown all the same.
    let (ok_exit, shown) = procs.frontend(&["job", "ok"]).await?;
    assert!(ok_exit, "{shown}");
    let row = shown.lines().find(|line| line.trim_start().starts_with("1 ")).unwrap_or_default();
    assert!(
        shown.contains("OUTCOME") && row.contains("shell") && row.contains("completed"),
        "{shown}"
    );
    let audit = run.audit().await?;
    assert_eq!(audit.attempts(&fail), vec![1, 2]);
    assert_eq!(audit.attempts(&slow), vec![1]);
    assert_eq!(audit.attempts(&fatal), vec![1]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_under_load_loses_nothing() -> anyhow::Result<()> {
    let run = without_masters().await?;
    let procs = run.procs()?;
    let mut m1 = procs.master("m1")?;
    run.await_leader("m1", Duration::from_secs(20)).await?;
    let _m2 = procs.master("m2")?;
    let _workers: Vec<_> = (1..=3)
        .map(|i| procs.worker(&format!("w{i}"), &["--concurrency", "2"]))
        .collect::<Result<_, _>>()?;
    let load = steady(run.client.clone(), "load-", 400, Duration::from_millis(5));

    tracing::info!("--- kill -9 the leader part-way");
    let js = &run.js;
    wait_until("some results", Duration::from_secs(30), || async {
        Audit::read(js).await.map(|a| a.results.len() >= 50).unwrap_or(false)
    })
    .await?;
    m1.kill9()?;
    run.await_leader("m2", Duration::from_secs(20)).await?;

    let ids = load.await??;
    let audit = run.completed(&ids, Duration::from_secs(90)).await?;
    let epochs: std::collections::BTreeSet<u64> = audit.epochs.iter().map(|(_, e)| *e).collect();
    assert!(epochs.len() >= 2, "two leadership terms in the journal: {epochs:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_never_writes_after_its_lease_and_steps_down() -> anyhow::Result<()> {
    let run = without_masters().await?;
    let procs = run.procs()?;
    let m1 = procs.master("m1")?;
    run.await_leader("m1", Duration::from_secs(20)).await?;
    let mut m2 = procs.master("m2")?;
    let _workers: Vec<_> =
        (1..=2).map(|i| procs.worker(&format!("w{i}"), &[])).collect::<Result<_, _>>()?;
    let load = steady(run.client.clone(), "frz-", 300, Duration::from_millis(10));
    let js = &run.js;
    wait_until("some results", Duration::from_secs(30), || async {
        Audit::read(js).await.map(|a| a.results.len() >= 30).unwrap_or(false)
    })
    .await?;

    tracing::info!("--- SIGSTOP the leader, past its lease: the standby takes over");
    m1.freeze()?;
    run.await_leader("m2", Duration::from_secs(20)).await?;
    let m2_epoch = run.client.status().await?.epoch;
    wait_until("work to continue under m2", Duration::from_secs(30), || async {
        Audit::read(js)
            .await
            .map(|a| a.events.iter().any(|(_, e, _)| *e == m2_epoch) && a.results.len() >= 100)
            .unwrap_or(false)
    })
    .await?;

    tracing::info!("--- SIGCONT: the old leader must not write, and must step down");
    m1.resume()?;
    let ids = load.await??;
    run.completed(&ids, Duration::from_secs(90)).await?;
    // A leader that had not stepped down would still serve (and answer) status.
    assert_eq!(run.client.status().await.map(|s| s.leader.starts_with("m2")).ok(), Some(true));

    tracing::info!("--- m2 hands over: m1 stood by again, so it leads the next term");
    assert!(m2.terminate(Duration::from_secs(10)).await?, "m2 exits on SIGTERM");
    let m1_again = |audit: &Audit| {
        audit.events.iter().any(|(_, _, e)| {
            matches!(e, Event::EpochStarted { epoch, leader, .. }
                if *epoch > m2_epoch && leader.starts_with("m1"))
        })
    };
    wait_until("m1 to start a term after m2's", Duration::from_secs(20), || async {
        Audit::read(js).await.is_ok_and(|a| m1_again(&a))
    })
    .await?;
    let audit = run.audit().await?;
    // check() above proves no message of the old epoch follows the new epoch's claim.
    let after_claim = audit
        .epochs
        .iter()
        .skip_while(|(_, e)| *e < m2_epoch)
        .filter(|(_, e)| *e != 0 && *e < m2_epoch)
        .count();
    assert_eq!(after_claim, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_over_at_once() -> anyhow::Result<()> {
    let run = without_masters().await?;
    let mut procs = run.procs()?;
    procs.set("JETWORK_MASTER__LEASE_TTL", "20s");
    let mut m1 = procs.master("m1")?;
    run.await_leader("m1", Duration::from_secs(20)).await?;
    let _m2 = procs.master("m2")?;
    let _worker = procs.worker("w1", &[])?;
    let first = run.submit("before", b"2").await?;
    run.result(&first, Duration::from_secs(20)).await?;

    tracing::info!("--- SIGTERM: m2 leads long before the 20s lease would have expired");
    let stopped = tokio::time::Instant::now();
    assert!(m1.terminate(Duration::from_secs(10)).await?, "m1 exits on SIGTERM");
    run.await_leader("m2", Duration::from_secs(10)).await?;
    let took = stopped.elapsed();
    assert!(took < Duration::from_secs(8), "handover took {took:?}");
    let second = run.submit("after", b"3").await?;
    assert_eq!(
        run.result(&second, Duration::from_secs(20)).await?.payload,
        Bytes::from_static(b"3 * 3 = 9")
    );
    run.audit().await?;
    Ok(())
}

/// The master turns transparent huge pages off for its own process (`without_transparent_huge_pages`
/// in its `main`): with them, every large message cost it a 2 MiB page zeroed in the kernel.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_runs_without_transparent_huge_pages() -> anyhow::Result<()> {
    let run = without_masters().await?;
    let procs = run.procs()?;
    let master = procs.master("m1")?;
    run.await_leader("m1", Duration::from_secs(20)).await?;
    let status = std::fs::read_to_string(format!("/proc/{}/status", master.pid()))?;
    let flag = status.lines().find_map(|line| line.strip_prefix("THP_enabled:")).map(str::trim);
    assert_eq!(flag, Some("0"), "the master's /proc status:\n{status}");
    Ok(())
}
