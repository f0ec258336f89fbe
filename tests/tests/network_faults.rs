//! Network faults on one process's link to nats-server, under load, through a
//! [`FaultProxy`]: bytes dropped, held or delayed in either direction for 0.1–2 s, connections
//! cut during a journal write and between writes, a master's link blackholed past its lease,
//! and single messages lost. Every scenario ends with the journal/results/submit audit:
//! everything acknowledged completed, exactly one stored result per run, nothing finished
//! twice, no read position past an untaken submission, no write from a deposed master.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use jetwork_frontend::Client;
use jetwork_master::core::Event;
use jetwork_shared::{connect, subjects, QueueName, WorkId};
use jetwork_tests::inproc::{spawn_master, spawn_worker, Task};
use jetwork_tests::load::steady;
use jetwork_tests::proxy::{Action, Direction, FaultProxy, Mode};
use jetwork_tests::{fast_settings, init_logging, wait_until, Audit, Fast, NatsServer};
use jetwork_worker::{square, Job};
use tokio::sync::Semaphore;

const SETTLE: Duration = Duration::from_secs(120);

/// A server, the fast settings, and a frontend client talking to the server directly.
struct Rig {
    server: NatsServer,
    fast: Fast,
    client: Client,
    js: async_nats::jetstream::Context,
}

impl Rig {
    async fn start() -> anyhow::Result<Self> {
        init_logging();
        let server = NatsServer::start()?;
        let fast = fast_settings(&server.url());
        let client = Client::connect(fast.frontend.clone()).await?;
        let js = connect::jetstream(client.nats(), &fast.frontend.nats);
        Ok(Rig { server, fast, client, js })
    }

    /// A proxy in front of the server, for one process.
    async fn proxy(&self) -> anyhow::Result<FaultProxy> {
        FaultProxy::start(&self.server.url()).await
    }

    /// A master candidate connected through `via` (or directly).
    fn master(&self, name: &str, via: Option<&FaultProxy>) -> Task {
        let mut settings = self.fast.master.clone();
        if let Some(proxy) = via {
            settings.nats.url = proxy.url();
        }
        spawn_master(name, settings)
    }

    /// A squaring worker with `concurrency` slots, connected through `via` (or directly).
    fn worker(&self, name: &str, concurrency: u32, via: Option<&FaultProxy>) -> Task {
        let mut settings = self.fast.worker.clone();
        settings.worker.concurrency = concurrency;
        if let Some(proxy) = via {
            settings.nats.url = proxy.url();
        }
        spawn_worker(name, settings, square)
    }

    /// Waits until every id in `ids` completed once, and audits.
    async fn all_completed(&self, ids: &[WorkId]) -> anyhow::Result<Audit> {
        Audit::await_completed(&self.js, ids, SETTLE).await
    }
}

