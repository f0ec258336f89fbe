//! [`StreamReader`]: one unfiltered consumer on `JETWORK_SUBMIT` that reads the submissions of
//! many queues in stream order, for the queues the leader has *joined* to it.
//!
//! **Why.** A consumer filtered to one queue finds its next message by walking the stream from
//! where it stopped, over every other queue's messages in between: with a thousand queues
//! interleaved, about a thousand messages walked per delivery, and a thousand consumers. One
//! consumer that takes every message as it comes walks nothing, and the server keeps one
//! consumer for all of them.
//!
//! **Which queues.** The leader asks for each served queue to be joined (`join`, with the
//! queue's cursor and credits). A joined queue's submissions are passed on while its credits
//! last; the first that finds none *spills* the queue ([`Notice::Spilled`]) and the leader
//! reads it with a [`QueueReader`](super::QueueReader) from its cursor: a backlog stays in the
//! stream, not in this process. Every other message is left: queues nobody serves, queues with
//! readers of their own. With no queue joined the reader stops and drops its consumer (so a
//! lone queue with a backlog is not read twice).
//!
//! **Never past a submission.** A joined queue's deliveries carry `after` like a queue
//! reader's, and the engine moves the cursor only along that chain; what this reader must
//! guarantee is that it never claims "nothing of this queue between `after` and this one"
//! falsely. It reads every message from its position `next_seq` on, in order, checked like any
//! reader's ([`Puller`]); so of a joined queue it passes on every submission after `after`, or
//! spills at the first it cannot pass on. A queue joins at its cursor only once nothing of it
//! lies between the cursor and the position. For each followed queue the reader keeps
//! `since` (it has seen every submission of the queue from there on) and `last_seen` (the last
//! one it saw), so it knows that when `since ≤ cursor + 1` and `last_seen ≤ cursor`.
//! Otherwise it *rewinds*: it reads again from `cursor + 1` with a new consumer, if that is at
//! most [`MAX_REWIND`] messages back (further, the join is refused with [`Notice::Refused`] and
//! the queue keeps a reader of its own). Rewinding passes nothing on twice: a joined queue's
//! messages up to its `after` are skipped.
//!
//! A consumer that breaks is replaced at the position: nothing from it on is lost, and what was
//! passed on before stands. While it has no consumer (creating one waits for a JetStream meta
//! leader election), every joined queue spills, so their own readers read them by direct gets
//! meanwhile.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jetwork_shared::{subjects, QueueName};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use super::consumer::{Checked, ConsumerSlot, Puller, Take, Taken};
use super::queue_reader::MAX_PULL;
use super::{decode, ReaderEnv, Stored};

/// What the logs call the stream reader; its consumers' description is `jetwork master:
/// submission reader of all queues` (they have no filter: see [`Puller::unshared`]).
const STREAM_READER: &str = "all queues";
/// How long the stream reader waits for the stream to say where it ends.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// How far back the stream reader reads again for a queue to join (in messages): a few
/// seconds of submissions at most, so a queue with a longer backlog keeps its own reader and
/// the backlog is not read twice.
pub const MAX_REWIND: u64 = 65_536;

/// What the stream reader tells the leader about a joined queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The queue had no credits for its next submission: it is no longer read here.
    Spilled { queue: QueueName, generation: u64 },
    /// The queue could not join at the cursor it was asked to join at.
    Refused { queue: QueueName, generation: u64 },
    /// The stream reader has no consumer (none could be created within a second): the queue
    /// is no longer read here, and a reader of its own had better not wait for one either.
    Unavailable { queue: QueueName, generation: u64 },
}

/// What the leader asks of the stream reader.
enum Control {
    Join {
        queue: QueueName,
        cursor: u64,
        generation: u64,
        credits: Arc<Semaphore>,
    },
    /// No longer read the queue for the leader (it may be followed still).
    Leave(QueueName),
    /// Forget the queue.
    Unfollow(QueueName),
}

/// The leader's handle on its stream reader; dropping it stops the reader.
pub struct StreamReader {
    control: mpsc::UnboundedSender<Control>,
    stop: CancellationToken,
}

