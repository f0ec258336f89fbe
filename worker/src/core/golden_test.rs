//! Golden-script tests of the engine (toydb style). Each file under `core/testscripts/` is a
//! scenario: inputs in, the actions they produce out. Regenerate the expected output with
//! `UPDATE_GOLDENFILES=1 cargo test -p jetwork-worker` and review the diff: it is the spec.
//!
//! Commands (the clock starts at 0 and only moves when told; the wall clock is the same
//! plus 1 000 000 ms):
//! - `config key=value…` (before anything else): `concurrency`, `register`, `resend`,
//!   `timeout` (request timeout), `progress_every`, `progress_interval`, `grace`,
//!   `max_result`, `report_bytes`, `max_reason`.
//! - `start`; `advance <ms>` (time passes, no input); `tick [<ms>]` (advance, then a tick).
//! - `registered [id=<n>] epoch=<e> [revoked=<id>@<a>,…] [ready=true]`
//! - `granted [id=<n>] epoch=<e> [work=<id>@<a>,…] [timeout=<ms>] [sent=<ms>]`: `sent` is how
//!   long ago (on the wall clock) the master sent it, 0 by default; `timeout` 10 000.
//! - `reported [id=<n>] epoch=<e> [verdict=<kind>] [<id>@<a>=<kind>…] [work=…] [timeout=…]
//!   [sent=…]`: one verdict per outcome, in order (`verdict`, `accepted` by default, unless
//!   the outcome's own key says otherwise); `extend=<ms>`: accepted verdicts give that
//!   `timeout_ms` (as the master's do for progress). `term=<n>` (both): the grants carry the
//!   tokens of the `n`th master since the first (0 by default), as a new master's hand-out
//!   again of what its predecessor granted early and never recorded; an outcome sent under
//!   such a token shows it as `(term n's token)`.
//! - `noreply <register|request|report> <nomaster|unknown|inuse|refused|unconfirmed|timeout>
//!   [id=<n>]`: the request got no usable reply.
//! - `elected epoch=<e>`; `lease epoch=<e> [holder=<name>]`, `lease none`, `lease error`
//!   (answers the oldest lease check).
//! - `ready epoch=<e>`; `done <id>@<a> [result=<text>] [size=<bytes>]`;
//!   `crash <id>@<a> [reason=<text>] [permanent=true]`; `cancel <id>@<a> epoch=<n>`; `progress <id>@<a>`; `shutdown`; `state`.
//! - `gate <open|closed>`: the handler's gate opened or closed.
//!
//! Without `id=`, a reply answers the oldest unanswered request of its kind. Every token and
//! session the engine sends is checked: a wrong one is printed as `WRONG TOKEN`/`SESSION`.
//! After every command the runner checks the engine's invariants.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt::Write as _;

use bytes::Bytes;
use jetwork_shared::protocol::{
    Assignment, LeaseHolder, OutcomeStatus, Registered, ReportReply, RunningWork, Verdict,
    VerdictKind, WorkGrant,
};
use jetwork_shared::{QueueName, Token, WorkId, WorkerId};

use super::flights::Kind;
use super::*;

/// The wall clock, ahead of the monotonic one by this much.
const WALL: Millis = 1_000_000;

/// The token the master hands out with an attempt (the runner checks that it comes back).
pub(super) fn token(key: &Key) -> Token {
    token_in(key, 0)
}

/// The token a master of the `term`th epoch since the first (0) hands out with an attempt: a
/// new master hands out again, under a token of its own, what its predecessor granted early
/// and never recorded.
fn token_in(key: &Key, term: u32) -> Token {
    let hash = key
        .0
        .as_str()
        .bytes()
        .fold(u128::from(key.1), |h, b| (h ^ u128::from(b)).wrapping_mul(0x100_0000_01b3));
    Token::from_u128((hash | 1 << 100) ^ u128::from(term) << 64)
}

/// ` (term N's token)` for a token handed out by a later master, ` WRONG TOKEN` for one
/// nobody handed out, nothing for the first one's.
fn token_text(key: &Key, token: Token) -> String {
    match (0..8).find(|term| token_in(key, *term) == token) {
        Some(0) => String::new(),
        Some(term) => format!(" (term {term}'s token)"),
        None => " WRONG TOKEN".to_owned(),
    }
}

