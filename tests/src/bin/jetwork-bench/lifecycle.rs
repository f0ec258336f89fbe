//! Lifecycle: what queue rules and per-job options do at scale, on jetwork alone (the baseline
//! has neither), each case on its own fresh server with one master:
//! 1. a rate-limited queue (`[queues.bench] rate`): `5 × rate` jobs submitted at once, plenty
//!    of worker slots; the start rate achieved after the first second (the token bucket starts
//!    full, so the first second bursts), from the starts stamped in the results;
//! 2. a delayed backlog: `delayed` jobs with `Jetwork-Delay`, held by the master until due: its
//!    RSS above idle meanwhile, how late each job starts against its due time (submit time +
//!    delay: an upper bound, the due time counts from the slightly later storing), and how long
//!    draining them takes;
//! 3. priority: one `Jetwork-Priority: 9` job submitted while slow jobs keep the workers busy
//!    and a backlog the master has read ahead waits (it goes first among what is read:
//!    submit→start); then one behind `priority_backlog` normal jobs not read yet, as the
//!    workers start on them (the master reads it out of turn, a priority jump: submit→start,
//!    and how many normal jobs started before it).

use std::time::Duration;

use async_nats::HeaderMap;
use indicatif::{MultiProgress, ProgressBar};
use jetwork_shared::{job_options, subjects};
use jetwork_tests::Process;

use crate::cluster::{rss_mib, Cluster, System};
use crate::deployment::bench_queue;
use crate::load::{self, Collector};
use crate::report::Report;
use crate::samples::Samples;
use crate::{bar, stamp, Options};

const PHASE: &str = "lifecycle";
/// Normal jobs ahead of the priority job in the read-ahead case: within the master's
/// read-ahead (`master.prefetch`, 256, beyond the free slots).
const READ_AHEAD_BACKLOG: u64 = 200;
/// How long each job takes in the read-ahead case, on 4 slots: the backlog is 5 s of work.
const SLOW_JOB: Duration = Duration::from_millis(100);

pub async fn run(o: &Options, report: &mut Report, progress: &MultiProgress) -> anyhow::Result<()> {
    rate_limited(o, report, progress).await?;
    delayed(o, report, progress).await?;
    priority_within_read_ahead(o, report).await?;
    priority_behind_unread(o, report, progress).await?;
    Ok(())
}

/// A fresh server with a leading master, `env` added to the processes' environment.
async fn leading(o: &Options, env: &[(&str, &str)]) -> anyhow::Result<(Cluster, Process)> {
    let mut cluster = Cluster::start(o.lease_ttl).await?;
    for (key, value) in env {
        cluster.set_env(key, value);
    }
    let master = cluster.master("m1")?;
    cluster.await_leader(0, 0).await?;
    Ok((cluster, master))
}

async fn rate_limited(
    o: &Options,
    report: &mut Report,
    progress: &MultiProgress,
) -> anyhow::Result<()> {
    let rate = o.lifecycle_rate.max(1);
    let n = 5 * u64::from(rate);
    let (cluster, _master) =
        leading(o, &[("JETWORK_QUEUES__BENCH__RATE", &rate.to_string())]).await?;
    let _workers = cluster.workers(System::Jetwork, 2, 128)?;
    cluster.await_leader(0, 2).await?;
    let collector =
        Collector::start(&cluster.client, &subjects::results_in(&bench_queue())).await?;
    let bar = progress.add(bar(n, &format!("lifecycle: {n} jobs, queue limited to {rate}/s")));
    let subject = subjects::submit(&bench_queue());
    load::flood(&cluster.js(), &subject, n, o.window, &ProgressBar::hidden()).await?;
    collector.wait_for(n, Duration::from_secs(30 + 2 * n / u64::from(rate)), &bar).await?;
    let mut starts: Vec<u64> = collector.read(|c| c.stamps.iter().map(|s| s.1).collect());
    starts.sort_unstable();
    let first = starts.first().copied().unwrap_or_default();
    let steady: Vec<u64> = starts.into_iter().filter(|s| *s >= first + 1_000_000_000).collect();
    let achieved = starts_per_second(&steady);
    bar.finish_with_message(format!("{:.0} starts/s", achieved.unwrap_or_default()));
    let met = achieved.is_some_and(|r| (r / f64::from(rate) - 1.0).abs() <= 0.05);
    report
        .add(
            PHASE,
            &format!("start rate, queue limited to {rate}/s, {n} jobs (after the first second)"),
            "jobs/s",
            achieved,
            None,
        )
        .target("within 5 % of the limit", met);
    Ok(())
}

