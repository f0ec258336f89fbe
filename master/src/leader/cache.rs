//! [`PayloadCache`]: the payloads of work in flight, kept from the moment a submission is read
//! so that a grant needs no stream read, and the payloads of rejected submissions until their
//! rejection notice (which carries the payload) is stored. After a takeover the cache starts
//! empty; payloads are read back from `JETWORK_SUBMIT` ahead of their hand-out
//! (`prefetch.rs`), and a grant reads whatever is still missing itself (`replies.rs`).
//!
//! Each work entry also keeps the item's timings for the metrics (`observe.rs`): when it was
//! stored in the stream and when its attempt started, and the run-time histogram of its queue,
//! so that observing a job costs no allocation and no lookup by queue once it is finished.
//! Entries made after a takeover (payloads read back) carry no submission time; their waits
//! are not observed.
//!
//! Bounded like the state: an entry lives only while its item is in flight (it is dropped
//! when the item's outcome is published, or when it is put back to wait out a back-off) or
//! its rejection is unpublished. A delayed or backing-off item's payload is kept only from
//! shortly before it is due (read ahead by `prefetch.rs`, which
//! bounds how many such payloads of items not yet started are kept).

use jetwork_shared::fast_hash::FastMap;

use bytes::Bytes;
use jetwork_shared::{WorkId, WorkerId};

use jetwork_shared::observe::AtomicHistogram;

use crate::core::{Event, Millis, Publication, PublicationKey, State};

/// Payloads by work id (in flight) and by submit sequence (rejected).
#[derive(Default)]
pub struct PayloadCache {
    work: FastMap<WorkId, Cached>,
    rejected: FastMap<u64, Bytes>,
}

/// One item in flight.
struct Cached {
    payload: Bytes,
    /// When the submission was stored (server time), 0 if unknown.
    submitted: Millis,
    /// Its latest attempt's start.
    started: Option<Started>,
}

/// When an item's latest attempt started, and what its end is reported with.
pub struct Started {
    pub at: Millis,
    /// Where its run time goes (metrics on).
    pub run: Option<AtomicHistogram>,
    /// Who runs it (kept only while debug logging is on, for the lines about its end).
    pub worker: Option<WorkerId>,
}

impl Cached {
    fn new(payload: Bytes, submitted: Millis) -> Self {
        Cached { payload, submitted, started: None }
    }
}

impl PayloadCache {
    /// Keeps `payload` (stored at `submitted`) for what the engine decided about its
    /// submission.
    pub fn keep(&mut self, events: &[Event], payload: &Bytes, submitted: Millis) {
        for event in events {
            match event {
                // A delayed item's payload is read back when it is handed out: a backlog of
                // delayed jobs would otherwise hold every payload (and the read buffers they
                // share) in memory until its time.
                Event::WorkAccepted { options, at, .. } if options.not_before > *at => {}
                Event::WorkAccepted { work_id, .. } => {
                    self.work.insert(work_id.clone(), Cached::new(payload.clone(), submitted));
                }
                // Logged by `outcome_log.rs`.
                Event::SubmissionRejected { seq, .. } => {
                    self.rejected.insert(*seq, payload.clone());
                }
                _ => {}
            }
        }
    }

    /// Follows a step's events: an item put back to wait out a back-off lets its payload go
    /// (read back ahead of its next hand-out, like a delayed item's), so payloads kept never
    /// outnumber the items ready, running or read ahead, however many wait.
    pub fn events(&mut self, events: &[Event]) {
        for event in events {
            if let Event::WorkRequeued { work_id, not_before, at, .. } = event {
                if not_before > at {
                    self.work.remove(work_id);
                }
            }
        }
    }

    /// Whether the payload of `work_id` is kept.
    pub fn contains(&self, work_id: &WorkId) -> bool {
        self.work.contains_key(work_id)
    }

    /// The payload of `work_id`, if kept.
    pub fn get(&self, work_id: &WorkId) -> Option<&Bytes> {
        self.work.get(work_id).map(|c| &c.payload)
    }

    /// An attempt of `work_id` started. Returns when the item was stored, if known and this is
    /// its first start seen here.
    pub fn started(&mut self, work_id: &WorkId, started: Started) -> Option<Millis> {
        let cached = self.work.get_mut(work_id)?;
        let first = cached.started.is_none();
        cached.started = Some(started);
        (first && cached.submitted > 0).then_some(cached.submitted)
    }

    /// The start of the running attempt of `work_id`, if seen.
    pub fn start_of(&self, work_id: &WorkId) -> Option<&Started> {
        self.work.get(work_id)?.started.as_ref()
    }

    /// When `work_id` was stored, if known.
    pub fn submitted(&self, work_id: &WorkId) -> Option<Millis> {
        self.work.get(work_id).map(|c| c.submitted).filter(|t| *t > 0)
    }

