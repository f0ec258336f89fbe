//! The leader's endpoints (a NATS micro service named `jetwork`: group `jetwork.master` for
//! workers and read-only queries, group `jetwork.admin` for operators), and the requests
//! waiting for the journal write their reply depends on.
//!
//! Each master candidate serves in a queue group of its own: a deposed leader that is frozen
//! but still subscribed must not take requests away from its successor. Each request reaches
//! every subscribed master, and the requester keeps the first reply, the live leader's.
//!
//! Anything anyone sends is decoded before a command exists: garbage is answered 400 with the
//! reason at once (logged at most once a second). Every request that changes something
//! (workers', operators') becomes a command the engine decides; only the read-only views are
//! answered here: status off the loop, at most [`STATUS_IN_FLIGHT`] at a time, one job's
//! lookup and job listings off the loop too, at most [`VIEWS_IN_FLIGHT`], and the schedules
//! from the state at once (at most `master.max_schedules` of them, a few microseconds each).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};

use async_nats::jetstream;
use async_nats::service::{self, Request, ServiceExt};
use futures::stream::{select_all, BoxStream, SelectAll};
use futures::StreamExt;
use jetwork_shared::clock::now_ms;
use jetwork_shared::jobs::{BulkRetry, JobRequest, JobState, JobsPage, JobsQuery, QueueRequest};
use jetwork_shared::log_limit::LogLimit;
use jetwork_shared::protocol::{Deregister, RegisterWorker, RequestWork, StatusQuery};
use jetwork_shared::report_entries::ReceivedReport;
use jetwork_shared::schedules::{ScheduleAdd, ScheduleRemove, SchedulesPage};
use jetwork_shared::{codec, subjects, Login, QueueName, Unavailable, WorkId, WorkerId};

use super::observe::ServiceStats;
use super::Env;
use crate::core::{Cadence, Command, Engine, Millis, RequestId, State};
use crate::metrics::{BadMessage, MasterMetrics};
use crate::{housekeeping, jobs};

/// Status requests worked on at once.
const STATUS_IN_FLIGHT: usize = 2;
/// Read-only views of jobs (one job, a listing) worked on at once (each reads the results stream).
const VIEWS_IN_FLIGHT: usize = 16;
/// Answers on their way at once (each a task of its own, see [`Requests::answer`]).
const ANSWERS_IN_FLIGHT: usize = 128;

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Register,
    Deregister,
    Request,
    Report,
    Status,
    Job,
    Jobs,
    Cancel,
    Retry,
    RetryAll,
    Purge,
    Pause,
    Resume,
    Schedules,
    ScheduleAdd,
    ScheduleRemove,
}

/// Every endpoint: whether it is in the operators' group, the group's prefix, its subject,
/// which endpoint it is.
const ENDPOINT_SUBJECTS: [(bool, &str, &str, Endpoint); 16] = [
    (false, subjects::MASTER_GROUP, subjects::MASTER_REGISTER, Endpoint::Register),
    (false, subjects::MASTER_GROUP, subjects::MASTER_DEREGISTER, Endpoint::Deregister),
    (false, subjects::MASTER_GROUP, subjects::MASTER_REQUEST, Endpoint::Request),
    (false, subjects::MASTER_GROUP, subjects::MASTER_REPORT, Endpoint::Report),
    (false, subjects::MASTER_GROUP, subjects::MASTER_STATUS, Endpoint::Status),
    (false, subjects::MASTER_GROUP, subjects::MASTER_JOB, Endpoint::Job),
    (false, subjects::MASTER_GROUP, subjects::MASTER_JOBS, Endpoint::Jobs),
    (true, subjects::ADMIN_GROUP, subjects::ADMIN_CANCEL, Endpoint::Cancel),
    (true, subjects::ADMIN_GROUP, subjects::ADMIN_RETRY, Endpoint::Retry),
    (true, subjects::ADMIN_GROUP, subjects::ADMIN_RETRY_ALL, Endpoint::RetryAll),
    (true, subjects::ADMIN_GROUP, subjects::ADMIN_PURGE, Endpoint::Purge),
    (true, subjects::ADMIN_GROUP, subjects::ADMIN_PAUSE, Endpoint::Pause),
    (true, subjects::ADMIN_GROUP, subjects::ADMIN_RESUME, Endpoint::Resume),
    (false, subjects::MASTER_GROUP, subjects::MASTER_SCHEDULES, Endpoint::Schedules),
    (true, subjects::ADMIN_GROUP, subjects::ADMIN_SCHEDULE_ADD, Endpoint::ScheduleAdd),
    (true, subjects::ADMIN_GROUP, subjects::ADMIN_SCHEDULE_RM, Endpoint::ScheduleRemove),
];

