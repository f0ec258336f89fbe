//! Golden-script tests of the engine (toydb style). Each file under `core/testscripts/` is a
//! scenario: commands in, the events and effects they produce out (effects after `→`; a
//! worker's grant or report answer marked `(held)` names an item on its last attempt, so the
//! runtime sends it only once its write lands, never early). Regenerate the expected output
//! with `UPDATE_GOLDENFILES=1 cargo test -p jetwork-master` and review the diff.
//!
//! Commands (the clock starts at 0 and only moves when told):
//! - `policy key=value…`: set `work_timeout`, `worker_timeout`, `max_attempts`, `max_grant`,
//!   `max_grant_bytes`, `max_result`, `notify_interval`, `max_request_wait`,
//!   `max_workers`, `max_queues_per_worker`, `max_served_queues`, `takeover_grace`,
//!   `max_priority_jumps`, `max_waiting_per_queue`, `max_waiting`, `max_schedules`,
//!   `max_schedule_payload`, `schedule_min_interval`, `max_schedule_bytes_per_second`,
//!   `max_workers_per_login`, `max_slots_per_worker`, `initial_window`,
//!   `backoff_initial`, `backoff_factor`, `backoff_max`, `backoff_jitter` (0 or 1) (before
//!   use). Scripts start with no back-off (failed items are ready again at once) unless they
//!   set one.
//! - `rules <queue> key=value…`: the queue's own `max_attempts`, `work_timeout`,
//!   `backoff_initial` (with `backoff_factor`, `backoff_max`, `backoff_jitter`), `concurrency`,
//!   `rate` (starts per second) (before use).
//! - `login <name> [queues=a,b|*] [max_workers=<n>] [max_slots=<n>]`: a configured worker
//!   login (before use; with any, workers must register under one).
//! - `advance <ms>`: move the clock. `tick [<ms>]`: move the clock and send a `Tick`.
//! - `takeover epoch=<n> [leader=<id>] [submitted_through=<seq>]` (`submitted_through`: the
//!   submit stream's last sequence, recorded as `legacy_through` when older masters led)
//! - `submit seq=<n> [queue=<q>] [id=<msg id>] [size=<bytes>] [after=<seq>]
//!   [unreadable=<why>] [delay=<ms>] [priority=<n>] [attempts=<n>] [timeout=<ms>]
//!   [expires=<ms>] [invalid=<why>] [jump=true] [retry-of=<id>] [prior=<n>]
//!   [schedule=<name>] [work=<id>] [internal=true] [pending=<id>]` (no `id`: none was sent; no
//!   `after`: the delivery follows on from the queue's cursor; `jump`: read out of turn, a
//!   priority jump; `unreadable`: the stored message's headers could not be read; `delay` and
//!   `expires` are after now; `invalid`: its option headers are invalid, for this reason;
//!   `retry-of`, `prior`, `schedule`, `work`: the master-only headers `Jetwork-Retry-Of`,
//!   `-Prior-Attempts`, `-Schedule`, `-Work-Id` as stored; `internal`: stored on
//!   `jetwork.internal.<queue>`; `pending=<id>`: the runtime's submission of the tick or retry
//!   of `<id>` decided last, i.e. internal, with its key and `Jetwork-Work-Id`, pending or not)
//! - `register <worker> [queues="a,b"] [capacity=<n>] [running="<id>@<attempt>,…"]
//!   [session=<n>] [login=<login>]` (`login`: it came on the endpoint under that login)
//! - `deregister <worker> [session=<n>] [login=<login>]`: a worker that stops releases its id
//! - `request <worker> [slots=<n>] [wait=<ms>] [session=<n>] [login=<login>]`
//! - `report <worker> [done=<id>@<attempt>[/<result>]] [fail=<id>@<attempt>[/<reason>]]
//!   [fatal=<id>@<attempt>[/<reason>]] [progress=<id>@<attempt>] [forge=<id>@<attempt>]
//!   [garbled=<id>@<attempt>/<why>] [slots=<n>] [session=<n>] [login=<login>]` (keys may repeat; outcomes keep their order; each carries the
//!   token its attempt was handed out with, except `forge`: a completion with a wrong token;
//!   `fatal` is a failure reported as non-retryable; `garbled`: an entry the runtime could not
//!   read, for this reason)
//! - `cancel <id> [reason=<why>]`, `retry <id> [queue=<q>]`, `retry-all <queue>
//!   [state=failed|cancelled] [limit=<n>]`, `pause <queue>`, `resume <queue>`, `purge <queue>
//!   [through=<seq> unread=<n>]`: an operator's request (with `through`, the purge's lookup is
//!   answered at once with these values)
//! - `looked-up <request> (none | outcome=<id>/<state>/<submit seq>/<attempts>/<results seq>
//!   [queue=<q>] [priority=<n>] [attempts=<n>] [expires_after=<ms>] | outcomes="<id>/…,…"
//!   [truncated=true] | last=<seq> [unread=<n>] | unavailable=<why>)`: what the runtime read
//!   for a lookup
//! - `pending`: the master's own pending submissions (ticks and retries)
//! - `old-journal epoch=<n>` (first): start from a journal an older master (format 4 or
//!   before) led, which recorded no `legacy_through`
//! - `job <id>`: the job as `jetwork.master.job` reports it from the state
//! - `schedule-add <name> [queue=<q>] (every=<humantime> | cron="<expr>") [payload=<text>]`,
//!   `schedule-rm <name>`: an operator's request; `submitted <id>…`: these pending submissions
//!   are confirmed stored (`SubmissionsStored`); `schedules`: the listing as
//!   `jetwork.master.schedules` gives it
//!
//! A worker's session is derived from its name unless `session=<n>` gives another (an
//! impostor, or a restarted process). Tokens are not printed (they come from a seeded
//! generator); `takeover` seeds it with zeros.
//! - `published [result=<id>] [rejection=<seq>]`, `missing <id>`, `notify`, `state`
//! - `floors`: how far each queue's submissions may be purged (`upkeep::purge_floors`)
//! - `credits [prefetch=<n>] [outstanding=<n>]`: what each served queue's reader may pull
//!   (`upkeep::read_ahead`)
//! - `forgettable`: the idle queues the engine would have the runtime look at (with their
//!   cursors); `stored <queue>=<first stored seq>|none…`: what the runtime found for them
//! - `reading <queue>…`: the items of each queue waiting out a delay or back-off, those in all,
//!   and whether its reader may read (`Engine::may_read`)
//!
//! After every command the runner checks the state invariants, and at the end of each script
//! it checks that replaying every emitted event from an empty state gives the live state.

