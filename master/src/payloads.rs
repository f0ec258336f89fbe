//! Reading a submission's payload back from `JETWORK_SUBMIT` by its sequence: after a takeover
//! (the new leader has no cache), for a delayed item (its payload is not kept while it waits),
//! and for rejection notices.
//!
//! "Not found" is only believed from the stream leader. Direct gets are fast and may be
//! answered by any replica, including one that has not stored the sequence yet; a 404 from
//! one of them is confirmed with the leader before the payload is declared gone, since that
//! verdict fails the work item for good. A direct get that takes longer than a second (it
//! went to a frozen replica) is asked of the leader too.
//!
//! [`read_many`] reads many payloads of one queue ahead of their hand-out with batched direct
//! gets (one request answers a run of sequences): best effort, it concludes nothing about
//! what it does not find, which is then read by [`read`] when it is handed out.

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream::{
    self,
    stream::{DirectGetErrorKind, LastRawMessageErrorKind},
};
use bytes::Bytes;
use futures::StreamExt;
use jetwork_shared::backoff::Backoff;
use jetwork_shared::{headers, subjects, QueueName, Unavailable};

/// Tries before a transient failure is reported.
const ATTEMPTS: u32 = 3;
/// How long a direct get may take before the stream leader is asked instead: any replica
/// answers direct gets, and a frozen one never does.
const DIRECT_TIMEOUT: Duration = Duration::from_millis(1000);

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
        let direct = tokio::time::timeout(DIRECT_TIMEOUT, stream.direct_get(seq)).await;
        let failure = match direct {
            Ok(Ok(message)) => return Ok(Some(message.payload)),
            // Maybe a replica that has not stored it yet, or one that cannot answer (a frozen
            // node still holds its share of the direct gets): ask the stream leader.
            Err(_) => match stream.get_raw_message(seq).await {
                Ok(message) => return Ok(Some(message.payload)),
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
                Err(e) => Unavailable::new(what(), e),
            },
            Ok(Err(e)) if e.kind() == DirectGetErrorKind::NotFound => {
                match stream.get_raw_message(seq).await {
                    Ok(message) => return Ok(Some(message.payload)),
                    Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
                        return Ok(None)
                    }
                    Err(e) => Unavailable::new(what(), e),
                }
            }
            Ok(Err(e)) => Unavailable::new(what(), e),
        };
        if attempt >= ATTEMPTS {
            return Err(failure);
        }
        backoff.wait().await;
    }
}

/// Most messages one batched direct get asks for.
const MAX_BATCH: u64 = 256;
/// A wanted sequence further than this after the previous one starts a new batch (the
/// messages of the queue in between would be read for nothing).
const MAX_GAP: u64 = 16;
/// Most bytes one batched direct get may answer with.
const MAX_BATCH_BYTES: usize = 4 << 20;
/// Longest wait for a batch's messages.
const BATCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The payloads stored at `seqs` (sequences of submissions to `queue`) that could be read, by
/// sequence, each in an allocation of its own (so a payload kept for long does not pin the
/// connection's read buffer it arrived in). Runs of nearby sequences are read with one
/// batched direct get each (`{"seq", "next_by_subj", "batch"}`: the server answers with the
/// queue's messages from `seq` on, then an end-of-batch status). Whatever is not found, or not
/// read in time, is left out: nothing is concluded from its absence.
pub async fn read_many(
    js: &jetstream::Context,
    queue: &QueueName,
    seqs: &[u64],
) -> Vec<(u64, Bytes)> {
    let mut sorted = seqs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let batches = runs(&sorted);
    let subject = subjects::submissions_of(queue);
    let reads = batches.iter().map(|run| read_run(js, &subject, run));
    futures::future::join_all(reads).await.into_iter().flatten().collect()
}

/// Splits sorted sequences into runs that one batched get each reads: no gap over
/// [`MAX_GAP`], no span over [`MAX_BATCH`].
fn runs(sorted: &[u64]) -> Vec<&[u64]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=sorted.len() {
        let ends = i == sorted.len()
            || sorted[i] - sorted[i - 1] > MAX_GAP
            || sorted[i] - sorted[start] >= MAX_BATCH;
        if ends {
            out.push(&sorted[start..i]);
            start = i;
        }
    }
    out
}

/// Reads one run of sequences with a batched direct get.
async fn read_run(js: &jetstream::Context, subject: &str, run: &[u64]) -> Vec<(u64, Bytes)> {
    let (Some(&first), Some(&last)) = (run.first(), run.last()) else { return Vec::new() };
    let wanted: HashSet<u64> = run.iter().copied().collect();
    let client = js.client();
    let inbox = client.new_inbox();
    let Ok(mut replies) = client.subscribe(inbox.clone()).await else { return Vec::new() };
    let request = serde_json::json!({
        "seq": first,
        "next_by_subj": subject,
        "batch": last - first + 1,
        "max_bytes": MAX_BATCH_BYTES,
    });
    let body = Bytes::from(request.to_string());
    let get = subjects::direct_get(subjects::SUBMIT_STREAM);
    if client.publish_with_reply(get, inbox, body).await.is_err() {
        return Vec::new();
    }
    let mut found = Vec::new();
    let deadline = tokio::time::Instant::now() + BATCH_TIMEOUT;
    while let Ok(Some(message)) = tokio::time::timeout_at(deadline, replies.next()).await {
        // The end of the batch (204), or nothing at all from `first` on (404), or an error.
        if message.status.is_some() {
            break;
        }
        let seq = message
            .headers
            .as_ref()
            .and_then(|h| headers::from_server(h, headers::NATS_SEQUENCE))
            .and_then(|v| v.parse::<u64>().ok());
        match seq {
            Some(seq) if wanted.contains(&seq) => {
                found.push((seq, Bytes::copy_from_slice(&message.payload)));
            }
            Some(seq) if seq >= last => break,
            _ => {}
        }
        if found.len() == wanted.len() {
            break;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_at_gaps_and_at_the_batch_size() {
        assert!(runs(&[]).is_empty());
        assert_eq!(runs(&[5]), vec![&[5][..]]);
        assert_eq!(runs(&[1, 2, 3, 19, 36, 40]), vec![&[1, 2, 3, 19][..], &[36, 40]]);
        assert_eq!(runs(&[1, 2, 3, 20, 21, 40]), vec![&[1, 2, 3][..], &[20, 21], &[40]]);
        let long: Vec<u64> = (1..=600).collect();
        let split = runs(&long);
        assert_eq!(split.iter().map(|r| r.len()).collect::<Vec<_>>(), vec![256, 256, 88]);
        assert!(split.iter().all(|r| r.last().unwrap() - r.first().unwrap() < MAX_BATCH));
    }
}
