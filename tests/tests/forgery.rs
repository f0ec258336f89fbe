//! Clients that pretend: a forged election announcement, reports without an attempt's token,
//! a registration under a live worker's id, a flood of fake workers, a write into the journal,
//! changed stream settings, revocations of a running job from another epoch or for another
//! attempt, "stored submission" notices naming what is not a priority submission of the queue. On a NATS without permissions (the worst case) each gets refused or
//! noticed, and nobody else's work is lost, stalled or forged.

use std::time::Duration;

use bytes::Bytes;
use jetwork_frontend::ResultStatus;
use jetwork_shared::jobs::{JobState, Revoke};
use jetwork_shared::protocol::{
    MasterElected, OutcomeStatus, RegisterWorker, Registered, Report, ReportReply, RequestWork,
    StatusQuery, WorkGrant,
};
use jetwork_shared::{codec, subjects, QueueName, Token, WorkId, WorkerId};
use jetwork_tests::{call_raw, wait_until, Audit, InProcess};
use jetwork_worker::square;

/// Calls a master endpoint with a MessagePack body; the micro-service error, if any, as text.
async fn call<T: serde::Serialize, R: serde::de::DeserializeOwned>(
    nats: &async_nats::Client,
    subject: &str,
    body: &T,
) -> Result<R, String> {
    let payload = codec::encode(body).map_err(|e| e.to_string())?;
    let reply = call_raw(nats, subject, payload).await.map_err(|e| e.to_string())?;
    codec::decode(&reply.map_err(|refused| refused.to_string())?).map_err(|e| e.to_string())
}