pub(super) fn session() -> Token {
    Token::from_u128(0x5e55)
}

struct Runner {
    cfg: Config,
    engine: Option<Engine>,
    now: Millis,
    /// Requests sent and not yet answered: id → kind (`register`, `request`, `report`), and
    /// for reports the outcomes they carried.
    open: BTreeMap<RequestId, (&'static str, Vec<Key>)>,
    /// Announced epochs whose lease check is pending, oldest first.
    checks: Vec<u64>,
}

fn parse_key(text: &str) -> Result<Key, Box<dyn Error>> {
    let (id, attempt) = text.split_once('@').ok_or(format!("expected <id>@<attempt>: {text}"))?;
    Ok((WorkId::parse(id)?, attempt.parse()?))
}

fn parse_keys(text: Option<&str>) -> Result<Vec<Key>, Box<dyn Error>> {
    text.map_or(Ok(Vec::new()), |t| t.split(',').map(parse_key).collect())
}

fn verdict_kind(text: &str) -> Result<VerdictKind, Box<dyn Error>> {
    Ok(match text {
        "accepted" => VerdictKind::Accepted,
        "finished" => VerdictKind::Finished,
        "superseded" => VerdictKind::Superseded,
        "rejected" => VerdictKind::Rejected,
        other => return Err(format!("unknown verdict {other}").into()),
    })
}

fn failure(text: &str) -> Result<Failure, Box<dyn Error>> {
    Ok(match text {
        "nomaster" => Failure::NoMaster,
        "unknown" => Failure::UnknownWorker,
        "inuse" => Failure::IdInUse("409 worker id in use".into()),
        "refused" => Failure::Refused("503 at most 2 workers".into()),
        "unconfirmed" => Failure::Unconfirmed(99),
        "timeout" => Failure::Failed("timed out".into()),
        other => return Err(format!("unknown failure {other}").into()),
    })
}

impl Runner {
    fn new() -> Self {
        let id = WorkerId::parse("w1").expect("valid id");
        let queues = vec![QueueName::parse("q").expect("valid queue")];
        Runner {
            cfg: Config::new(id, session(), queues, 1),
            engine: None,
            now: 0,
            open: BTreeMap::new(),
            checks: Vec::new(),
        }
    }

    fn step(&mut self, input: Input) -> Result<String, Box<dyn Error>> {
        let engine = self.engine.get_or_insert_with(|| Engine::new(self.cfg.clone()));
        let actions = engine.step(input);
        engine.check_invariants()?;
        let mut s = String::new();
        for action in &actions {
            match action {
                Action::Register { id, .. } => {
                    drop(self.open.insert(*id, ("register", Vec::new())))
                }
                Action::RequestWork { id, .. } => {
                    drop(self.open.insert(*id, ("request", Vec::new())))
                }
                Action::Report { id, msg, .. } => {
                    let sent =
                        msg.outcomes.iter().map(|o| (o.work_id.clone(), o.attempt)).collect();
                    self.open.insert(*id, ("report", sent));
                }
                Action::CheckLease { announced } => self.checks.push(*announced),
                _ => {}
            }
            let _ = writeln!(s, "{}", render(action));
        }
        Ok(s)
    }

    /// The request a reply answers: `id=`, or the oldest open one of `kind`.
    fn target(
        &mut self,
        kind: &str,
        id: Option<&str>,
    ) -> Result<(RequestId, Vec<Key>), Box<dyn Error>> {
        let id = match id {
            Some(id) => id.parse()?,
            None => {
                *self.open.iter().find(|(_, (k, _))| *k == kind).ok_or(format!("no open {kind}"))?.0
            }
        };
        let (_, sent) = self.open.remove(&id).ok_or(format!("#{id} is not open"))?;
        Ok((id, sent))
    }