use std::error::Error;
use std::fmt::Write as _;

use bytes::Bytes;
use jetwork_shared::job_options::JobOptions;
use jetwork_shared::jobs::JobState;
use jetwork_shared::protocol::{
    Deregister, Outcome, OutcomeStatus, RegisterWorker, Report, RequestWork, RunningWork,
};
use jetwork_shared::report_entries::UnreadableOutcome;
use jetwork_shared::schedules::ScheduleName;
use jetwork_shared::{Login, QueueName, Token, WorkId, WorkerId};

use super::policy::{Backoff, LoginRules, QueueRules};
use super::*;

struct Runner {
    engine: Engine,
    now: Millis,
    request: RequestId,
    journal: Vec<Event>,
    started: bool,
    /// The key of every submission of the master's own decided so far, by work id (a copy can
    /// be stored again after it is no longer pending).
    keys: std::collections::BTreeMap<WorkId, String>,
}

impl Runner {
    fn new() -> Self {
        Runner {
            engine: Engine::new(
                State::default(),
                Policy { backoff: Backoff::NONE, ..Policy::default() },
            ),
            now: 0,
            request: 0,
            journal: Vec::new(),
            started: false,
            keys: std::collections::BTreeMap::new(),
        }
    }

    fn next_request(&mut self) -> RequestId {
        self.request += 1;
        self.request
    }

    fn run_command(&mut self, command: Command) -> Result<String, Box<dyn Error>> {
        self.started = true;
        let out = self.engine.step(command);
        for event in &out.events {
            if let Event::ScheduleFired { work_id, key, .. }
            | Event::RetryDecided { work_id, key, .. } = event
            {
                self.keys.insert(work_id.clone(), key.clone());
            }
        }
        self.journal.extend(out.events.iter().cloned());
        self.engine.state().check_invariants()?;
        self.engine.check_index()?;
        Ok(render(&out.events, &out.effects))
    }
}

/// A list of held attempts, `<id>@<attempt>,…` (`none` for none), if given.
fn held(list: Option<&str>) -> Result<Option<Vec<RunningWork>>, Box<dyn Error>> {
    let Some(list) = list else { return Ok(None) };
    let mut running = Vec::new();
    for item in list.split(',').filter(|item| *item != "none") {
        let (work_id, attempt, _) = parse_ref(item)?;
        running.push(RunningWork { work_id, attempt });
    }
    Ok(Some(running))
}

fn parse_ref(text: &str) -> Result<(WorkId, u32, Option<String>), Box<dyn Error>> {
    let (id, rest) = text.split_once('@').ok_or(format!("expected <id>@<attempt>, got {text}"))?;
    let (attempt, extra) = match rest.split_once('/') {
        Some((a, extra)) => (a, Some(extra.to_owned())),
        None => (rest, None),
    };
    Ok((WorkId::parse(id)?, attempt.parse()?, extra))
}

fn worker(name: &str) -> Result<WorkerId, Box<dyn Error>> {
    Ok(WorkerId::parse(name)?)
}

/// The session a worker presents: derived from its name, or `session=<n>`.
fn session(worker: &WorkerId, given: Option<&str>) -> Result<Token, Box<dyn Error>> {
    match given {
        Some(n) => Ok(Token::from_u128(n.parse()?)),
        None => {
            let hash = worker.as_str().bytes().fold(0xcbf2_9ce4_8422_2325_u128, |h, b| {
                (h ^ u128::from(b)).wrapping_mul(0x100_0000_01b3)
            });
            Ok(Token::from_u128(hash))
        }
    }
}

/// A stored outcome written `<id>/<state>/<submit seq>/<attempts>/<results seq>`.
fn stored_outcome(
    text: &str,
    queue: &str,
    options: JobOptions,
) -> Result<StoredOutcome, Box<dyn Error>> {
    let parts: Vec<&str> = text.split('/').collect();
    let [id, state, submit_seq, attempts, results_seq] = parts[..] else {
        return Err(format!("expected <id>/<state>/<seq>/<attempts>/<results seq>: {text}").into());
    };
    let state = match state {
        "completed" => JobState::Completed,
        "failed" => JobState::Failed,
        "cancelled" => JobState::Cancelled,
        other => return Err(format!("unknown state {other}").into()),
    };
    Ok(StoredOutcome {
        work_id: WorkId::parse(id)?,
        queue: QueueName::parse(queue)?,
        state,
        submit_seq: submit_seq.parse()?,
        attempts: attempts.parse()?,
        options,
        results_seq: results_seq.parse()?,
    })
}

