//! The baseline: the job queue people hand-roll on JetStream, the floor jetwork is measured
//! against. A work-queue stream takes the jobs (published with acknowledgements), worker
//! processes pull them through one durable consumer, run the job, publish the result to a
//! results stream (waiting for its acknowledgement) and only then ack the job. Everything a
//! careful hand-rolled queue does, and nothing more: no job ids, no attempts, no deadlines
//! beyond the consumer's ack wait, no failover logic.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use futures::StreamExt;

use crate::stamp;

pub const JOBS_SUBJECT: &str = "bench.jobs";
pub const RESULTS_SUBJECTS: &str = "bench.results.>";
const CONSUMER: &str = "workers";

/// Creates the two streams (`replicas` each) and the workers' consumer, which lets
/// `in_flight` jobs be unacknowledged at once (the workers' total concurrency).
pub async fn setup(js: &jetstream::Context, in_flight: u32, replicas: usize) -> anyhow::Result<()> {
    let jobs = js
        .create_stream(stream::Config {
            name: "BENCH_JOBS".into(),
            subjects: vec![JOBS_SUBJECT.into()],
            retention: stream::RetentionPolicy::WorkQueue,
            num_replicas: replicas,
            ..Default::default()
        })
        .await?;
    js.create_stream(stream::Config {
        name: "BENCH_RESULTS".into(),
        subjects: vec![RESULTS_SUBJECTS.into()],
        num_replicas: replicas,
        ..Default::default()
    })
    .await?;
    jobs.create_consumer(pull::Config {
        durable_name: Some(CONSUMER.into()),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        max_ack_pending: i64::from(in_flight),
        ack_wait: Duration::from_secs(30),
        ..Default::default()
    })
    .await?;
    Ok(())
}

/// Waits until `workers` workers have a pull request waiting.
pub async fn await_workers(js: &jetstream::Context, workers: usize) -> anyhow::Result<()> {
    jetwork_tests::wait_until("baseline workers pulling", Duration::from_secs(30), || async {
        let consumer: Result<jetstream::consumer::PullConsumer, _> =
            js.get_consumer_from_stream(CONSUMER, "BENCH_JOBS").await;
        match consumer {
            Ok(mut c) => c.info().await.is_ok_and(|i| i.num_waiting >= workers),
            Err(_) => false,
        }
    })
    .await
}

/// A baseline worker process: runs up to `concurrency` jobs at once until killed.
pub async fn worker(client: async_nats::Client, concurrency: usize) -> anyhow::Result<()> {
    let js = jetstream::new(client);
    let consumer: jetstream::consumer::PullConsumer =
        js.get_consumer_from_stream(CONSUMER, "BENCH_JOBS").await?;
    // The stream pulls again once half a pull is delivered; a pull of one would re-pull only
    // after each job (seen at ~140 jobs/s), so pull at least two to keep one waiting at the
    // server. The consumer's max_ack_pending caps the jobs in flight either way.
    let batch = concurrency.max(2);
    let messages = consumer.stream().max_messages_per_batch(batch).messages().await?;
    messages
        .for_each_concurrent(concurrency, |message| {
            let js = js.clone();
            async move {
                let Ok(message) = message else { return };
                let Ok(result) = stamp::run(&message.payload) else { return };
                let Ok(info) = message.info() else { return };
                let subject = format!("bench.results.{}", info.stream_sequence);
                // The result is stored before the job is acknowledged.
                let stored = async { js.publish(subject, result).await?.await };
                if stored.await.is_ok() {
                    let _ = message.ack().await;
                }
            }
        })
        .await;
    Ok(())
}
