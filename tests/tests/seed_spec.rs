//! The Akka sample's own acceptance test (`DistributedWorkerSpec`), re-run against jetwork:
//! three healthy workers and one flaky worker whose executor fails on its 3rd job and whose
//! process dies on its 5th; work id "1" is sent repeatedly until acknowledged and must yield
//! exactly one result; then ids 2..=100 must each yield exactly one result.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use jetwork_frontend::Client;
use jetwork_shared::{connect, QueueName, WorkId};
use jetwork_tests::inproc::{spawn_master, spawn_worker};
use jetwork_tests::{fast_settings, init_logging, Audit, NatsServer};
use jetwork_worker::{square, Job};
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perform_work_and_publish_results_exactly_once() -> anyhow::Result<()> {
    init_logging();
    let server = NatsServer::start()?;
    let fast = fast_settings(&server.url());
    let master = spawn_master("master", fast.master.clone());
    let _workers: Vec<_> = (1..=3)
        .map(|i| spawn_worker(&format!("healthy-{i}"), fast.worker.clone(), square))
        .collect();

    // The flaky executor: 3rd job fails, on the 5th the worker process "dies" mid-job.
    let (died_tx, mut died) = mpsc::unbounded_channel::<()>();
    let count = Arc::new(AtomicU32::new(0));
    let flaky = spawn_worker("flaky", fast.worker.clone(), {
        let count = count.clone();
        move |job: Job| {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            let died_tx = died_tx.clone();
            async move {
                match n {
                    3 => Err("flaky executor crashed".to_owned()),
                    5 => {
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
    let client = Client::connect(fast.frontend.clone()).await?;
    let queue = QueueName::default_queue();
    let results_nats = server.connect().await?;

    tracing::info!("--- work 1, sent until acknowledged, several times");
    let one = WorkId::parse("1")?;
    for _ in 0..3 {
        client.submit(&queue, Some(one.clone()), Bytes::from_static(b"1")).await?;
    }
    let result = client.wait_result(&queue, &one, Duration::from_secs(30)).await?;
    assert_eq!(result.payload, Bytes::from_static(b"1 * 1 = 1"));

    tracing::info!("--- work 2..=100");
    let mut expected = vec![one];
    for n in 2..=100u32 {
        let id = WorkId::parse(&n.to_string())?;
        client.submit(&queue, Some(id.clone()), Bytes::from(n.to_string())).await?;
        expected.push(id);
    }

    tracing::info!("--- the flaky worker dies if it reaches its 5th job");
    let crasher = tokio::spawn(async move {
        if died.recv().await.is_some() {
            flaky.crash();
        }
    });

    tracing::info!("--- every result arrives exactly once");
    let js = connect::jetstream(&results_nats, &fast.frontend.nats);
    let audit = Audit::await_completed(&js, &expected, Duration::from_secs(90)).await?;
    for n in [1u32, 2, 50, 100] {
        let id = WorkId::parse(&n.to_string())?;
        assert_eq!(audit.results[&id][0].payload, format!("{n} * {n} = {}", n * n).into_bytes());
    }
    assert_eq!(audit.results.len(), 100, "no result for an id that was never submitted");
    // Whatever the flaky worker failed or died with was retried and still finished once.
    let incidents = match count.load(Ordering::SeqCst) {
        0..=2 => 0,
        3 | 4 => 1,
        _ => 2,
    };
    let retried = expected.iter().filter(|id| audit.attempts(id).len() > 1).count();
    assert!(retried >= incidents, "{incidents} flaky incidents but {retried} retried items");
    crasher.abort();
    master.stop().await;
    Ok(())
}