/// The workers' endpoints under their login (`<subject>.<login>.<worker id>`): each with its
/// name under the master's group, its subject pattern there and which endpoint it is. The
/// login in the subject binds the request to the NATS user allowed to publish there.
const LOGIN_ENDPOINTS: [(&str, &str, Endpoint); 4] = [
    ("register-login", "register.*.*", Endpoint::Register),
    ("deregister-login", "deregister.*.*", Endpoint::Deregister),
    ("request-login", "request.*.*", Endpoint::Request),
    ("report-login", "report.*.*", Endpoint::Report),
];

/// Every endpoint's requests, as one stream.
pub type Endpoints = SelectAll<BoxStream<'static, (Endpoint, Request)>>;

/// Starts the service and its endpoints for the term of `epoch`. Each endpoint's
/// `$SRV.STATS` data is `stats`: the job totals (see `observe.rs`).
pub async fn start(
    env: &Env,
    epoch: u64,
    stats: ServiceStats,
) -> Result<(service::Service, Endpoints), Unavailable> {
    let mut metadata = HashMap::new();
    metadata.insert("epoch".to_owned(), epoch.to_string());
    metadata.insert("leader".to_owned(), env.holder.clone());
    let service = env
        .requests
        .service_builder()
        .description("jetwork master (the elected leader)")
        .metadata(metadata)
        .queue_group(&env.holder)
        .stats_handler(move |_endpoint, _stats| {
            stats.lock().unwrap_or_else(PoisonError::into_inner).clone()
        })
        .start(subjects::SERVICE_NAME, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| Unavailable::new("starting the service", e))?;
    let master = service.group(subjects::MASTER_GROUP);
    let admin = service.group(subjects::ADMIN_GROUP);
    let mut streams: Vec<BoxStream<'static, (Endpoint, Request)>> = Vec::new();
    for (in_admin, prefix, subject, kind) in ENDPOINT_SUBJECTS {
        let group = if in_admin { &admin } else { &master };
        // The group prefixes the name, so the endpoint listens on `subject` itself.
        let name = subjects::endpoint_in(prefix, subject)
            .expect("every endpoint subject is in its group (a subjects unit test)");
        let endpoint = group
            .endpoint(name)
            .await
            .map_err(|e| Unavailable::new(format!("adding the {name} endpoint"), e))?;
        streams.push(endpoint.map(move |request| (kind, request)).boxed());
    }
    for (name, subject, kind) in LOGIN_ENDPOINTS {
        let endpoint = master
            .endpoint_builder()
            .name(name)
            .add(subject)
            .await
            .map_err(|e| Unavailable::new(format!("adding the {name} endpoint"), e))?;
        streams.push(endpoint.map(move |request| (kind, request)).boxed());
    }
    Ok((service, select_all(streams)))
}

/// Requests decoded into commands, waiting for their reply effect.
#[derive(Default)]
pub struct Requests {
    waiting: HashMap<RequestId, Request>,
    last: RequestId,
    status_in_flight: Arc<AtomicUsize>,
    views_in_flight: Arc<AtomicUsize>,
    answers_in_flight: Arc<AtomicUsize>,
    bad: LogLimit,
    /// Requests dropped unanswered: a flood causes them by the thousand.
    unanswered: LogLimit,
    /// Where refused messages are counted, when metrics are on.
    metrics: Option<MasterMetrics>,
}

impl Requests {
    /// None waiting yet; refused messages are counted in `metrics`, if given.
    pub fn new(metrics: Option<MasterMetrics>) -> Self {
        Requests { metrics, ..Requests::default() }
    }

