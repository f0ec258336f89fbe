//! [`Fleet`]: many jetwork workers spoken by hand from this process over a few shared NATS
//! connections (as [`ManualWorker`] does, like workers in another language), so a phase can
//! have 10,000 registered workers without 10,000 processes.
//!
//! Each worker registers for its queues with its capacity, then loops as the worker library
//! does: a long poll for work (`wait_ms` half the library's request timeout), the benchmark's
//! job ([`stamp::run`]) for every assignment, one report of their outcomes with their tokens
//! (asking for more in the same reply), and a heartbeat (registering again) every
//! [`HEARTBEAT`] while it holds nothing. It does not re-send a report until it has a verdict:
//! a report that goes unanswered, and every verdict but `accepted`, is counted in
//! [`Fleet::errors`] and fails the phase, so no lost or refused outcome passes unseen. A
//! request for work left unanswered is counted apart (the phase reports it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use indicatif::MultiProgress;
use jetwork_shared::protocol::{
    Outcome, OutcomeStatus, Report, ReportReply, VerdictKind, WorkGrant,
};
use jetwork_shared::{subjects, QueueName};
use jetwork_tests::manual::ManualWorker;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{bar, stamp};

/// The workers' heartbeat: `worker.register_interval`'s default.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// How long a request for work may wait at the master: the worker library's (half its
/// 5 s request timeout).
const WAIT_MS: u64 = 2_500;
/// Registrations in flight at once while the workers first register.
const REGISTERING_AT_ONCE: usize = 256;

/// What went wrong in a fleet: requests unanswered, outcomes refused.
#[derive(Debug, Default)]
pub struct Errors {
    /// Registrations and reports that got no reply or an error reply.
    pub lost: AtomicU64,
    /// Requests for work that got no reply or an error reply: counted, not failing the phase
    /// (no outcome is at stake; the worker asks again), reported as a figure.
    pub polls_unanswered: AtomicU64,
    /// The first of those, in words.
    pub first_poll: Mutex<Option<String>>,
    /// Outcomes whose verdict was not `accepted`.
    pub refused: AtomicU64,
    /// The first error, in words.
    pub first: Mutex<Option<String>>,
}

impl Errors {
    fn note(&self, counter: &AtomicU64, what: String) {
        counter.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(what);
    }

    /// `Err` naming the first error if there was any.
    pub fn check(&self) -> anyhow::Result<()> {
        let (lost, refused) =
            (self.lost.load(Ordering::Relaxed), self.refused.load(Ordering::Relaxed));
        if lost + refused > 0 {
            let first = self.first.lock().unwrap_or_else(|p| p.into_inner()).clone();
            anyhow::bail!(
                "the hand-spoken workers saw {lost} requests lost and {refused} outcomes refused; \
                 first: {}",
                first.unwrap_or_default()
            );
        }
        Ok(())
    }
}

/// Hand-spoken workers serving until dropped.
pub struct Fleet {
    tasks: Vec<JoinHandle<()>>,
    pub errors: Arc<Errors>,
}

