//! Queues (opt-in, `--phases queues`): what the master's cost does as the queues grow
//! (`--queue-counts`, 1 → 1,000 by default). For each count, on a fresh server and master:
//! `--queue-workers` hand-spoken workers ([`Fleet`], capacity 16 each) share the queues out
//! (worker `i` serves the queues `j` with `j % workers == i`; with fewer queues than workers,
//! queue `i % queues`), so every worker serves at most `master.max_queues_per_worker` (64) and
//! the master runs with its default limits; `--queue-jobs` jobs go to the queues in turn, as
//! fast as acknowledgements allow. Reported per count: jobs/s (target ≥ 0.8× the first count),
//! the master's peak RSS above its RSS when leading with no workers and no queues
//! (target ≤ 64 MiB), and the
//! consumers on `JETWORK_SUBMIT` before the load, at most during it, and 2 s after it (no
//! target: the figure says whether the master keeps one per served queue, or fewer).
//!
//! The baseline has no queues (one stream, one subject, one consumer): nothing to compare.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::MultiProgress;
use jetwork_shared::{subjects, QueueName};

use crate::cluster::{rss_mib, Cluster};
use crate::fleet::{self, Fleet};
use crate::load::Spread;
use crate::report::Report;
use crate::throughput::drive_spread;
use crate::Options;

/// Slots per worker.
const CAPACITY: u32 = 16;
/// Connections the workers share.
const CONNECTIONS: usize = 4;
/// `master.max_queues_per_worker`'s default.
const MAX_QUEUES_PER_WORKER: u32 = 64;

/// One count's figures.
struct Figures {
    rate: f64,
    rss_above_idle: f64,
    consumers: [usize; 3],
}

pub async fn run(o: &Options, report: &mut Report, progress: &MultiProgress) -> anyhow::Result<()> {
    let mut reference: Option<f64> = None;
    for &n in &o.queue_counts {
        let f = once(n, o, progress).await?;
        let case = |what: &str| format!("{n} queue{}: {what}", if n == 1 { "" } else { "s" });
        let w = o.queue_workers;
        let rate = report.add(
            "queues",
            &case(&format!("{} jobs, {w} workers × 16", o.queue_jobs)),
            "jobs/s",
            Some(f.rate),
            None,
        );
        if let Some(r) = reference {
            rate.target("≥ 0.8× the first count", f.rate >= 0.8 * r);
        }
        report
            .add("queues", &case("master peak RSS above idle"), "MiB", Some(f.rss_above_idle), None)
            .target("≤ 64 MiB", f.rss_above_idle <= 64.0);
        let [before, during, after] = f.consumers;
        for (when, count) in [("before the load", before), ("at most during it", during)] {
            let what = format!("consumers on JETWORK_SUBMIT, {when}");
            report.add("queues", &case(&what), "consumers", Some(count as f64), None);
        }
        let what = "consumers on JETWORK_SUBMIT, 2 s after it";
        report.add("queues", &case(what), "consumers", Some(after as f64), None);
        reference.get_or_insert(f.rate);
    }
    Ok(())
}

async fn once(n: u32, o: &Options, progress: &MultiProgress) -> anyhow::Result<Figures> {
    let workers = o.queue_workers.max(1);
    let per_worker = n.div_ceil(workers);
    anyhow::ensure!(
        per_worker <= MAX_QUEUES_PER_WORKER,
        "{n} queues over {workers} workers is {per_worker} queues each, above the master's \
         max_queues_per_worker ({MAX_QUEUES_PER_WORKER}): raise --queue-workers"
    );
    let queues: Vec<QueueName> =
        (0..n).map(|i| QueueName::parse(&format!("q{i}"))).collect::<Result<_, _>>()?;
    let served_by = |i: u32| -> Vec<QueueName> {
        if n < workers {
            vec![queues[(i % n) as usize].clone()]
        } else {
            (i..n).step_by(workers as usize).map(|j| queues[j as usize].clone()).collect()
        }
    };

    let cluster = Cluster::start(o.lease_ttl).await?;
    let leader = cluster.master("m1")?;
    cluster.await_leader(0, 0).await?;
    // Idle: leading, no workers, no queues yet, settled for a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle, _) = rss_mib(leader.pid())?;
    let connections = fleet::connections(cluster.url(), CONNECTIONS).await?;
    let fleet =
        Fleet::start(&connections, "spread", workers, CAPACITY, served_by, progress).await?;
    jetwork_tests::poll_for("every worker registered", Duration::from_secs(60), || async {
        cluster.status().await.filter(|s| s.workers_total == u64::from(workers))
    })
    .await?;
    let before = consumers(&cluster).await?;

    // Consumers counted every 200 ms while the load runs.
    let most = Arc::new(AtomicUsize::new(before));
    let watcher = {
        let (js, most) = (cluster.js(), most.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(mut stream) = js.get_stream(subjects::SUBMIT_STREAM).await {
                    if let Ok(info) = stream.info().await {
                        most.fetch_max(info.state.consumer_count, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let submits: Vec<String> = queues.iter().map(subjects::submit).collect();
    let spread = Spread { subjects: &submits, headers: None, size: 0 };
    let label = format!("queues: {n} queues, {workers} workers");
    let rate = drive_spread(
        &cluster,
        &spread,
        subjects::RESULTS_ALL,
        o.queue_jobs,
        o.window,
        progress,
        &label,
    )
    .await;
    watcher.abort();
    let rate = rate?;
    let (_, peak) = rss_mib(leader.pid())?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = consumers(&cluster).await?;
    fleet.errors.check()?;
    Ok(Figures {
        rate,
        rss_above_idle: peak - idle,
        consumers: [before, most.load(Ordering::Relaxed), after],
    })
}

/// Consumers on `JETWORK_SUBMIT` now.
async fn consumers(cluster: &Cluster) -> anyhow::Result<usize> {
    let mut stream = cluster.js().get_stream(subjects::SUBMIT_STREAM).await?;
    Ok(stream.info().await?.state.consumer_count)
}