impl StreamReader {
    /// Starts the reader (stopped until a queue joins); it passes submissions to `env.tx`
    /// and tells `notices` of spills and refusals.
    pub fn spawn(env: &ReaderEnv, notices: mpsc::UnboundedSender<Notice>) -> Self {
        let (control, controls) = mpsc::unbounded_channel();
        let puller = Puller::unshared(env.clone(), STREAM_READER.into());
        let mut task = Task {
            puller,
            controls,
            notices,
            followed: HashMap::new(),
            next_seq: None,
            rewound: false,
        };
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            let mut slot = ConsumerSlot::default();
            tokio::select! {
                () = task.run(&mut slot) => {}
                () = stopped.cancelled() => {}
            }
            task.puller.release(slot);
        });
        StreamReader { control, stop }
    }

    /// Asks for `queue` to be read here from its `cursor` on, as reader `generation`, with
    /// the leader's `credits`.
    pub fn join(&self, queue: &QueueName, cursor: u64, generation: u64, credits: Arc<Semaphore>) {
        let queue = queue.clone();
        let _ = self.control.send(Control::Join { queue, cursor, generation, credits });
    }

    /// No longer reads `queue` for the leader.
    pub fn leave(&self, queue: &QueueName) {
        let _ = self.control.send(Control::Leave(queue.clone()));
    }

    /// Forgets `queue` (nobody serves it).
    pub fn unfollow(&self, queue: &QueueName) {
        let _ = self.control.send(Control::Unfollow(queue.clone()));
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A followed queue: one that joined since the reader started.
struct Followed {
    queue: QueueName,
    /// The reader has seen every submission of the queue from here on.
    since: u64,
    /// The last submission of the queue it saw (0: none).
    last_seen: u64,
    joined: Option<Joined>,
}

/// A queue read here: `after` is the last submission passed on (or the cursor it joined at).
struct Joined {
    after: u64,
    generation: u64,
    credits: Arc<Semaphore>,
}

/// The reader task.
struct Task {
    puller: Puller,
    controls: mpsc::UnboundedReceiver<Control>,
    notices: mpsc::UnboundedSender<Notice>,
    followed: HashMap<String, Followed>,
    /// The next sequence to read; `None` while stopped.
    next_seq: Option<u64>,
    /// The position moved back during the current pull: its consumer must go.
    rewound: bool,
}

impl Task {
    async fn run(&mut self, slot: &mut ConsumerSlot) {
        let mut failed_at: Option<Instant> = None;
        loop {
            let Some(next_seq) = self.next_seq else {
                self.puller.release(std::mem::take(slot));
                // Stopped: wait for a join, which starts the reader; the requests that came with
                // it are handled at once (a thousand queues joining after a takeover are then
                // one start, one rewind and one consumer, or all refused together).
                if !self.attend().await {
                    return;
                }
                while let Ok(control) = self.controls.try_recv() {
                    if self.next_seq.is_some() {
                        self.handle(control);
                    } else if let Control::Join { queue, generation, .. } = control {
                        self.refuse(queue, generation, "the stream reader cannot start");
                    }
                }
                if !self.followed.values().any(|f| f.joined.is_some()) {
                    self.stop();
                }
                failed_at = None;
                continue;
            };
            if slot.cursor.is_none() {
                self.puller.await_consumer(slot, next_seq, &mut failed_at).await;
            }
            let Some(current) = slot.cursor.as_mut() else {
                // No consumer for now: the joined queues are read by readers of their own
                // meanwhile (they have other ways to read), and the reader stops.
                self.spill_all();
                self.stop();
                continue;
            };
            // `take` moves `self.next_seq` along every message it handles.
            let (puller, mut position, mut got) = (self.puller.clone(), next_seq, 0);
            self.rewound = false;
            let pulled = puller.pull(current, MAX_PULL, &mut position, &mut got, self).await;
            match puller.check(current, pulled).await {
                Ok(()) => {}
                Err(Checked::Closed) => return,
                Err(Checked::Restart) => puller.discard(slot),
                Err(Checked::Broken(why)) => {
                    puller.reread(slot, self.next_seq.unwrap_or(position), &why);
                    failed_at = None;
                }
            }
            // A rewind may also have come with the pull's last message or its end.
            if std::mem::take(&mut self.rewound) {
                puller.discard(slot);
            }
            if !self.followed.values().any(|f| f.joined.is_some()) {
                tracing::debug!("no queue is read by the stream reader; it stops");
                self.stop();
            }
        }
    }

    /// Handles one request of the leader; `false` once the leader is gone. No await point
    /// once it has one (`start` awaits only while the reader is stopped, never during a pull),
    /// so a delivery ending the wait loses nothing.
    async fn attend(&mut self) -> bool {
        let Some(control) = self.controls.recv().await else { return false };
        if let Control::Join { queue, generation, .. } = &control {
            if self.next_seq.is_none() && !self.start().await {
                self.refuse(queue.clone(), *generation, "the stream reader cannot start");
                return true;
            }
        }
        self.handle(control);
        true
    }

    /// Handles a request of the leader while the reader runs (a join while it is stopped is
    /// ignored: `attend` starts it first).
    fn handle(&mut self, control: Control) {
        match control {
            Control::Unfollow(queue) => {
                self.followed.remove(queue.as_str());
            }
            Control::Leave(queue) => {
                if let Some(f) = self.followed.get_mut(queue.as_str()) {
                    f.joined = None;
                }
            }
            Control::Join { queue, cursor, generation, credits } => {
                self.join(queue, Joined { after: cursor, generation, credits });
            }
        }
    }

    /// Starts reading at the end of the stream. `false` if the stream did not say where it
    /// ends.
    async fn start(&mut self) -> bool {
        let js = self.puller.env.js.clone();
        let info = async {
            let stream = js.get_stream(subjects::SUBMIT_STREAM).await?;
            Ok::<_, async_nats::jetstream::context::GetStreamError>(
                stream.cached_info().state.last_sequence,
            )
        };
        match tokio::time::timeout(ASK_TIMEOUT, info).await {
            Ok(Ok(last)) => {
                let next_seq = last + 1;
                self.next_seq = Some(next_seq);
                tracing::debug!(next_seq, "the stream reader starts");
                true
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot ask where the submit stream ends; queues keep their own readers");
                false
            }
            Err(_) => {
                tracing::warn!("the submit stream did not say where it ends within 2s; queues keep their own readers");
                false
            }
        }
    }

    /// Stops reading: the followed queues are forgotten (the next start follows afresh).
    fn stop(&mut self) {
        self.next_seq = None;
        self.followed.clear();
    }

    /// Reads `queue` from `joined.after` on: at once if nothing of it lies between that and
    /// the position, after rewinding to it if that is not too far back.
    fn join(&mut self, queue: QueueName, joined: Joined) {
        let Some(next_seq) = self.next_seq else { return };
        let (cursor, generation) = (joined.after, joined.generation);
        let f = self.followed.entry(queue.as_str().to_owned()).or_insert(Followed {
            queue: queue.clone(),
            since: next_seq,
            last_seen: 0,
            joined: None,
        });
        if f.since <= cursor + 1 && f.last_seen <= cursor {
            f.joined = Some(joined);
            return;
        }
        if next_seq.saturating_sub(cursor + 1) > MAX_REWIND {
            f.joined = None;
            let why = format!("its cursor {cursor} is over {MAX_REWIND} messages behind the stream reader at {next_seq}");
            self.refuse(queue, generation, &why);
            return;
        }
        f.joined = Some(joined);
        self.rewind(cursor + 1);
    }

    /// Reads again from `to`: every followed queue is then seen from there on.
    fn rewind(&mut self, to: u64) {
        tracing::debug!(
            to,
            "the stream reader reads again from an earlier position for a queue to join"
        );
        self.next_seq = Some(to);
        self.rewound = true;
        for f in self.followed.values_mut() {
            f.since = f.since.min(to);
        }
    }

    fn refuse(&mut self, queue: QueueName, generation: u64, why: &str) {
        tracing::debug!(%queue, %why, "a queue cannot join the stream reader; it keeps a reader of its own");
        let _ = self.notices.send(Notice::Refused { queue, generation });
    }

    /// Every joined queue goes back to a reader of its own (the reader has no consumer).
    fn spill_all(&mut self) {
        for f in self.followed.values_mut() {
            if let Some(joined) = f.joined.take() {
                let (queue, generation) = (f.queue.clone(), joined.generation);
                let _ = self.notices.send(Notice::Unavailable { queue, generation });
            }
        }
    }

    /// Passes a joined queue's message on, spills a joined queue without credits, and notes
    /// every followed queue's message.
    fn route(&mut self, stored: Stored<'_>) -> Taken {
        let seq = stored.seq;
        let Some((name, _)) = subjects::queue_of_submission(stored.subject) else {
            return Taken::Passed; // The stream holds only submissions; nothing to pass on.
        };
        let Some(f) = self.followed.get_mut(name) else { return Taken::Passed };
        f.last_seen = f.last_seen.max(seq);
        let Some(joined) = f.joined.as_mut() else { return Taken::Passed };
        if seq <= joined.after {
            return Taken::Passed; // Read again after a rewind: passed on already.
        }
        let Ok(permit) = joined.credits.clone().try_acquire_owned() else {
            let notice = Notice::Spilled { queue: f.queue.clone(), generation: joined.generation };
            tracing::debug!(queue = %f.queue, seq, "a queue's read-ahead is full; it gets a reader of its own");
            f.joined = None;
            let _ = self.notices.send(notice);
            return Taken::Passed;
        };
        permit.forget();
        let Some(mut delivery) = decode(stored, &f.queue, joined.after, false) else {
            return Taken::Broken(format!("a message of another queue at {seq}"));
        };
        delivery.generation = joined.generation;
        if self.puller.env.tx.send(delivery).is_err() {
            return Taken::Closed;
        }
        joined.after = seq;
        Taken::Passed
    }
}

impl Take for Task {
    fn take(&mut self, stored: Stored<'_>) -> Taken {
        // Requests first, at the position before this message: joins that came together
        // (a thousand queues served at once) are followed from one position, and rewind once.
        while let Ok(control) = self.controls.try_recv() {
            self.handle(control);
        }
        if self.rewound {
            return Taken::Restart;
        }
        let seq = stored.seq;
        let taken = self.route(stored);
        if matches!(taken, Taken::Passed) {
            // Kept here, not only in the pull: a queue that joins in the middle of a pull is
            // followed from the message after this one.
            self.next_seq = Some(seq + 1);
        }
        taken
    }

    async fn meanwhile(&mut self) -> bool {
        if !self.attend().await {
            return std::future::pending().await;
        }
        self.rewound
    }
}
