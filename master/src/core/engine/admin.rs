//! What operators may do to work the master holds: cancel an item (ready, waiting out a
//! back-off, or running) and pause or resume a queue.
//!
//! - A cancelled item is finished like a completed or failed one: it leaves the state, its
//!   outcome (`cancelled`, with the operator's reason) is published, and every later report
//!   about it is answered `finished`, so a worker that goes on running it can change nothing.
//!   A running attempt's worker is told to stop (`Effect::Revoke`), a hint it may miss.
//! - An item the master does not hold (finished, or still unread in its queue's backlog) is
//!   refused with 404 and nothing is recorded.
//! - Pausing stops hand-outs from the queue, nothing else: submissions are still stored,
//!   acknowledged and read ahead, running attempts run on, and the queue keeps its place.
//!   Pausing a paused queue (or resuming a running one) records nothing and says so.

use jetwork_shared::{headers, QueueName, WorkId};

use super::super::{Effect, Event, Millis, Reply, RequestId};
use super::{Engine, MAX_REASON};

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
