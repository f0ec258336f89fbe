//! [`Handler`]: what a worker runs per job. Any `Fn(Job) -> impl Future<Output =
//! Result<Bytes, String>>` is a handler; `Ok` is the result, `Err` the failure reason.

use std::future::Future;

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::Job;

/// Runs jobs.
pub trait Handler: Send + Sync + 'static {
    /// Runs one job: `Ok(result)` or `Err(reason)`.
    fn handle(&self, job: Job) -> BoxFuture<'static, Result<Bytes, String>>;
}

impl<F, Fut> Handler for F
where
    F: Fn(Job) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, String>> + Send + 'static,
{
    fn handle(&self, job: Job) -> BoxFuture<'static, Result<Bytes, String>> {
        Box::pin(self(job))
    }
}
