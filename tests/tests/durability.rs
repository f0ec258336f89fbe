//! The store under the system: a nats-server restart mid-run, and snapshots.

use std::time::Duration;

use bytes::Bytes;
use jetwork_frontend::Client;
use jetwork_master::core::State;
use jetwork_shared::{connect, QueueName, WorkId};
use jetwork_tests::inproc::{spawn_master, spawn_worker};
use jetwork_tests::{fast_settings, init_logging, wait_until, Audit, NatsServer};
use jetwork_worker::square;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_server_restart_mid_run_loses_nothing() -> anyhow::Result<()> {
    init_logging();
    let mut server = NatsServer::start()?;
    let fast = fast_settings(&server.url());
    let master = spawn_master("m1", fast.master.clone());
    let _workers: Vec<_> =
        (1..=2).map(|i| spawn_worker(&format!("w{i}"), fast.worker.clone(), square)).collect();
    let client = Client::connect(fast.frontend.clone()).await?;
    let queue = QueueName::default_queue();
    let load = {
        let (client, queue) = (client.clone(), queue.clone());
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 1..=200u32 {
                let id = WorkId::parse(&format!("r{n}"))?;
                client.submit(&queue, Some(id.clone()), Bytes::from(n.to_string())).await?;
                ids.push(id);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            anyhow::Ok(ids)
        })
    };
    let js = connect::jetstream(client.nats(), &fast.frontend.nats);
    wait_until("some results", Duration::from_secs(30), || async {
        Audit::read(&js).await.map(|a| a.results.len() >= 40).unwrap_or(false)
    })
    .await?;

    tracing::info!("--- restart nats-server (same port, same file store)");
    server.restart()?;

    let ids = load.await??;
    Audit::await_completed(&js, &ids, Duration::from_secs(120)).await?;

    tracing::info!("--- deduplication survived the restart");
    assert!(client.submit(&queue, Some(ids[0].clone()), Bytes::from_static(b"1")).await?.duplicate);
    master.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_a_snapshot_equals_replay_of_the_whole_journal() -> anyhow::Result<()> {
    init_logging();
    let server = NatsServer::start()?;
    let mut fast = fast_settings(&server.url());
    fast.master.master.snapshot_every = 50;
    let master = spawn_master("m1", fast.master.clone());
    let _worker = spawn_worker("w1", fast.worker.clone(), square);
    let client = Client::connect(fast.frontend.clone()).await?;
    let queue = QueueName::default_queue();
    let mut last = None;
    for n in 1..=150u32 {
        let id = WorkId::parse(&format!("s{n}"))?;
        client.submit(&queue, Some(id.clone()), Bytes::from(n.to_string())).await?;
        last = Some(id);
    }
    // Leave some work unfinished in the state: submissions nobody serves.
    for n in 1..=5u32 {
        client.submit(&QueueName::parse("unserved")?, None, Bytes::from(n.to_string())).await?;
    }
    client.wait_result(&queue, &last.expect("submitted"), Duration::from_secs(60)).await?;
    master.stop().await;

    let js = connect::jetstream(client.nats(), &fast.frontend.nats);
    let audit = Audit::read(&js).await?;
    assert!(audit.snapshots >= 2, "expected snapshots, saw {}", audit.snapshots);
    let mut full = State::default();
    for (_, _, event) in &audit.events {
        full.apply(event);
    }
    let replayed = jetwork_master::journal::replay(&js, u64::MAX).await?;
    assert!(replayed.from_seq > 1, "replay started from a snapshot");
    assert_eq!(replayed.state, full);
    full.check_invariants().map_err(anyhow::Error::msg)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_writes_to_the_journal_fence_the_leader_and_are_skipped() -> anyhow::Result<()> {
    init_logging();
    let server = NatsServer::start()?;
    let fast = fast_settings(&server.url());
    let master = spawn_master("m1", fast.master.clone());
    let _worker = spawn_worker("w1", fast.worker.clone(), square);
    let client = Client::connect(fast.frontend.clone()).await?;
    let queue = QueueName::default_queue();
    let before = WorkId::parse("before")?;
    client.submit(&queue, Some(before.clone()), Bytes::from_static(b"2")).await?;
    client.wait_result(&queue, &before, Duration::from_secs(30)).await?;

    tracing::info!("--- someone else publishes garbage into the journal and the snapshot marker");
    let js = connect::jetstream(client.nats(), &fast.frontend.nats);
    for subject in
        [jetwork_shared::subjects::JOURNAL_EVENTS, jetwork_shared::subjects::JOURNAL_SNAPSHOT]
    {
        js.publish(subject, Bytes::from_static(b"\xde\xad\xbe\xef")).await?.await?;
    }

    tracing::info!("--- the leader's next write is fenced; a new term replays past the garbage");
    let after = WorkId::parse("after")?;
    client.submit(&queue, Some(after.clone()), Bytes::from_static(b"3")).await?;
    assert_eq!(
        client.wait_result(&queue, &after, Duration::from_secs(30)).await?.payload,
        Bytes::from_static(b"3 * 3 = 9")
    );
    let audit = Audit::read(&js).await?;
    audit.check()?;
    assert_eq!(audit.foreign, 1);
    let epochs: std::collections::BTreeSet<u64> =
        audit.epochs.iter().map(|(_, e)| *e).filter(|e| *e > 0).collect();
    assert!(epochs.len() >= 2, "the fenced leader started a new term: {epochs:?}");
    master.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_work_and_old_journal_history_are_purged() -> anyhow::Result<()> {
    init_logging();
    let server = NatsServer::start()?;
    let mut fast = fast_settings(&server.url());
    for streams in [&mut fast.master.streams, &mut fast.frontend.streams, &mut fast.worker.streams]
    {
        streams.dedup_horizon = Duration::from_secs(1);
        streams.journal_retention = Duration::from_secs(1);
    }
    fast.master.master.snapshot_every = 20;
    let master = spawn_master("m1", fast.master.clone());
    let _worker = spawn_worker("w1", fast.worker.clone(), square);
    let client = Client::connect(fast.frontend.clone()).await?;
    let queue = QueueName::default_queue();
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

    let js = connect::jetstream(client.nats(), &fast.frontend.nats);
    tracing::info!(
        "--- finished submissions go once the dedup horizon has passed; unread ones stay"
    );
    wait_until(
        "the submit stream to hold only the unserved queue",
        Duration::from_secs(20),
        || async {
            match js.get_stream(jetwork_shared::subjects::SUBMIT_STREAM).await {
                Ok(mut s) => s.info().await.map(|i| i.state.messages == 3).unwrap_or(false),
                Err(_) => false,
            }
        },
    )
    .await?;
    tracing::info!("--- journal history before the latest snapshot goes after its retention");
    wait_until("the journal to be trimmed", Duration::from_secs(20), || async {
        match js.get_stream(jetwork_shared::subjects::JOURNAL_STREAM).await {
            Ok(mut s) => s.info().await.map(|i| i.state.first_sequence > 1).unwrap_or(false),
            Err(_) => false,
        }
    })
    .await?;
    tracing::info!("--- past the horizon the same id is new work again, with a result of its own");
    let p1 = WorkId::parse("p1")?;
    let again = client.submit(&queue, Some(p1.clone()), Bytes::from_static(b"11")).await?;
    assert!(!again.duplicate);
    let second = client.wait_for(&again, Duration::from_secs(30)).await?;
    assert_eq!(second.payload, Bytes::from_static(b"11 * 11 = 121"));
    assert_eq!(second.submit_seq, again.seq);
    let audit = Audit::read(&js).await?;
    audit.check()?;
    assert_eq!(audit.results[&p1].len(), 2);

    tracing::info!("--- and a new leader still rebuilds the state from what is left");
    master.stop().await;
    let replayed = jetwork_master::journal::replay(&js, u64::MAX).await?;
    replayed.state.check_invariants().map_err(anyhow::Error::msg)?;
    assert_eq!(replayed.state.queues[&queue].completed, 61);
    assert!(
        replayed.state.work.is_empty() || replayed.state.work.values().all(|w| w.queue == unserved)
    );
    let again = spawn_master("m2", fast.master.clone());
    let id = WorkId::parse("after-purge")?;
    client.submit(&queue, Some(id.clone()), Bytes::from_static(b"7")).await?;
    assert_eq!(
        client.wait_result(&queue, &id, Duration::from_secs(30)).await?.payload,
        Bytes::from_static(b"7 * 7 = 49")
    );
    again.stop().await;
    Ok(())
}
