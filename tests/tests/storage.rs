//! Storage no client can exhaust: each stream reserves its own cap on the server's store, the
//! submit stream and each queue refuse what is over theirs (nothing acknowledged is dropped),
//! the journal stays under its cap by snapshots and purges however long the load lasts,
//! `/readyz` says when a candidate cannot write, and a server that cannot reserve the caps
//! stops the master with the settings named. The caps here are small so that each flood takes
//! seconds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage, stream};
use bytes::Bytes;
use jetwork_frontend::ClientError;
use jetwork_shared::refusal::{self, Refusal};
use jetwork_shared::{subjects, QueueName, WorkId};
use jetwork_tests::{poll_for, wait_until, Fast, InProcess, Scraper};
use jetwork_worker::{square, Job, JobError};

const WITHIN: Duration = Duration::from_secs(60);
const MIB: i64 = 1 << 20;
/// A flood submission: as large as the submit stream takes with its headers (512 KiB).
const FLOOD_PAYLOAD: usize = 480 * 1024;

/// Sets the byte caps (and the per-queue cap) in every component's settings: any of them may
/// create the streams first.
fn caps(fast: &mut Fast, pending: i64, per_queue: i64, journal: i64, results: i64) {
    for streams in [&mut fast.master.streams, &mut fast.worker.streams, &mut fast.frontend.streams]
    {
        streams.max_pending_bytes = pending;
        streams.max_pending_per_queue = per_queue;
        streams.journal_max_bytes = journal;
        streams.results_max_bytes = results;
    }
}

/// Publishes `FLOOD_PAYLOAD`-byte submissions as a client would (each its own `Nats-Msg-Id`),
/// the `n`th on `subject(n)`, until JetStream refuses one: how many it stored, and its refusal.
async fn flood(
    js: &jetstream::Context,
    subject: impl Fn(usize) -> String,
) -> anyhow::Result<(usize, Refusal)> {
    let payload = Bytes::from(vec![b'f'; FLOOD_PAYLOAD]);
    for n in 0.. {
        let message = PublishMessage::build()
            .payload(payload.clone())
            .message_id(uuid::Uuid::new_v4().to_string().as_str());
        let stored = async { js.send_publish(subject(n), message).await?.await };
        if let Err(e) = stored.await {
            let refusal = Refusal::of(&e).ok_or_else(|| anyhow::anyhow!("not a refusal: {e}"))?;
            return Ok((n, refusal));
        }
    }
    unreachable!("the loop only ends by returning")
}

/// A client submitting squares to the served (default) queue every 20 ms until stopped: the
/// ids it got acknowledged, and the reasons of those refused.
struct ServedLoad {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(Vec<WorkId>, Vec<String>)>,
}

impl ServedLoad {
    fn start(client: jetwork_frontend::Client, prefix: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let (mut acked, mut refused) = (Vec::new(), Vec::new());
            let queue = QueueName::default_queue();
            for n in 1u32.. {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(id) = WorkId::parse(&format!("{prefix}-{n}")) else { break };
                match client.submit(&queue, Some(id.clone()), Bytes::from(n.to_string())).await {
                    Ok(_) => acked.push(id),
                    Err(e) => refused.push(e.to_string()),
                }
                // Pacing spreads the submissions over the flood; it is not a wait for anything.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (acked, refused)
        });
        ServedLoad { stop, task }
    }

    async fn stop(self) -> anyhow::Result<(Vec<WorkId>, Vec<String>)> {
        self.stop.store(true, Ordering::Relaxed);
        Ok(self.task.await?)
    }
}

/// Probes `/readyz` every 50 ms until stopped, keeping every answer that was not 200.
struct ReadyWatch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl ReadyWatch {
    fn start(probe: Scraper) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut unready = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                match probe.get("/readyz").await {
                    Ok(page) if page.status == 200 => {}
                    Ok(page) => unready.push(format!("{}: {}", page.status, page.body)),
                    Err(e) => unready.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            unready
        });
        ReadyWatch { stop, task }
    }

    async fn stop(self) -> anyhow::Result<Vec<String>> {
        self.stop.store(true, Ordering::Relaxed);
        Ok(self.task.await?)
    }
}

