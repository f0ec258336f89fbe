//! How the master reads the submit stream: many served queues through one unfiltered
//! consumer (the stream reader), and a queue whose backlog is past its read-ahead through a
//! consumer of its own until it has caught up, with every submission run once either way.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer;
use bytes::Bytes;
use futures::TryStreamExt;
use jetwork_shared::jobs::JobState;
use jetwork_shared::{subjects, QueueName, WorkId};
use jetwork_tests::{wait_until, InProcess};
use jetwork_worker::{square, Job};
use tokio::sync::Semaphore;

/// How [`submit_consumers`] lists the stream reader's consumer, which has no filter.
const STREAM_READER: &str = "(every submission)";

/// The master's consumers on the submit stream (told apart from the audit's by their
/// description), each by its filter subject: `jetwork.*.<queue>` for a queue reader's,
/// [`STREAM_READER`] for the stream reader's.
async fn submit_consumers(js: &async_nats::jetstream::Context) -> anyhow::Result<Vec<String>> {
    let stream = js.get_stream(subjects::SUBMIT_STREAM).await?;
    let infos: Vec<_> = stream.consumers().try_collect().await?;
    let master = |c: &consumer::Config| {
        c.description.as_deref().is_some_and(|d| d.starts_with("jetwork master: submission reader"))
    };
    let filters = infos.into_iter().map(|info| info.config).filter(master);
    let named = |filter: String| match filter.is_empty() {
        true => STREAM_READER.to_owned(),
        false => filter,
    };
    Ok(filters.map(|c| named(c.filter_subject)).collect())
}

/// Eighty queues served by two workers, ten jobs each submitted interleaved: the server never
/// holds more than a couple of consumers on the submit stream (one per queue before the
/// stream reader), and every job runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_queues_are_read_through_one_consumer() -> anyhow::Result<()> {
    let run = InProcess::start(|_| {}).await?;
    assert!(submit_consumers(&run.js).await?.is_empty());
    let queues: Vec<QueueName> =
        (0..80).map(|n| QueueName::parse(&format!("q{n}"))).collect::<Result<_, _>>()?;
    let names = |half: usize| -> Vec<String> {
        queues.iter().skip(half * 40).take(40).map(|q| q.to_string()).collect()
    };
    let (first, second) = (names(0), names(1));
    let _w1 = run.worker_with("w1", move |w| w.worker.queues = first, square);
    let _w2 = run.worker_with("w2", move |w| w.worker.queues = second, square);

    tracing::info!("--- 800 jobs over 80 queues, interleaved, while the consumers are counted");
    let counting = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = {
        let (js, most) = (run.js.clone(), counting.clone());
        // Samples every 20 ms until aborted.
        let mut every = tokio::time::interval(Duration::from_millis(20));
        tokio::spawn(async move {
            loop {
                every.tick().await;
                if let Ok(filters) = submit_consumers(&js).await {
                    most.fetch_max(filters.len(), std::sync::atomic::Ordering::Relaxed);
                }
            }
        })
    };
    let mut ids = Vec::new();
    for round in 0..10 {
        for queue in &queues {
            let id = WorkId::parse(&format!("{queue}-{round}"))?;
            run.client.submit(queue, Some(id.clone()), Bytes::from_static(b"3")).await?;
            ids.push(id);
        }
    }
    let audit = run.completed(&ids, Duration::from_secs(120)).await?;
    counter.abort();
    audit.expect_one_outcome_each()?;
    let most = counting.load(std::sync::atomic::Ordering::Relaxed);
    let now = submit_consumers(&run.js).await?;
    assert!(most <= 3, "at most {most} consumers on the submit stream (now {now:?})");
    assert_eq!(now, vec![STREAM_READER.to_owned()], "only the stream reader's");
    Ok(())
}

/// A queue whose submissions outrun its read-ahead (a worker holding its two slots, a
/// read-ahead of 8) spills to a reader of its own, which leaves the backlog in the stream;
/// once the backlog has run and the reader waits for more, the queue is read by the stream
/// reader again. Every job runs once throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_past_its_read_ahead_gets_a_reader_of_its_own_until_it_has_caught_up(
) -> anyhow::Result<()> {
    let run = InProcess::start(|fast| {
        // Held jobs must not time out meanwhile.
        fast.master.master.work_timeout = Duration::from_secs(600);
        fast.master.master.prefetch = 8;
        fast.master.master.prefetch_shared = 8;
    })
    .await?;
    let own_filter = subjects::submissions_of(&run.queue);
    let gate = Arc::new(Semaphore::new(0));
    let held = gate.clone();
    let handler = move |job: Job| {
        let held = held.clone();
        async move {
            let _permit = held.acquire().await.map_err(|e| e.to_string())?;
            Ok(job.payload)
        }
    };
    let _worker = run.worker_with("w1", |w| w.worker.concurrency = 2, handler);

    tracing::info!("--- a first job, read by the stream reader");
    let first = run.submit("first", b"1").await?;
    wait_until("the first job has started", Duration::from_secs(30), || async {
        run.client.job(&first, None).await.is_ok_and(|job| job.state == JobState::Running)
    })
    .await?;
    assert_eq!(submit_consumers(&run.js).await?, vec![STREAM_READER.to_owned()]);

    tracing::info!("--- 200 more while both slots are held: the queue spills");
    let seen = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let watcher = {
        let (js, seen) = (run.js.clone(), seen.clone());
        // Samples every 10 ms until aborted.
        let mut every = tokio::time::interval(Duration::from_millis(10));
        tokio::spawn(async move {
            loop {
                every.tick().await;
                if let Ok(filters) = submit_consumers(&js).await {
                    seen.lock().expect("not poisoned").extend(filters);
                }
            }
        })
    };
    let mut ids = vec![first];
    for n in 0..200 {
        ids.push(run.submit(&format!("backlog-{n}"), b"2").await?);
    }
    // With nothing joined the stream reader stops (and the queue's own reader has no credits
    // until the slots free up).
    wait_until("the stream reader has stopped", Duration::from_secs(30), || async {
        submit_consumers(&run.js).await.is_ok_and(|filters| filters.is_empty())
    })
    .await?;

    tracing::info!("--- released: everything runs once, and the stream reader takes it back");
    gate.add_permits(Semaphore::MAX_PERMITS / 2);
    let audit = run.completed(&ids, Duration::from_secs(120)).await?;
    audit.expect_one_outcome_each()?;
    wait_until("only the stream reader reads the queue", Duration::from_secs(60), || async {
        submit_consumers(&run.js)
            .await
            .is_ok_and(|filters| filters == vec![STREAM_READER.to_owned()])
    })
    .await?;
    watcher.abort();
    let seen = seen.lock().expect("not poisoned").clone();
    assert!(seen.contains(&own_filter), "the backlog was read by the queue's own reader: {seen:?}");
    let after = run.submit("after", b"3").await?;
    run.completed(&[after], Duration::from_secs(30)).await?.expect_one_outcome_each()?;
    Ok(())
}
