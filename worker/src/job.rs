//! [`Job`]: one attempt of one work item, as a handler sees it.

use bytes::Bytes;
use jetwork_shared::{QueueName, WorkId};
use tokio::sync::mpsc;

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
