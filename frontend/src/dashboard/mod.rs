//! `jetwork-frontend dashboard`: a small web app showing what jetwork is doing — queues with
//! backlog, jobs in flight and throughput over the last hour (charts), the workers and
//! what each runs, recent failures with their reasons — and a job browser: jobs by queue and
//! state (`jetwork.master.jobs`, a page at a time, searchable by id), a page per queue, a
//! page per job (the master's view, its payload and its result), and the schedules.
//!
//! It serves its pages on the shared [`HttpListener`] (axum on hyper: the connection cap, the
//! header timeout and size limit, HEAD, one request per connection), routed by `router`, and
//! runs three kinds of work together on one task ([`serve`]):
//! - a **sampler** that asks the leader for its status every `refresh` and records it in
//!   [`History`] (kept by this process: a page opened later shows the hour before it);
//!   while no master answers it keeps what the lease says instead (the same text
//!   as `status`), so the page says "no leader" during a failover rather than failing, and
//!   while its own NATS connection is down it says so; either way the last report stays,
//!   marked stale;
//! - a [`ResultsFeed`] (the results stream through a headers-only consumer: no payloads) for
//!   the failures stored while it runs, the newest [`RECENT_FAILURES`] kept, one per job, and
//!   why they are not being read when they are not (the overview's `failures_note`);
//! - the **pages**: three static files embedded in the binary (`assets/`, no build step) and
//!   a JSON API they read (`/api/overview`; `/api/job?id=…`: the master's view of the job
//!   with its attempt history, its payload and its stored result, each a [`Preview`];
//!   `/api/jobs?queue=…&state=…&id=…&page=…`; `/api/schedules`), and, with
//!   `--allow-actions`, `POST /api/action` (retry, cancel, pause, resume, retry-failed, purge
//!   through `jetwork.admin.*`).
//!
//! Invariants: the overview never causes a request to the master (it is the last sample), so
//! any number of open browsers costs the system one status request per `refresh`; a job page
//! costs one job request and two direct gets, a job list one `jetwork.master.jobs` request
//! and the schedules one request, at most [`MAX_ASKS`] of these at once (beyond, 503 busy):
//! the browser never talks to NATS, only to this server. Everything kept is bounded (samples,
//! failures, charted queues), and so are the connections served at once
//! (`--max-connections`, beyond it 503) and the time each takes ([`DEADLINE`]). Every request,
//! whatever its path or method, must name the dashboard in its `Host` ([`AllowedHosts`]: what
//! it is reachable as, plus the operator's `--allowed-host` names; checked before routing, by
//! `check_host`), so a site that points its own name at the dashboard (DNS rebinding) reads
//! nothing. It is **read-only** unless started with `--allow-actions`; even then an action
//! must come as a POST from a page of an allowed name (its `Origin`, or `Referer`) with the
//! `X-Jetwork-Action` header, which a page from another origin cannot send without a CORS
//! preflight this server never approves (an `OPTIONS` is answered 405). Refusals are answered
//! 403 with the reason and logged, at most one line a second.

mod allowed_hosts;
mod failures;
mod history;
mod preview;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::header::{HeaderMap, HeaderName, CONTENT_TYPE, HOST, ORIGIN, REFERER};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use jetwork_shared::clock::now_ms;
use jetwork_shared::http_listener::HttpListener;
use jetwork_shared::jobs::{BulkRetry, JobInfo, JobState, JobsQuery};
use jetwork_shared::log_limit::LogLimit;
use jetwork_shared::protocol::{StatusQuery, StatusReport};
use jetwork_shared::{QueueName, WorkId};
use serde_json::{json, Value};
use tokio::net::TcpListener;

pub use allowed_hosts::{AllowedHost, AllowedHosts};
pub use failures::RecentFailures;
pub use history::History;
pub use preview::Preview;

use crate::results_feed::{Event, ResultsFeed};
use crate::watch;
use crate::{Client, ClientError, JobsError, ResultStatus};

