//! [`ManualWorker`]: the worker protocol spoken by hand over plain NATS requests, as a worker
//! written in another language would, so tests can lose acknowledgements, report stale
//! attempts, or watch what the master sends a worker.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use jetwork_shared::protocol::{
    Assignment, Outcome, OutcomeStatus, RegisterWorker, Registered, Report, RequestWork, WorkGrant,
};
use jetwork_shared::{codec, headers, subjects, Login, QueueName, Token, WorkId, WorkerId};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::poll_for;

/// A worker driven by hand.
pub struct ManualWorker {
    pub nats: async_nats::Client,
    pub id: WorkerId,
    pub session: Token,
    /// The login its requests come under (their subjects carry it), if any.
    pub login: Option<Login>,
    /// The token of every attempt handed to it.
    tokens: Mutex<HashMap<(WorkId, u32), Token>>,
}

impl ManualWorker {
    pub fn new(nats: async_nats::Client, id: &str) -> anyhow::Result<Self> {
        let id = WorkerId::parse(id)?;
        Ok(ManualWorker {
            nats,
            id,
            session: Token::random(),
            login: None,
            tokens: Mutex::default(),
        })
    }

    /// A worker whose requests come under `login` (`<endpoint>.<login>.<id>`).
    pub fn with_login(nats: async_nats::Client, login: &str, id: &str) -> anyhow::Result<Self> {
        let mut worker = ManualWorker::new(nats, id)?;
        worker.login = Some(Login::parse(login)?);
        Ok(worker)
    }

    /// The subject of a worker endpoint for this worker (under its login, if it has one).
    pub fn subject(&self, endpoint: &str) -> String {
        match &self.login {
            Some(login) => subjects::worker_endpoint(endpoint, login, &self.id),
            None => endpoint.to_owned(),
        }
    }

    /// One request; a service error comes back as `Err("service error: <code> …")`.
    pub async fn call<T: Serialize, R: DeserializeOwned>(
        &self,
        subject: &str,
        body: &T,
    ) -> anyhow::Result<R> {
        let reply = self.nats.request(subject.to_owned(), codec::encode(body)?).await?;
        if let Some(error) = reply.headers.as_ref().and_then(|h| h.get(headers::NATS_SERVICE_ERROR))
        {
            anyhow::bail!("service error: {error}");
        }
        Ok(codec::decode(&reply.payload)?)
    }

    /// Registers for the default queue with 4 slots.
    pub async fn register(&self) -> anyhow::Result<Registered> {
        self.register_for(vec![QueueName::default_queue()], 4).await
    }

    /// Registers for `queues` with `capacity` slots.
    pub async fn register_for(
        &self,
        queues: Vec<QueueName>,
        capacity: u32,
    ) -> anyhow::Result<Registered> {
        let msg = RegisterWorker {
            worker_id: self.id.clone(),
            session: self.session,
            queues,
            capacity,
            running: vec![],
        };
        self.call(&self.subject(subjects::MASTER_REGISTER), &msg).await
    }

    /// Asks for up to `slots` items, without waiting.
    pub async fn request(&self, slots: u32) -> anyhow::Result<WorkGrant> {
        let grant: WorkGrant =
            self.call(&self.subject(subjects::MASTER_REQUEST), &self.long_poll(slots, 0)).await?;
        self.remember(&grant.assignments);
        Ok(grant)
    }

    pub fn long_poll(&self, slots: u32, wait_ms: u64) -> RequestWork {
        RequestWork {
            worker_id: self.id.clone(),
            session: self.session,
            slots,
            wait_ms,
            running: None,
        }
    }

    pub fn remember(&self, assignments: &[Assignment]) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        for a in assignments {
            tokens.insert((a.work_id.clone(), a.attempt), a.token);
        }
    }

    /// A report of one outcome, with the attempt's token.
    pub fn report(
        &self,
        work_id: &WorkId,
        attempt: u32,
        status: OutcomeStatus,
        result: &str,
    ) -> Report {
        self.report_outcome(work_id, attempt, status, result, false)
    }

    /// A report of one outcome; `non_retryable` marks a failure retrying cannot help.
    pub fn report_outcome(
        &self,
        work_id: &WorkId,
        attempt: u32,
        status: OutcomeStatus,
        result: &str,
        non_retryable: bool,
    ) -> Report {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        let token = tokens.get(&(work_id.clone(), attempt)).copied().unwrap_or_default();
        Report {
            worker_id: self.id.clone(),
            session: self.session,
            outcomes: vec![Outcome {
                work_id: work_id.clone(),
                attempt,
                token,
                status,
                result: Bytes::from(result.to_owned()),
                reason: Some("manual".into()),
                non_retryable,
            }],
            slots: 0,
            running: None,
        }
    }

    /// Asks until the grant holds something (work is read from the stream asynchronously).
    pub async fn take(&self) -> anyhow::Result<Assignment> {
        poll_for("a grant with work", Duration::from_secs(20), || async {
            self.request(1).await.ok().and_then(|g| g.assignments.into_iter().next())
        })
        .await
    }
}
