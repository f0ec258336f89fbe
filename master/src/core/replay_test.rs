//! Property tests of the engine: random command sequences from a small alphabet (few
//! workers, queues and ids, so collisions and stale reports are frequent), checking after
//! every step that the state invariants hold, and at the end that
//! - replaying the emitted events from an empty state gives exactly the live state,
//! - a snapshot (the MessagePack encoding of the state) decodes to the same state,
//! - the journal never finishes a work id twice without accepting it again in between,
//! - attempts of an item are handed out as 1, 2, 3, … and never beyond `max_attempts` (its
//!   own, if its submission set one); none starts before its delay is over or after it
//!   expired, and each runs with its own timeout if it set one;
//! - a submission read after its queue was purged through it is never handed out (it is
//!   finished as cancelled);
//! - every outcome the engine publishes is stored: the modelled results stream fences each
//!   work id's subject by submit sequence as the publisher does, and no run's outcome is ever
//!   refused as older than one already stored, however reads are reordered (priority jumps,
//!   re-reads, re-submissions of an id);
//! - a submission on the master's own subject is accepted only against a pending decision
//!   (a fired tick, a decided retry) with its key, at most once; one carrying master-only
//!   headers on a client's subject, or a forged or re-stored copy on the master's, is never
//!   accepted; operators' retries are decided from a modelled results stream and answered
//!   late, so the state may change in between;
//! - no more attempts of a queue run at once than its concurrency limit (`q0` has one), and
//!   within one leader's term no more start in any second than twice its rate (a full bucket
//!   and a second's refill; `q1` has a rate);
//! - each recurring schedule's ticks are fired at strictly increasing scheduled times, so no
//!   tick is fired twice, across takeovers too, and no tick is accepted as work twice
//!   (schedules are added and removed at random; fired ticks go into the modelled stream as
//!   the runtime submits them, and are confirmed at random);
//!
//! and after every step that no queue's cursor has moved past a stored submission that was
//! neither accepted nor rejected. Submissions reach the engine through modelled readers, as
//! in the runtime: each reader delivers its queue's messages in order from where it started,
//! a lost delivery ends it (a real reader notices the gap), a `Reread` effect or a takeover
//! starts a new one, and old readers may still deliver late (messages already in flight).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use jetwork_shared::codec;
use jetwork_shared::job_options::JobOptions;
use jetwork_shared::protocol::{
    Outcome, OutcomeStatus, RegisterWorker, Report, RequestWork, RunningWork,
};
use jetwork_shared::{Login, QueueName, Token, WorkId, WorkerId};
use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Action {
    Advance(u64),
    Tick,
    Submit {
        queue: u8,
        id: Option<u8>,
    },
    /// Reader `reader` (an index into all readers ever started) delivers its next message;
    /// with `lose`, that delivery is lost in flight and the reader stops.
    Deliver {
        reader: u8,
        lose: bool,
    },
    /// A reader is started `skip` submissions past the queue's cursor, as a runtime bug (or a
    /// stale cursor) would: the engine must not let it move the cursor over what it skipped.
    Misplaced {
        queue: u8,
        skip: u8,
    },
    /// The `nth` stored submission of `queue` past its cursor is read out of turn (a priority
    /// jump), as the leader does for a priority submission behind an unread backlog; it may be
    /// one already taken out of turn (a second sighting).
    Jump {
        queue: u8,
        nth: u8,
    },
    /// `session` picks the worker process (0 is the usual one; another is a restart or an
    /// impostor under the same id).
    Register {
        worker: u8,
        queues: u8,
        capacity: u32,
        running: Vec<(u8, u32)>,
        session: u8,
    },
    Request {
        worker: u8,
        slots: u32,
        session: u8,
    },
    /// Outcomes are (item, attempt, kind): completed, failed, progress, a completion with a
    /// forged token, or a failure reported as non-retryable.
    Report {
        worker: u8,
        outcomes: Vec<(u8, u32, u8)>,
        slots: u32,
        session: u8,
    },
    PublishAll,
    Missing(u8),
    Takeover,
    /// An operator cancels an item.
    Cancel(u8),
    /// An operator pauses (or resumes) a queue.
    Pause {
        queue: u8,
        paused: bool,
    },
    /// An operator adds schedule `s<name>` ticking every `every` seconds.
    ScheduleAdd {
        name: u8,
        every: u8,
    },
    /// An operator removes schedule `s<name>`.
    ScheduleRemove(u8),
    /// Every pending submission of the master's own is confirmed stored.
    SubmitTicks,
    /// An operator purges a queue (answered by a later `Answer`).
    Purge(u8),
    /// An operator retries an item (answered by a later `Answer`).
    Retry(u8),
    /// An operator retries a queue's failed jobs (answered by a later `Answer`).
    RetryAll(u8),
    /// The runtime answers the oldest lookup, from the streams as they are now.
    Answer,
    /// A client stores a submission carrying master-only headers, or (with `internal`) someone
    /// stores one on the master's subject under a key of their own.
    Forge {
        queue: u8,
        id: u8,
        internal: bool,
    },
    /// A successor submits every pending submission of the master's own again, stored or not,
    /// after the dedup horizon (a second copy of each lands in the stream).
    Resubmit,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        (1u64..3000).prop_map(Action::Advance),
        Just(Action::Tick),
        (0u8..2, proptest::option::of(0u8..8)).prop_map(|(queue, id)| Action::Submit { queue, id }),
        (0u8..8, proptest::bool::weighted(0.3))
            .prop_map(|(reader, lose)| Action::Deliver { reader, lose }),
        (0u8..2, 1u8..4).prop_map(|(queue, skip)| Action::Misplaced { queue, skip }),
        (0u8..2, 0u8..4).prop_map(|(queue, nth)| Action::Jump { queue, nth }),
        (0u8..3, 1u8..4, 1u32..4, proptest::collection::vec((0u8..8, 0u32..4), 0..3), session())
            .prop_map(|(worker, queues, capacity, running, session)| Action::Register {
                worker,
                queues,
                capacity,
                running,
                session,
            }),
        (0u8..3, 0u32..4, session()).prop_map(|(worker, slots, session)| Action::Request {
            worker,
            slots,
            session
        }),
        (0u8..3, proptest::collection::vec((0u8..8, 0u32..5, 0u8..5), 0..4), 0u32..3, session())
            .prop_map(|(worker, outcomes, slots, session)| Action::Report {
                worker,
                outcomes,
                slots,
                session
            }),
        Just(Action::PublishAll),
        (0u8..8).prop_map(Action::Missing),
        Just(Action::Takeover),
        (0u8..8).prop_map(Action::Cancel),
        (0u8..2, proptest::bool::ANY).prop_map(|(queue, paused)| Action::Pause { queue, paused }),
        (0u8..2, 1u8..4).prop_map(|(name, every)| Action::ScheduleAdd { name, every }),
        (0u8..2).prop_map(Action::ScheduleRemove),
        Just(Action::SubmitTicks),
        (0u8..2).prop_map(Action::Purge),
        (0u8..8).prop_map(Action::Retry),
        (0u8..2).prop_map(Action::RetryAll),
        Just(Action::Answer),
        Just(Action::Answer),
        (0u8..2, 0u8..8, proptest::bool::ANY).prop_map(|(queue, id, internal)| Action::Forge {
            queue,
            id,
            internal
        }),
        Just(Action::Resubmit),
    ]
}

