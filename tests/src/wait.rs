//! Waiting on conditions with a deadline instead of sleeping a fixed time.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Polls `condition` every 50 ms until it returns true, or fails after `timeout` naming
/// `what`.
pub async fn wait_until<F, Fut>(
    what: &str,
    timeout: Duration,
    mut condition: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    poll_for(what, timeout, || {
        let check = condition();
        async move { check.await.then_some(()) }
    })
    .await
}

/// Polls `probe` every 50 ms until it yields a value, or fails after `timeout` naming `what`.
pub async fn poll_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
