//! [`PayloadCache`]: the payloads of work in flight, kept from the moment a submission is read
//! so that a grant needs no stream read, and the payloads of rejected submissions until their
//! rejection notice (which carries the payload) is stored. After a takeover the cache starts
//! empty and grants read payloads back from `JETWORK_SUBMIT` (see `replies.rs`).
//!
//! Bounded like the state: an entry lives only while its item is in flight (it is dropped
//! when the item's outcome is published) or its rejection is unpublished.

use std::collections::HashMap;

use bytes::Bytes;
use jetwork_shared::WorkId;

use crate::core::{Event, Publication, PublicationKey, State};

/// Payloads by work id (in flight) and by submit sequence (rejected).
#[derive(Default)]
pub struct PayloadCache {
    work: HashMap<WorkId, Bytes>,
    rejected: HashMap<u64, Bytes>,
}

impl PayloadCache {
    /// Keeps `payload` for what the engine decided about its submission.
    pub fn keep(&mut self, events: &[Event], payload: &Bytes) {
        for event in events {
            match event {
                Event::WorkAccepted { work_id, .. } => {
                    self.work.insert(work_id.clone(), payload.clone());
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
        self.work.get(work_id)
    }

    /// Keeps payloads read back from the stream, for items still in flight.
    pub fn fill(&mut self, payloads: Vec<(WorkId, Bytes)>, state: &State) {
        for (work_id, payload) in payloads {
            if state.work.contains_key(&work_id) {
                self.work.insert(work_id, payload);
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
                self.work.remove(work_id)
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