    /// Keeps payloads read back from the stream, for items still in flight.
    pub fn fill(&mut self, payloads: Vec<(WorkId, Bytes)>, state: &State) {
        for (work_id, payload) in payloads {
            if state.work.contains_key(&work_id) {
                self.work.insert(work_id, Cached::new(payload, 0));
            }
        }
    }

    /// Keeps payloads read ahead of their hand-out (`prefetch.rs`, which bounds them), each
    /// with the submit sequence it was read from, for the items of those submissions still
    /// waiting or ready and not kept already; returns those kept.
    pub fn prefetched(
        &mut self,
        payloads: Vec<(WorkId, u64, Bytes)>,
        state: &State,
    ) -> Vec<WorkId> {
        let mut kept = Vec::new();
        for (work_id, seq, payload) in payloads {
            // Its own submission's (not an earlier run's of the same id), and not started.
            let pending =
                state.work.get(&work_id).is_some_and(|w| w.seq == seq && w.running.is_none());
            if pending && !self.work.contains_key(&work_id) {
                self.work.insert(work_id.clone(), Cached::new(payload, 0));
                kept.push(work_id);
            }
        }
        kept
    }

    /// What a publication needs from the cache: the submission's payload (if kept) for a
    /// rejection, a failure or a cancellation, which go out with it. A finished item's payload
    /// leaves the cache either way.
    pub fn for_publication(&mut self, publication: &Publication) -> Option<Bytes> {
        match publication {
            Publication::Rejected { seq, .. } => self.rejected.get(seq).cloned(),
            Publication::Completed { work_id, .. } => {
                self.work.remove(work_id);
                None
            }
            Publication::Failed { work_id, .. } | Publication::Cancelled { work_id, .. } => {
                self.work.remove(work_id).map(|c| c.payload)
            }
        }
    }

    /// A publication is stored: a rejection's payload is no longer needed.
    pub fn published(&mut self, key: &PublicationKey) {
        if let PublicationKey::Rejection(seq) = key {
            self.rejected.remove(seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use jetwork_shared::job_options::JobOptions;
    use jetwork_shared::{QueueName, Token};

    use super::*;

    fn accepted(seq: u64, not_before: Millis) -> Event {
        Event::WorkAccepted {
            work_id: WorkId::assigned(seq),
            queue: QueueName::parse("q").unwrap(),
            seq,
            size: 3,
            at: 1_000,
            prior_attempts: 0,
            options: JobOptions { not_before, ..JobOptions::default() },
            jumped: false,
        }
    }

    #[test]
    fn a_delayed_payload_is_kept_only_once_read_ahead_and_only_while_pending() {
        let mut state = State::default();
        let mut cache = PayloadCache::default();
        let (now, delayed, running) = (accepted(1, 0), accepted(2, 9_000), accepted(3, 9_000));
        for event in [&now, &delayed, &running] {
            state.apply(event);
            cache.keep(std::slice::from_ref(event), &Bytes::from_static(b"abc"), 1_000);
        }
        let id = WorkId::assigned;
        assert!(cache.contains(&id(1)) && !cache.contains(&id(2)), "not while it waits");
        state.apply(&Event::WorkDue { work_ids: vec![id(3)] });
        state.apply(&Event::WorkStarted {
            work_id: id(3),
            worker: WorkerId::parse("w").unwrap(),
            attempt: 1,
            deadline: 60_000,
            token: Token::default(),
            at: 1_000,
        });
        let read: Vec<(WorkId, u64, Bytes)> =
            [1, 2, 3, 4].into_iter().map(|n| (id(n), n, Bytes::from_static(b"new"))).collect();
        // 1 is kept already, 3 is running (its grant reads it), 4 is not in flight.
        assert_eq!(cache.prefetched(read, &state), vec![id(2)]);
        // 2 read from another submission (an earlier run of the id): not its payload.
        let mut other = PayloadCache::default();
        assert!(other.prefetched(vec![(id(2), 7, Bytes::new())], &state).is_empty());
        assert_eq!(cache.get(&id(2)), Some(&Bytes::from_static(b"new")));
        assert_eq!(cache.get(&id(1)), Some(&Bytes::from_static(b"abc")));
        assert!(state.work[&id(3)].running.is_some() && !cache.contains(&id(3)));
    }

    #[test]
    fn a_payload_leaves_the_cache_while_its_item_backs_off() {
        let mut cache = PayloadCache::default();
        let payload = Bytes::from_static(b"abc");
        cache.keep(&[accepted(1, 0), accepted(2, 0)], &payload, 1_000);
        let requeued = |n, not_before| Event::WorkRequeued {
            work_id: WorkId::assigned(n),
            attempt: 1,
            reason: "flaky".to_owned(),
            not_before,
            at: 2_000,
        };
        cache.events(&[requeued(1, 3_000), requeued(2, 2_000)]);
        assert!(!cache.contains(&WorkId::assigned(1)), "backing off: read back when due");
        assert!(cache.contains(&WorkId::assigned(2)), "ready again at once: kept");
    }
}