    /// The command a request asks for; `None` if it could not be decoded (it is answered 400
    /// with the reason, see [`Requests::answer`]). The request waits here for its reply.
    pub async fn decode(
        &mut self,
        kind: Endpoint,
        request: Request,
        now: Millis,
    ) -> Option<Command> {
        self.last += 1;
        let id = self.last;
        let payload = &request.message.payload;
        let subject = request.message.subject.as_str();
        let command = match kind {
            Endpoint::Register => codec::decode::<RegisterWorker>(payload)
                .map_err(|e| e.to_string())
                .and_then(|msg| {
                    let login = login_of(subject, subjects::MASTER_REGISTER, &msg.worker_id)?;
                    Ok(Command::Register { request: id, msg, login, now })
                }),
            Endpoint::Request => {
                codec::decode::<RequestWork>(payload).map_err(|e| e.to_string()).and_then(|msg| {
                    let login = login_of(subject, subjects::MASTER_REQUEST, &msg.worker_id)?;
                    Ok(Command::RequestWork { request: id, msg, login, now })
                })
            }
            Endpoint::Report => {
                ReceivedReport::decode(payload).map_err(|e| e.to_string()).and_then(|read| {
                    let msg = read.report;
                    let login = login_of(subject, subjects::MASTER_REPORT, &msg.worker_id)?;
                    if let Some(first) = read.unreadable.first() {
                        self.count(BadMessage::UndecodableRequest);
                        if let Some(suppressed) = self.bad.allow() {
                            tracing::warn!(%subject, worker = %msg.worker_id, unreadable = read.unreadable.len(), first = %first.reason, suppressed, "a report with unreadable outcomes (each refused on its own)");
                        }
                    }
                    let unreadable = read.unreadable;
                    Ok(Command::Report { request: id, msg, unreadable, login, now })
                })
            }
            Endpoint::Deregister => {
                codec::decode::<Deregister>(payload).map_err(|e| e.to_string()).and_then(|msg| {
                    let login = login_of(subject, subjects::MASTER_DEREGISTER, &msg.worker_id)?;
                    Ok(Command::Deregister { request: id, msg, login, now })
                })
            }
            // Operators speak JSON (the `nats` CLI); the error text says what was expected.
            Endpoint::Cancel => json::<JobRequest>(payload)
                .map(|r| Command::Cancel { request: id, work_id: r.work_id, reason: r.reason, now })
                .map_err(|e| format!("expected {{\"work_id\": \"…\"}}: {e}")),
            Endpoint::Retry => json::<JobRequest>(payload)
                .map(|r| Command::Retry { request: id, work_id: r.work_id, queue: r.queue, now })
                .map_err(|e| format!("expected {{\"work_id\": \"…\"}}: {e}")),
            Endpoint::RetryAll => retry_all(payload, id, now),
            Endpoint::Purge => json::<QueueRequest>(payload)
                .map(|r| Command::Purge { request: id, queue: r.queue, now })
                .map_err(|e| format!("expected {{\"queue\": \"…\"}}: {e}")),
            Endpoint::Pause => json::<QueueRequest>(payload)
                .map(|r| Command::Pause { request: id, queue: r.queue, now })
                .map_err(|e| format!("expected {{\"queue\": \"…\"}}: {e}")),
            Endpoint::Resume => json::<QueueRequest>(payload)
                .map(|r| Command::Resume { request: id, queue: r.queue, now })
                .map_err(|e| format!("expected {{\"queue\": \"…\"}}: {e}")),
            Endpoint::ScheduleAdd => schedule_add(payload, id, now),
            Endpoint::ScheduleRemove => json::<ScheduleRemove>(payload)
                .map(|r| Command::ScheduleRemove { request: id, name: r.name, now })
                .map_err(|e| format!("expected {{\"name\": \"…\"}}: {e}")),
            // These read the state (and the results stream) without changing it: answered
            // off the loop by `status`, `lookup` and `list`, or at once (`schedules`).
            Endpoint::Status | Endpoint::Job | Endpoint::Jobs | Endpoint::Schedules => return None,
        };
        match command {
            Ok(command) => {
                self.waiting.insert(id, request);
                Some(command)
            }
            Err(e) => {
                let e = format!("{e}{}", json_hint(kind, payload));
                self.count(BadMessage::UndecodableRequest);
                if let Some(suppressed) = self.bad.allow() {
                    tracing::warn!(endpoint = ?kind, subject = %request.message.subject, error = %e, suppressed, "bad request");
                }
                self.answer(request, Err((400, format!("bad request: {e}"))));
                None
            }
        }
    }

    fn count(&self, reason: BadMessage) {
        if let Some(metrics) = &self.metrics {
            metrics.bad_message(reason);
        }
    }