/// Mostly the worker's usual process, sometimes another one under the same id.
fn session() -> impl Strategy<Value = u8> {
    proptest::sample::select(vec![0u8, 0, 0, 1])
}

fn session_token(worker: u8, session: u8) -> Token {
    Token::from_u128(u128::from(worker) << 8 | u128::from(session) | 1 << 64)
}

fn schedule(i: u8) -> jetwork_shared::schedules::ScheduleName {
    jetwork_shared::schedules::ScheduleName::parse(&format!("s{i}")).expect("valid name")
}

fn queue(i: u8) -> QueueName {
    QueueName::parse(&format!("q{i}")).expect("valid queue")
}

/// The modelled queue a queue name is.
fn index(name: &QueueName) -> u8 {
    (0..2).find(|i| queue(*i) == *name).expect("a modelled queue")
}

fn work_id(i: u8) -> WorkId {
    WorkId::parse(&format!("job{i}")).expect("valid id")
}

fn worker(i: u8) -> WorkerId {
    WorkerId::parse(&format!("w{i}")).expect("valid worker")
}

/// The login worker `i` comes under: its own name for even ones, none for odd ones (a worker
/// keeps to one, as a real one does).
fn login_of(i: u8) -> Option<Login> {
    i.is_multiple_of(2).then(|| Login::parse(&format!("w{i}")).expect("valid login"))
}

fn queues_of(mask: u8) -> Vec<QueueName> {
    (0..2).filter(|i| mask & (1 << i) != 0).map(queue).collect()
}

struct Harness {
    engine: Engine,
    journal: Vec<Event>,
    now: Millis,
    seq: u64,
    request: RequestId,
    epoch: u64,
    /// The submit stream, per queue, in sequence order.
    streams: BTreeMap<u8, Vec<Stored>>,
    /// Every reader started, oldest first.
    readers: Vec<Reader>,
    /// Submissions the journal accepted or rejected.
    taken: BTreeSet<u64>,
    /// The results stream: the outcomes stored on each queue's subject of each work id, in
    /// order (submit sequence, state, last attempt).
    results: BTreeMap<(QueueName, WorkId), Vec<(u64, jetwork_shared::jobs::JobState, u32)>>,
    /// Lookups the engine asked for, not yet answered.
    lookups: Vec<(RequestId, LookUp)>,
}

/// A modelled message of the submit stream.
#[derive(Debug, Clone)]
struct Stored {
    seq: u64,
    msg_id: Option<String>,
    /// On the master's own subject, with this `Jetwork-Work-Id`.
    master: Option<WorkId>,
    /// A client's message carrying `Jetwork-Retry-Of`.
    claims_retry: bool,
}

/// A modelled queue reader: delivers its queue's submissions in stream order after `pos`.
struct Reader {
    queue: u8,
    /// The last sequence it delivered (or the one before where it started).
    pos: u64,
    /// False once a delivery was lost: the reader noticed the gap and stopped.
    alive: bool,
}

