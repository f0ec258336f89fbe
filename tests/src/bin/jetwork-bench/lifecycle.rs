//! Lifecycle: what queue rules and per-job options do at scale, on jetwork alone (the baseline
//! has neither), each case on its own fresh server with one master:
//! 1. a rate-limited queue (`[queues.bench] rate`): `5 × rate` jobs submitted at once, plenty
//!    of worker slots; the start rate achieved after the first second (the token bucket starts
//!    full, so the first second bursts), from the starts stamped in the results;
//! 2. a delayed backlog (`delayed`): jobs with `Jetwork-Delay`, submitted at `delayed_rate` a
//!    second (a pace the workers sustain) with a delay long enough that all are held at once
//!    before the first falls due; they then fall due at that same pace. The master's RSS above
//!    idle with all of them held, and how late each starts against its due time (submit time +
//!    delay: an upper bound, the due time counts from the slightly later storing). Lateness
//!    here is the scheduler's own (waking, releasing, reading the payload back, handing out),
//!    not time spent queueing behind busy workers;
//! 3. a burst (`burst`): jobs with one `Jetwork-Not-Before` for all, held, then all due at once:
//!    due jobs started per second until the last has started (no target), to compare with the
//!    plain drain of case 4 on the same workers;
//! 4. priority: one `Jetwork-Priority: 9` job submitted while slow jobs keep the workers busy
//!    and a backlog the master has read ahead waits (it goes first among what is read:
//!    submit→start); then one behind `priority_backlog` normal jobs not read yet, as the
//!    workers start on them (the master reads it out of turn, a priority jump: submit→start,
//!    and how many normal jobs started before it); and how fast those plain jobs were started
//!    (the reference for the burst).

use std::time::Duration;

use async_nats::HeaderMap;
use indicatif::{MultiProgress, ProgressBar};
use jetwork_shared::{job_options, subjects};
use jetwork_tests::Process;

use crate::cluster::{rss_mib, Cluster, System};
use crate::deployment::bench_queue;
use crate::load::{self, Collector, Paced};
use crate::report::Report;
use crate::samples::Samples;
use crate::{bar, stamp, Options};

const PHASE: &str = "lifecycle";
/// Normal jobs ahead of the priority job in the read-ahead case: within the master's
/// read-ahead (`master.prefetch_shared`, 1024 for one queue, beyond the free slots).
const READ_AHEAD_BACKLOG: u64 = 200;
/// How long each job takes in the read-ahead case, on 4 slots: the backlog is 5 s of work.
const SLOW_JOB: Duration = Duration::from_millis(100);

/// The cases `--lifecycle-cases` may name.
pub const CASES: [&str; 4] = ["rate", "delayed", "burst", "priority"];