impl Fleet {
    /// Registers `n` workers (ids `<prefix>-<i>`, worker `i` on `connections[i % len]`) for the
    /// queues `queues(i)` with `capacity` slots each, then starts them serving. Fails if any
    /// registration is refused.
    pub async fn start(
        connections: &[async_nats::Client],
        prefix: &str,
        n: u32,
        capacity: u32,
        queues: impl Fn(u32) -> Vec<QueueName>,
        progress: &MultiProgress,
    ) -> anyhow::Result<Fleet> {
        anyhow::ensure!(!connections.is_empty(), "a fleet needs a connection");
        let workers: Vec<(ManualWorker, Vec<QueueName>)> = (0..n)
            .map(|i| {
                let nats = connections[i as usize % connections.len()].clone();
                Ok((ManualWorker::new(nats, &format!("{prefix}-{i}"))?, queues(i)))
            })
            .collect::<anyhow::Result<_>>()?;
        let registering = progress.add(bar(u64::from(n), &format!("registering {n} workers")));
        let refused = futures::stream::iter(&workers)
            .map(|(w, queues)| async move { w.register_for(queues.clone(), capacity).await.err() })
            .buffer_unordered(REGISTERING_AT_ONCE)
            .inspect(|_| registering.inc(1))
            .filter_map(|e| async move { e })
            .collect::<Vec<_>>()
            .await;
        registering.finish_and_clear();
        if let Some(first) = refused.first() {
            anyhow::bail!("{} of {n} registrations refused: {first:#}", refused.len());
        }
        let errors = Arc::new(Errors::default());
        // Heartbeats spread evenly over the period, as independent processes would send them.
        let tasks = workers
            .into_iter()
            .enumerate()
            .map(|(i, (worker, queues))| {
                let offset = HEARTBEAT.mul_f64(i as f64 / f64::from(n.max(1)));
                let errors = errors.clone();
                tokio::spawn(serve(worker, queues, capacity, offset, errors))
            })
            .collect();
        Ok(Fleet { tasks, errors })
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// One worker's loop (until aborted).
async fn serve(
    worker: ManualWorker,
    queues: Vec<QueueName>,
    capacity: u32,
    heartbeat_offset: Duration,
    errors: Arc<Errors>,
) {
    let mut next_beat = Instant::now() + heartbeat_offset;
    let mut assignments = Vec::new();
    loop {
        if assignments.is_empty() {
            if Instant::now() >= next_beat {
                next_beat += HEARTBEAT;
                if let Err(e) = worker.register_for(queues.clone(), capacity).await {
                    errors.note(&errors.lost, format!("heartbeat of {}: {e:#}", worker.id));
                }
            }
            let poll = worker.long_poll(capacity, WAIT_MS);
            match worker.call::<_, WorkGrant>(subjects::MASTER_REQUEST, &poll).await {
                Ok(grant) => assignments = grant.assignments,
                Err(e) => {
                    errors.polls_unanswered.fetch_add(1, Ordering::Relaxed);
                    errors
                        .first_poll
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert_with(|| format!("{e:#}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            continue;
        }
        let outcomes: Vec<Outcome> = assignments
            .drain(..)
            .map(|a| {
                let (status, result, reason) = match stamp::run(&a.payload) {
                    Ok(result) => (OutcomeStatus::Completed, result, None),
                    Err(reason) => (OutcomeStatus::Failed, bytes::Bytes::new(), Some(reason)),
                };
                Outcome {
                    work_id: a.work_id,
                    attempt: a.attempt,
                    token: a.token,
                    status,
                    result,
                    reason,
                    non_retryable: false,
                }
            })
            .collect();
        let sent = outcomes.len();
        let report = Report {
            worker_id: worker.id.clone(),
            session: worker.session,
            outcomes,
            slots: capacity,
            running: None,
        };
        match worker.call::<_, ReportReply>(subjects::MASTER_REPORT, &report).await {
            Ok(reply) => {
                for v in reply.verdicts.iter().filter(|v| v.verdict != VerdictKind::Accepted) {
                    let what = format!("{:?} for {} ({:?})", v.verdict, worker.id, v.reason);
                    errors.note(&errors.refused, what);
                }
                if reply.verdicts.len() < sent {
                    let what = format!("{} verdicts for {sent} outcomes", reply.verdicts.len());
                    errors.note(&errors.refused, what);
                }
                assignments = reply.assignments;
            }
            Err(e) => {
                let what = format!("report of {sent} outcomes by {}: {e:#}", worker.id);
                errors.note(&errors.lost, what);
            }
        }
    }
}

/// `n` more connections to `url` for a fleet (the benchmark's own one stays for the load).
pub async fn connections(url: &str, n: usize) -> anyhow::Result<Vec<async_nats::Client>> {
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let options = async_nats::ConnectOptions::new().name(format!("bench-fleet-{i}"));
        clients.push(options.connect(url).await?);
    }
    Ok(clients)
}
