//! [`MasterMetrics`]: the master's Prometheus series, one set per candidate process (its own
//! registry, no global recorder).
//!
//! Two kinds, and the difference matters at a takeover:
//! - **Process series** (`jetwork_master_*`) describe this candidate whatever its role:
//!   whether it leads and in which epoch, its lease renewals, its journal writes, the bad
//!   messages it was sent.
//! - **Leader series** (`jetwork_queue_*`, `jetwork_master_workers`, …) describe the system
//!   as the leader's state has it. They exist only while this candidate leads and are removed
//!   when its term ends. The per-queue counts (accepted, completed, failed, rejected) are not
//!   counted here: they are copied from the replayed state (`QueueState`'s counters, which
//!   the journal keeps), so a new leader exports the same totals the old one did and they
//!   carry on growing from there — a takeover does not reset them.
//!
//! Bounded whatever the load: no label names a work id or a worker; the only labels are
//! `queue` (at most `master.max_served_queues` values, the rest summed up in
//! `jetwork_master_queues_unlisted`), `reason` (a fixed set, [`BadMessage`]) and the build's
//! constants on the one `jetwork_build_info` series.
//!
//! Hot path: per job, the leader does a hash lookup of its queue's handles and a few relaxed
//! atomic operations ([`AtomicHistogram::observe`]); nothing allocates or locks.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use jetwork_shared::observe::{
    register_build_info, AtomicHistogram, QueueLabel, COUNT_BUCKETS, WRITE_SECONDS_BUCKETS,
};

/// A reason a message was refused before it became a decision (the label values of
/// `jetwork_master_bad_messages_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadMessage {
    /// A request on register/request/report that could not be decoded (answered 400).
    UndecodableRequest,
    /// A status query that is not the expected JSON (answered 400).
    UnreadableStatusQuery,
    /// A status request refused because two were being worked on (503).
    StatusBusy,
    /// A stored submission whose headers could not be read (rejected).
    UnreadableSubmission,
    /// A request left unanswered: too many answers were on their way (a flood).
    Unanswered,
    /// A message on an endpoint that is no request a client sent: no reply subject (a
    /// JetStream API answer sent there), or a JetStream consumer's delivery. Ignored.
    Redirected,
}

impl BadMessage {
    const ALL: [BadMessage; 6] = [
        BadMessage::UndecodableRequest,
        BadMessage::UnreadableStatusQuery,
        BadMessage::StatusBusy,
        BadMessage::UnreadableSubmission,
        BadMessage::Unanswered,
        BadMessage::Redirected,
    ];

    fn label(self) -> &'static str {
        match self {
            BadMessage::UndecodableRequest => "undecodable_request",
            BadMessage::UnreadableStatusQuery => "unreadable_status_query",
            BadMessage::StatusBusy => "status_busy",
            BadMessage::UnreadableSubmission => "unreadable_submission",
            BadMessage::Unanswered => "unanswered",
            BadMessage::Redirected => "redirected",
        }
    }
}

/// Every series of one master candidate. Clones share the series.
#[derive(Debug, Clone)]
pub struct MasterMetrics {
    pub leader: Gauge,
    pub epoch: Gauge,
    pub lease_renewals: Counter,
    pub lease_renewal_failures: Counter,
    pub journal_write_seconds: AtomicHistogram,
    pub journal_batch_events: AtomicHistogram,
    bad_messages: Family<[(&'static str, &'static str); 1], Counter>,
    pub workers: Gauge,
    pub worker_slots_free: Gauge,
    pub queues_unlisted: Gauge,
    pub queues: QueueFamilies,
    /// Times a queue reader doubted its deliveries and read its queue again (process series).
    pub intake_rereads: Counter,
}

/// The per-queue families (leader series).
#[derive(Debug, Clone)]
pub struct QueueFamilies {
    pub submitted: Family<QueueLabel, Counter>,
    pub accepted: Family<QueueLabel, Counter>,
    pub completed: Family<QueueLabel, Counter>,
    pub failed: Family<QueueLabel, Counter>,
    pub rejected: Family<QueueLabel, Counter>,
    pub cancelled: Family<QueueLabel, Counter>,
    pub pending: Family<QueueLabel, Gauge>,
    pub waiting: Family<QueueLabel, Gauge>,
    pub paused: Family<QueueLabel, Gauge>,
    pub in_flight: Family<QueueLabel, Gauge>,
    pub free_slots: Family<QueueLabel, Gauge>,
    pub workers: Family<QueueLabel, Gauge>,
    pub oldest_pending_seconds: Family<QueueLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub wait_seconds: Family<QueueLabel, AtomicHistogram, SecondsConstructor>,
    pub run_seconds: Family<QueueLabel, AtomicHistogram, SecondsConstructor>,
}

