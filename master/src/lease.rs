//! The leader lease: one key in the `jetwork-lease` KV bucket, whose revision at acquisition is
//! the leader's epoch (a fencing token that only grows).
//!
//! The bucket has `history: 1`, `max_age: lease_ttl` and limit markers (see
//! `jetwork_shared::topology::lease_bucket`), so each renewal restarts the key's age and an
//! unrenewed key expires by itself, leaving a marker that standbys watching the key see at
//! once. Per-key TTLs are not used: async-nats 0.51 drops them on update.
//!
//! The key's value is a [`LeaseHolder`] (JSON): the holder's name and its epoch. The epoch is
//! the revision of the create, so it can only be written by the update right after it; until
//! then the value says epoch 0. Workers check announcements and replies against it, so a
//! forged `jetwork.master.elected` cannot make them follow a leader that does not exist.
//!
//! The holder treats the lease as valid until `renewal sent + ttl − margin` on its own
//! monotonic clock ([`LeaseTimer`]), measured from when the renewal was *sent*, so however
//! long the reply took the server's expiry cannot come first. Once that instant passes
//! without a confirmed renewal the leader stops acting. This bounds, but does not prevent, a
//! paused leader acting late; the journal fence (see `journal.rs`) is what makes a late write
//! impossible.

use std::time::Duration;

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use futures::StreamExt;
use jetwork_shared::backoff::Backoff;
use jetwork_shared::protocol::LeaseHolder;
use jetwork_shared::subjects::LEASE_KEY;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::metrics::MasterMetrics;
use crate::readiness::Readiness;

/// Pauses before retrying a renewal that failed: soon, since the lease's validity runs out.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_millis(500);
/// Deletes tried when giving the lease up, each after re-reading the key's revision.
const RELEASE_ATTEMPTS: usize = 3;

/// How long before the server-side expiry the holder stops trusting its lease.
pub fn safety_margin(ttl: Duration) -> Duration {
    (ttl / 4).min(Duration::from_secs(1))
}

/// The holder's view of how long its lease is certainly valid. Pure, so its rules are unit
/// tested without a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTimer {
    ttl: Duration,
    valid_until: Instant,
}

impl LeaseTimer {
    /// A lease whose acquiring write was sent at `sent`.
    pub fn new(sent: Instant, ttl: Duration) -> Self {
        LeaseTimer { ttl, valid_until: sent + ttl - safety_margin(ttl) }
    }

    /// A renewal sent at `sent` was confirmed. Validity never moves backwards.
    pub fn renewed(&mut self, sent: Instant) {
        self.valid_until = self.valid_until.max(sent + self.ttl - safety_margin(self.ttl));
    }

    /// Whether the lease is certainly still held at `now`.
    pub fn is_valid(&self, now: Instant) -> bool {
        now < self.valid_until
    }

    /// The instant validity ends.
    pub fn valid_until(&self) -> Instant {
        self.valid_until
    }

    /// How often to renew: three times per TTL.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }
}

/// What went wrong with the lease.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Someone else holds it now.
    #[error("lease lost: {0}")]
    Lost(String),
    /// The outcome is unknown (timeout, connection trouble); validity was not extended.
    #[error("lease unavailable: {0}")]
    Unavailable(String),
}

/// A held lease.
#[derive(Debug)]
pub struct Lease {
    kv: kv::Store,
    holder: String,
    revision: u64,
    epoch: u64,
    timer: LeaseTimer,
    /// When the first renewal since the last confirmed one was sent: if one of them landed
    /// unseen, the server's expiry runs from no earlier than this.
    unconfirmed_since: Option<Instant>,
}