/// Failures listed at most.
pub const RECENT_FAILURES: usize = 50;
/// What the failures list says until the results feed first reads.
pub const FEED_STARTING: &str = "connecting to the results stream";
/// Most requests to NATS that page views have under way at once (job pages, job lists,
/// schedules): a page refreshed in a loop, or many open, cannot flood the master.
pub const MAX_ASKS: usize = 4;
/// Rows of a job list page, by default and at most.
const PAGE_SIZE: u32 = 20;
const MAX_PAGE_SIZE: u32 = 100;
/// Longest id search.
const MAX_SEARCH: usize = 256;
/// Longest reason in a job list row (the job's page has it whole).
const LIST_REASON: usize = 200;
/// How long one connection may take in all: its request, and the NATS requests of its page.
pub const DEADLINE: Duration = Duration::from_secs(20);

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// How the dashboard runs.
#[derive(Debug, Clone)]
pub struct DashboardOptions {
    /// How often the leader's status is sampled (and the page refreshes).
    pub refresh: Duration,
    /// How far back the charts go (kept in 360 buckets: 10 s each for an hour).
    pub history: Duration,
    /// Whether the operator's actions (retry, cancel, pause) are offered.
    pub allow_actions: bool,
    /// Names it answers for besides what its listen address is reachable as (a reverse
    /// proxy's name, the machine's name when it listens on a wildcard address).
    pub allowed_hosts: Vec<AllowedHost>,
    /// Most connections served at once (see [`HttpListener`]).
    pub max_connections: usize,
}

impl Default for DashboardOptions {
    fn default() -> Self {
        DashboardOptions {
            refresh: Duration::from_secs(2),
            history: Duration::from_secs(3600),
            allow_actions: false,
            allowed_hosts: Vec::new(),
            max_connections: 256,
        }
    }
}

/// What the sampler and the subscription last saw.
struct Live {
    /// The last report the leader sent (kept, marked `stale`, while none comes).
    status: Option<StatusReport>,
    /// When `status` was taken.
    status_ms: u64,
    /// The last sample did not get a report.
    stale: bool,
    /// While no master answers: what the lease says.
    no_leader: Option<String>,
    /// Since when the dashboard's own NATS connection is down (ms since the Unix epoch).
    nats_lost_ms: Option<u64>,
    /// When the last sample was taken (ms since the Unix epoch), 0 before the first.
    updated_ms: u64,
    /// Why the last sample could not be taken, other than "no leader".
    error: Option<String>,
    history: History,
    failures: RecentFailures,
    /// Why failures are not being read right now, if they are not.
    failures_note: Option<String>,
}

/// The dashboard's shared state.
struct Dashboard {
    client: Client,
    options: DashboardOptions,
    live: Mutex<Live>,
    /// The names requests may come for (`Host`) and actions from (`Origin`).
    allowed: AllowedHosts,
    /// Requests refused for their `Host` or `Origin`: anyone can send them.
    refusals: Mutex<LogLimit>,
    /// Page views' requests to NATS under way (at most [`MAX_ASKS`]).
    asks: tokio::sync::Semaphore,
}

/// Serves the dashboard on `listener` until the future is dropped; fails only if the
/// listener has no address (a results feed NATS refuses is said on the page).
pub async fn serve(
    client: Client,
    listener: TcpListener,
    options: DashboardOptions,
) -> Result<(), ClientError> {
    let live = Live {
        status: None,
        status_ms: 0,
        stale: true,
        no_leader: None,
        nats_lost_ms: None,
        updated_ms: 0,
        error: None,
        history: History::new(options.refresh, options.history),
        failures: RecentFailures::new(RECENT_FAILURES),
        failures_note: Some(FEED_STARTING.to_owned()),
    };
    let addr = listener
        .local_addr()
        .map_err(|e| ClientError::Invalid(format!("a listener without an address: {e}")))?;
    let allowed = AllowedHosts::new(addr, &options.allowed_hosts);
    let feed = ResultsFeed::start(&client);
    tracing::info!(
        %addr,
        actions = options.allow_actions,
        allowed_hosts = %allowed.names().join(", "),
        "dashboard listening"
    );
    let dashboard = Arc::new(Dashboard {
        client,
        options,
        live: Mutex::new(live),
        allowed,
        refusals: Mutex::new(LogLimit::default()),
        asks: tokio::sync::Semaphore::new(MAX_ASKS),
    });
    let server = HttpListener::new("dashboard", dashboard.options.max_connections, DEADLINE);
    let app = router(dashboard.clone());
    tokio::select! {
        () = sample(dashboard.clone()) => {}
        () = collect_failures(dashboard.clone(), feed) => {}
        () = server.serve(listener, app) => {}
    }
    Ok(())
}

impl Dashboard {
    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Logs a request refused for where it comes from, at most one line a second.
    fn log_refusal(&self, method: &Method, path: &str, peer: SocketAddr, why: &str) {
        let allowed = self.refusals.lock().unwrap_or_else(PoisonError::into_inner).allow();
        if let Some(suppressed) = allowed {
            tracing::warn!(
                %peer, %method, path, reason = why, suppressed,
                "dashboard request refused"
            );
        }
    }
}

