//! An acknowledged submission runs to exactly one stored outcome, and no client can forge or
//! drop one (real nats-server, without permissions: the worst case): a client submission
//! claiming a retry or a tick of a finished job is refused and changes nothing; a submission on
//! the master's own subject that the master did not decide is refused; a work id resubmitted
//! after the dedup horizon with a priority that jumps ahead of its own earlier submission
//! leaves each submission one outcome; a malformed priority submission is never taken out of
//! turn; a retry keeps the job's own attempt limit, and an id the master assigned can be
//! retried.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use jetwork_frontend::ResultStatus;
use jetwork_master::core::Event;
use jetwork_shared::job_options::{self, MAX_ATTEMPTS_HEADER};
use jetwork_shared::jobs::JobState;
use jetwork_shared::{headers, subjects, WorkId};
use jetwork_tests::inproc::Task;
use jetwork_tests::raw::RawClient;
use jetwork_tests::{poll_for, wait_until, Audit, InProcess};
use jetwork_worker::Job;

const WAIT: Duration = Duration::from_secs(60);

/// Worker `w1` with one slot, each job taking `work`: the ids it started, in order.
fn recording_worker(run: &InProcess, work: Duration) -> (Task, Arc<Mutex<Vec<String>>>) {
    let order = Arc::new(Mutex::new(Vec::new()));
    let worker = run.worker_with("w1", |w| w.worker.concurrency = 1, {
        let order = order.clone();
        move |job: Job| {
            if let Ok(mut order) = order.lock() {
                order.push(job.work_id.to_string());
            }
            async move {
                tokio::time::sleep(work).await;
                Ok(job.payload)
            }
        }
    });
    (worker, order)
}

fn runs_of(order: &Arc<Mutex<Vec<String>>>, id: &str) -> usize {
    order.lock().map(|o| o.iter().filter(|x| *x == id).count()).unwrap_or_default()
}

