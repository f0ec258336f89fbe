//! Workers (opt-in, `--phases workers`): what the master's cost does as the registered
//! workers grow (`--worker-counts`, 10 → 1,000 → 10,000 by default). For each count, on a
//! fresh server and master: that many hand-spoken workers ([`Fleet`]) of capacity 4 register
//! for the benchmark queue, heartbeat and long-poll, and `--worker-jobs` jobs are submitted as
//! fast as acknowledgements allow (as in the throughput phase). Reported per count: jobs/s,
//! the master's CPU µs per job over the run, and the size of the `status` reply listing the
//! largest page (1,000 workers) and how long it took to answer. Targets, against the first
//! (smallest) count: throughput ≥ 0.8×, master CPU per job ≤ 1.5×; the status reply ≤ 1 MiB
//! (NATS's default max_payload: a larger reply could not be sent at all).

use std::time::Duration;

use anyhow::Context as _;
use indicatif::MultiProgress;
use jetwork_shared::protocol::{StatusQuery, StatusReport};
use jetwork_shared::subjects;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::cpu::cpu_seconds;
use crate::deployment::bench_queue;
use crate::fleet::{self, Fleet};
use crate::report::Report;
use crate::throughput::drive;
use crate::Options;

/// Slots per worker.
const CAPACITY: u32 = 4;
/// Connections the workers share.
const CONNECTIONS: usize = 4;
/// The bound held on the status reply.
pub const STATUS_BOUND: usize = 1 << 20;

/// One count's figures.
struct Figures {
    rate: f64,
    master_us: f64,
    status_bytes: usize,
    status_ms: f64,
    polls_unanswered: u64,
}

pub async fn run(o: &Options, report: &mut Report, progress: &MultiProgress) -> anyhow::Result<()> {
    let mut reference: Option<Figures> = None;
    for &n in &o.worker_counts {
        let f = once(n, o, progress).await?;
        let case = |what: &str| format!("{n} workers × capacity 4: {what}");
        let rate = report.add(
            "workers",
            &case(&format!("{} jobs", o.worker_jobs)),
            "jobs/s",
            Some(f.rate),
            None,
        );
        if let Some(r) = &reference {
            rate.target("≥ 0.8× the smallest count", f.rate >= 0.8 * r.rate);
        }
        let cpu = report.add("workers", &case("master CPU per job"), "µs", Some(f.master_us), None);
        if let Some(r) = &reference {
            cpu.target("≤ 1.5× the smallest count", f.master_us <= 1.5 * r.master_us);
        }
        report
            .add(
                "workers",
                &case("status reply, largest page (≤ 1,000 workers)"),
                "bytes",
                Some(f.status_bytes as f64),
                None,
            )
            .target("≤ 1 MiB", f.status_bytes <= STATUS_BOUND);
        report.add("workers", &case("status answered in"), "ms", Some(f.status_ms), None);
        report.add(
            "workers",
            &case("requests for work unanswered within 10 s"),
            "requests",
            Some(f.polls_unanswered as f64),
            None,
        );
        reference.get_or_insert(f);
    }
    Ok(())
}

async fn once(n: u32, o: &Options, progress: &MultiProgress) -> anyhow::Result<Figures> {
    let cluster = Cluster::start(o.lease_ttl).await?;
    let leader = cluster.master("m1")?;
    cluster.await_leader(0, 0).await?;
    let connections = fleet::connections(cluster.url(), CONNECTIONS).await?;
    let fleet =
        Fleet::start(&connections, "grow", n, CAPACITY, |_| vec![bench_queue()], progress).await?;
    jetwork_tests::poll_for("every worker registered", Duration::from_secs(60), || async {
        cluster.status().await.filter(|s| s.workers_total == u64::from(n))
    })
    .await?;

    let before = cpu_seconds(leader.pid())?;
    let label = format!("workers: {n} × capacity 4");
    let (submit, results) =
        (subjects::submit(&bench_queue()), subjects::results_in(&bench_queue()));
    let rate = drive(&cluster, &submit, &results, o.worker_jobs, o, progress, &label).await?;
    let master_us = (cpu_seconds(leader.pid())? - before) * 1e6 / o.worker_jobs.max(1) as f64;
    let (status_bytes, status_ms, status) = status_page(&cluster.client).await?;
    anyhow::ensure!(
        status.workers_total == u64::from(n),
        "{} of {n} workers registered after the run",
        status.workers_total
    );
    fleet.errors.check()?;
    let polls_unanswered = fleet.errors.polls_unanswered.load(std::sync::atomic::Ordering::Relaxed);
    if let Some(first) = fleet.errors.first_poll.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
    {
        progress.println(format!(
            "{n} workers: {polls_unanswered} requests for work unanswered; the first: {first}"
        ))?;
    }
    Ok(Figures { rate, master_us, status_bytes, status_ms, polls_unanswered })
}

/// The largest status page (1,000 workers and queues): its size in bytes, the time to answer
/// in ms, and the report.
pub async fn status_page(
    client: &async_nats::Client,
) -> anyhow::Result<(usize, f64, StatusReport)> {
    let query = StatusQuery {
        workers_limit: StatusQuery::MAX_LIMIT,
        queues_limit: StatusQuery::MAX_LIMIT,
        ..StatusQuery::default()
    };
    let body = serde_json::to_vec(&query)?;
    let started = Instant::now();
    let reply =
        client.request(subjects::MASTER_STATUS, body.into()).await.context("the status request")?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let status: StatusReport =
        serde_json::from_slice(&reply.payload).context("the status reply")?;
    Ok((reply.payload.len(), ms, status))
}