/// Samples the leader's status every `refresh`.
async fn sample(dashboard: Arc<Dashboard>) {
    let query =
        StatusQuery { workers_limit: 100, workers_offset: 0, queues_limit: 100, queues_offset: 0 };
    let mut tick = tokio::time::interval(dashboard.options.refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let answer = dashboard.client.status_page(query).await;
        let lease = match &answer {
            Err(ClientError::NoMaster(_)) => Some(dashboard.client.lease().await),
            _ => None,
        };
        // Asked after the request: a request that failed for want of a connection is not
        // the master's silence.
        let connected = matches!(
            dashboard.client.nats().connection_state(),
            async_nats::connection::State::Connected
        );
        let now = now_ms();
        let mut live = dashboard.live();
        live.updated_ms = now;
        match answer {
            Ok(report) => {
                live.history.record(&report, now);
                live.status = Some(report);
                live.status_ms = now;
                live.stale = false;
                live.no_leader = None;
                live.nats_lost_ms = None;
                live.error = None;
            }
            Err(_) if !connected => {
                live.nats_lost_ms.get_or_insert(now);
                live.stale = true;
                live.no_leader = None;
                live.error = None;
            }
            Err(ClientError::NoMaster(why)) => {
                let lease = lease.unwrap_or_else(|| Err(ClientError::NoMaster(why.clone())));
                live.no_leader =
                    Some(watch::no_leader("status", &why, lease, time::OffsetDateTime::now_utc()));
                live.stale = true;
                live.nats_lost_ms = None;
                live.error = None;
            }
            Err(e) => {
                live.stale = true;
                live.nats_lost_ms = None;
                live.error = Some(e.to_string());
            }
        }
    }
}

/// Keeps the failures the results feed reads, and whether it reads.
async fn collect_failures(dashboard: Arc<Dashboard>, mut feed: ResultsFeed) {
    while let Some(event) = feed.next().await {
        let mut live = dashboard.live();
        match event {
            Event::Failure(failure) => live.failures.push(failure),
            Event::Reading => live.failures_note = None,
            other => live.failures_note = other.trouble(),
        }
    }
    // The feed's task ended (it does not, short of a panic): the rest still serves.
    dashboard.live().failures_note = Some("the results feed stopped".to_owned());
    std::future::pending::<()>().await;
}

/// The pages and the API, every request first through [`check_host`].
fn router(dashboard: Arc<Dashboard>) -> Router {
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }))
        .route("/index.html", get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }))
        .route("/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/style.css", get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }))
        .route(
            "/api/overview",
            get(|State(d): State<Arc<Dashboard>>| async move { reply_json(200, &overview(&d)) }),
        )
        .route(
            "/api/job",
            get(|State(d): State<Arc<Dashboard>>, Query(query): Query<Params>| async move {
                job(&d, param(&query, "id")).await
            }),
        )
        .route(
            "/api/jobs",
            get(|State(d): State<Arc<Dashboard>>, Query(query): Query<Params>| async move {
                jobs(&d, &query).await
            }),
        )
        .route(
            "/api/schedules",
            get(|State(d): State<Arc<Dashboard>>| async move { schedules(&d).await }),
        )
        .route("/api/action", post(action))
        .method_not_allowed_fallback(|| async { not_allowed() })
        .fallback(|method: Method| async move {
            if method == Method::GET || method == Method::HEAD {
                reply_text(404, "no such page")
            } else {
                not_allowed()
            }
        })
        // Around the fallbacks too: a page read through a foreign name is a page read by
        // that site, whatever it is.
        .layer(middleware::from_fn_with_state(dashboard.clone(), check_host))
        .with_state(dashboard)
}

/// A request's query string, decoded by axum's [`Query`] (`form_urlencoded`: `%XX` and `+`),
/// in order.
type Params = Vec<(String, String)>;

/// The value of query parameter `name` (its first, if given more than once).
fn param<'a>(query: &'a Params, name: &str) -> Option<&'a str> {
    query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The value of header `name` (its first), bytes that are not UTF-8 replaced.
fn header(headers: &HeaderMap, name: HeaderName) -> Option<Cow<'_, str>> {
    headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()))
}

