//! [`WorkerMetrics`]: a worker process's Prometheus series (its own registry, no global
//! recorder), exported on `worker.metrics_listen`.
//!
//! Labels: `queue` only, and only the queues the worker was configured with (fixed at start),
//! so the series are bounded whatever runs. The per-queue handles are resolved once
//! ([`WorkerMetrics::queue`]): a job costs a hash lookup at its start and a few relaxed
//! atomic operations, no lock and no allocation.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use jetwork_shared::observe::{queue_label, register_build_info, AtomicHistogram, QueueLabel};
use jetwork_shared::QueueName;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// One queue's series.
#[derive(Debug, Clone)]
pub struct QueueSeries {
    pub started: Counter,
    pub completed: Counter,
    pub failed: Counter,
    pub run_seconds: AtomicHistogram,
}

/// Every series of one worker process. Clones share them.
#[derive(Debug, Clone)]
pub struct WorkerMetrics {
    queues: HashMap<QueueName, QueueSeries>,
    pub slots: Gauge,
    pub slots_busy: Gauge,
    pub registered: Gauge,
    pub epoch: Gauge,
    pub reconnects: Counter,
}

impl WorkerMetrics {
    /// The series of a worker serving `queues` with `concurrency` slots, and a registry that
    /// exports them.
    pub fn new(queues: &[QueueName], concurrency: u32) -> (Self, Registry) {
        let started: Family<QueueLabel, Counter> = Family::default();
        let completed: Family<QueueLabel, Counter> = Family::default();
        let failed: Family<QueueLabel, Counter> = Family::default();
        let run: Family<QueueLabel, AtomicHistogram, fn() -> AtomicHistogram> =
            Family::new_with_constructor(AtomicHistogram::seconds);
        let by_queue = queues
            .iter()
            .map(|q| {
                let label = queue_label(q);
                let series = QueueSeries {
                    started: started.get_or_create_owned(&label),
                    completed: completed.get_or_create_owned(&label),
                    failed: failed.get_or_create_owned(&label),
                    run_seconds: run.get_or_create_owned(&label),
                };
                (q.clone(), series)
            })
            .collect();
        let metrics = WorkerMetrics {
            queues: by_queue,
            slots: Gauge::default(),
            slots_busy: Gauge::default(),
            registered: Gauge::default(),
            epoch: Gauge::default(),
            reconnects: Counter::default(),
        };
        metrics.slots.set(i64::from(concurrency));
        let mut r = Registry::default();
        register_build_info(&mut r, "worker", env!("CARGO_PKG_VERSION"), &[]);
        r.register("jetwork_worker_jobs_started", "Jobs started, by queue", started);
        r.register("jetwork_worker_jobs_completed", "Jobs that returned a result", completed);
        r.register("jetwork_worker_jobs_failed", "Jobs that failed (error or panic)", failed);
        r.register("jetwork_worker_job_run_seconds", "Run time of jobs that ended", run);
        r.register("jetwork_worker_slots", "Jobs this worker runs at once", metrics.slots.clone());
        r.register("jetwork_worker_slots_busy", "Jobs running now", metrics.slots_busy.clone());
        r.register(
            "jetwork_worker_registered",
            "1 while registered with a confirmed leader, else 0",
            metrics.registered.clone(),
        );
        r.register(
            "jetwork_worker_epoch",
            "Newest leader epoch this worker follows",
            metrics.epoch.clone(),
        );
        r.register(
            "jetwork_worker_reconnects",
            "Times the NATS connection was re-established",
            metrics.reconnects.clone(),
        );
        (metrics, r)
    }

    /// The series of `queue`, if the worker serves it.
    pub fn queue(&self, queue: &QueueName) -> Option<&QueueSeries> {
        self.queues.get(queue)
    }

    /// Sets the reconnect count from the client's count of connections.
    pub fn connections(&self, connects: u64) {
        self.reconnects.inner().store(connects.saturating_sub(1), Ordering::Relaxed);
    }
}