impl Lease {
    /// Tries to take the lease. `Ok(None)` means someone else holds it.
    pub async fn try_acquire(
        kv: &kv::Store,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, LeaseError> {
        let sent = Instant::now();
        let value = lease_value(holder, 0);
        let revision = match kv.create(LEASE_KEY, value).await {
            Ok(revision) => revision,
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => return Ok(None),
            Err(e) => return Err(LeaseError::Unavailable(e.to_string())),
        };
        let mut lease = Lease {
            kv: kv.clone(),
            holder: holder.to_owned(),
            revision,
            epoch: revision,
            timer: LeaseTimer::new(sent, ttl),
            unconfirmed_since: None,
        };
        // Write the epoch into the value at once: until then nobody can confirm this leader.
        // A failure here is like a failed renewal: the lease may still be ours, and the
        // renewals retry the same write.
        if let Err(e) = lease.renew().await {
            tracing::warn!(epoch = revision, error = %e, "could not record the epoch in the lease yet");
        }
        Ok(Some(lease))
    }

    /// The leadership epoch: the revision the lease was acquired at.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Extends the lease with a compare-and-set on the current revision.
    pub async fn renew(&mut self) -> Result<(), LeaseError> {
        let sent = Instant::now();
        let unconfirmed_since = *self.unconfirmed_since.get_or_insert(sent);
        let value = lease_value(&self.holder, self.epoch);
        match self.kv.update(LEASE_KEY, value, self.revision).await {
            Ok(revision) => {
                self.revision = revision;
                self.timer.renewed(sent);
                self.unconfirmed_since = None;
                Ok(())
            }
            Err(e) if e.kind() == UpdateErrorKind::TimedOut => {
                Err(LeaseError::Unavailable(e.to_string()))
            }
            Err(e) => {
                // A wrong revision may be our own earlier renewal whose reply was lost: if the
                // key names us at a newer revision, one of the renewals sent since the last
                // confirmed one landed, so the server's expiry runs from no earlier than the
                // first of them. Adopt its revision and count it as renewed then.
                match self.kv.entry(LEASE_KEY).await {
                    Ok(Some(entry)) if self.names_us(&entry) && entry.revision > self.revision => {
                        self.revision = entry.revision;
                        self.timer.renewed(unconfirmed_since);
                        self.unconfirmed_since = None;
                        tracing::debug!(
                            epoch = self.epoch,
                            revision = entry.revision,
                            "a renewal whose reply was lost had landed"
                        );
                        Ok(())
                    }
                    Ok(Some(entry)) if self.names_us(&entry) => {
                        Err(LeaseError::Unavailable(format!("renewal failed: {e}")))
                    }
                    Ok(_) => Err(LeaseError::Lost(e.to_string())),
                    Err(read) => Err(LeaseError::Unavailable(format!("{e}; then {read}"))),
                }
            }
        }
    }

    /// Whether the lease is certainly held at `now`.
    pub fn is_valid(&self, now: Instant) -> bool {
        self.timer.is_valid(now)
    }

    /// Gives the lease up at once (a standby watching the key takes over immediately).
    ///
    /// The delete is a compare-and-set on the revision this holder last knew. That revision
    /// is stale when a renewal landed but its reply was lost (a blip of the link): then the
    /// key is re-read, and if it still names this holder it is deleted at the revision read.
    /// The compare-and-set keeps this safe whatever the read returns: a stale read, or a key
    /// someone else has taken since, makes the delete fail, never remove another's lease.
    pub async fn release(&mut self) {
        for _ in 0..RELEASE_ATTEMPTS {
            let failed = match self.kv.delete_expect_revision(LEASE_KEY, Some(self.revision)).await
            {
                Ok(()) => return tracing::info!(epoch = self.epoch, "lease released"),
                Err(e) => e,
            };
            match self.kv.entry(LEASE_KEY).await {
                Ok(Some(entry)) if self.names_us(&entry) && entry.revision != self.revision => {
                    tracing::debug!(epoch = self.epoch, error = %failed, revision = entry.revision, "a renewal landed unseen; releasing at its revision");
                    self.revision = entry.revision;
                }
                Ok(_) => {
                    return tracing::info!(
                        epoch = self.epoch,
                        "lease no longer ours: nothing to release"
                    )
                }
                Err(read) => {
                    return tracing::warn!(epoch = self.epoch, error = %failed, read = %read, "could not release the lease; it will expire")
                }
            }
        }
        tracing::warn!(
            epoch = self.epoch,
            "could not release the lease (it kept moving); it will expire"
        );
    }

    /// Whether `entry` is a live lease naming this holder.
    fn names_us(&self, entry: &kv::Entry) -> bool {
        entry.operation == Operation::Put
            && serde_json::from_slice::<LeaseHolder>(&entry.value)
                .is_ok_and(|v| v.holder == self.holder)
    }
}

/// The lease key's value for `holder` leading in `epoch`.
fn lease_value(holder: &str, epoch: u64) -> bytes::Bytes {
    serde_json::json!(LeaseHolder { holder: holder.to_owned(), epoch }).to_string().into()
}

/// Waits until this candidate holds the lease. Watches the key so that a release or an
/// expiry is acted on at once, and polls as a backstop. Cancel by dropping the future. Tells
/// `readiness` whether its writes of the lease go through.
pub async fn campaign(kv: &kv::Store, holder: &str, ttl: Duration, readiness: &Readiness) -> Lease {
    let poll = (ttl / 4).max(Duration::from_millis(250));
    let mut watch = None;
    let mut waiting_for = None;
    let mut held = Held::default();
    loop {
        match Lease::try_acquire(kv, holder, ttl).await {
            Ok(Some(lease)) => {
                readiness.lease_ok();
                return lease;
            }
            Ok(None) => match kv.entry(LEASE_KEY).await {
                Ok(Some(entry)) => {
                    log_holder(&entry, ttl, &mut waiting_for);
                    held.seen(&entry, ttl, readiness);
                }
                Ok(None) => held = Held::default(),
                Err(_) => {}
            },
            Err(e) => {
                tracing::warn!(error = %e, "campaign: cannot write the lease");
                readiness.lease_failed(e.to_string());
            }
        }
        if watch.is_none() {
            watch = kv.watch(LEASE_KEY).await.ok();
        }
        let wait = tokio::time::sleep(poll);
        match watch.as_mut() {
            Some(stream) => tokio::select! {
                entry = stream.next() => match entry {
                    Some(Ok(entry)) if entry.operation != Operation::Put => {
                        tracing::debug!(revision = entry.revision, "lease freed");
                    }
                    Some(Ok(_)) => {}
                    _ => watch = None,
                },
                _ = wait => {}
            },
            None => wait.await,
        }
    }
}

/// What a standby last saw of someone else's lease: its revision, and since when.
#[derive(Debug, Default)]
struct Held {
    seen: Option<(u64, Instant)>,
}

impl Held {
    /// The key holds `entry`. A new revision means someone's write went through; the same one
    /// for twice the TTL means the holder stopped renewing and the server could not expire
    /// the key (expiring it is a write too): nobody can take over, and the standby says so.
    fn seen(&mut self, entry: &kv::Entry, ttl: Duration, readiness: &Readiness) {
        if entry.operation != Operation::Put {
            self.seen = None;
            return;
        }
        match self.seen {
            Some((revision, since)) if revision == entry.revision => {
                let stale = since.elapsed();
                if stale > ttl * 2 {
                    readiness.lease_failed(format!(
                        "the lease has been neither renewed nor expired for {}s (its TTL is \
                         {}s): JetStream cannot write it",
                        stale.as_secs(),
                        ttl.as_secs_f64()
                    ));
                }
            }
            _ => {
                self.seen = Some((entry.revision, Instant::now()));
                readiness.lease_ok();
            }
        }
    }
}

/// Logs whom a standby waits for: at info when the holder or its epoch changes, at debug on
/// every look (each renewal moves the expiry on).
fn log_holder(entry: &kv::Entry, ttl: Duration, last: &mut Option<(String, u64)>) {
    if entry.operation != Operation::Put {
        return;
    }
    let Ok(value) = serde_json::from_slice::<LeaseHolder>(&entry.value) else {
        return tracing::warn!(
            revision = entry.revision,
            "the lease holds something that is not a holder"
        );
    };
    // Each write restarts the key's age: unrenewed, it expires a TTL after the last one.
    let expires = time::Duration::try_from(ttl).ok().map(|ttl| entry.created + ttl);
    let expires = expires
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default();
    let seen = Some((value.holder.clone(), value.epoch));
    if *last != seen {
        tracing::info!(holder = %value.holder, epoch = value.epoch, lease_expires = %expires, "standing by: waiting for the lease holder");
        *last = seen;
    } else {
        tracing::debug!(holder = %value.holder, epoch = value.epoch, lease_expires = %expires, "standing by");
    }
}

/// The leader's handle on a lease being renewed in the background.
#[derive(Debug)]
pub struct LeaseGuard {
    epoch: u64,
    valid_until: watch::Receiver<Option<Instant>>,
    stop: Option<oneshot::Sender<bool>>,
    task: JoinHandle<()>,
}

impl LeaseGuard {
    /// Starts renewing `lease` every TTL/3 until stopped or lost, counting renewals and
    /// failures in `metrics` if given, and telling `readiness` whether they go through.
    pub fn spawn(mut lease: Lease, metrics: Option<MasterMetrics>, readiness: Readiness) -> Self {
        let epoch = lease.epoch();
        let ttl = lease.timer.ttl;
        let (tx, valid_until) = watch::channel(Some(lease.timer.valid_until()));
        let (stop, mut stopped) = oneshot::channel::<bool>();
        let task = tokio::spawn(async move {
            let mut wait = lease.timer.renew_every();
            let mut retry = Backoff::new(RETRY_FIRST, RETRY_MAX);
            loop {
                tokio::select! {
                    release = &mut stopped => {
                        if release.unwrap_or(false) {
                            lease.release().await;
                        }
                        return;
                    }
                    _ = tokio::time::sleep(wait) => {}
                }
                // A renewal is only useful while the lease is still valid: bound it by that,
                // and by a fifth of the TTL, so one lost in a blip or sent to a bucket leader
                // that just died leaves time for several more (a renewal that landed unseen
                // is recognised by the next one).
                let left = lease.timer.valid_until().saturating_duration_since(Instant::now());
                let bound = left.min((ttl / 5).max(RETRY_MAX));
                let renewed = match tokio::time::timeout(bound, lease.renew()).await {
                    Ok(result) => result,
                    Err(_) => Err(LeaseError::Unavailable(format!("no reply within {bound:?}"))),
                };
                // After a failure, retry soon rather than a whole interval later.
                wait = match renewed {
                    Ok(()) => {
                        retry.reset();
                        lease.timer.renew_every()
                    }
                    Err(_) => retry.next_delay(),
                };
                if let Some(m) = &metrics {
                    match renewed {
                        Ok(()) => m.lease_renewals.inc(),
                        Err(_) => m.lease_renewal_failures.inc(),
                    };
                }
                match &renewed {
                    Ok(()) => readiness.lease_ok(),
                    Err(LeaseError::Unavailable(why)) => {
                        readiness.lease_failed(format!("renewal failed: {why}"))
                    }
                    Err(LeaseError::Lost(_)) => {}
                }
                match renewed {
                    Ok(()) => {
                        let _ = tx.send(Some(lease.timer.valid_until()));
                    }
                    Err(LeaseError::Lost(why)) => {
                        tracing::warn!(epoch, %why, "lease lost");
                        let _ = tx.send(None);
                        return;
                    }
                    Err(LeaseError::Unavailable(why)) => {
                        if lease.is_valid(Instant::now()) {
                            tracing::warn!(epoch, %why, "lease renewal failed; retrying");
                        } else {
                            tracing::warn!(epoch, %why, "lease expired without renewal");
                            let _ = tx.send(None);
                            return;
                        }
                    }
                }
            }
        });
        LeaseGuard { epoch, valid_until, stop: Some(stop), task }
    }