/// Refuses (403, with the reason) a request whose `Host` is not a name of the dashboard, and
/// one in absolute form (`GET http://name/…`) whose name is not one either.
async fn check_host(
    State(dashboard): State<Arc<Dashboard>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    if let Err(why) = host_allowed(&dashboard.allowed, &request) {
        dashboard.log_refusal(request.method(), request.uri().path(), peer, &why);
        return reply_text(403, &why);
    }
    next.run(request).await
}

/// Whether `request` names an allowed host: its `Host`, and its request line's if it has one.
fn host_allowed(allowed: &AllowedHosts, request: &Request) -> Result<(), String> {
    allowed.check_host(header(request.headers(), HOST).as_deref())?;
    match request.uri().authority() {
        Some(authority) => allowed.check_host(Some(authority.as_str())),
        None => Ok(()),
    }
}

fn not_allowed() -> Response {
    reply_text(405, "GET only (POST for /api/action)")
}

fn asset(content_type: &'static str, text: &'static str) -> Response {
    ([(CONTENT_TYPE, content_type)], text).into_response()
}

/// A JSON body with status `status`.
fn reply_json(status: u16, value: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(value).unwrap_or_default();
    (status, [(CONTENT_TYPE, "application/json")], body).into_response()
}

/// A plain-text body (one line) with status `status`.
fn reply_text(status: u16, text: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{text}\n")).into_response()
}

/// `/api/overview`: the last sample, the chart's data and the recent failures.
fn overview(dashboard: &Dashboard) -> Value {
    let live = dashboard.live();
    json!({
        "now_ms": now_ms(),
        "updated_ms": live.updated_ms,
        "refresh_ms": dashboard.options.refresh.as_millis() as u64,
        "actions": dashboard.options.allow_actions,
        "status": live.status,
        "status_ms": live.status_ms,
        "stale": live.stale,
        "nats_lost_ms": live.nats_lost_ms,
        "no_leader": live.no_leader,
        "error": live.error,
        "history": live.history.to_json(),
        "failures": live.failures.newest_first().collect::<Vec<_>>(),
        "failures_note": live.failures_note,
    })
}

/// `/api/job?id=…`: what is known of one job: the master's view (state, attempt history)
/// when a master answers, its stored outcome (the result bytes, or the reason), and its
/// payload — from its failed or cancelled outcome (which stores it), else from its
/// submission (a direct get by sequence: the payload or why it cannot be read).
async fn job(dashboard: &Dashboard, id: Option<&str>) -> Response {
    let Some(work_id) = id.and_then(|id| WorkId::parse(id).ok()) else {
        return reply_json(400, &json!({ "error": "a valid work id is needed (?id=…)" }));
    };
    let Ok(_permit) = dashboard.asks.try_acquire() else { return busy() };
    let running = dashboard.live().status.as_ref().and_then(|s| {
        s.workers.iter().find_map(|w| {
            w.running.iter().find(|r| r.work_id == work_id).map(|r| {
                json!({ "worker": w.worker_id, "queue": r.queue, "attempt": r.attempt,
                        "deadline_ms": r.deadline_ms })
            })
        })
    });
    let (info, stored) =
        tokio::join!(dashboard.client.job(&work_id, None), dashboard.client.result(None, &work_id));
    let mut page = json!({ "work_id": work_id, "running": running });
    let mut known = running.is_some();
    let mut payload = None;
    let mut submit_seq = None;
    if let Ok(Some(result)) = &stored {
        known = true;
        page["queue"] = json!(result.queue);
        page["status"] = json!(match result.status {
            ResultStatus::Completed => "completed",
            ResultStatus::Failed => "failed",
            ResultStatus::Cancelled => "cancelled",
        });
        page["attempt"] = json!(result.attempt);
        page["submit_seq"] = json!(result.submit_seq);
        page["reason"] = json!(result.reason);
        submit_seq = Some(result.submit_seq);
        if result.status == ResultStatus::Completed {
            page["result"] = json!(Preview::of(&result.payload));
        } else {
            // A failed or cancelled outcome stores what was submitted.
            payload = Some(Preview::of(&result.payload));
        }
    }
    match info {
        // The master's view is the newer one (a retried job has a stored outcome from
        // before), and it has the attempts.
        Ok(info) => {
            known = true;
            page["queue"] = json!(info.queue);
            page["status"] = json!(info.state.as_str());
            page["attempt"] = json!(info.attempts);
            page["submit_seq"] = json!(info.submit_seq);
            submit_seq = Some(info.submit_seq);
            if info.reason.is_some() {
                page["reason"] = json!(info.reason);
            }
            page["ready_at_ms"] = json!(info.ready_at_ms);
            page["finished_ms"] = json!(info.finished_ms);
            page["history"] = json!(info
                .history
                .iter()
                .map(|a| json!({
                    "attempt": a.attempt, "worker": a.worker, "outcome": a.outcome.as_str(),
                    "reason": a.reason, "started_ms": a.started_ms, "ended_ms": a.ended_ms,
                }))
                .collect::<Vec<_>>());
        }
        Err(e) if e.code() == Some(404) => {}
        Err(e) => page["note"] = json!(format!("the master's view is unavailable: {e}")),
    }
    if let Err(e) = &stored {
        page["note"] = json!(format!("the stored result is unavailable: {e}"));
    }
    if !known {
        page["status"] = json!("unknown");
        page["error"] = json!(
            "not in flight and no stored outcome (it may wait unread in its queue, or be older \
             than the results retention)"
        );
        return reply_json(404, &page);
    }
    match (payload, submit_seq) {
        (Some(payload), _) => page["payload"] = json!(payload),
        (None, Some(seq)) => match dashboard.client.submission(&work_id, seq).await {
            Ok(Some(bytes)) => page["payload"] = json!(Preview::of(&bytes)),
            Ok(None) => {
                page["payload_note"] = json!(format!(
                    "its submission (sequence {seq} of JETWORK_SUBMIT) is no longer stored"
                ))
            }
            Err(e) => page["payload_note"] = json!(format!("the payload cannot be read: {e}")),
        },
        (None, None) => {}
    }
    reply_json(200, &page)
}

