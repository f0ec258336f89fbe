//! Latency: jobs submitted at a fixed rate; submit→start and submit→result percentiles of
//! every job after a one-second warm-up, jetwork and baseline side by side; each figure is the
//! median of that percentile over `runs` runs (each on its own fresh server).

use std::time::Duration;

use indicatif::MultiProgress;

use crate::cluster::System;
use crate::deployment::Deployment;
use crate::load::{Collector, Paced};
use crate::report::Report;
use crate::samples::{median, Samples};
use crate::{bar, Options};

const WARM_UP: Duration = Duration::from_secs(1);

pub async fn run(o: &Options, report: &mut Report, progress: &MultiProgress) -> anyhow::Result<()> {
    for &rate in &o.rates {
        // Per run: (jetwork, baseline) × (submit→start, submit→result).
        let mut runs = Vec::new();
        for _ in 0..o.runs.max(1) {
            let baseline = once(System::Baseline, rate, o, progress, false).await?;
            let jetwork = once(System::Jetwork, rate, o, progress, false).await?;
            runs.push([[jetwork.0, jetwork.1], [baseline.0, baseline.1]]);
        }
        let phase = format!("latency at {rate}/s");
        for (w, what) in ["submit→start", "submit→result"].into_iter().enumerate() {
            for (name, p) in [("p50", 50.0), ("p99", 99.0), ("max", 100.0)] {
                // Each run's percentile, then the median across runs: one noisy run on a
                // shared machine does not make the figure.
                let across = |system: usize| {
                    let values: Vec<f64> =
                        runs.iter().filter_map(|run| run[system][w].percentile_ms(p)).collect();
                    median(&values)
                };
                let case = format!("{what} {name}");
                let record = report.add(&phase, &case, "ms", across(0), across(1));
                if rate == 1000 && what == "submit→result" && name == "p99" {
                    let value = record.jetwork.unwrap_or(f64::MAX);
                    let met = value <= 1.5 && record.ratio.unwrap_or(f64::MAX) <= 2.0;
                    record.target("≤ 1.5 ms and ≤ 2× baseline", met);
                }
            }
        }
    }
    Ok(())
}

/// One run: (submit→start, submit→result) (on a fresh 3-node cluster, every stream
/// replicated, if `replicated`).
pub async fn once(
    system: System,
    rate: u64,
    o: &Options,
    progress: &MultiProgress,
    replicated: bool,
) -> anyhow::Result<(Samples, Samples)> {
    let (workers, concurrency) = (o.latency_workers, o.latency_concurrency);
    let deployment = if replicated {
        Deployment::start_replicated(system, workers, concurrency, o.lease_ttl).await?
    } else {
        Deployment::start(system, workers, concurrency, o.lease_ttl).await?
    };
    let collector =
        Collector::start(&deployment.cluster.client, &deployment.results_subject()).await?;
    let total = WARM_UP + o.latency_duration;
    let bar = progress.add(bar(total.as_secs(), &format!("latency {system:?} at {rate}/s (s)")));
    let producer = Paced::start(deployment.cluster.js(), deployment.submit_subject(), rate);
    tokio::time::sleep(WARM_UP).await;
    collector.measure_from_now();
    let ticker = bar.clone();
    let ticks = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            ticker.inc(1);
        }
    });
    tokio::time::sleep(o.latency_duration).await;
    ticks.abort();
    let submitted = producer.stop().await?;
    let hidden = indicatif::ProgressBar::hidden();
    collector.wait_for(submitted.acked.len() as u64, Duration::from_secs(60), &hidden).await?;
    bar.finish();
    Ok(collector.read(|c| (c.to_start.clone(), c.to_result.clone())))
}
