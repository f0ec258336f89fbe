//! [`PayloadCache`]: the payloads of work in flight, kept from the moment a submission is read
//! so that a grant needs no stream read, and the payloads of rejected submissions until their
//! rejection notice (which carries the payload) is stored. After a takeover the cache starts
//! empty and grants read payloads back from `JETWORK_SUBMIT` (see `replies.rs`).
//!
//! Each work entry also keeps the item's timings for the metrics (`observe.rs`): when it was
//! stored in the stream and when its attempt started, and the run-time histogram of its queue,
//! so that observing a job costs no allocation and no lookup by queue once it is finished.
//! Entries made after a takeover (payloads read back) carry no submission time; their waits
//! are not observed.
//!
//! Bounded like the state: an entry lives only while its item is in flight (it is dropped
//! when the item's outcome is published) or its rejection is unpublished.

use std::collections::HashMap;

use bytes::Bytes;
use jetwork_shared::{WorkId, WorkerId};

use jetwork_shared::observe::AtomicHistogram;

use crate::core::{Event, Millis, Publication, PublicationKey, State};

/// Payloads by work id (in flight) and by submit sequence (rejected).
#[derive(Default)]
pub struct PayloadCache {
    work: HashMap<WorkId, Cached>,
    rejected: HashMap<u64, Bytes>,
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
                Event::SubmissionRejected { seq, queue, reason, .. } => {
                    tracing::warn!(%queue, seq, %reason, "submission rejected");
                    self.rejected.insert(*seq, payload.clone());
                }
                _ => {}
            }
        }
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