    /// A job lookup (`job`): from the state if it holds the job, else from the results
    /// stream off the loop (or 503 at once when enough are under way).
    pub fn job(&mut self, request: Request, state: &State, js: &jetstream::Context) {
        let asked = match json::<JobRequest>(&request.message.payload) {
            Ok(asked) => asked,
            Err(e) => return self.answer(request, Err((400, format!("bad request: {e}")))),
        };
        let known =
            state.job(&asked.work_id).or_else(|| state.finished_unpublished(&asked.work_id));
        if let Some(info) = known {
            return self.answer(request, Ok(serde_json::to_vec(&info)));
        }
        let js = js.clone();
        self.off_loop(request, async move {
            match jobs::stored(&js, asked.queue.as_ref(), &asked.work_id).await {
                Ok(Some((info, _))) => Ok(serde_json::to_vec(&info)),
                Ok(None) => Err((
                    404,
                    format!(
                        "{} is unknown: not in flight and no stored outcome (it may still wait \
                         unread in its queue's backlog, or be older than the results retention)",
                        asked.work_id
                    ),
                )),
                Err(e) => Err((503, e.to_string())),
            }
        });
    }

    /// Answers `request` with what `reading` finds, in a task (or 503 at once when
    /// [`VIEWS_IN_FLIGHT`] are under way already).
    fn off_loop(
        &mut self,
        request: Request,
        reading: impl std::future::Future<Output = Answer> + Send + 'static,
    ) {
        if self.views_in_flight.load(Ordering::Relaxed) >= VIEWS_IN_FLIGHT {
            let busy = "busy: too many job lookups at once; retry shortly".to_owned();
            return self.answer(request, Err((503, busy)));
        }
        let in_flight = self.views_in_flight.clone();
        in_flight.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            answer_now(request, reading.await).await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }

    /// A listing of jobs (`jobs`): those in flight from the state at once; finished ones from
    /// the results stream, off the loop (at most [`VIEWS_IN_FLIGHT`] at a time, like
    /// lookups).
    pub fn list(&mut self, request: Request, state: &State, js: &jetstream::Context) {
        let query = match json::<JobsQuery>(&request.message.payload) {
            Ok(query) => query,
            Err(e) => return self.answer(request, Err((400, format!("bad request: {e}")))),
        };
        if query.state == Some(JobState::Rejected) {
            let why = "rejected submissions are not listed here: they are stored on \
                       jetwork.rejected.<queue>.<seq> in JETWORK_RESULTS";
            return self.answer(request, Err((400, why.to_owned())));
        }
        let limit = query.limit();
        let in_flight = query.state.is_none_or(|s| !s.is_final());
        let mut jobs = match in_flight {
            true => state.jobs(query.queue.as_ref(), query.state, limit),
            false => Vec::new(),
        };
        let finished = query.state.is_none_or(JobState::is_final);
        if !finished || jobs.len() >= limit {
            let page = JobsPage { jobs, truncated: false };
            return self.answer(request, Ok(serde_json::to_vec(&page)));
        }
        let js = js.clone();
        self.off_loop(request, async move {
            let left = limit - jobs.len();
            let queue = query.queue.as_ref();
            match jobs::finished(&js, queue, query.state, left, 0).await {
                Ok((more, truncated)) => {
                    // A job in flight again (retried) has its earlier run's outcome stored
                    // too: it is listed once, as it is now.
                    let held: HashSet<(QueueName, WorkId)> =
                        jobs.iter().map(|j| (j.queue.clone(), j.work_id.clone())).collect();
                    let more = more
                        .into_iter()
                        .filter(|j| !held.contains(&(j.queue.clone(), j.work_id.clone())));
                    jobs.extend(more);
                    Ok(serde_json::to_vec(&JobsPage { jobs, truncated }))
                }
                Err(e) => Err((503, e.to_string())),
            }
        });
    }

    /// The request waiting for the reply `id`, if it still is.
    pub fn take(&mut self, id: RequestId) -> Option<Request> {
        self.waiting.remove(&id)
    }

