//! [`Observer`]: what the leader shows about its work, derived from the engine's events and
//! state after each step, outside the pure core (which has no clock and no metrics).
//!
//! - **Per event** (only when metrics are on or debug logging is enabled; otherwise nothing):
//!   the job decisions at debug level (accepted, started, requeued, completed), each
//!   with `work_id`, `queue`, `attempt` and `worker` as plain fields; the queue-wait histogram
//!   when an item first starts (stored → start) and the run-time histogram when it finishes
//!   (start → result). An attempt's start is its `deadline − work_timeout`, the instant the
//!   engine decided it. Timings ride in the payload cache's entries, so a job costs a hash
//!   lookup and a few atomic operations, no allocation.
//! - **Once a second** ([`Observer::sync`]): the per-queue counts are copied from the state
//!   (the journal's counters, so they survive takeovers), with the gauges (pending, in flight,
//!   free slots, workers serving each queue, oldest pending age, workers), and the job totals
//!   `$SRV.STATS.jetwork` reports ([`ServiceStats`], kept whether or not metrics are on).
//! - **Every [`SURVEY_EVERY`]** (metrics on): what is still unread in `JETWORK_SUBMIT` per queue
//!   (`backlog.rs`; at most `backlog::SURVEY_BUDGET` queues a round, in turn), in a task off
//!   the loop, back as [`Internal::Survey`].
//!
//! Bounded: series for at most `max_served_queues` queues (by name; the rest are counted in
//! `jetwork_master_queues_unlisted`), the stats list at most [`STATS_QUEUES`] queues.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use jetwork_shared::clock::now_ms;
use jetwork_shared::observe::queue_label;
use jetwork_shared::{QueueName, WorkId};
use serde::Serialize;

use super::cache::{PayloadCache, Started};
use super::{Internal, Leader};
use crate::backlog::{self, Survey, Unread};
use crate::core::{Engine, Event, Millis, Publication, PublicationKey, State};
use crate::metrics::{MasterMetrics, QueueSeries};

/// How often the derived numbers are refreshed.
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// How often the stream is asked what is still unread.
pub const SURVEY_EVERY: Duration = Duration::from_secs(5);
/// Most queues listed in `$SRV.STATS` endpoint data.
pub const STATS_QUEUES: usize = 100;

/// The job totals the service's `$SRV.STATS` data reports, refreshed once a second.
pub type ServiceStats = Arc<Mutex<serde_json::Value>>;

/// One queue in the stats data.
#[derive(Debug, Default, Serialize)]
struct QueueStats {
    accepted: u64,
    completed: u64,
    failed: u64,
    cancelled: u64,
    rejected: u64,
    ready: u64,
    /// Waiting out a retry back-off.
    waiting: u64,
    in_flight: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    paused: bool,
}

/// The leader's observations for one term.
pub struct Observer {
    metrics: Option<MasterMetrics>,
    /// Handles of the queues that have series (at most `max_queues`).
    series: HashMap<QueueName, QueueSeries>,
    max_queues: usize,
    work_timeout: Millis,
    last_sync: Instant,
    last_survey: Instant,
    surveying: bool,
    unread: BTreeMap<QueueName, Unread>,
    /// Where the next survey goes on (see `backlog.rs`: each reads a bounded part).
    survey_after: Option<QueueName>,
    pub stats: ServiceStats,
}

impl Observer {
    /// For a term; `metrics` is `None` when they are off.
    pub fn new(metrics: Option<MasterMetrics>, max_queues: usize, work_timeout: Millis) -> Self {
        let long_ago = Instant::now().checked_sub(SURVEY_EVERY).unwrap_or_else(Instant::now);
        Observer {
            metrics,
            series: HashMap::new(),
            max_queues,
            work_timeout,
            last_sync: long_ago,
            last_survey: long_ago,
            surveying: false,
            unread: BTreeMap::new(),
            survey_after: None,
            stats: Arc::new(Mutex::new(serde_json::json!({}))),
        }
    }

    /// The series of `queue`, created on first sight while under the cap.
    fn series_of(&mut self, queue: &QueueName) -> Option<&QueueSeries> {
        let metrics = self.metrics.as_ref()?;
        if !self.series.contains_key(queue) {
            if self.series.len() >= self.max_queues {
                return None;
            }
            let series = metrics.queues.series(&queue_label(queue));
            self.series.insert(queue.clone(), series);
        }
        self.series.get(queue)
    }

