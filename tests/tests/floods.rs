//! Floods of what anyone may send: the master's priority notices, status and admin requests
//! by the hundred thousand cost their own subscriptions some dropped messages and never make
//! the queue readers doubt their deliveries (intake has a connection of its own); idle HTTP
//! connections by the hundred cost the metrics listener and the dashboard no more than their
//! connection cap, and a probe is still answered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use jetwork_shared::{subjects, QueueName, WorkId};
use jetwork_tests::nats_server::free_port;
use jetwork_tests::{InProcess, Process, Scraper};
use jetwork_worker::square;

const WITHIN: Duration = Duration::from_secs(120);

/// Publishes `n` messages on `subject` as fast as the connection takes them: with a reply
/// subject nobody listens on (requests) or without (notices), `body(i)` each.
async fn flood(
    nats: async_nats::Client,
    subject: &'static str,
    n: usize,
    request: bool,
    body: fn(usize) -> (Option<async_nats::HeaderMap>, Bytes),
) -> anyhow::Result<()> {
    for i in 0..n {
        let (headers, payload) = body(i);
        match (request, headers) {
            (true, _) => nats.publish_with_reply(subject, "_INBOX.flood", payload).await?,
            (false, Some(headers)) => nats.publish_with_headers(subject, headers, payload).await?,
            (false, None) => nats.publish(subject, payload).await?,
        }
    }
    nats.flush().await?;
    Ok(())
}

/// Junk and forged priority notices on `jetwork.submitted.default`.
fn notice(i: usize) -> (Option<async_nats::HeaderMap>, Bytes) {
    if i.is_multiple_of(2) {
        return (None, Bytes::from(format!("junk {i}")));
    }
    // A priority notice naming a sequence nobody stored: each may cost an out-of-turn read.
    let forged = jetwork_shared::job_options::priority_notice(1_000_000 + i as u64, "9");
    (Some(forged), Bytes::new())
}

fn status_request(_: usize) -> (Option<async_nats::HeaderMap>, Bytes) {
    (None, Bytes::from_static(b"{}"))
}

fn admin_garbage(i: usize) -> (Option<async_nats::HeaderMap>, Bytes) {
    (None, Bytes::from(format!("{{\"queue\": {i}")))
}

/// Every flood at once, each from a connection of its own.
async fn floods(run: &InProcess, size: usize) -> anyhow::Result<()> {
    let submitted = "jetwork.submitted.default";
    let f = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok()).unwrap_or(1);
    let sent = tokio::try_join!(
        flood(run.server.connect().await?, submitted, size * f("FN"), false, notice),
        flood(
            run.server.connect().await?,
            subjects::MASTER_STATUS,
            size * f("FS"),
            true,
            status_request
        ),
        flood(
            run.server.connect().await?,
            subjects::ADMIN_PAUSE,
            size * f("FA") / 4,
            true,
            admin_garbage
        ),
    );
    sent.map(|_| ())
}

/// When each result of the default queue was seen.
fn watch_results(nats: async_nats::Client) -> Arc<Mutex<HashMap<String, Instant>>> {
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        let Ok(mut results) = nats.subscribe("jetwork.results.default.>").await else { return };
        while let Some(result) = results.next().await {
            let id = result.subject.rsplit('.').next().unwrap_or_default().to_owned();
            record
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(id)
                .or_insert(Instant::now());
        }
    });
    seen
}

/// Submits `count` squares one every `pace`, noting when each was acknowledged.
fn load(
    run: &InProcess,
    prefix: &'static str,
    count: u32,
    pace: Duration,
) -> tokio::task::JoinHandle<anyhow::Result<Vec<(WorkId, Instant)>>> {
    let client = run.client.clone();
    tokio::spawn(async move {
        let queue = QueueName::default_queue();
        let mut acked = Vec::new();
        for n in 1..=count {
            let id = WorkId::parse(&format!("{prefix}{n}"))?;
            client.submit(&queue, Some(id.clone()), Bytes::from(n.to_string())).await?;
            acked.push((id, Instant::now()));
            // Spreads the jobs over the floods; not a wait for anything.
            tokio::time::sleep(pace).await;
        }
        Ok(acked)
    })
}

