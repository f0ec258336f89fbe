//! [`Handler`]: what a worker runs per job. Any `Fn(Job) -> impl Future<Output =
//! Result<Bytes, JobError>>` is a handler; `Ok` is the result, `Err` the failure (a plain
//! reason converts into a retryable [`JobError`] with `.into()` or `?`). A handler that
//! depends on something that can be away (a service it forwards to) also hands the runtime a
//! [`Gate`], which it closes to stop the worker taking work.

use std::future::Future;

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::{Gate, Job, JobError};

/// Runs jobs.
pub trait Handler: Send + Sync + 'static {
    /// Runs one job: `Ok(result)` or `Err(why)`.
    fn handle(&self, job: Job) -> BoxFuture<'static, Result<Bytes, JobError>>;

    /// The gate through which this handler says whether the worker should take work (none:
    /// it always can).
    fn gate(&self) -> Option<Gate> {
        None
    }
}

impl<F, Fut> Handler for F
where
    F: Fn(Job) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, JobError>> + Send + 'static,
{
    fn handle(&self, job: Job) -> BoxFuture<'static, Result<Bytes, JobError>> {
        Box::pin(self(job))
    }
}
