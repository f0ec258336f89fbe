//! [`FakeMaster`]: plays the leading master for one worker process, on the real subjects and
//! the real lease bucket, but answers as a case script tells it to: replies under any epoch,
//! verdicts of any kind, replies never sent, revokes, elections, refusals.
//!
//! What it does unless told otherwise, as the real master would: registrations are answered
//! at the current epoch; a request is answered with the next offer (one offer per reply, so
//! a grant often holds fewer than asked) or held open for its `wait_ms` and then answered
//! empty, a newer request answering the open one empty; a worker without an open request is
//! sent `WorkReady` notices while offers wait; a report gets one verdict per
//! outcome (`accepted` unless a plan says otherwise) and no assignments; a deregistration is
//! answered and ends everything the worker held. Every message is decoded with the protocol's
//! own types and held to the [`Ledger`]'s rules.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::kv;
use async_nats::{HeaderMap, Message, Subject, Subscriber};
use bytes::Bytes;
use futures::StreamExt as _;
use jetwork_shared::jobs::Revoke;
use jetwork_shared::protocol::{
    Assignment, Deregister, Deregistered, LeaseHolder, MasterElected, OutcomeStatus,
    RegisterWorker, Registered, Report, ReportReply, RequestWork, Verdict, VerdictKind, WorkGrant,
    WorkReady,
};
use jetwork_shared::{clock, codec, headers, subjects, Login, QueueName, Token, WorkId, WorkerId};

use crate::ledger::{Key, Ledger};
use crate::worker_process::WorkerProcess;

/// The longest the fake master holds a request open, whatever it asks (the real master's
/// `max_request_wait` default).
const MAX_HOLD: Duration = Duration::from_secs(30);
/// How often a worker without an open request is told that work waits (the master's
/// `notify_interval`, a little quicker).
const NOTICE_EVERY: Duration = Duration::from_millis(500);

/// How the fake master answers the report carrying an outcome about one work id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// This verdict (for every outcome about it).
    Verdict(VerdictKind),
    /// No reply to the first report carrying it (the reply is "lost"); then `accepted`.
    LoseFirstReply,
    /// No reply to any report carrying it (the master died).
    NeverReply,
}

/// One message from the worker, as decoded.
#[derive(Debug, Clone)]
pub enum Seen {
    Register(RegisterWorker),
    Request(RequestWork),
    Report(Report),
    Deregister(Deregister),
}