/// The flood, against a 1 GiB store: a client floods 480 KiB submissions into a queue
/// nobody serves until refused, then into many such queues until the submit stream is full.
/// Each refusal names its limit; the leader leads on (same epoch, ready throughout), its
/// journal keeps being written, the served queue's jobs run during and after the flood, and
/// nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_submissions_is_refused_while_the_leader_leads_on() -> anyhow::Result<()> {
    const PER_QUEUE: i64 = 200;
    let run = InProcess::build()
        .config("jetstream { max_file_store: 1GB }")
        .masters(&[])
        .tune(|fast| {
            caps(fast, 160 * MIB, PER_QUEUE, 64 * MIB, 64 * MIB);
            // The per-queue cap counts finished submissions kept for the dedup horizon: the
            // served queue's 50 a second stay under it with a short horizon.
            fast.master.streams.dedup_horizon = Duration::from_secs(1);
            fast.frontend.streams.dedup_horizon = Duration::from_secs(1);
        })
        .start()
        .await?;
    let (_m1, probe) = run.master_observed("m1").await?;
    run.await_leader("m1", WITHIN).await?;
    let epoch = run.client.status().await?.epoch;
    let _worker = run.worker_with("w1", |w| w.worker.concurrency = 4, square);
    let ready = ReadyWatch::start(probe);
    let served = ServedLoad::start(run.client.clone(), "served");
    let flooder = jetstream::new(run.server.connect().await?);

    tracing::info!("--- one queue nobody serves, flooded until refused");
    let (stored, refusal) = flood(&flooder, |_| "jetwork.submit.flood".to_owned()).await?;
    assert_eq!(stored, PER_QUEUE as usize, "the queue's cap (streams.max_pending_per_queue)");
    assert_eq!(refusal.code, refusal::STORE_FAILED, "{refusal}");
    assert_eq!(refusal.description, "maximum messages per subject exceeded");
    // The jetwork client names the setting behind it, and does not retry.
    let flood_queue = QueueName::parse("flood")?;
    let refused = run.client.submit(&flood_queue, None, Bytes::from_static(b"1")).await;
    let Err(ClientError::Refused { reason, .. }) = refused else {
        anyhow::bail!("expected a refusal, got {refused:?}");
    };
    assert!(reason.contains("maximum messages per subject exceeded"), "{reason}");
    assert!(reason.contains("streams.max_pending_per_queue"), "{reason}");
    let during = run.submit("during-the-flood", b"7").await?;
    assert_eq!(run.result(&during, WITHIN).await?.payload, Bytes::from_static(b"7 * 7 = 49"));

    tracing::info!("--- many queues nobody serves, flooded until the submit stream is full");
    let (stored, refusal) = flood(&flooder, |n| format!("jetwork.submit.flood-{}", n / 60)).await?;
    assert_eq!(refusal.code, refusal::STORE_FAILED, "{refusal}");
    assert_eq!(refusal.description, "maximum bytes exceeded");
    let submit = run.stream_info(subjects::SUBMIT_STREAM).await.expect("the submit stream");
    assert!(submit.state.bytes <= 160 << 20, "{} bytes", submit.state.bytes);
    assert!(stored >= 100, "the stream filled up to its cap: {stored} more stored");
    let journal = run.stream_info(subjects::JOURNAL_STREAM).await.expect("the journal");
    let full_at = journal.state.last_sequence;
    wait_until("the journal to be written after the flood", WITHIN, || async {
        let info = run.stream_info(subjects::JOURNAL_STREAM).await;
        info.is_some_and(|i| i.state.last_sequence > full_at)
    })
    .await?;

    tracing::info!("--- an operator purges the flooded queues; the served queue takes work again");
    let stream = run.js.get_stream(subjects::SUBMIT_STREAM).await?;
    for queue in
        std::iter::once("flood".to_owned()).chain((0..=stored / 60).map(|q| format!("flood-{q}")))
    {
        stream.purge().filter(format!("jetwork.submit.{queue}")).await?;
    }
    let after = run.submit("after-the-flood", b"8").await?;
    assert_eq!(run.result(&after, WITHIN).await?.payload, Bytes::from_static(b"8 * 8 = 64"));

    let (acked, refused) = served.stop().await?;
    // Served submissions were refused only while the stream was full, with its reason.
    for reason in &refused {
        assert!(reason.contains("streams.max_pending_bytes"), "{reason}");
    }
    assert!(acked.len() >= 20, "the served queue kept taking work: {}", acked.len());
    let status = run.client.status().await?;
    assert!(status.leader.starts_with("m1") && status.epoch == epoch, "no leader change");
    let unready = ready.stop().await?;
    assert!(unready.is_empty(), "the leader's /readyz said: {unready:?}");
    // Every acknowledged served job ran; the audit finds nothing lost or doubled.
    run.completed(&acked, WITHIN).await?;
    Ok(())
}