impl Runner {
    /// The token attempt `attempt` of `work_id` was handed out with (a zero token for work
    /// the engine does not know).
    fn token(&self, work_id: &WorkId, attempt: u32) -> Token {
        self.engine
            .state()
            .work
            .get(work_id)
            .and_then(|w| w.token(attempt).copied())
            .unwrap_or_default()
    }
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
        let output = match command.name.as_str() {
            "policy" => {
                if self.started {
                    return Err("policy must come before other commands".into());
                }
                let mut policy = self.engine.policy().clone();
                while let Some((key, value)) = args.next_key() {
                    if key == "backoff_factor" {
                        policy.backoff.factor = value.parse()?;
                        continue;
                    }
                    let v: u64 = value.parse()?;
                    match key {
                        "backoff_initial" => policy.backoff.initial = v,
                        "backoff_max" => policy.backoff.max = v,
                        "backoff_jitter" => policy.backoff.jitter = v != 0,
                        "work_timeout" => policy.work_timeout = v,
                        "worker_timeout" => policy.worker_timeout = v,
                        "max_attempts" => policy.max_attempts = v as u32,
                        "max_grant" => policy.max_grant = v as u32,
                        "max_grant_bytes" => policy.max_grant_bytes = v,
                        "max_result" => policy.max_result = v,
                        "notify_interval" => policy.notify_interval = v,
                        "max_request_wait" => policy.max_request_wait = v,
                        "max_workers" => policy.max_workers = v as u32,
                        "max_queues_per_worker" => policy.max_queues_per_worker = v as u32,
                        "max_served_queues" => policy.max_served_queues = v as u32,
                        "takeover_grace" => policy.takeover_grace = v,
                        "max_schedules" => policy.max_schedules = v as u32,
                        "max_schedule_payload" => policy.max_schedule_payload = v,
                        "schedule_min_interval" => policy.schedule_min_interval = v,
                        "max_schedule_bytes_per_second" => policy.max_schedule_bytes_per_second = v,
                        "max_priority_jumps" => policy.max_priority_jumps = v as u32,
                        "max_waiting_per_queue" => policy.max_waiting_per_queue = v,
                        "max_waiting" => policy.max_waiting = v,
                        "max_workers_per_login" => policy.max_workers_per_login = v as u32,
                        "max_slots_per_worker" => policy.max_slots_per_worker = v as u32,
                        "initial_window" => policy.initial_window = v as u32,
                        other => return Err(format!("unknown policy key {other}").into()),
                    }
                }
                self.engine = Engine::new(State::default(), policy);
                String::new()
            }
            "rules" => {
                if self.started {
                    return Err("rules must come before other commands".into());
                }
                let queue = QueueName::parse(args.next_pos().ok_or("rules needs <queue>")?)?;
                let mut policy = self.engine.policy().clone();
                let mut rules = QueueRules::default();
                let mut backoff = policy.backoff;
                let mut own_backoff = false;
                while let Some((key, value)) = args.next_key() {
                    match key {
                        "max_attempts" => rules.max_attempts = Some(value.parse()?),
                        "work_timeout" => rules.work_timeout = Some(value.parse()?),
                        "backoff_initial" => backoff.initial = value.parse()?,
                        "backoff_factor" => backoff.factor = value.parse()?,
                        "backoff_max" => backoff.max = value.parse()?,
                        "backoff_jitter" => backoff.jitter = value != "0",
                        "concurrency" => rules.concurrency = Some(value.parse()?),
                        "rate" => rules.rate = Some(value.parse()?),
                        other => return Err(format!("unknown rule {other}").into()),
                    }
                    own_backoff |= key.starts_with("backoff");
                }
                rules.backoff = own_backoff.then_some(backoff);
                policy.queues.insert(queue, rules);
                self.engine = Engine::new(State::default(), policy);
                String::new()
            }
            "login" => {
                if self.started {
                    return Err("login must come before other commands".into());
                }
                let login = Login::parse(args.next_pos().ok_or("login needs <name>")?)?;
                let mut policy = self.engine.policy().clone();
                let mut rules = LoginRules::default();
                while let Some((key, value)) = args.next_key() {
                    match key {
                        "queues" if value == "*" => rules.queues = None,
                        "queues" => {
                            let queues = value.split(',').map(QueueName::parse);
                            rules.queues = Some(queues.collect::<Result<_, _>>()?);
                        }
                        "max_workers" => rules.max_workers = Some(value.parse()?),
                        "max_slots" => rules.max_slots = Some(value.parse()?),
                        other => return Err(format!("unknown login rule {other}").into()),
                    }
                }
                policy.logins.insert(login, rules);
                self.engine = Engine::new(State::default(), policy);
                String::new()
            }
            "cancel" => {
                let work_id = WorkId::parse(args.next_pos().ok_or("cancel needs <id>")?)?;
                let reason = args.take_key("reason").map(str::to_owned);
                let request = self.next_request();
                self.run_command(Command::Cancel { request, work_id, reason, now })?
            }
            "purge" => {
                let queue = QueueName::parse(args.next_pos().ok_or("purge needs <queue>")?)?;
                let through = args.take_key("through").map(str::parse::<u64>).transpose()?;
                let unread: u64 = args.take_key("unread").map_or(Ok(0), str::parse)?;
                let request = self.next_request();
                let mut out = self.run_command(Command::Purge { request, queue, now })?;
                if let Some(through_seq) = through {
                    let found = Found::LastSubmitted { through_seq, unread };
                    out += &self.run_command(Command::LookedUp { request, found, now })?;
                }
                out
            }
            "retry" => {
                let work_id = WorkId::parse(args.next_pos().ok_or("retry needs <id>")?)?;
                let queue = args.take_key("queue").map(QueueName::parse).transpose()?;
                let request = self.next_request();
                self.run_command(Command::Retry { request, work_id, queue, now })?
            }
            "retry-all" => {
                let queue = QueueName::parse(args.next_pos().ok_or("retry-all needs <queue>")?)?;
                let state = match args.take_key("state").unwrap_or("failed") {
                    "failed" => JobState::Failed,
                    "cancelled" => JobState::Cancelled,
                    "completed" => JobState::Completed,
                    other => return Err(format!("unknown state {other}").into()),
                };
                let limit = args.take_key("limit").map_or(Ok(100), str::parse)?;
                let request = self.next_request();
                self.run_command(Command::RetryAll {
                    request,
                    queue,
                    state,
                    since_ms: 0,
                    limit,
                    now,
                })?
            }
            "looked-up" => {
                let request: RequestId =
                    args.next_pos().ok_or("looked-up needs <request>")?.parse()?;
                let found = if args.next_pos().is_some_and(|word| word == "none") {
                    Found::Outcome(None)
                } else if let Some(outcome) = args.take_key("outcome") {
                    let queue = args.take_key("queue").unwrap_or("q");
                    let options = JobOptions {
                        priority: args.take_key("priority").map_or(Ok(0), str::parse)?,
                        max_attempts: args.take_key("attempts").map(str::parse).transpose()?,
                        expires_after: args.take_key("expires_after").map_or(Ok(0), str::parse)?,
                        ..JobOptions::default()
                    };
                    Found::Outcome(Some(stored_outcome(outcome, queue, options)?))
                } else if let Some(list) = args.take_key("outcomes") {
                    let outcomes = list
                        .split(',')
                        .filter(|item| !item.is_empty())
                        .map(|item| stored_outcome(item, "q", JobOptions::default()))
                        .collect::<Result<_, _>>()?;
                    let truncated = args.take_key("truncated").map_or(Ok(false), str::parse)?;
                    Found::Outcomes { outcomes, truncated }
                } else if let Some(last) = args.take_key("last") {
                    let unread = args.take_key("unread").map_or(Ok(0), str::parse)?;
                    Found::LastSubmitted { through_seq: last.parse()?, unread }
                } else if let Some(why) = args.take_key("unavailable") {
                    Found::Unavailable(why.to_owned())
                } else {
                    return Err(
                        "looked-up needs none, outcome=, outcomes=, last= or unavailable=".into()
                    );
                };
                self.run_command(Command::LookedUp { request, found, now })?
            }
            "old-journal" => {
                // A journal an older master (format 4 or before) wrote: it led, and recorded
                // no `legacy_through`.
                if self.started {
                    return Err("old-journal must come before other commands".into());
                }
                let epoch = args.take_key("epoch").ok_or("old-journal needs epoch=")?.parse()?;
                let event = Event::EpochStarted {
                    epoch,
                    leader: "old".to_owned(),
                    at: now,
                    grace_until: now,
                    legacy_through: None,
                };
                let mut state = State::default();
                state.apply(&event);
                self.journal.push(event);
                self.engine = Engine::new(state, self.engine.policy().clone());
                String::new()
            }
            "pending" => {
                let mut s = String::new();
                let state = self.engine.state();
                for (id, tick) in &state.unsubmitted {
                    let _ = writeln!(
                        s,
                        "tick {id}: queue={} key={} stored={}",
                        tick.queue, tick.key, tick.stored
                    );
                }
                for (id, retry) in &state.retries {
                    let _ = writeln!(
                        s,
                        "retry {id}: queue={} key={} prior_attempts={} options={} payload_seq={} \
                         stored={}",
                        retry.queue,
                        retry.key,
                        retry.prior_attempts,
                        serde_json::to_string(&retry.options)?,
                        retry.payload_seq,
                        retry.stored
                    );
                }
                if s.is_empty() {
                    s.push_str("nothing pending\n");
                }
                s
            }
            "pause" | "resume" => {
                let queue = QueueName::parse(args.next_pos().ok_or("needs <queue>")?)?;
                let request = self.next_request();
                self.run_command(if command.name == "pause" {
                    Command::Pause { request, queue, now }
                } else {
                    Command::Resume { request, queue, now }
                })?
            }
            "schedule-add" => {
                let name = ScheduleName::parse(args.next_pos().ok_or("needs <name>")?)?;
                let queue = QueueName::parse(args.take_key("queue").unwrap_or("q"))?;
                let cadence = match (args.take_key("every"), args.take_key("cron")) {
                    (Some(every), None) => Cadence::every(every),
                    (None, Some(cron)) => Cadence::cron(cron),
                    _ => return Err("schedule-add needs every= or cron=".into()),
                };
                let payload = Bytes::from(args.take_key("payload").unwrap_or("").to_owned());
                let request = self.next_request();
                match cadence {
                    Ok(cadence) => self.run_command(Command::ScheduleAdd {
                        request,
                        name,
                        queue,
                        cadence,
                        payload,
                        now,
                    })?,
                    Err(why) => format!("refused at decode (400): {why}\n"),
                }
            }
            "schedule-rm" => {
                let name = ScheduleName::parse(args.next_pos().ok_or("needs <name>")?)?;
                let request = self.next_request();
                self.run_command(Command::ScheduleRemove { request, name, now })?
            }
            "submitted" => {
                let mut work_ids = Vec::new();
                while let Some(id) = args.next_pos() {
                    work_ids.push(WorkId::parse(id)?);
                }
                self.run_command(Command::SubmissionsStored { work_ids })?
            }
            "schedules" => {
                let mut s = String::new();
                for (name, schedule) in &self.engine.state().schedules {
                    let _ = writeln!(s, "{}", serde_json::to_string(&schedule.info(name))?);
                }
                for (id, tick) in &self.engine.state().unsubmitted {
                    let _ = writeln!(
                        s,
                        "unsubmitted {id}: schedule={} queue={} scheduled={} payload={:?} \
                         stored={}",
                        tick.schedule,
                        tick.queue,
                        tick.scheduled,
                        String::from_utf8_lossy(&tick.payload),
                        tick.stored
                    );
                }
                s
            }
            "job" => {
                let work_id = WorkId::parse(args.next_pos().ok_or("job needs <id>")?)?;
                // As `jetwork.master.job` answers (a finished job's outcome until it is stored).
                let state = self.engine.state();
                match state.job(&work_id).or_else(|| state.finished_unpublished(&work_id)) {
                    Some(info) => format!("{}\n", serde_json::to_string(&info)?),
                    None => "not in flight\n".to_owned(),
                }
            }
            "advance" => {
                self.now += args.next_pos().ok_or("advance needs <ms>")?.parse::<u64>()?;
                format!("now={}\n", self.now)
            }
            "tick" => {
                if let Some(ms) = args.next_pos() {
                    self.now += ms.parse::<u64>()?;
                }
                let now = self.now;
                format!("now={now}\n{}", self.run_command(Command::Tick { now })?)
            }
            "takeover" => {
                let epoch = args.take_key("epoch").ok_or("takeover needs epoch=")?.parse()?;
                let leader = args.take_key("leader").unwrap_or("m1").to_owned();
                let submitted_through =
                    args.take_key("submitted_through").map_or(Ok(0), str::parse)?;
                self.run_command(Command::Takeover {
                    epoch,
                    leader,
                    seed: [0; 32],
                    submitted_through,
                    now,
                })?
            }
            "submit" => {
                let seq = args.take_key("seq").ok_or("submit needs seq=")?.parse()?;
                let queue = QueueName::parse(args.take_key("queue").unwrap_or("q"))?;
                let msg_id = args.take_key("id").map(str::to_owned);
                let size = args.take_key("size").map_or(Ok(1), str::parse)?;
                // Without `after`, the delivery follows on from the cursor (no loss).
                let cursor = self.engine.state().queues.get(&queue).map_or(0, |q| q.cursor);
                let after = args.take_key("after").map_or(Ok(cursor), str::parse)?;
                let jump = args.take_key("jump").map_or(Ok(false), str::parse)?;
                let unreadable = args.take_key("unreadable").map(str::to_owned);
                let own = |value: Option<&str>| value.map(str::to_owned);
                let mut bookkeeping = Bookkeeping {
                    work_id: own(args.take_key("work")),
                    retry_of: own(args.take_key("retry-of")),
                    prior_attempts: own(args.take_key("prior")),
                    schedule: own(args.take_key("schedule")),
                    scheduled_at: None,
                };
                let mut internal = args.take_key("internal").map_or(Ok(false), str::parse)?;
                let mut msg_id = msg_id;
                if let Some(id) = args.take_key("pending") {
                    let id = WorkId::parse(id)?;
                    let key = self.keys.get(&id).ok_or("no submission decided for this id")?;
                    msg_id = Some(key.clone());
                    bookkeeping.work_id = Some(id.to_string());
                    internal = true;
                }
                let relative =
                    |t: Option<&str>| t.map_or(Ok(0), |t| t.parse().map(|t: u64| now + t));
                let options = match args.take_key("invalid") {
                    Some(why) => Err(why.to_owned()),
                    None => {
                        let expires = relative(args.take_key("expires"))?;
                        Ok(JobOptions {
                            not_before: relative(args.take_key("delay"))?,
                            priority: args.take_key("priority").map_or(Ok(0), str::parse)?,
                            max_attempts: args.take_key("attempts").map(str::parse).transpose()?,
                            timeout: args.take_key("timeout").map(str::parse).transpose()?,
                            expires,
                            expires_after: expires.saturating_sub(now),
                        })
                    }
                };
                let submitted = Submission {
                    queue,
                    seq,
                    after,
                    jump,
                    origin: if internal { Origin::Master } else { Origin::Client },
                    msg_id,
                    size,
                    unreadable,
                    bookkeeping,
                    options,
                    now,
                };
                self.run_command(Command::Submitted(submitted))?
            }
            "register" => {
                let worker_id = worker(args.next_pos().ok_or("register needs <worker>")?)?;
                let queues = args
                    .take_key("queues")
                    .unwrap_or("q")
                    .split(',')
                    .map(QueueName::parse)
                    .collect::<Result<_, _>>()?;
                let capacity = args.take_key("capacity").map_or(Ok(1), str::parse)?;
                let running = held(args.take_key("running"))?.unwrap_or_default();
                let session = session(&worker_id, args.take_key("session"))?;
                let login = args.take_key("login").map(Login::parse).transpose()?;
                let request = self.next_request();
                let msg = RegisterWorker { worker_id, session, queues, capacity, running };
                self.run_command(Command::Register { request, msg, login, now })?
            }
            "deregister" => {
                let worker_id = worker(args.next_pos().ok_or("deregister needs <worker>")?)?;
                let session = session(&worker_id, args.take_key("session"))?;
                let login = args.take_key("login").map(Login::parse).transpose()?;
                let request = self.next_request();
                let msg = Deregister { worker_id, session };
                self.run_command(Command::Deregister { request, msg, login, now })?
            }
            "request" => {
                let worker_id = worker(args.next_pos().ok_or("request needs <worker>")?)?;
                let slots = args.take_key("slots").map_or(Ok(1), str::parse)?;
                let wait_ms = args.take_key("wait").map_or(Ok(0), str::parse)?;
                let session = session(&worker_id, args.take_key("session"))?;
                let login = args.take_key("login").map(Login::parse).transpose()?;
                let running = held(args.take_key("holding"))?;
                let request = self.next_request();
                self.run_command(Command::RequestWork {
                    request,
                    msg: RequestWork { worker_id, session, slots, wait_ms, running },
                    login,
                    now,
                })?
            }
            "report" => {
                let worker_id = worker(args.next_pos().ok_or("report needs <worker>")?)?;
                let mut outcomes: Vec<Outcome> = Vec::new();
                let mut unreadable: Vec<UnreadableOutcome> = Vec::new();
                let mut slots = 0;
                let mut session_key = None;
                let mut login = None;
                let mut running = None;
                while let Some((key, value)) = args.next_key() {
                    if key == "slots" {
                        slots = value.parse()?;
                        continue;
                    }
                    if key == "holding" {
                        running = held(Some(value))?;
                        continue;
                    }
                    if key == "session" {
                        session_key = Some(value);
                        continue;
                    }
                    if key == "login" {
                        login = Some(Login::parse(value)?);
                        continue;
                    }
                    let (work_id, attempt, extra) = parse_ref(value)?;
                    if key == "garbled" {
                        unreadable.push(UnreadableOutcome {
                            index: outcomes.len() + unreadable.len(),
                            work_id: Some(work_id),
                            attempt,
                            reason: extra.unwrap_or_default(),
                        });
                        continue;
                    }
                    let (status, result, reason) = match key {
                        "done" | "forge" => {
                            (OutcomeStatus::Completed, Bytes::from(extra.unwrap_or_default()), None)
                        }
                        "fail" | "fatal" => (OutcomeStatus::Failed, Bytes::new(), extra),
                        "progress" => (OutcomeStatus::Progress, Bytes::new(), None),
                        other => return Err(format!("unknown outcome {other}").into()),
                    };
                    let token = if key == "forge" {
                        Token::from_u128(1)
                    } else {
                        self.token(&work_id, attempt)
                    };
                    let non_retryable = key == "fatal";
                    outcomes.push(Outcome {
                        work_id,
                        attempt,
                        token,
                        status,
                        result,
                        reason,
                        non_retryable,
                    });
                }
                let session = session(&worker_id, session_key)?;
                let request = self.next_request();
                self.run_command(Command::Report {
                    request,
                    msg: Report { worker_id, session, outcomes, slots, running },
                    unreadable,
                    login,
                    now,
                })?
            }
            "published" => {
                let mut keys = Vec::new();
                while let Some((key, value)) = args.next_key() {
                    keys.push(match key {
                        "result" => PublicationKey::Result(WorkId::parse(value)?),
                        "rejection" => PublicationKey::Rejection(value.parse()?),
                        other => return Err(format!("unknown publication {other}").into()),
                    });
                }
                self.run_command(Command::Published { keys })?
            }
            "missing" => {
                let work_id = WorkId::parse(args.next_pos().ok_or("missing needs <id>")?)?;
                self.run_command(Command::PayloadMissing { work_id, now })?
            }
            "notify" => {
                let effects = self.engine.notifications(now);
                self.engine.check_index()?;
                render(&[], &effects)
            }
            "floors" => {
                let mut s = String::new();
                for (queue, floor) in upkeep::purge_floors(self.engine.state()) {
                    let _ = writeln!(s, "queue {queue}: purge below {floor}");
                }
                s
            }
            "credits" => {
                let prefetch = args.take_key("prefetch").map_or(Ok(0), str::parse)?;
                let outstanding = args.take_key("outstanding").map_or(Ok(0), str::parse)?;
                let mut s = String::new();
                let state = self.engine.state();
                for queue in self.engine.served_queues() {
                    let free = self.engine.free_slots(queue);
                    let ready = state.ready_len(queue) as u64;
                    let credits = upkeep::read_ahead(free, prefetch, ready, outstanding);
                    let _ =
                        writeln!(s, "queue {queue}: free={free} ready={ready} credits={credits}");
                }
                s
            }
            // `forgettable`: the queues the engine would have the runtime look at;
            // `stored q=none r=7`: what it found (the first submission still stored).
            "forgettable" => {
                let mut s = String::new();
                for (queue, cursor) in self.engine.forgettable_queues() {
                    let _ = writeln!(s, "forgettable {queue} cursor={cursor}");
                }
                if s.is_empty() {
                    s.push_str("nothing forgettable\n");
                }
                s
            }
            "stored" => {
                let mut first_stored = Vec::new();
                while let Some((queue, value)) = args.next_key() {
                    let first = match value {
                        "none" => None,
                        seq => Some(seq.parse()?),
                    };
                    first_stored.push((QueueName::parse(queue)?, first));
                }
                self.run_command(Command::QueuesStored { first_stored, now: self.now })?
            }
            "reading" => {
                let mut s = String::new();
                while let Some(queue) = args.next_pos() {
                    let queue = QueueName::parse(queue)?;
                    let (waiting, all) = self.engine.waiting(&queue);
                    let reads = match self.engine.may_read(&queue) {
                        true => "reads",
                        false => "held",
                    };
                    let _ = writeln!(s, "queue {queue}: waiting={waiting} (all {all}) {reads}");
                }
                s
            }
            "state" => render_state(&self.engine, now),
            other => return Err(format!("unknown command {other}").into()),
        };
        args.reject_next()?;
        Ok(output)
    }

    fn end_script(&mut self) -> Result<(), Box<dyn Error>> {
        let mut replayed = State::default();
        for event in &self.journal {
            replayed.apply(event);
        }
        if &replayed != self.engine.state() {
            return Err(format!(
                "replay diverged:\nlive {:#?}\nreplayed {:#?}",
                self.engine.state(),
                replayed
            )
            .into());
        }
        Ok(())
    }
}

