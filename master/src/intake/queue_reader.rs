//! [`QueueReader`]: the reader of one queue's submissions, on a consumer filtered to them
//! (`jetwork.*.<queue>`), only as fast as the leader asks, never past a message it did not
//! receive.
//!
//! It starts where the leader tells it (the queue's cursor + 1) and pulls at most the credits
//! the leader granted, so the backlog stays in the stream. Each submission it passes on
//! carries `after`, the previous one it passed on (or the position it started from). A queue
//! has its own reader while the stream reader ([`super::StreamReader`]) does not read it for
//! the leader: its backlog is beyond its read-ahead, or it is only read for its purge.
//!
//! **Without a consumer.** Creating a consumer takes the JetStream meta leader; when the node
//! it ran on dies, creating one waits for the next meta election (seconds). Meanwhile the reader
//! reads by batched direct gets from its position (`next_by_subj`: the queue's submissions in
//! stream order, none skipped), which any replica of the stream answers, and tries a consumer
//! again a second after a creation failed. Deliveries go the same way, with the same `after`
//! chain. Direct gets are few at a time ([`MAX_READING_DIRECTLY`]) and polled less often while
//! they find nothing: each is a scan of the stream on the server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use jetwork_shared::{subjects, QueueName};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::consumer::{Checked, ConsumerSlot, Puller, Take, Taken};
use super::credits::Credits;
use super::{decode, stored_reply, ReaderEnv, Stored};

/// Most submissions requested in one pull.
pub(super) const MAX_PULL: usize = 256;
/// Without a consumer: how long a batched direct get may take, the most bytes it may return,
/// and the pause before asking again when it found nothing new.
const DIRECT_TIMEOUT: Duration = Duration::from_secs(1);
const DIRECT_MAX_BYTES: usize = 4 << 20;
const DIRECT_POLL: Duration = Duration::from_millis(100);
/// How many times the pause doubles while direct gets find nothing (100 ms up to 1.6 s).
const DIRECT_POLL_DOUBLINGS: u32 = 4;
/// Batched direct gets in flight at once, over all the readers of a leader.
pub const MAX_READING_DIRECTLY: usize = 16;

/// The reader of one queue.
#[derive(Debug)]
pub struct QueueReader {
    credits: Credits,
    generation: u64,
    /// Stops the reader task, which then deletes its consumer.
    stop: CancellationToken,
}

impl QueueReader {
    /// Starts reading `queue` from sequence `start` (the cursor + 1); `direct_first`: by
    /// direct gets until a consumer can be created (one could not be a moment ago).
    pub fn spawn(
        env: &ReaderEnv,
        queue: QueueName,
        start: u64,
        generation: u64,
        direct_first: bool,
    ) -> Self {
        let credits = Credits::default();
        let position = Position { next_seq: start.max(1), after: start.saturating_sub(1) };
        let stop = CancellationToken::new();
        let what = format!("queue {queue}");
        let puller = Puller::new(env.clone(), subjects::submissions_of(&queue), what);
        let reader = Reader { puller, queue, generation, credits: credits.permits() };
        let stopped = stop.clone();
        tokio::spawn(async move {
            let mut slot = ConsumerSlot::default();
            tokio::select! {
                () = reader.run(position, &mut slot, direct_first) => {}
                () = stopped.cancelled() => {}
            }
            // A reader that is replaced or no longer needed leaves no consumer behind.
            reader.puller.release(slot);
        });
        QueueReader { credits, generation, stop }
    }

    /// Which reader of its queue this is.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The leader's side of the reader's credits.
    pub fn credits(&mut self) -> &mut Credits {
        &mut self.credits
    }
}

impl Drop for QueueReader {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Where a reader is: the next sequence to read and the last one passed on.
#[derive(Debug, Clone, Copy)]
struct Position {
    next_seq: u64,
    after: u64,
}

/// The reader task's state.
#[derive(Clone)]
struct Reader {
    puller: Puller,
    queue: QueueName,
    generation: u64,
    credits: Arc<Semaphore>,
}

/// Passes one queue's deliveries on, each with the previous one as its `after`.
struct Passing<'a> {
    reader: &'a Reader,
    after: &'a mut u64,
}

impl Take for Passing<'_> {
    fn take(&mut self, stored: Stored<'_>) -> Taken {
        let (seq, subject) = (stored.seq, stored.subject.to_owned());
        let Some(mut delivery) = decode(stored, &self.reader.queue, *self.after, false) else {
            // The filter lets only this queue's submissions through: anything else means the
            // consumer is not what it should be.
            return Taken::Broken(format!("a message on {subject} arrived"));
        };
        delivery.generation = self.reader.generation;
        if self.reader.puller.env.tx.send(delivery).is_err() {
            return Taken::Closed;
        }
        *self.after = seq;
        Taken::Passed
    }
}

