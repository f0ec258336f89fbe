//! [`Job`]: one attempt of one work item, as a handler sees it.

use bytes::Bytes;
use jetwork_shared::{QueueName, WorkId};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// An attempt handed to a handler.
#[derive(Debug)]
pub struct Job {
    pub work_id: WorkId,
    pub queue: QueueName,
    /// 1 on the first hand-out; more after timeouts or failures.
    pub attempt: u32,
    /// The submitted bytes.
    pub payload: Bytes,
    /// How long the master waits for a result or progress, from when it handed this out.
    pub timeout: std::time::Duration,
    /// When that wait ends by this worker's own (monotonic) clock: when the grant arrived
    /// plus `timeout` (so no earlier than the master's deadline), moved on each time the
    /// master accepts progress for the attempt.
    pub deadline: Deadline,
    pub(crate) progress: mpsc::UnboundedSender<(WorkId, u32)>,
}

impl Job {
    /// Tells the master the job is still running, which extends its deadline by the master's
    /// work timeout. Cheap: it is queued and sent with the worker's next report.
    pub fn progress(&self) {
        let _ = self.progress.send((self.work_id.clone(), self.attempt));
    }

    /// A cheap handle that reports progress for this job from elsewhere (a child process
    /// reader, a timer).
    pub fn progress_handle(&self) -> ProgressHandle {
        ProgressHandle {
            work_id: self.work_id.clone(),
            attempt: self.attempt,
            tx: self.progress.clone(),
        }
    }
}

/// Reports progress for one job; see [`Job::progress`].
#[derive(Debug, Clone)]
pub struct ProgressHandle {
    work_id: WorkId,
    attempt: u32,
    tx: mpsc::UnboundedSender<(WorkId, u32)>,
}

impl ProgressHandle {
    /// See [`Job::progress`].
    pub fn progress(&self) {
        let _ = self.tx.send((self.work_id.clone(), self.attempt));
    }
}

/// An attempt's deadline on this worker's clock; see [`Job::deadline`].
#[derive(Debug, Clone)]
pub struct Deadline(watch::Receiver<Instant>);

impl Deadline {
    pub(crate) fn new(at: watch::Receiver<Instant>) -> Self {
        Deadline(at)
    }

    /// When it is now.
    pub fn at(&self) -> Instant {
        *self.0.borrow()
    }

    /// Waits until it moves (never returns once nothing can move it any more).
    pub async fn changed(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
