//! [`JobError`]: why a job failed, and whether another attempt could succeed. A retryable
//! failure is re-queued by the master (with back-off) until the queue's attempts run out; a
//! non-retryable one (bad input, a permanent refusal) ends the job `failed` at once.

/// A job's failure, as a handler returns it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct JobError {
    /// Why it failed: the tail ends up in the result's `Jetwork-Reason` header.
    pub reason: String,
    /// Whether another attempt could succeed.
    pub retryable: bool,
}

impl JobError {
    /// A failure another attempt may not repeat (a timeout, an unavailable dependency).
    pub fn retryable(reason: impl Into<String>) -> Self {
        JobError { reason: reason.into(), retryable: true }
    }

    /// A failure every attempt would repeat: the job fails at once, without more attempts.
    pub fn permanent(reason: impl Into<String>) -> Self {
        JobError { reason: reason.into(), retryable: false }
    }
}

/// A plain reason is a retryable failure, so `?` on a `Result<_, String>` retries.
impl From<String> for JobError {
    fn from(reason: String) -> Self {
        JobError::retryable(reason)
    }
}

impl From<&str> for JobError {
    fn from(reason: &str) -> Self {
        JobError::retryable(reason)
    }
}