pub async fn run(o: &Options, report: &mut Report, progress: &MultiProgress) -> anyhow::Result<()> {
    let wants = |case: &str| o.lifecycle_cases.iter().any(|c| c == case);
    if wants("rate") {
        rate_limited(o, report, progress).await?;
    }
    if wants("delayed") {
        delayed(o, report, progress).await?;
    }
    if wants("burst") {
        burst(o, report, progress).await?;
    }
    if wants("priority") {
        priority_within_read_ahead(o, report).await?;
        priority_behind_unread(o, report, progress).await?;
    }
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

/// Time between the last delayed submission and the first due time (default `--delay`), for
/// the master to read and hold them all before any falls due.
const HELD_MARGIN: Duration = Duration::from_secs(3);

/// Delayed jobs paced at a rate the workers sustain, all held at once before the first falls
/// due: the master's RSS with all of them held, then how late each starts against its due
/// time. Since they fall due no faster than the workers run plain jobs, lateness is the
/// scheduler's (due → released → handed out), not a queue's.
async fn delayed(o: &Options, report: &mut Report, progress: &MultiProgress) -> anyhow::Result<()> {
    let d = o.delayed.min(o.backlog).max(1);
    let rate = o.delayed_rate.max(1);
    let submitting = Duration::from_secs_f64(d as f64 / rate as f64);
    // Whole seconds, so the header reads plainly (`23s`).
    let least = (submitting + HELD_MARGIN).as_secs_f64().ceil() as u64;
    let delay = o.delay.unwrap_or_default().max(Duration::from_secs(least));
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
    let label = format!("lifecycle: submitting {d} jobs delayed {wording}, {rate}/s");
    let submit = progress.add(bar(d, &label));
    let subject = subjects::submit(&bench_queue());
    let producer = Paced::count(cluster.js(), subject, rate, headers, d, submit.clone());
    let submitted = producer.finish().await?;
    submit.finish();
    anyhow::ensure!(
        submitted.failed == 0,
        "{} of {d} delayed submissions were not acknowledged",
        submitted.failed
    );
    // Held: all read by the master, before the first is due (a result means one was due).
    let held = await_held(&cluster, &collector, d, delay + Duration::from_secs(30)).await?;
    let (_, held_peak) = rss_mib(master.pid())?;
    if held < d {
        eprintln!("lifecycle: only {held} of {d} delayed jobs were held when the first fell due");
    }
    let drain = progress.add(bar(d, &format!("lifecycle: {d} delayed jobs falling due")));
    let within = delay + submitting + Duration::from_secs(60);
    collector.wait_for(d, within, &drain).await?;
    drain.finish();
    warn_if_stepped_down(&master, "delayed");
    let (_, case_peak) = rss_mib(master.pid())?;

    let delay_ns = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
    let (late, early) = collector.read(|c| {
        let mut late = Samples::default();
        let mut early = 0u64;
        for &(submitted, started) in &c.stamps {
            // An upper bound of the due time: the delay counts from the storing, a moment
            // after the submit stamp.
            let due = submitted + delay_ns;
            // The master keeps due times in whole milliseconds.
            early += u64::from(started + 1_000_000 < due);
            late.push(started.saturating_sub(due));
        }
        (late, early)
    });
    let above = held_peak - idle;
    report
        .add(
            PHASE,
            &format!("master peak RSS above idle, {d} delayed jobs held"),
            "MiB",
            Some(above),
            None,
        )
        .target("≤ 64 MiB, all held at once", above <= 64.0 && held >= d);
    report.add(
        PHASE,
        &format!("master peak RSS above idle, {d} delayed jobs held, then due and run"),
        "MiB",
        Some(case_peak - idle),
        None,
    );
    for (name, p) in [("p50", 50.0), ("p99", 99.0), ("max", 100.0)] {
        let value = late.percentile_ms(p);
        let record = report.add(
            PHASE,
            &format!("delayed {wording}, due at {rate}/s: start after due time {name}, {d} jobs"),
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
    Ok(())
}

/// Jobs all due at the same instant (`Jetwork-Not-Before`), far enough ahead for the master to
/// read and hold them all first: due jobs started per second while they drain, a figure of
/// how fast the master releases due work (read back its payloads, hand it out) when more is
/// due than the workers can take at once. No target; compare it with the plain backlog drain
/// (`priority_behind_unread`) on the same workers.
async fn burst(o: &Options, report: &mut Report, progress: &MultiProgress) -> anyhow::Result<()> {
    let n = o.burst.min(o.backlog).max(1);
    let (cluster, master) = leading(o, &[]).await?;
    let _workers = cluster.workers(System::Jetwork, 4, 64)?;
    cluster.await_leader(0, 4).await?;
    let collector =
        Collector::start(&cluster.client, &subjects::results_in(&bench_queue())).await?;
    // Reading and holding runs at tens of thousands a second: 80 µs a job is ample.
    let ahead = Duration::from_secs(3) + Duration::from_micros(n * 80);
    let due_ms = stamp::now_ns() / 1_000_000 + u64::try_from(ahead.as_millis())?;
    let mut headers = HeaderMap::new();
    headers.insert(job_options::NOT_BEFORE, job_options::format_time(due_ms).as_str());
    let submit = progress.add(bar(n, &format!("lifecycle: submitting {n} jobs due at once")));
    let subject = subjects::submit(&bench_queue());
    load::flood_with(&cluster.js(), &subject, Some(&headers), n, o.window, &submit).await?;
    submit.finish();
    let held = await_held(&cluster, &collector, n, ahead + Duration::from_secs(30)).await?;
    if held < n {
        eprintln!("lifecycle: only {held} of {n} burst jobs were held when they fell due");
    }
    let drain = progress.add(bar(n, &format!("lifecycle: {n} jobs due at once, draining")));
    collector
        .wait_for(n, ahead + Duration::from_secs(60) + Duration::from_millis(n), &drain)
        .await?;
    drain.finish();
    warn_if_stepped_down(&master, "burst");
    let due_ns = due_ms * 1_000_000;
    let (early, last) = collector.read(|c| {
        let early = c.stamps.iter().filter(|s| s.1 + 1_000_000 < due_ns).count();
        (early, c.stamps.iter().map(|s| s.1).max().unwrap_or_default())
    });
    let draining = last.saturating_sub(due_ns) as f64 / 1e9;
    let released = (draining > 0.0).then(|| n as f64 / draining);
    report.add(
        PHASE,
        &format!("{n} delayed jobs due at once: started per second, due time → last start"),
        "jobs/s",
        released,
        None,
    );
    report
        .add(
            PHASE,
            &format!("burst jobs started before due, of {n}"),
            "jobs",
            Some(early as f64),
            None,
        )
        .target("none", early == 0);
    Ok(())
}

/// Says so if the master's term ended during a case (its figures then include a takeover).
fn warn_if_stepped_down(master: &Process, case: &str) {
    for line in master.logs().lines().filter(|l| l.contains("stepping down")) {
        eprintln!("lifecycle {case}: the master stepped down: {line}");
    }
}

/// Waits until the master holds `n` jobs waiting, or the first result shows one fell due
/// before (then fewer were ever held at once); returns the most seen waiting.
async fn await_held(
    cluster: &Cluster,
    collector: &Collector,
    n: u64,
    within: Duration,
) -> anyhow::Result<u64> {
    let deadline = tokio::time::Instant::now() + within;
    let mut held = 0;
    loop {
        let waiting = cluster.status().await.and_then(|s| s.queues.first().map(|q| q.waiting));
        held = held.max(waiting.unwrap_or(0));
        if held >= n || collector.count() > 0 {
            return Ok(held);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("only {held} of {n} delayed jobs held within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Submits one job with `Jetwork-Priority: 9`; returns its submit time (ns).
async fn submit_priority(cluster: &Cluster) -> anyhow::Result<u64> {
    let mut headers = HeaderMap::new();
    headers.insert(job_options::PRIORITY, "9");
    let submitted = stamp::now_ns();
    let subject = subjects::submit(&bench_queue());
    let ack = cluster
        .js()
        .publish_with_headers(subject, headers, stamp::payload_at(submitted))
        .await?
        .await?;
    // Announced as docs/protocol.md tells any submitter to (the jetwork client does this).
    let notice = job_options::priority_notice(ack.sequence, "9");
    let announce = subjects::submitted(&bench_queue());
    cluster.client.publish_with_headers(announce, notice, bytes::Bytes::new()).await?;
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
    let (ahead, first, last) = collector.read(|c| {
        let ahead = c.stamps.iter().filter(|s| s.1 < started).count();
        let first = c.stamps.iter().map(|s| s.1).min().unwrap_or_default();
        (ahead, first, c.stamps.iter().map(|s| s.1).max().unwrap_or_default())
    });
    let wait = started.saturating_sub(submitted) as f64 / 1e6;
    let draining = last.saturating_sub(first) as f64 / 1e9;
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
    // The reference for the burst of due jobs: the same workers draining plain jobs.
    report.add(
        PHASE,
        &format!("{n} plain jobs, unread as workers start: started per second, first → last"),
        "jobs/s",
        (draining > 0.0).then(|| (n + 1) as f64 / draining),
        None,
    );
    Ok(())
}