    /// Answers a status request off the loop, or 503 at once when enough are being worked on
    /// (each costs the server a few API calls): a flood of them cannot slow the server or the
    /// loop down.
    pub fn status(&mut self, request: Request, engine: &Engine, js: &jetstream::Context) {
        if self.status_in_flight.load(Ordering::Relaxed) >= STATUS_IN_FLIGHT {
            self.count(BadMessage::StatusBusy);
            let status = "busy: too many status requests at once; retry shortly".to_owned();
            return self.answer(request, Err((503, status)));
        }
        // An empty body asks for the first page with default limits (`nats req ... ''`);
        // anything else must be a readable query, or the asker would get a page it did not
        // ask for without knowing why.
        let payload = &request.message.payload;
        let query: StatusQuery = if payload.iter().all(u8::is_ascii_whitespace) {
            StatusQuery::default()
        } else {
            match serde_json::from_slice(payload) {
                Ok(query) => query,
                Err(e) => {
                    self.count(BadMessage::UnreadableStatusQuery);
                    let status = format!("bad request: the status query is not readable: {e}");
                    return self.answer(request, Err((400, status)));
                }
            }
        };
        let mut report = engine.status(now_ms(), query);
        let positions = engine.state().read_positions(usize::MAX);
        let (js, in_flight) = (js.clone(), self.status_in_flight.clone());
        in_flight.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            housekeeping::complete_status(&js, &mut report, positions, query).await;
            let reply = match serde_json::to_vec(&report) {
                Ok(body) => Ok(body.into()),
                Err(e) => {
                    Err(service::error::Error { status: format!("cannot encode: {e}"), code: 500 })
                }
            };
            let _ = request.respond(reply).await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

impl Requests {
    /// The schedules, from the state (answered in a task: the loop never waits on a
    /// requester). The body is ignored.
    pub fn schedules(&mut self, request: Request, state: &State) {
        let schedules = state.schedules.iter().map(|(name, s)| s.info(name)).collect();
        self.answer(request, Ok(serde_json::to_vec(&SchedulesPage { schedules })));
    }

    /// Answers in a task, so the loop never waits on a requester. With [`ANSWERS_IN_FLIGHT`]
    /// of them on their way already (requests arriving faster than their answers go out: a
    /// flood), the request is dropped unanswered instead, counted and logged at most once a
    /// second; its requester times out. A task for each request of a flood would queue every
    /// other task of the loop's thread behind them, the journal's acknowledgements included.
    fn answer(&mut self, request: Request, reply: Answer) {
        if self.answers_in_flight.load(Ordering::Relaxed) >= ANSWERS_IN_FLIGHT {
            self.count(BadMessage::Unanswered);
            if let Some(suppressed) = self.unanswered.allow() {
                let subject = &request.message.subject;
                tracing::warn!(%subject, suppressed, "too many answers on their way; a request is left unanswered");
            }
            return;
        }
        let in_flight = self.answers_in_flight.clone();
        in_flight.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            answer_now(request, reply).await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Decodes `jetwork.admin.retry-all`: the queue, the state to retry (`failed` by default),
/// since when, how many (the engine judges them).
fn retry_all(payload: &[u8], request: RequestId, now: Millis) -> Result<Command, String> {
    let asked =
        json::<BulkRetry>(payload).map_err(|e| format!("expected {{\"queue\": \"…\"}}: {e}"))?;
    Ok(Command::RetryAll {
        request,
        queue: asked.queue,
        state: asked.state.unwrap_or(JobState::Failed),
        since_ms: asked.since_ms.unwrap_or(0),
        limit: asked.limit.unwrap_or(BulkRetry::DEFAULT_LIMIT),
        now,
    })
}

/// Decodes `jetwork.admin.schedule.add`: the body, and its cadence (exactly one of `every`
/// and `cron`). The limits (count, payload size, shortest interval) are the engine's.
fn schedule_add(payload: &[u8], request: RequestId, now: Millis) -> Result<Command, String> {
    let add = json::<ScheduleAdd>(payload).map_err(|e| {
        format!(
            "expected {{\"name\": \"…\", \"queue\": \"…\", \"every\": \"5m\" or \"cron\": \
             \"0 3 * * *\", \"payload\": \"…\"}}: {e}"
        )
    })?;
    let cadence = match (&add.every, &add.cron) {
        (Some(every), None) => Cadence::every(every)?,
        (None, Some(cron)) => Cadence::cron(cron)?,
        _ => return Err("give exactly one of \"every\" and \"cron\"".to_owned()),
    };
    Ok(Command::ScheduleAdd {
        request,
        name: add.name,
        queue: add.queue,
        cadence,
        payload: add.payload.into_bytes().into(),
        now,
    })
}

/// A hint for a worker request that is JSON, not MessagePack (the mistake a newcomer in another
/// language makes first): the decoder's own words would be about MessagePack markers.
fn json_hint(kind: Endpoint, payload: &[u8]) -> &'static str {
    let worker = matches!(
        kind,
        Endpoint::Register | Endpoint::Deregister | Endpoint::Request | Endpoint::Report
    );
    if worker && serde_json::from_slice::<serde_json::Value>(payload).is_ok() {
        return " (this is JSON: worker messages are MessagePack maps keyed by field name, \
                 see docs/protocol.md, \"Conventions\")";
    }
    ""
}

/// Reads an operator's JSON request: an object, nothing else. (serde would also read a
/// struct from an array of its fields in order, so `[]` would be a listing of everything and
/// `["order-42"]` a request about `order-42`: a shape nobody documents is refused.)
fn json<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, String> {
    let first = payload.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err("expected a JSON object".to_owned());
    }
    serde_json::from_slice(payload).map_err(|e| e.to_string())
}

/// What an off-loop request is answered with: a JSON body, or an error code and reason.
type Answer = Result<Result<Vec<u8>, serde_json::Error>, (usize, String)>;

async fn answer_now(request: Request, reply: Answer) {
    let reply = match reply {
        Ok(Ok(body)) => Ok(body.into()),
        Ok(Err(e)) => {
            Err(service::error::Error { status: format!("cannot encode: {e}"), code: 500 })
        }
        Err((code, status)) => Err(service::error::Error { status, code }),
    };
    // A requester that has gone away cannot be answered.
    let _ = request.respond(reply).await;
}

/// The login a worker's request on `endpoint` came under, from its `subject`: none on the
/// endpoint itself; on `<endpoint>.<login>.<worker id>`, the login, if the worker id token is
/// the message's own (a request for another worker under one's login is refused: the login's
/// permissions cover only the subject, the message must agree with it).
fn login_of(subject: &str, endpoint: &str, worker: &WorkerId) -> Result<Option<Login>, String> {
    if subject == endpoint {
        return Ok(None);
    }
    let Some((login, id)) = subjects::login_of_endpoint(endpoint, subject) else {
        return Err(format!("{subject} is not {endpoint} or {endpoint}.<login>.<worker id>"));
    };
    if id != worker.as_str() {
        return Err(format!("the subject names worker {id}, the message worker {worker}"));
    }
    Login::parse(login).map(Some).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_subject_is_served() {
        let served: Vec<&str> =
            ENDPOINT_SUBJECTS.iter().map(|(_, _, subject, _)| *subject).collect();
        let mut listed = subjects::ENDPOINTS.to_vec();
        let mut served_sorted = served.clone();
        listed.sort_unstable();
        served_sorted.sort_unstable();
        assert_eq!(served_sorted, listed, "subjects::ENDPOINTS and the served endpoints differ");
    }

    #[test]
    fn a_login_comes_from_the_subject_and_must_name_the_message_worker() {
        let (endpoint, w1) = (subjects::MASTER_REGISTER, WorkerId::parse("worker-1-a").unwrap());
        assert_eq!(login_of(endpoint, endpoint, &w1), Ok(None));
        let own = format!("{endpoint}.worker-1.worker-1-a");
        assert_eq!(login_of(&own, endpoint, &w1), Ok(Some(Login::parse("worker-1").unwrap())));
        let other = format!("{endpoint}.worker-1.worker-1-b");
        assert!(login_of(&other, endpoint, &w1).unwrap_err().contains("names worker worker-1-b"));
        for bad in [format!("{endpoint}.worker-1"), format!("{endpoint}.a.b.c"), "x.y".to_owned()] {
            assert!(login_of(&bad, endpoint, &w1).is_err(), "{bad}");
        }
    }

    #[test]
    fn operators_requests_are_json_objects_only() {
        assert!(json::<JobsQuery>(b" {}").is_ok());
        for shape in [&b"[]"[..], b"[\"order-42\"]", b"null", b"", b"42"] {
            let e = json::<JobRequest>(shape).expect_err("not an object");
            assert_eq!(e, "expected a JSON object");
            assert!(json::<JobsQuery>(shape).is_err());
        }
        let e = json::<JobRequest>(br#"{"work_id":7}"#).expect_err("a number is no id");
        assert!(e.contains("invalid type"), "{e}");
    }
}
