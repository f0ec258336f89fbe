//! Waiting work is bounded (real nats-server, in-process master and worker): delayed jobs count
//! against `master.max_waiting_per_queue`, and at the limit the master stops reading the
//! queue. Nothing stored is refused or lost; the queue's later submissions, delayed or not,
//! stay in the stream behind the waiting ones until some of them fall due (the documented
//! head-of-line effect), then everything runs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use jetwork_shared::job_options;
use jetwork_shared::jobs::{JobState, JobsQuery};
use jetwork_shared::WorkId;
use jetwork_tests::{wait_until, InProcess};
use jetwork_worker::Job;

const WAIT: Duration = Duration::from_secs(40);
/// The limit under test.
const LIMIT: u64 = 4;
/// What the reader may have been granted beyond it: one free slot plus the prefetch (1).
const GRANTED: u64 = 2;
const DELAYED: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_jobs_at_the_limit_stop_the_reader_and_all_run_in_the_end() -> anyhow::Result<()> {
    let run = InProcess::start(|fast| {
        fast.master.master.max_waiting_per_queue = LIMIT;
        fast.master.master.prefetch = 1;
        fast.master.master.prefetch_shared = 0;
    })
    .await?;
    let (client, queue) = (&run.client, &run.queue);
    run.await_leader("m1", WAIT).await?;
    let order = Arc::new(Mutex::new(Vec::new()));
    let _worker = run.worker_with("w1", |w| w.worker.concurrency = 1, {
        let order = order.clone();
        move |job: Job| {
            if let Ok(mut order) = order.lock() {
                order.push(job.work_id.to_string());
            }
            async move { Ok(Bytes::new()) }
        }
    });
    wait_until("the worker registered", WAIT, || async {
        client.status().await.is_ok_and(|s| !s.workers.is_empty())
    })
    .await?;

    tracing::info!("--- {DELAYED} jobs delayed by 4s, then one to run at once");
    let delay = vec![(job_options::DELAY, "4s".to_owned())];
    let mut submitted = Vec::new();
    for i in 0..DELAYED {
        let id = WorkId::parse(&format!("delayed-{i}"))?;
        submitted.push(client.submit_with(queue, Some(id), Bytes::new(), &delay).await?);
    }
    let plain = client.submit_with(queue, Some(WorkId::parse("plain")?), Bytes::new(), &[]).await?;

    let waiting = JobsQuery { state: Some(JobState::Waiting), ..JobsQuery::default() };
    wait_until("the queue's waiting limit reached", WAIT, || async {
        client.jobs(&waiting).await.is_ok_and(|page| page.jobs.len() as u64 >= LIMIT)
    })
    .await?;
    let all = client.jobs(&JobsQuery::default()).await?;
    assert!(
        all.jobs.len() as u64 <= LIMIT + GRANTED,
        "the reader stopped at the limit (plus what it had been granted): {:?}",
        all.jobs.iter().map(|j| j.work_id.to_string()).collect::<Vec<_>>()
    );
    assert!(
        all.jobs.iter().all(|j| j.state == JobState::Waiting),
        "the job behind the waiting ones is not read yet: {:?}",
        all.jobs.iter().map(|j| (j.work_id.to_string(), j.state)).collect::<Vec<_>>()
    );

    tracing::info!("--- once the delays end, everything runs, nothing lost");
    client.wait_for(&plain, WAIT).await?;
    for s in &submitted {
        client.wait_for(s, WAIT).await?;
    }
    let order = order.lock().map(|o| o.clone()).unwrap_or_default();
    let position = order.iter().position(|id| id == "plain");
    assert!(
        position.is_some_and(|p| p as u64 >= LIMIT),
        "the plain job ran only after the waiting jobs ahead of it fell due: {order:?}"
    );
    assert_eq!(order.len(), DELAYED + 1, "each job ran once: {order:?}");
    Ok(())
}