/// A long load with a small journal cap and an hour of retention: snapshots come every
/// quarter of the cap, and history before them is purged however young once the journal
/// holds half of it, so the leader's writes are never refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_stays_under_its_cap_under_sustained_load() -> anyhow::Result<()> {
    journal_under_its_cap(Duration::from_millis(100)).await
}

/// The same load with purges far apart (an hour): the leader must not outrun them. Once the
/// journal is three quarters full it holds new events back, writes a snapshot and purges
/// below it at once, instead of filling the journal (a refused write would end the term, and
/// a full journal would refuse every next leader's claim).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_outruns_its_purges_waits_for_room_instead_of_filling_the_journal(
) -> anyhow::Result<()> {
    journal_under_its_cap(Duration::from_secs(3600)).await
}

/// 4,000 jobs journaling 4 KiB results each under a 4 MiB journal cap, purges every
/// `purge_interval`: the journal never holds more than its cap, history is purged, and the
/// leader never changes.
async fn journal_under_its_cap(purge_interval: Duration) -> anyhow::Result<()> {
    const CAP: i64 = 4 * MIB;
    const JOBS: u32 = 4000;
    let run = InProcess::start(move |fast| {
        caps(fast, 256 * MIB, -1, CAP, 256 * MIB);
        fast.master.streams.journal_retention = Duration::from_secs(3600);
        let m = &mut fast.master.master;
        // Only the journal's growth calls for snapshots here.
        m.snapshot_every = 1_000_000;
        m.snapshot_interval = Duration::from_secs(3600);
        m.purge_interval = purge_interval;
    })
    .await?;
    run.await_leader("m1", WITHIN).await?;
    let epoch = run.client.status().await?.epoch;
    // Each job journals a 4 KiB result: the load writes several times the cap.
    let _worker = run.worker_with(
        "w1",
        |w| w.worker.concurrency = 64,
        |_: Job| async { Ok::<_, JobError>(Bytes::from(vec![b'r'; 4096])) },
    );
    let largest = Arc::new(Mutex::new((0u64, 1u64)));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (js, largest, sampling) = (run.js.clone(), largest.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                if let Ok(stream) = js.get_stream(subjects::JOURNAL_STREAM).await {
                    let state = &stream.cached_info().state;
                    let mut largest = largest.lock().expect("not poisoned");
                    *largest = (largest.0.max(state.bytes), state.first_sequence);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let mut ids = Vec::new();
    for chunk in (1..=JOBS).collect::<Vec<_>>().chunks(200) {
        let submits = chunk.iter().map(|n| {
            let id = WorkId::parse(&format!("j{n}")).expect("a work id");
            let (client, queue) = (&run.client, &run.queue);
            async move { client.submit(queue, Some(id.clone()), Bytes::from("x")).await.map(|_| id) }
        });
        for id in futures::future::join_all(submits).await {
            ids.push(id?);
        }
    }
    run.completed(&ids, Duration::from_secs(180)).await?;
    sampling.store(false, Ordering::Relaxed);
    sampler.await?;

    let (peak, first) = *largest.lock().expect("not poisoned");
    let journal = run.stream_info(subjects::JOURNAL_STREAM).await.expect("the journal");
    tracing::info!(peak, cap = CAP, first, last = journal.state.last_sequence, "journal size");
    assert!(peak <= CAP as u64, "the journal held {peak} bytes, over its cap");
    assert!(first > 1, "history younger than journal_retention was purged to stay under the cap");
    let status = run.client.status().await?;
    assert!(status.leader.starts_with("m1") && status.epoch == epoch, "no write was refused");
    Ok(())
}

/// The journal fills (here a foreign client's writes fill it to its cap): the leader's next
/// write is refused, and from then on the candidate says it is not ready, naming the journal
/// and JetStream's reason, whatever it tries. Given a larger cap, a master leads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_says_when_the_journal_cannot_be_written() -> anyhow::Result<()> {
    let mut run = InProcess::build()
        .masters(&[])
        .tune(|fast| caps(fast, 256 * MIB, -1, MIB, 256 * MIB))
        .start()
        .await?;
    let (m1, probe) = run.master_observed("m1").await?;
    run.await_leader("m1", WITHIN).await?;
    let _worker = run.worker("w1", square);
    let id = run.submit("before", b"3").await?;
    run.result(&id, WITHIN).await?;
    wait_until("m1 to be ready", WITHIN, || async { probe.status("/readyz").await == 200 }).await?;

    tracing::info!("--- a foreign client fills the journal to its cap, to the last byte");
    let foreign = jetstream::new(run.server.connect().await?);
    for size in [64 * 1024, 4096, 256, 1] {
        let payload = Bytes::from(vec![b'j'; size]);
        let refusal = loop {
            let sent =
                async { foreign.publish("jetwork.journal.junk", payload.clone()).await?.await };
            if let Err(e) = sent.await {
                break Refusal::of(&e).ok_or_else(|| anyhow::anyhow!("not a refusal: {e}"))?;
            }
        };
        assert_eq!(refusal.description, "maximum bytes exceeded");
    }

    let seen = Mutex::new(String::new());
    wait_until("m1 to say it cannot write the journal", WITHIN, || async {
        let Ok(page) = probe.get("/readyz").await else { return false };
        *seen.lock().expect("not poisoned") = page.body.clone();
        page.status == 503
            && page.body.contains("cannot write the journal")
            && page.body.contains("maximum bytes exceeded")
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}; last /readyz: {}", seen.lock().expect("not poisoned")))?;
    // Whatever it tries (the lease is won again and again), it stays not ready: sampled for
    // a second.
    for _ in 0..20 {
        assert_eq!(probe.status("/readyz").await, 503, "a candidate that cannot write");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    tracing::info!("--- given a larger cap, a master leads again");
    m1.stop().await;
    let mut settings = run.fast.master.clone();
    settings.streams.journal_max_bytes = 64 * MIB;
    let (listener, addr) = jetwork_tests::local_listener().await?;
    let _m2 = jetwork_tests::inproc::spawn_master_with("m2", settings, Some(listener));
    run.await_leader("m2", WITHIN).await?;
    let probe = Scraper { addr };
    wait_until("m2 to be ready", WITHIN, || async { probe.status("/readyz").await == 200 }).await?;
    let id = run.submit("after", b"4").await?;
    assert_eq!(run.result(&id, WITHIN).await?.payload, Bytes::from_static(b"4 * 4 = 16"));
    run.stop_masters().await;
    run.audit().await?;
    Ok(())
}

/// The outage: the server's whole store fills up (here another stream without a cap),
/// so JetStream refuses the lease and the journal alike. Both candidates say they are not
/// ready, with the server's reason (they said "ready: standing by" before); once there is room
/// again, a write goes through and both are ready again, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_a_store_that_fills_up_and_empties() -> anyhow::Result<()> {
    let run = InProcess::build()
        .config("jetstream { max_file_store: 128MB }")
        .masters(&[])
        .tune(|fast| caps(fast, 16 * MIB, -1, 16 * MIB, 16 * MIB))
        .start()
        .await?;
    let (_m1, p1) = run.master_observed("m1").await?;
    run.await_leader("m1", WITHIN).await?;
    let (_m2, p2) = run.master_observed("m2").await?;
    let _worker = run.worker("w1", square);
    for probe in [p1, p2] {
        wait_until("both to be ready", WITHIN, || async { probe.status("/readyz").await == 200 })
            .await?;
    }

    tracing::info!("--- another stream, without a cap, fills the server's store");
    let admin = jetstream::new(run.server.connect().await?);
    admin
        .create_stream(stream::Config {
            name: "FILLER".to_owned(),
            subjects: vec!["filler.>".to_owned()],
            ..Default::default()
        })
        .await?;
    let (_, refusal) = flood(&admin, |_| "filler.x".to_owned()).await?;
    assert_eq!(refusal.code, refusal::INSUFFICIENT_RESOURCES, "{refusal}");

    // The leader's write is refused with the server's words; the standby sees the lease key
    // neither renewed nor expired (expiring it is a write the server refuses too).
    let says = [("m1", p1, "insufficient resources"), ("m2", p2, "cannot write the lease")];
    for (name, probe, reason) in says {
        let seen = Mutex::new(String::new());
        wait_until(&format!("{name} to say it cannot write"), WITHIN, || async {
            let Ok(page) = probe.get("/readyz").await else { return false };
            *seen.lock().expect("not poisoned") = page.body.clone();
            page.status == 503 && page.body.contains(reason)
        })
        .await
        .map_err(|e| {
            anyhow::anyhow!("{e}; last /readyz: {}", seen.lock().expect("not poisoned"))
        })?;
    }

    tracing::info!("--- room again: both are ready again, and work runs");
    admin.delete_stream("FILLER").await?;
    for probe in [p1, p2] {
        wait_until("both to be ready again", WITHIN, || async {
            probe.status("/readyz").await == 200
        })
        .await?;
    }
    let id = run.submit("after", b"5").await?;
    assert_eq!(run.result(&id, WITHIN).await?.payload, Bytes::from_static(b"5 * 5 = 25"));
    run.audit().await?;
    Ok(())
}

/// A server whose store cannot hold the caps: the master stops at once, naming the settings
/// and the server's setting to change, instead of running with streams any flood could fill;
/// `jetwork-frontend init` says the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_too_small_for_the_caps_stops_the_master_naming_the_settings() -> anyhow::Result<()>
{
    let run = InProcess::build()
        .config("jetstream { max_file_store: 64MB }")
        .masters(&[])
        .start()
        .await?;
    let settings = run.fast.master.clone();
    let ran = tokio::time::timeout(WITHIN, jetwork_master::run(settings, std::future::pending()));
    let error = ran.await?.expect_err("the master must not run").to_string();
    for named in
        ["insufficient storage resources available", "streams.journal_max_bytes", "max_file_store"]
    {
        assert!(error.contains(named), "{named} not in: {error}");
    }
    let init = run.client.init().await.expect_err("the streams cannot be created").to_string();
    assert!(
        init.contains("streams.journal_max_bytes") && init.contains("max_file_store"),
        "{init}"
    );
    Ok(())
}

/// Two candidates started together on a store with room for the streams' reservations once
/// (nats.conf's 8 GB against 6.4 GB of caps): both run, and the standby takes over. Running
/// the README's quickstart, the second one's create was refused for lack of room (10047)
/// although the first had just created the stream, and that candidate stopped (1 start in 3
/// with the shipped nats.conf; not reproduced here, where the harness's server answers
/// faster): now it asks again, an update that reserves nothing new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_masters_started_together_on_a_store_with_room_for_the_caps_once_both_run(
) -> anyhow::Result<()> {
    // The processes' caps: 3 × 256 MiB and the lease's: room for them once, not twice.
    let run =
        InProcess::build().config("jetstream { max_file_store: 1GB }").masters(&[]).start().await?;
    let procs = run.procs()?;
    let mut candidates = [procs.master("m1")?, procs.master("m2")?];
    let client = &run.client;
    let leader =
        poll_for("a leader", WITHIN, || async { client.status().await.ok().map(|s| s.leader) })
            .await?;
    // A candidate refused the streams stops within a second of starting; give it three.
    let settled = tokio::time::Instant::now() + Duration::from_secs(3);
    wait_until("three seconds of both running", WITHIN, || {
        let up = tokio::time::Instant::now() >= settled;
        async move { up }
    })
    .await?;
    for candidate in &mut candidates {
        let name = candidate.name().to_owned();
        assert!(candidate.is_running(), "{name} stopped:\n{}", candidate.logs());
    }
    let (lead, stand_by) = match leader.starts_with("m1") {
        true => (0, "m2"),
        false => (1, "m1"),
    };
    candidates[lead].kill9()?;
    run.await_leader(stand_by, WITHIN).await?;
    Ok(())
}
