//! [`InProcess`]: the common start of an in-process scenario: a fresh nats-server, the fast
//! test settings (tuned per test), a master candidate that will lead, and a frontend client.

use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use jetwork_frontend::{Client, WorkResult};
use jetwork_shared::{connect, QueueName, WorkId};
use jetwork_worker::Handler;

use crate::inproc::{spawn_master, spawn_worker, Task};
use crate::{fast_settings, init_logging, Audit, Fast, NatsServer};

/// A running scenario.
pub struct InProcess {
    pub server: NatsServer,
    pub fast: Fast,
    pub master: Task,
    pub client: Client,
    pub js: jetstream::Context,
    /// The queue `submit` uses: `default`.
    pub queue: QueueName,
}

impl InProcess {
    /// Starts a server and a master with the fast settings, adjusted by `tune`.
    pub async fn start(tune: impl FnOnce(&mut Fast)) -> anyhow::Result<Self> {
        init_logging();
        let server = NatsServer::start()?;
        let mut fast = fast_settings(&server.url());
        tune(&mut fast);
        let master = spawn_master("m1", fast.master.clone());
        let client = Client::connect(fast.frontend.clone()).await?;
        let js = connect::jetstream(client.nats(), &fast.frontend.nats);
        Ok(InProcess { server, fast, master, client, js, queue: QueueName::default_queue() })
    }

    /// Starts a worker named `name` running `handler`.
    pub fn worker<H: Handler>(&self, name: &str, handler: H) -> Task {
        spawn_worker(name, self.fast.worker.clone(), handler)
    }

    /// Submits `payload` under `id` to the default queue.
    pub async fn submit(&self, id: &str, payload: &'static [u8]) -> anyhow::Result<WorkId> {
        let id = WorkId::parse(id)?;
        self.client.submit(&self.queue, Some(id.clone()), Bytes::from_static(payload)).await?;
        Ok(id)
    }

    /// Waits (up to `within`) for the result of `id` in the default queue.
    pub async fn result(&self, id: &WorkId, within: Duration) -> anyhow::Result<WorkResult> {
        Ok(self.client.wait_result(&self.queue, id, within).await?)
    }

    /// Reads the journal and results stream and checks the invariants.
    pub async fn audit(&self) -> anyhow::Result<Audit> {
        let audit = Audit::read(&self.js).await?;
        audit.check()?;
        Ok(audit)
    }

    /// Stops the master cleanly.
    pub async fn stop(self) {
        self.master.stop().await;
    }
}