impl Harness {
    fn step(&mut self, command: Command) {
        let out = self.engine.step(command);
        for event in &out.events {
            if let Event::WorkAccepted { seq, .. } | Event::SubmissionRejected { seq, .. } = event {
                assert!(self.taken.insert(*seq), "submission {seq} taken twice");
            }
            if let Event::WorkAccepted { seq, work_id, .. } = event {
                let stored = self.streams.values().flatten().find(|m| m.seq == *seq);
                let stored = stored.expect("an accepted submission is stored");
                assert!(!stored.claims_retry, "{work_id}: a client's claimed retry was accepted");
                if let Some(named) = &stored.master {
                    assert_eq!(named, work_id, "a master submission ran another id");
                }
            }
        }
        self.journal.extend(out.events);
        for effect in out.effects {
            match effect {
                Effect::Reread { queue, from } => {
                    let q = index(&queue);
                    self.readers.push(Reader { queue: q, pos: from - 1, alive: true });
                }
                // The runtime submits it under its key; the stream drops a second copy of a
                // key it holds (the duplicate window outlasts these runs).
                Effect::Submit { work_id } => self.submit_own(&work_id, false),
                Effect::LookUp { request, lookup } => self.lookups.push((request, lookup)),
                _ => {}
            }
        }
        if let Err(e) = self.engine.state().check_invariants().and(self.engine.check_index()) {
            panic!("invariant broken: {e}\n{:#?}", self.engine.state());
        }
        self.check_cursors();
    }

    /// The runtime stores the pending submission of `work_id` of the master's own (unless
    /// `again`, only if no copy of its key is stored: a duplicate).
    fn submit_own(&mut self, work_id: &WorkId, again: bool) {
        let Some((queue, key)) = self.engine.state().pending_submission(work_id) else { return };
        let (q, key) = (index(queue), Some(key.to_owned()));
        let stream = self.streams.entry(q).or_default();
        if again || !stream.iter().any(|m| m.msg_id == key) {
            self.seq += 1;
            let master = Some(work_id.clone());
            stream.push(Stored { seq: self.seq, msg_id: key, master, claims_retry: false });
        }
    }

    /// Answers the oldest lookup from the modelled streams as they are now.
    fn answer(&mut self, now: Millis) {
        if self.lookups.is_empty() {
            return;
        }
        let (request, lookup) = self.lookups.remove(0);
        let outcome = |(queue, work_id): &(QueueName, WorkId), stored: &Vec<_>| {
            let (seq, state, attempts): (u64, jetwork_shared::jobs::JobState, u32) =
                *stored.last()?;
            Some(StoredOutcome {
                work_id: work_id.clone(),
                queue: queue.clone(),
                state,
                submit_seq: seq,
                attempts,
                options: JobOptions::default(),
                results_seq: seq + 10_000,
            })
        };
        let found = match lookup {
            LookUp::Outcome { work_id, queue } => Found::Outcome(
                self.results
                    .iter()
                    .filter(|((q, id), _)| *id == work_id && queue.as_ref().is_none_or(|x| x == q))
                    .filter_map(|(key, stored)| outcome(key, stored))
                    .next(),
            ),
            LookUp::Outcomes { queue, state, .. } => Found::Outcomes {
                outcomes: self
                    .results
                    .iter()
                    .filter(|((q, _), _)| *q == queue)
                    .filter_map(|(key, stored)| outcome(key, stored))
                    .filter(|o| o.state == state)
                    .collect(),
                truncated: false,
            },
            LookUp::LastSubmitted { queue } => {
                let stream = self.streams.get(&index(&queue));
                let through_seq = stream.and_then(|s| s.last()).map_or(0, |m| m.seq);
                Found::LastSubmitted { through_seq, unread: 0 }
            }
        };
        self.step(Command::LookedUp { request, found, now });
    }

    /// Publishes every outcome waiting, as the publisher does (fenced per subject by submit
    /// sequence), and records them as published.
    fn publish_all(&mut self) {
        let unpublished: Vec<_> = self.engine.state().unpublished.clone().into_iter().collect();
        for (_, publication) in &unpublished {
            use jetwork_shared::jobs::JobState;
            let (work_id, queue, seq, state, attempt) = match publication {
                Publication::Completed { work_id, queue, seq, attempt, .. } => {
                    (work_id, queue, *seq, JobState::Completed, *attempt)
                }
                Publication::Failed { work_id, queue, seq, attempt, .. } => {
                    (work_id, queue, *seq, JobState::Failed, *attempt)
                }
                Publication::Cancelled { work_id, queue, seq, attempt, .. } => {
                    (work_id, queue, *seq, JobState::Cancelled, *attempt)
                }
                Publication::Rejected { .. } => continue,
            };
            let stored = self.results.entry((queue.clone(), work_id.clone())).or_default();
            match stored.last() {
                Some((last, ..)) if *last == seq => {}
                Some((last, ..)) if *last > seq => panic!(
                    "the outcome of {work_id} run {seq} was refused: run {last} is stored over it"
                ),
                _ => stored.push((seq, state, attempt)),
            }
        }
        let keys = unpublished.into_iter().map(|(key, _)| key).collect();
        self.step(Command::Published { keys });
    }

    /// The token attempt `attempt` of item `i` was handed out with (zero if unknown).
    fn token(&self, i: u8, attempt: u32) -> Token {
        let work = self.engine.state().work.get(&work_id(i));
        let token = work.and_then(|w| w.token(attempt));
        token.copied().unwrap_or_default()
    }

    /// No cursor is past a stored submission the journal neither accepted nor rejected.
    fn check_cursors(&self) {
        for (q, stream) in &self.streams {
            let cursor = self.engine.state().queues.get(&queue(*q)).map_or(0, |s| s.cursor);
            for seq in stream.iter().map(|m| m.seq).filter(|seq| *seq <= cursor) {
                assert!(self.taken.contains(&seq), "q{q} cursor {cursor} skipped submission {seq}");
            }
        }
    }

