//! Network faults on one process's link to nats-server, under load, through a
//! [`FaultProxy`]: bytes dropped, held or delayed in either direction for 0.1–2 s, connections
//! cut during a journal write and between writes, a master's link blackholed past its lease,
//! and single messages lost. Every scenario ends with the journal/results/submit audit:
//! everything acknowledged completed, exactly one stored result per run, nothing finished
//! twice, no read position past an untaken submission, no write from a deposed master.

use std::sync::Arc;
use std::time::Duration;

use jetwork_master::core::{Event, PublicationKey};
use jetwork_shared::subjects;
use jetwork_tests::inproc::Task;
use jetwork_tests::load::steady;
use jetwork_tests::proxy::{Action, Direction, FaultProxy, Mode};
use jetwork_tests::{wait_until, Audit, InProcess, LiveResults};
use jetwork_worker::{square, Job};
use tokio::sync::Semaphore;

const SETTLE: Duration = Duration::from_secs(120);

/// A squaring worker with `concurrency` slots, connected through `via` (or directly).
fn squarer(run: &InProcess, name: &str, concurrency: u32, via: Option<&FaultProxy>) -> Task {
    run.worker_with(
        name,
        |settings| {
            settings.worker.concurrency = concurrency;
            if let Some(proxy) = via {
                settings.nats.url = proxy.url();
            }
        },
        square,
    )
}

/// A fault on a link: which direction, what happens to its bytes, for how many milliseconds,
/// and whether every connection is cut afterwards.
type Fault = (Direction, Mode, u64, bool);

/// Inflicts `faults` on the link through `proxy`, one after another, 300ms apart.
async fn inflict(proxy: &FaultProxy, link: &str, faults: &[Fault]) {
    for &(dir, mode, millis, cut) in faults {
        // Spaces the faults out under the load; not a wait for anything.
        tokio::time::sleep(Duration::from_millis(300)).await;
        tracing::info!(?dir, ?mode, millis, cut, link, "--- link fault");
        proxy.blip(dir, mode, Duration::from_millis(millis)).await;
        if cut {
            proxy.cut();
        }
    }
}

