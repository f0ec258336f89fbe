//! The Akka sample's own acceptance test (`DistributedWorkerSpec`), re-run against jetwork:
//! three healthy workers and one flaky worker whose executor fails on its 3rd job and whose
//! process dies on its 5th; work id "1" is sent repeatedly until acknowledged and must yield
//! exactly one result; then ids 2..=100 must each yield exactly one result.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use jetwork_shared::WorkId;
use jetwork_tests::{wait_until, InProcess};
use jetwork_worker::{square, Job};
use tokio::sync::mpsc;

/// How many jobs the flaky worker must have taken: its 5th is the one it dies on.
const FLAKY_DIES_ON: u32 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perform_work_and_publish_results_exactly_once() -> anyhow::Result<()> {
    let run = InProcess::build().masters(&["master"]).start().await?;
    let _workers: Vec<_> = (1..=3).map(|i| run.worker(&format!("healthy-{i}"), square)).collect();

    // The flaky executor: 3rd job fails, on the 5th the worker process "dies" mid-job.
    let (died_tx, mut died) = mpsc::unbounded_channel::<()>();
    let count = Arc::new(AtomicU32::new(0));
    let flaky = run.worker("flaky", {
        let count = count.clone();
        move |job: Job| {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            let died_tx = died_tx.clone();
            async move {
                match n {
                    3 => Err("flaky executor crashed".into()),
                    FLAKY_DIES_ON => {
                        let _ = died_tx.send(());
                        std::future::pending().await
                    }
                    _ => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        square(job).await
                    }
                }
            }
        }
    });
    let (client, queue) = (&run.client, &run.queue);
    // The flaky worker is to take part: the work starts once all four have registered.
    wait_until("the four workers to register", Duration::from_secs(30), || async {
        client.status().await.is_ok_and(|s| s.workers_total >= 4)
    })
    .await?;

    tracing::info!("--- work 1, sent until acknowledged, several times");
    let one = WorkId::parse("1")?;
    for _ in 0..3 {
        client.submit(queue, Some(one.clone()), Bytes::from_static(b"1")).await?;
    }
    let result = run.result(&one, Duration::from_secs(30)).await?;
    assert_eq!(result.payload, Bytes::from_static(b"1 * 1 = 1"));

    tracing::info!("--- work 2..=100");
    let mut expected = vec![one];
    for n in 2..=100u32 {
        let id = WorkId::parse(&n.to_string())?;
        client.submit(queue, Some(id.clone()), Bytes::from(n.to_string())).await?;
        expected.push(id);
    }

    tracing::info!("--- the flaky worker dies if it reaches its 5th job");
    let crasher = tokio::spawn(async move {
        if died.recv().await.is_some() {
            flaky.crash();
        }
    });

    tracing::info!("--- every result arrives exactly once");
    let audit = run.completed(&expected, Duration::from_secs(90)).await?;
    for n in [1u32, 2, 50, 100] {
        let id = WorkId::parse(&n.to_string())?;
        assert_eq!(audit.results[&id][0].payload, format!("{n} * {n} = {}", n * n).into_bytes());
    }
    assert_eq!(audit.results.len(), 100, "no result for an id that was never submitted");
    // The flaky worker took part up to its death: its 3rd job failed, its 5th never ended.
    let taken = count.load(Ordering::SeqCst);
    assert!(taken >= FLAKY_DIES_ON, "the flaky worker took only {taken} jobs");
    // Both incidents were retried (one more attempt each) and still finished once.
    let retries: usize = expected.iter().map(|id| audit.attempts(id).len() - 1).sum();
    assert!(retries >= 2, "2 flaky incidents but {retries} retried attempts");
    crasher.abort();
    run.stop().await;
    Ok(())
}
