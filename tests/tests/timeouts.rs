//! Deadlines: a silent attempt is re-queued with the next attempt number, progress keeps a
//! long attempt alive, and used-up attempts end as `failed` with the last reason.

use std::time::Duration;

use bytes::Bytes;
use jetwork_frontend::{Client, ResultStatus};
use jetwork_shared::{connect, QueueName, WorkId};
use jetwork_tests::inproc::{spawn_master, spawn_worker};
use jetwork_tests::{fast_settings, init_logging, Audit, NatsServer};
use jetwork_worker::Job;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_attempt_times_out_and_the_next_attempt_finishes() -> anyhow::Result<()> {
    init_logging();
    let server = NatsServer::start()?;
    let fast = fast_settings(&server.url());
    let master = spawn_master("m1", fast.master.clone());
    // Attempt 1 hangs without progress (the Akka sample's livelock case with one worker);
    // attempt 2 answers at once.
    let _worker = spawn_worker("w1", fast.worker.clone(), |job: Job| async move {
        if job.attempt == 1 {
            std::future::pending::<()>().await;
        }
        Ok(Bytes::from(format!("done on attempt {}", job.attempt)))
    });
    let client = Client::connect(fast.frontend.clone()).await?;
    let queue = QueueName::default_queue();
    let id = WorkId::parse("hangs-once")?;
    client.submit(&queue, Some(id.clone()), Bytes::new()).await?;
    let result = client.wait_result(&queue, &id, Duration::from_secs(30)).await?;
    assert_eq!(result.payload, Bytes::from_static(b"done on attempt 2"));
    assert_eq!(result.attempt, 2);
    let js = connect::jetstream(client.nats(), &fast.frontend.nats);
    let audit = Audit::read(&js).await?;
    audit.check()?;
    assert_eq!(audit.attempts(&id), vec![1, 2]);
    master.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_keeps_a_long_attempt_alive() -> anyhow::Result<()> {
    init_logging();
    let server = NatsServer::start()?;
    let fast = fast_settings(&server.url());
    let master = spawn_master("m1", fast.master.clone());
    // Runs 7s, well past the 3s work timeout, reporting progress every second.
    let _worker = spawn_worker("w1", fast.worker.clone(), |job: Job| async move {
        for _ in 0..7 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            job.progress();
        }
        Ok(Bytes::from_static(b"long job done"))
    });
    let client = Client::connect(fast.frontend.clone()).await?;
    let queue = QueueName::default_queue();
    let id = WorkId::parse("long")?;
    client.submit(&queue, Some(id.clone()), Bytes::new()).await?;
    let result = client.wait_result(&queue, &id, Duration::from_secs(40)).await?;
    assert_eq!(result.attempt, 1, "progress must have prevented a timeout");
    let js = connect::jetstream(client.nats(), &fast.frontend.nats);
    let audit = Audit::read(&js).await?;
    audit.check()?;
    assert_eq!(audit.attempts(&id), vec![1]);
    let progressed = audit
        .events
        .iter()
        .filter(|(_, _, e)| matches!(e, jetwork_master::core::Event::WorkProgressed { work_id, .. } if *work_id == id))
        .count();
    assert!(
        progressed >= 5,
        "expected the deadline to move with each progress report, saw {progressed}"
    );
    master.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn used_up_attempts_fail_with_the_last_reason() -> anyhow::Result<()> {
    init_logging();
    let server = NatsServer::start()?;
    let mut fast = fast_settings(&server.url());
    fast.master.master.max_attempts = 3;
    let master = spawn_master("m1", fast.master.clone());
    let _worker = spawn_worker("w1", fast.worker.clone(), |job: Job| async move {
        Err::<Bytes, _>(format!("disk full (attempt {})", job.attempt))
    });
    let client = Client::connect(fast.frontend.clone()).await?;
    let queue = QueueName::default_queue();
    let id = WorkId::parse("doomed")?;
    client.submit(&queue, Some(id.clone()), Bytes::new()).await?;
    let result = client.wait_result(&queue, &id, Duration::from_secs(30)).await?;
    assert_eq!(result.status, ResultStatus::Failed);
    assert_eq!(result.attempt, 3);
    let reason = result.reason.unwrap_or_default();
    assert!(
        reason.contains("gave up after 3 attempts") && reason.contains("disk full (attempt 3)"),
        "{reason}"
    );
    let js = connect::jetstream(client.nats(), &fast.frontend.nats);
    let audit = Audit::read(&js).await?;
    audit.check()?;
    assert_eq!(audit.attempts(&id), vec![1, 2, 3]);
    master.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_results_fail_their_attempt_with_a_reason() -> anyhow::Result<()> {
    init_logging();
    let server = NatsServer::start()?;
    let mut fast = fast_settings(&server.url());
    fast.master.master.max_attempts = 2;
    fast.master.streams.max_result = 1024;
    fast.worker.streams.max_result = 1024;
    let master = spawn_master("m1", fast.master.clone());
    let _worker = spawn_worker("w1", fast.worker.clone(), |_job: Job| async move {
        Ok(Bytes::from(vec![b'x'; 4096]))
    });
    let client = Client::connect(fast.frontend.clone()).await?;
    let queue = QueueName::default_queue();
    let id = WorkId::parse("too-big")?;
    client.submit(&queue, Some(id.clone()), Bytes::new()).await?;
    let result = client.wait_result(&queue, &id, Duration::from_secs(30)).await?;
    assert_eq!((result.status, result.attempt), (ResultStatus::Failed, 2));
    let reason = result.reason.unwrap_or_default();
    assert!(reason.contains("result of 4096 bytes exceeds the limit of 1024 bytes"), "{reason}");
    let js = connect::jetstream(client.nats(), &fast.frontend.nats);
    let audit = Audit::read(&js).await?;
    audit.check()?;
    assert_eq!(audit.attempts(&id), vec![1, 2]);
    master.stop().await;
    Ok(())
}