/// The master's count of reader restarts (its `/metrics`).
async fn rereads(scraper: &Scraper) -> anyhow::Result<f64> {
    let scrape = scraper.metrics().await?;
    scrape.get("jetwork_master_intake_rereads_total", &[]).ok_or_else(|| {
        anyhow::anyhow!("no jetwork_master_intake_rereads_total in\n{}", scrape.text)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_notices_and_requests_never_make_the_readers_read_again() -> anyhow::Result<()> {
    let run = InProcess::build().masters(&[]).start().await?;
    let mut procs = run.procs()?;
    let port = free_port()?;
    // The real binary (one thread, like in production) logging as it does by default; a lease
    // that outlives the freeze.
    procs
        .set("JETWORK_MASTER__METRICS_LISTEN", &format!("127.0.0.1:{port}"))
        .set("JETWORK_MASTER__LEASE_TTL", "10s")
        .set("RUST_LOG", "info,async_nats=warn");
    let master: Process = procs.master("m1")?;
    let scraper = Scraper { addr: ([127, 0, 0, 1], port).into() };
    let _workers = [run.worker("w1", square), run.worker("w2", square)];
    run.await_leader("m1", WITHIN).await?;
    let seen = watch_results(run.server.connect().await?);
    let warm = run.submit("warm", b"3").await?;
    run.result(&warm, WITHIN).await?;
    assert_eq!(rereads(&scraper).await?, 0.0);
    let started = Instant::now();

    tracing::info!("--- floods while jobs arrive and run");
    let live = load(&run, "live-", 200, Duration::from_millis(20));
    floods(&run, 100_000).await?;
    let acked = live.await??;

    tracing::info!("--- floods that pile up while the master is frozen, then arrive at once");
    let frozen = load(&run, "frozen-", 100, Duration::from_millis(20));
    master.freeze()?;
    let froze = Instant::now();
    let flooded = floods(&run, 60_000).await;
    master.resume()?;
    let resumed = Instant::now();
    flooded?;
    let frozen = frozen.await??;

    let ids: Vec<WorkId> = acked.iter().chain(&frozen).map(|(id, _)| id.clone()).collect();
    run.completed(&ids, WITHIN).await?;
    let logs = master.logs();
    let overflowed = logs.matches("messages dropped for a slow subscription").count();
    assert!(
        overflowed > 0,
        "the floods overflowed no subscription (this test shows nothing):\n{logs}"
    );
    // At most one line a second per connection, however many messages were dropped.
    let bound = 3 * (started.elapsed().as_secs() as usize + 1);
    assert!(overflowed <= bound, "{overflowed} lines about dropped messages:\n{logs}");
    assert_eq!(rereads(&scraper).await?, 0.0, "a reader read again:\n{logs}");
    assert!(!logs.contains("may have missed deliveries"), "{logs}");

    // Figures for the record: how long jobs took from their acknowledgement to their result (a
    // job acknowledged while the master was frozen cannot start before it resumes).
    let seen = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let delays = |jobs: &[(WorkId, Instant)]| {
        let mut d: Vec<Duration> = jobs
            .iter()
            .filter_map(|(id, at)| {
                let from = if *at > froze && *at < resumed { resumed } else { *at };
                Some(seen.get(id.as_str())?.saturating_duration_since(from))
            })
            .collect();
        d.sort();
        (d.get(d.len() / 2).copied(), d.last().copied())
    };
    println!("frozen for {:?}; {overflowed} lines about dropped messages", resumed - froze);
    println!("during the floods, job delay (median, max): {:?}", delays(&acked));
    println!("after the freeze, job delay (median, max): {:?}", delays(&frozen));
    run.stop().await;
    Ok(())
}