    /// Starts a reader for every queue at its cursor, as a new leader does.
    fn start_readers(&mut self) {
        for q in 0..2 {
            let cursor = self.engine.state().queues.get(&queue(q)).map_or(0, |s| s.cursor);
            self.readers.push(Reader { queue: q, pos: cursor, alive: true });
        }
    }

    /// Reader `index` delivers its next submission, if it has one.
    fn deliver(&mut self, index: usize, lose: bool, now: Millis) {
        let Some(reader) = self.readers.get(index).filter(|r| r.alive) else { return };
        let (q, after) = (reader.queue, reader.pos);
        let next = self.streams.get(&q).and_then(|s| s.iter().find(|m| m.seq > after));
        let Some(stored) = next.cloned() else { return };
        let reader = &mut self.readers[index];
        if lose {
            reader.alive = false;
            return;
        }
        reader.pos = stored.seq;
        self.submitted(q, stored, Some(after), now);
    }

    /// Reads the `nth` stored submission of queue `q` past its cursor out of turn.
    fn jump(&mut self, q: u8, nth: u8, now: Millis) {
        let cursor = self.engine.state().queues.get(&queue(q)).map_or(0, |s| s.cursor);
        let stream = self.streams.get(&q).map(Vec::as_slice).unwrap_or_default();
        let Some(stored) = stream.iter().filter(|m| m.seq > cursor).nth(nth.into()) else {
            return;
        };
        self.submitted(q, stored.clone(), None, now);
    }

    /// Steps a stored submission of queue `q`: delivered in turn after `after`, or out of turn.
    fn submitted(&mut self, q: u8, stored: Stored, after: Option<u64>, now: Millis) {
        let Stored { seq, msg_id, master, claims_retry } = stored;
        // Every fifth submission's headers could not be read.
        let unreadable = (seq % 5 == 0).then(|| "malformed headers: not UTF-8".to_owned());
        let queue = queue(q);
        let mut bookkeeping = Bookkeeping {
            work_id: master.as_ref().map(|id| id.to_string()),
            ..Bookkeeping::default()
        };
        if claims_retry {
            bookkeeping.retry_of = msg_id.clone();
            bookkeeping.prior_attempts = Some("2".to_owned());
        }
        let size = 10;
        let options = if seq % 11 == 4 {
            Err("invalid Jetwork-Priority \"12\": must be an integer from 0 to 9".to_owned())
        } else {
            // Options of every kind, in varying combinations: a delay past the next steps
            // (or one already over), priorities, an attempt limit, a timeout, an expiry.
            Ok(JobOptions {
                not_before: if seq % 4 == 1 { now + 300 * (seq % 3) } else { 0 },
                priority: if seq % 3 == 0 { (seq % 10) as u8 } else { 0 },
                max_attempts: (seq % 6 == 2).then_some(1 + (seq % 2) as u32),
                timeout: (seq % 8 == 5).then_some(700),
                expires: if seq % 9 == 2 { now + 900 } else { 0 },
                expires_after: if seq % 9 == 2 { 900 } else { 0 },
            })
        };
        self.step(Command::Submitted(Submission {
            queue,
            seq,
            after: after.unwrap_or_default(),
            jump: after.is_none(),
            origin: if master.is_some() { Origin::Master } else { Origin::Client },
            msg_id,
            size,
            unreadable,
            bookkeeping,
            options,
            now,
        }));
    }

