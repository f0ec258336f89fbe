//! Per-job options end to end (submission headers, real nats-server): priorities are handed
//! out highest first, a priority job stored behind a backlog the master has not read yet
//! jumps it (and still runs once), a job's own attempt limit overrides its queue's, a job not started by
//! its expiry ends `cancelled` as expired (also on a queue nobody serves, where it is seen
//! waiting until then), invalid options are rejected with a reason, and a
//! delayed job waits out its delay — across a `kill -9` of the leader, with the real binaries.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use jetwork_frontend::{ClientError, ResultStatus};
use jetwork_shared::job_options::{self, JobOptions};
use jetwork_shared::jobs::JobState;
use jetwork_shared::WorkId;
use jetwork_tests::inproc::Task;
use jetwork_tests::{poll_for, wait_until, InProcess};
use jetwork_worker::{Job, JobError};

const WAIT: Duration = Duration::from_secs(40);

fn header(name: &'static str, value: &str) -> Vec<(&'static str, String)> {
    vec![(name, value.to_owned())]
}

/// Worker `w1` with one slot, each job taking `work`; the ids it started, in order.
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
                Ok(Bytes::new())
            }
        }
    });
    (worker, order)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priorities_attempt_limits_expiry_and_invalid_options() -> anyhow::Result<()> {
    let run = InProcess::start(|fast| fast.master.master.max_attempts = 4).await?;
    let client = &run.client;
    let queue = &run.queue;

    tracing::info!("--- 8 normal jobs, then 3 of priority 9 and 2 of priority 5, read ahead");
    // The worker is there first, so the reader keeps up with the submissions (no priority job
    // is left unread long enough to jump); paused, so nothing starts before every submission
    // has been read and sorted.
    run.await_leader("m1", WAIT).await?;
    let (_worker, order) = recording_worker(&run, Duration::ZERO);
    wait_until("the worker registered", WAIT, || async {
        client.status().await.is_ok_and(|s| !s.workers.is_empty())
    })
    .await?;
    client.pause(queue, true).await?;
    let mut submitted = Vec::new();
    let jobs = (0..8)
        .map(|i| (format!("low-{i}"), 0))
        .chain((0..3).map(|i| (format!("high-{i}"), 9)))
        .chain((0..2).map(|i| (format!("mid-{i}"), 5)));
    for (id, priority) in jobs {
        let headers = match priority {
            0 => Vec::new(),
            p => header(job_options::PRIORITY, &p.to_string()),
        };
        let id = WorkId::parse(&id)?;
        submitted.push(client.submit_with(queue, Some(id), Bytes::new(), &headers).await?);
    }
    // Priorities order what the master has read (it reads ahead of its workers, `prefetch`).
    let all = jetwork_shared::jobs::JobsQuery::default();
    wait_until("all 13 read ahead", WAIT, || async {
        client.jobs(&all).await.is_ok_and(|page| page.jobs.len() == 13)
    })
    .await?;
    client.pause(queue, false).await?;
    for s in &submitted {
        client.wait_for(s, WAIT).await?;
    }
    let order = order.lock().map(|o| o.clone()).unwrap_or_default();
    let expected: Vec<String> = (0..3)
        .map(|i| format!("high-{i}"))
        .chain((0..2).map(|i| format!("mid-{i}")))
        .chain((0..8).map(|i| format!("low-{i}")))
        .collect();
    assert_eq!(order, expected, "highest priority first, in submission order within one");

    tracing::info!("--- Jetwork-Max-Attempts: 1 ends a failing job after one attempt");
    let _failing = run.worker_with(
        "w2",
        |w| w.worker.queues = vec!["flaky".to_owned()],
        |_job: Job| async move { Err::<Bytes, JobError>("the disk is full".into()) },
    );
    let flaky: jetwork_shared::QueueName = "flaky".parse()?;
    let once = client
        .submit_with(
            &flaky,
            Some(WorkId::parse("once")?),
            Bytes::new(),
            &header(job_options::MAX_ATTEMPTS_HEADER, "1"),
        )
        .await?;
    let result = client.wait_for(&once, WAIT).await?;
    assert_eq!((result.status, result.attempt), (ResultStatus::Failed, 1), "{result:?}");
    assert!(result.reason.unwrap_or_default().contains("gave up after 1 attempts"));

    tracing::info!("--- Jetwork-Expires: not started by then (queue paused), ends cancelled");
    client.pause(queue, true).await?;
    let expiring = client
        .submit_with(
            queue,
            Some(WorkId::parse("expiring")?),
            Bytes::new(),
            &header(job_options::EXPIRES, "1s"),
        )
        .await?;
    let result = client.wait_for(&expiring, WAIT).await?;
    assert_eq!(result.status, ResultStatus::Cancelled, "{result:?}");
    assert!(result.reason.unwrap_or_default().starts_with("expired: not started by"));
    client.pause(queue, false).await?;

    tracing::info!("--- invalid options are rejected with the header named");
    for (name, value) in [
        (job_options::PRIORITY, "12"),
        (job_options::DELAY, "soon"),
        (job_options::MAX_ATTEMPTS_HEADER, "0"),
        (job_options::TIMEOUT, "1ns"),
        (job_options::EXPIRES, "2001-01-01"),
    ] {
        let bad = client.submit_with(queue, None, Bytes::new(), &header(name, value)).await?;
        match client.wait_for(&bad, WAIT).await {
            Err(ClientError::Rejected { reason, .. }) => {
                assert!(reason.contains(name), "{name}: {value} rejected for {reason}")
            }
            other => panic!("{name}: {value} was not rejected: {other:?}"),
        }
    }
    run.stop().await;
    Ok(())
}

