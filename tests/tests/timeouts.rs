//! Deadlines and attempts: a silent attempt is re-queued with the next attempt number,
//! progress keeps a long attempt alive, used-up attempts end as `failed` with the last reason,
//! and an oversized result fails its attempt.

use std::time::Duration;

use bytes::Bytes;
use jetwork_frontend::ResultStatus;
use jetwork_master::core::Event;
use jetwork_tests::InProcess;
use jetwork_worker::Job;

const WAIT: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_attempt_times_out_and_the_next_attempt_finishes() -> anyhow::Result<()> {
    let run = InProcess::start(|_| {}).await?;
    // Attempt 1 hangs without progress (the Akka sample's livelock case with one worker);
    // attempt 2 answers at once.
    let _worker = run.worker("w1", |job: Job| async move {
        if job.attempt == 1 {
            std::future::pending::<()>().await;
        }
        Ok(Bytes::from(format!("done on attempt {}", job.attempt)))
    });
    let id = run.submit("hangs-once", b"").await?;
    let result = run.result(&id, WAIT).await?;
    assert_eq!((result.payload, result.attempt), (Bytes::from_static(b"done on attempt 2"), 2));
    assert_eq!(run.audit().await?.attempts(&id), vec![1, 2]);
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_keeps_a_long_attempt_alive() -> anyhow::Result<()> {
    let run = InProcess::start(|_| {}).await?;
    // Runs 7s, well past the 3s work timeout, reporting progress every second.
    let _worker = run.worker("w1", |job: Job| async move {
        for _ in 0..7 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            job.progress();
        }
        Ok(Bytes::from_static(b"long job done"))
    });
    let id = run.submit("long", b"").await?;
    let result = run.result(&id, WAIT).await?;
    assert_eq!(result.attempt, 1, "progress must have prevented a timeout");
    let audit = run.audit().await?;
    assert_eq!(audit.attempts(&id), vec![1]);
    let progressed = audit
        .events
        .iter()
        .filter(|(_, _, e)| matches!(e, Event::WorkProgressed { work_id, .. } if *work_id == id))
        .count();
    assert!(
        progressed >= 5,
        "expected the deadline to move with each progress report, saw {progressed}"
    );
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn used_up_attempts_fail_with_the_last_reason() -> anyhow::Result<()> {
    let run = InProcess::start(|fast| fast.master.master.max_attempts = 3).await?;
    let _worker = run.worker("w1", |job: Job| async move {
        Err(format!("disk full (attempt {})", job.attempt).into())
    });
    let id = run.submit("doomed", b"").await?;
    let result = run.result(&id, WAIT).await?;
    assert_eq!((result.status, result.attempt), (ResultStatus::Failed, 3));
    let reason = result.reason.unwrap_or_default();
    assert!(
        reason.contains("gave up after 3 attempts") && reason.contains("disk full (attempt 3)"),
        "{reason}"
    );
    assert_eq!(run.audit().await?.attempts(&id), vec![1, 2, 3]);
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_results_fail_their_attempt_with_a_reason() -> anyhow::Result<()> {
    let run = InProcess::start(|fast| {
        fast.master.master.max_attempts = 2;
        fast.master.streams.max_result = 1024;
        fast.worker.streams.max_result = 1024;
    })
    .await?;
    let _worker = run.worker("w1", |_job: Job| async move { Ok(Bytes::from(vec![b'x'; 4096])) });
    let id = run.submit("too-big", b"").await?;
    let result = run.result(&id, WAIT).await?;
    assert_eq!((result.status, result.attempt), (ResultStatus::Failed, 2));
    let reason = result.reason.unwrap_or_default();
    assert!(reason.contains("result of 4096 bytes exceeds the limit of 1024 bytes"), "{reason}");
    assert_eq!(run.audit().await?.attempts(&id), vec![1, 2]);
    run.stop().await;
    Ok(())
}
