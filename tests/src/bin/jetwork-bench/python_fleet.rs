//! Python fleet (`--phases python`, opt-in: it needs the virtual environment that
//! `scripts/python-env` makes): jobs/s of jetwork with workers written on the Python library
//! (`worker/python/tests/bench_worker.py`), next to the raw JetStream consumer a Python user
//! would write (`bench_raw_worker.py`: the baseline's protocol in nats-py) and to jetwork with
//! the Rust benchmark workers, each on its own fresh server, in the same run; the median of
//! `runs`. Jobs are submitted as fast as acknowledgements allow, as in the throughput phase.

use indicatif::MultiProgress;

use crate::baseline;
use crate::cluster::{Cluster, System};
use crate::deployment::bench_queue;
use crate::report::Report;
use crate::samples::median;
use crate::throughput::{drive, Layout};
use crate::Options;

/// Who runs the jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fleet {
    /// The raw JetStream consumer in Python (no jetwork).
    RawPython,
    /// jetwork, workers on the Python library.
    JetworkPython,
    /// jetwork, the Rust benchmark workers.
    JetworkRust,
}

pub async fn run(o: &Options, report: &mut Report, progress: &MultiProgress) -> anyhow::Result<()> {
    let layouts = [
        Layout { workers: 1, concurrency: 32, jobs: o.python_jobs },
        Layout { workers: 4, concurrency: 32, jobs: o.python_jobs },
    ];
    let fleets = [Fleet::RawPython, Fleet::JetworkPython, Fleet::JetworkRust];
    for layout in layouts {
        let mut rates = [Vec::new(), Vec::new(), Vec::new()];
        for run in 0..o.runs {
            for (i, fleet) in fleets.into_iter().enumerate() {
                let label = format!(
                    "python {fleet:?} {}×{} run {}/{}",
                    layout.workers,
                    layout.concurrency,
                    run + 1,
                    o.runs
                );
                rates[i].push(once(fleet, layout, o, progress, &label).await?);
            }
        }
        let layout_name = format!(
            "{} process{} × concurrency {}, {} jobs",
            layout.workers,
            if layout.workers == 1 { "" } else { "es" },
            layout.concurrency,
            layout.jobs
        );
        let raw = median(&rates[0]);
        let case = format!("Python workers vs the raw Python consumer, {layout_name}");
        let record = report.add("python", &case, "jobs/s", median(&rates[1]), raw);
        let met = record.ratio.unwrap_or(0.0) >= 0.8;
        record.target("≥ 0.8× the raw Python consumer", met);
        let case = format!("Rust workers vs the raw Python consumer, {layout_name}");
        report.add("python", &case, "jobs/s", median(&rates[2]), raw);
    }
    Ok(())
}

/// One run of `fleet` on a fresh server: jobs/s.
async fn once(
    fleet: Fleet,
    layout: Layout,
    o: &Options,
    progress: &MultiProgress,
    label: &str,
) -> anyhow::Result<f64> {
    let (n, concurrency) = (layout.workers, layout.concurrency);
    let cluster = Cluster::start(o.lease_ttl).await?;
    let js = cluster.js();
    let mut processes = Vec::new();
    let (submit, results) = match fleet {
        Fleet::RawPython => {
            baseline::setup(&js, n * concurrency, cluster.replicas()).await?;
            processes.extend(cluster.python_workers("bench_raw_worker.py", n, concurrency)?);
            baseline::await_workers(&js, n as usize).await?;
            (baseline::JOBS_SUBJECT.to_owned(), baseline::RESULTS_SUBJECTS.to_owned())
        }
        Fleet::JetworkPython | Fleet::JetworkRust => {
            processes.push(cluster.master("m1")?);
            processes.extend(match fleet {
                Fleet::JetworkPython => {
                    cluster.python_workers("bench_worker.py", n, concurrency)?
                }
                _ => cluster.workers(System::Jetwork, n, concurrency)?,
            });
            if let Err(e) = cluster.await_leader(0, n as usize).await {
                let logs: Vec<String> =
                    processes.iter().map(|p| format!("{}:\n{}", p.name(), p.logs())).collect();
                return Err(e.context(logs.join("\n")));
            }
            let queue = bench_queue();
            (jetwork_shared::subjects::submit(&queue), jetwork_shared::subjects::results_in(&queue))
        }
    };
    drive(&cluster, &submit, &results, layout.jobs, o, progress, label).await
}
