//! The store under the system: a nats-server restart mid-run, and snapshots.

use std::time::Duration;

use bytes::Bytes;
use jetwork_master::core::State;
use jetwork_shared::{subjects, QueueName, WorkId};
use jetwork_tests::load::steady;
use jetwork_tests::{wait_until, Audit, InProcess};
use jetwork_worker::square;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_server_restart_mid_run_loses_nothing() -> anyhow::Result<()> {
    let mut run = InProcess::start(|_| {}).await?;
    let _workers = [run.worker("w1", square), run.worker("w2", square)];
    let load = steady(run.client.clone(), "r", 200, Duration::from_millis(10));
    let js = &run.js;
    wait_until("some results", Duration::from_secs(30), || async {
        Audit::read(js).await.map(|a| a.results.len() >= 40).unwrap_or(false)
    })
    .await?;

    tracing::info!("--- restart nats-server (same port, same file store)");
    run.server.restart()?;

    let ids = load.await??;
    run.completed(&ids, Duration::from_secs(120)).await?;

    tracing::info!("--- deduplication survived the restart");
    let again = run.client.submit(&run.queue, Some(ids[0].clone()), Bytes::from_static(b"1"));
    assert!(again.await?.duplicate);
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_a_snapshot_equals_replay_of_the_whole_journal() -> anyhow::Result<()> {
    let mut run = InProcess::start(|fast| fast.master.master.snapshot_every = 50).await?;
    let _worker = run.worker("w1", square);
    let (client, queue) = (&run.client, &run.queue);
    let mut last = None;
    for n in 1..=150u32 {
        let id = WorkId::parse(&format!("s{n}"))?;
        client.submit(queue, Some(id.clone()), Bytes::from(n.to_string())).await?;
        last = Some(id);
    }
    // Leave some work unfinished in the state: submissions nobody serves.
    for n in 1..=5u32 {
        client.submit(&QueueName::parse("unserved")?, None, Bytes::from(n.to_string())).await?;
    }
    run.result(&last.expect("submitted"), Duration::from_secs(60)).await?;
    run.stop_masters().await;

    let js = &run.js;
    let audit = run.audit().await?;
    assert!(audit.snapshots >= 2, "expected snapshots, saw {}", audit.snapshots);
    let mut full = State::default();
    for (_, _, event) in &audit.events {
        full.apply(event);
    }
    let replayed = jetwork_master::journal::replay(js, u64::MAX).await?;
    assert!(replayed.from_seq > 1, "replay started from a snapshot");
    assert_eq!(replayed.state, full);
    full.check_invariants().map_err(anyhow::Error::msg)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_writes_to_the_journal_fence_the_leader_and_are_skipped() -> anyhow::Result<()> {
    let run = InProcess::start(|_| {}).await?;
    let _worker = run.worker("w1", square);
    let before = run.submit("before", b"2").await?;
    run.result(&before, Duration::from_secs(30)).await?;

    tracing::info!("--- someone else publishes garbage into the journal and the snapshot marker");
    for subject in [subjects::JOURNAL_EVENTS, subjects::JOURNAL_SNAPSHOT] {
        run.js.publish(subject, Bytes::from_static(b"\xde\xad\xbe\xef")).await?.await?;
    }

    tracing::info!("--- the leader's next write is fenced; a new term replays past the garbage");
    let after = run.submit("after", b"3").await?;
    assert_eq!(
        run.result(&after, Duration::from_secs(30)).await?.payload,
        Bytes::from_static(b"3 * 3 = 9")
    );
    let audit = run.audit().await?;
    assert_eq!(audit.foreign, 1);
    let epochs: std::collections::BTreeSet<u64> =
        audit.epochs.iter().map(|(_, e)| *e).filter(|e| *e > 0).collect();
    assert!(epochs.len() >= 2, "the fenced leader started a new term: {epochs:?}");
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_work_and_old_journal_history_are_purged() -> anyhow::Result<()> {
    let mut run = InProcess::start(|fast| {
        for streams in
            [&mut fast.master.streams, &mut fast.frontend.streams, &mut fast.worker.streams]
        {
            streams.dedup_horizon = Duration::from_secs(1);
            streams.journal_retention = Duration::from_secs(1);
        }
        fast.master.master.snapshot_every = 20;
    })
    .await?;
    let _worker = run.worker("w1", square);
    let (client, queue) = (run.client.clone(), run.queue.clone());
    let unserved = QueueName::parse("unserved")?;
    for n in 1..=3u32 {
        client.submit(&unserved, None, Bytes::from(n.to_string())).await?;
    }
    let mut last = None;
    for n in 1..=60u32 {
        let id = WorkId::parse(&format!("p{n}"))?;
        client.submit(&queue, Some(id.clone()), Bytes::from(n.to_string())).await?;
        last = Some(id);
    }
    client.wait_result(&queue, &last.expect("submitted"), Duration::from_secs(60)).await?;

    let js = run.js.clone();
    tracing::info!(
        "--- finished submissions go once the dedup horizon has passed; unread ones stay"
    );
    wait_until(
        "the submit stream to hold only the unserved queue",
        Duration::from_secs(20),
        || async {
            run.stream_info(subjects::SUBMIT_STREAM).await.is_some_and(|i| i.state.messages == 3)
        },
    )
    .await?;
    tracing::info!("--- journal history before the latest snapshot goes after its retention");
    wait_until("the journal to be trimmed", Duration::from_secs(20), || async {
        run.stream_info(subjects::JOURNAL_STREAM).await.is_some_and(|i| i.state.first_sequence > 1)
    })
    .await?;
    tracing::info!("--- past the horizon the same id is new work again, with a result of its own");
    let p1 = WorkId::parse("p1")?;
    let again = client.submit(&queue, Some(p1.clone()), Bytes::from_static(b"11")).await?;
    assert!(!again.duplicate);
    let second = client.wait_for(&again, Duration::from_secs(30)).await?;
    assert_eq!(second.payload, Bytes::from_static(b"11 * 11 = 121"));
    assert_eq!(second.submit_seq, again.seq);
    let audit = run.audit().await?;
    assert_eq!(audit.results[&p1].len(), 2);

    tracing::info!("--- and a new leader still rebuilds the state from what is left");
    run.stop_masters().await;
    let replayed = jetwork_master::journal::replay(&js, u64::MAX).await?;
    replayed.state.check_invariants().map_err(anyhow::Error::msg)?;
    assert_eq!(replayed.state.queues[&queue].completed, 61);
    assert!(
        replayed.state.work.is_empty() || replayed.state.work.values().all(|w| w.queue == unserved)
    );
    let again = run.master("m2");
    let id = run.submit("after-purge", b"7").await?;
    assert_eq!(
        run.result(&id, Duration::from_secs(30)).await?.payload,
        Bytes::from_static(b"7 * 7 = 49")
    );
    run.audit().await?;
    again.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_nobody_serves_any_more_is_forgotten_and_read_afresh_when_served_again(
) -> anyhow::Result<()> {
    let run = InProcess::start(|fast| {
        for streams in
            [&mut fast.master.streams, &mut fast.frontend.streams, &mut fast.worker.streams]
        {
            streams.dedup_horizon = Duration::from_secs(1);
        }
    })
    .await?;
    let client = run.client.clone();
    let temp = QueueName::parse("temp")?;
    let serve_temp = |s: &mut jetwork_worker::WorkerSettings| s.worker.queues = vec!["temp".into()];
    let listed = |temp: &QueueName| {
        let client = client.clone();
        let temp = temp.clone();
        async move { client.status().await.is_ok_and(|s| s.queues.iter().any(|q| q.queue == temp)) }
    };
    let first = run.worker_with("w1", serve_temp, square);
    let mut ids = Vec::new();
    for n in 1..=3u32 {
        let id = WorkId::parse(&format!("t{n}"))?;
        client.submit(&temp, Some(id.clone()), Bytes::from(n.to_string())).await?;
        ids.push(id);
    }
    run.completed(&ids, Duration::from_secs(30)).await?;
    assert!(listed(&temp).await, "a served queue is listed");

    tracing::info!("--- nobody serves it, its finished submissions are purged: it is forgotten");
    first.crash();
    wait_until("the idle queue to be forgotten", Duration::from_secs(60), || async {
        !listed(&temp).await
    })
    .await?;

    tracing::info!("--- served again, only what is new runs: nothing is read twice");
    let _second = run.worker_with("w2", serve_temp, square);
    let again = WorkId::parse("t4")?;
    client.submit(&temp, Some(again.clone()), Bytes::from_static(b"4")).await?;
    run.completed(std::slice::from_ref(&again), Duration::from_secs(30)).await?;
    let audit = run.audit().await?;
    for id in ids.iter().chain([&again]) {
        assert_eq!(audit.results[id].len(), 1, "{id} ran once");
    }
    let status = client.status().await?;
    let queue = status.queues.iter().find(|q| q.queue == temp).expect("served again: listed");
    assert_eq!((queue.completed, queue.pending), (1, 0), "counted afresh: {queue:?}");
    run.stop().await;
    Ok(())
}