    fn run(&mut self, action: Action) {
        let now = self.now;
        self.request += 1;
        let request = self.request;
        match action {
            Action::Advance(ms) => self.now += ms,
            Action::Tick => {
                self.step(Command::Tick { now });
                // As the runtime does on every tick: who to tell that work is ready (soft, so
                // replay never sees it, but it moves the lists of available workers).
                self.engine.notifications(now);
                if let Err(e) = self.engine.check_index() {
                    panic!("index broken by notifications: {e}");
                }
            }
            Action::Submit { queue: q, id } => {
                self.seq += 1;
                let msg_id =
                    id.map(|i| if i == 7 { "bad.id".to_owned() } else { work_id(i).to_string() });
                let stored = Stored { seq: self.seq, msg_id, master: None, claims_retry: false };
                self.streams.entry(q).or_default().push(stored);
                // The queue's newest reader delivers its next message (usually this one).
                if let Some(newest) = self.readers.iter().rposition(|r| r.queue == q) {
                    self.deliver(newest, false, now);
                }
            }
            Action::Jump { queue: q, nth } => self.jump(q, nth, now),
            Action::Misplaced { queue: q, skip } => {
                let cursor = self.engine.state().queues.get(&queue(q)).map_or(0, |s| s.cursor);
                let pos = cursor + u64::from(skip);
                self.readers.push(Reader { queue: q, pos, alive: true });
            }
            Action::Deliver { reader, lose } => {
                // Recent readers are the likeliest to have something to deliver.
                let count = self.readers.len();
                if count > 0 {
                    self.deliver(count - 1 - usize::from(reader) % count, lose, now);
                }
            }
            Action::Register { worker: w, queues, capacity, running, session } => {
                let running = running
                    .into_iter()
                    .map(|(i, attempt)| RunningWork { work_id: work_id(i), attempt })
                    .collect();
                let msg = RegisterWorker {
                    worker_id: worker(w),
                    session: session_token(w, session),
                    queues: queues_of(queues),
                    capacity,
                    running,
                };
                self.step(Command::Register { request, msg, login: login_of(w), now });
            }
            Action::Request { worker: w, slots, session } => {
                // Even slot counts also wait (long poll), so parked requests are exercised.
                let wait_ms = if slots % 2 == 0 { 500 } else { 0 };
                let session = session_token(w, session);
                let msg =
                    RequestWork { worker_id: worker(w), session, slots, wait_ms, running: None };
                self.step(Command::RequestWork { request, msg, login: login_of(w), now });
            }
            Action::Report { worker: w, outcomes, slots, session } => {
                let outcomes = outcomes
                    .into_iter()
                    .map(|(i, attempt, kind)| {
                        let token = self.token(i, attempt);
                        Outcome {
                            work_id: work_id(i),
                            attempt,
                            token: if kind == 3 { Token::from_u128(7) } else { token },
                            status: [
                                OutcomeStatus::Completed,
                                OutcomeStatus::Failed,
                                OutcomeStatus::Progress,
                                OutcomeStatus::Completed,
                                OutcomeStatus::Failed,
                            ][kind as usize],
                            result: Bytes::from_static(b"r"),
                            reason: Some("boom".to_owned()),
                            non_retryable: kind == 4,
                        }
                    })
                    .collect();
                let session = session_token(w, session);
                let msg = Report { worker_id: worker(w), session, outcomes, slots, running: None };
                self.step(Command::Report {
                    request,
                    msg,
                    unreadable: vec![],
                    login: login_of(w),
                    now,
                });
            }
            Action::PublishAll => self.publish_all(),
            Action::Missing(i) => self.step(Command::PayloadMissing { work_id: work_id(i), now }),
            Action::Cancel(i) => {
                let reason = Some("test".to_owned());
                self.step(Command::Cancel { request, work_id: work_id(i), reason, now });
            }
            Action::Pause { queue: q, paused } => {
                let queue = queue(q);
                self.step(if paused {
                    Command::Pause { request, queue, now }
                } else {
                    Command::Resume { request, queue, now }
                });
            }
            Action::ScheduleAdd { name, every } => {
                let (queue, payload) = (queue(name % 2), Bytes::from("p"));
                let name = schedule(name);
                let cadence = Cadence::Every { ms: u64::from(every) * 1000 };
                self.step(Command::ScheduleAdd { request, name, queue, cadence, payload, now });
            }
            Action::ScheduleRemove(name) => {
                self.step(Command::ScheduleRemove { request, name: schedule(name), now });
            }
            Action::SubmitTicks => {
                let state = self.engine.state();
                let pending = state.unsubmitted.keys().chain(state.retries.keys());
                let work_ids = pending.cloned().collect();
                self.step(Command::SubmissionsStored { work_ids });
            }
            Action::Purge(q) => self.step(Command::Purge { request, queue: queue(q), now }),
            Action::Retry(i) => {
                let (work_id, queue) = (work_id(i), None);
                self.step(Command::Retry { request, work_id, queue, now });
            }
            Action::RetryAll(q) => {
                let (queue, state) = (queue(q), jetwork_shared::jobs::JobState::Failed);
                self.step(Command::RetryAll { request, queue, state, since_ms: 0, limit: 5, now });
            }
            Action::Answer => self.answer(now),
            Action::Forge { queue: q, id, internal } => {
                self.seq += 1;
                let id = work_id(id);
                let stored = match internal {
                    true => Stored {
                        seq: self.seq,
                        msg_id: Some(format!("{id}~forged")),
                        master: Some(id),
                        claims_retry: false,
                    },
                    false => Stored {
                        seq: self.seq,
                        msg_id: Some(id.to_string()),
                        master: None,
                        claims_retry: true,
                    },
                };
                self.streams.entry(q).or_default().push(stored);
            }
            Action::Resubmit => {
                let state = self.engine.state();
                let pending: Vec<WorkId> =
                    state.unsubmitted.keys().chain(state.retries.keys()).cloned().collect();
                for work_id in pending {
                    self.submit_own(&work_id, true);
                }
            }
            Action::Takeover => {
                // A new leader replays the journal and carries on from there.
                let mut replayed = State::default();
                for event in &self.journal {
                    replayed.apply(event);
                }
                self.engine = Engine::new(replayed, self.engine.policy().clone());
                self.epoch += 1;
                self.step(Command::Takeover {
                    seed: [self.epoch as u8; 32],
                    epoch: self.epoch,
                    leader: format!("m{}", self.epoch),
                    submitted_through: self.seq,
                    now,
                });
                // Readers of the old leader may still deliver late; the new one starts its own.
                self.start_readers();
            }
        }
    }
}