    fn assignments(
        &self,
        args: &mut goldenscript::ArgumentConsumer,
    ) -> Result<Vec<Assignment>, Box<dyn Error>> {
        let keys = parse_keys(args.take_key("work"))?;
        let term: u32 = args.take_key("term").map_or(Ok(0), str::parse)?;
        let timeout_ms: Millis = args.take_key("timeout").map_or(Ok(10_000), str::parse)?;
        let sent: Millis = args.take_key("sent").map_or(Ok(0), str::parse)?;
        let deadline_ms = (self.now + WALL).saturating_sub(sent) + timeout_ms;
        Ok(keys
            .into_iter()
            .map(|key| Assignment {
                work_id: key.0.clone(),
                queue: QueueName::parse("q").expect("valid queue"),
                attempt: key.1,
                deadline_ms,
                timeout_ms,
                payload: Bytes::from(key.0.to_string()),
                token: token_in(&key, term),
            })
            .collect())
    }
}

fn key_text(work_id: &WorkId, attempt: u32) -> String {
    format!("{work_id}@{attempt}")
}

/// ` held=[…]` when a request or report lists what the worker holds, nothing when it does not.
fn held_text(running: Option<&[RunningWork]>) -> String {
    running.map_or(String::new(), |held| {
        let held: Vec<_> = held.iter().map(|r| key_text(&r.work_id, r.attempt)).collect();
        format!(" held=[{}]", held.join(" "))
    })
}

fn render(action: &Action) -> String {
    let check_session = |s: &Token| if *s == session() { "" } else { " WRONG SESSION" };
    match action {
        Action::Register { id, epoch, msg } => {
            let held: Vec<_> =
                msg.running.iter().map(|r| key_text(&r.work_id, r.attempt)).collect();
            format!(
                "→ register #{id} epoch={epoch} capacity={} held=[{}]{}",
                msg.capacity,
                held.join(" "),
                check_session(&msg.session)
            )
        }
        Action::RequestWork { id, epoch, msg } => {
            format!(
                "→ request #{id} epoch={epoch} slots={} wait={}{}{}",
                msg.slots,
                msg.wait_ms,
                held_text(msg.running.as_deref()),
                check_session(&msg.session)
            )
        }
        Action::Report { id, epoch, msg } => {
            let outcomes: Vec<_> = msg
                .outcomes
                .iter()
                .map(|o| {
                    let mut s = key_text(&o.work_id, o.attempt);
                    match o.status {
                        OutcomeStatus::Completed => {
                            let _ =
                                write!(s, " completed {:?}", String::from_utf8_lossy(&o.result));
                        }
                        OutcomeStatus::Failed => {
                            let kind = if o.non_retryable { "failed for good" } else { "failed" };
                            let _ = write!(s, " {kind} {:?}", o.reason.as_deref().unwrap_or(""));
                        }
                        OutcomeStatus::Progress => s.push_str(" progress"),
                    }
                    s.push_str(&token_text(&(o.work_id.clone(), o.attempt), o.token));
                    s
                })
                .collect();
            format!(
                "→ report #{id} epoch={epoch} slots={} [{}]{}{}",
                msg.slots,
                outcomes.join(", "),
                held_text(msg.running.as_deref()),
                check_session(&msg.session)
            )
        }
        Action::Withdraw { msg, .. } => {
            format!("→ withdraw (request for {} slots){}", msg.slots, check_session(&msg.session))
        }
        Action::Start { assignment: a, .. } => {
            format!("→ start {} timeout={}", key_text(&a.work_id, a.attempt), a.timeout_ms)
        }
        Action::Abort { work_id, attempt } => format!("→ abort {}", key_text(work_id, *attempt)),
        Action::Extend { work_id, attempt, expires } => {
            format!("→ extend {} until={expires}", key_text(work_id, *attempt))
        }
        Action::CheckLease { announced } => format!("→ check lease (announced epoch {announced})"),
        Action::Log(log) => {
            let level = match log.level {
                Level::Debug => "debug",
                Level::Info => "info",
                Level::Warn => "warn",
            };
            let limited = if log.limit.is_some() { " (rate-limited)" } else { "" };
            format!("log {level}{limited}: {}", log.text)
        }
        Action::Stopped => "→ stopped".to_owned(),
    }
}

fn render_state(engine: &Engine, now: Millis) -> String {
    let slots = engine.slots();
    let mut s = format!(
        "epoch={} registered={} want_work={}{} stopped={}\nslots: concurrency={} running={} backlog={} pending={} (carried {}) asked={} → used {}\n",
        engine.epoch, engine.registered, engine.want_work,
        if engine.gate_open { "" } else { " gate=closed" }, engine.stopped(), slots.concurrency,
        slots.running, slots.backlog, slots.pending, slots.carried, slots.asked, slots.used()
    );
    for key in engine.attempts.running() {
        let _ = writeln!(s, "running {}", key_text(&key.0, key.1));
    }
    for (key, expires) in engine.attempts.backlog() {
        let _ = writeln!(
            s,
            "backlog {} expires in {} ms",
            key_text(&key.0, key.1),
            expires as i64 - now as i64
        );
    }
    for (key, sent, carrier) in engine.attempts.pending_detail() {
        let sent = sent.map_or("unsent".to_owned(), |at| format!("sent {} ms ago", now - at));
        let carrier = carrier.map_or(String::new(), |id| format!(", slot asked by #{id}"));
        let _ = writeln!(s, "pending {} {sent}{carrier}", key_text(&key.0, key.1));
    }
    for (id, flight) in engine.flights.iter() {
        let kind = match &flight.kind {
            Kind::Register => "register".to_owned(),
            Kind::Work { slots, .. } => format!("request slots={slots}"),
            Kind::Report { slots, .. } => format!("report slots={slots}"),
        };
        let current = if flight.current { "" } else { " (released)" };
        let _ =
            writeln!(s, "in flight #{id} {kind}, sent {} ms ago{current}", now - flight.sent_at);
    }
    s
}

impl goldenscript::Runner for Runner {
    type Command = goldenscript::Command;

