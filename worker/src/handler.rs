//! [`Handler`]: what a worker runs per job. Any `Fn(Job) -> impl Future<Output =
//! Result<Bytes, JobError>>` is a handler; `Ok` is the result, `Err` the failure (a plain
//! reason converts into a retryable [`JobError`] with `.into()` or `?`).

use std::future::Future;

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::{Job, JobError};

/// Runs jobs.
pub trait Handler: Send + Sync + 'static {
    /// Runs one job: `Ok(result)` or `Err(why)`.
    fn handle(&self, job: Job) -> BoxFuture<'static, Result<Bytes, JobError>>;
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
