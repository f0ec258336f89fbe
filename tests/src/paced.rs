//! [`PacedLoad`]: submissions at a steady rate in the background, each in its own task, so a
//! submission stalled by a fault (retried by the frontend client until its submit timeout)
//! never holds back the next: the load keeps its pace through the fault, as independent
//! clients would. It records which ids were acknowledged (and owed a result) and when.
//!
//! Ids are `<prefix><n>` with `n` counting from 1 in submission order; payload `n` (the
//! built-in squarer's input).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use jetwork_frontend::Client;
use jetwork_shared::{QueueName, WorkId};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// What the load submitted, once stopped.
#[derive(Debug, Default)]
pub struct Submitted {
    /// The acknowledged ids (each owed a result) with when their acknowledgement arrived.
    pub acked: Vec<(WorkId, Instant)>,
    /// Submissions the client gave up on (not acknowledged: owed nothing).
    pub failed: Vec<(WorkId, String)>,
}

impl Submitted {
    /// The acknowledged ids.
    pub fn ids(&self) -> Vec<WorkId> {
        self.acked.iter().map(|(id, _)| id.clone()).collect()
    }
}

/// A running load.
pub struct PacedLoad {
    prefix: String,
    /// The number of the last submission started.
    started: Arc<AtomicU64>,
    acks: Arc<Mutex<Vec<Instant>>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<Submitted>>,
}

impl PacedLoad {
    /// Starts submitting `rate` jobs a second through `client` to the default queue.
    pub fn start(client: Client, prefix: &str, rate: u32) -> Self {
        let started = Arc::new(AtomicU64::new(0));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let pace = Duration::from_secs(1) / rate.max(1);
        let (count, ack_times, id_prefix) = (started.clone(), acks.clone(), prefix.to_owned());
        let task = tokio::spawn(async move {
            let queue = QueueName::default_queue();
            let mut running = JoinSet::new();
            let mut ticks = tokio::time::interval(pace);
            // After a hiccup the load goes on at its pace instead of catching up in a burst.
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stopped.changed() => break,
                }
                n += 1;
                count.store(n, Ordering::Relaxed);
                let id = WorkId::parse(&format!("{id_prefix}{n}"))?;
                let (client, queue, ack_times) = (client.clone(), queue.clone(), ack_times.clone());
                running.spawn(async move {
                    let outcome =
                        client.submit(&queue, Some(id.clone()), Bytes::from(n.to_string())).await;
                    let at = Instant::now();
                    if outcome.is_ok() {
                        ack_times.lock().unwrap_or_else(PoisonError::into_inner).push(at);
                    }
                    (id, at, outcome.map(|_| ()).map_err(|e| e.to_string()))
                });
            }
            let mut submitted = Submitted::default();
            while let Some(done) = running.join_next().await {
                match done? {
                    (id, at, Ok(())) => submitted.acked.push((id, at)),
                    (id, _, Err(e)) => submitted.failed.push((id, e)),
                }
            }
            Ok(submitted)
        });
        PacedLoad { prefix: prefix.to_owned(), started, acks, stop, task }
    }

    /// The number of the last submission started so far.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Whether `work_id` is one of this load's submissions numbered above `n`.
    pub fn is_after(&self, work_id: &str, n: u64) -> bool {
        work_id
            .strip_prefix(&self.prefix)
            .and_then(|rest| rest.parse::<u64>().ok())
            .is_some_and(|m| m > n)
    }

    /// The time from `from` to the first acknowledgement after it.
    pub fn first_ack_after(&self, from: Instant) -> Option<Duration> {
        let acks = self.acks.lock().unwrap_or_else(PoisonError::into_inner);
        acks.iter().filter(|at| **at >= from).min().map(|at| *at - from)
    }

    /// Stops submitting and waits for the submissions in flight to be acknowledged or given
    /// up on.
    pub async fn stop(self) -> anyhow::Result<Submitted> {
        let _ = self.stop.send(true);
        self.task.await?
    }
}
