//! Idle workers: what registered workers that run nothing cost the leader. `--idle-workers`
//! workers (spoken by hand from this process, like workers in another language) register for
//! the benchmark queue and then heartbeat every `worker.register_interval` (10 s by default,
//! spread evenly over it, as independent processes would); the leader's CPU is measured over
//! `--idle-window` with none registered and with all of them (after a heartbeat period, or the
//! window if shorter, for the registrations to settle), and reported as a share of one core,
//! also per 1,000 workers.

use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use indicatif::MultiProgress;
use jetwork_tests::manual::ManualWorker;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::cpu::cpu_seconds;
use crate::deployment::bench_queue;
use crate::report::Report;
use crate::{bar, Options};

/// The workers' heartbeat: `worker.register_interval`'s default.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// Registrations in flight at once while the workers first register.
const REGISTERING_AT_ONCE: usize = 256;

pub async fn run(o: &Options, report: &mut Report, progress: &MultiProgress) -> anyhow::Result<()> {
    let n = o.idle_workers;
    let cluster = Cluster::start(o.lease_ttl).await?;
    let leader = cluster.master("m1")?;
    cluster.await_leader(0, 0).await?;
    let none = core_share(leader.pid(), o.idle_window).await?;

    let workers: Vec<ManualWorker> = (0..n)
        .map(|i| ManualWorker::new(cluster.client.clone(), &format!("idle-{i}")))
        .collect::<anyhow::Result<_>>()?;
    let registering = progress.add(bar(n as u64, &format!("idle: registering {n} workers")));
    let refused = futures::stream::iter(&workers)
        .map(|w| async move { w.register_for(vec![bench_queue()], 4).await.err() })
        .buffer_unordered(REGISTERING_AT_ONCE)
        .inspect(|_| registering.inc(1))
        .filter_map(|e| async move { e })
        .collect::<Vec<_>>()
        .await;
    registering.finish();
    anyhow::ensure!(
        refused.is_empty(),
        "{} registrations refused: {:?}",
        refused.len(),
        refused[0]
    );

    // Heartbeats from here on, each worker once per HEARTBEAT, evenly spread.
    let heartbeats = async {
        let step = Duration::from_millis(10);
        let per_step = (n as usize).div_ceil((HEARTBEAT.as_millis() / step.as_millis()) as usize);
        let mut next = Instant::now();
        for chunk in workers.chunks(per_step.max(1)).cycle() {
            next += step;
            tokio::time::sleep_until(next).await;
            // At once, as independent workers would; a refusal shows as a worker missing from
            // the status below.
            let beats = chunk.iter().map(|w| w.register_for(vec![bench_queue()], 4));
            let _ = futures::future::join_all(beats).await;
        }
    };
    let measured = async {
        // The registrations' own journal writes (and a snapshot after them) settle first.
        tokio::time::sleep(HEARTBEAT.min(o.idle_window)).await;
        let share = core_share(leader.pid(), o.idle_window).await?;
        let status = cluster.status().await.context("the leader's status")?;
        anyhow::Ok((share, status.workers_total))
    };
    let (share, registered) = tokio::select! {
        () = heartbeats => unreachable!("the heartbeats cycle forever"),
        measured = measured => measured?,
    };
    anyhow::ensure!(registered == u64::from(n), "{registered} of {n} workers registered");

    report.add("idle", "leader CPU, no workers", "% of a core", Some(none * 100.0), None);
    report.add(
        "idle",
        &format!("leader CPU, {n} idle workers heartbeating every 10 s"),
        "% of a core",
        Some(share * 100.0),
        None,
    );
    let per_thousand = (share - none).max(0.0) * 100.0 * 1000.0 / n.max(1) as f64;
    report
        .add("idle", "leader CPU per 1,000 idle workers", "% of a core", Some(per_thousand), None)
        .target("≤ 2 % of a core per 1,000", per_thousand <= 2.0);
    Ok(())
}

/// The share of one core process `pid` used over the next `window`.
async fn core_share(pid: u32, window: Duration) -> anyhow::Result<f64> {
    let before = (cpu_seconds(pid)?, Instant::now());
    tokio::time::sleep(window).await;
    let after = (cpu_seconds(pid)?, Instant::now());
    Ok((after.0 - before.0) / after.1.duration_since(before.1).as_secs_f64())
}
