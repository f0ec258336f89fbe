//! [`LiveResults`]: a core NATS subscriber on every queue's live results
//! (`jetwork.results.<queue>.<work id>`), as any application listening for results would be.
//! It records when each result arrived, so a test can measure how long dispatching paused
//! (the longest gap between consecutive results), and which stored copy it was (the stream
//! sequence the republish carries), so a test can tell two stored outcomes of one job (a
//! broken fence: [`LiveResults::duplicates`]) from one stored outcome the stream republished
//! twice ([`LiveResults::repeats`]: nats-server's republish is not exactly once when a stream
//! leader is paused and comes back).
//!
//! Invariant: every message received is recorded, in arrival order, with the time it was
//! read from the subscription (the receive times are monotonic).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use jetwork_shared::subjects;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// One live result: the work id its subject names, the stream sequence it was stored at
/// (`Nats-Sequence`), and when it arrived.
#[derive(Debug, Clone)]
pub struct Seen {
    pub work_id: String,
    pub stream_seq: Option<u64>,
    pub at: Instant,
}

/// The subscriber (it stops when dropped).
pub struct LiveResults {
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl LiveResults {
    /// Subscribes on `jetwork.results.>` through `client` (which should stay connected
    /// through the faults a test injects: a connection to a node nobody faults).
    pub async fn start(client: &async_nats::Client) -> anyhow::Result<Self> {
        let mut subscription = client.subscribe(subjects::RESULTS_ALL).await?;
        // The subscription is registered with the server before any result is owed.
        client.flush().await?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                let at = Instant::now();
                // `jetwork.results.<queue>.<work id>`: the id is the last token.
                let work_id = message.subject.rsplit('.').next().unwrap_or_default().to_owned();
                let stream_seq = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Sequence"))
                    .and_then(|v| v.as_str().parse().ok());
                let seen = Seen { work_id, stream_seq, at };
                record.lock().unwrap_or_else(PoisonError::into_inner).push(seen);
            }
        });
        Ok(LiveResults { seen, task })
    }

    fn read<T>(&self, f: impl FnOnce(&[Seen]) -> T) -> T {
        f(&self.seen.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Results received so far.
    pub fn count(&self) -> usize {
        self.read(<[Seen]>::len)
    }

    /// Whether a result for one of `ids` arrived after `after`.
    pub fn any_after(&self, after: Instant, ids: impl Fn(&str) -> bool) -> bool {
        self.read(|seen| seen.iter().any(|s| s.at > after && ids(&s.work_id)))
    }

    /// The work ids received as more than one stored copy (different stream sequences, or a
    /// copy without one), with how many copies: each is a second outcome stored for a job.
    pub fn duplicates(&self) -> BTreeMap<String, usize> {
        let mut copies: BTreeMap<String, BTreeSet<Option<u64>>> = BTreeMap::new();
        let mut unnumbered: BTreeMap<String, usize> = BTreeMap::new();
        self.read(|seen| {
            for s in seen {
                copies.entry(s.work_id.clone()).or_default().insert(s.stream_seq);
                if s.stream_seq.is_none() {
                    *unnumbered.entry(s.work_id.clone()).or_default() += 1;
                }
            }
        });
        let mut counts: BTreeMap<String, usize> = copies
            .into_iter()
            .map(|(id, seqs)| {
                let extra = unnumbered.get(&id).map_or(0, |n| n.saturating_sub(1));
                (id, seqs.len() + extra)
            })
            .collect();
        counts.retain(|_, n| *n > 1);
        counts
    }

    /// The work ids whose one stored copy arrived more than once (the same stream sequence),
    /// with how many times.
    pub fn repeats(&self) -> BTreeMap<String, usize> {
        let mut counts: BTreeMap<(String, u64), usize> = BTreeMap::new();
        self.read(|seen| {
            for s in seen {
                if let Some(seq) = s.stream_seq {
                    *counts.entry((s.work_id.clone(), seq)).or_default() += 1;
                }
            }
        });
        counts.into_iter().filter(|(_, n)| *n > 1).map(|((id, _), n)| (id, n)).collect()
    }

    /// The longest time without a result between `from` and `until`: the gaps between
    /// consecutive results, from `from` to the first, and from the last to `until` (a stall
    /// that never ended counts in full).
    pub fn longest_gap(&self, from: Instant, until: Instant) -> Duration {
        self.read(|seen| {
            let mut last = from;
            let mut longest = Duration::ZERO;
            for s in seen.iter().filter(|s| s.at >= from && s.at <= until) {
                longest = longest.max(s.at - last);
                last = s.at;
            }
            longest.max(until.saturating_duration_since(last))
        })
    }

    /// The time from `from` to the first result after it.
    pub fn first_after(&self, from: Instant) -> Option<Duration> {
        self.read(|seen| seen.iter().find(|s| s.at >= from).map(|s| s.at - from))
    }
}

impl Drop for LiveResults {
    fn drop(&mut self) {
        self.task.abort();
    }
}
