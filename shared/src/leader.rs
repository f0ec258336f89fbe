//! Who leads, according to the lease: the one source a worker (or anything else following the
//! leader) trusts. Announcements on `jetwork.master.elected` and the epochs in replies are
//! hints anyone could forge; a new epoch is believed only once the lease key's value names it.

use std::time::Duration;

use async_nats::jetstream::{self, stream::DirectGetErrorKind};
use time::OffsetDateTime;

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

/// The lease as people want to see it (`jetwork-frontend status` while no master answers): who
/// holds it, and when it runs out unless renewed.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseView {
    /// `None`: nobody holds it (never taken, released, or expired).
    pub holder: Option<LeaseHolder>,
    /// When the key was last written (taken or renewed), server time.
    pub written: Option<OffsetDateTime>,
    /// The bucket's `max_age`: the lease's time to live (each renewal restarts it).
    pub ttl: Option<Duration>,
}

impl LeaseView {
    /// When the lease runs out unless renewed, if it is held.
    pub fn expires(&self) -> Option<OffsetDateTime> {
        let ttl = time::Duration::try_from(self.ttl?).ok()?;
        self.holder.as_ref()?;
        Some(self.written? + ttl)
    }
}

/// Reads the lease for display: [`current`], plus when it was written and the bucket's TTL.
pub async fn view(js: &jetstream::Context) -> Result<LeaseView, LeaseReadError> {
    let mut stream = js
        .get_stream(lease_stream())
        .await
        .map_err(|e| Unavailable::new("reading the lease bucket", e))?;
    let ttl = stream.info().await.ok().map(|info| info.config.max_age).filter(|t| !t.is_zero());
    let key = format!("$KV.{}.{}", subjects::LEASE_BUCKET, subjects::LEASE_KEY);
    let entry = match stream.direct_get_last_for_subject(key).await {
        Ok(entry) => entry,
        Err(e) if e.kind() == DirectGetErrorKind::NotFound => {
            return Ok(LeaseView { holder: None, written: None, ttl })
        }
        Err(e) => return Err(Unavailable::new("reading the lease", e).into()),
    };
    if entry.headers.get(headers::KV_OPERATION).is_some()
        || entry.headers.get(headers::NATS_MARKER_REASON).is_some()
    {
        return Ok(LeaseView { holder: None, written: Some(entry.time), ttl });
    }
    let holder = serde_json::from_slice(&entry.payload)?;
    Ok(LeaseView { holder: Some(holder), written: Some(entry.time), ttl })
}