impl Seen {
    /// The outcomes it carries about `work_id`, if it is a report.
    pub fn outcomes_about(&self, work_id: &str) -> Vec<OutcomeStatus> {
        match self {
            Seen::Report(r) => r
                .outcomes
                .iter()
                .filter(|o| o.work_id.as_str() == work_id)
                .map(|o| o.status)
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// The worker under test, as its registration told it.
#[derive(Debug, Clone)]
struct Identity {
    id: WorkerId,
    login: Option<Login>,
    session: Token,
}

/// A request held open.
struct Open {
    reply: Subject,
    slots: u32,
    until: Instant,
}

/// Items to hand out in one reply, claiming `epoch`.
struct Offer {
    epoch: u64,
    assignments: Vec<Assignment>,
}

/// The fake leader of one case.
pub struct FakeMaster {
    client: async_nats::Client,
    lease: kv::Store,
    calls: Subscriber,
    worker: WorkerProcess,
    /// The epoch the lease names (the one the worker must follow).
    epoch: u64,
    identity: Option<Identity>,
    queue: Option<QueueName>,
    ledger: Ledger,
    open: Option<Open>,
    offers: VecDeque<Offer>,
    plans: HashMap<String, Plan>,
    lost_replies: HashMap<String, u32>,
    refuse_next_request: Option<(u16, &'static str)>,
    expect_exit: bool,
    /// A new leader answering nothing but registrations until the worker registers with it.
    awaiting_registration: bool,
    /// How many completed outcomes arrived about each work id (re-sends included).
    completions: HashMap<String, usize>,
    /// When a `WorkReady` notice last went out.
    last_notice: Option<Instant>,
}

impl FakeMaster {
    /// Takes the lease at `epoch`, listens on the master's endpoints and starts `command`.
    pub async fn start(
        client: async_nats::Client,
        lease: kv::Store,
        command: &str,
        url: &str,
        log: &Path,
        epoch: u64,
    ) -> anyhow::Result<Self> {
        let calls = client.subscribe("jetwork.master.>").await.context("subscribing")?;
        client.flush().await.context("flushing")?;
        let master = FakeMaster {
            client,
            lease,
            calls,
            worker: WorkerProcess::start(command, url, log)?,
            epoch,
            identity: None,
            queue: None,
            ledger: Ledger::default(),
            open: None,
            offers: VecDeque::new(),
            plans: HashMap::new(),
            lost_replies: HashMap::new(),
            refuse_next_request: None,
            expect_exit: false,
            awaiting_registration: false,
            completions: HashMap::new(),
            last_notice: None,
        };
        master.write_lease(epoch).await?;
        Ok(master)
    }

    /// The epoch the lease names.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The capacity the worker registered with.
    pub fn capacity(&self) -> u32 {
        self.ledger.capacity()
    }

    /// How many completed outcomes about `work_id` arrived so far (re-sends included).
    pub fn completions(&self, work_id: &str) -> usize {
        self.completions.get(work_id).copied().unwrap_or(0)
    }

    /// Serves the worker until `done` holds (`Ok`) or `within` passes (`Err`).
    pub async fn wait(
        &mut self,
        within: Duration,
        what: &str,
        done: impl Fn(&Self) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while !done(self) {
            self.fail_on_violations()?;
            if self.serve_one(deadline).await?.is_none() {
                anyhow::bail!("{what}: not within {} ms", within.as_millis());
            }
        }
        self.fail_on_violations()
    }

    /// Whether `work_id` has been handed out.
    pub fn granted(&self, work_id: &str) -> bool {
        self.ledger.handed_out(work_id)
    }

    /// Writes the lease value naming `epoch` (as a new leader does).
    pub async fn write_lease(&self, epoch: u64) -> anyhow::Result<()> {
        let holder = LeaseHolder { holder: format!("conformance-{epoch}"), epoch };
        let value = serde_json::to_vec(&holder)?;
        self.lease.put(subjects::LEASE_KEY, value.into()).await.context("writing the lease")?;
        Ok(())
    }

    /// A new leader at `epoch`: the lease names it, then it announces itself. What the old one
    /// held open is forgotten (it died). It answers nothing but a registration until the
    /// worker registers, so only the announcement can tell the worker of it.
    pub async fn elect(&mut self, epoch: u64) -> anyhow::Result<()> {
        self.write_lease(epoch).await?;
        self.epoch = epoch;
        self.open = None;
        self.awaiting_registration = true;
        self.announce(epoch).await
    }

    /// Publishes `jetwork.master.elected` claiming `epoch` (without touching the lease).
    pub async fn announce(&self, epoch: u64) -> anyhow::Result<()> {
        let body = codec::encode(&MasterElected { epoch, leader: format!("conformance-{epoch}") })?;
        self.client.publish(subjects::MASTER_ELECTED, body).await?;
        self.client.flush().await?;
        Ok(())
    }

    /// Publishes a `Revoke` of `assignment` claiming `epoch`; if it is the current one, the
    /// attempt is no longer the worker's from now.
    pub async fn revoke(&mut self, assignment: &Assignment, epoch: u64) -> anyhow::Result<()> {
        let identity = self.identity.clone().context("revoking before the worker registered")?;
        let subject = subjects::worker_cancel(identity.login.as_ref(), &identity.id);
        let revoke =
            Revoke { epoch, work_id: assignment.work_id.clone(), attempt: assignment.attempt };
        self.client.publish(subject, codec::encode(&revoke)?).await?;
        self.client.flush().await?;
        if epoch == self.epoch {
            self.ledger.ended(&key_of(assignment), Instant::now(), "revoked");
        }
        Ok(())
    }

    /// A job whose handler sleeps `seconds` and returns the payload (see the handler contract).
    pub fn job(&self, tag: &str, seconds: f64, timeout: Duration) -> anyhow::Result<Assignment> {
        let queue = self.queue.clone().context("a job before the worker registered")?;
        let timeout_ms = clock::millis(timeout);
        Ok(Assignment {
            work_id: WorkId::parse(tag).map_err(|e| anyhow::anyhow!("work id {tag}: {e}"))?,
            queue,
            attempt: 1,
            deadline_ms: clock::now_ms() + timeout_ms,
            timeout_ms,
            payload: Bytes::from(format!("{seconds} {tag}")),
            token: Token::random(),
        })
    }

    /// Hands `assignments` out in the reply to a request (the next one, or the one held open),
    /// claiming `epoch`.
    pub fn offer(&mut self, epoch: u64, assignments: Vec<Assignment>) {
        self.offers.push_back(Offer { epoch, assignments });
    }

    /// How reports about `work_id` are answered.
    pub fn plan(&mut self, work_id: &str, plan: Plan) {
        self.plans.insert(work_id.to_owned(), plan);
    }

    /// The next request gets this refusal.
    pub fn refuse_next_request(&mut self, code: u16, reason: &'static str) {
        self.refuse_next_request = Some((code, reason));
    }

    /// `SIGTERM` to the worker, which may now exit.
    pub fn terminate(&mut self) -> anyhow::Result<()> {
        self.expect_exit = true;
        self.worker.terminate()
    }

    /// Whether the worker process has exited.
    pub fn exited(&mut self) -> bool {
        self.worker.exited().is_some()
    }

    /// Serves the worker until `found` picks something out of what it sends (`Ok`), or
    /// `within` passes (`Err` saying it never came, or that the worker broke a rule).
    pub async fn until<T>(
        &mut self,
        within: Duration,
        what: &str,
        mut found: impl FnMut(&Seen, &Self) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + within;
        loop {
            self.fail_on_violations()?;
            let Some(seen) = self.serve_one(deadline).await? else {
                anyhow::bail!("{what}: not within {} ms", within.as_millis());
            };
            if let Some(value) = found(&seen, self) {
                self.fail_on_violations()?;
                return Ok(value);
            }
        }
    }

    /// Serves the worker for `duration`, failing if it breaks a rule meanwhile.
    pub async fn serve_for(&mut self, duration: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + duration;
        while self.serve_one(deadline).await?.is_some() {
            self.fail_on_violations()?;
        }
        self.fail_on_violations()
    }

    /// Waits for the worker to register (it then has an identity and a queue).
    pub async fn registered(&mut self, within: Duration) -> anyhow::Result<()> {
        self.until(within, "the worker's registration", |seen, _| {
            matches!(seen, Seen::Register(_)).then_some(())
        })
        .await
    }

    fn fail_on_violations(&self) -> anyhow::Result<()> {
        match self.ledger.violations() {
            [] => Ok(()),
            broken => anyhow::bail!("{}", broken.join("; ")),
        }
    }

    /// Answers what comes until one worker message arrives (`Some`) or `deadline` passes.
    async fn serve_one(&mut self, deadline: Instant) -> anyhow::Result<Option<Seen>> {
        loop {
            self.answer_open().await?;
            self.notify().await?;
            if !self.expect_exit {
                if let Some(status) = self.worker.exited() {
                    anyhow::bail!("the worker exited ({status})");
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let tick = (deadline - now).min(Duration::from_millis(20));
            let msg = match tokio::time::timeout(tick, self.calls.next()).await {
                Ok(Some(msg)) => msg,
                Ok(None) => anyhow::bail!("the subscription to the master's endpoints ended"),
                Err(_) => continue,
            };
            if let Some(seen) = self.handle(msg).await? {
                return Ok(Some(seen));
            }
        }
    }

    /// Tells a worker without an open request that work waits (`WorkReady` on its `.ready`
    /// subject), every [`NOTICE_EVERY`] while it does, as the master does.
    async fn notify(&mut self) -> anyhow::Result<()> {
        let due = self.open.is_none()
            && !self.offers.is_empty()
            && !self.awaiting_registration
            && self.last_notice.is_none_or(|at| at.elapsed() >= NOTICE_EVERY);
        let Some(identity) = self.identity.as_ref().filter(|_| due) else {
            return Ok(());
        };
        let subject = subjects::worker_ready(identity.login.as_ref(), &identity.id);
        self.client.publish(subject, codec::encode(&WorkReady { epoch: self.epoch })?).await?;
        self.last_notice = Some(Instant::now());
        Ok(())
    }

    /// Answers the open request if an offer waits or its wait is over.
    async fn answer_open(&mut self) -> anyhow::Result<()> {
        let due = self
            .open
            .as_ref()
            .is_some_and(|o| !self.offers.is_empty() || Instant::now() >= o.until);
        if due {
            if let Some(open) = self.open.take() {
                self.grant(open.reply, open.slots).await?;
            }
        }
        Ok(())
    }

    /// Replies to a request for `slots` with the next offer (at most `slots` of it) or nothing.
    async fn grant(&mut self, reply: Subject, slots: u32) -> anyhow::Result<()> {
        let (epoch, assignments) = match self.offers.front_mut() {
            Some(offer) if slots > 0 => {
                let take = offer.assignments.len().min(slots as usize);
                let given: Vec<Assignment> = offer.assignments.drain(..take).collect();
                let epoch = offer.epoch;
                if offer.assignments.is_empty() {
                    self.offers.pop_front();
                }
                (epoch, given)
            }
            _ => (self.epoch, Vec::new()),
        };
        let believable = match epoch.cmp(&self.epoch) {
            std::cmp::Ordering::Equal => Ok(()),
            std::cmp::Ordering::Less => {
                Err(format!("epoch {epoch}, older than the followed {}", self.epoch))
            }
            std::cmp::Ordering::Greater => {
                Err(format!("epoch {epoch}, which the lease (epoch {}) does not name", self.epoch))
            }
        };
        for a in &assignments {
            self.ledger.granted(a, believable.clone());
        }
        self.send(reply, &WorkGrant { epoch, assignments }).await
    }

    async fn send<T: serde::Serialize>(&self, reply: Subject, msg: &T) -> anyhow::Result<()> {
        self.client.publish(reply, codec::encode(msg)?).await?;
        Ok(())
    }

    async fn refuse(&self, reply: Subject, code: u16, reason: &str) -> anyhow::Result<()> {
        let mut headers = HeaderMap::new();
        headers.insert(headers::NATS_SERVICE_ERROR, reason);
        headers.insert(headers::NATS_SERVICE_ERROR_CODE, code.to_string().as_str());
        self.client.publish_with_headers(reply, headers, Bytes::new()).await?;
        Ok(())
    }

    /// Decodes, checks and answers one message on `jetwork.master.>`.
    async fn handle(&mut self, msg: Message) -> anyhow::Result<Option<Seen>> {
        let at = Instant::now();
        let subject = msg.subject.as_str().to_owned();
        let Some(reply) = msg.reply.clone() else {
            return Ok(None); // not a request: an announcement, or someone else's traffic
        };
        let Some((endpoint, named)) = endpoint_of(&subject) else {
            return Ok(None);
        };
        let decoded = match endpoint {
            subjects::MASTER_REGISTER => codec::decode(&msg.payload).map(Seen::Register),
            subjects::MASTER_REQUEST => codec::decode(&msg.payload).map(Seen::Request),
            subjects::MASTER_REPORT => codec::decode(&msg.payload).map(Seen::Report),
            _ => codec::decode(&msg.payload).map(Seen::Deregister),
        };
        let seen = match decoded {
            Ok(seen) => seen,
            Err(e) => {
                self.ledger.violated(format!("an unreadable message on {subject}: {e}"));
                self.refuse(reply, 400, &format!("unreadable: {e}")).await?;
                return Ok(None);
            }
        };
        self.check_identity(&seen, named);
        if self.awaiting_registration && !matches!(seen, Seen::Register(_)) {
            return Ok(Some(seen)); // unanswered: the worker must learn of it by the announcement
        }
        match &seen {
            Seen::Register(r) => {
                self.awaiting_registration = false;
                self.ledger.set_capacity(r.capacity);
                if self.queue.is_none() {
                    self.queue = r.queues.first().cloned();
                }
                let work_ready = !self.offers.is_empty();
                let registered = Registered { epoch: self.epoch, revoked: Vec::new(), work_ready };
                self.send(reply, &registered).await?;
            }
            Seen::Request(r) => {
                if let Some((code, reason)) = self.refuse_next_request.take() {
                    self.refuse(reply, code, reason).await?;
                    return Ok(Some(seen));
                }
                if let Some(open) = self.open.take() {
                    // A newer request answers the open one, empty (as the master does).
                    self.send(open.reply, &WorkGrant { epoch: self.epoch, assignments: vec![] })
                        .await?;
                }
                self.ledger.asks("request", r.slots, 0, 0);
                if !self.offers.is_empty() || r.slots == 0 || r.wait_ms == 0 {
                    self.grant(reply, r.slots).await?;
                } else {
                    let hold = Duration::from_millis(r.wait_ms).min(MAX_HOLD);
                    self.open = Some(Open { reply, slots: r.slots, until: at + hold });
                }
            }
            Seen::Report(r) => self.answer_report(r, reply, at).await?,
            Seen::Deregister(_) => {
                let requeued = self.ledger.held();
                self.ledger.end_all(at, "deregistered");
                let epoch = self.epoch;
                self.send(reply, &Deregistered { epoch, requeued }).await?;
            }
        }
        Ok(Some(seen))
    }

    async fn answer_report(
        &mut self,
        r: &Report,
        reply: Subject,
        at: Instant,
    ) -> anyhow::Result<()> {
        let freeing = r.outcomes.iter().filter(|o| o.status != OutcomeStatus::Progress).count();
        let open = self.open.as_ref().map_or(0, |o| o.slots);
        self.ledger.asks("report", r.slots, open, u32::try_from(freeing).unwrap_or(u32::MAX));
        for o in &r.outcomes {
            self.ledger.outcome(o, at);
            if o.status == OutcomeStatus::Completed {
                *self.completions.entry(o.work_id.to_string()).or_default() += 1;
            }
        }
        let mut answer = true;
        let mut verdicts = Vec::with_capacity(r.outcomes.len());
        for o in &r.outcomes {
            let id = o.work_id.to_string();
            let kind = match self.plans.get(&id).copied() {
                Some(Plan::Verdict(kind)) => kind,
                Some(Plan::NeverReply) => {
                    answer = false;
                    VerdictKind::Accepted
                }
                Some(Plan::LoseFirstReply) if o.status != OutcomeStatus::Progress => {
                    let lost = self.lost_replies.entry(id).or_default();
                    *lost += 1;
                    if *lost == 1 {
                        answer = false;
                    }
                    VerdictKind::Accepted
                }
                _ => VerdictKind::Accepted,
            };
            verdicts.push(Verdict {
                work_id: Some(o.work_id.clone()),
                attempt: o.attempt,
                verdict: kind,
                deadline_ms: None,
                timeout_ms: None,
                reason: (kind == VerdictKind::Rejected).then(|| "conformance: rejected".into()),
            });
        }
        if !answer {
            return Ok(());
        }
        for (o, v) in r.outcomes.iter().zip(&verdicts) {
            let ends = o.status != OutcomeStatus::Progress || v.verdict == VerdictKind::Superseded;
            if ends {
                self.ledger.ended(&(o.work_id.to_string(), o.attempt), at, verdict_name(v.verdict));
            }
        }
        let epoch = self.epoch;
        self.send(reply, &ReportReply { epoch, verdicts, assignments: Vec::new() }).await
    }

    /// The same worker id, session and login in every message.
    fn check_identity(&mut self, seen: &Seen, named: Option<(&str, &str)>) {
        let (id, session) = match seen {
            Seen::Register(r) => (&r.worker_id, r.session),
            Seen::Request(r) => (&r.worker_id, r.session),
            Seen::Report(r) => (&r.worker_id, r.session),
            Seen::Deregister(r) => (&r.worker_id, r.session),
        };
        if let Some((_, subject_id)) = named {
            if subject_id != id.as_str() {
                self.ledger.violated(format!(
                    "worker_id {id} in a message sent under the subject of {subject_id}"
                ));
            }
        }
        let login = named.and_then(|(login, _)| Login::parse(login).ok());
        match &self.identity {
            None => self.identity = Some(Identity { id: id.clone(), login, session }),
            Some(known) if known.id != *id || known.session != session => {
                self.ledger.violated(format!(
                    "a message from worker {id} under another id or session than its registration's"
                ));
            }
            Some(_) => {}
        }
    }
}

/// The endpoint of a worker subject and, if it is under a login, the login and worker id.
fn endpoint_of(subject: &str) -> Option<(&'static str, Option<(&str, &str)>)> {
    subjects::WORKER_ENDPOINTS.into_iter().find_map(|endpoint| {
        if subject == endpoint {
            Some((endpoint, None))
        } else {
            subjects::login_of_endpoint(endpoint, subject).map(|named| (endpoint, Some(named)))
        }
    })
}

fn key_of(a: &Assignment) -> Key {
    (a.work_id.to_string(), a.attempt)
}

fn verdict_name(kind: VerdictKind) -> &'static str {
    match kind {
        VerdictKind::Accepted => "accepted",
        VerdictKind::Finished => "finished",
        VerdictKind::Superseded => "superseded",
        VerdictKind::Rejected => "rejected",
    }
}