fn check_journal(
    journal: &[Event],
    max_attempts: u32,
    limits: &BTreeMap<QueueName, u32>,
    rates: &BTreeMap<QueueName, u32>,
) {
    // Per rate-limited queue: the starts of this term in the last second.
    let mut starts: HashMap<&QueueName, std::collections::VecDeque<Millis>> = HashMap::new();
    // Per queue: the items with an attempt running.
    let mut running: HashMap<&QueueName, BTreeSet<&WorkId>> = HashMap::new();
    // Per id: is it in flight, and which attempt was handed out last.
    let mut live: HashMap<&WorkId, u32> = HashMap::new();
    let mut queue_of: HashMap<&WorkId, &QueueName> = HashMap::new();
    let mut paused: BTreeSet<&QueueName> = BTreeSet::new();
    // Per queue: purged through which submission; the items accepted under a purge.
    let mut purged: HashMap<&QueueName, u64> = HashMap::new();
    let mut purged_items: BTreeSet<&WorkId> = BTreeSet::new();
    // The attempts each accepted run's earlier runs used.
    let mut prior_of: HashMap<&WorkId, u32> = HashMap::new();
    // Items waiting out a back-off or a delay, until when.
    let mut waiting: HashMap<&WorkId, Millis> = HashMap::new();
    // Each item's options.
    let mut options_of: HashMap<&WorkId, JobOptions> = HashMap::new();
    for event in journal {
        match event {
            Event::QueuePaused { queue, .. } => {
                paused.insert(queue);
            }
            Event::EpochStarted { .. } => starts.clear(),
            Event::QueueResumed { queue, .. } => {
                paused.remove(queue);
            }
            Event::QueuePurged { queue, through_seq, .. } => {
                let through = purged.entry(queue).or_default();
                assert!(*through_seq > *through, "{queue} purged through {through_seq} again");
                *through = *through_seq;
            }
            Event::WorkRequeued { work_id, not_before, at, .. } if not_before > at => {
                waiting.insert(work_id, *not_before);
            }
            Event::WorkAccepted { work_id, options, at, .. } if options.not_before > *at => {
                waiting.insert(work_id, options.not_before);
            }
            Event::WorkDue { work_ids } => {
                for id in work_ids {
                    assert!(waiting.remove(id).is_some(), "{id} due but not waiting");
                }
            }
            _ => {}
        }
        match event {
            Event::WorkAccepted { work_id, queue, prior_attempts, options, seq, .. } => {
                if purged.get(queue).is_some_and(|through| seq <= through) {
                    purged_items.insert(work_id);
                }
                let fresh = live.insert(work_id, *prior_attempts).is_none();
                assert!(fresh, "{work_id} accepted while in flight");
                prior_of.insert(work_id, *prior_attempts);
                queue_of.insert(work_id, queue);
                options_of.insert(work_id, *options);
            }
            Event::WorkStarted { work_id, attempt, .. } => {
                let queue = queue_of[work_id];
                assert!(!purged_items.contains(work_id), "{work_id} purged, yet handed out");
                assert!(!paused.contains(queue), "{work_id} handed out from paused {queue}");
                assert!(!waiting.contains_key(work_id), "{work_id} handed out during its back-off");
                let last = live
                    .get_mut(work_id)
                    .unwrap_or_else(|| panic!("{work_id} started but not in flight"));
                assert_eq!(*attempt, *last + 1, "{work_id} attempts out of order");
                let in_run = *attempt - prior_of[work_id];
                let options = options_of[work_id];
                let max_attempts = options.max_attempts.unwrap_or(max_attempts);
                assert!(in_run <= max_attempts, "{work_id} attempt {attempt} beyond the maximum");
                if let Event::WorkStarted { at, deadline, .. } = event {
                    assert!(*at >= options.not_before, "{work_id} started before its delay");
                    let expires = options.expires;
                    assert!(expires == 0 || *at < expires, "{work_id} started after it expired");
                    if let Some(timeout) = options.timeout {
                        assert_eq!(*deadline, at + timeout, "{work_id} ignores its own timeout");
                    }
                }
                *last = *attempt;
                if let (Some(rate), Event::WorkStarted { at, .. }) = (rates.get(queue), event) {
                    let recent = starts.entry(queue).or_default();
                    recent.push_back(*at);
                    while recent.front().is_some_and(|t| *t + 1000 <= *at) {
                        recent.pop_front();
                    }
                    let count = recent.len();
                    assert!(count <= 2 * *rate as usize, "{count} of {queue} started in a second");
                }
                let now_running = running.entry(queue).or_default();
                now_running.insert(work_id);
                if let Some(limit) = limits.get(queue) {
                    let count = now_running.len();
                    assert!(count <= *limit as usize, "{count} of {queue} run, limit {limit}");
                }
            }
            Event::WorkRequeued { work_id, .. } => {
                if let Some(queue) = queue_of.get(work_id) {
                    running.entry(queue).or_default().remove(work_id);
                }
            }
            Event::WorkCompleted { work_id, .. }
            | Event::WorkFailed { work_id, .. }
            | Event::WorkCancelled { work_id, .. } => {
                waiting.remove(work_id);
                purged_items.remove(work_id);
                if let Some(queue) = queue_of.get(work_id) {
                    running.entry(queue).or_default().remove(work_id);
                }
                assert!(
                    live.remove(work_id).is_some(),
                    "{work_id} finished twice or never accepted"
                );
            }
            _ => {}
        }
    }
}

