//! Reading a submission's payload back from `JETWORK_SUBMIT` by its sequence: after a takeover
//! (the new leader has no cache), and for rejection notices.
//!
//! "Not found" is only believed from the stream leader. Direct gets are fast and may be
//! answered by any replica, including one that has not stored the sequence yet; a 404 from
//! one of them is confirmed with the leader before the payload is declared gone, since that
//! verdict fails the work item for good.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    stream::{DirectGetErrorKind, LastRawMessageErrorKind},
};
use bytes::Bytes;
use jetwork_shared::backoff::Backoff;
use jetwork_shared::{subjects, Unavailable};

/// Tries before a transient failure is reported.
const ATTEMPTS: u32 = 3;

/// The payload stored at `seq`. `Ok(None)`: the stream leader says it is not stored (purged or
/// deleted); `Err`: it could not be read right now.
pub async fn read(js: &jetstream::Context, seq: u64) -> Result<Option<Bytes>, Unavailable> {
    let what = || format!("reading submission {seq}");
    let stream = js
        .get_stream_no_info(subjects::SUBMIT_STREAM)
        .await
        .map_err(|e| Unavailable::new(what(), e))?;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
    let mut attempt = 0;
    loop {
        attempt += 1;
        let failure = match stream.direct_get(seq).await {
            Ok(message) => return Ok(Some(message.payload)),
            // Maybe a replica that has not stored it yet: ask the stream leader.
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => {
                match stream.get_raw_message(seq).await {
                    Ok(message) => return Ok(Some(message.payload)),
                    Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
                        return Ok(None)
                    }
                    Err(e) => Unavailable::new(what(), e),
                }
            }
            Err(e) => Unavailable::new(what(), e),
        };
        if attempt >= ATTEMPTS {
            return Err(failure);
        }
        backoff.wait().await;
    }
}