/// `/api/jobs?queue=…&state=…&id=…&page=…&size=…`: one page of the jobs
/// `jetwork.master.jobs` lists (in flight first, then finished, newest first), every
/// parameter optional; `id` keeps those whose id contains it (among the newest
/// [`JobsQuery::MAX_LIMIT`]). The listing goes [`JobsQuery::MAX_LIMIT`] jobs deep.
async fn jobs(dashboard: &Dashboard, query: &Params) -> Response {
    let given = |name: &str| param(query, name).filter(|v| !v.is_empty());
    let bad = |why: String| reply_json(400, &json!({ "error": why }));
    let queue = match given("queue").map(QueueName::parse).transpose() {
        Ok(queue) => queue,
        Err(e) => return bad(format!("queue: {e}")),
    };
    let state = match given("state").map(|s| serde_json::from_value::<JobState>(json!(s))) {
        None => None,
        Some(Ok(JobState::Rejected)) | Some(Err(_)) => {
            return bad(
                "state: one of ready, waiting, running, completed, failed, cancelled".to_owned()
            )
        }
        Some(Ok(state)) => Some(state),
    };
    let number = |name: &str, default: u32| given(name).map_or(Ok(default), str::parse::<u32>);
    let (Ok(page), Ok(size)) = (number("page", 0), number("size", PAGE_SIZE)) else {
        return bad("page and size are whole numbers".to_owned());
    };
    let size = size.clamp(1, MAX_PAGE_SIZE);
    let search = given("id").map(str::to_owned);
    if search.as_ref().is_some_and(|s| s.len() > MAX_SEARCH) {
        return bad(format!("an id search is at most {MAX_SEARCH} bytes"));
    }
    let skip = page.saturating_mul(size);
    if skip.saturating_add(size) > JobsQuery::MAX_LIMIT {
        return bad(format!(
            "the list goes {} jobs deep: narrow it by queue or state",
            JobsQuery::MAX_LIMIT
        ));
    }
    // One more than shown says whether there is a next page.
    let limit = match search {
        Some(_) => JobsQuery::MAX_LIMIT,
        None => (skip + size + 1).min(JobsQuery::MAX_LIMIT),
    };
    let Ok(_permit) = dashboard.asks.try_acquire() else { return busy() };
    let query = JobsQuery { queue, state, limit: Some(limit) };
    let listed = match dashboard.client.jobs(&query).await {
        Ok(listed) => listed,
        Err(e) => return refused(&e),
    };
    let matching: Vec<&JobInfo> = listed
        .jobs
        .iter()
        .filter(|j| search.as_deref().is_none_or(|s| j.work_id.as_str().contains(s)))
        .collect();
    let rows: Vec<Value> = matching
        .iter()
        .skip(skip as usize)
        .take(size as usize)
        .map(|j| {
            let reason =
                j.reason.as_deref().map(|r| r.chars().take(LIST_REASON).collect::<String>());
            json!({
                "work_id": j.work_id, "queue": j.queue, "state": j.state.as_str(),
                "attempts": j.attempts, "submit_seq": j.submit_seq, "reason": reason,
                "ready_at_ms": j.ready_at_ms, "finished_ms": j.finished_ms,
            })
        })
        .collect();
    let more = matching.len() > (skip + size) as usize;
    reply_json(
        200,
        &json!({
            "jobs": rows, "page": page, "size": size, "more": more,
            // Older matches may exist beyond what was read.
            "truncated": listed.truncated
                || (listed.jobs.len() as u32 >= limit && limit == JobsQuery::MAX_LIMIT),
        }),
    )
}

