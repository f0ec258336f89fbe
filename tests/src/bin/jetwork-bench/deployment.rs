//! [`Deployment`]: one system ready to take jobs on a fresh server: for jetwork a master and
//! its registered worker processes, for the baseline its streams and pulling workers.

use std::time::Duration;

use jetwork_shared::{subjects, QueueName};
use jetwork_tests::Process;

use crate::baseline;
use crate::cluster::{Cluster, System};

/// The queue the benchmark's jetwork workers serve.
pub const BENCH_QUEUE: &str = "bench";

/// [`BENCH_QUEUE`] as a queue name.
pub fn bench_queue() -> QueueName {
    QueueName::parse(BENCH_QUEUE).expect("\"bench\" is a valid queue name")
}

/// A system under load.
pub struct Deployment {
    pub system: System,
    pub cluster: Cluster,
    pub masters: Vec<Process>,
    /// Killed when the deployment is dropped.
    _workers: Vec<Process>,
}

impl Deployment {
    /// Starts `system` with `workers` worker processes running `concurrency` jobs each.
    pub async fn start(
        system: System,
        workers: u32,
        concurrency: u32,
        lease_ttl: Duration,
    ) -> anyhow::Result<Self> {
        Self::on(Cluster::start(lease_ttl).await?, system, workers, concurrency).await
    }

    /// [`Deployment::start`] on a fresh 3-node cluster, every stream replicated three times
    /// (the baseline's too).
    pub async fn start_replicated(
        system: System,
        workers: u32,
        concurrency: u32,
        lease_ttl: Duration,
    ) -> anyhow::Result<Self> {
        let cluster = Cluster::start_replicated(lease_ttl).await?;
        Self::on(cluster, system, workers, concurrency).await
    }

    async fn on(
        cluster: Cluster,
        system: System,
        workers: u32,
        concurrency: u32,
    ) -> anyhow::Result<Self> {
        let mut masters = Vec::new();
        let processes = match system {
            System::Jetwork => {
                masters.push(cluster.master("m1")?);
                let processes = cluster.workers(system, workers, concurrency)?;
                cluster.await_leader(0, workers as usize).await?;
                processes
            }
            System::Baseline => {
                baseline::setup(&cluster.js(), workers * concurrency, cluster.replicas()).await?;
                let processes = cluster.workers(system, workers, concurrency)?;
                baseline::await_workers(&cluster.js(), workers as usize).await?;
                processes
            }
        };
        Ok(Deployment { system, cluster, masters, _workers: processes })
    }

    /// Where jobs are submitted.
    pub fn submit_subject(&self) -> String {
        match self.system {
            System::Jetwork => subjects::submit(&bench_queue()),
            System::Baseline => baseline::JOBS_SUBJECT.to_owned(),
        }
    }

    /// The CPU time its master (jetwork), workers and server(s) have used so far.
    pub fn cpu(&self) -> crate::cpu::Usage {
        let workers: Vec<u32> = self._workers.iter().map(Process::pid).collect();
        crate::cpu::Usage::read(self.masters.first().map(Process::pid), &workers)
    }

    /// Where results appear.
    pub fn results_subject(&self) -> String {
        match self.system {
            System::Jetwork => subjects::results_in(&bench_queue()),
            System::Baseline => baseline::RESULTS_SUBJECTS.to_owned(),
        }
    }
}