/// How the priority job of [`priority_jump`] becomes known to the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Announced {
    /// The jetwork client announces it once stored (the default set-up).
    ByTheClient,
    /// Published with plain JetStream, unannounced: the submit stream republishes every
    /// submission's headers (`streams.republish_submissions`).
    ByTheStream,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_priority_job_announced_by_the_client_jumps_the_unread_backlog_and_runs_once(
) -> anyhow::Result<()> {
    priority_jump(Announced::ByTheClient).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_priority_job_republished_by_the_stream_jumps_the_unread_backlog_and_runs_once(
) -> anyhow::Result<()> {
    priority_jump(Announced::ByTheStream).await
}

async fn priority_jump(announced: Announced) -> anyhow::Result<()> {
    // A small read-ahead: nearly all of the backlog stays unread in the stream.
    let run = InProcess::start(move |fast| {
        fast.master.master.prefetch = 8;
        fast.master.master.prefetch_shared = 0;
        let republish = announced == Announced::ByTheStream;
        fast.master.streams.republish_submissions = republish;
        fast.frontend.streams.republish_submissions = republish;
    })
    .await?;
    run.await_leader("m1", WAIT).await?;
    let (client, queue) = (&run.client, &run.queue);
    // Each job takes a while: the backlog is seconds of work for the one slot.
    let (_worker, order) = recording_worker(&run, Duration::from_millis(5));
    let started = || order.lock().map(|o| o.len()).unwrap_or_default();
    wait_until("the worker registered", WAIT, || async {
        client.status().await.is_ok_and(|s| !s.workers.is_empty())
    })
    .await?;

    tracing::info!("--- 1000 normal jobs, then one of priority 9 behind them");
    let mut ids = Vec::new();
    for i in 0..1000 {
        let id = WorkId::parse(&format!("n-{i}"))?;
        client.submit(queue, Some(id.clone()), Bytes::new()).await?;
        ids.push(id);
    }
    let urgent = WorkId::parse("urgent")?;
    let submitted = match announced {
        Announced::ByTheClient => {
            let headers = header(job_options::PRIORITY, "9");
            client.submit_with(queue, Some(urgent.clone()), Bytes::new(), &headers).await?
        }
        Announced::ByTheStream => {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(job_options::PRIORITY, "9");
            headers.insert("Nats-Msg-Id", urgent.as_str());
            let subject = jetwork_shared::subjects::submit(queue);
            let ack = run.js.publish_with_headers(subject, headers, Bytes::new()).await?.await?;
            jetwork_frontend::Submitted {
                work_id: urgent.clone(),
                queue: queue.clone(),
                seq: ack.sequence,
                duplicate: ack.duplicate,
            }
        }
    };
    let before = started();
    assert!(before < 900, "the backlog ran out before the priority job came ({before} started)");
    let result = client.wait_for(&submitted, WAIT).await?;
    assert_eq!((result.status, result.attempt), (ResultStatus::Completed, 1));
    let position = order.lock().map(|o| o.iter().position(|id| *id == "urgent")).ok().flatten();
    let position = position.ok_or_else(|| anyhow::anyhow!("urgent never started"))?;
    // Read in turn, it would start after every normal job (~1000 − `before` more).
    assert!(
        position < before + 100,
        "the priority job started as number {position}, {before} had started when it was stored"
    );

    tracing::info!("--- the backlog finishes, each job once; the jumped submission is passed");
    ids.push(urgent);
    let audit = run.completed(&ids, WAIT).await?;
    let passed = audit
        .events
        .iter()
        .filter(|(.., e)| matches!(e, jetwork_master::core::Event::SubmissionPassed { .. }))
        .count();
    assert_eq!(passed, 1, "the reader passed the jumped submission once");
    let runs = order.lock().map(|o| o.len()).unwrap_or_default();
    assert_eq!(runs, 1001, "every job ran exactly once");
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_job_on_a_queue_nobody_serves_is_seen_waiting_and_expires_on_time(
) -> anyhow::Result<()> {
    // Room for 2 jumps: the queue's cursor must pass what it jumped, or the third is unseen.
    let run = InProcess::start(|fast| fast.master.master.max_priority_jumps = 2).await?;
    run.await_leader("m1", WAIT).await?;
    let client = &run.client;
    let nobody: jetwork_shared::QueueName = "nobody".parse()?;

    tracing::info!("--- no worker serves `nobody`: expiring jobs are still seen waiting");
    let submitted_at = tokio::time::Instant::now();
    let mut expiring = Vec::new();
    for i in 1..=5 {
        let id = WorkId::parse(&format!("e{i}"))?;
        let headers = header(job_options::EXPIRES, "3s");
        let submitted = client.submit_with(&nobody, Some(id), Bytes::new(), &headers).await?;
        let info = poll_for("the master to know the job", WAIT, || async {
            client.job(&submitted.work_id, None).await.ok()
        })
        .await?;
        assert_eq!((info.state, info.queue.as_str()), (JobState::Ready, "nobody"), "{info:?}");
        expiring.push(submitted);
    }

    tracing::info!("--- they expire on time, with nobody ever serving the queue");
    for submitted in &expiring {
        let result = client.wait_for(submitted, WAIT).await?;
        assert_eq!(result.status, ResultStatus::Cancelled, "{result:?}");
        assert!(result.reason.unwrap_or_default().starts_with("expired: not started by"));
    }
    let took = submitted_at.elapsed();
    // Not early; and well before WAIT, which it would take without a worker to read them.
    assert!(took >= Duration::from_secs(3), "expired after {took:?}");
    assert!(took < Duration::from_secs(20), "expired after {took:?}");

    tracing::info!("--- the CLI announces too (and does not exit before the notice is out)");
    let procs = run.procs()?;
    let args = ["submit", "--queue", "nobody-else", "--id", "by-cli", "--expires", "1h", "5"];
    let (ok, text) = procs.frontend(&args).await?;
    assert!(ok, "{text}");
    let by_cli = WorkId::parse("by-cli")?;
    let info = poll_for("the master to know the CLI's job", WAIT, || async {
        client.job(&by_cli, None).await.ok()
    })
    .await?;
    assert_eq!(info.state, JobState::Ready, "{info:?}");

    tracing::info!("--- a worker comes: the expired job never runs, a later one runs once");
    let (_worker, order) = {
        let order = Arc::new(Mutex::new(Vec::new()));
        let worker = run.worker_with("w1", |w| w.worker.queues = vec!["nobody".to_owned()], {
            let order = order.clone();
            move |job: Job| {
                if let Ok(mut order) = order.lock() {
                    order.push(job.work_id.to_string());
                }
                async move { Ok(Bytes::new()) }
            }
        });
        (worker, order)
    };
    let later = client.submit(&nobody, Some(WorkId::parse("later")?), Bytes::new()).await?;
    let result = client.wait_for(&later, WAIT).await?;
    assert_eq!(result.status, ResultStatus::Completed, "{result:?}");
    let ran = order.lock().map(|o| o.clone()).unwrap_or_default();
    assert_eq!(ran, vec!["later".to_owned()], "only the later job ran");
    let audit = run.completed(&[later.work_id], WAIT).await?;
    let passed = audit
        .events
        .iter()
        .filter(|(.., e)| matches!(e, jetwork_master::core::Event::SubmissionPassed { .. }))
        .count();
    assert_eq!(passed, 6, "each jumped submission was passed once (five, and the CLI's)");
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_job_waits_out_its_delay_across_a_leader_kill() -> anyhow::Result<()> {
    let run = InProcess::build().masters(&[]).start().await?;
    let procs = run.procs()?;
    let mut m1 = procs.master("m1")?;
    run.await_leader("m1", WAIT).await?;
    let _m2 = procs.master("m2")?;
    let _worker = procs.worker("cat", &["--exec", "cat"])?;
    let client = &run.client;
    let delayed = client
        .submit_with(
            &run.queue,
            Some(WorkId::parse("delayed")?),
            Bytes::from_static(b"later"),
            &header(job_options::DELAY, "4s"),
        )
        .await?;
    let info = poll_for("the delayed job to be read and waiting", WAIT, || async {
        client.job(&delayed.work_id, None).await.ok().filter(|i| i.state == JobState::Waiting)
    })
    .await?;
    let not_before = info.options.not_before;
    assert!(not_before > 0 && info.ready_at_ms == Some(not_before), "{info:?}");
    assert_eq!(info.options, JobOptions { not_before, ..JobOptions::default() });

    tracing::info!("--- kill -9 the leader while the job waits; the standby keeps the delay");
    m1.kill9()?;
    run.await_leader("m2", WAIT).await?;
    let result = client.wait_for(&delayed, WAIT).await?;
    assert_eq!((result.status, &result.payload[..]), (ResultStatus::Completed, &b"later"[..]));
    let info = client.job(&delayed.work_id, None).await?;
    let started = info.history.first().map_or(0, |a| a.started_ms);
    assert!(started >= not_before, "started at {started}, before its time {not_before}");
    assert_eq!(run.audit().await?.attempts(&delayed.work_id), vec![1]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_jobs_falling_due_together_each_run_with_their_own_payload() -> anyhow::Result<()> {
    // Few slots, so most of them wait ready after falling due: their payloads, not kept while
    // they waited, are read back ahead of their hand-out (in batches, around the plain jobs
    // submitted in between), the rest by their grants.
    let run = InProcess::start(|_| {}).await?;
    let _worker = run.worker_with(
        "echo",
        |w| w.worker.concurrency = 4,
        |job: Job| async move { Ok(job.payload) },
    );
    run.await_leader("m1", WAIT).await?;
    let client = &run.client;
    let due = jetwork_shared::clock::now_ms() + 4_000;
    let not_before = header(job_options::NOT_BEFORE, &job_options::format_time(due));
    let mut submitted = Vec::new();
    for n in 0..300u32 {
        // One payload larger than the others, the rest told apart by their number.
        let payload = match n {
            150 => Bytes::from(vec![b'x'; 200 * 1024]),
            n => Bytes::from(format!("delayed-{n}")),
        };
        let job = client.submit_with(&run.queue, None, payload.clone(), &not_before).await?;
        submitted.push((job, payload));
        if n % 7 == 0 {
            let payload = Bytes::from(format!("plain-{n}"));
            submitted.push((client.submit(&run.queue, None, payload.clone()).await?, payload));
        }
    }
    assert!(jetwork_shared::clock::now_ms() < due, "all submitted before they fall due");
    for (job, payload) in &submitted {
        let result = client.wait_for(job, WAIT).await?;
        assert_eq!(result.status, ResultStatus::Completed, "{result:?}");
        assert!(result.payload == *payload, "{} ran with another payload", job.work_id);
        if payload.starts_with(b"delayed") {
            let info = client.job(&job.work_id, None).await;
            let started = info.ok().and_then(|i| i.history.first().map(|a| a.started_ms));
            assert!(started.is_none_or(|s| s >= due), "{} started before its time", job.work_id);
        }
    }
    let audit = run.audit().await?;
    for (job, _) in &submitted {
        assert_eq!(audit.attempts(&job.work_id), vec![1], "{} ran once", job.work_id);
    }
    run.stop().await;
    Ok(())
}