    /// Observes the events one step produced (`state` is the state after them).
    pub fn events(&mut self, events: &[Event], state: &State, cache: &mut PayloadCache) {
        let debug = tracing::enabled!(tracing::Level::DEBUG);
        if self.metrics.is_none() && !debug {
            return;
        }
        for event in events {
            match event {
                Event::WorkAccepted { work_id, queue, seq, .. } => {
                    tracing::debug!(%work_id, %queue, seq, "work accepted");
                }
                Event::WorkStarted { work_id, worker, attempt, deadline, .. } => {
                    let Some(queue) = state.work.get(work_id).map(|w| &w.queue) else { continue };
                    let at = deadline.saturating_sub(self.work_timeout);
                    let series = self.series_of(queue);
                    let run = series.map(|s| s.run_seconds.clone());
                    let wait = series.map(|s| s.wait_seconds.clone());
                    let worker_kept = debug.then(|| worker.clone());
                    let stored = cache.started(work_id, Started { at, run, worker: worker_kept });
                    if let (Some(wait), Some(stored)) = (wait, stored) {
                        wait.observe_millis(at.saturating_sub(stored));
                    }
                    tracing::debug!(%work_id, %queue, attempt, %worker, "work started");
                }
                Event::WorkRequeued { work_id, attempt, reason, .. } if debug => {
                    let queue = state.work.get(work_id).map(|w| w.queue.as_str());
                    let worker = worker_of(cache, work_id);
                    let queue = queue.unwrap_or_default();
                    tracing::debug!(%work_id, queue, attempt, worker, %reason, "work requeued");
                }
                Event::WorkCompleted { work_id, attempt, at, .. } => {
                    finished(cache, work_id, *at);
                    if debug {
                        let (queue, worker) =
                            (queue_of_finished(state, work_id), worker_of(cache, work_id));
                        tracing::debug!(%work_id, queue, attempt, worker, "work completed");
                    }
                }
                // Logged at info by `outcome_log.rs`, as are cancellations and rejections.
                Event::WorkFailed { work_id, at, .. } => finished(cache, work_id, *at),
                _ => {}
            }
        }
    }

    /// Whether the derived numbers are due for a refresh.
    pub fn sync_due(&self) -> bool {
        self.last_sync.elapsed() >= SYNC_EVERY
    }

    /// Refreshes the derived numbers from the engine's state.
    pub fn sync(&mut self, engine: &Engine, cache: &PayloadCache) {
        self.last_sync = Instant::now();
        let state = engine.state();
        // Attempts running, and items waiting out a back-off, per queue.
        let mut in_flight: HashMap<&QueueName, (u64, u64)> = HashMap::new();
        for work in state.work.values() {
            let counts = in_flight.entry(&work.queue).or_default();
            if work.running.is_some() {
                counts.0 += 1;
            } else if work.waiting_until.is_some() {
                counts.1 += 1;
            }
        }
        self.sync_stats(state, &in_flight);
        let Some(metrics) = self.metrics.clone() else { return };
        let now = now_ms();
        let listed: Vec<&QueueName> = state.queues.keys().take(self.max_queues).collect();
        // Registered workers per queue they serve (a queue with a backlog and none is stuck).
        let mut serving: HashMap<&QueueName, u64> = HashMap::new();
        for worker in state.workers.values() {
            for queue in &worker.queues {
                *serving.entry(queue).or_default() += 1;
            }
        }
        metrics.queues_unlisted.set(i64::try_from(state.queues.len() - listed.len()).unwrap_or(0));
        for name in listed {
            let q = &state.queues[name];
            let unread = self.unread.get(name).copied().unwrap_or_default();
            // The oldest pending item: the first read ahead (re-queued items go first), else
            // the oldest unread one.
            let oldest = q
                .ready
                .front()
                .or(q.next())
                .and_then(|id| cache.submitted(id))
                .or((unread.oldest_ms > 0).then_some(unread.oldest_ms));
            let free = engine.free_slots(name);
            let Some(s) = self.series_of(name) else { continue };
            store(&s.accepted, q.accepted);
            store(&s.completed, q.completed);
            store(&s.failed, q.failed);
            store(&s.rejected, q.rejected);
            store(&s.cancelled, q.cancelled);
            store(&s.submitted, q.accepted + q.rejected + unread.count);
            let (running, waiting) = in_flight.get(name).copied().unwrap_or_default();
            s.pending.set(to_i64(q.ready_count() as u64 + unread.count));
            s.waiting.set(to_i64(waiting));
            s.paused.set(i64::from(q.paused));
            s.in_flight.set(to_i64(running));
            s.free_slots.set(to_i64(free));
            s.workers.set(to_i64(serving.get(name).copied().unwrap_or_default()));
            s.oldest_pending_seconds
                .set(oldest.map_or(0.0, |t| now.saturating_sub(t) as f64 / 1000.0));
        }
        // Queues with submissions that the leader has never read (nobody serves them: their
        // `jetwork_queue_workers` stays 0).
        let unserved: Vec<(QueueName, Unread)> = self
            .unread
            .iter()
            .filter(|(q, _)| !state.queues.contains_key(*q))
            .map(|(q, u)| (q.clone(), *u))
            .collect();
        for (name, unread) in unserved {
            let Some(s) = self.series_of(&name) else { continue };
            store(&s.submitted, unread.count);
            s.pending.set(to_i64(unread.count));
            let age = (unread.oldest_ms > 0).then(|| now.saturating_sub(unread.oldest_ms));
            s.oldest_pending_seconds.set(age.map_or(0.0, |a| a as f64 / 1000.0));
        }
        metrics.workers.set(to_i64(state.workers.len() as u64));
        metrics.worker_slots_free.set(to_i64(engine.free_slots_total()));
    }