/// The least-squares slope of start count over start time (sorted, ns): starts per second,
/// insensitive to starts coming in per-tick bunches. `None` for fewer than two starts.
fn starts_per_second(starts: &[u64]) -> Option<f64> {
    let (&origin, n) = (starts.first()?, starts.len() as f64);
    if starts.len() < 2 {
        return None;
    }
    let t: Vec<f64> = starts.iter().map(|s| (s - origin) as f64 / 1e9).collect();
    let (mean_t, mean_i) = (t.iter().sum::<f64>() / n, (n - 1.0) / 2.0);
    let (mut cov, mut var) = (0.0, 0.0);
    for (i, t) in t.iter().enumerate() {
        cov += (t - mean_t) * (i as f64 - mean_i);
        var += (t - mean_t) * (t - mean_t);
    }
    (var > 0.0).then(|| cov / var)
}

async fn delayed(o: &Options, report: &mut Report, progress: &MultiProgress) -> anyhow::Result<()> {
    let d = o.delayed.min(o.backlog).max(1);
    let delay = o.delay.min(Duration::from_secs(3).max(Duration::from_micros(d * 200)));
    let (cluster, master) = leading(o, &[]).await?;
    let _workers = cluster.workers(System::Jetwork, 4, 64)?;
    cluster.await_leader(0, 4).await?;
    let collector =
        Collector::start(&cluster.client, &subjects::results_in(&bench_queue())).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle, _) = rss_mib(master.pid())?;

    let wording = humantime::format_duration(delay).to_string();
    let mut headers = HeaderMap::new();
    headers.insert(job_options::DELAY, wording.as_str());
    let submit = progress.add(bar(d, &format!("lifecycle: submitting {d} jobs delayed {wording}")));
    // A small window: the lateness counts from the submit time, so submissions queue little
    // before they are stored (when their delay starts).
    let subject = subjects::submit(&bench_queue());
    load::flood_with(&cluster.js(), &subject, Some(&headers), d, o.window.min(64), &submit).await?;
    submit.finish();
    // Held: all read by the master (or the first one already due).
    jetwork_tests::poll_for("the delayed jobs held", delay + Duration::from_secs(30), || async {
        let waiting = cluster.status().await.and_then(|s| s.queues.first().map(|q| q.waiting));
        (waiting.is_some_and(|w| w >= d) || collector.count() > 0).then_some(())
    })
    .await?;
    let (_, held_peak) = rss_mib(master.pid())?;
    let drain = progress.add(bar(d, &format!("lifecycle: {d} delayed jobs due and running")));
    let within = delay + Duration::from_secs(60) + Duration::from_millis(d);
    collector.wait_for(d, within, &drain).await?;
    drain.finish();

    let delay_ns = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
    let (late, early, first_due, last_start) = collector.read(|c| {
        let mut late = Samples::default();
        let mut early = 0u64;
        for &(submitted, started) in &c.stamps {
            let due = submitted + delay_ns;
            // The master keeps due times in whole milliseconds.
            early += u64::from(started + 1_000_000 < due);
            late.push(started.saturating_sub(due));
        }
        let first_due = c.stamps.iter().map(|s| s.0 + delay_ns).min().unwrap_or_default();
        let last_start = c.stamps.iter().map(|s| s.1).max().unwrap_or_default();
        (late, early, first_due, last_start)
    });
    let held = held_peak - idle;
    report
        .add(
            PHASE,
            &format!("master peak RSS above idle, {d} delayed jobs held"),
            "MiB",
            Some(held),
            None,
        )
        .target("≤ 64 MiB", held <= 64.0);
    for (name, p) in [("p50", 50.0), ("p99", 99.0)] {
        let value = late.percentile_ms(p);
        let record = report.add(
            PHASE,
            &format!("delayed {wording}: start after due time {name}, {d} jobs"),
            "ms",
            value,
            None,
        );
        if name == "p99" {
            record.target("p99 ≤ 100 ms", value.is_some_and(|v| v <= 100.0));
        }
    }
    report
        .add(
            PHASE,
            &format!("delayed jobs started before due, of {d}"),
            "jobs",
            Some(early as f64),
            None,
        )
        .target("none", early == 0);
    let drained = last_start.saturating_sub(first_due) as f64 / 1e9;
    report.add(
        PHASE,
        &format!("{d} delayed jobs: first due → last started"),
        "s",
        Some(drained),
        None,
    );
    Ok(())
}