/// The constructor of per-queue duration histograms.
pub type SecondsConstructor = fn() -> AtomicHistogram;

/// The handles of one queue's series, resolved once per term so that the hot path does not
/// go through the families' locks.
#[derive(Debug, Clone)]
pub struct QueueSeries {
    pub submitted: Counter,
    pub accepted: Counter,
    pub completed: Counter,
    pub failed: Counter,
    pub rejected: Counter,
    pub cancelled: Counter,
    pub pending: Gauge,
    pub waiting: Gauge,
    pub paused: Gauge,
    pub in_flight: Gauge,
    pub free_slots: Gauge,
    pub workers: Gauge,
    pub oldest_pending_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub wait_seconds: AtomicHistogram,
    pub run_seconds: AtomicHistogram,
}

impl QueueFamilies {
    fn new() -> Self {
        let seconds: SecondsConstructor = AtomicHistogram::seconds;
        QueueFamilies {
            submitted: Family::default(),
            accepted: Family::default(),
            completed: Family::default(),
            failed: Family::default(),
            rejected: Family::default(),
            cancelled: Family::default(),
            pending: Family::default(),
            waiting: Family::default(),
            paused: Family::default(),
            in_flight: Family::default(),
            free_slots: Family::default(),
            workers: Family::default(),
            oldest_pending_seconds: Family::default(),
            wait_seconds: Family::new_with_constructor(seconds),
            run_seconds: Family::new_with_constructor(seconds),
        }
    }

    /// The series of `label`, created if new.
    pub fn series(&self, label: &QueueLabel) -> QueueSeries {
        QueueSeries {
            submitted: self.submitted.get_or_create_owned(label),
            accepted: self.accepted.get_or_create_owned(label),
            completed: self.completed.get_or_create_owned(label),
            failed: self.failed.get_or_create_owned(label),
            rejected: self.rejected.get_or_create_owned(label),
            cancelled: self.cancelled.get_or_create_owned(label),
            pending: self.pending.get_or_create_owned(label),
            waiting: self.waiting.get_or_create_owned(label),
            paused: self.paused.get_or_create_owned(label),
            in_flight: self.in_flight.get_or_create_owned(label),
            free_slots: self.free_slots.get_or_create_owned(label),
            workers: self.workers.get_or_create_owned(label),
            oldest_pending_seconds: self.oldest_pending_seconds.get_or_create_owned(label),
            wait_seconds: self.wait_seconds.get_or_create_owned(label),
            run_seconds: self.run_seconds.get_or_create_owned(label),
        }
    }

    /// Removes every queue's series (the term is over: a standby exports none).
    pub fn clear(&self) {
        self.submitted.clear();
        self.accepted.clear();
        self.completed.clear();
        self.failed.clear();
        self.rejected.clear();
        self.cancelled.clear();
        self.pending.clear();
        self.waiting.clear();
        self.paused.clear();
        self.in_flight.clear();
        self.free_slots.clear();
        self.workers.clear();
        self.oldest_pending_seconds.clear();
        self.wait_seconds.clear();
        self.run_seconds.clear();
    }
}