/// Each schedule's ticks are fired at strictly increasing times (never one twice), and each
/// fired tick's work id is new.
fn check_ticks(journal: &[Event]) {
    let mut last: BTreeMap<String, Millis> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for event in journal {
        if let Event::ScheduleFired { name, work_id, scheduled, .. } = event {
            if let Some(before) = last.insert(name.to_string(), *scheduled) {
                assert!(*scheduled > before, "{name} fired {scheduled} after {before}");
            }
            assert!(ids.insert(work_id.clone()), "tick {work_id} fired twice");
        }
    }
    let mut accepted = BTreeSet::new();
    for event in journal {
        if let Event::WorkAccepted { work_id, .. } = event {
            if ids.contains(work_id) {
                assert!(accepted.insert(work_id.clone()), "tick {work_id} accepted twice");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn replay_equals_live(actions in proptest::collection::vec(action(), 1..120)) {
        // A back-off shorter than the clock's steps, so waiting items become due mid-run.
        let backoff = policy::Backoff { initial: 400, factor: 2.0, max: 1500, jitter: true };
        let mut policy = Policy { work_timeout: 2000, worker_timeout: 5000, max_attempts: 3, backoff, ..Policy::default() };
        let limited = policy::QueueRules { concurrency: Some(1), ..Default::default() };
        policy.queues.insert(queue(0), limited);
        let limits = BTreeMap::from([(queue(0), 1)]);
        let paced = policy::QueueRules { rate: Some(1), ..Default::default() };
        policy.queues.insert(queue(1), paced);
        let rates = BTreeMap::from([(queue(1), 1)]);
        let mut h = Harness {
            engine: Engine::new(State::default(), policy.clone()),
            journal: Vec::new(),
            now: 0,
            seq: 0,
            request: 0,
            epoch: 1,
            streams: BTreeMap::new(),
            readers: Vec::new(),
            taken: BTreeSet::new(),
            results: BTreeMap::new(),
            lookups: Vec::new(),
        };
        let takeover = Command::Takeover {
            epoch: 1,
            leader: "m1".to_owned(),
            seed: [1; 32],
            submitted_through: 0,
            now: 0,
        };
        h.step(takeover);
        h.start_readers();
        for action in actions {
            h.run(action);
        }
        let mut replayed = State::default();
        for event in &h.journal {
            replayed.apply(event);
        }
        prop_assert_eq!(&replayed, h.engine.state());

        let snapshot = codec::encode(h.engine.state()).expect("encode snapshot");
        let restored: State = codec::decode(&snapshot).expect("decode snapshot");
        prop_assert_eq!(&restored, h.engine.state());

        let batch = codec::encode(&JournalBatch { events: h.journal.clone() }).expect("encode journal");
        let decoded: JournalBatch = codec::decode(&batch).expect("decode journal");
        prop_assert_eq!(&decoded.events, &h.journal);

        check_journal(&h.journal, policy.max_attempts, &limits, &rates);
        check_ticks(&h.journal);
    }
}

#[test]
fn apply_is_total_on_events_that_do_not_fit() {
    // Events the engine would never emit in this state change nothing and do not panic.
    let mut state = State::default();
    let id = work_id(1);
    let w = worker(1);
    for event in [
        Event::WorkStarted {
            work_id: id.clone(),
            worker: w.clone(),
            attempt: 1,
            deadline: 5,
            token: Token::default(),
            at: 1,
        },
        Event::WorkProgressed { work_id: id.clone(), attempt: 1, deadline: 9 },
        Event::WorkRequeued {
            work_id: id.clone(),
            attempt: 1,
            reason: "x".into(),
            not_before: 9,
            at: 1,
        },
        Event::WorkDue { work_ids: vec![id.clone()] },
        Event::WorkCancelled { work_id: id.clone(), reason: "x".into(), at: 1 },
        Event::WorkCompleted { work_id: id.clone(), attempt: 1, result: Bytes::new(), at: 1 },
        Event::WorkFailed { work_id: id.clone(), attempt: 1, reason: "x".into(), at: 1 },
        Event::WorkerSeen { worker: w.clone(), at: 1 },
        Event::WorkerLost { worker: w, reason: "x".into(), at: 1 },
        Event::Published { keys: vec![PublicationKey::Rejection(4)] },
        Event::ScheduleRemoved { name: schedule(1), at: 1 },
        Event::ScheduleFired {
            name: schedule(1),
            work_id: id.clone(),
            scheduled: 1000,
            missed: 0,
            next: 2000,
            at: 1000,
            key: String::new(),
        },
        Event::TicksSubmitted { work_ids: vec![id.clone()] },
        Event::SubmissionsStored { work_ids: vec![id.clone()] },
        Event::PendingDropped { work_id: id.clone(), reason: "x".into(), at: 1 },
    ] {
        state.apply(&event);
        assert_eq!(state, State::default(), "{event:?} changed an empty state");
    }
}

/// What happens to a queue whose work ids are submitted again and again, read in turn and out
/// of turn in any order.
#[derive(Debug, Clone)]
enum ReadAction {
    /// A submission of `id` (one of a few, so they repeat), with a priority or not.
    Submit { id: u8, priority: bool },
    /// The queue's reader delivers its next submission.
    Deliver,
    /// The `nth` unread submission is read out of turn (a priority jump).
    Jump { nth: u8 },
    /// The worker runs everything it can get and reports it completed; the outcomes are
    /// published.
    Run,
}

fn read_action() -> impl Strategy<Value = ReadAction> {
    prop_oneof![
        (0u8..3, proptest::bool::ANY)
            .prop_map(|(id, priority)| ReadAction::Submit { id, priority }),
        Just(ReadAction::Deliver),
        (0u8..3).prop_map(|nth| ReadAction::Jump { nth }),
        Just(ReadAction::Run),
    ]
}

/// One queue, one worker that completes whatever it gets, and a modelled results stream fenced
/// per subject by submit sequence (as the publisher does).
struct Reads {
    engine: Engine,
    /// The submit stream: sequence, work id, priority.
    stream: Vec<(u64, WorkId, u8)>,
    /// The last submission the reader delivered.
    delivered: u64,
    /// The results stream: the submit sequences stored on each work id's subject, in order.
    results: BTreeMap<WorkId, Vec<u64>>,
    /// Submissions taken: accepted (the run's own outcome is due) or rejected.
    accepted: BTreeSet<u64>,
    rejected: BTreeSet<u64>,
    request: RequestId,
    now: Millis,
}

impl Reads {
    fn step(&mut self, command: Command) -> Output {
        let out = self.engine.step(command);
        for event in &out.events {
            match event {
                Event::WorkAccepted { seq, .. } => assert!(self.accepted.insert(*seq)),
                Event::SubmissionRejected { seq, .. } => assert!(self.rejected.insert(*seq)),
                _ => {}
            }
        }
        self.engine.state().check_invariants().expect("invariants");
        out
    }

    fn read(&mut self, seq: u64, jump: bool) {
        let Some((_, id, priority)) = self.stream.iter().find(|(s, ..)| *s == seq).cloned() else {
            return;
        };
        let mut submission = Submission::plain(queue(0), seq, Some(id.as_str()), self.now);
        submission.after = self.delivered;
        submission.jump = jump;
        submission.options = Ok(JobOptions { priority, ..JobOptions::default() });
        self.step(Command::Submitted(submission));
    }

    fn run(&mut self) {
        self.request += 1;
        let session = session_token(0, 0);
        let msg =
            RequestWork { worker_id: worker(0), session, slots: 64, wait_ms: 0, running: None };
        let (request, now) = (self.request, self.now);
        let out = self.step(Command::RequestWork { request, msg, login: None, now });
        let assignments: Vec<AssignmentRef> = out
            .effects
            .into_iter()
            .filter_map(|effect| match effect {
                Effect::Reply { reply: Reply::Grant { assignments }, .. } => Some(assignments),
                _ => None,
            })
            .flatten()
            .collect();
        let outcomes = assignments
            .iter()
            .map(|a| Outcome {
                work_id: a.work_id.clone(),
                attempt: a.attempt,
                token: a.token,
                status: OutcomeStatus::Completed,
                result: Bytes::from_static(b"r"),
                reason: None,
                non_retryable: false,
            })
            .collect();
        self.request += 1;
        let msg = Report { worker_id: worker(0), session, outcomes, slots: 0, running: None };
        self.step(Command::Report {
            request: self.request,
            msg,
            unreadable: vec![],
            login: None,
            now: self.now,
        });
        // The publisher: each outcome goes over an older run's, never under a newer one's.
        let unpublished: Vec<_> = self.engine.state().unpublished.clone().into_iter().collect();
        for (_, publication) in &unpublished {
            let Publication::Completed { work_id, seq, .. } = publication else { continue };
            let stored = self.results.entry(work_id.clone()).or_default();
            match stored.last() {
                Some(last) if last > seq => {
                    panic!("{work_id}: run {seq}'s outcome refused, run {last} is stored over it")
                }
                Some(last) if last == seq => {}
                _ => stored.push(*seq),
            }
        }
        let keys = unpublished.into_iter().map(|(key, _)| key).collect();
        self.step(Command::Published { keys });
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// However submissions of the same ids are read (in turn, out of turn, re-read), every
    /// stored submission is taken once, and every accepted run's outcome is stored (never
    /// refused as older than one already there): one stored outcome per acknowledged
    /// submission.
    #[test]
    fn every_run_stores_its_outcome_whatever_the_read_order(
        actions in proptest::collection::vec(read_action(), 1..80),
    ) {
        let mut r = Reads {
            engine: Engine::new(State::default(), Policy::default()),
            stream: Vec::new(),
            delivered: 0,
            results: BTreeMap::new(),
            accepted: BTreeSet::new(),
            rejected: BTreeSet::new(),
            request: 0,
            now: 0,
        };
        let takeover = Command::Takeover {
            epoch: 1,
            leader: "m1".to_owned(),
            seed: [3; 32],
            submitted_through: 0,
            now: 0,
        };
        r.step(takeover);
        r.request += 1;
        let msg = RegisterWorker {
            worker_id: worker(0),
            session: session_token(0, 0),
            queues: vec![queue(0)],
            capacity: 64,
            running: vec![],
        };
        r.step(Command::Register { request: r.request, msg, login: None, now: 0 });
        for action in actions {
            r.now += 10;
            match action {
                ReadAction::Submit { id, priority } => {
                    let seq = r.stream.len() as u64 + 1;
                    r.stream.push((seq, work_id(id), if priority { 5 } else { 0 }));
                }
                ReadAction::Deliver => {
                    let next = r.delivered + 1;
                    if next <= r.stream.len() as u64 {
                        r.read(next, false);
                        r.delivered = next;
                    }
                }
                ReadAction::Jump { nth } => {
                    let seq = r.delivered + 1 + u64::from(nth);
                    r.read(seq, true);
                }
                ReadAction::Run => r.run(),
            }
        }
        // Everything is read in the end, and runs.
        while r.delivered < r.stream.len() as u64 {
            let next = r.delivered + 1;
            r.read(next, false);
            r.delivered = next;
            r.run();
        }
        r.run();
        for (seq, id, _) in &r.stream {
            let taken = r.accepted.contains(seq) as u8 + r.rejected.contains(seq) as u8;
            prop_assert_eq!(taken, 1, "submission {} of {} taken {} times", seq, id, taken);
            if r.accepted.contains(seq) {
                let stored = r.results.get(id).is_some_and(|runs| runs.contains(seq));
                prop_assert!(stored, "run {} of {} has no stored outcome", seq, id);
            }
        }
    }
}