/// Submits one job with `Jetwork-Priority: 9`; returns its submit time (ns).
async fn submit_priority(cluster: &Cluster) -> anyhow::Result<u64> {
    let mut headers = HeaderMap::new();
    headers.insert(job_options::PRIORITY, "9");
    let submitted = stamp::now_ns();
    let subject = subjects::submit(&bench_queue());
    cluster
        .js()
        .publish_with_headers(subject, headers, stamp::payload_at(submitted))
        .await?
        .await?;
    Ok(submitted)
}

async fn priority_within_read_ahead(o: &Options, report: &mut Report) -> anyhow::Result<()> {
    let (cluster, _master) = leading(o, &[]).await?;
    let _workers = cluster.slow_workers(1, 4, SLOW_JOB)?;
    cluster.await_leader(0, 1).await?;
    let collector =
        Collector::start(&cluster.client, &subjects::results_in(&bench_queue())).await?;
    let subject = subjects::submit(&bench_queue());
    let hidden = ProgressBar::hidden();
    load::flood(&cluster.js(), &subject, READ_AHEAD_BACKLOG, o.window, &hidden).await?;
    // The master reads them ahead at once; the workers are busy with the first ones.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let submitted = submit_priority(&cluster).await?;
    let started = collector.await_job(submitted, Duration::from_secs(60)).await?;
    let wait = started.saturating_sub(submitted) as f64 / 1e6;
    let case = format!(
        "priority 9 submit→start, {READ_AHEAD_BACKLOG} read-ahead normal jobs ahead \
         (4 slots busy, {} ms jobs)",
        SLOW_JOB.as_millis()
    );
    report.add(PHASE, &case, "ms", Some(wait), None).target("≤ 1 s", wait <= 1000.0);
    Ok(())
}

async fn priority_behind_unread(
    o: &Options,
    report: &mut Report,
    progress: &MultiProgress,
) -> anyhow::Result<()> {
    let n = o.priority_backlog.min(o.backlog).max(1);
    let (cluster, _master) = leading(o, &[]).await?;
    let collector =
        Collector::start(&cluster.client, &subjects::results_in(&bench_queue())).await?;
    let submit = progress.add(bar(n, &format!("lifecycle: submitting {n} jobs, no workers")));
    load::flood(&cluster.js(), &subjects::submit(&bench_queue()), n, o.window, &submit).await?;
    submit.finish();
    let _workers = cluster.workers(System::Jetwork, 4, 64)?;
    cluster.await_leader(0, 4).await?;
    let submitted = submit_priority(&cluster).await?;
    let drain = progress.add(bar(n + 1, "lifecycle: draining, priority 9 job behind"));
    let within = Duration::from_secs(120).max(Duration::from_millis(n * 2));
    let started = collector.await_job(submitted, within).await?;
    collector.wait_for(n + 1, within, &drain).await?;
    drain.finish();
    let ahead = collector.read(|c| c.stamps.iter().filter(|s| s.1 < started).count());
    let wait = started.saturating_sub(submitted) as f64 / 1e6;
    report
        .add(
            PHASE,
            &format!("priority 9 submit→start, behind {n} unread normal jobs (a priority jump)"),
            "ms",
            Some(wait),
            None,
        )
        .target("≤ 1 s", wait <= 1000.0);
    report.add(
        PHASE,
        "normal jobs started before that priority 9 job",
        "jobs",
        Some(ahead as f64),
        None,
    );
    Ok(())
}
