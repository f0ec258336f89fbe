//! The leader's view of queues and workers for `jetwork.master.status`, built from the state.
//! Bounded whatever the number of workers: the workers are paged by the query, each lists at
//! most [`StatusQuery::MAX_RUNNING`] running items, and the totals go beside the lists.

use std::collections::BTreeMap;

use jetwork_shared::jobs::{JobInfo, JobState};
use jetwork_shared::protocol::{
    QueueStatus, RunningStatus, StatusQuery, StatusReport, WorkerStatus,
};
use jetwork_shared::{QueueName, WorkId};

use super::{Millis, State};

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
                pending: q.ready.len() as u64,
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
        let state = match (&work.running, work.waiting_until) {
            (Some(_), _) => JobState::Running,
            (None, Some(_)) => JobState::Waiting,
            (None, None) => JobState::Ready,
        };
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
        })
    }
}