fn render(events: &[Event], effects: &[Effect]) -> String {
    let mut s = String::new();
    for event in events {
        let _ = writeln!(s, "{}", render_event(event));
    }
    for effect in effects {
        let _ = writeln!(s, "→ {}", render_effect(effect));
    }
    s
}

fn render_event(event: &Event) -> String {
    match event {
        Event::EpochStarted { epoch, leader, at, grace_until, legacy_through } => {
            let legacy = match legacy_through {
                Some(seq) => format!(" legacy_through={seq}"),
                None => String::new(),
            };
            format!(
                "EpochStarted epoch={epoch} leader={leader} at={at} grace_until={grace_until}\
                 {legacy}"
            )
        }
        Event::WorkAccepted {
            work_id, queue, seq, size, prior_attempts, options, jumped, ..
        } => {
            let mut extra = match prior_attempts {
                0 => String::new(),
                n => format!(" prior_attempts={n}"),
            };
            if *jumped {
                extra.push_str(" jumped");
            }
            if !options.is_default() {
                let _ = write!(
                    extra,
                    " options={}",
                    serde_json::to_string(options).unwrap_or_default()
                );
            }
            format!("WorkAccepted {work_id} queue={queue} seq={seq} size={size}{extra}")
        }
        Event::SubmissionRejected { queue, seq, msg_id, reason, .. } => {
            format!("SubmissionRejected queue={queue} seq={seq} msg_id={msg_id:?}: {reason}")
        }
        Event::SubmissionPassed { queue, seq } => {
            format!("SubmissionPassed queue={queue} seq={seq}")
        }
        Event::WorkerRegistered { worker, login, queues, capacity, at, .. } => {
            let queues: Vec<_> = queues.iter().map(|q| q.as_str()).collect();
            let login = login.as_ref().map(|l| format!(" login={l}")).unwrap_or_default();
            format!(
                "WorkerRegistered {worker}{login} queues={} capacity={capacity} at={at}",
                queues.join(",")
            )
        }
        Event::WorkerSeen { worker, at } => format!("WorkerSeen {worker} at={at}"),
        Event::WorkerLost { worker, reason, .. } => format!("WorkerLost {worker}: {reason}"),
        Event::WorkStarted { work_id, worker, attempt, deadline, .. } => {
            format!("WorkStarted {work_id}@{attempt} on {worker} deadline={deadline}")
        }
        Event::WorkProgressed { work_id, attempt, deadline } => {
            format!("WorkProgressed {work_id}@{attempt} deadline={deadline}")
        }
        Event::WorkRequeued { work_id, attempt, reason, not_before, .. } => {
            let wait =
                if *not_before > 0 { format!(" not_before={not_before}") } else { String::new() };
            format!("WorkRequeued {work_id}@{attempt}{wait}: {reason}")
        }
        Event::WorkDue { work_ids } => {
            let ids: Vec<_> = work_ids.iter().map(|id| id.as_str()).collect();
            format!("WorkDue [{}]", ids.join(" "))
        }
        Event::WorkCancelled { work_id, reason, .. } => {
            format!("WorkCancelled {work_id}: {reason}")
        }
        Event::QueuePaused { queue, .. } => format!("QueuePaused {queue}"),
        Event::QueueResumed { queue, .. } => format!("QueueResumed {queue}"),
        Event::QueueForgotten { queue, at } => format!("QueueForgotten {queue} at={at}"),
        Event::QueuePurged { queue, through_seq, .. } => {
            format!("QueuePurged {queue} through_seq={through_seq}")
        }
        Event::WorkCompleted { work_id, attempt, result, .. } => {
            format!(
                "WorkCompleted {work_id}@{attempt} result={:?}",
                String::from_utf8_lossy(result)
            )
        }
        Event::WorkFailed { work_id, attempt, reason, .. } => {
            format!("WorkFailed {work_id}@{attempt}: {reason}")
        }
        Event::Published { keys } => format!("Published {}", render_keys(keys)),
        Event::ScheduleAdded { name, queue, cadence, payload, next, at } => format!(
            "ScheduleAdded {name} queue={queue} {cadence:?} payload={:?} next={next} at={at}",
            String::from_utf8_lossy(payload)
        ),
        Event::ScheduleRemoved { name, at } => format!("ScheduleRemoved {name} at={at}"),
        Event::ScheduleFired { name, work_id, scheduled, missed, next, at, key } => format!(
            "ScheduleFired {name} {work_id} scheduled={scheduled} missed={missed} next={next} \
             at={at} key={key}"
        ),
        Event::TicksSubmitted { work_ids } => {
            let ids: Vec<_> = work_ids.iter().map(|id| id.as_str()).collect();
            format!("TicksSubmitted [{}]", ids.join(" "))
        }
        Event::SubmissionsStored { work_ids } => {
            let ids: Vec<_> = work_ids.iter().map(|id| id.as_str()).collect();
            format!("SubmissionsStored [{}]", ids.join(" "))
        }
        Event::RetryDecided {
            work_id, queue, key, prior_attempts, options, payload_seq, ..
        } => {
            format!(
                "RetryDecided {work_id} queue={queue} key={key} prior_attempts={prior_attempts} \
                 payload_seq={payload_seq} options={}",
                serde_json::to_string(options).unwrap_or_default()
            )
        }
        Event::PendingDropped { work_id, reason, .. } => {
            format!("PendingDropped {work_id}: {reason}")
        }
    }
}

