//! [`LiveResults`]: a live subscriber on `jetwork.results.>`, as a user's dashboard or
//! `jetwork-frontend wait` would be, recording when each result arrived. It answers the
//! questions the fault tests ask of the live path: did any run's result arrive twice, and how
//! long did dispatch pause (the longest gap between consecutive results).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use jetwork_shared::{headers, subjects};
use tokio::task::JoinHandle;

/// What the subscriber saw: (arrival, subject, run) per message, in arrival order.
type Seen = Arc<Mutex<Vec<(Instant, String, String)>>>;

/// Results as they are published live (stopped on drop).
pub struct LiveResults {
    seen: Seen,
    task: JoinHandle<()>,
}

impl LiveResults {
    /// Subscribes on `client` (flushed, so nothing published after this returns is missed).
    pub async fn subscribe(client: &async_nats::Client) -> anyhow::Result<Self> {
        let mut subscription = client.subscribe(subjects::RESULTS_ALL).await?;
        client.flush().await?;
        let seen: Seen = Arc::default();
        let record = seen.clone();
        let task = tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                let run = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(headers::SUBMIT_SEQ))
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default();
                let entry = (Instant::now(), message.subject.to_string(), run);
                record.lock().unwrap_or_else(PoisonError::into_inner).push(entry);
            }
        });
        Ok(LiveResults { seen, task })
    }

    /// How many results arrived.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Runs (subject and submit sequence) whose result arrived more than once, with the count.
    pub fn duplicates(&self) -> Vec<(String, usize)> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for (_, subject, run) in seen.iter() {
            *counts.entry(format!("{subject} run {run}")).or_default() += 1;
        }
        counts.into_iter().filter(|(_, n)| *n > 1).collect()
    }

    /// The longest time between two consecutive results (zero with fewer than two).
    pub fn longest_gap(&self) -> Duration {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.windows(2).map(|w| w[1].0.duration_since(w[0].0)).max().unwrap_or_default()
    }
}

impl Drop for LiveResults {
    fn drop(&mut self) {
        self.task.abort();
    }
}
