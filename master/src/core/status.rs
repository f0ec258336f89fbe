//! The leader's view of queues and workers for `jetwork.master.status`, built from the state.
//! Bounded whatever the number of workers: the workers are paged by the query, each lists at
//! most [`StatusQuery::MAX_RUNNING`] running items, and the totals go beside the lists. Also
//! one job, and pages of the jobs in flight (`jetwork.master.job`, `jetwork.master.jobs`).

use std::collections::BTreeMap;

use jetwork_shared::job_options::JobOptions;
use jetwork_shared::jobs::{JobInfo, JobState};
use jetwork_shared::protocol::{
    QueueStatus, RunningStatus, StatusQuery, StatusReport, WorkerStatus,
};
use jetwork_shared::{QueueName, WorkId};

use super::{Millis, Publication, PublicationKey, State, Work};

impl State {
    /// The leader's view for `jetwork.master.status`: every queue it reads (the runtime adds
    /// the queues nobody serves, pages them and adds what is still unread in the stream to
    /// `pending`, which here counts only the items read ahead), and the page of workers the
    /// query asks for, each listing at most [`StatusQuery::MAX_RUNNING`] running items.
    pub fn status(&self, now: Millis, query: StatusQuery) -> StatusReport {
        let query = query.capped();
        let mut in_progress: BTreeMap<&QueueName, u64> = BTreeMap::new();
        let mut waiting: BTreeMap<&QueueName, u64> = BTreeMap::new();
        for work in self.work.values() {
            if work.running.is_some() {
                *in_progress.entry(&work.queue).or_default() += 1;
            } else if work.waiting_until.is_some() {
                *waiting.entry(&work.queue).or_default() += 1;
            }
        }
        let queues = self
            .queues
            .iter()
            .map(|(name, q)| QueueStatus {
                queue: name.clone(),
                pending: q.ready_count() as u64,
                in_progress: in_progress.get(name).copied().unwrap_or(0),
                completed: q.completed,
                failed: q.failed,
                rejected: q.rejected,
                waiting: waiting.get(name).copied().unwrap_or(0),
                cancelled: q.cancelled,
                paused: q.paused,
            })
            .collect();
        let workers = self
            .workers
            .iter()
            .skip(query.workers_offset as usize)
            .take(query.workers_limit as usize)
            .map(|(id, w)| WorkerStatus {
                worker_id: id.clone(),
                queues: w.queues.clone(),
                capacity: w.capacity,
                last_seen_ago_ms: now.saturating_sub(w.last_seen),
                running_total: w.running.len() as u64,
                running: w
                    .running
                    .iter()
                    .take(StatusQuery::MAX_RUNNING)
                    .filter_map(|work_id| {
                        let work = self.work.get(work_id)?;
                        Some(RunningStatus {
                            work_id: work_id.clone(),
                            queue: work.queue.clone(),
                            attempt: work.attempt,
                            deadline_ms: work.running.as_ref().map_or(0, |r| r.deadline),
                        })
                    })
                    .collect(),
            })
            .collect();
        StatusReport {
            leader: self.leader.clone(),
            epoch: self.epoch,
            now_ms: now,
            queues_total: self.queues.len() as u64,
            queues,
            workers_total: self.workers.len() as u64,
            workers,
        }
    }

    /// One job the master holds, for `jetwork.master.job`: where it is and its attempts so
    /// far. `None` if it is not in flight (finished: its stored outcome tells the rest).
    pub fn job(&self, work_id: &WorkId) -> Option<JobInfo> {
        let work = self.work.get(work_id)?;
        let state = job_state(work);
        // Why the previous attempt ended: why it is waiting, or why this attempt exists.
        let reason = work.last_error.clone();
        Some(JobInfo {
            work_id: work_id.clone(),
            queue: work.queue.clone(),
            state,
            submit_seq: work.seq,
            attempts: work.attempt,
            ready_at_ms: work.waiting_until,
            reason,
            finished_ms: None,
            history: work.history.clone(),
            options: work.options,
        })
    }

    /// A job that has finished but whose outcome is not stored yet (the publication follows
    /// the journal write): read from the publication waiting to go out, so `jetwork.master.job`
    /// asked right after a cancel or a result sees the outcome rather than "unknown". Not
    /// part of [`job`](Self::job), which the engine's decisions read (a retry of such a job
    /// must wait for its outcome to be stored).
    pub fn finished_unpublished(&self, work_id: &WorkId) -> Option<JobInfo> {
        let publication = self.unpublished.get(&PublicationKey::Result(work_id.clone()))?;
        let (state, queue, seq, attempt, reason, history, options) = match publication {
            Publication::Completed { queue, seq, attempt, history, .. } => {
                (JobState::Completed, queue, seq, attempt, None, history, JobOptions::default())
            }
            Publication::Failed { queue, seq, attempt, reason, history, options, .. } => {
                (JobState::Failed, queue, seq, attempt, Some(reason), history, *options)
            }
            Publication::Cancelled { queue, seq, attempt, reason, history, options, .. } => {
                (JobState::Cancelled, queue, seq, attempt, Some(reason), history, *options)
            }
            Publication::Rejected { .. } => return None,
        };
        Some(JobInfo {
            work_id: work_id.clone(),
            queue: queue.clone(),
            state,
            submit_seq: *seq,
            attempts: *attempt,
            ready_at_ms: None,
            reason: reason.cloned(),
            finished_ms: history.last().map(|a| a.ended_ms).filter(|at| *at > 0),
            history: history.clone(),
            options,
        })
    }

    /// The jobs the master holds (ready, waiting or running), for `jetwork.master.jobs`:
    /// those of `queue` (all queues if `None`) in `state` (any if `None`), newest submission
    /// first, at most `limit`.
    pub fn jobs(
        &self,
        queue: Option<&QueueName>,
        state: Option<JobState>,
        limit: usize,
    ) -> Vec<JobInfo> {
        let mut matching: Vec<(u64, &WorkId)> = self
            .work
            .iter()
            .filter(|(_, w)| queue.is_none_or(|q| &w.queue == q))
            .filter(|(_, w)| state.is_none_or(|s| job_state(w) == s))
            .map(|(id, w)| (w.seq, id))
            .collect();
        // Only the page is sorted: a long backlog of waiting jobs costs a partition, not a sort.
        let by_newest = |a: &(u64, &WorkId), b: &(u64, &WorkId)| b.0.cmp(&a.0);
        if matching.len() > limit && limit > 0 {
            matching.select_nth_unstable_by(limit - 1, by_newest);
        }
        matching.truncate(limit);
        matching.sort_unstable_by(by_newest);
        matching.into_iter().filter_map(|(_, id)| self.job(id)).collect()
    }
}

/// Where an in-flight job is.
fn job_state(work: &Work) -> JobState {
    match (&work.running, work.waiting_until) {
        (Some(_), _) => JobState::Running,
        (None, Some(_)) => JobState::Waiting,
        (None, None) => JobState::Ready,
    }
}