    /// The job totals for `$SRV.STATS`.
    fn sync_stats(&self, state: &State, in_flight: &HashMap<&QueueName, (u64, u64)>) {
        let mut total = QueueStats::default();
        let mut queues = serde_json::Map::new();
        for (name, q) in &state.queues {
            let (running, waiting) = in_flight.get(name).copied().unwrap_or_default();
            let stats = QueueStats {
                accepted: q.accepted,
                completed: q.completed,
                failed: q.failed,
                cancelled: q.cancelled,
                rejected: q.rejected,
                ready: q.ready_count() as u64,
                waiting,
                in_flight: running,
                paused: q.paused,
            };
            total.accepted += stats.accepted;
            total.completed += stats.completed;
            total.failed += stats.failed;
            total.cancelled += stats.cancelled;
            total.rejected += stats.rejected;
            total.ready += stats.ready;
            total.waiting += stats.waiting;
            total.in_flight += stats.in_flight;
            if queues.len() < STATS_QUEUES {
                queues.insert(name.to_string(), serde_json::json!(stats));
            }
        }
        let value = serde_json::json!({
            "epoch": state.epoch,
            "leader": state.leader,
            "workers": state.workers.len(),
            "jobs": total,
            "queues": queues,
            "queues_total": state.queues.len(),
        });
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner) = value;
    }

    /// The survey's findings: the queues it read are updated, the others it knows of keep
    /// their figures, and those it no longer knows of are dropped.
    pub fn surveyed(&mut self, survey: Survey) {
        self.surveying = false;
        let mut before = std::mem::take(&mut self.unread);
        for (queue, found) in survey.queues {
            if let Some(unread) = found.or_else(|| before.remove(&queue)) {
                self.unread.insert(queue, unread);
            }
        }
        if survey.last.is_some() {
            self.survey_after = survey.last;
        }
    }
}

/// Records the run time of the attempt that finished `work_id` at `at`.
fn finished(cache: &PayloadCache, work_id: &WorkId, at: Millis) {
    if let Some(Started { at: started, run: Some(run), .. }) = cache.start_of(work_id) {
        run.observe_millis(at.saturating_sub(*started));
    }
}

/// The worker of `work_id`'s latest attempt, as kept for debug lines ("" if unknown).
fn worker_of<'a>(cache: &'a PayloadCache, work_id: &WorkId) -> &'a str {
    cache.start_of(work_id).and_then(|s| s.worker.as_ref()).map_or("", |w| w.as_str())
}

/// The queue of a completed item, for its debug line: it has left the state, and its
/// publication names the queue. Only called with debug logging on (it clones the id).
fn queue_of_finished<'a>(state: &'a State, work_id: &WorkId) -> &'a str {
    match state.unpublished.get(&PublicationKey::Result(work_id.clone())) {
        Some(Publication::Completed { queue, .. }) => queue.as_str(),
        _ => "",
    }
}

fn store(counter: &prometheus_client::metrics::counter::Counter, value: u64) {
    counter.inner().store(value, std::sync::atomic::Ordering::Relaxed);
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Leader {
    /// Observes the events just stepped.
    pub(super) fn observe(&mut self, events: &[Event]) {
        self.observer.events(events, self.engine.state(), &mut self.cache);
    }

    /// On a tick: refreshes the derived numbers when due, and starts a survey of the stream.
    pub(super) fn maybe_sync_observations(&mut self) {
        if self.observer.sync_due() {
            self.observer.sync(&self.engine, &self.cache);
        }
        let o = &mut self.observer;
        if o.metrics.is_none() || o.surveying || o.last_survey.elapsed() < SURVEY_EVERY {
            return;
        }
        o.surveying = true;
        o.last_survey = Instant::now();
        let positions = self.engine.state().read_positions(o.max_queues);
        let (js, internal, limit) = (self.env.js.clone(), self.internal_tx.clone(), o.max_queues);
        let after = o.survey_after.clone();
        tokio::spawn(async move {
            let survey =
                backlog::survey(&js, positions, limit, after.as_ref(), backlog::SURVEY_BUDGET)
                    .await;
            let _ = internal.send(Internal::Survey(survey));
        });
    }
}
