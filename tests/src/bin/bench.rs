//! End-to-end throughput benchmark, side by side with a raw JetStream baseline in the same run
//! and on the same fresh nats-server (file store):
//!
//! - **baseline**: a hand-rolled job queue: a work-queue stream, pull consumers that "run" the
//!   job (the squarer), publish its result to a results stream and ack the job;
//! - **jetwork**: a master and workers (in this process), submissions to
//!   `jetwork.submit.bench`, results counted on `jetwork.results.bench.>`.
//!
//! Both producers pipeline their publishes (acknowledgements awaited in a window), so the
//! numbers compare the job systems, not the producers.
//!
//! ```sh
//! cargo run --release -p jetwork-tests --bin bench -- --jobs 20000 --workers 2 --concurrency 64
//! ```

use std::collections::VecDeque;
use std::future::IntoFuture;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::pull, message::PublishMessage, stream};
use bytes::Bytes;
use futures::StreamExt;
use jetwork_shared::{connect, QueueName};
use jetwork_tests::inproc::{spawn_master, spawn_worker};
use jetwork_tests::{fast_settings, NatsServer};

struct Options {
    /// Run only this side (`baseline` or `jetwork`); both when empty.
    only: String,
    jobs: u64,
    workers: u32,
    concurrency: u32,
    window: usize,
}

fn parse() -> anyhow::Result<Options> {
    let mut o =
        Options { only: String::new(), jobs: 20_000, workers: 2, concurrency: 64, window: 2048 };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--jobs" => o.jobs = value.parse()?,
            "--workers" => o.workers = value.parse()?,
            "--concurrency" => o.concurrency = value.parse()?,
            "--window" => o.window = value.parse()?,
            "--only" => o.only = value,
            other => anyhow::bail!(
                "unknown flag {other} (use --jobs, --workers, --concurrency, --window, --only)"
            ),
        }
    }
    Ok(o)
}

/// Publishes `jobs` integers to `subject_of(n)`, keeping at most `window` acks outstanding.
async fn produce(
    js: &jetstream::Context,
    jobs: u64,
    window: usize,
    subject_of: impl Fn(u64) -> (String, Option<String>),
) -> anyhow::Result<()> {
    let mut acks = VecDeque::new();
    for n in 1..=jobs {
        let (subject, id) = subject_of(n);
        let mut message = PublishMessage::build().payload(Bytes::from(n.to_string()));
        if let Some(id) = id {
            message = message.message_id(id);
        }
        acks.push_back(js.send_publish(subject, message).await?.into_future());
        if acks.len() >= window {
            if let Some(ack) = acks.pop_front() {
                ack.await?;
            }
        }
    }
    for ack in acks {
        ack.await?;
    }
    Ok(())
}