/// The stored rejection of submission `seq`, once it is stored.
async fn rejection(run: &InProcess, seq: u64) -> anyhow::Result<String> {
    poll_for(&format!("the rejection of submission {seq}"), WAIT, || async {
        run.client.rejection(&run.queue, seq).await.ok().flatten()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_overwrite_or_rerun_a_finished_job() -> anyhow::Result<()> {
    let run = InProcess::start(|_| {}).await?;
    let (_worker, order) = recording_worker(&run, Duration::ZERO);
    let done = run.submit("done-1", b"original").await?;
    let first = run.result(&done, WAIT).await?;
    assert_eq!(first.status, ResultStatus::Completed);

    tracing::info!("--- forged retries and ticks of it, on the clients' subject and the master's");
    let publish = |subject: String, pairs: Vec<(&'static str, String)>| {
        let mut stored = async_nats::HeaderMap::new();
        for (name, value) in pairs {
            stored.insert(name, value.as_str());
        }
        run.js.publish_with_headers(subject, stored, Bytes::from_static(b"forged"))
    };
    let client_subject = subjects::submit(&run.queue);
    let mut forged = BTreeMap::new();
    for (n, pairs) in [
        vec![
            (headers::NATS_MSG_ID, "done-1~again".to_owned()),
            (headers::RETRY_OF, "done-1".to_owned()),
            (headers::PRIOR_ATTEMPTS, "1000000".to_owned()),
        ],
        vec![(headers::NATS_MSG_ID, "done-1-x".to_owned()), (headers::WORK_ID, "done-1".into())],
        vec![(headers::NATS_MSG_ID, "tick-1".to_owned()), (headers::SCHEDULE, "nightly".into())],
    ]
    .into_iter()
    .enumerate()
    {
        let ack = publish(client_subject.clone(), pairs).await?.await?;
        forged.insert(ack.sequence, format!("client {n}"));
    }
    let ack = publish(
        subjects::internal(&run.queue),
        vec![(headers::NATS_MSG_ID, "done-1~f00d".to_owned()), (headers::WORK_ID, "done-1".into())],
    )
    .await?
    .await?;
    forged.insert(ack.sequence, "internal".to_owned());
    for (seq, what) in &forged {
        let reason = rejection(&run, *seq).await?;
        let expected = match what.as_str() {
            "internal" => "not a submission the master has pending",
            _ => "set only by the master",
        };
        assert!(reason.contains(expected), "{what}: {reason}");
    }

    tracing::info!("--- the finished job's outcome is the one it had; it ran once");
    let after = run.submit("after", b"x").await?;
    run.result(&after, WAIT).await?;
    let stored = run.client.result(Some(&run.queue), &done).await?.expect("stored");
    assert_eq!(
        (stored.status, stored.submit_seq, stored.payload.as_ref()),
        (ResultStatus::Completed, first.submit_seq, &b"original"[..])
    );
    assert_eq!(runs_of(&order, "done-1"), 1);
    let again = run.client.retry(&done, None).await.expect_err("a completed job is not retried");
    assert_eq!(again.code(), Some(409), "{again}");
    let audit = run.audit().await?;
    audit.check()?;
    audit.expect_one_outcome_each()?;
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resubmission_that_jumps_its_own_earlier_submission_leaves_each_one_outcome(
) -> anyhow::Result<()> {
    // A small read-ahead and a short dedup horizon: the earlier submission stays unread behind
    // the backlog while the horizon passes, and the same id can be stored again.
    let run = InProcess::start(|fast| {
        fast.master.master.prefetch = 2;
        fast.master.master.prefetch_shared = 0;
        for streams in [&mut fast.master.streams, &mut fast.frontend.streams] {
            streams.dedup_horizon = Duration::from_secs(1);
        }
    })
    .await?;
    run.await_leader("m1", WAIT).await?;
    let (client, queue) = (&run.client, &run.queue);
    let (_worker, order) = recording_worker(&run, Duration::from_millis(15));
    wait_until("the worker registered", WAIT, || async {
        client.status().await.is_ok_and(|s| !s.workers.is_empty())
    })
    .await?;

    tracing::info!("--- a backlog, the id twice in it, more backlog");
    let mut ids = Vec::new();
    for i in 0..150 {
        let id = WorkId::parse(&format!("b-{i}"))?;
        client.submit(queue, Some(id.clone()), Bytes::new()).await?;
        ids.push(id);
    }
    let twice = WorkId::parse("twice")?;
    let earlier = client.submit(queue, Some(twice.clone()), Bytes::from_static(b"1")).await?;
    for i in 150..200 {
        let id = WorkId::parse(&format!("b-{i}"))?;
        client.submit(queue, Some(id.clone()), Bytes::new()).await?;
        ids.push(id);
    }

    tracing::info!("--- once the horizon has passed, the id again, with a priority: it jumps");
    let priority = vec![(job_options::PRIORITY, "9".to_owned())];
    let later = poll_for("the same id to be stored again", WAIT, || async {
        let sent =
            client.submit_with(queue, Some(twice.clone()), Bytes::from_static(b"2"), &priority);
        sent.await.ok().filter(|submitted| !submitted.duplicate)
    })
    .await?;
    assert!(later.seq > earlier.seq);
    let result = client.wait_for(&later, WAIT).await?;
    assert_eq!((result.status, result.payload.as_ref()), (ResultStatus::Completed, &b"2"[..]));

    tracing::info!("--- the reader reaches the earlier submission: refused, saying why");
    let reason = rejection(&run, earlier.seq).await?;
    assert!(reason.contains("submitted again later"), "{reason}");
    assert_eq!(runs_of(&order, "twice"), 1, "the id ran once, for its later submission");
    let audit = Audit::await_completed(&run.js, &ids, WAIT).await?;
    audit.expect_one_outcome_each()?;
    let jumped = audit.events.iter().any(
        |(.., e)| matches!(e, Event::WorkAccepted { seq, jumped: true, .. } if *seq == later.seq),
    );
    assert!(jumped, "the later submission was taken out of turn");
    let stored = &audit.results[&twice];
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].submit_seq, later.seq);
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_priority_submission_is_never_taken_out_of_turn() -> anyhow::Result<()> {
    let run = InProcess::start(|fast| {
        fast.master.master.prefetch = 2;
        fast.master.master.prefetch_shared = 0;
    })
    .await?;
    run.await_leader("m1", WAIT).await?;
    let (client, queue) = (&run.client, &run.queue);
    let (_worker, order) = recording_worker(&run, Duration::from_millis(10));
    wait_until("the worker registered", WAIT, || async {
        client.status().await.is_ok_and(|s| !s.workers.is_empty())
    })
    .await?;
    let mut ids = Vec::new();
    for i in 0..100 {
        let id = WorkId::parse(&format!("b-{i}"))?;
        client.submit(queue, Some(id.clone()), Bytes::new()).await?;
        ids.push(id);
    }

    tracing::info!("--- a priority submission whose header block cannot be read, announced");
    let mut raw = RawClient::connect(&run.server.url()).await?;
    // Its id and priority read fine; one line does not (no ':').
    let block =
        b"NATS/1.0\r\nNats-Msg-Id: looks-fine\r\nno colon here\r\nJetwork-Priority: 9\r\n\r\n";
    raw.hpub(&subjects::submit(queue), block, b"payload").await?;
    raw.ping().await?;
    let seq = poll_for("the malformed submission to be stored", WAIT, || async {
        let info = run.stream_info(subjects::SUBMIT_STREAM).await?;
        (info.state.last_sequence == 101).then_some(info.state.last_sequence)
    })
    .await?;
    let notice = job_options::priority_notice(seq, "9");
    run.client
        .nats()
        .publish_with_headers(subjects::submitted(queue), notice, Bytes::new())
        .await?;
    run.client.nats().flush().await?;

    tracing::info!("--- it is not taken out of turn; read in turn, it is rejected with the reason");
    let reason = rejection(&run, seq).await?;
    assert!(reason.contains("unreadable"), "{reason}");
    let audit = Audit::await_completed(&run.js, &ids, WAIT).await?;
    let taken = audit
        .events
        .iter()
        .any(|(.., e)| matches!(e, Event::WorkAccepted { seq: s, .. } if *s == seq));
    assert!(!taken, "the malformed submission was accepted as work");
    assert_eq!(order.lock().map(|o| o.len()).unwrap_or_default(), 100, "only the backlog ran");
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_keeps_the_jobs_own_attempt_limit_and_an_assigned_id_can_be_retried(
) -> anyhow::Result<()> {
    let run = InProcess::start(|fast| fast.master.master.max_attempts = 5).await?;
    let broken = Arc::new(Mutex::new(true));
    let calls: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
    let _worker = run.worker("w1", {
        let (broken, calls) = (broken.clone(), calls.clone());
        move |job: Job| {
            let failing = broken.lock().map(|b| *b).unwrap_or(true);
            if let Ok(mut calls) = calls.lock() {
                *calls.entry(job.work_id.to_string()).or_default() += 1;
            }
            async move {
                match failing {
                    true => Err("the service is down".into()),
                    false => Ok(Bytes::from_static(b"fine")),
                }
            }
        }
    });
    let calls_of = |id: &WorkId| calls.lock().map(|c| c.get(id.as_str()).copied()).ok().flatten();
    let (client, queue) = (&run.client, &run.queue);
    let attempts_2 = vec![(MAX_ATTEMPTS_HEADER, "2".to_owned())];

    tracing::info!("--- a job asking for 2 attempts fails after 2, and its retry after 2 more");
    let limited = WorkId::parse("limited")?;
    client.submit_with(queue, Some(limited.clone()), Bytes::new(), &attempts_2).await?;
    let first = run.result(&limited, WAIT).await?;
    assert_eq!((first.status, first.attempt), (ResultStatus::Failed, 2));
    client.retry(&limited, None).await?;
    let rerun = poll_for("the retried run to fail", WAIT, || async {
        let info = client.job(&limited, None).await.ok()?;
        (info.state == JobState::Failed && info.submit_seq > first.submit_seq).then_some(info)
    })
    .await?;
    assert_eq!(rerun.attempts, 4, "attempts 3 and 4, not 5 more: {rerun:?}");
    assert_eq!(calls_of(&limited), Some(4));

    tracing::info!("--- a job submitted without an id (its id is assigned: seq-N) is retried too");
    let mut stored = async_nats::HeaderMap::new();
    stored.insert(MAX_ATTEMPTS_HEADER, "2");
    let ack = run.js.publish_with_headers(subjects::submit(queue), stored, Bytes::new()).await?;
    let seq = ack.await?.sequence;
    let assigned = WorkId::assigned(seq);
    let submitted = jetwork_frontend::Submitted {
        work_id: assigned.clone(),
        queue: queue.clone(),
        seq,
        duplicate: false,
    };
    let failed = client.wait_for(&submitted, WAIT).await?;
    assert_eq!(failed.status, ResultStatus::Failed);
    if let Ok(mut broken) = broken.lock() {
        *broken = false;
    }
    client.retry(&assigned, None).await?;
    let done = poll_for("the assigned id's retry to complete", WAIT, || async {
        let info = client.job(&assigned, None).await.ok()?;
        (info.state == JobState::Completed).then_some(info)
    })
    .await?;
    assert_eq!(done.attempts, 3, "{done:?}");
    let audit = run.audit().await?;
    audit.check()?;
    audit.expect_one_outcome_each()?;
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_and_ticks_an_older_master_stored_are_honoured_after_the_upgrade(
) -> anyhow::Result<()> {
    use jetwork_master::core::{Cadence, JournalBatch};
    use jetwork_shared::codec;
    use jetwork_shared::schedules::{tick_work_id, ScheduleName};

    // No master yet: what an older (format 4) master left behind is written first.
    let run = InProcess::build().masters(&[]).start().await?;
    run.client.init().await?;
    let (queue, now) = (&run.queue, jetwork_shared::clock::now_ms());
    let nightly = ScheduleName::parse("nightly")?;
    let tick = tick_work_id(&nightly, 60_000);

    tracing::info!("--- a format-4 journal: a term, a schedule and a tick fired, not confirmed");
    let events = vec![
        Event::EpochStarted {
            epoch: 1,
            leader: "old".into(),
            at: now,
            grace_until: now,
            legacy_through: None,
        },
        Event::ScheduleAdded {
            name: nightly.clone(),
            queue: queue.clone(),
            cadence: Cadence::Every { ms: 3_600_000 },
            payload: Bytes::from_static(b"tick"),
            next: 60_000,
            at: now,
        },
        Event::ScheduleFired {
            name: nightly.clone(),
            work_id: tick.clone(),
            scheduled: 60_000,
            missed: 0,
            next: now + 3_600_000,
            at: now,
            key: String::new(),
        },
    ];
    let mut stored = async_nats::HeaderMap::new();
    stored.insert(headers::EPOCH, "1");
    stored.insert(headers::NATS_EXPECTED_LAST_SEQUENCE, "0");
    stored.insert(headers::JOURNAL_FORMAT, "4");
    let batch = codec::encode(&JournalBatch { events })?;
    run.js.publish_with_headers(subjects::JOURNAL_EPOCH, stored, batch).await?.await?;

    tracing::info!("--- its retry and its tick, stored on the clients' subject, unread");
    let publish = |pairs: Vec<(&'static str, String)>, payload: &'static [u8]| {
        let mut stored = async_nats::HeaderMap::new();
        for (name, value) in pairs {
            stored.insert(name, value.as_str());
        }
        run.js.publish_with_headers(subjects::submit(queue), stored, Bytes::from_static(payload))
    };
    let retried = WorkId::parse("old-retry")?;
    publish(
        vec![
            (headers::NATS_MSG_ID, "old-retry~retry-3".into()),
            (headers::RETRY_OF, retried.to_string()),
            (headers::PRIOR_ATTEMPTS, "2".into()),
        ],
        b"again",
    )
    .await?
    .await?;
    publish(
        vec![
            (headers::NATS_MSG_ID, tick.to_string()),
            (headers::SCHEDULE, nightly.to_string()),
            (headers::SCHEDULED_AT, "60000".into()),
        ],
        b"tick",
    )
    .await?
    .await?;

    tracing::info!("--- this version takes over: both run, as the older master meant");
    let _master = run.master("m1");
    run.await_leader("m1", WAIT).await?;
    let (_worker, order) = recording_worker(&run, Duration::ZERO);
    let retry = run.result(&retried, WAIT).await?;
    assert_eq!((retry.status, retry.attempt), (ResultStatus::Completed, 3), "{retry:?}");
    let ticked = run.result(&tick, WAIT).await?;
    assert_eq!(ticked.payload.as_ref(), b"tick");

    tracing::info!("--- the same headers on a client's submission stored now are refused");
    let ack = publish(
        vec![
            (headers::NATS_MSG_ID, "late~retry-9".into()),
            (headers::RETRY_OF, "late".into()),
            (headers::PRIOR_ATTEMPTS, "2".into()),
        ],
        b"forged",
    )
    .await?
    .await?;
    let reason = rejection(&run, ack.sequence).await?;
    assert!(reason.contains("set only by the master"), "{reason}");
    assert_eq!(runs_of(&order, "old-retry"), 1);
    assert_eq!(runs_of(&order, tick.as_str()), 1);
    let audit = run.audit().await?;
    audit.check()?;
    let legacy = audit.events.iter().find_map(|(.., e)| match e {
        Event::EpochStarted { legacy_through: Some(seq), .. } => Some(*seq),
        _ => None,
    });
    assert_eq!(legacy, Some(2), "recorded at the takeover: the two legacy submissions");
    run.stop().await;
    Ok(())
}

/// Publishes `payload` to `subject` with these headers (raw JetStream, as anyone could).
async fn publish_raw(
    run: &InProcess,
    subject: String,
    pairs: &[(&str, String)],
    payload: &'static [u8],
) -> anyhow::Result<u64> {
    let mut stored = async_nats::HeaderMap::new();
    for (name, value) in pairs {
        stored.append(*name, value.as_str());
    }
    let ack = run.js.publish_with_headers(subject, stored, Bytes::from_static(payload)).await?;
    Ok(ack.await?.sequence)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_headers_forged_in_a_submission_steer_nothing() -> anyhow::Result<()> {
    let run = InProcess::start(|_| {}).await?;
    run.await_leader("m1", WAIT).await?;
    let (a, b) = (jetwork_shared::QueueName::parse("qa")?, jetwork_shared::QueueName::parse("qb")?);
    let received: Arc<Mutex<BTreeMap<String, Vec<String>>>> = Arc::default();
    let _worker = run.worker_with("w1", |w| w.worker.queues = vec!["qa".into(), "qb".into()], {
        let received = received.clone();
        move |job: Job| {
            if let Ok(mut received) = received.lock() {
                let payload = String::from_utf8_lossy(&job.payload).into_owned();
                received.entry(job.work_id.to_string()).or_default().push(payload);
            }
            async move { Ok(Bytes::new()) }
        }
    });
    wait_until("the worker registered", WAIT, || async {
        run.client.status().await.is_ok_and(|s| !s.workers.is_empty())
    })
    .await?;

    tracing::info!("--- a submission to qa claiming, in the server's own headers, to be qb's");
    let next =
        run.stream_info(subjects::SUBMIT_STREAM).await.map_or(0, |i| i.state.last_sequence) + 1;
    let seq = publish_raw(
        &run,
        subjects::submit(&a),
        &[
            (headers::NATS_MSG_ID, "sneaky".into()),
            (headers::NATS_SUBJECT, subjects::submit(&b)),
            (headers::NATS_SEQUENCE, next.to_string()),
            (job_options::PRIORITY, "9".into()),
        ],
        b"sneaky",
    )
    .await?;
    assert_eq!(seq, next);
    let notice = job_options::priority_notice(seq, "9");
    run.client.nats().publish_with_headers(subjects::submitted(&b), notice, Bytes::new()).await?;
    run.client.nats().flush().await?;
    let sneaky = WorkId::parse("sneaky")?;
    run.client.wait_result(&a, &sneaky, WAIT).await?;

    tracing::info!("--- after a takeover (no payload cached), one claiming another's sequence");
    run.client.pause(&a, true).await?;
    let victim =
        run.client.submit(&a, Some(WorkId::parse("victim")?), Bytes::from_static(b"mine")).await?;
    publish_raw(
        &run,
        subjects::submit(&a),
        &[(headers::NATS_MSG_ID, "thief".into()), (headers::NATS_SEQUENCE, victim.seq.to_string())],
        b"stolen",
    )
    .await?;
    wait_until("both to be read", WAIT, || async {
        run.client.job(&WorkId::parse("thief").expect("valid"), None).await.is_ok()
    })
    .await?;
    let mut run = run;
    run.crash_masters();
    let _m2 = run.master("m2");
    run.await_leader("m2", WAIT).await?;
    run.client.pause(&a, false).await?;
    run.client.wait_result(&a, &victim.work_id, WAIT).await?;
    run.client.wait_result(&a, &WorkId::parse("thief")?, WAIT).await?;

    let received = received.lock().map(|r| r.clone()).unwrap_or_default();
    assert_eq!(received.get("victim"), Some(&vec!["mine".to_owned()]), "{received:?}");
    assert_eq!(received.get("thief"), Some(&vec!["stolen".to_owned()]), "{received:?}");
    assert_eq!(received.get("sneaky").map(Vec::len), Some(1), "{received:?}");
    let audit = run.audit().await?;
    audit.check()?;
    let in_b = audit
        .events
        .iter()
        .any(|(.., e)| matches!(e, Event::WorkAccepted { queue, .. } if *queue == b));
    assert!(!in_b, "a submission of qa was taken as qb's");
    run.stop().await;
    Ok(())
}
