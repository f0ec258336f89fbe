//! The leader's endpoints (a NATS micro service named `jetwork`, group `jetwork.master`), and
//! the requests waiting for the journal write their reply depends on.
//!
//! Each master candidate serves in a queue group of its own: a deposed leader that is frozen
//! but still subscribed must not take requests away from its successor. Each request reaches
//! every subscribed master, and the requester keeps the first reply, the live leader's.
//!
//! Anything anyone sends is decoded before a command exists: garbage is answered 400 with the
//! reason at once (logged at most once a second). Status is answered off the loop, at most
//! [`STATUS_IN_FLIGHT`] at a time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};

use async_nats::jetstream;
use async_nats::service::{self, Request, ServiceExt};
use futures::stream::{select_all, BoxStream, SelectAll};
use futures::StreamExt;
use jetwork_shared::clock::now_ms;
use jetwork_shared::log_limit::LogLimit;
use jetwork_shared::protocol::{RegisterWorker, Report, RequestWork, StatusQuery};
use jetwork_shared::{codec, subjects, QueueName, Unavailable};

use super::observe::ServiceStats;
use super::Env;
use crate::core::{Command, Millis, RequestId, State};
use crate::housekeeping;
use crate::metrics::{BadMessage, MasterMetrics};

/// Status requests worked on at once.
const STATUS_IN_FLIGHT: usize = 2;

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Register,
    Request,
    Report,
    Status,
}

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
        .client
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
    let group = service.group(subjects::MASTER_GROUP);
    let mut streams: Vec<BoxStream<'static, (Endpoint, Request)>> = Vec::new();
    for (subject, kind) in [
        (subjects::MASTER_REGISTER, Endpoint::Register),
        (subjects::MASTER_REQUEST, Endpoint::Request),
        (subjects::MASTER_REPORT, Endpoint::Report),
        (subjects::MASTER_STATUS, Endpoint::Status),
    ] {
        // The group prefixes the name, so the endpoint listens on `subject` itself.
        let name = subjects::master_endpoint(subject)
            .expect("every master endpoint subject is in MASTER_GROUP (a subjects unit test)");
        let endpoint = group
            .endpoint(name)
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
    bad: LogLimit,
    /// Where refused messages are counted, when metrics are on.
    metrics: Option<MasterMetrics>,
}

impl Requests {
    /// None waiting yet; refused messages are counted in `metrics`, if given.
    pub fn new(metrics: Option<MasterMetrics>) -> Self {
        Requests { metrics, ..Requests::default() }
    }

    /// The command a request asks for; `None` if it could not be decoded (it has been
    /// answered 400 with the reason). The request waits here for its reply.
    pub async fn decode(
        &mut self,
        kind: Endpoint,
        request: Request,
        now: Millis,
    ) -> Option<Command> {
        self.last += 1;
        let id = self.last;
        let payload = &request.message.payload;
        let command = match kind {
            Endpoint::Register => codec::decode::<RegisterWorker>(payload)
                .map(|msg| Command::Register { request: id, msg, now }),
            Endpoint::Request => codec::decode::<RequestWork>(payload)
                .map(|msg| Command::RequestWork { request: id, msg, now }),
            Endpoint::Report => codec::decode::<Report>(payload).map(|msg| Command::Report {
                request: id,
                msg,
                now,
            }),
            // Status reads the state without changing it: answered off the loop by `status`.
            Endpoint::Status => return None,
        };
        match command {
            Ok(command) => {
                self.waiting.insert(id, request);
                Some(command)
            }
            Err(e) => {
                self.count(BadMessage::UndecodableRequest);
                if let Some(suppressed) = self.bad.allow() {
                    tracing::warn!(endpoint = ?kind, subject = %request.message.subject, error = %e, suppressed, "bad request");
                }
                let error =
                    service::error::Error { status: format!("bad request: {e}"), code: 400 };
                let _ = request.respond(Err(error)).await;
                None
            }
        }
    }

    fn count(&self, reason: BadMessage) {
        if let Some(metrics) = &self.metrics {
            metrics.bad_message(reason);
        }
    }

    /// The request waiting for the reply `id`, if it still is.
    pub fn take(&mut self, id: RequestId) -> Option<Request> {
        self.waiting.remove(&id)
    }

    /// Answers a status request off the loop, or 503 at once when enough are being worked on
    /// (each costs the server a few API calls): a flood of them cannot slow the server or the
    /// loop down.
    pub fn status(&mut self, request: Request, state: &State, js: &jetstream::Context) {
        if self.status_in_flight.load(Ordering::Relaxed) >= STATUS_IN_FLIGHT {
            self.count(BadMessage::StatusBusy);
            let status = "busy: too many status requests at once; retry shortly".to_owned();
            let error = service::error::Error { status, code: 503 };
            tokio::spawn(async move {
                let _ = request.respond(Err(error)).await;
            });
            return;
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
                    let error = service::error::Error { status, code: 400 };
                    tokio::spawn(async move {
                        let _ = request.respond(Err(error)).await;
                    });
                    return;
                }
            }
        };
        let mut report = state.status(now_ms(), query);
        let cursors: Vec<(QueueName, u64)> =
            state.queues.iter().map(|(q, s)| (q.clone(), s.cursor)).collect();
        let (js, in_flight) = (js.clone(), self.status_in_flight.clone());
        in_flight.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            housekeeping::complete_status(&js, &mut report, cursors, query).await;
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
