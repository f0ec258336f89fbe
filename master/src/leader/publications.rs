//! [`Publications`]: the leader's side of publishing outcomes. It starts a publication when
//! the effect calling for it runs (after its event is journaled), gathers the ones the stream
//! confirmed for the next `Published` record, and retries failed ones a second later.
//!
//! A publication that may already be stored is published with `verify_first` (the publisher
//! reads the subject first): the ones inherited from the previous leader's `unpublished`, and
//! any whose last attempt failed without a clear answer. See `publisher/mod.rs` for the fence.

use jetwork_shared::fast_hash::FastSet;
use std::time::Duration;

use async_nats::jetstream;

use super::cache::PayloadCache;
use super::confirmations::Confirmations;
use crate::core::{Effect, PublicationKey, State};
use crate::publisher::{self, Published, Publisher};

/// Publications in flight, confirmed, and waiting to be retried.
pub struct Publications {
    publisher: Publisher,
    /// Stored (not yet recorded as `Published`), and failed ones to try again.
    confirmations: Confirmations<PublicationKey>,
    /// May already be stored: read the subject before publishing again.
    inherited: FastSet<PublicationKey>,
}

impl Publications {
    /// `timeout`: how long a publication's acknowledgement may take.
    pub fn new(client: async_nats::Client, js: jetstream::Context, timeout: Duration) -> Self {
        Publications {
            publisher: Publisher::new(client, js, timeout),
            confirmations: Confirmations::default(),
            inherited: FastSet::default(),
        }
    }

    /// A new term inherits whatever the previous leader left unpublished.
    pub fn inherit(&mut self, state: &State) {
        self.inherited = state.unpublished.keys().cloned().collect();
    }

    /// Starts publishing `key` (a no-op if it is no longer unpublished, or already on its way).
    pub fn start(&mut self, key: PublicationKey, state: &State, cache: &mut PayloadCache) {
        let Some(publication) = state.unpublished.get(&key).cloned() else { return };
        let payload = cache.for_publication(&publication);
        let verify_first = self.inherited.remove(&key);
        self.publisher.start(key, publication, payload, verify_first);
    }

    /// The next finished publication (pending forever while none is in flight).
    pub async fn next(&mut self) -> (PublicationKey, publisher::Outcome) {
        self.publisher.next().await
    }

    /// Takes note of how a publication ended.
    pub fn done(
        &mut self,
        key: PublicationKey,
        outcome: publisher::Outcome,
        cache: &mut PayloadCache,
    ) {
        match outcome {
            Ok(published) => {
                if let Published::Superseded { stored_run } = published {
                    tracing::warn!(
                        ?key,
                        stored_run,
                        "a newer run's outcome is already stored; not publishing this one"
                    );
                }
                cache.published(&key);
                self.confirmations.confirm(key);
            }
            Err(e) => {
                // Retrying is safe: the subject fence refuses a second copy if this one
                // landed; reading first spares live subscribers the copy.
                tracing::warn!(?key, error = %e, "publication failed; retrying in 1s");
                self.inherited.insert(key.clone());
                self.confirmations.retry_later(key);
            }
        }
    }

    /// How many stored publications wait to be recorded.
    pub fn confirmed(&self) -> usize {
        self.confirmations.confirmed()
    }

    /// The stored publications to record, if any.
    pub fn take_confirmed(&mut self) -> Option<Vec<PublicationKey>> {
        self.confirmations.take_confirmed()
    }

    /// Publications due to be tried again, as effects (they run behind the journal like any).
    pub fn due(&mut self) -> Vec<Effect> {
        self.confirmations.due().into_iter().map(|key| Effect::Publish { key }).collect()
    }

    /// Whether nothing is being published.
    pub fn is_idle(&self) -> bool {
        self.publisher.is_empty()
    }
}
