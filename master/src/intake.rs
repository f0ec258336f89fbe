//! Reading submissions from `JETWORK_SUBMIT`, one reader task per queue, only as fast as the
//! leader asks.
//!
//! Each [`QueueReader`] owns an ephemeral pull consumer filtered to `jetwork.submit.<queue>`,
//! starting after the queue's replayed cursor. The leader grants it credits (one per
//! submission it wants); the reader pulls at most that many, so the backlog stays in the
//! stream and the master's memory only holds what workers can take plus a small read-ahead.
//! A pull waits on the server for new submissions, so a submission reaches the leader within
//! milliseconds of being stored. The reader tracks its own position: if the consumer breaks
//! it is recreated from the next sequence, and anything re-delivered at or below the engine's
//! cursor is ignored by the engine.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{pull, AckPolicy, DeliverPolicy},
};
use bytes::Bytes;
use futures::StreamExt;
use jetwork_shared::{headers, subjects, QueueName};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

/// One submission read from the stream.
#[derive(Debug, Clone)]
pub struct Submission {
    pub queue: QueueName,
    pub seq: u64,
    pub msg_id: Option<String>,
    pub payload: Bytes,
}

/// Most submissions requested in one pull.
const MAX_PULL: usize = 256;

/// The reader of one queue.
#[derive(Debug)]
pub struct QueueReader {
    credits: Arc<Semaphore>,
    requested: u64,
    received: u64,
    task: JoinHandle<()>,
}

impl QueueReader {
    /// Starts reading `queue` from sequence `start` (the cursor + 1), sending to `tx`.
    pub fn spawn(
        js: jetstream::Context,
        queue: QueueName,
        start: u64,
        tx: mpsc::UnboundedSender<Submission>,
    ) -> Self {
        let credits = Arc::new(Semaphore::new(0));
        let task = tokio::spawn(read(js, queue, start, credits.clone(), tx));
        QueueReader { credits, requested: 0, received: 0, task }
    }

    /// Credits granted and not yet used.
    pub fn outstanding(&self) -> u64 {
        self.requested - self.received
    }

    /// Asks for `n` more submissions.
    pub fn grant(&mut self, n: u64) {
        if n > 0 {
            self.requested += n;
            self.credits.add_permits(usize::try_from(n).unwrap_or(usize::MAX));
        }
    }

    /// Counts one submission delivered by this reader.
    pub fn delivered(&mut self) {
        self.received += 1;
    }
}

impl Drop for QueueReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read(
    js: jetstream::Context,
    queue: QueueName,
    mut next_seq: u64,
    credits: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<Submission>,
) {
    let subject = subjects::submit(&queue);
    let mut consumer: Option<jetstream::consumer::Consumer<pull::Config>> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        let Ok(first) = credits.acquire().await else { return };
        first.forget();
        let extra = credits.available_permits().min(MAX_PULL - 1);
        if let Ok(more) = credits.try_acquire_many(u32::try_from(extra).unwrap_or(0)) {
            more.forget();
        }
        let want = 1 + extra;
        let mut got = 0usize;
        if consumer.is_none() {
            match create_consumer(&js, &subject, next_seq).await {
                Ok(c) => consumer = Some(c),
                Err(e) => {
                    tracing::warn!(%queue, error = %e, "cannot create the submit reader; retrying")
                }
            }
        }
        if let Some(c) = &consumer {
            match c.batch().max_messages(want).expires(Duration::from_secs(5)).messages().await {
                Ok(mut batch) => {
                    while let Some(item) = batch.next().await {
                        let message = match item {
                            Ok(message) => message,
                            Err(e) => {
                                tracing::warn!(%queue, error = %e, "submit reader interrupted; recreating");
                                consumer = None;
                                break;
                            }
                        };
                        let Ok(info) = message.info() else { continue };
                        let seq = info.stream_sequence;
                        if seq < next_seq {
                            continue;
                        }
                        next_seq = seq + 1;
                        got += 1;
                        let msg_id = message
                            .headers
                            .as_ref()
                            .and_then(|h| h.get(headers::NATS_MSG_ID))
                            .map(|v| v.as_str().to_owned());
                        let submission = Submission {
                            queue: queue.clone(),
                            seq,
                            msg_id,
                            payload: message.payload.clone(),
                        };
                        if tx.send(submission).is_err() {
                            return;
                        }
                    }
                    backoff = Duration::from_millis(100);
                }
                Err(e) => {
                    tracing::warn!(%queue, error = %e, "submit pull failed; recreating the reader");
                    consumer = None;
                }
            }
        }
        credits.add_permits(want - got);
        if consumer.is_none() {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}

async fn create_consumer(
    js: &jetstream::Context,
    subject: &str,
    start: u64,
) -> Result<jetstream::consumer::Consumer<pull::Config>, String> {
    let stream = js.get_stream(subjects::SUBMIT_STREAM).await.map_err(|e| e.to_string())?;
    stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: start.max(1) },
            ack_policy: AckPolicy::None,
            filter_subject: subject.to_owned(),
            inactive_threshold: Duration::from_secs(60),
            memory_storage: true,
            description: Some("jetwork master: submission reader".to_owned()),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())
}
