//! What operators may do to work the master holds: cancel an item (ready, waiting out a
//! back-off, or running) and pause or resume a queue.
//!
//! - A cancelled item is finished like a completed or failed one: it leaves the state, its
//!   outcome (`cancelled`, with the operator's reason) is published, and every later report
//!   about it is answered `finished`, so a worker that goes on running it can change nothing.
//!   A running attempt's worker is told to stop (`Effect::Revoke`), a hint it may miss.
//! - An item the master does not hold (finished, or still unread in its queue's backlog) is
//!   refused with 404 and nothing is recorded.
//! - Purging a queue cancels its pending work: the items held ready or waiting (as cancel
//!   does, reason "purged"), and every submission of the queue stored at or before the
//!   sequence the runtime names (`through_seq`, its last stored one) that is still unread:
//!   `QueuePurged` records the sequence, and intake finishes each such submission as
//!   `cancelled` when it is read (the runtime reads on through them with or without workers).
//!   The decision is journaled, so a takeover continues it exactly. Running attempts are left
//!   to finish: they are work under way, not pending (cancel them one by one if need be).
//!   Later submissions run as usual.
//! - Pausing stops hand-outs from the queue, nothing else: submissions are still stored,
//!   acknowledged and read ahead, running attempts run on, and the queue keeps its place.
//!   Pausing a paused queue (or resuming a running one) records nothing and says so.

use jetwork_shared::jobs::PurgeReply;
use jetwork_shared::{headers, QueueName, WorkId};

use super::super::{Effect, Event, Millis, Reply, RequestId};
use super::{Engine, MAX_REASON};

/// The reason a purged job is finished with.
pub(super) const PURGED: &str = "cancelled: purged by an operator";

impl Engine {
    pub(super) fn cancel(
        &mut self,
        request: RequestId,
        work_id: WorkId,
        reason: Option<String>,
        now: Millis,
    ) {
        let Some(work) = self.state.work.get(&work_id) else {
            let message = format!(
                "work id {work_id} is not in flight: it has finished, or it has not been read \
                 from its queue yet"
            );
            return self.error(request, 404, message);
        };
        let was = match (&work.running, work.waiting_until) {
            (Some(running), _) => {
                let (worker, attempt) = (running.worker.clone(), work.attempt);
                self.out.effects.push(Effect::Revoke {
                    worker: worker.clone(),
                    work_id: work_id.clone(),
                    attempt,
                });
                format!("was running attempt {attempt} on worker {worker}")
            }
            (None, Some(until)) => format!("was waiting (back-off or delay) until {until}"),
            (None, None) => "was ready".to_owned(),
        };
        let reason = match reason {
            Some(why) => format!("cancelled: {}", headers::sanitize(&why, MAX_REASON)),
            None => "cancelled by an operator".to_owned(),
        };
        let message = format!("cancelled {work_id} (it {was})");
        self.emit(Event::WorkCancelled { work_id, reason, at: now });
        self.reply(request, Reply::Done { message });
    }

    pub(super) fn purge(
        &mut self,
        request: RequestId,
        queue: QueueName,
        through_seq: u64,
        unread: u64,
        now: Millis,
    ) {
        let (held, running): (Vec<_>, Vec<_>) = self
            .state
            .work
            .iter()
            .filter(|(_, w)| w.queue == queue)
            .partition(|(_, w)| w.running.is_none());
        let held: Vec<WorkId> = held.into_iter().map(|(id, _)| id.clone()).collect();
        let running = running.len() as u64;
        let cancelled = held.len() as u64;
        for work_id in held {
            self.emit(Event::WorkCancelled { work_id, reason: PURGED.to_owned(), at: now });
        }
        let (cursor, purged) =
            self.state.queues.get(&queue).map_or((0, 0), |q| (q.cursor, q.purged_through));
        // Nothing past what was read or purged already: recording it would change nothing.
        let backlog = match through_seq > cursor.max(purged) {
            true => {
                self.emit(Event::QueuePurged { queue: queue.clone(), through_seq, at: now });
                unread
            }
            false => 0,
        };
        let through_seq = through_seq.max(purged);
        let message = format!(
            "queue {queue} purged through submission {through_seq}: {cancelled} held jobs \
             cancelled, {backlog} unread submissions will be stored as cancelled as they are \
             read, {running} running attempts left to finish"
        );
        let reply = PurgeReply { message, cancelled, backlog, through_seq, running };
        self.reply(request, Reply::Purged(reply));
    }

    pub(super) fn pause(
        &mut self,
        request: RequestId,
        queue: QueueName,
        paused: bool,
        now: Millis,
    ) {
        let current = self.state.queues.get(&queue).is_some_and(|q| q.paused);
        let verb = if paused { "paused" } else { "resumed" };
        if current == paused {
            let message = format!("queue {queue} was already {verb}; nothing changed");
            return self.reply(request, Reply::Done { message });
        }
        let message = format!("queue {queue} {verb}");
        let event = if paused {
            Event::QueuePaused { queue, at: now }
        } else {
            Event::QueueResumed { queue, at: now }
        };
        self.emit(event);
        self.reply(request, Reply::Done { message });
    }
}