    fn run(
        &mut self,
        command: &goldenscript::Command,
        _: &goldenscript::Context,
    ) -> Result<String, Box<dyn Error>> {
        let mut args = command.consume_args();
        let now = self.now;
        let wall = now + WALL;
        let output = match command.name.as_str() {
            "config" => {
                if self.engine.is_some() {
                    return Err("config must come first".into());
                }
                while let Some((key, value)) = args.next_key() {
                    let v: u64 = value.parse()?;
                    let cfg = &mut self.cfg;
                    match key {
                        "concurrency" => cfg.concurrency = u32::try_from(v)?,
                        "register" => cfg.register_interval = v,
                        "resend" => cfg.resend_interval = v,
                        "timeout" => cfg.request_timeout = v,
                        "progress_every" => cfg.progress_every = Some(v),
                        "progress_interval" => cfg.progress_interval = v,
                        "grace" => cfg.shutdown_grace = v,
                        "max_result" => cfg.max_result = usize::try_from(v)?,
                        "report_bytes" => cfg.report_bytes = usize::try_from(v)?,
                        "max_reason" => cfg.max_reason = usize::try_from(v)?,
                        other => return Err(format!("unknown config key {other}").into()),
                    }
                }
                String::new()
            }
            "start" => self.step(Input::Start { now })?,
            "advance" => {
                self.now += args.next_pos().ok_or("advance needs <ms>")?.parse::<u64>()?;
                format!("now={}\n", self.now)
            }
            "tick" => {
                if let Some(ms) = args.next_pos() {
                    self.now += ms.parse::<u64>()?;
                }
                let now = self.now;
                format!("now={now}\n{}", self.step(Input::Tick { now })?)
            }
            "registered" => {
                let (id, _) = self.target("register", args.take_key("id"))?;
                let epoch = args.take_key("epoch").ok_or("registered needs epoch=")?.parse()?;
                let revoked = parse_keys(args.take_key("revoked"))?
                    .into_iter()
                    .map(|(work_id, attempt)| RunningWork { work_id, attempt })
                    .collect();
                let work_ready = args.take_key("ready").map_or(Ok(false), str::parse)?;
                let reply = Ok(Registered { epoch, revoked, work_ready });
                self.step(Input::Registered { id, reply, now })?
            }
            "granted" => {
                let (id, _) = self.target("request", args.take_key("id"))?;
                let epoch = args.take_key("epoch").ok_or("granted needs epoch=")?.parse()?;
                let assignments = self.assignments(&mut args)?;
                let reply = Ok(WorkGrant { epoch, assignments });
                self.step(Input::Granted { id, reply, now, wall })?
            }
            "reported" => {
                let (id, sent) = self.target("report", args.take_key("id"))?;
                let epoch = args.take_key("epoch").ok_or("reported needs epoch=")?.parse()?;
                let default = verdict_kind(args.take_key("verdict").unwrap_or("accepted"))?;
                let extend: Option<Millis> = args.take_key("extend").map(str::parse).transpose()?;
                let assignments = self.assignments(&mut args)?;
                let mut verdicts = Vec::new();
                for (work_id, attempt) in sent {
                    let given = args.take_key(&key_text(&work_id, attempt));
                    let verdict = given.map_or(Ok(default), verdict_kind)?;
                    let reason = (verdict == VerdictKind::Rejected).then(|| "bad token".to_owned());
                    verdicts.push(Verdict {
                        work_id: Some(work_id),
                        attempt,
                        verdict,
                        deadline_ms: None,
                        timeout_ms: extend.filter(|_| verdict == VerdictKind::Accepted),
                        reason,
                    });
                }
                let reply = Ok(ReportReply { epoch, verdicts, assignments });
                self.step(Input::Reported { id, reply, now, wall })?
            }
            "noreply" => {
                let what = args.next_pos().ok_or("noreply needs <register|request|report>")?;
                let why = failure(args.next_pos().ok_or("noreply needs a failure")?)?;
                let (id, _) = self.target(what, args.take_key("id"))?;
                match what {
                    "register" => self.step(Input::Registered { id, reply: Err(why), now })?,
                    "request" => self.step(Input::Granted { id, reply: Err(why), now, wall })?,
                    _ => self.step(Input::Reported { id, reply: Err(why), now, wall })?,
                }
            }
            "elected" => {
                let epoch = args.take_key("epoch").ok_or("elected needs epoch=")?.parse()?;
                self.step(Input::Elected { epoch, now })?
            }
            "lease" => {
                if self.checks.is_empty() {
                    return Err("no lease check is pending".into());
                }
                let announced = self.checks.remove(0);
                let read = match args.next_pos() {
                    Some("none") => Ok(None),
                    Some("error") => Err("timed out".to_owned()),
                    Some(other) => return Err(format!("unknown lease answer {other}").into()),
                    None => {
                        let epoch = args.take_key("epoch").ok_or("lease needs epoch=")?.parse()?;
                        let holder = args.take_key("holder").unwrap_or("m2").to_owned();
                        Ok(Some(LeaseHolder { holder, epoch }))
                    }
                };
                self.step(Input::Lease { announced, read, now })?
            }
            "cancel" => {
                let (work_id, attempt) = parse_key(args.next_pos().ok_or("needs <id>@<attempt>")?)?;
                let epoch = args.take_key("epoch").ok_or("cancel needs epoch=")?.parse()?;
                self.step(Input::Cancelled { epoch, work_id, attempt, now })?
            }
            "ready" => {
                let epoch = args.take_key("epoch").ok_or("ready needs epoch=")?.parse()?;
                self.step(Input::WorkReady { epoch, now })?
            }
            "done" | "crash" | "progress" => {
                let (work_id, attempt) = parse_key(args.next_pos().ok_or("needs <id>@<attempt>")?)?;
                let input = match command.name.as_str() {
                    "done" => {
                        let result = match args.take_key("size") {
                            Some(size) => Bytes::from(vec![b'x'; size.parse()?]),
                            None => Bytes::from(args.take_key("result").unwrap_or("ok").to_owned()),
                        };
                        Input::JobEnded { work_id, attempt, result: Ok(result), now }
                    }
                    "crash" => {
                        let reason = args.take_key("reason").unwrap_or("boom").to_owned();
                        let retryable = args.take_key("permanent").is_none_or(|p| p != "true");
                        let error = crate::JobError { reason, retryable };
                        Input::JobEnded { work_id, attempt, result: Err(error), now }
                    }
                    _ => Input::Progress { work_id, attempt, now },
                };
                self.step(input)?
            }
            "shutdown" => self.step(Input::Shutdown { now })?,
            "gate" => {
                let open = match args.next_pos() {
                    Some("open") => true,
                    Some("closed") => false,
                    _ => return Err("gate needs open or closed".into()),
                };
                self.step(Input::Gate { open, now })?
            }
            "state" => match &self.engine {
                Some(engine) => render_state(engine, now),
                None => "not started\n".to_owned(),
            },
            other => return Err(format!("unknown command {other}").into()),
        };
        args.reject_next()?;
        Ok(output)
    }
}

test_each_file::test_each_path! { in "worker/src/core/testscripts" as scripts => test_goldenscript }

fn test_goldenscript(path: &std::path::Path) {
    goldenscript::run(&mut Runner::new(), path).expect("goldenscript failed")
}