async fn baseline(js: &jetstream::Context, o: &Options) -> anyhow::Result<Duration> {
    js.create_stream(stream::Config {
        name: "BENCH_JOBS".into(),
        subjects: vec!["bench.jobs".into()],
        retention: stream::RetentionPolicy::WorkQueue,
        ..Default::default()
    })
    .await?;
    js.create_stream(stream::Config {
        name: "BENCH_RESULTS".into(),
        subjects: vec!["bench.results.>".into()],
        ..Default::default()
    })
    .await?;
    let jobs = js.get_stream("BENCH_JOBS").await?;
    let consumer = jobs
        .create_consumer(pull::Config {
            durable_name: Some("workers".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            max_ack_pending: i64::from(o.workers * o.concurrency),
            ..Default::default()
        })
        .await?;
    let client = js.client();
    let mut results = client.subscribe("bench.results.>").await?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..o.workers {
        let consumer = consumer.clone();
        let js = js.clone();
        let concurrency = o.concurrency as usize;
        tasks.push(tokio::spawn(async move {
            let messages = consumer.stream().max_messages_per_batch(concurrency).messages().await?;
            // Up to `concurrency` jobs in flight per worker, like a jetwork worker's slots.
            messages
                .for_each_concurrent(concurrency, |message| {
                    let js = js.clone();
                    async move {
                        let Ok(message) = message else { return };
                        let Ok(result) = jetwork_worker::square_payload(&message.payload) else {
                            return;
                        };
                        let Ok(info) = message.info() else { return };
                        let subject = format!("bench.results.{}", info.stream_sequence);
                        // Result stored before the job is acknowledged, as a careful
                        // hand-rolled queue does.
                        let stored = async {
                            js.send_publish(subject, PublishMessage::build().payload(result.into()))
                                .await?
                                .await
                        };
                        if stored.await.is_ok() {
                            let _ = message.ack().await;
                        }
                    }
                })
                .await;
            anyhow::Ok(())
        }));
    }
    let producer = {
        let js = js.clone();
        let (jobs, window) = (o.jobs, o.window);
        tokio::spawn(
            async move { produce(&js, jobs, window, |_| ("bench.jobs".into(), None)).await },
        )
    };
    count_results(&mut results, o.jobs).await?;
    let elapsed = started.elapsed();
    producer.await??;
    for task in tasks {
        task.abort();
    }
    Ok(elapsed)
}

async fn jetwork(server: &NatsServer, o: &Options) -> anyhow::Result<Duration> {
    let mut fast = fast_settings(&server.url());
    fast.master.master.work_timeout = Duration::from_secs(30);
    fast.master.master.worker_timeout = Duration::from_secs(30);
    fast.master.master.lease_ttl = Duration::from_secs(10);
    fast.master.master.snapshot_every = 100_000;
    fast.master.master.snapshot_interval = Duration::from_secs(30);
    fast.master.streams.journal_retention = Duration::from_secs(60);
    fast.worker.worker.queues = vec!["bench".into()];
    fast.worker.worker.concurrency = o.concurrency;
    fast.worker.worker.register_interval = Duration::from_secs(2);
    let master = spawn_master("bench-master", fast.master.clone());
    let workers: Vec<_> = (0..o.workers)
        .map(|i| spawn_worker(&format!("bench-w{i}"), fast.worker.clone(), jetwork_worker::square))
        .collect();
    let client = server.connect().await?;
    let js = connect::jetstream(&client, &fast.master.nats);
    // Wait until the master leads and the workers are registered.
    let frontend = jetwork_frontend::Client::connect(fast.frontend.clone()).await?;
    jetwork_tests::wait_until("workers registered", Duration::from_secs(30), || async {
        frontend.status().await.is_ok_and(|s| s.workers.len() == o.workers as usize)
    })
    .await?;
    let queue = QueueName::parse("bench")?;
    let mut results = client.subscribe(format!("jetwork.results.{queue}.>")).await?;
    let started = Instant::now();
    let producer = {
        let js = js.clone();
        let (jobs, window) = (o.jobs, o.window);
        tokio::spawn(async move {
            produce(&js, jobs, window, |n| ("jetwork.submit.bench".into(), Some(format!("b{n}"))))
                .await
        })
    };
    count_results(&mut results, o.jobs).await?;
    let elapsed = started.elapsed();
    producer.await??;
    let journal = js.get_stream(jetwork_shared::subjects::JOURNAL_STREAM).await?.get_info().await?;
    println!(
        "  jetwork journal: {} messages, {:.1} MB for {} jobs",
        journal.state.messages,
        journal.state.bytes as f64 / 1e6,
        o.jobs
    );
    for w in workers {
        w.stop().await;
    }
    master.stop().await;
    Ok(elapsed)
}

/// Waits for `jobs` messages on `results`.
async fn count_results(results: &mut async_nats::Subscriber, jobs: u64) -> anyhow::Result<()> {
    for _ in 0..jobs {
        tokio::time::timeout(Duration::from_secs(60), results.next())
            .await?
            .context("results ended")?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = parse()?;
    println!(
        "jobs={} workers={} concurrency={} window={} (nats-server file store, one machine)",
        o.jobs, o.workers, o.concurrency, o.window
    );
    let rate = |d: Duration| o.jobs as f64 / d.as_secs_f64();
    if o.only.is_empty() || o.only == "baseline" {
        let server = NatsServer::start()?;
        let client = server.connect().await?;
        let js = jetstream::new(client);
        let d = baseline(&js, &o).await?;
        println!(
            "baseline (raw JetStream work queue + results stream): {:>8.0} jobs/s  ({:.2}s)",
            rate(d),
            d.as_secs_f64()
        );
    }
    if o.only.is_empty() || o.only == "jetwork" {
        let server = NatsServer::start()?;
        let d = jetwork(&server, &o).await?;
        println!(
            "jetwork (submit -> master -> worker -> result):      {:>8.0} jobs/s  ({:.2}s)",
            rate(d),
            d.as_secs_f64()
        );
    }
    Ok(())
}
