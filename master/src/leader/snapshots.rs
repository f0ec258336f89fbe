//! [`Snapshots`]: when the leader writes a snapshot, the one being encoded off its loop, and
//! how far the journal may be purged.
//!
//! Invariants:
//! - a snapshot is the state after every event issued before its first part: the state is
//!   copied on the loop right after a write, and no event is written from then until its
//!   parts are (`writes.rs` holds new decisions back meanwhile, as it does for group commit);
//! - the copy is encoded off the loop (`spawn_blocking`), so the loop goes on taking requests,
//!   submissions and acknowledgements while a large state is encoded; it is held only for the
//!   copy and for issuing the parts;
//! - the journal stays bounded under any load: besides every `snapshot_every` events (spaced
//!   by the state's size, so their cost per event stays constant) and every
//!   `snapshot_interval` (with the same spacing), a snapshot is due once this leader has
//!   written [`GROWTH_DIVISOR`]⁻¹ of `streams.journal_max_bytes` since the last one, whatever
//!   the spacing; history before the latest snapshot known stored may then be purged
//!   (`housekeeping::purge_journal`, which lets retention yield near the cap);
//! - history before a snapshot may go only once its marker is acknowledged
//!   ([`Snapshots::confirmed`]).

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::config::MasterSettings;
use crate::core::State;
use crate::journal::{EncodedSnapshot, JournalError};

/// Items in flight from which a snapshot waits for at least [`SNAPSHOT_EVENTS_PER_ITEM`]
/// events per item, if `snapshot_every` is fewer.
const LARGE_STATE: u64 = 10_000;
const SNAPSHOT_EVENTS_PER_ITEM: u64 = 2;
/// A snapshot is due once the journal has grown by this fraction (1/n) of its cap.
pub const GROWTH_DIVISOR: u64 = 4;

/// A snapshot being encoded off the loop.
struct Encoding {
    task: JoinHandle<(Result<EncodedSnapshot, JournalError>, Duration)>,
    /// How long copying the state held the loop.
    copied: Duration,
}

/// The figures of one snapshot, for the log.
#[derive(Debug, Clone, Copy)]
pub struct Encoded {
    /// How long copying the state held the loop.
    pub copied: Duration,
    /// How long encoding the copy took, off the loop.
    pub encoded: Duration,
}

/// When to write a snapshot, and how far the journal may be purged.
pub struct Snapshots {
    /// Events written since the last snapshot.
    events_since: u64,
    last: Instant,
    /// Write one at the next flush, events or not (history was purged by someone else).
    due: bool,
    /// What this leader had written to the journal (bytes) when the last snapshot's parts
    /// were issued: the journal's growth since is measured from there.
    bytes_at_last: u64,
    /// First sequence of the newest snapshot known to be stored (replay's start when this
    /// term has written none), or the journal's start past it when someone else purged:
    /// history below it found gone means someone else purged it.
    floor: u64,
    /// First sequence of the newest snapshot known to be stored: history before it may go.
    purge_floor: u64,
    encoding: Option<Encoding>,
    /// Its parts are issued and its marker not yet acknowledged.
    unconfirmed: bool,
}

impl Snapshots {
    /// After a replay of `events` events from `from_seq`.
    pub fn new(events: u64, from_seq: u64) -> Self {
        Snapshots {
            events_since: events,
            last: Instant::now(),
            due: false,
            bytes_at_last: 0,
            floor: from_seq,
            purge_floor: from_seq,
            encoding: None,
            unconfirmed: false,
        }
    }

    /// `n` more events were written.
    pub fn written(&mut self, n: usize) {
        self.events_since += n as u64;
    }