/// `/api/schedules`: the recurring schedules, by name.
async fn schedules(dashboard: &Dashboard) -> Response {
    let Ok(_permit) = dashboard.asks.try_acquire() else { return busy() };
    match dashboard.client.schedules().await {
        Ok(page) => reply_json(200, &json!(page)),
        Err(e) => refused(&e),
    }
}

/// Too many page views' requests under way.
fn busy() -> Response {
    reply_json(503, &json!({ "error": "busy: too many requests under way, retry shortly" }))
}

/// A request the master (or NATS) did not answer with success: its code where it gave one
/// (an error's: another is answered 502, the master's answer being wrong).
fn refused(e: &JobsError) -> Response {
    let code = match e {
        JobsError::Refused { code, .. } if (400..=599).contains(code) => *code,
        JobsError::Refused { .. } => 502,
        _ => 503,
    };
    reply_json(code, &json!({ "error": e.to_string() }))
}

/// `POST /api/action?kind=retry|cancel&id=…` or `?kind=pause|resume|retry-failed|purge&queue=…`:
/// the operator's actions, when allowed and sent from a page of the dashboard; the master's
/// refusal comes back with its code and reason.
async fn action(
    State(dashboard): State<Arc<Dashboard>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<Params>,
) -> Response {
    if !dashboard.options.allow_actions {
        return reply_json(
            403,
            &json!({ "error": "read-only dashboard: start it with --allow-actions" }),
        );
    }
    let (origin, referer) = (header(&headers, ORIGIN), header(&headers, REFERER));
    if let Err(why) = dashboard.allowed.check_origin(origin.as_deref(), referer.as_deref()) {
        dashboard.log_refusal(&Method::POST, "/api/action", peer, &why);
        // JSON like the other refusals here, so a page (behind a proxy whose name is not
        // allowed yet) shows the reason.
        return reply_json(403, &json!({ "error": why }));
    }
    if !headers.contains_key("x-jetwork-action") {
        return reply_json(403, &json!({ "error": "missing the X-Jetwork-Action header" }));
    }
    let client = &dashboard.client;
    let work_id = param(&query, "id").and_then(|id| WorkId::parse(id).ok());
    let queue = param(&query, "queue").and_then(|q| QueueName::parse(q).ok());
    let done = match (param(&query, "kind"), work_id, queue) {
        (Some("retry"), Some(id), _) => client.retry(&id, None).await.map(|r| r.message),
        (Some("cancel"), Some(id), _) => client
            .cancel(&id, Some("cancelled from the dashboard".to_owned()))
            .await
            .map(|r| r.message),
        (Some("pause"), _, Some(queue)) => client.pause(&queue, true).await.map(|r| r.message),
        (Some("resume"), _, Some(queue)) => client.pause(&queue, false).await.map(|r| r.message),
        (Some("retry-failed"), _, Some(queue)) => {
            let bulk = BulkRetry { queue, state: None, since_ms: None, limit: None };
            client.retry_all(&bulk).await.map(|r| r.message)
        }
        (Some("purge"), _, Some(queue)) => client.purge(&queue).await.map(|r| r.message),
        _ => {
            let why = "kind=retry|cancel with id=…, or kind=pause|resume|retry-failed|purge \
                       with queue=…";
            return reply_json(400, &json!({ "error": why }));
        }
    };
    match done {
        Ok(message) => reply_json(200, &json!({ "message": message })),
        Err(e) => refused(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_assets_reference_each_other() {
        assert!(INDEX_HTML.contains("app.js") && INDEX_HTML.contains("style.css"));
        for api in ["/api/overview", "/api/job?", "/api/jobs?", "/api/schedules", "/api/action?"] {
            assert!(APP_JS.contains(api), "app.js does not use {api}");
        }
        assert!(INDEX_HTML.contains("id=\"confirm\""), "the confirmation's place");
    }
}
