//! The demo producer, the Akka sample's `WorkProducer` + `WorkResultConsumer`: submits the
//! integers 1..=count steadily (each under its own work id, retried until acknowledged),
//! logs every result as it arrives, and ends with a summary once every result is in or the
//! wait is over. A result missed live (a reconnect) is looked up in the results stream before
//! the item is counted as lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use jetwork_shared::{subjects, QueueName, WorkId};
use serde::Serialize;
use tokio::time::Instant;

use crate::{Client, ClientError, ResultStatus, WorkResult};

/// What to produce.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub queue: QueueName,
    pub count: u64,
    /// Pause between submissions.
    pub interval: Duration,
    /// How long to wait for the last results after the last submission.
    pub wait: Duration,
}

/// How the run went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DemoSummary {
    pub run: String,
    /// Acknowledged submissions.
    pub submitted: u64,
    /// Submissions never acknowledged (after retrying for `submit_timeout`).
    pub not_accepted: u64,
    pub completed: u64,
    pub failed: u64,
    /// Acknowledged, yet no result: must be 0.
    pub lost: u64,
    /// Work ids whose result arrived more than once: must be 0.
    pub duplicate_results: u64,
}

/// Runs the producer.
pub async fn run(client: &Client, options: DemoOptions) -> Result<DemoSummary, ClientError> {
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let prefix = format!("demo-{run}-");
    let seen: Arc<Mutex<HashMap<WorkId, (u32, WorkResult)>>> = Arc::default();
    let mut live = client
        .nats()
        .subscribe(subjects::results_in(&options.queue))
        .await
        .map_err(|e| ClientError::Nats(e.to_string()))?;
    let consumer = {
        let seen = seen.clone();
        let prefix = prefix.clone();
        tokio::spawn(async move {
            while let Some(m) = live.next().await {
                let Some(result) =
                    WorkResult::from_message(m.subject.as_str(), m.headers.as_ref(), m.payload)
                else {
                    continue;
                };
                if !result.work_id.as_str().starts_with(&prefix) {
                    continue;
                }
                match result.status {
                    ResultStatus::Completed => {
                        tracing::info!(work_id = %result.work_id, attempt = result.attempt, "Consumed result: {}", String::from_utf8_lossy(&result.payload))
                    }
                    ResultStatus::Failed | ResultStatus::Cancelled => {
                        tracing::warn!(work_id = %result.work_id, status = ?result.status, reason = result.reason.as_deref().unwrap_or(""), "Work did not complete")
                    }
                }
                let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                let entry = seen.entry(result.work_id.clone()).or_insert((0, result));
                entry.0 += 1;
            }
        })
    };

    let mut summary = DemoSummary { run: run.clone(), ..Default::default() };
    let mut accepted = Vec::new();
    tracing::info!(run = %run, count = options.count, queue = %options.queue, "producing work");
    for n in 1..=options.count {
        let work_id = WorkId::parse(&format!("{prefix}{n}"))
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        match client.submit(&options.queue, Some(work_id.clone()), Bytes::from(n.to_string())).await
        {
            Ok(submitted) => {
                tracing::info!(%work_id, seq = submitted.seq, "Produced work: {n}");
                summary.submitted += 1;
                accepted.push(work_id);
            }
            // NATS refuses this user the submissions: every one would be refused alike.
            Err(denied @ ClientError::Denied(_)) => return Err(denied),
            Err(e) => {
                tracing::error!(%work_id, error = %e, "Work not accepted");
                summary.not_accepted += 1;
            }
        }
        tokio::time::sleep(options.interval).await;
    }

    let deadline = Instant::now() + options.wait;
    loop {
        let done = {
            let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            accepted.iter().filter(|id| seen.contains_key(*id)).count()
        };
        if done == accepted.len() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    consumer.abort();

    let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for work_id in &accepted {
        let result = match seen.get(work_id) {
            Some((copies, result)) => {
                if *copies > 1 {
                    summary.duplicate_results += 1;
                }
                Some(result.clone())
            }
            None => client.result(Some(&options.queue), work_id).await?,
        };
        match result.map(|r| r.status) {
            Some(ResultStatus::Completed) => summary.completed += 1,
            // An operator's cancellation is not a failure of the system, but not a result either.
            Some(ResultStatus::Failed | ResultStatus::Cancelled) => summary.failed += 1,
            None => {
                tracing::error!(%work_id, "no result: lost");
                summary.lost += 1;
            }
        }
    }
    Ok(summary)
}
