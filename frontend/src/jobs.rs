//! Managing jobs: one job's state and history (`jetwork.master.job`), lists of jobs by queue
//! and state (`jetwork.master.jobs`), and the operator's
//! requests (`jetwork.admin.*`: cancel, retry, retry-all, purge, pause, resume, schedule
//! add/rm), and the list of recurring schedules (`jetwork.master.schedules`). Each is one NATS
//! request to
//! the leading master; a refusal comes back as [`JobsError::Refused`] with the master's code
//! and reason (404 unknown, 409 wrong state, 400 malformed), so callers can tell "no such
//! job" from "no master".

use std::time::Duration;

use bytes::Bytes;
use jetwork_shared::backoff::Backoff;
use jetwork_shared::jobs::{
    AdminReply, BulkRetry, BulkRetryReply, JobInfo, JobRequest, JobsPage, JobsQuery, PurgeReply,
    QueueRequest,
};
use jetwork_shared::schedules::{ScheduleAdd, ScheduleName, ScheduleRemove, SchedulesPage};
use jetwork_shared::{headers, subjects, QueueName, WorkId};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::Client;

/// Why a job request did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    /// The master answered and refused (`code` as in `docs/protocol.md`).
    #[error("{reason} ({code})")]
    Refused { code: u16, reason: String },
    /// No master answered (none leads, or a failover is under way): what the lease says
    /// about it.
    #[error("{0}")]
    NoMaster(String),
    /// NATS refused this user the request (or the inbox for its reply): the server's words
    /// and which role has the permission.
    #[error(transparent)]
    Denied(#[from] jetwork_shared::connect::Denied),
    #[error("unreadable reply: {0}")]
    Reply(String),
}

impl JobsError {
    /// The master's code for a refusal.
    pub fn code(&self) -> Option<u16> {
        match self {
            JobsError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl Client {
    /// One job's state and attempt history, from the master (in flight) or the results
    /// stream (finished). `queue` narrows the search for a finished job.
    pub async fn job(
        &self,
        work_id: &WorkId,
        queue: Option<&QueueName>,
    ) -> Result<JobInfo, JobsError> {
        let request = JobRequest { work_id: work_id.clone(), queue: queue.cloned(), reason: None };
        self.ask(subjects::MASTER_JOB, &request).await
    }

    /// Jobs of `query.queue` (or every queue) in `query.state` (or any): those in flight
    /// first, newest submission first, then finished ones, newest outcome first.
    pub async fn jobs(&self, query: &JobsQuery) -> Result<JobsPage, JobsError> {
        self.ask(subjects::MASTER_JOBS, query).await
    }

    /// Cancels a job the master holds (ready, waiting or running).
    pub async fn cancel(
        &self,
        work_id: &WorkId,
        reason: Option<String>,
    ) -> Result<AdminReply, JobsError> {
        let request = JobRequest { work_id: work_id.clone(), queue: None, reason };
        self.ask(subjects::ADMIN_CANCEL, &request).await
    }

    /// Submits a failed or cancelled job again under its id.
    pub async fn retry(
        &self,
        work_id: &WorkId,
        queue: Option<&QueueName>,
    ) -> Result<AdminReply, JobsError> {
        let request = JobRequest { work_id: work_id.clone(), queue: queue.cloned(), reason: None };
        self.ask(subjects::ADMIN_RETRY, &request).await
    }

    /// Submits every failed (or cancelled, per `request.state`) job of a queue again, newest
    /// outcome first, at most `request.limit`; the reply counts what was retried and skipped.
    pub async fn retry_all(&self, request: &BulkRetry) -> Result<BulkRetryReply, JobsError> {
        self.ask(subjects::ADMIN_RETRY_ALL, request).await
    }

    /// Cancels all pending work of `queue`: the jobs the master holds ready or waiting now,
    /// and every submission still unread in its backlog (each stored as `cancelled` as it is
    /// read). Running jobs are left to finish.
    pub async fn purge(&self, queue: &QueueName) -> Result<PurgeReply, JobsError> {
        self.ask(subjects::ADMIN_PURGE, &QueueRequest { queue: queue.clone() }).await
    }

    /// Stops handing out `queue`'s work (`paused`), or starts again.
    pub async fn pause(&self, queue: &QueueName, paused: bool) -> Result<AdminReply, JobsError> {
        let subject = if paused { subjects::ADMIN_PAUSE } else { subjects::ADMIN_RESUME };
        self.ask(subject, &QueueRequest { queue: queue.clone() }).await
    }

    /// Adds a recurring schedule (409 if the name is taken; 400 for a bad cadence or a payload
    /// over the master's limit).
    pub async fn schedule_add(&self, add: &ScheduleAdd) -> Result<AdminReply, JobsError> {
        self.ask(subjects::ADMIN_SCHEDULE_ADD, add).await
    }

    /// Removes a recurring schedule (404 if there is none by that name).
    pub async fn schedule_rm(&self, name: &ScheduleName) -> Result<AdminReply, JobsError> {
        self.ask(subjects::ADMIN_SCHEDULE_RM, &ScheduleRemove { name: name.clone() }).await
    }

    /// The recurring schedules, by name.
    pub async fn schedules(&self) -> Result<SchedulesPage, JobsError> {
        self.ask(subjects::MASTER_SCHEDULES, &serde_json::json!({})).await
    }

    /// One JSON request to the master, its JSON reply or its refusal. A refusal the master
    /// says will pass (503 "… retry shortly": it is busy, or a job's outcome is still being
    /// stored) is asked again, a little later, until `nats.request_timeout` has passed; any
    /// other refusal is final and returned at once.
    async fn ask<Q: Serialize, A: DeserializeOwned>(
        &self,
        subject: &str,
        request: &Q,
    ) -> Result<A, JobsError> {
        let body =
            Bytes::from(serde_json::to_vec(request).map_err(|e| JobsError::Reply(e.to_string()))?);
        let wait = self.settings().nats.request_timeout.max(Duration::from_secs(1));
        let until = tokio::time::Instant::now() + wait;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        loop {
            let answer = self.ask_once(subject, body.clone(), wait).await;
            let delay = backoff.next_delay();
            match answer {
                Err(JobsError::Refused { code: 503, reason })
                    if reason.ends_with("retry shortly")
                        && tokio::time::Instant::now() + delay < until =>
                {
                    tokio::time::sleep(delay).await;
                }
                answer => return answer,
            }
        }
    }

    async fn ask_once<A: DeserializeOwned>(
        &self,
        subject: &str,
        body: Bytes,
        wait: Duration,
    ) -> Result<A, JobsError> {
        let request = async_nats::Request::new().payload(body).timeout(Some(wait));
        let sent = self.nats().send_request(subject.to_owned(), request);
        let reply = match self.unless_denied(subject, sent).await? {
            Ok(reply) => reply,
            Err(e) => {
                let why = crate::no_leader::request_failure(&e);
                return Err(JobsError::NoMaster(self.no_master(subject, &why).await));
            }
        };
        if let Some(reply_headers) = reply.headers.as_ref() {
            if let Some(reason) = reply_headers.get(headers::NATS_SERVICE_ERROR) {
                let code = reply_headers
                    .get(headers::NATS_SERVICE_ERROR_CODE)
                    .and_then(|c| c.as_str().parse().ok())
                    .unwrap_or(500);
                return Err(JobsError::Refused { code, reason: reason.as_str().to_owned() });
            }
        }
        serde_json::from_slice(&reply.payload).map_err(|e| JobsError::Reply(e.to_string()))
    }
}
