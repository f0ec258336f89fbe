//! Throughput: jobs submitted as fast as acknowledgements allow, jobs/s from the first
//! submission to the last result, for each worker layout, jetwork and baseline side by side
//! (each run on its own fresh server), the median of `runs`; and the CPU each system's
//! processes used per job over those runs (master, workers, nats-server: where the limit is).

use std::time::Duration;

use indicatif::MultiProgress;
use tokio::time::Instant;

use crate::cluster::{Cluster, System};
use crate::cpu::Usage;
use crate::deployment::Deployment;
use crate::load::{self, Collector, Spread};
use crate::report::Report;
use crate::samples::median;
use crate::{bar, Options};

/// One worker layout.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub workers: u32,
    pub concurrency: u32,
    pub jobs: u64,
}

pub async fn run(o: &Options, report: &mut Report, progress: &MultiProgress) -> anyhow::Result<()> {
    let layouts = [
        Layout { workers: 1, concurrency: 1, jobs: o.serial_jobs },
        Layout { workers: 4, concurrency: 1, jobs: o.serial_jobs },
        Layout { workers: 1, concurrency: 64, jobs: o.jobs },
        Layout { workers: 4, concurrency: 64, jobs: o.jobs },
    ];
    for layout in layouts {
        if o.only_concurrency.is_some_and(|c| c != layout.concurrency) {
            continue;
        }
        let mut rates = [Vec::new(), Vec::new()];
        // µs of CPU per job, per run: [baseline, jetwork] × (master, workers, nats-server).
        let mut cpu: [Vec<Usage>; 2] = [Vec::new(), Vec::new()];
        for run in 0..o.runs {
            for (i, system) in [System::Baseline, System::Jetwork].into_iter().enumerate() {
                let name = format!("{system:?}").to_lowercase();
                if o.only.as_ref().is_some_and(|only| *only != name) {
                    continue;
                }
                let label = format!(
                    "throughput {:?} {}×{} run {}/{}",
                    system,
                    layout.workers,
                    layout.concurrency,
                    run + 1,
                    o.runs
                );
                let (rate, used) = measured(system, layout, o, progress, &label, false).await?;
                rates[i].push(rate);
                cpu[i].push(used);
            }
        }
        let case = format!(
            "{} worker process{} × concurrency {}, {} jobs",
            layout.workers,
            if layout.workers == 1 { "" } else { "es" },
            layout.concurrency,
            layout.jobs
        );
        let record =
            report.add("throughput", &case, "jobs/s", median(&rates[1]), median(&rates[0]));
        if layout.workers == 4 && layout.concurrency == 64 {
            let met =
                record.jetwork.unwrap_or(0.0) >= 30_000.0 && record.ratio.unwrap_or(0.0) >= 0.5;
            record.target("≥ 30k jobs/s and ≥ 0.5× baseline", met);
        }
        let shape = format!("{}×{}", layout.workers, layout.concurrency);
        let of = |i: usize, part: &str| {
            let values: Vec<f64> = cpu[i].iter().filter_map(|u| u.part(part)).collect();
            median(&values)
        };
        for part in Usage::PARTS {
            let case = format!("{shape} CPU per job: {part}");
            report.add("throughput", &case, "µs", of(1, part), of(0, part));
        }
    }
    Ok(())
}

/// One run: jobs/s (on a fresh 3-node cluster, every stream replicated, if `replicated`).
pub async fn once(
    system: System,
    layout: Layout,
    o: &Options,
    progress: &MultiProgress,
    label: &str,
    replicated: bool,
) -> anyhow::Result<f64> {
    Ok(measured(system, layout, o, progress, label, replicated).await?.0)
}

/// [`once`], and the µs of CPU per job its master, workers and server(s) used over the run.
pub async fn measured(
    system: System,
    layout: Layout,
    o: &Options,
    progress: &MultiProgress,
    label: &str,
    replicated: bool,
) -> anyhow::Result<(f64, Usage)> {
    let (workers, concurrency) = (layout.workers, layout.concurrency);
    let deployment = if replicated {
        Deployment::start_replicated(system, workers, concurrency, o.lease_ttl).await?
    } else {
        Deployment::start(system, workers, concurrency, o.lease_ttl).await?
    };
    let (submit, results) = (deployment.submit_subject(), deployment.results_subject());
    let before = deployment.cpu();
    let rate =
        drive(&deployment.cluster, &submit, &results, layout.jobs, o, progress, label).await?;
    Ok((rate, before.per_job_us(&deployment.cpu(), layout.jobs)))
}

/// Submits `jobs` on `submit` as fast as acknowledgements allow and waits for their results on
/// `results`: jobs/s from the first submission to the last result.
pub async fn drive(
    cluster: &Cluster,
    submit: &str,
    results: &str,
    jobs: u64,
    o: &Options,
    progress: &MultiProgress,
    label: &str,
) -> anyhow::Result<f64> {
    let subjects = [submit.to_owned()];
    let spread = Spread { subjects: &subjects, headers: None, size: 0 };
    drive_spread(cluster, &spread, results, jobs, o.window, progress, label).await
}

/// [`drive`], the submissions as `spread` says, at most `window` awaiting acknowledgement.
pub async fn drive_spread(
    cluster: &Cluster,
    spread: &Spread<'_>,
    results: &str,
    jobs: u64,
    window: usize,
    progress: &MultiProgress,
    label: &str,
) -> anyhow::Result<f64> {
    let js = cluster.js();
    let collector = Collector::start(&cluster.client, results).await?;
    let bar = progress.add(bar(jobs, label));
    let started = Instant::now();
    let producer = async {
        let submitted = indicatif::ProgressBar::hidden();
        load::flood_spread(&js, spread, jobs, window, &submitted).await
    };
    let within = Duration::from_secs(60).max(Duration::from_millis(jobs * 5));
    let (produced, collected) = tokio::join!(producer, collector.wait_for(jobs, within, &bar));
    produced?;
    collected?;
    let last = collector.read(|c| c.last).unwrap_or_else(Instant::now);
    let rate = jobs as f64 / last.duration_since(started).as_secs_f64();
    bar.finish_with_message(format!("{rate:.0} jobs/s"));
    anyhow::ensure!(
        collector.read(|c| c.unreadable) == 0,
        "{} results were not the job's stamps",
        collector.read(|c| c.unreadable)
    );
    Ok(rate)
}
