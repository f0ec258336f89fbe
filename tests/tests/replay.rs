//! Takeovers that must not guess: a journal whose history was trimmed and whose snapshot can
//! no longer be read is refused, never replayed into an empty state (which would forget work
//! accepted before the snapshot and run finished submissions again); a snapshot that cannot be
//! read right now is waited for, not taken as missing.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::Operation;
use async_nats::jetstream::{self, kv};
use jetwork_shared::{subjects, WorkId};
use jetwork_tests::proxy::{Action, Direction};
use jetwork_tests::{wait_until, InProcess};
use jetwork_worker::Job;
use tokio::sync::Semaphore;

/// The settings of the takeover tests: history trimmed a second after each snapshot (every
/// 20 events), and up to four items running beside a held one that never times out.
fn trimmed_history(fast: &mut jetwork_tests::Fast) {
    fast.master.streams.journal_retention = Duration::from_secs(1);
    fast.master.master.snapshot_every = 20;
    // The held item stays running (no timeout) beside the others.
    fast.master.master.work_timeout = Duration::from_secs(300);
    fast.worker.worker.concurrency = 4;
}

/// Submits the held item and 60 more, waits for the last result, then for the leader to trim
/// the journal's history; returns the held item's id.
async fn run_until_trimmed(run: &InProcess) -> anyhow::Result<WorkId> {
    let held = run.submit("held", b"hold").await?;
    let mut last = None;
    for n in 1..=60 {
        last = Some(run.submit(&format!("done-{n}"), b"x").await?);
    }
    run.result(&last.expect("submitted"), Duration::from_secs(60)).await?;
    tracing::info!("--- the leader trims history older than its latest snapshot");
    wait_until("the journal to be trimmed", Duration::from_secs(30), || async {
        run.stream_info(subjects::JOURNAL_STREAM).await.is_some_and(|i| i.state.first_sequence > 1)
    })
    .await?;
    Ok(held)
}

/// The lease's revision now, so a later wait can see a candidate take and return it.
async fn lease_revision(js: &jetstream::Context) -> anyhow::Result<(kv::Store, u64)> {
    let lease = js.get_key_value(subjects::LEASE_BUCKET).await?;
    let revision = lease.entry(subjects::LEASE_KEY).await?.map_or(0, |e| e.revision);
    Ok((lease, revision))
}

/// Waits until a candidate has taken the lease after `revision` and given it back.
async fn lease_given_back(lease: &kv::Store, revision: u64) -> anyhow::Result<()> {
    wait_until("the candidate to try and give the lease back", Duration::from_secs(30), || async {
        lease
            .entry(subjects::LEASE_KEY)
            .await
            .ok()
            .flatten()
            .is_some_and(|e| e.revision > revision + 1 && e.operation != Operation::Put)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trimmed_journal_without_a_readable_snapshot_is_refused() -> anyhow::Result<()> {
    let mut run = InProcess::start(trimmed_history).await?;
    // Items whose payload is "hold" stay running (accepted, never finished) for the whole test.
    let _worker = run.worker("w1", |job: Job| async move {
        if job.payload.as_ref() == b"hold" {
            std::future::pending::<()>().await;
        }
        Ok(job.payload)
    });
    let held = run_until_trimmed(&run).await?;
    run.crash_masters();
    let js = run.js.clone();

    tracing::info!(
        "--- the newest snapshot's parts become unreadable (history before its marker goes)"
    );
    let journal = js.get_stream(subjects::JOURNAL_STREAM).await?;
    let marker = journal.get_last_raw_message_by_subject(subjects::JOURNAL_SNAPSHOT).await?;
    journal.purge().sequence(marker.sequence).await?;
    let before = journal.clone().info().await?.state.clone();

    tracing::info!("--- a new candidate wins the lease, refuses to lead, and gives the lease back");
    let (lease, first_try) = lease_revision(&js).await?;
    let standby = run.master("m2");
    lease_given_back(&lease, first_try).await?;
    let after = journal.clone().info().await?.state.clone();
    assert_eq!(
        (after.first_sequence, after.last_sequence),
        (before.first_sequence, before.last_sequence),
        "nothing was written to the journal"
    );
    let results = run.audit().await?;
    assert!(!results.results.contains_key(&held), "the held item was not finished by anyone");
    standby.crash();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_journal_that_once_held_history_is_refused() -> anyhow::Result<()> {
    let mut run = InProcess::start(|_| {}).await?;
    let _worker = run.worker("w1", |job: Job| async move { Ok(job.payload) });
    let id = run.submit("one", b"1").await?;
    run.result(&id, Duration::from_secs(30)).await?;
    run.crash_masters();

    tracing::info!("--- someone purges the whole journal");
    let js = run.js.clone();
    js.get_stream(subjects::JOURNAL_STREAM).await?.purge().await?;
    let (lease, first_try) = lease_revision(&js).await?;
    let standby = run.master("m2");
    lease_given_back(&lease, first_try).await?;
    // The candidate wrote nothing: it did not start from scratch. (Counted by epoch, not by
    // message: an in-process crash stops the master, not its connection, which may still
    // deliver a write it had been handed after the purge; a process `kill -9` could not.)
    let audit = run.audit().await?;
    let candidates: Vec<u64> =
        audit.events.iter().map(|(_, epoch, _)| *epoch).filter(|e| *e > first_try).collect();
    assert!(candidates.is_empty(), "the candidate wrote to the journal in epochs {candidates:?}");
    // The result stored before the purge is still the only one.
    assert_eq!(audit.results[&id].len(), 1);
    standby.crash();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_reads_that_fail_during_a_takeover_are_retried_not_guessed() -> anyhow::Result<()>
{
    let mut run = InProcess::start(trimmed_history).await?;
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
    let held = run_until_trimmed(&run).await?;
    run.crash_masters();

    tracing::info!("--- the standby's reads of snapshot parts get no answer");
    let proxy = run.proxy().await?;
    let snapshot_data = subjects::JOURNAL_SNAPSHOT_DATA.as_bytes();
    let lost = proxy.add_rule(Direction::ToClient, Action::Drop, move |frame| {
        frame.payload.windows(snapshot_data.len()).any(|w| w == snapshot_data)
    });
    let standby = run.master_via("m2", &proxy);
    let client = &run.client;
    wait_until("two takeovers to fail on the snapshot", Duration::from_secs(60), || async {
        proxy.matched(lost) >= 2
    })
    .await?;
    assert!(client.status().await.is_err(), "nobody leads while the snapshot cannot be read");

    tracing::info!("--- the reads work again: the standby takes over with the exact state");
    proxy.remove_rule(lost);
    run.await_leader("m2", Duration::from_secs(60)).await?;
    gate.add_permits(1);
    let result = run.result(&held, Duration::from_secs(60)).await?;
    assert_eq!(result.payload, bytes::Bytes::from_static(b"hold"));
    let audit = run.audit().await?;
    assert_eq!(audit.results[&held].len(), 1);
    assert!(audit.results.keys().filter(|id| id.as_str().starts_with("done-")).count() == 60);
    standby.stop().await;
    Ok(())
}