/// The field finding behind this suite: a blip that drops what the server sends the master,
/// then a cut, while submissions arrive and the master is otherwise idle. The reader's
/// consumer kept going after the lost deliveries and they were never run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_lost_in_a_blip_on_the_master_link_are_read_again() -> anyhow::Result<()> {
    let mut rig = Rig::start().await?;
    // A lease long enough to outlive the blips (the default is 10s): the term goes on, so
    // nothing but the reader itself can notice the lost deliveries.
    rig.fast.master.master.lease_ttl = Duration::from_secs(10);
    let proxy = rig.proxy().await?;
    let master = rig.master("m1", Some(&proxy));
    // One slot, taken by a job held until the end: the master only reads ahead and accepts.
    let gate = Arc::new(Semaphore::new(0));
    let held = gate.clone();
    let mut settings = rig.fast.worker.clone();
    settings.worker.concurrency = 1;
    let _worker = spawn_worker("w1", settings, move |job: Job| {
        let held = held.clone();
        async move {
            if job.payload.as_ref() == b"hold" {
                let _permit = held.acquire().await.map_err(|e| e.to_string())?;
            }
            Ok(job.payload)
        }
    });
    let queue = QueueName::default_queue();
    let first = WorkId::parse("held")?;
    rig.client.submit(&queue, Some(first.clone()), Bytes::from_static(b"hold")).await?;
    let js = &rig.js;
    wait_until("the held job to start", Duration::from_secs(30), || async {
        Audit::read(js).await.is_ok_and(|a| !a.attempts(&first).is_empty())
    })
    .await?;

    let mut ids = vec![first];
    for round in 0..3 {
        tracing::info!(round, "--- drop what the server sends the master for 0.6s, then cut");
        let load =
            steady(rig.client.clone(), ["a", "b", "c"][round], 11, Duration::from_millis(40));
        tokio::time::sleep(Duration::from_millis(100)).await;
        proxy.blip(Direction::ToClient, Mode::Drop, Duration::from_millis(600)).await;
        proxy.cut();
        ids.extend(load.await??);
    }

    tracing::info!("--- release the held job: every acknowledged submission runs");
    gate.add_permits(1);
    let audit = rig.all_completed(&ids).await?;
    assert!(proxy.connections() >= 4, "the master reconnected after each cut");
    assert_eq!(audit.results.len(), ids.len());
    master.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blips_in_each_direction_of_the_master_link_lose_nothing() -> anyhow::Result<()> {
    let rig = Rig::start().await?;
    let proxy = rig.proxy().await?;
    let master = rig.master("m1", Some(&proxy));
    let _workers = [rig.worker("w1", 4, None), rig.worker("w2", 4, None)];
    let load = steady(rig.client.clone(), "blip-", 400, Duration::from_millis(15));
    let faults = [
        (Direction::ToClient, Mode::Drop, 100, true),
        (Direction::ToServer, Mode::Drop, 300, true),
        (Direction::ToClient, Mode::Hold, 1000, false),
        (Direction::ToServer, Mode::Hold, 2000, false),
        (Direction::ToClient, Mode::Delay(Duration::from_millis(200)), 1000, false),
        (Direction::ToServer, Mode::Drop, 1500, true),
        (Direction::ToClient, Mode::Drop, 2000, true),
    ];
    for (dir, mode, millis, cut) in faults {
        tokio::time::sleep(Duration::from_millis(300)).await;
        tracing::info!(?dir, ?mode, millis, cut, "--- master link fault");
        proxy.blip(dir, mode, Duration::from_millis(millis)).await;
        if cut {
            proxy.cut();
        }
    }
    let ids = load.await??;
    rig.all_completed(&ids).await?;
    master.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuts_during_and_between_journal_writes_lose_nothing() -> anyhow::Result<()> {
    let rig = Rig::start().await?;
    let proxy = rig.proxy().await?;
    let master = rig.master("m1", Some(&proxy));
    let _workers = [rig.worker("w1", 8, None)];
    let load = steady(rig.client.clone(), "cut-", 300, Duration::from_millis(15));
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        tracing::info!(round, "--- hold the acknowledgements of journal writes, then cut");
        let acks = proxy.add_rule(Direction::ToClient, Action::Hold, |frame| {
            frame.payload.windows(26).any(|w| w == b"\"stream\":\"JETWORK_JOURNAL\"")
        });
        wait_until("a journal write in flight", Duration::from_secs(10), || async {
            proxy.matched(acks) > 0
        })
        .await?;
        proxy.cut();
        proxy.remove_rule(acks);
        tokio::time::sleep(Duration::from_millis(500)).await;
        tracing::info!(round, "--- cut between writes");
        proxy.cut();
    }
    let ids = load.await??;
    let audit = rig.all_completed(&ids).await?;
    let epochs: std::collections::BTreeSet<u64> = audit.epochs.iter().map(|(_, e)| *e).collect();
    assert!(epochs.len() >= 2, "a write with a lost acknowledgement ended the term: {epochs:?}");
    master.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_blackholed_past_its_lease_is_fenced_when_the_link_heals() -> anyhow::Result<()> {
    let rig = Rig::start().await?;
    let proxy = rig.proxy().await?;
    let m1 = rig.master("m1", Some(&proxy));
    let client = &rig.client;
    wait_until("m1 to lead", Duration::from_secs(30), || async {
        client.status().await.is_ok_and(|s| s.leader.starts_with("m1"))
    })
    .await?;
    let m2 = rig.master("m2", None);
    let _workers = [rig.worker("w1", 4, None), rig.worker("w2", 4, None)];
    let load = steady(rig.client.clone(), "hole-", 300, Duration::from_millis(15));
    tokio::time::sleep(Duration::from_millis(800)).await;

    tracing::info!("--- m1's link swallows everything, both ways, for three lease TTLs");
    proxy.set(Direction::ToServer, Mode::Hold);
    proxy.set(Direction::ToClient, Mode::Hold);
    wait_until("m2 to take over", Duration::from_secs(30), || async {
        client.status().await.is_ok_and(|s| s.leader.starts_with("m2"))
    })
    .await?;
    tokio::time::sleep(rig.fast.master.master.lease_ttl * 2).await;

    tracing::info!("--- the link heals: whatever m1 had sent arrives late and is refused");
    proxy.set(Direction::ToServer, Mode::Pass);
    proxy.set(Direction::ToClient, Mode::Pass);
    let ids = load.await??;
    rig.all_completed(&ids).await?;
    m1.stop().await;
    m2.stop().await;
    Ok(())
}

/// A deposed leader that had a result publication in flight and resumes after the results
/// stream's duplicate window: the subject fence refuses the second copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_resuming_after_the_duplicate_window_stores_nothing_twice(
) -> anyhow::Result<()> {
    let rig = Rig::start().await?;
    let proxy = rig.proxy().await?;
    let m1 = rig.master("m1", Some(&proxy));
    let client = &rig.client;
    wait_until("m1 to lead", Duration::from_secs(30), || async {
        client.status().await.is_ok_and(|s| s.leader.starts_with("m1"))
    })
    .await?;
    let m2 = rig.master("m2", None);

    tracing::info!("--- m1 journals a completion, but its result publication is held");
    let publications = proxy.add_rule(Direction::ToServer, Action::Hold, |frame| {
        frame.subject.starts_with(subjects::RESULTS_PREFIX)
    });
    let _worker = rig.worker("w1", 1, None);
    let queue = QueueName::default_queue();
    let id = WorkId::parse("once")?;
    rig.client.submit(&queue, Some(id.clone()), Bytes::from_static(b"6")).await?;
    let js = &rig.js;
    wait_until("the completion to be journaled", Duration::from_secs(30), || async {
        Audit::read(js).await.is_ok_and(|a| {
            a.events.iter().any(
                |(_, _, e)| matches!(e, Event::WorkCompleted { work_id, .. } if *work_id == id),
            )
        })
    })
    .await?;
    wait_until("the publication to be held", Duration::from_secs(10), || async {
        proxy.matched(publications) > 0
    })
    .await?;

    tracing::info!("--- m1 freezes (its link holds everything); m2 takes over and publishes");
    proxy.set(Direction::ToServer, Mode::Hold);
    proxy.set(Direction::ToClient, Mode::Hold);
    let result = rig.client.wait_result(&queue, &id, Duration::from_secs(30)).await?;
    assert_eq!(result.payload, Bytes::from_static(b"6 * 6 = 36"));
    // Deduplication by message id alone lasts only as long as the duplicate window: shorten
    // it and let it pass. m2 stops first: a leader puts changed stream settings back.
    m2.stop().await;
    let mut config =
        rig.js.get_stream(subjects::RESULTS_STREAM).await?.info().await?.config.clone();
    config.duplicate_window = Duration::from_millis(500);
    rig.js.update_stream(config).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    tracing::info!("--- m1 resumes: its publication reaches the stream late");
    proxy.remove_rule(publications);
    proxy.set(Direction::ToServer, Mode::Pass);
    proxy.set(Direction::ToClient, Mode::Pass);
    wait_until("the held bytes to reach the server", Duration::from_secs(10), || async {
        proxy.pending(Direction::ToServer) == 0
    })
    .await?;
    // A second copy would be stored within milliseconds; give it ample time to show.
    let second = wait_until("a second copy", Duration::from_secs(3), || async {
        Audit::read(js).await.is_ok_and(|a| a.results.get(&id).is_some_and(|r| r.len() > 1))
    })
    .await;
    assert!(second.is_err(), "the late publication was stored a second time");
    let audit = Audit::read(js).await?;
    audit.check()?;
    assert_eq!(audit.results[&id].len(), 1);
    m1.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blips_on_a_worker_link_lose_nothing() -> anyhow::Result<()> {
    let rig = Rig::start().await?;
    let proxy = rig.proxy().await?;
    let master = rig.master("m1", None);
    let _flaky = rig.worker("flaky", 4, Some(&proxy));
    let _steady = rig.worker("steady", 2, None);
    let load = steady(rig.client.clone(), "wl-", 300, Duration::from_millis(15));
    let faults = [
        (Direction::ToServer, Mode::Drop, 200, true),
        (Direction::ToClient, Mode::Drop, 500, true),
        (Direction::ToServer, Mode::Hold, 1000, false),
        (Direction::ToClient, Mode::Hold, 2000, false),
        (Direction::ToClient, Mode::Delay(Duration::from_millis(300)), 1000, false),
        (Direction::ToServer, Mode::Drop, 2000, true),
    ];
    for (dir, mode, millis, cut) in faults {
        tokio::time::sleep(Duration::from_millis(300)).await;
        tracing::info!(?dir, ?mode, millis, cut, "--- worker link fault");
        proxy.blip(dir, mode, Duration::from_millis(millis)).await;
        if cut {
            proxy.cut();
        }
    }
    let ids = load.await??;
    rig.all_completed(&ids).await?;
    master.stop().await;
    Ok(())
}