fn render_keys(keys: &[PublicationKey]) -> String {
    keys.iter()
        .map(|k| match k {
            PublicationKey::Result(id) => format!("result:{id}"),
            PublicationKey::Rejection(seq) => format!("rejection:{seq}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn render_effect(effect: &Effect) -> String {
    match effect {
        Effect::Reply { request, reply, early } => {
            // A worker's answer the runtime must hold for its write says so.
            let held = match (early, reply) {
                (false, Reply::Grant { assignments }) if !assignments.is_empty() => " (held)",
                (false, Reply::Report { .. }) => " (held)",
                _ => "",
            };
            format!("reply #{request} {}{held}", render_reply(reply))
        }
        Effect::NotifyReady { worker } => format!("notify {worker}"),
        Effect::Publish { key } => format!("publish {}", render_keys(std::slice::from_ref(key))),
        Effect::Announce { epoch, leader } => format!("announce epoch={epoch} leader={leader}"),
        Effect::Reread { queue, from } => format!("reread {queue} from={from}"),
        Effect::Revoke { worker, work_id, attempt } => {
            format!("revoke {work_id}@{attempt} on {worker}")
        }
        Effect::Submit { work_id } => format!("submit {work_id}"),
        Effect::LookUp { request, lookup } => match lookup {
            LookUp::Outcome { work_id, queue } => match queue {
                Some(queue) => format!("lookup #{request} outcome {work_id} in {queue}"),
                None => format!("lookup #{request} outcome {work_id}"),
            },
            LookUp::Outcomes { queue, state, since_ms, limit } => format!(
                "lookup #{request} outcomes of {queue} {} since={since_ms} limit={limit}",
                state.as_str()
            ),
            LookUp::LastSubmitted { queue } => {
                format!("lookup #{request} last submission of {queue}")
            }
        },
    }
}

fn render_assignments(assignments: &[AssignmentRef]) -> String {
    let items: Vec<_> = assignments
        .iter()
        .map(|a| format!("{}@{}(seq={} deadline={})", a.work_id, a.attempt, a.seq, a.deadline))
        .collect();
    format!("[{}]", items.join(" "))
}

fn render_reply(reply: &Reply) -> String {
    match reply {
        Reply::Registered(r) => {
            let revoked: Vec<_> =
                r.revoked.iter().map(|h| format!("{}@{}", h.work_id, h.attempt)).collect();
            format!(
                "registered epoch={} revoked=[{}] work_ready={}",
                r.epoch,
                revoked.join(" "),
                r.work_ready
            )
        }
        Reply::Deregistered(r) => format!("deregistered epoch={} requeued={}", r.epoch, r.requeued),
        Reply::Grant { assignments } => format!("grant {}", render_assignments(assignments)),
        Reply::Report { verdicts, assignments } => {
            let verdicts: Vec<_> = verdicts
                .iter()
                .map(|v| {
                    let id = v.work_id.as_ref().map_or("?", WorkId::as_str);
                    let mut s = format!("{id}@{}={:?}", v.attempt, v.verdict);
                    if let Some(d) = v.deadline_ms {
                        let _ = write!(s, "(deadline={d})");
                    }
                    if let Some(r) = &v.reason {
                        let _ = write!(s, "({r})");
                    }
                    s
                })
                .collect();
            format!(
                "report verdicts=[{}] assignments={}",
                verdicts.join(" "),
                render_assignments(assignments)
            )
        }
        Reply::Done { message } => format!("done: {message}"),
        Reply::Purged(purged) => format!(
            "purged cancelled={} backlog={} through_seq={} running={}",
            purged.cancelled, purged.backlog, purged.through_seq, purged.running
        ),
        Reply::RetriedAll(r) => format!(
            "retried-all retried={} skipped={} truncated={}: {}",
            r.retried, r.skipped, r.truncated, r.message
        ),
        Reply::Error(e) => format!("error {}: {}", e.code, e.message),
    }
}

fn render_state(engine: &Engine, now: Millis) -> String {
    let state = engine.state();
    let mut s = format!("epoch={} leader={:?}\n", state.epoch, state.leader);
    for (name, q) in &state.queues {
        // In hand-out order; an item of a priority lane shows it (`id:p9`).
        let ready: Vec<_> = q
            .ready_in_order()
            .map(|id| match state.work.get(id).map_or(0, |w| w.options.priority) {
                0 => id.to_string(),
                p => format!("{id}:p{p}"),
            })
            .collect();
        let _ = writeln!(
            s,
            "queue {name}: cursor={} ready=[{}] accepted={} completed={} failed={} rejected={}{}{}{}{}",
            q.cursor,
            ready.join(" "),
            q.accepted,
            q.completed,
            q.failed,
            q.rejected,
            if q.cancelled > 0 { format!(" cancelled={}", q.cancelled) } else { String::new() },
            if q.paused { " paused" } else { "" },
            match q.purged_through {
                0 => String::new(),
                n => format!(" purged_through={n}"),
            },
            match q.jumped.is_empty() {
                true => String::new(),
                false => format!(" jumped={:?}", q.jumped),
            },
        );
        if !q.jumped_ids.is_empty() {
            let _ = writeln!(s, "queue {name}: jumped ids {:?}", q.jumped_ids);
        }
    }
    let mut ids: Vec<_> = state.work.keys().collect();
    ids.sort();
    for id in ids {
        let w = &state.work[id];
        let running = match (&w.running, w.waiting_until) {
            (Some(r), _) => format!("running on {} until {}", r.worker, r.deadline),
            (None, Some(until)) => format!("waiting until {until}"),
            (None, None) => "ready".to_owned(),
        };
        let _ = writeln!(
            s,
            "work {id}: queue={} seq={} attempt={} {running} last_error={:?}",
            w.queue, w.seq, w.attempt, w.last_error
        );
    }
    for (id, w) in &state.workers {
        let running: Vec<_> = w.running.iter().map(|id| id.as_str()).collect();
        let queues: Vec<_> = w.queues.iter().map(|q| q.as_str()).collect();
        let _ = writeln!(
            s,
            "worker {id}: queues={} capacity={} running=[{}] seen {} ms ago",
            queues.join(","),
            w.capacity,
            running.join(" "),
            now.saturating_sub(engine.last_heard(id, w))
        );
    }
    for key in state.unpublished.keys() {
        let _ = writeln!(s, "unpublished {}", render_keys(std::slice::from_ref(key)));
    }
    s
}

test_each_file::test_each_path! { in "master/src/core/testscripts" as scripts => test_goldenscript }

fn test_goldenscript(path: &std::path::Path) {
    goldenscript::run(&mut Runner::new(), path).expect("goldenscript failed")
}