fn register(worker: &WorkerId, session: Token) -> RegisterWorker {
    RegisterWorker {
        worker_id: worker.clone(),
        session,
        queues: vec![QueueName::default_queue()],
        capacity: 1,
        running: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_election_with_a_huge_epoch_does_not_stall_the_workers() -> anyhow::Result<()> {
    let run = InProcess::start(|_| {}).await?;
    let _workers = [run.worker("w1", square), run.worker("w2", square)];
    let first = run.submit("first", b"2").await?;
    run.result(&first, Duration::from_secs(30)).await?;

    tracing::info!(
        "--- someone announces a leader of epoch 2^62 that does not exist, and says ready"
    );
    let nats = run.server.connect().await?;
    let forged = MasterElected { epoch: 1 << 62, leader: "evil".into() };
    for worker in ["w1", "w2"] {
        let ready = jetwork_shared::protocol::WorkReady { epoch: 1 << 62 };
        nats.publish(
            subjects::worker_ready(None, &WorkerId::parse(worker)?),
            codec::encode(&ready)?,
        )
        .await?;
    }
    for _ in 0..20 {
        nats.publish(subjects::MASTER_ELECTED, codec::encode(&forged)?).await?;
    }
    nats.flush().await?;

    tracing::info!("--- the workers ignore it (the lease names another epoch) and keep working");
    let mut ids = Vec::new();
    for n in 1..=50u32 {
        let id = WorkId::parse(&format!("after-{n}"))?;
        run.client.submit(&run.queue, Some(id.clone()), Bytes::from(n.to_string())).await?;
        ids.push(id);
    }
    run.completed(&ids, Duration::from_secs(60)).await?;
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_can_act_as_another_worker() -> anyhow::Result<()> {
    let run = InProcess::start(|_| {}).await?;
    let nats = run.server.connect().await?;
    let victim = WorkerId::parse("victim")?;
    let session = Token::random();
    jetwork_tests::poll_for("a master to register with", Duration::from_secs(30), || async {
        let registered: Result<Registered, String> =
            call(&nats, subjects::MASTER_REGISTER, &register(&victim, session)).await;
        registered.ok()
    })
    .await?;
    let id = run.submit("precious", b"7").await?;
    let grant: WorkGrant = wait_for_grant(&nats, &victim, session).await?;
    let assignment = grant.assignments.into_iter().next().expect("one assignment");

    tracing::info!("--- an impostor registers under the live victim's id: refused, nothing taken");
    let impostor = Token::random();
    let taken: Result<Registered, String> =
        call(&nats, subjects::MASTER_REGISTER, &register(&victim, impostor)).await;
    let err = taken.expect_err("a live id cannot be taken");
    assert!(err.starts_with("409"), "{err}");

    tracing::info!("--- the impostor asks for work and reports under the victim's id: refused");
    let asked: Result<WorkGrant, String> = call(
        &nats,
        subjects::MASTER_REQUEST,
        // Asking to be handed again what the victim holds (as after a lost grant) too.
        &RequestWork {
            worker_id: victim.clone(),
            session: impostor,
            slots: 1,
            wait_ms: 0,
            running: Some(Vec::new()),
        },
    )
    .await;
    assert!(asked.expect_err("no grants for an impostor").starts_with("403"));
    let forged_outcome = |token: Token, session: Token| Report {
        worker_id: victim.clone(),
        session,
        outcomes: vec![jetwork_shared::protocol::Outcome {
            work_id: id.clone(),
            attempt: 1,
            token,
            status: OutcomeStatus::Completed,
            result: Bytes::from_static(b"forged"),
            reason: None,
            non_retryable: false,
        }],
        slots: 0,
        running: None,
    };
    let reported: Result<ReportReply, String> =
        call(&nats, subjects::MASTER_REPORT, &forged_outcome(assignment.token, impostor)).await;
    assert!(reported.expect_err("an impostor's report is refused").starts_with("403"));

    tracing::info!("--- a stranger (another id) reports the victim's attempt without its token");
    for token in [Token::default(), Token::random()] {
        let stranger =
            Report { worker_id: WorkerId::parse("stranger")?, ..forged_outcome(token, impostor) };
        let reply: ReportReply =
            call(&nats, subjects::MASTER_REPORT, &stranger).await.map_err(anyhow::Error::msg)?;
        assert_eq!(reply.verdicts[0].verdict, jetwork_shared::protocol::VerdictKind::Rejected);
        assert!(reply.verdicts[0].reason.as_deref().unwrap_or("").contains("token"));
    }

    tracing::info!("--- the victim's own report, with its token, is the one that counts");
    let genuine = Report {
        outcomes: vec![jetwork_shared::protocol::Outcome {
            result: Bytes::from_static(b"genuine"),
            ..forged_outcome(assignment.token, session).outcomes.remove(0)
        }],
        ..forged_outcome(assignment.token, session)
    };
    let reply: ReportReply =
        call(&nats, subjects::MASTER_REPORT, &genuine).await.map_err(anyhow::Error::msg)?;
    assert_eq!(reply.verdicts[0].verdict, jetwork_shared::protocol::VerdictKind::Accepted);
    let result = run.result(&id, Duration::from_secs(30)).await?;
    assert_eq!(result.payload, Bytes::from_static(b"genuine"));
    run.audit().await?;
    run.stop().await;
    Ok(())
}

async fn wait_for_grant(
    nats: &async_nats::Client,
    worker: &WorkerId,
    session: Token,
) -> anyhow::Result<WorkGrant> {
    jetwork_tests::poll_for("a grant", Duration::from_secs(20), || async {
        let request =
            RequestWork { worker_id: worker.clone(), session, slots: 1, wait_ms: 0, running: None };
        let grant: Result<WorkGrant, String> = call(nats, subjects::MASTER_REQUEST, &request).await;
        grant.ok().filter(|g| !g.assignments.is_empty())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_fake_workers_leave_status_bounded_and_the_master_working(
) -> anyhow::Result<()> {
    let run = InProcess::start(|fast| fast.master.master.worker_timeout = Duration::from_secs(60))
        .await?;
    let _worker = run.worker("real", square);
    let nats = run.server.connect().await?;
    let warmup = run.submit("warm-up", b"1").await?;
    run.result(&warmup, Duration::from_secs(30)).await?;

    tracing::info!("--- 10 000 registrations under made-up ids, each naming many queues");
    let mut pending = futures::stream::FuturesUnordered::new();
    let mut errors = Vec::new();
    for n in 0..10_000u32 {
        let mut fake = register(&WorkerId::parse(&format!("fake-{n}"))?, Token::random());
        fake.queues = (0..8)
            .map(|q| QueueName::parse(&format!("q{}", (n + q) % 500)))
            .collect::<Result<_, _>>()?;
        let nats = nats.clone();
        pending.push(async move {
            // As a real worker does, a registration that timed out is sent again: on a loaded
            // machine 256 at a time can outrun a request timeout.
            let mut result: Result<Registered, String> = Err(String::new());
            for _ in 0..5 {
                result = call(&nats, subjects::MASTER_REGISTER, &fake).await;
                if !result.as_ref().is_err_and(|e| e.contains("timed out")) {
                    break;
                }
            }
            result.err()
        });
        if pending.len() >= 256 {
            if let Some(Some(e)) = futures::StreamExt::next(&mut pending).await {
                errors.push(e);
            }
        }
    }
    while let Some(result) = futures::StreamExt::next(&mut pending).await {
        errors.extend(result);
    }
    tracing::info!(errors = errors.len(), first = ?errors.first(), "registrations refused or lost");

    tracing::info!("--- status answers, paged, far below the 1 MiB message limit");
    let started = std::time::Instant::now();
    let status = run.client.status().await?;
    assert!(
        status.workers_total >= 10_000,
        "{} registered; refused: {:?}",
        status.workers_total,
        &errors[..errors.len().min(3)]
    );
    assert_eq!(status.workers.len(), 100);
    let body = serde_json::to_vec(&status)?;
    assert!(body.len() < 256 * 1024, "status reply of {} bytes", body.len());
    let page = run
        .client
        .status_page(StatusQuery { workers_offset: 9_990, ..StatusQuery::default() })
        .await?;
    assert_eq!(page.workers.len(), status.workers_total as usize - 9_990);
    tracing::info!(elapsed = ?started.elapsed(), "status answered");

    tracing::info!("--- the real worker still gets work at once");
    let id = run.submit("still-served", b"9").await?;
    assert_eq!(
        run.result(&id, Duration::from_secs(30)).await?.payload,
        Bytes::from_static(b"9 * 9 = 81")
    );
    run.audit().await?;
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_journal_write_is_noticed_while_the_leader_is_idle() -> anyhow::Result<()> {
    let run = InProcess::start(|_| {}).await?;
    let _worker = run.worker("w1", square);
    let id = run.submit("before", b"3").await?;
    run.result(&id, Duration::from_secs(30)).await?;
    let epochs = |audit: &Audit| -> std::collections::BTreeSet<u64> {
        audit.epochs.iter().map(|(_, e)| *e).filter(|e| *e > 0).collect()
    };
    let before = epochs(&Audit::read(&run.js).await?);

    tracing::info!("--- a well-formed but foreign event batch lands in the idle journal");
    let forged = jetwork_master::core::JournalBatch { events: vec![] };
    run.js.publish(subjects::JOURNAL_EVENTS, codec::encode(&forged)?).await?.await?;

    tracing::info!("--- the leader notices without writing anything, steps down and leads again");
    let js = &run.js;
    wait_until("a new term", Duration::from_secs(20), || async {
        Audit::read(js).await.is_ok_and(|a| epochs(&a).len() > before.len())
    })
    .await?;
    let after = run.submit("after", b"4").await?;
    run.result(&after, Duration::from_secs(30)).await?;
    run.audit().await?;
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_stream_settings_and_purges_are_noticed() -> anyhow::Result<()> {
    let mut run = InProcess::start(|fast| {
        fast.master.master.work_timeout = Duration::from_secs(300);
        fast.worker.worker.concurrency = 2;
        // No routine snapshots: only the one the purge calls for.
        fast.master.master.snapshot_interval = Duration::from_secs(3600);
        fast.master.master.snapshot_every = 1_000_000;
    })
    .await?;
    // Squares, except "hold", which waits for the gate (opened once a new leader runs).
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let held_gate = gate.clone();
    let _worker = run.worker("w1", move |job: jetwork_worker::Job| {
        let gate = held_gate.clone();
        async move {
            if job.payload.as_ref() == b"hold" {
                let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
                return Ok(job.payload);
            }
            square(job).await
        }
    });
    let id = run.submit("before", b"3").await?;
    run.result(&id, Duration::from_secs(30)).await?;

    tracing::info!("--- an operator sets a max_age on the submit stream");
    let mut config = run.js.get_stream(subjects::SUBMIT_STREAM).await?.info().await?.config.clone();
    config.max_age = Duration::from_secs(1);
    config.duplicate_window = Duration::from_secs(1);
    run.js.update_stream(config).await?;

    tracing::info!("--- the leader puts it back");
    wait_until("max_age to be 0 again", Duration::from_secs(20), || async {
        run.stream_info(subjects::SUBMIT_STREAM).await.is_some_and(|i| i.config.max_age.is_zero())
    })
    .await?;

    tracing::info!("--- nobody can delete a result or purge the results stream");
    let results = run.js.get_stream(subjects::RESULTS_STREAM).await?;
    assert!(results.purge().await.is_err(), "{} refuses purges", subjects::RESULTS_STREAM);
    let deleted = results.delete_message(1).await;
    assert!(deleted.is_err(), "{} refuses deletes", subjects::RESULTS_STREAM);

    tracing::info!(
        "--- an operator purges the whole journal: the leader writes a snapshot at once"
    );
    let held = run.submit("held", b"hold").await?;
    let js = &run.js;
    wait_until("the held item to start", Duration::from_secs(20), || async {
        Audit::read(js).await.is_ok_and(|a| !a.attempts(&held).is_empty())
    })
    .await?;
    let journal = run.js.get_stream(subjects::JOURNAL_STREAM).await?;
    let purged_to = journal.clone().info().await?.state.last_sequence;
    journal.purge().await?;
    wait_until("a snapshot after the purge", Duration::from_secs(20), || async {
        journal
            .get_last_raw_message_by_subject(subjects::JOURNAL_SNAPSHOT)
            .await
            .is_ok_and(|marker| marker.sequence > purged_to)
    })
    .await?;

    tracing::info!("--- so a new leader still has the whole state: nothing lost or run again");
    run.crash_masters();
    let m2 = run.master("m2");
    gate.add_permits(1);
    let result = run.result(&held, Duration::from_secs(60)).await?;
    assert_eq!(result.payload, Bytes::from_static(b"hold"));
    let after = run.submit("after", b"5").await?;
    run.result(&after, Duration::from_secs(30)).await?;
    let audit = run.audit().await?;
    assert_eq!(audit.results[&id].len(), 1, "the first item was not run again");
    m2.stop().await;
    Ok(())
}

/// Says which job's future was dropped before it finished (what a cancellation does to it).
struct Unfinished {
    work_id: WorkId,
    tell: tokio::sync::mpsc::UnboundedSender<WorkId>,
    finished: bool,
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.tell.send(self.work_id.clone());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_stale_revocations_do_not_stop_a_running_job() -> anyhow::Result<()> {
    let run = InProcess::start(|_| {}).await?;
    let (dropped_tx, mut dropped) = tokio::sync::mpsc::unbounded_channel();
    let release = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let worker = WorkerId::parse("w1")?;
    let _worker = run.worker_with("w1", |s| s.worker.concurrency = 2, {
        let release = release.clone();
        move |job: jetwork_worker::Job| {
            let (release, dropped_tx) = (release.clone(), dropped_tx.clone());
            async move {
                // Held until released (progress keeps it from timing out); a cancellation
                // drops the future, and with it the guard.
                let mut guard =
                    Unfinished { work_id: job.work_id.clone(), tell: dropped_tx, finished: false };
                loop {
                    job.progress();
                    let wait = Duration::from_millis(200);
                    if let Ok(Ok(permit)) = tokio::time::timeout(wait, release.acquire()).await {
                        permit.forget();
                        break;
                    }
                }
                guard.finished = true;
                Ok(Bytes::from(format!("{} finished", job.work_id)))
            }
        }
    });
    let victim = run.submit("victim", b"1").await?;
    let decoy = run.submit("decoy", b"2").await?;
    for id in [&victim, &decoy] {
        let what = format!("{id} to run");
        wait_until(&what, Duration::from_secs(30), || async {
            run.client.job(id, None).await.is_ok_and(|j| j.state == JobState::Running)
        })
        .await?;
    }
    let epoch = run.client.status().await?.epoch;
    let attempt = run.client.job(&victim, None).await?.attempts;

    // One naming the current epoch and attempt would stop it: only NATS permissions keep
    // strangers off `jetwork.worker.*.cancel` (see `nats.conf`).
    tracing::info!(
        "--- revocations of the victim from other epochs, for other attempts, unreadable"
    );
    let nats = run.server.connect().await?;
    let subject = subjects::worker_cancel(None, &worker);
    for (epoch, attempt) in [
        (epoch.saturating_sub(1), attempt),
        (0, attempt),
        (epoch + 1, attempt),
        (1 << 62, attempt),
        (epoch, attempt + 1),
        (epoch, 0),
    ] {
        let forged = Revoke { epoch, work_id: victim.clone(), attempt };
        nats.publish(subject.clone(), codec::encode(&forged)?).await?;
    }
    for garbage in [&b""[..], b"\xff\xfe", b"\x93\x01\xa6victim"] {
        nats.publish(subject.clone(), Bytes::copy_from_slice(garbage)).await?;
    }
    nats.flush().await?;

    tracing::info!(
        "--- a genuine cancellation of the decoy, sent after them, stops only the decoy"
    );
    run.client.cancel(&decoy, None).await?;
    let first = tokio::time::timeout(Duration::from_secs(30), dropped.recv()).await?;
    assert_eq!(first.as_ref(), Some(&decoy), "the worker stopped {first:?} first");
    assert_eq!(run.result(&decoy, Duration::from_secs(30)).await?.status, ResultStatus::Cancelled);

    tracing::info!("--- the victim, still running, completes as its first attempt");
    release.add_permits(1);
    let result = run.result(&victim, Duration::from_secs(30)).await?;
    assert_eq!((result.status, result.attempt), (ResultStatus::Completed, attempt));
    assert_eq!(result.payload, Bytes::from_static(b"victim finished"));
    assert!(dropped.try_recv().is_err(), "the victim's future was never dropped");
    run.audit().await?;
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_submission_notices_make_nothing_jump() -> anyhow::Result<()> {
    // No read-ahead: once one job is ready, the paused queue's reader asks for nothing more,
    // so a priority job submitted after it can only start early by jumping.
    let run = InProcess::start(|fast| {
        fast.master.master.prefetch = 0;
        fast.master.master.prefetch_shared = 0;
    })
    .await?;
    run.await_leader("m1", Duration::from_secs(30)).await?;
    let _worker = run.worker_with("w1", |w| w.worker.concurrency = 1, square);
    wait_until("the worker registered", Duration::from_secs(30), || async {
        run.client.status().await.is_ok_and(|s| !s.workers.is_empty())
    })
    .await?;
    let (client, queue) = (&run.client, &run.queue);
    client.pause(queue, true).await?;
    let listed = |id: &'static str| async move {
        let all = jetwork_shared::jobs::JobsQuery::default();
        client.jobs(&all).await.is_ok_and(|page| page.jobs.iter().any(|j| j.work_id.as_str() == id))
    };
    let plain =
        client.submit(queue, Some(WorkId::parse("plain")?), Bytes::from_static(b"2")).await?;
    wait_until("plain read", Duration::from_secs(30), || listed("plain")).await?;
    // A priority job of another queue (nobody serves it): a notice naming it under this queue
    // must not bring it here.
    let elsewhere = QueueName::parse("elsewhere")?;
    let urgent = vec![(jetwork_shared::job_options::PRIORITY, "9".to_owned())];
    let other = client
        .submit_with(&elsewhere, Some(WorkId::parse("other")?), Bytes::from_static(b"3"), &urgent)
        .await?;

    // An unread submission of this queue asking for no priority: a notice claiming 9 for it
    // must not make it jump (the stored header decides).
    let low = client.submit(queue, Some(WorkId::parse("low")?), Bytes::from_static(b"5")).await?;

    tracing::info!("--- notices naming another queue's submission, or nothing readable");
    let nats = run.server.connect().await?;
    let notice = format!("jetwork.submitted.{queue}");
    for (seq, priority) in [
        (other.seq.to_string(), "9"),
        (plain.seq.to_string(), "9"),
        (low.seq.to_string(), "9"),
        ("abc".to_owned(), "9"),
        ((other.seq + 1000).to_string(), "9"),
        (other.seq.to_string(), "high"),
    ] {
        let mut forged = async_nats::HeaderMap::new();
        forged.insert("Nats-Sequence", seq.as_str());
        forged.insert("Jetwork-Priority", priority);
        nats.publish_with_headers(notice.clone(), forged, Bytes::new()).await?;
    }
    nats.publish(notice.clone(), Bytes::from_static(b"\xff garbage")).await?;
    // A flood naming sequences not stored yet: each costs the leader a read, nothing more.
    for n in 1..=1000u64 {
        let forged = jetwork_shared::job_options::priority_notice(low.seq + 10_000 + n, "9");
        nats.publish_with_headers(notice.clone(), forged, Bytes::new()).await?;
    }
    nats.flush().await?;

    tracing::info!("--- a real priority job after them jumps (so the notices were dealt with)");
    let probe = client
        .submit_with(queue, Some(WorkId::parse("probe")?), Bytes::from_static(b"4"), &urgent)
        .await?;
    wait_until("the probe jumped", Duration::from_secs(30), || listed("probe")).await?;
    let audit = run.audit().await?;
    let jumped: Vec<String> = audit
        .events
        .iter()
        .filter_map(|(.., e)| match e {
            jetwork_master::core::Event::WorkAccepted { work_id, jumped: true, .. } => {
                Some(work_id.to_string())
            }
            _ => None,
        })
        .collect();
    assert_eq!(jumped, ["probe"], "only the real priority job jumped");
    assert!(!listed("other").await, "another queue's submission was taken");
    client.pause(queue, false).await?;
    assert_eq!(
        client.wait_for(&plain, Duration::from_secs(30)).await?.status,
        ResultStatus::Completed
    );
    for job in [&probe, &low] {
        let result = client.wait_for(job, Duration::from_secs(30)).await?;
        assert_eq!(result.status, ResultStatus::Completed, "{}", job.work_id);
    }
    run.audit().await?;
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_message_sent_to_an_admin_endpoint_by_the_server_changes_nothing(
) -> anyhow::Result<()> {
    let run = InProcess::start(|_| {}).await?;
    run.await_leader("m1", Duration::from_secs(30)).await?;
    let (client, queue) = (&run.client, &run.queue);
    let _worker = run.worker("w1", square);
    wait_until("the worker to register", Duration::from_secs(30), || async {
        client.status().await.is_ok_and(|s| !s.workers.is_empty())
    })
    .await?;
    client.pause(queue, true).await?;
    let victim = run.submit("victim", b"1").await?;
    let other = run.submit("other", b"2").await?;
    for id in [&victim, &other] {
        wait_until("the job to be held", Duration::from_secs(30), || async {
            client.job(id, None).await.is_ok_and(|j| j.state == JobState::Ready)
        })
        .await?;
    }

    tracing::info!("--- a rejected submission stores a body the submitter chose: a cancel request");
    let body = Bytes::from_static(br#"{"work_id":"victim","reason":"forged"}"#);
    let refused = [(jetwork_shared::job_options::PRIORITY, "12".to_owned())];
    let stored = client.submit_with(queue, None, body, &refused).await?;
    wait_until("the rejection to be stored", Duration::from_secs(30), || async {
        client.rejection(queue, stored.seq).await.is_ok_and(|r| r.is_some())
    })
    .await?;
    let rejected = subjects::rejected(queue, stored.seq);

    tracing::info!("--- the server sends it to jetwork.admin.cancel: a direct get's answer and a push consumer's delivery");
    let nats = run.server.connect().await?;
    let mut seen = nats.subscribe(subjects::ADMIN_CANCEL).await?;
    let get = format!("$JS.API.DIRECT.GET.{}", subjects::RESULTS_STREAM);
    let ask = serde_json::json!({ "last_by_subj": rejected }).to_string();
    nats.publish_with_reply(get, subjects::ADMIN_CANCEL, ask.into()).await?;
    let results = run.js.get_stream(subjects::RESULTS_STREAM).await?;
    results
        .create_consumer(async_nats::jetstream::consumer::push::Config {
            deliver_subject: subjects::ADMIN_CANCEL.to_owned(),
            filter_subject: rejected.clone(),
            ..Default::default()
        })
        .await?;
    for n in 1..=2 {
        let next = futures::StreamExt::next(&mut seen);
        let delivered = tokio::time::timeout(Duration::from_secs(30), next).await?;
        let delivered = delivered.ok_or_else(|| anyhow::anyhow!("subscription ended"))?;
        tracing::info!(n, reply = ?delivered.reply, "redirected to the endpoint");
    }

    tracing::info!("--- a real cancel after them is served; the redirected ones changed nothing");
    client.cancel(&other, Some("real".to_owned())).await?;
    let victim_now = client.job(&victim, None).await?;
    assert_eq!(victim_now.state, JobState::Ready, "{victim_now:?}");
    client.pause(queue, false).await?;
    let result = run.result(&victim, Duration::from_secs(30)).await?;
    assert_eq!(result.status, ResultStatus::Completed, "{result:?}");
    run.stop().await;
    Ok(())
}
