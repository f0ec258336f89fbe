//! Who leads, according to the lease: the one source a worker (or anything else following the
//! leader) trusts. Announcements on `jetwork.master.elected` and the epochs in replies are
//! hints anyone could forge; a new epoch is believed only once the lease key's value names it.

use async_nats::jetstream::{self, stream::DirectGetErrorKind};

use crate::protocol::LeaseHolder;
use crate::{headers, subjects, Unavailable};

/// The lease could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LeaseReadError {
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// The key holds something other than a [`LeaseHolder`] (written by something else).
    #[error("the lease value is not a holder: {0}")]
    NotAHolder(#[from] serde_json::Error),
}

/// The stream behind the lease bucket.
fn lease_stream() -> String {
    format!("KV_{}", subjects::LEASE_BUCKET)
}

/// The lease's current holder and epoch; `None` when nobody holds it (never taken, released,
/// or expired). Epoch 0 means a candidate has just taken it and not yet written its epoch.
pub async fn current(js: &jetstream::Context) -> Result<Option<LeaseHolder>, LeaseReadError> {
    let stream = js
        .get_stream_no_info(lease_stream())
        .await
        .map_err(|e| Unavailable::new("reading the lease", e))?;
    let key = format!("$KV.{}.{}", subjects::LEASE_BUCKET, subjects::LEASE_KEY);
    let entry = match stream.direct_get_last_for_subject(key).await {
        Ok(entry) => entry,
        Err(e) if e.kind() == DirectGetErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Unavailable::new("reading the lease", e).into()),
    };
    // A release leaves a delete marker, an expiry a purge marker; neither names a holder.
    if entry.headers.get(headers::KV_OPERATION).is_some()
        || entry.headers.get(headers::NATS_MARKER_REASON).is_some()
    {
        return Ok(None);
    }
    Ok(Some(serde_json::from_slice(&entry.payload)?))
}
