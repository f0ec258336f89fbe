//! Background submitters for scenarios that need work arriving while something goes wrong.

use std::time::Duration;

use bytes::Bytes;
use jetwork_frontend::Client;
use jetwork_shared::{QueueName, WorkId};
use tokio::task::JoinHandle;

/// Submits `count` squares (`<prefix>1`, `<prefix>2`, …, payload `n`) to the default queue,
/// one every `pace`, in the background; yields the ids once every one is acknowledged.
pub fn steady(
    client: Client,
    prefix: &'static str,
    count: u32,
    pace: Duration,
) -> JoinHandle<anyhow::Result<Vec<WorkId>>> {
    tokio::spawn(async move {
        let queue = QueueName::default_queue();
        let mut ids = Vec::new();
        for n in 1..=count {
            let id = WorkId::parse(&format!("{prefix}{n}"))?;
            client.submit(&queue, Some(id.clone()), Bytes::from(n.to_string())).await?;
            ids.push(id);
            // Pacing spreads submissions over the faults; it is not a wait for anything.
            tokio::time::sleep(pace).await;
        }
        Ok(ids)
    })
}
