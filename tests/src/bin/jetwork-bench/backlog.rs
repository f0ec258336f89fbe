//! Backlog, memory and replay, on one history:
//! 1. a graceful takeover on an empty journal (the reference);
//! 2. the leading master's RSS idle, then with `backlog` jobs submitted and no workers (the
//!    backlog stays in `JETWORK_SUBMIT`; the master reads only what workers can take);
//! 3. workers drain the backlog (jobs/s at that scale, and the master's RSS meanwhile);
//! 4. a graceful takeover again, now with the whole backlog's history behind it: snapshots
//!    bound what the new leader replays.

use std::time::Duration;

use indicatif::MultiProgress;
use jetwork_shared::subjects;
use jetwork_tests::Process;
use tokio::time::Instant;

use crate::cluster::{await_standby, rss_mib, Cluster, System};
use crate::deployment::bench_queue;
use crate::load::{self, Collector};
use crate::report::Report;
use crate::{bar, Options};

pub async fn run(o: &Options, report: &mut Report, progress: &MultiProgress) -> anyhow::Result<()> {
    let cluster = Cluster::start(o.lease_ttl).await?;
    let mut leader = cluster.master("m1")?;
    let status = cluster.await_leader(0, 0).await?;
    let mut standby = cluster.master("m2")?;
    await_standby(&standby).await?;
    let (empty_takeover, epoch) = takeover(&cluster, &mut leader, status.epoch).await?;
    std::mem::swap(&mut leader, &mut standby);
    standby = cluster.master("m3")?;
    await_standby(&standby).await?;

    // Idle: leading, nothing submitted yet, settled for a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle, _) = rss_mib(leader.pid())?;
    let submit = progress
        .add(bar(o.backlog, &format!("backlog: submitting {} jobs, no workers", o.backlog)));
    let started = Instant::now();
    load::flood(&cluster.js(), &subjects::submit(&bench_queue()), o.backlog, o.window, &submit)
        .await?;
    let submit_rate = o.backlog as f64 / started.elapsed().as_secs_f64();
    submit.finish_with_message(format!("{submit_rate:.0} submissions/s"));
    let pending =
        jetwork_tests::poll_for("the backlog in the status", Duration::from_secs(30), || async {
            cluster
                .status()
                .await
                .and_then(|s| s.queues.first().map(|q| q.pending))
                .filter(|p| *p >= o.backlog)
        })
        .await?;
    let (_, backlog_peak) = rss_mib(leader.pid())?;

    let collector =
        Collector::start(&cluster.client, &subjects::results_in(&bench_queue())).await?;
    let drain = progress.add(bar(o.backlog, "backlog: 4 workers × 64 draining"));
    let started = Instant::now();
    let _workers = cluster.workers(System::Jetwork, 4, 64)?;
    let within = Duration::from_secs(120).max(Duration::from_millis(o.backlog * 2));
    collector.wait_for(o.backlog, within, &drain).await?;
    let last = collector.read(|c| c.last).unwrap_or_else(Instant::now);
    let drain_rate = o.backlog as f64 / last.duration_since(started).as_secs_f64();
    drain.finish_with_message(format!("{drain_rate:.0} jobs/s"));
    let (_, drain_peak) = rss_mib(leader.pid())?;
    let journal =
        cluster.js().get_stream(jetwork_shared::subjects::JOURNAL_STREAM).await?.get_info().await?;
    let (full_takeover, _) = takeover(&cluster, &mut leader, epoch).await?;

    let n = o.backlog;
    report.add(
        "backlog",
        &format!("submit {n} jobs, master leading, no workers"),
        "jobs/s",
        Some(submit_rate),
        None,
    );
    report.add(
        "backlog",
        &format!("pending in status after submitting {n}"),
        "jobs",
        Some(pending as f64),
        None,
    );
    report.add("memory", "master RSS idle", "MiB", Some(idle), None);
    report
        .add(
            "memory",
            &format!("master peak RSS above idle, {n} jobs pending"),
            "MiB",
            Some(backlog_peak - idle),
            None,
        )
        .target("≤ 64 MiB", backlog_peak - idle <= 64.0);
    report.add(
        "memory",
        &format!("master peak RSS above idle, draining {n}"),
        "MiB",
        Some(drain_peak - idle),
        None,
    );
    report.add(
        "backlog",
        &format!("drain {n} jobs, 4 workers × 64"),
        "jobs/s",
        Some(drain_rate),
        None,
    );
    report.add(
        "replay",
        &format!("journal after {n} jobs (snapshots, old history purged)"),
        "messages",
        Some(journal.state.messages as f64),
        None,
    );
    report.add(
        "replay",
        "SIGTERM → new leader serving, empty history",
        "s",
        Some(empty_takeover),
        None,
    );
    report
        .add(
            "replay",
            &format!("SIGTERM → new leader serving, {n} jobs of history"),
            "s",
            Some(full_takeover),
            None,
        )
        .target("≤ empty + 1 s", full_takeover <= empty_takeover + 1.0);
    Ok(())
}

/// Stops `leader` with SIGTERM and times until the standby answers as leader (it has
/// replayed the journal by then); returns (seconds, the new epoch).
async fn takeover(
    cluster: &Cluster,
    leader: &mut Process,
    epoch: u64,
) -> anyhow::Result<(f64, u64)> {
    let started = Instant::now();
    if !leader.terminate(Duration::from_secs(10)).await? {
        anyhow::bail!("the leader did not exit within 10 s of SIGTERM");
    }
    // Polled every few milliseconds (not the harness's 50 ms): this is the figure measured.
    let deadline = started + Duration::from_secs(60);
    loop {
        if let Some(status) = cluster.status().await.filter(|s| s.epoch > epoch) {
            return Ok((started.elapsed().as_secs_f64(), status.epoch));
        }
        if Instant::now() >= deadline {
            anyhow::bail!("no new leader within 60 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