/// The field finding behind this suite: a blip that drops what the server sends the master,
/// then a cut, while submissions arrive and the master is otherwise idle. The reader's
/// consumer kept going after the lost deliveries and they were never run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_lost_in_a_blip_on_the_master_link_are_read_again() -> anyhow::Result<()> {
    let run = InProcess::build()
        // A lease long enough to outlive the blips (the default is 10s): the term goes on, so
        // nothing but the reader itself can notice the lost deliveries.
        .tune(|fast| fast.master.master.lease_ttl = Duration::from_secs(10))
        .through_proxy()
        .start()
        .await?;
    let proxy = run.master_link()?;
    // One slot, taken by a job held until the end: the master only reads ahead and accepts.
    let gate = Arc::new(Semaphore::new(0));
    let held = gate.clone();
    let handler = move |job: Job| {
        let held = held.clone();
        async move {
            if job.payload.as_ref() == b"hold" {
                let _permit = held.acquire().await.map_err(|e| e.to_string())?;
            }
            Ok(job.payload)
        }
    };
    let _worker = run.worker_with("w1", |s| s.worker.concurrency = 1, handler);
    let first = run.submit("held", b"hold").await?;
    let js = &run.js;
    wait_until("the held job to start", Duration::from_secs(30), || async {
        Audit::read(js).await.is_ok_and(|a| !a.attempts(&first).is_empty())
    })
    .await?;

    let mut ids = vec![first];
    for round in 0..3 {
        tracing::info!(round, "--- drop what the server sends the master for 0.6s, then cut");
        let load =
            steady(run.client.clone(), ["a", "b", "c"][round], 11, Duration::from_millis(40));
        tokio::time::sleep(Duration::from_millis(100)).await;
        proxy.blip(Direction::ToClient, Mode::Drop, Duration::from_millis(600)).await;
        proxy.cut();
        ids.extend(load.await??);
    }

    tracing::info!("--- release the held job: every acknowledged submission runs");
    gate.add_permits(1);
    let audit = run.completed(&ids, SETTLE).await?;
    assert!(proxy.connections() >= 4, "the master reconnected after each cut");
    assert_eq!(audit.results.len(), ids.len());
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blips_in_each_direction_of_the_master_link_lose_nothing() -> anyhow::Result<()> {
    let run = InProcess::build().through_proxy().start().await?;
    let proxy = run.master_link()?;
    let _workers = [squarer(&run, "w1", 4, None), squarer(&run, "w2", 4, None)];
    let load = steady(run.client.clone(), "blip-", 400, Duration::from_millis(15));
    let faults = [
        (Direction::ToClient, Mode::Drop, 100, true),
        (Direction::ToServer, Mode::Drop, 300, true),
        (Direction::ToClient, Mode::Hold, 1000, false),
        (Direction::ToServer, Mode::Hold, 2000, false),
        (Direction::ToClient, Mode::Delay(Duration::from_millis(200)), 1000, false),
        (Direction::ToServer, Mode::Drop, 1500, true),
        (Direction::ToClient, Mode::Drop, 2000, true),
    ];
    inflict(proxy, "master", &faults).await;
    let ids = load.await??;
    run.completed(&ids, SETTLE).await?;
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuts_during_and_between_journal_writes_lose_nothing() -> anyhow::Result<()> {
    let run = InProcess::build().through_proxy().start().await?;
    let proxy = run.master_link()?;
    let _workers = [squarer(&run, "w1", 8, None)];
    let load = steady(run.client.clone(), "cut-", 300, Duration::from_millis(15));
    // A publish acknowledgement names the stream it stored into.
    let journal_ack = format!("\"stream\":\"{}\"", subjects::JOURNAL_STREAM);
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        tracing::info!(round, "--- hold the acknowledgements of journal writes, then cut");
        let ack = journal_ack.clone();
        let acks = proxy.add_rule(Direction::ToClient, Action::Hold, move |frame| {
            frame.payload.windows(ack.len()).any(|w| w == ack.as_bytes())
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
    let audit = run.completed(&ids, SETTLE).await?;
    // The stream says what landed: a lost acknowledgement no longer ends the term.
    let epochs: std::collections::BTreeSet<u64> = audit.epochs.iter().map(|(_, e)| *e).collect();
    assert_eq!(epochs.len(), 1, "a write with a lost acknowledgement ended the term: {epochs:?}");
    run.stop().await;
    Ok(())
}

/// The chaos soak's finding: every 2–3 s freeze of the leader's link cost ~12 s of dispatch
/// (the leader stepped down on a lost journal acknowledgement, then could not release its
/// lease). Now the leader asks the stream what landed, sends the rest again and leads on: a
/// freeze costs its own length. Then blips that lose what was sent (the acknowledgements, the
/// journal writes themselves): the term still goes on.
///
/// A blip that loses bytes also breaks the protocol stream mid-message: one end waits for the
/// rest of a message that never comes, and the client only notices by its unanswered pings
/// (three `nats.ping_interval`s, 6 s), then reconnects. So one such blip can keep the link
/// useless for its length plus 6 s, after up to a third of the TTL since the last renewal:
/// the TTL here (20 s) covers that with room, and each lossy blip waits for the lease to be
/// renewed after the one before, so the two never add up into one longer outage (which a
/// CI run once saw end a 10 s term).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_blip_of_the_leaders_link_costs_its_length_not_the_term() -> anyhow::Result<()> {
    let ttl = Duration::from_secs(20);
    let run = InProcess::build()
        .tune(move |fast| fast.master.master.lease_ttl = ttl)
        .through_proxy()
        .start()
        .await?;
    let proxy = run.master_link()?;
    run.await_leader("m1", Duration::from_secs(30)).await?;
    let _workers = [squarer(&run, "w1", 8, None)];
    let watcher = run.server.connect().await?;
    let live = LiveResults::start(&watcher).await?;
    let load = steady(run.client.clone(), "short-", 600, Duration::from_millis(15));
    let from = tokio::time::Instant::now() + Duration::from_millis(500);
    let blip = Duration::from_millis(2500);
    for dir in [Direction::ToClient, Direction::ToServer] {
        // Spaces the blips out under the load; not a wait for anything.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        tracing::info!(?dir, "--- the leader's link freezes for 2.5s");
        proxy.blip(dir, Mode::Hold, blip).await;
    }
    let ids = load.await??;
    let frozen = live.longest_gap(from, tokio::time::Instant::now());
    eprintln!("longest gap between live results across 2.5s freezes: {frozen:?}");
    assert!(frozen < blip + Duration::from_secs(1), "a {blip:?} freeze paused dispatch {frozen:?}");

    let lease = run.js.get_key_value(subjects::LEASE_BUCKET).await?;
    let load = steady(run.client.clone(), "lossy-", 200, Duration::from_millis(15));
    for dir in [Direction::ToClient, Direction::ToServer] {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let before = lease_revision(&lease).await?;
        tracing::info!(?dir, "--- the leader's link loses everything for 2.5s");
        proxy.blip(dir, Mode::Drop, blip).await;
        wait_until("the leader to renew its lease after the blip", ttl, || async {
            lease_revision(&lease).await.is_ok_and(|now| now > before)
        })
        .await?;
    }
    let mut all = ids;
    all.extend(load.await??);
    let audit = run.completed(&all, SETTLE).await?;
    let epochs: std::collections::BTreeSet<u64> = audit.epochs.iter().map(|(_, e)| *e).collect();
    assert_eq!(epochs.len(), 1, "a blip shorter than the lease ended the term: {epochs:?}");
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_blackholed_past_its_lease_is_fenced_when_the_link_heals() -> anyhow::Result<()> {
    let run = InProcess::build().through_proxy().start().await?;
    let proxy = run.master_link()?;
    run.await_leader("m1", Duration::from_secs(30)).await?;
    let m2 = run.master("m2");
    let _workers = [squarer(&run, "w1", 4, None), squarer(&run, "w2", 4, None)];
    let load = steady(run.client.clone(), "hole-", 300, Duration::from_millis(15));
    tokio::time::sleep(Duration::from_millis(800)).await;

    tracing::info!("--- m1's link swallows everything, both ways, for three lease TTLs");
    proxy.set(Direction::ToServer, Mode::Hold);
    proxy.set(Direction::ToClient, Mode::Hold);
    run.await_leader("m2", Duration::from_secs(30)).await?;
    // The deliberate length of the fault, not a wait for anything.
    tokio::time::sleep(run.fast.master.master.lease_ttl * 2).await;

    tracing::info!("--- the link heals: whatever m1 had sent arrives late and is refused");
    proxy.set(Direction::ToServer, Mode::Pass);
    proxy.set(Direction::ToClient, Mode::Pass);
    let ids = load.await??;
    run.completed(&ids, SETTLE).await?;
    run.stop().await;
    m2.stop().await;
    Ok(())
}

/// A deposed leader that had a result publication in flight and resumes after the results
/// stream's duplicate window: the subject fence refuses the second copy, and a live
/// subscriber sees the result once (it used to see the refused copy too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_resuming_after_the_duplicate_window_stores_nothing_twice(
) -> anyhow::Result<()> {
    let run = InProcess::build().through_proxy().start().await?;
    let proxy = run.master_link()?;
    let watcher = run.server.connect().await?;
    let live = LiveResults::start(&watcher).await?;
    run.await_leader("m1", Duration::from_secs(30)).await?;
    let m2 = run.master("m2");

    tracing::info!("--- m1 journals a completion, but its result publication is held");
    let publications = proxy.add_rule(Direction::ToServer, Action::Hold, |frame| {
        frame.subject.starts_with(subjects::OUTCOMES_PREFIX)
    });
    let _worker = squarer(&run, "w1", 1, None);
    let id = run.submit("once", b"6").await?;
    let js = &run.js;
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
    let result = run.result(&id, Duration::from_secs(30)).await?;
    assert_eq!(result.payload, bytes::Bytes::from_static(b"6 * 6 = 36"));
    // Deduplication by message id alone lasts only as long as the duplicate window: shorten
    // it and let it pass. m2 stops first: a leader puts changed stream settings back.
    m2.stop().await;
    let mut config =
        run.js.get_stream(subjects::RESULTS_STREAM).await?.info().await?.config.clone();
    config.duplicate_window = Duration::from_millis(500);
    run.js.update_stream(config).await?;
    // Lets the shortened window pass: time passing is the point, not a condition.
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
    let audit = run.audit().await?;
    assert_eq!(audit.results[&id].len(), 1);
    assert_eq!(live.count(), 1, "live subscribers saw {:?}", live.duplicates());
    run.stop().await;
    Ok(())
}

/// An outcome the stream stored whose acknowledgement is lost on its way to the master: the
/// master's wait for it ends (`nats.request_timeout`), it reads the subject, finds its own
/// outcome there and records it as published. Stored once, seen live once, and the next
/// outcome goes out as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_whose_acknowledgement_is_lost_is_stored_and_recorded_once() -> anyhow::Result<()>
{
    let run = InProcess::build().through_proxy().start().await?;
    let proxy = run.master_link()?;
    let watcher = run.server.connect().await?;
    let live = LiveResults::start(&watcher).await?;
    run.await_leader("m1", Duration::from_secs(30)).await?;
    let lost = proxy.add_rule(Direction::ToClient, Action::Drop, |frame| {
        frame
            .payload
            .starts_with(format!(r#"{{"stream":"{}""#, subjects::RESULTS_STREAM).as_bytes())
    });
    let _worker = squarer(&run, "w1", 1, None);
    let id = run.submit("unacked", b"7").await?;
    wait_until("the acknowledgement to be lost", Duration::from_secs(30), || async {
        proxy.matched(lost) > 0
    })
    .await?;
    proxy.remove_rule(lost);
    let result = run.result(&id, Duration::from_secs(30)).await?;
    assert_eq!(result.payload, bytes::Bytes::from_static(b"7 * 7 = 49"));
    let js = &run.js;
    let key = PublicationKey::Result(id.clone());
    wait_until("the publication to be recorded", Duration::from_secs(30), || async {
        Audit::read(js).await.is_ok_and(|a| {
            a.events
                .iter()
                .any(|(_, _, e)| matches!(e, Event::Published { keys } if keys.contains(&key)))
        })
    })
    .await?;
    let next = run.submit("acked", b"8").await?;
    run.result(&next, Duration::from_secs(30)).await?;
    let audit = run.audit().await?;
    assert_eq!(audit.results[&id].len(), 1);
    assert_eq!(live.count(), 2, "live subscribers saw {:?}", live.duplicates());
    run.stop().await;
    Ok(())
}

/// A grant lost on its way to the worker (a blip, a reconnect, a request the worker gave up
/// on) used to hold its items until their deadline: the master counted them as running there.
/// The worker's next request says what it holds, and the master hands the rest out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_lost_on_its_way_is_handed_out_again_at_the_next_request() -> anyhow::Result<()> {
    let run = InProcess::build()
        .tune(|fast| {
            // Long enough that waiting out the deadline would show: 60s.
            fast.master.master.work_timeout = Duration::from_secs(60);
            fast.master.master.lease_ttl = Duration::from_secs(10);
        })
        .start()
        .await?;
    let proxy = run.proxy().await?;
    let lost = proxy.add_rule(Direction::ToClient, Action::Drop, |frame| {
        frame.payload.windows(b"lost-grant".len()).any(|w| w == b"lost-grant")
    });
    let _worker = squarer(&run, "w1", 2, Some(&proxy));
    let id = run.submit("lost-grant", b"7").await?;
    wait_until("the grant to be lost", Duration::from_secs(30), || async {
        proxy.matched(lost) > 0
    })
    .await?;
    proxy.remove_rule(lost);
    let started = std::time::Instant::now();
    let result = run.result(&id, Duration::from_secs(30)).await?;
    assert_eq!(result.payload, bytes::Bytes::from_static(b"7 * 7 = 49"));
    assert_eq!(result.attempt, 1, "the same attempt, handed out again");
    eprintln!("lost grant recovered after {:?}", started.elapsed());
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blips_on_a_worker_link_lose_nothing() -> anyhow::Result<()> {
    let run = InProcess::start(|_| {}).await?;
    let proxy = run.proxy().await?;
    let _flaky = squarer(&run, "flaky", 4, Some(&proxy));
    let _steady = squarer(&run, "steady", 2, None);
    let load = steady(run.client.clone(), "wl-", 300, Duration::from_millis(15));
    let faults = [
        (Direction::ToServer, Mode::Drop, 200, true),
        (Direction::ToClient, Mode::Drop, 500, true),
        (Direction::ToServer, Mode::Hold, 1000, false),
        (Direction::ToClient, Mode::Hold, 2000, false),
        (Direction::ToClient, Mode::Delay(Duration::from_millis(300)), 1000, false),
        (Direction::ToServer, Mode::Drop, 2000, true),
    ];
    inflict(&proxy, "worker", &faults).await;
    let ids = load.await??;
    run.completed(&ids, SETTLE).await?;
    run.stop().await;
    Ok(())
}

/// The lease key's revision now: each renewal by the leader advances it.
async fn lease_revision(lease: &async_nats::jetstream::kv::Store) -> anyhow::Result<u64> {
    let entry = lease.entry(subjects::LEASE_KEY).await?;
    entry.map(|e| e.revision).ok_or_else(|| anyhow::anyhow!("the lease key is gone"))
}

/// Which of m1's journal writes the proxy drops on their way to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lost {
    /// Every one: nothing m1 decides is recorded.
    Every,
    /// Those recording a completion: its grants are recorded, its acceptances are not.
    Completions,
}

/// Early replies (`master.early_replies`, on by default): the leader answers a worker's
/// request or report before the journal write recording its decision lands. Here m1's writes
/// (`Lost`) never land, so the grants it sends and the results it accepts are recorded nowhere,
/// or only the grants; m1 dies and m2 replays what is stored. Every job must still complete,
/// once in the journal, with one stored result, and at once, in its first attempt: m2 hands
/// out again each item m1's journal does not show as finished (an unrecorded grant under a
/// token of its own, a recorded one under its recorded token), and the worker takes that as a
/// new hand-out (it runs the job again, or sends the outcome it still holds under the new
/// token) rather than refusing a second grant of an attempt it already ran until the attempt's
/// deadline passes. With early replies off, m1 hands out nothing while its writes are lost, and
/// each job runs once, under m2.
async fn unrecorded_answers_then_the_leader_dies(early: bool, lost: Lost) -> anyhow::Result<()> {
    let mut run = InProcess::build()
        .tune(move |fast| {
            fast.master.master.early_replies = early;
            // Longer than the takeover: a recorded attempt m2 hands out again must complete
            // in it, not time out into the next.
            fast.master.master.work_timeout = Duration::from_secs(10);
        })
        .through_proxy()
        .start()
        .await?;
    let proxy = run.master_link()?;
    let runs: Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>> = Arc::default();
    let counted = runs.clone();
    let handler = move |job: Job| {
        let counted = counted.clone();
        async move {
            if let Ok(mut runs) = counted.lock() {
                *runs.entry(job.work_id.as_str().to_owned()).or_default() += 1;
            }
            Ok(job.payload)
        }
    };
    let _worker = run.worker_with("w1", |s| s.worker.concurrency = 4, handler);
    tracing::info!("--- a first job, so w1 is registered with m1 before its writes are lost");
    let warm = run.submit("unrecorded-warm", b"warm").await?;
    run.result(&warm, Duration::from_secs(30)).await?;

    tracing::info!(?lost, "--- m1's journal writes are dropped on their way to the server");
    let writes = proxy.add_rule(Direction::ToServer, Action::Drop, move |frame| {
        frame.subject.starts_with("jetwork.journal.")
            && (lost == Lost::Every || contains(&frame.payload, b"WorkCompleted"))
    });
    const IDS: [&str; 8] = ["ur-1", "ur-2", "ur-3", "ur-4", "ur-5", "ur-6", "ur-7", "ur-8"];
    let mut ids = Vec::new();
    for id in IDS {
        ids.push(run.submit(id, b"x").await?);
    }
    let ran = |runs: &Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>| {
        runs.lock().map(|r| IDS.iter().filter(|id| r.contains_key(**id)).count()).unwrap_or(0)
    };
    if !early {
        // Sent again after each second without an acknowledgement: by the second copy, early
        // answers would long have started every job.
        wait_until("m1 to send a lost write twice", Duration::from_secs(30), || async {
            proxy.matched(writes) >= 2
        })
        .await?;
        assert_eq!(ran(&runs), 0, "m1 answered before its writes landed");
    } else if lost == Lost::Every {
        wait_until("every job to run under m1", Duration::from_secs(30), || async {
            ran(&runs) == IDS.len()
        })
        .await?;
    } else {
        // m1 stops answering early once a lost write and another wait: some jobs ran.
        wait_until("a completion's write to be lost", Duration::from_secs(30), || async {
            proxy.matched(writes) >= 1 && ran(&runs) > 0
        })
        .await?;
    }
    let audit = Audit::read(&run.js).await?;
    let recorded = ids.iter().filter(|id| !audit.attempts(id).is_empty()).count();
    match lost {
        Lost::Every => assert_eq!(recorded, 0, "m1's hand-outs were journaled"),
        // Otherwise nothing here tests a recorded grant handed out again.
        Lost::Completions => assert!(recorded > 0, "none of m1's hand-outs was journaled"),
    }
    let completed = audit.events.iter().any(
        |(_, _, e)| matches!(e, Event::WorkCompleted { work_id, .. } if ids.contains(work_id)),
    );
    assert!(!completed, "a completion m1 accepted was journaled");

    tracing::info!("--- m1 dies; m2 replays and takes over");
    // Its connection goes with it; the rule stays, so nothing it had queued can land late.
    run.crash_masters();
    let m2 = run.master("m2");
    let audit = run.completed(&ids, SETTLE).await?;
    for id in &ids {
        assert_eq!(audit.results.get(id).map(Vec::len), Some(1), "{id:?}: one stored result");
        // A worker that refused m2's grant of attempt 1 would leave it to time out and
        // complete attempt 2.
        assert_eq!(audit.attempts(id), [1], "{id:?}: attempt 1, handed out again by m2, done");
    }
    if !early {
        let runs = runs.lock().map(|r| r.clone()).unwrap_or_default();
        for id in IDS {
            let n = runs.get(id).copied().unwrap_or(0);
            assert_eq!(n, 1, "{id} ran {n} times");
        }
    }
    run.stop().await;
    m2.stop().await;
    Ok(())
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_answers_a_leader_never_recorded_lose_nothing_when_it_dies() -> anyhow::Result<()> {
    unrecorded_answers_then_the_leader_dies(true, Lost::Every).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_acceptances_of_recorded_grants_lose_nothing_when_the_leader_dies(
) -> anyhow::Result<()> {
    unrecorded_answers_then_the_leader_dies(true, Lost::Completions).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_early_replies_a_leader_whose_writes_are_lost_hands_out_nothing(
) -> anyhow::Result<()> {
    unrecorded_answers_then_the_leader_dies(false, Lost::Every).await
}