    /// The epoch of the held lease.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether the lease is certainly held now. False once lost or past its validity.
    pub fn is_valid(&self) -> bool {
        self.valid_until.borrow().is_some_and(|until| Instant::now() < until)
    }

    /// Resolves when the lease is lost (renewal refused or validity passed).
    pub async fn lost(&mut self) {
        loop {
            let until = *self.valid_until.borrow_and_update();
            match until {
                None => return,
                Some(until) => {
                    tokio::select! {
                        changed = self.valid_until.changed() => {
                            if changed.is_err() {
                                return;
                            }
                        }
                        _ = tokio::time::sleep_until(until) => {
                            if !self.is_valid() {
                                return;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Stops renewing; with `release`, deletes the key so a standby takes over at once.
    pub async fn stop(mut self, release: bool) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(release);
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if self.stop.is_some() {
            self.task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_ends_a_margin_before_the_server_expiry_measured_from_the_send() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut timer = LeaseTimer::new(t0, ttl);
        assert!(timer.is_valid(t0 + Duration::from_millis(8_999)));
        assert!(!timer.is_valid(t0 + Duration::from_secs(9)));
        // A renewal sent at t0+3s extends validity to t0+12s, however late its reply came.
        timer.renewed(t0 + Duration::from_secs(3));
        assert!(timer.is_valid(t0 + Duration::from_millis(11_999)));
        assert!(!timer.is_valid(t0 + Duration::from_secs(12)));
        // An older renewal confirmed late never shortens validity.
        timer.renewed(t0 + Duration::from_secs(1));
        assert_eq!(timer.valid_until(), t0 + Duration::from_secs(12));
    }

    #[test]
    fn short_ttls_keep_a_proportional_margin() {
        assert_eq!(safety_margin(Duration::from_secs(2)), Duration::from_millis(500));
        assert_eq!(safety_margin(Duration::from_secs(60)), Duration::from_secs(1));
        assert_eq!(
            LeaseTimer::new(Instant::now(), Duration::from_secs(3)).renew_every(),
            Duration::from_secs(1)
        );
    }
}