    /// Whether one is wanted now (and none is being encoded), with `held` items in flight and
    /// `written_bytes` written to the journal by this leader so far.
    ///
    /// A snapshot is the whole state, so a large state waits for proportionally more events
    /// (by count or by time): writing snapshots then costs at most a constant per event
    /// however large the state, and replay still reads at most about twice the state's items
    /// in events after one. The journal's growth is the exception: past a quarter of its cap
    /// a snapshot is written whatever the spacing, so that history before it can go.
    pub fn should_write(&self, settings: &MasterSettings, held: usize, written_bytes: u64) -> bool {
        if self.encoding.is_some() {
            return false;
        }
        let spacing =
            if held as u64 >= LARGE_STATE { SNAPSHOT_EVENTS_PER_ITEM * held as u64 } else { 0 };
        let master = &settings.master;
        let cap = settings.streams.journal_max_bytes;
        let grown = written_bytes.saturating_sub(self.bytes_at_last);
        self.due
            || (cap > 0 && grown >= cap as u64 / GROWTH_DIVISOR)
            || self.events_since >= master.snapshot_every.max(spacing)
            || (self.events_since > 0
                && self.events_since >= spacing
                && self.last.elapsed() >= master.snapshot_interval)
    }

    /// Starts a snapshot of `state` (the state after every event issued): copies it, here, and
    /// encodes the copy into parts of `part_size` off the loop ([`Snapshots::encoded`]).
    pub fn start(&mut self, state: &State, part_size: usize) {
        let started = Instant::now();
        let copy = state.clone();
        let copied = started.elapsed();
        let task = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let encoded = EncodedSnapshot::encode(&copy, part_size);
            // The copy is dropped here too, off the loop.
            drop(copy);
            (encoded, started.elapsed())
        });
        self.encoding = Some(Encoding { task, copied });
        self.events_since = 0;
        self.last = Instant::now();
        self.due = false;
    }

    /// Whether a snapshot is being encoded, or issued and not yet stored: once stored, the
    /// history before it may go.
    pub fn in_progress(&self) -> bool {
        self.encoding.is_some() || self.unconfirmed
    }

    /// Writes one at the next flush, events or not (the journal needs room).
    pub fn make_due(&mut self) {
        self.due = true;
    }

    /// Whether one is due whether events are written or not (history was purged by someone
    /// else).
    pub fn due(&self) -> bool {
        self.due
    }

    /// Whether a snapshot is being encoded (its parts not issued yet).
    pub fn encoding(&self) -> bool {
        self.encoding.is_some()
    }

    /// The snapshot being encoded, once it is; pending forever when none is. Cancel-safe: the
    /// encoding stays until it has been returned.
    pub async fn encoded(&mut self) -> (Result<EncodedSnapshot, JournalError>, Encoded) {
        let Some(encoding) = self.encoding.as_mut() else {
            return std::future::pending().await;
        };
        let joined = (&mut encoding.task).await;
        let copied = encoding.copied;
        self.encoding = None;
        match joined {
            Ok((result, encoded)) => (result, Encoded { copied, encoded }),
            Err(e) => {
                let failed = JournalError::Unavailable(format!("encoding a snapshot failed: {e}"));
                (Err(failed), Encoded { copied, encoded: Duration::ZERO })
            }
        }
    }

    /// The snapshot's parts and marker are issued, this leader having written `written_bytes`
    /// to the journal by then.
    pub fn wrote(&mut self, written_bytes: u64) {
        self.bytes_at_last = written_bytes;
        self.unconfirmed = true;
    }

    /// Drops the snapshot being encoded (the term is ending).
    pub fn abandon(&mut self) {
        self.encoding = None;
    }

    /// The snapshot starting at `first_seq` is stored (its marker acknowledged).
    pub fn confirmed(&mut self, first_seq: u64) {
        self.unconfirmed = false;
        self.floor = first_seq;
        self.purge_floor = first_seq;
    }

    /// The journal now starts at `first`: if that is past the latest snapshot, someone else
    /// purged it, and a snapshot is written at once. Returns the snapshot's start if so.
    pub fn purged_to(&mut self, first: u64) -> Option<u64> {
        if first <= self.floor {
            return None;
        }
        let floor = self.floor;
        self.due = true;
        // Until the new snapshot is confirmed, do not report this again.
        self.floor = first;
        Some(floor)
    }

    /// The first sequence of the newest snapshot known to be stored: replay needs nothing
    /// before it.
    pub fn purge_floor(&self) -> u64 {
        self.purge_floor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_state_waits_for_more_events_before_its_snapshot() {
        let settings = MasterSettings::default(); // every 50 000 events or 60 s
        let mut snapshots = Snapshots::new(0, 1);
        snapshots.written(60_000);
        assert!(snapshots.should_write(&settings, 100, 0), "a small state: every 50 000 events");
        assert!(snapshots.should_write(&settings, 30_000, 0), "60 000 ≥ 2 × 30 000");
        assert!(!snapshots.should_write(&settings, 100_000, 0), "100k held: 200 000 events");
        snapshots.written(140_000);
        assert!(snapshots.should_write(&settings, 100_000, 0));
        snapshots.events_since = 0;
        assert!(!snapshots.should_write(&settings, 100_000, 0), "nothing written since");
    }

    #[test]
    fn the_time_based_snapshot_keeps_the_size_spacing() {
        let mut settings = MasterSettings::default();
        settings.master.snapshot_interval = Duration::ZERO;
        let mut snapshots = Snapshots::new(0, 1);
        snapshots.written(1);
        assert!(snapshots.should_write(&settings, 100, 0), "a small state: any event, in time");
        assert!(
            !snapshots.should_write(&settings, 100_000, 0),
            "100k held: not one snapshot of the whole state per interval for one event"
        );
        snapshots.written(199_999);
        assert!(snapshots.should_write(&settings, 100_000, 0), "spaced enough: 2 per item");
    }

    #[test]
    fn a_growing_journal_gets_a_snapshot_whatever_the_spacing() {
        let mut settings = MasterSettings::default();
        settings.streams.journal_max_bytes = 1 << 30;
        let quarter = (1u64 << 30) / GROWTH_DIVISOR;
        let mut snapshots = Snapshots::new(0, 1);
        snapshots.written(10);
        assert!(!snapshots.should_write(&settings, 100_000, quarter - 1));
        assert!(snapshots.should_write(&settings, 100_000, quarter), "a quarter of the cap");
        // The snapshot's own bytes do not count towards the next one.
        snapshots.wrote(quarter + (300 << 20));
        assert!(!snapshots.should_write(&settings, 100_000, quarter + (300 << 20)));
        settings.streams.journal_max_bytes = -1;
        assert!(!snapshots.should_write(&settings, 100_000, u64::MAX), "no cap, no bound");
    }

    #[tokio::test]
    async fn one_snapshot_is_encoded_at_a_time_off_the_loop() {
        let settings = MasterSettings::default();
        let mut snapshots = Snapshots::new(0, 1);
        snapshots.written(60_000);
        let state = State { leader: "x".repeat(5000), ..State::default() };
        snapshots.start(&state, 1024);
        assert!(snapshots.encoding());
        assert!(!snapshots.should_write(&settings, 100, 0), "one at a time");
        let (encoded, _) = snapshots.encoded().await;
        let encoded = encoded.expect("encodes");
        assert_eq!(encoded.bytes(), jetwork_shared::codec::encode(&state).unwrap().len() as u64);
        assert!(!snapshots.encoding());
        assert!(!snapshots.should_write(&settings, 100, 0), "its events were counted");
    }

    #[test]
    fn history_goes_only_below_a_stored_snapshot() {
        let mut snapshots = Snapshots::new(5, 40);
        assert_eq!(snapshots.purge_floor(), 40, "the snapshot replay started from");
        assert_eq!(snapshots.purged_to(40), None);
        assert_eq!(snapshots.purged_to(90), Some(40), "someone else purged past it");
        assert_eq!(snapshots.purge_floor(), 40, "still the snapshot's start");
        snapshots.confirmed(120);
        assert_eq!(snapshots.purge_floor(), 120);
    }
}
