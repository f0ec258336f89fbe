//! Takeovers that must not guess: a journal whose history was trimmed and whose snapshot can
//! no longer be read is refused, never replayed into an empty state (which would forget work
//! accepted before the snapshot and run finished submissions again); a snapshot that cannot be
//! read right now is waited for, not taken as missing.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::Operation;
use jetwork_shared::subjects;
use jetwork_tests::inproc::spawn_master;
use jetwork_tests::proxy::{Action, Direction, FaultProxy};
use jetwork_tests::{wait_until, Audit, InProcess};
use jetwork_worker::Job;
use tokio::sync::Semaphore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trimmed_journal_without_a_readable_snapshot_is_refused() -> anyhow::Result<()> {
    let run = InProcess::start(|fast| {
        fast.master.streams.journal_retention = Duration::from_secs(1);
        fast.master.master.snapshot_every = 20;
        // The held item stays running (no timeout) beside the others.
        fast.master.master.work_timeout = Duration::from_secs(300);
        fast.worker.worker.concurrency = 4;
    })
    .await?;
    // Items whose payload is "hold" stay running (accepted, never finished) for the whole test.
    let _worker = run.worker("w1", |job: Job| async move {
        if job.payload.as_ref() == b"hold" {
            std::future::pending::<()>().await;
        }
        Ok(job.payload)
    });
    let held = run.submit("held", b"hold").await?;
    let mut last = None;
    for n in 1..=60 {
        last = Some(run.submit(&format!("done-{n}"), b"x").await?);
    }
    run.result(&last.expect("submitted"), Duration::from_secs(60)).await?;

    {
        tracing::info!("--- the leader trims history older than its latest snapshot");
        let js = &run.js;
        wait_until("the journal to be trimmed", Duration::from_secs(30), || async {
            match js.get_stream(subjects::JOURNAL_STREAM).await {
                Ok(mut s) => s.info().await.is_ok_and(|i| i.state.first_sequence > 1),
                Err(_) => false,
            }
        })
        .await?;
    }
    let InProcess { server: _server, master, js, .. } = run;
    master.crash();

    tracing::info!(
        "--- the newest snapshot's parts become unreadable (history before its marker goes)"
    );
    let journal = js.get_stream(subjects::JOURNAL_STREAM).await?;
    let marker = journal.get_last_raw_message_by_subject(subjects::JOURNAL_SNAPSHOT).await?;
    journal.purge().sequence(marker.sequence).await?;
    let before = journal.clone().info().await?.state.clone();

    tracing::info!("--- a new candidate wins the lease, refuses to lead, and gives the lease back");
    let lease = js.get_key_value(subjects::LEASE_BUCKET).await?;
    let first_try = lease.entry(subjects::LEASE_KEY).await?.map_or(0, |e| e.revision);
    let fast = jetwork_tests::fast_settings(&_server.url());
    let standby = spawn_master("m2", fast.master.clone());
    wait_until("the candidate to try and give the lease back", Duration::from_secs(30), || async {
        lease
            .entry(subjects::LEASE_KEY)
            .await
            .ok()
            .flatten()
            .is_some_and(|e| e.revision > first_try + 1 && e.operation != Operation::Put)
    })
    .await?;
    let after = journal.clone().info().await?.state.clone();
    assert_eq!(
        (after.first_sequence, after.last_sequence),
        (before.first_sequence, before.last_sequence),
        "nothing was written to the journal"
    );
    let results = Audit::read(&js).await?;
    results.check()?;
    assert!(!results.results.contains_key(&held), "the held item was not finished by anyone");
    standby.crash();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_journal_that_once_held_history_is_refused() -> anyhow::Result<()> {
    let run = InProcess::start(|_| {}).await?;
    let _worker = run.worker("w1", |job: Job| async move { Ok(job.payload) });
    let id = run.submit("one", b"1").await?;
    run.result(&id, Duration::from_secs(30)).await?;
    let InProcess { server, master, js, .. } = run;
    master.crash();

    tracing::info!("--- someone purges the whole journal");
    js.get_stream(subjects::JOURNAL_STREAM).await?.purge().await?;
    let lease = js.get_key_value(subjects::LEASE_BUCKET).await?;
    let first_try = lease.entry(subjects::LEASE_KEY).await?.map_or(0, |e| e.revision);
    let fast = jetwork_tests::fast_settings(&server.url());
    let standby = spawn_master("m2", fast.master.clone());
    wait_until("the candidate to try and give the lease back", Duration::from_secs(30), || async {
        lease
            .entry(subjects::LEASE_KEY)
            .await
            .ok()
            .flatten()
            .is_some_and(|e| e.revision > first_try + 1 && e.operation != Operation::Put)
    })
    .await?;
    let info = js.get_stream(subjects::JOURNAL_STREAM).await?.info().await?.state.clone();
    assert_eq!(info.messages, 0, "the candidate wrote nothing: it did not start from scratch");
    standby.crash();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_reads_that_fail_during_a_takeover_are_retried_not_guessed() -> anyhow::Result<()>
{
    let run = InProcess::start(|fast| {
        fast.master.streams.journal_retention = Duration::from_secs(1);
        fast.master.master.snapshot_every = 20;
        fast.master.master.work_timeout = Duration::from_secs(300);
        fast.worker.worker.concurrency = 4;
    })
    .await?;
    let gate = Arc::new(Semaphore::new(0));
    let held_gate = gate.clone();
    let _worker = run.worker("w1", move |job: Job| {
        let gate = held_gate.clone();
        async move {
            if job.payload.as_ref() == b"hold" {
                let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
            }
            Ok(job.payload)
        }
    });
    let held = run.submit("held", b"hold").await?;
    let mut last = None;
    for n in 1..=60 {
        last = Some(run.submit(&format!("done-{n}"), b"x").await?);
    }
    run.result(&last.expect("submitted"), Duration::from_secs(60)).await?;
    {
        let js = &run.js;
        wait_until("the journal to be trimmed", Duration::from_secs(30), || async {
            match js.get_stream(subjects::JOURNAL_STREAM).await {
                Ok(mut s) => s.info().await.is_ok_and(|i| i.state.first_sequence > 1),
                Err(_) => false,
            }
        })
        .await?;
    }
    let InProcess { server, master, js, client, queue, fast, .. } = run;
    master.crash();

    tracing::info!("--- the standby's reads of snapshot parts get no answer");
    let proxy = FaultProxy::start(&server.url()).await?;
    let lost = proxy.add_rule(Direction::ToClient, Action::Drop, |frame| {
        frame.payload.windows(29).any(|w| w == subjects::JOURNAL_SNAPSHOT_DATA.as_bytes())
    });
    let mut settings = fast.master.clone();
    settings.nats.url = proxy.url();
    let standby = spawn_master("m2", settings);
    wait_until("two takeovers to fail on the snapshot", Duration::from_secs(60), || async {
        proxy.matched(lost) >= 2
    })
    .await?;
    assert!(client.status().await.is_err(), "nobody leads while the snapshot cannot be read");

    tracing::info!("--- the reads work again: the standby takes over with the exact state");
    proxy.remove_rule(lost);
    wait_until("m2 to lead", Duration::from_secs(60), || async {
        client.status().await.is_ok_and(|s| s.leader.starts_with("m2"))
    })
    .await?;
    gate.add_permits(1);
    let result = client.wait_result(&queue, &held, Duration::from_secs(60)).await?;
    assert_eq!(result.payload, bytes::Bytes::from_static(b"hold"));
    let audit = Audit::read(&js).await?;
    audit.check()?;
    assert_eq!(audit.results[&held].len(), 1);
    assert!(audit.results.keys().filter(|id| id.as_str().starts_with("done-")).count() == 60);
    standby.stop().await;
    Ok(())
}