impl Reader {
    async fn run(&self, mut position: Position, slot: &mut ConsumerSlot, direct_first: bool) {
        let mut failed_at: Option<Instant> = direct_first.then(Instant::now);
        let mut idle_polls = 0;
        loop {
            let Ok(first) = self.credits.acquire().await else { return };
            first.forget();
            let extra = self.credits.available_permits().min(MAX_PULL - 1);
            if let Ok(more) = self.credits.try_acquire_many(u32::try_from(extra).unwrap_or(0)) {
                more.forget();
            }
            let want = 1 + extra;
            if slot.cursor.is_none() {
                self.puller.await_consumer(slot, position.next_seq, &mut failed_at).await;
            }
            let mut got = 0;
            if let Some(current) = slot.cursor.as_mut() {
                let mut passing = Passing { reader: self, after: &mut position.after };
                let pulled = self
                    .puller
                    .pull(current, want, &mut position.next_seq, &mut got, &mut passing)
                    .await;
                match self.puller.check(current, pulled).await {
                    Ok(()) => {}
                    // A queue reader never asks to restart.
                    Err(Checked::Closed | Checked::Restart) => return,
                    Err(Checked::Broken(why)) => {
                        self.puller.reread(slot, position.next_seq, &why);
                        // A new consumer at once, and direct gets if that fails.
                        failed_at = None;
                    }
                }
            } else {
                let Ok(_permit) = self.puller.env.reading_directly.acquire().await else {
                    return;
                };
                match self.read_directly(want, &mut position, &mut got).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(why) => {
                        tracing::debug!(queue = %self.queue, %why, "reading by direct gets failed; trying again")
                    }
                }
            }
            self.credits.add_permits(want - got);
            // Without a consumer nothing waits on the server for new submissions: poll, less
            // often while nothing comes (each get is a scan of the stream on the server).
            if slot.cursor.is_none() && got == 0 {
                tokio::time::sleep(DIRECT_POLL * (1 << idle_polls)).await;
                idle_polls = (idle_polls + 1).min(DIRECT_POLL_DOUBLINGS);
            } else {
                idle_polls = 0;
            }
        }
    }

    /// Reads up to `want` submissions from the position by one batched direct get and passes
    /// them on: while no consumer can be created (its node died and the JetStream meta leader
    /// that creates consumers is being elected, which takes seconds), any replica of the stream
    /// still answers these. `next_by_subj` returns the queue's submissions in stream order with
    /// none skipped; a replica that lags returns fewer, never a gap. A reply lost in flight
    /// shows as an interruption of the connection, and nothing after it is passed on.
    /// `Ok(false)`: the leader is gone.
    async fn read_directly(
        &self,
        want: usize,
        position: &mut Position,
        got: &mut usize,
    ) -> Result<bool, String> {
        let env = &self.puller.env;
        let client = env.js.client();
        let before = env.interruptions.count();
        let inbox = client.new_inbox();
        let mut replies = client.subscribe(inbox.clone()).await.map_err(|e| e.to_string())?;
        let request = serde_json::json!({
            "seq": position.next_seq,
            "next_by_subj": subjects::submissions_of(&self.queue),
            "batch": want,
            "max_bytes": DIRECT_MAX_BYTES,
        });
        let get = subjects::direct_get(subjects::SUBMIT_STREAM);
        client
            .publish_with_reply(get, inbox, request.to_string().into())
            .await
            .map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + DIRECT_TIMEOUT;
        while let Ok(Some(message)) = tokio::time::timeout_at(deadline, replies.next()).await {
            if env.interruptions.count() != before {
                return Err("connection interrupted".into());
            }
            // The end of the batch (204), nothing from the position on (404), or an error.
            if message.status.is_some() {
                break;
            }
            let Some(stored) = stored_reply(&message) else {
                return Err("a direct get reply without its stream headers".into());
            };
            if stored.seq < position.next_seq {
                return Err(format!("sequence {} came before the position", stored.seq));
            }
            let seq = stored.seq;
            let Some(mut delivery) = decode(stored, &self.queue, position.after, false) else {
                return Err(format!("a message of another queue at {seq}"));
            };
            delivery.generation = self.generation;
            if env.tx.send(delivery).is_err() {
                return Ok(false);
            }
            *got += 1;
            *position = Position { next_seq: seq + 1, after: seq };
            if *got >= want {
                break;
            }
        }
        Ok(true)
    }
}
