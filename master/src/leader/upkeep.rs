//! [`Upkeep`]: the leader's background chores, started from its ticks and never waited for:
//! purging finished submissions and old journal history (`housekeeping.rs`, below the floors
//! `core::upkeep::purge_floors` computes), and checking the streams for anyone else's writes,
//! purges and setting changes (`integrity.rs`), whose findings come back as an
//! [`Internal::Integrity`] message and are acted on here.

use std::time::Instant;

use jetwork_shared::clock::now_ms;
use jetwork_shared::Unavailable;
use tokio::task::JoinHandle;

use futures::FutureExt;

use super::{Internal, Leader};
use crate::core::{upkeep, Command};
use crate::housekeeping::{self, PurgedFloors};
use crate::integrity::{self, Observation};

/// When each chore last ran, and what is under way.
pub struct Upkeep {
    last_purge: Instant,
    /// The purge under way; it hands back the floors it purged to.
    purging: Option<JoinHandle<PurgedFloors>>,
    /// Each queue's floor as last purged this term, handed to the next purge so it skips
    /// the queues whose floor did not move (with a thousand queues, a thousand purge requests
    /// every round otherwise, each a scan of the stream on the server).
    purged: PurgedFloors,
    last_check: Instant,
    checking: bool,
}

impl Default for Upkeep {
    fn default() -> Self {
        Upkeep {
            last_purge: Instant::now(),
            purging: None,
            purged: PurgedFloors::default(),
            last_check: Instant::now(),
            checking: false,
        }
    }
}

impl Upkeep {
    /// The term is over: a purge under way stops (it is safe to cut short).
    pub fn stop(&mut self) {
        if let Some(purging) = self.purging.take() {
            purging.abort();
        }
    }
}

impl Leader {
    /// Every `purge_interval` (or at once when `hurry`: the journal has no room), unless one
    /// is still running: purges what the floors allow, reports the journal's size
    /// ([`Internal::JournalFill`]), then looks for the idle queues the engine may forget (see
    /// `engine/forgetting.rs`).
    pub(super) fn maybe_purge(&mut self, hurry: bool) {
        let due =
            hurry || self.upkeep.last_purge.elapsed() >= self.env.settings.master.purge_interval;
        let running = self.upkeep.purging.as_ref().is_some_and(|task| !task.is_finished());
        if !due || running {
            return;
        }
        // The last purge has finished: its floors, unless it failed (then every queue is
        // purged again, which is harmless).
        if let Some(Some(Ok(purged))) = self.upkeep.purging.take().map(FutureExt::now_or_never) {
            self.upkeep.purged = purged;
        }
        let mut purged = std::mem::take(&mut self.upkeep.purged);
        self.upkeep.last_purge = Instant::now();
        let floors: Vec<_> = upkeep::purge_floors(self.engine.state()).into_iter().collect();
        let js = self.env.js.clone();
        let streams = self.env.settings.streams.clone();
        let snapshot = self.snapshots.purge_floor();
        let forgettable = self.engine.forgettable_queues();
        let internal = self.internal_tx.clone();
        // What the figure surely counts: writes acknowledged by now. Anything issued after,
        // or still unacknowledged, is added on top of it (`JournalRoom::estimate`).
        let mark = self.journal.acked_bytes();
        self.upkeep.purging = Some(tokio::spawn(async move {
            // The journal first: a leader short of room waits for its figure.
            let (retention, cap) = (streams.journal_retention, streams.journal_max_bytes);
            if let Some(fill) = housekeeping::purge_journal(&js, snapshot, retention, cap).await {
                let _ = internal.send(Internal::JournalFill { fill, mark });
            }
            housekeeping::purge_submissions(&js, floors, &mut purged, streams.dedup_horizon).await;
            if !forgettable.is_empty() {
                let first_stored = housekeeping::first_stored(&js, forgettable).await;
                if !first_stored.is_empty() {
                    let now = now_ms();
                    let command = Command::QueuesStored { first_stored, now };
                    let _ = internal.send(Internal::Command(command));
                }
            }
            purged
        }));
    }

    /// Before the claim, the first write of the term: purges journal history below the
    /// snapshot replay started from, if the journal's size calls for it, and takes the
    /// journal's size as the first figure of [`JournalRoom`]. A journal the last term left
    /// full would refuse the claim, and every claim after it, were its old history not
    /// purged first.
    pub(super) async fn make_room_to_claim(&mut self) {
        let streams = &self.env.settings.streams;
        let (retention, cap) = (streams.journal_retention, streams.journal_max_bytes);
        let snapshot = self.snapshots.purge_floor();
        let Some(fill) = housekeeping::purge_journal(&self.env.js, snapshot, retention, cap).await
        else {
            return;
        };
        self.room.observe(fill, self.journal.acked_bytes());
        if self.room.full(self.journal.written_bytes()) {
            tracing::warn!(
                journal_bytes = fill.bytes,
                journal_max_bytes = cap,
                "the journal is over three quarters full even without the history before its \
                 latest snapshot: events wait for a snapshot and a purge; if the claim is \
                 refused, raise streams.journal_max_bytes"
            );
        }
    }

    /// Every `integrity_interval`, unless one is under way: looks at the streams.
    pub(super) fn maybe_check_integrity(&mut self) {
        let interval = self.env.settings.master.integrity_interval;
        if self.upkeep.checking || self.upkeep.last_check.elapsed() < interval {
            return;
        }
        self.upkeep.checking = true;
        self.upkeep.last_check = Instant::now();
        let (js, streams) = (self.env.js.clone(), self.env.settings.streams.clone());
        let internal = self.internal_tx.clone();
        tokio::spawn(async move {
            let observed = integrity::observe(&js, &streams).await;
            let _ = internal.send(Internal::Integrity(observed));
        });
    }

    /// Acts on what the streams look like (see `integrity.rs`).
    pub(super) fn integrity(&mut self, observed: Result<Observation, Unavailable>) {
        self.upkeep.checking = false;
        let observed = match observed {
            Ok(observed) => observed,
            Err(e) => return tracing::debug!(error = %e, "cannot check the streams this time"),
        };
        for drift in &observed.drift {
            tracing::error!(%drift, "stream settings were changed by someone other than the master; putting them back");
        }
        if observed.journal_last > self.journal.tail() {
            let why = format!(
                "the journal holds sequence {} though this leader wrote up to {}: a foreign write",
                observed.journal_last,
                self.journal.tail()
            );
            tracing::error!(%why, "stepping down; the next term leaves the foreign write out");
            self.deposed = Some(why);
        }
        if let Some(snapshot) = self.snapshots.purged_to(observed.journal_first) {
            tracing::error!(
                first = observed.journal_first,
                snapshot,
                "journal history was purged past the latest snapshot by someone else; writing a snapshot now"
            );
        }
    }
}