impl MasterMetrics {
    /// The series, and a registry that exports them.
    pub fn new() -> (Self, Registry) {
        let metrics = MasterMetrics {
            leader: Gauge::default(),
            epoch: Gauge::default(),
            lease_renewals: Counter::default(),
            lease_renewal_failures: Counter::default(),
            journal_write_seconds: AtomicHistogram::new(WRITE_SECONDS_BUCKETS),
            journal_batch_events: AtomicHistogram::new(COUNT_BUCKETS),
            bad_messages: Family::default(),
            workers: Gauge::default(),
            worker_slots_free: Gauge::default(),
            queues_unlisted: Gauge::default(),
            queues: QueueFamilies::new(),
            intake_rereads: Counter::default(),
        };
        // Every reason is listed from the start (at 0), so a rate over it is defined.
        for reason in BadMessage::ALL {
            drop(metrics.bad_messages.get_or_create(&[("reason", reason.label())]));
        }
        let mut registry = Registry::default();
        let format = [("journal_format", crate::journal::FORMAT.to_string())];
        register_build_info(&mut registry, "master", env!("CARGO_PKG_VERSION"), &format);
        let m = &metrics;
        let r = &mut registry;
        r.register(
            "jetwork_master_leader",
            "1 while this candidate leads, else 0",
            m.leader.clone(),
        );
        r.register(
            "jetwork_master_epoch",
            "Epoch of this candidate's current term (0 while standing by)",
            m.epoch.clone(),
        );
        r.register(
            "jetwork_master_lease_renewals",
            "Lease renewals confirmed",
            m.lease_renewals.clone(),
        );
        r.register(
            "jetwork_master_lease_renewal_failures",
            "Lease renewals that failed (retried, or the lease was lost)",
            m.lease_renewal_failures.clone(),
        );
        r.register(
            "jetwork_master_journal_write_seconds",
            "Journal write round trips, send to acknowledgement",
            m.journal_write_seconds.clone(),
        );
        r.register(
            "jetwork_master_journal_batch_events",
            "Events per journal write",
            m.journal_batch_events.clone(),
        );
        r.register(
            "jetwork_master_bad_messages",
            "Messages refused before any decision, by reason",
            m.bad_messages.clone(),
        );
        r.register(
            "jetwork_master_workers",
            "Workers registered with the leader (leader only)",
            m.workers.clone(),
        );
        r.register(
            "jetwork_master_worker_slots_free",
            "Free slots over all registered workers (leader only)",
            m.worker_slots_free.clone(),
        );
        r.register(
            "jetwork_master_queues_unlisted",
            "Queues beyond master.max_served_queues whose series are not exported (leader only)",
            m.queues_unlisted.clone(),
        );
        r.register(
            "jetwork_master_intake_rereads",
            "Times a queue reader doubted its deliveries (its connection reconnected, a delivery \
             went missing) and read the queue again from its position",
            m.intake_rereads.clone(),
        );
        let q = &m.queues;
        r.register(
            "jetwork_queue_submitted",
            "Submissions stored for the queue: accepted + rejected + unread in the stream",
            q.submitted.clone(),
        );
        r.register("jetwork_queue_accepted", "Submissions accepted as work", q.accepted.clone());
        r.register("jetwork_queue_completed", "Work items completed", q.completed.clone());
        r.register(
            "jetwork_queue_failed",
            "Work items failed for good (attempts used up)",
            q.failed.clone(),
        );
        r.register(
            "jetwork_queue_rejected",
            "Submissions rejected (invalid id, unreadable, id in flight)",
            q.rejected.clone(),
        );
        r.register(
            "jetwork_queue_cancelled",
            "Work items cancelled by an operator",
            q.cancelled.clone(),
        );
        r.register(
            "jetwork_queue_waiting",
            "Work items that failed and wait out their back-off before the next attempt",
            q.waiting.clone(),
        );
        r.register(
            "jetwork_queue_paused",
            "1 while an operator has paused the queue",
            q.paused.clone(),
        );
        r.register(
            "jetwork_queue_pending",
            "Work waiting to start: read ahead or re-queued, plus unread in the stream",
            q.pending.clone(),
        );
        r.register("jetwork_queue_in_flight", "Attempts running on workers", q.in_flight.clone());
        r.register(
            "jetwork_queue_free_slots",
            "Free slots of the workers serving the queue",
            q.free_slots.clone(),
        );
        r.register(
            "jetwork_queue_workers",
            "Registered workers serving the queue",
            q.workers.clone(),
        );
        r.register(
            "jetwork_queue_oldest_pending_seconds",
            "Age of the oldest work waiting to start",
            q.oldest_pending_seconds.clone(),
        );
        r.register(
            "jetwork_queue_wait_seconds",
            "Time from submission (stored) to an attempt's start",
            q.wait_seconds.clone(),
        );
        r.register(
            "jetwork_queue_run_seconds",
            "Time from an attempt's start to its result (completed or failed for good)",
            q.run_seconds.clone(),
        );
        (metrics, registry)
    }

    /// Counts a message refused for `reason`.
    pub fn bad_message(&self, reason: BadMessage) {
        self.bad_messages.get_or_create(&[("reason", reason.label())]).inc();
    }

    /// This candidate leads in `epoch`.
    pub fn leading(&self, epoch: u64) {
        self.leader.set(1);
        self.epoch.set(i64::try_from(epoch).unwrap_or(i64::MAX));
    }

    /// This candidate's term is over: the leader series go.
    pub fn standing_by(&self) {
        self.leader.set(0);
        self.epoch.set(0);
        self.workers.set(0);
        self.worker_slots_free.set(0);
        self.queues_unlisted.set(0);
        self.queues.clear();
    }
}
