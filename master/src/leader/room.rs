//! [`JournalRoom`]: whether the journal has room for more events, so that the leader never
//! fills it.
//!
//! The journal refuses a write past `streams.journal_max_bytes` (discard new: history is never
//! dropped behind the leader's back), and a refused write ends the term. A full journal would
//! also refuse the next leader's claim, and every term after it: only a snapshot and a purge of
//! the history before it make room, and a snapshot is a write too. So the leader keeps a
//! quarter of the cap free (the room a snapshot needs; a larger one is warned about when it is
//! written) and, once its estimate of the journal's size reaches the rest, holds new events
//! back until a purge below the latest snapshot has freed room.
//!
//! Invariants:
//! - the estimate never understates: it is the size last observed (the stream's own figure,
//!   after a purge) plus everything this leader wrote that was not acknowledged when the
//!   figure was asked for, or written since (some of which the figure may already count);
//! - while the journal is full, events wait; the only writes are the ones that make room: the
//!   events already pending followed by a snapshot, when no purge could free anything without
//!   a newer snapshot (none while one is on its way, at most one until it is stored);
//! - without a cap there is always room; with one, none until the first figure (the purge
//!   before the claim gives it; if the stream could not be read then, a hurried purge asks
//!   again).

use std::time::Instant;

use super::snapshots::GROWTH_DIVISOR;
use crate::housekeeping::JournalFill;

/// What the leader may write next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// Write as usual.
    Free,
    /// Write what is pending, then a snapshot: nothing below the latest snapshot is left to
    /// purge, so only a newer one can make room.
    Snapshot,
    /// Hold events until a purge below the latest snapshot reports room.
    AwaitPurge,
}

/// The leader's view of how full the journal is.
#[derive(Debug)]
pub struct JournalRoom {
    /// `streams.journal_max_bytes`, or 0 for no cap.
    cap: u64,
    /// The last observation, and this leader's written bytes when it was asked for.
    observed: Option<(JournalFill, u64)>,
    /// The latest stored snapshot's start when a snapshot was last asked for to make room:
    /// until a newer one is stored, another would only take more of the reserve.
    snapshot_asked: Option<u64>,
    /// Since when events have been held, for the log.
    holding_since: Option<Instant>,
}

impl JournalRoom {
    /// For a journal capped at `cap` bytes (0 or less: no cap).
    pub fn new(cap: i64) -> Self {
        JournalRoom {
            cap: u64::try_from(cap).unwrap_or(0),
            observed: None,
            snapshot_asked: None,
            holding_since: None,
        }
    }

    /// The stream reported `fill`, asked for when this leader had `written_mark` bytes of
    /// writes acknowledged ([`crate::journal::Journal::acked_bytes`]).
    pub fn observe(&mut self, fill: JournalFill, written_mark: u64) {
        self.observed = Some((fill, written_mark));
    }

    /// The journal's size at most, this leader having written `written` bytes.
    pub fn estimate(&self, written: u64) -> Option<u64> {
        self.observed.map(|(fill, mark)| fill.bytes + written.saturating_sub(mark))
    }

    /// Whether the journal is too full for more events (with a cap, also before any figure).
    pub fn full(&self, written: u64) -> bool {
        let limit = self.cap - self.cap / GROWTH_DIVISOR;
        self.cap > 0 && self.estimate(written).is_none_or(|bytes| bytes >= limit)
    }

    /// What may be written now, this leader having written `written` bytes, with the latest
    /// stored snapshot starting at `purge_floor`.
    pub fn plan(&mut self, written: u64, purge_floor: u64) -> Room {
        if !self.full(written) {
            if let Some(since) = self.holding_since.take() {
                tracing::info!(
                    held_ms = since.elapsed().as_millis() as u64,
                    journal_bytes = self.estimate(written),
                    "the journal has room again: events go on"
                );
            }
            return Room::Free;
        }
        let Some((fill, _)) = self.observed else {
            // The stream could not be read before the claim: a purge asks again.
            return Room::AwaitPurge;
        };
        if self.holding_since.is_none() {
            self.holding_since = Some(Instant::now());
            tracing::warn!(
                journal_bytes = self.estimate(written),
                journal_max_bytes = self.cap,
                "the journal is three quarters full: new events wait until a purge below the \
                 latest snapshot makes room (purges outran by the load, or a cap too small \
                 for the state: raise streams.journal_max_bytes if this recurs)"
            );
        }
        if fill.first_seq < purge_floor || self.snapshot_asked == Some(purge_floor) {
            return Room::AwaitPurge;
        }
        self.snapshot_asked = Some(purge_floor);
        Room::Snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: i64 = 4000;

    fn fill(bytes: u64, first_seq: u64) -> JournalFill {
        JournalFill { bytes, first_seq }
    }

    #[test]
    fn there_is_room_without_a_cap_and_none_before_a_figure() {
        let mut uncapped = JournalRoom::new(-1);
        assert_eq!(uncapped.plan(u64::MAX / 2, 10), Room::Free);
        uncapped.observe(fill(u64::MAX / 2, 1), 0);
        assert_eq!(uncapped.plan(u64::MAX / 2, 10), Room::Free);
        let mut unobserved = JournalRoom::new(CAP);
        assert!(unobserved.full(0));
        assert_eq!(unobserved.plan(0, 10), Room::AwaitPurge, "a purge brings the figure");
        unobserved.observe(fill(100, 1), 0);
        assert_eq!(unobserved.plan(0, 10), Room::Free);
    }

    #[test]
    fn the_estimate_adds_what_was_written_since_the_observation_was_asked_for() {
        let mut room = JournalRoom::new(CAP);
        room.observe(fill(1000, 1), 500);
        assert_eq!(room.estimate(500), Some(1000));
        assert_eq!(room.estimate(2499), Some(2999));
        assert!(!room.full(2499), "under three quarters of the cap");
        assert!(room.full(2500), "a quarter of the cap stays free for a snapshot");
    }

    #[test]
    fn a_full_journal_waits_for_a_purge_when_one_can_free_history() {
        let mut room = JournalRoom::new(CAP);
        room.observe(fill(3500, 5), 0);
        assert_eq!(room.plan(0, 20), Room::AwaitPurge, "history before seq 20 can go");
        room.observe(fill(800, 20), 100);
        assert_eq!(room.plan(100, 20), Room::Free);
    }

    #[test]
    fn a_full_journal_with_nothing_to_purge_asks_for_one_snapshot_then_waits() {
        let mut room = JournalRoom::new(CAP);
        room.observe(fill(3100, 20), 0);
        assert_eq!(room.plan(0, 20), Room::Snapshot);
        assert_eq!(room.plan(50, 20), Room::AwaitPurge, "one snapshot until it is stored");
        // A report from a purge that started before the snapshot was stored changes nothing.
        room.observe(fill(3100, 20), 0);
        assert_eq!(room.plan(50, 20), Room::AwaitPurge);
        assert_eq!(room.plan(400, 31), Room::AwaitPurge, "stored: its purge is due");
        // The purge freed too little (a snapshot as large as the reserve): ask again.
        room.observe(fill(3500, 31), 400);
        assert_eq!(room.plan(400, 31), Room::Snapshot);
        room.observe(fill(900, 40), 500);
        assert_eq!(room.plan(500, 40), Room::Free);
    }
}
