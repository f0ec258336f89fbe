//! The worker protocol spoken by hand over plain NATS requests, as a worker in another
//! language would: lost acknowledgements, re-sent outcomes, stale attempts, unknown workers,
//! and garbage on every master endpoint.

use std::time::Duration;

use bytes::Bytes;
use jetwork_shared::protocol::{
    OutcomeStatus, RegisterWorker, Registered, ReportReply, VerdictKind, WorkGrant,
};
use jetwork_shared::{codec, headers, subjects, QueueName};
use jetwork_tests::manual::ManualWorker;
use jetwork_tests::{wait_until, InProcess};

type Manual = ManualWorker;

async fn setup() -> anyhow::Result<(InProcess, Manual, Manual)> {
    let run = InProcess::start(|_| {}).await?;
    let a = Manual::new(run.server.connect().await?, "manual-a")?;
    let b = Manual::new(run.server.connect().await?, "manual-b")?;
    wait_until("a master", Duration::from_secs(20), || async { a.register().await.is_ok() })
        .await?;
    b.register().await?;
    Ok((run, a, b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_acknowledgement_is_resent_and_recorded_once() -> anyhow::Result<()> {
    let (run, a, _b) = setup().await?;
    let id = run.submit("ack-lost", b"5").await?;
    let assignment = a.take().await?;
    assert_eq!((assignment.work_id.as_str(), assignment.attempt), ("ack-lost", 1));
    assert_eq!(assignment.payload, Bytes::from_static(b"5"));

    tracing::info!("--- the completion goes out, its acknowledgement goes nowhere");
    let report = a.report(&id, 1, OutcomeStatus::Completed, "25");
    let dead_inbox = a.nats.new_inbox();
    a.nats.publish_with_reply(subjects::MASTER_REPORT, dead_inbox, codec::encode(&report)?).await?;
    run.result(&id, Duration::from_secs(20)).await?;

    tracing::info!("--- the worker re-sends: acknowledged as finished, nothing new recorded");
    for _ in 0..3 {
        let reply: ReportReply = a.call(subjects::MASTER_REPORT, &report).await?;
        assert_eq!(reply.verdicts[0].verdict, VerdictKind::Finished);
    }
    let audit = run.audit().await?;
    assert_eq!(audit.finished().iter().filter(|f| **f == id).count(), 1);
    assert_eq!(audit.results[&id][0].payload, b"25");
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_attempt_cannot_fail_or_prolong_the_current_one() -> anyhow::Result<()> {
    let (run, a, b) = setup().await?;
    let id = run.submit("slow", b"9").await?;
    let first = a.take().await?;
    assert_eq!(first.attempt, 1);

    tracing::info!("--- a keeps quiet past the 3s work timeout; b gets attempt 2");
    let second = b.take().await?;
    assert_eq!((second.work_id.clone(), second.attempt), (id.clone(), 2));

    tracing::info!("--- a's failure and progress are superseded; a's late result still counts");
    for status in [OutcomeStatus::Failed, OutcomeStatus::Progress] {
        let reply: ReportReply =
            a.call(subjects::MASTER_REPORT, &a.report(&id, 1, status, "")).await?;
        assert_eq!(reply.verdicts[0].verdict, VerdictKind::Superseded, "{status:?}");
    }
    let forged: ReportReply =
        a.call(subjects::MASTER_REPORT, &a.report(&id, 7, OutcomeStatus::Completed, "x")).await?;
    assert_eq!(forged.verdicts[0].verdict, VerdictKind::Rejected);
    let late: ReportReply = a
        .call(subjects::MASTER_REPORT, &a.report(&id, 1, OutcomeStatus::Completed, "81 (late)"))
        .await?;
    assert_eq!(late.verdicts[0].verdict, VerdictKind::Accepted);

    tracing::info!("--- b's own result for attempt 2 is answered finished; b is free again");
    let dup: ReportReply =
        b.call(subjects::MASTER_REPORT, &b.report(&id, 2, OutcomeStatus::Completed, "81")).await?;
    assert_eq!(dup.verdicts[0].verdict, VerdictKind::Finished);
    let next = run.submit("next", b"1").await?;
    assert_eq!(b.take().await?.work_id, next);

    let audit = run.audit().await?;
    assert_eq!(audit.results[&id][0].payload, b"81 (late)");
    assert_eq!(audit.results[&id][0].attempt, 1);
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_every_master_endpoint_gets_a_reason() -> anyhow::Result<()> {
    let (run, a, _b) = setup().await?;
    let nats = run.server.connect().await?;
    let garbage: Vec<Bytes> = vec![
        Bytes::new(),
        Bytes::from_static(b"hello"),
        Bytes::from_static(&[0xc1, 0xff, 0x00]),
        codec::encode(&42u32)?,
        codec::encode(&serde_json::json!({"worker_id": "bad.id", "slots": 1}))?,
        codec::encode(&serde_json::json!({"worker_id": "ok", "slots": "many"}))?,
        Bytes::from(vec![0x91; 10_000]),
    ];
    for subject in [subjects::MASTER_REGISTER, subjects::MASTER_REQUEST, subjects::MASTER_REPORT] {
        for body in &garbage {
            let reply = nats.request(subject, body.clone()).await?;
            let found = reply.headers.expect("an error reply has headers");
            let code = found.get(headers::NATS_SERVICE_ERROR_CODE).map(|v| v.to_string());
            let reason =
                found.get(headers::NATS_SERVICE_ERROR).map(|v| v.to_string()).unwrap_or_default();
            assert_eq!(code.as_deref(), Some("400"), "{subject}: {reason}");
            assert!(reason.starts_with("bad request: cannot decode"), "{subject}: {reason}");
        }
    }
    tracing::info!("--- unknown worker asking for work is told to register");
    let stranger = Manual::new(nats.clone(), "stranger")?;
    let err = stranger.request(1).await.unwrap_err().to_string();
    assert!(err.contains("register first"), "{err}");
    tracing::info!("--- bad registrations are refused with a reason");
    let zero = RegisterWorker {
        worker_id: stranger.id.clone(),
        session: stranger.session,
        queues: vec![QueueName::default_queue()],
        capacity: 0,
        running: vec![],
    };
    let err = stranger
        .call::<_, Registered>(subjects::MASTER_REGISTER, &zero)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("capacity"), "{err}");
    tracing::info!("--- an unreadable status query is refused with the reason; an empty one gets the first page");
    let refused = nats.request(subjects::MASTER_STATUS, Bytes::from_static(b"\xff\xfe")).await?;
    let error = refused.headers.as_ref().and_then(|h| h.get(headers::NATS_SERVICE_ERROR_CODE));
    assert_eq!(error.map(|code| code.as_str()), Some("400"), "{refused:?}");
    let status = nats.request(subjects::MASTER_STATUS, Bytes::new()).await?;
    let report: serde_json::Value = serde_json::from_slice(&status.payload)?;
    assert!(report["epoch"].as_u64().unwrap_or(0) > 0, "{report}");
    tracing::info!("--- worker and election subjects shrug garbage off");
    nats.publish(subjects::MASTER_ELECTED, Bytes::from_static(b"\x00garbage")).await?;
    nats.publish(subjects::worker_ready(None, &a.id), Bytes::from_static(b"\x00garbage")).await?;
    tracing::info!("--- and the master still works");
    let id = run.submit("still-fine", b"2").await?;
    let assignment = a.take().await?;
    assert_eq!(assignment.work_id, id);
    let audit = run.audit().await?;
    assert!(!audit.events.iter().any(|(_, _, e)| matches!(e, jetwork_master::core::Event::WorkerRegistered { worker, .. } if worker.as_str() == "stranger")), "a refused registration records nothing");
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_open_request_gets_work_the_moment_it_is_submitted() -> anyhow::Result<()> {
    let (run, a, b) = setup().await?;

    tracing::info!("--- nothing is ready: held for its wait, then answered empty");
    let asked = tokio::time::Instant::now();
    let empty: WorkGrant = b.call(subjects::MASTER_REQUEST, &b.long_poll(2, 500)).await?;
    assert!(empty.assignments.is_empty());
    assert!(asked.elapsed() >= Duration::from_millis(450), "answered after {:?}", asked.elapsed());

    tracing::info!("--- a submission made while a request is held is handed to it at once");
    let asked = tokio::time::Instant::now();
    let held = tokio::spawn(async move {
        let grant: anyhow::Result<WorkGrant> =
            a.call(subjects::MASTER_REQUEST, &a.long_poll(2, 8_000)).await;
        (grant, tokio::time::Instant::now())
    });
    // Not a wait for a condition: it orders the submission after the request reached the
    // master. Were it not held, the request would have been answered empty at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let submitted = tokio::time::Instant::now();
    let id = run.submit("held", b"7").await?;
    let (grant, answered) = held.await?;
    let grant = grant?;
    assert_eq!(grant.assignments.len(), 1, "{grant:?}");
    assert_eq!(grant.assignments[0].work_id.as_str(), "held");
    assert!(answered.duration_since(asked) >= Duration::from_millis(300));
    assert!(
        answered.duration_since(submitted) < Duration::from_secs(4),
        "the held request was answered {:?} after the submission",
        answered.duration_since(submitted)
    );
    let audit = run.audit().await?;
    assert_eq!(audit.attempts(&id), vec![1], "handed out once, to the held request");
    run.stop().await;
    Ok(())
}
