//! Scenarios where a process must really die, freeze or be stopped: the real binaries, a real
//! nats-server. Each ends with the journal/results audit: nothing acknowledged lost, nothing
//! finished twice, and no journal write from a deposed master.

use std::time::Duration;

use bytes::Bytes;
use jetwork_frontend::{Client, ResultStatus};
use jetwork_shared::{connect, QueueName, WorkId};
use jetwork_tests::load::steady;
use jetwork_tests::{fast_settings, init_logging, wait_until, Audit, NatsServer, Procs};

/// The leader's name as `status` reports it (`<id>-<suffix>`), once someone answers.
async fn leader(client: &Client) -> Option<String> {
    client.status().await.ok().map(|s| s.leader)
}

async fn wait_for_leader(client: &Client, prefix: &str, within: Duration) -> anyhow::Result<()> {
    let what = format!("{prefix} to lead");
    wait_until(&what, within, || async {
        leader(client).await.is_some_and(|l| l.starts_with(prefix))
    })
    .await
}

async fn all_completed(client: &Client, ids: &[WorkId], within: Duration) -> anyhow::Result<Audit> {
    let js = connect::jetstream(client.nats(), &client.settings().nats);
    Audit::await_completed(&js, ids, within).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_loses_nothing() -> anyhow::Result<()> {
    init_logging();
    let server = NatsServer::start()?;
    let procs = Procs::new(&server)?;
    let _master = procs.master("m1")?;
    let mut slow = procs.worker("slow", &["--exec", "sleep 60"])?;
    let client = Client::connect(fast_settings(&server.url()).frontend).await?;
    let queue = QueueName::default_queue();
    let id = WorkId::parse("victim")?;
    client.submit(&queue, Some(id.clone()), Bytes::from_static(b"payload")).await?;
    wait_until("the slow worker to run it", Duration::from_secs(30), || async {
        client.status().await.is_ok_and(|s| {
            s.workers.iter().any(|w| w.worker_id.as_str() == "slow" && !w.running.is_empty())
        })
    })
    .await?;

    tracing::info!("--- kill -9 the worker mid-job; another worker takes attempt 2");
    slow.kill9()?;
    let _cat = procs.worker("cat", &["--exec", "cat"])?;
    let result = client.wait_result(&queue, &id, Duration::from_secs(30)).await?;
    assert_eq!(result.payload, Bytes::from_static(b"payload"));
    assert_eq!(result.attempt, 2);
    let js = connect::jetstream(client.nats(), &client.settings().nats);
    let audit = Audit::read(&js).await?;
    audit.check()?;
    assert_eq!(audit.attempts(&id), vec![1, 2]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exec_worker_runs_shell_commands() -> anyhow::Result<()> {
    init_logging();
    let server = NatsServer::start()?;
    let mut procs = Procs::new(&server)?;
    procs.set("JETWORK_MASTER__MAX_ATTEMPTS", "2");
    let _master = procs.master("m1")?;
    let script = r#"input=$(cat)
case "$input" in
  fail) echo "no space left on device" >&2; exit 3 ;;
  slow) for i in 1 2 3 4 5 6; do sleep 1; echo jetwork:progress >&2; done ;;
esac
printf '%s|%s|%s|%s' "$JETWORK_WORK_ID" "$JETWORK_QUEUE" "$JETWORK_ATTEMPT" "$input""#;
    let _worker =
        procs.worker("shell", &["--queue", "shell", "--concurrency", "3", "--exec", script])?;
    let client = Client::connect(fast_settings(&server.url()).frontend).await?;
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
    let js = connect::jetstream(client.nats(), &client.settings().nats);
    let audit = Audit::read(&js).await?;
    audit.check()?;
    assert_eq!(audit.attempts(&fail), vec![1, 2]);
    assert_eq!(audit.attempts(&slow), vec![1]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_under_load_loses_nothing() -> anyhow::Result<()> {
    init_logging();
    let server = NatsServer::start()?;
    let procs = Procs::new(&server)?;
    let mut m1 = procs.master("m1")?;
    let client = Client::connect(fast_settings(&server.url()).frontend).await?;
    wait_for_leader(&client, "m1", Duration::from_secs(20)).await?;
    let _m2 = procs.master("m2")?;
    let _workers: Vec<_> = (1..=3)
        .map(|i| procs.worker(&format!("w{i}"), &["--concurrency", "2"]))
        .collect::<Result<_, _>>()?;
    let load = steady(client.clone(), "load-", 400, Duration::from_millis(5));

    tracing::info!("--- kill -9 the leader part-way");
    let js = connect::jetstream(client.nats(), &client.settings().nats);
    wait_until("some results", Duration::from_secs(30), || async {
        Audit::read(&js).await.map(|a| a.results.len() >= 50).unwrap_or(false)
    })
    .await?;
    m1.kill9()?;
    wait_for_leader(&client, "m2", Duration::from_secs(20)).await?;

    let ids = load.await??;
    let audit = all_completed(&client, &ids, Duration::from_secs(90)).await?;
    let epochs: std::collections::BTreeSet<u64> = audit.epochs.iter().map(|(_, e)| *e).collect();
    assert!(epochs.len() >= 2, "two leadership terms in the journal: {epochs:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_never_writes_after_its_lease_and_steps_down() -> anyhow::Result<()> {
    init_logging();
    let server = NatsServer::start()?;
    let procs = Procs::new(&server)?;
    let m1 = procs.master("m1")?;
    let client = Client::connect(fast_settings(&server.url()).frontend).await?;
    wait_for_leader(&client, "m1", Duration::from_secs(20)).await?;
    let _m2 = procs.master("m2")?;
    let _workers: Vec<_> =
        (1..=2).map(|i| procs.worker(&format!("w{i}"), &[])).collect::<Result<_, _>>()?;
    let load = steady(client.clone(), "frz-", 300, Duration::from_millis(10));
    let js = connect::jetstream(client.nats(), &client.settings().nats);
    wait_until("some results", Duration::from_secs(30), || async {
        Audit::read(&js).await.map(|a| a.results.len() >= 30).unwrap_or(false)
    })
    .await?;

    tracing::info!("--- SIGSTOP the leader, past its lease: the standby takes over");
    m1.freeze()?;
    wait_for_leader(&client, "m2", Duration::from_secs(20)).await?;
    let m2_epoch = client.status().await?.epoch;
    wait_until("work to continue under m2", Duration::from_secs(30), || async {
        Audit::read(&js)
            .await
            .map(|a| a.events.iter().any(|(_, e, _)| *e == m2_epoch) && a.results.len() >= 100)
            .unwrap_or(false)
    })
    .await?;

    tracing::info!("--- SIGCONT: the old leader must not write, and must step down");
    m1.resume()?;
    wait_until("m1 to step down", Duration::from_secs(20), || async {
        let logs = m1.logs();
        logs.contains("stepping down") && logs.matches("standing by for the lease").count() >= 2
    })
    .await?;
    assert_eq!(leader(&client).await.map(|l| l.starts_with("m2")), Some(true));
    let ids = load.await??;
    let audit = all_completed(&client, &ids, Duration::from_secs(90)).await?;
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
    init_logging();
    let server = NatsServer::start()?;
    let mut procs = Procs::new(&server)?;
    procs.set("JETWORK_MASTER__LEASE_TTL", "20s");
    let mut m1 = procs.master("m1")?;
    let client = Client::connect(fast_settings(&server.url()).frontend).await?;
    wait_for_leader(&client, "m1", Duration::from_secs(20)).await?;
    let _m2 = procs.master("m2")?;
    let _worker = procs.worker("w1", &[])?;
    let first = WorkId::parse("before")?;
    let queue = QueueName::default_queue();
    client.submit(&queue, Some(first.clone()), Bytes::from_static(b"2")).await?;
    client.wait_result(&queue, &first, Duration::from_secs(20)).await?;

    tracing::info!("--- SIGTERM: m2 leads long before the 20s lease would have expired");
    let stopped = tokio::time::Instant::now();
    assert!(m1.terminate(Duration::from_secs(10)).await?, "m1 exits on SIGTERM");
    wait_for_leader(&client, "m2", Duration::from_secs(10)).await?;
    let took = stopped.elapsed();
    assert!(took < Duration::from_secs(8), "handover took {took:?}");
    let second = WorkId::parse("after")?;
    client.submit(&queue, Some(second.clone()), Bytes::from_static(b"3")).await?;
    assert_eq!(
        client.wait_result(&queue, &second, Duration::from_secs(20)).await?.payload,
        Bytes::from_static(b"3 * 3 = 9")
    );
    let js = connect::jetstream(client.nats(), &client.settings().nats);
    Audit::read(&js).await?.check()?;
    Ok(())
}
