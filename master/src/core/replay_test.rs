//! Property tests of the engine: random command sequences from a small alphabet (few
//! workers, queues and ids, so collisions and stale reports are frequent), checking after
//! every step that the state invariants hold, and at the end that
//! - replaying the emitted events from an empty state gives exactly the live state,
//! - a snapshot (the MessagePack encoding of the state) decodes to the same state,
//! - the journal never finishes a work id twice without accepting it again in between,
//! - attempts of an item are handed out as 1, 2, 3, … and never beyond `max_attempts`.

use std::collections::HashMap;

use bytes::Bytes;
use jetwork_shared::codec;
use jetwork_shared::protocol::{
    Outcome, OutcomeStatus, RegisterWorker, Report, RequestWork, RunningWork,
};
use jetwork_shared::{QueueName, WorkId, WorkerId};
use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Action {
    Advance(u64),
    Tick,
    Submit { queue: u8, id: Option<u8> },
    Register { worker: u8, queues: u8, capacity: u32, running: Vec<(u8, u32)> },
    Request { worker: u8, slots: u32 },
    Report { worker: u8, outcomes: Vec<(u8, u32, u8)>, slots: u32 },
    PublishAll,
    Missing(u8),
    Takeover,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        (1u64..3000).prop_map(Action::Advance),
        Just(Action::Tick),
        (0u8..2, proptest::option::of(0u8..8)).prop_map(|(queue, id)| Action::Submit { queue, id }),
        (0u8..3, 1u8..4, 1u32..4, proptest::collection::vec((0u8..8, 0u32..4), 0..3)).prop_map(
            |(worker, queues, capacity, running)| Action::Register {
                worker,
                queues,
                capacity,
                running
            }
        ),
        (0u8..3, 0u32..4).prop_map(|(worker, slots)| Action::Request { worker, slots }),
        (0u8..3, proptest::collection::vec((0u8..8, 0u32..5, 0u8..3), 0..4), 0u32..3)
            .prop_map(|(worker, outcomes, slots)| Action::Report { worker, outcomes, slots }),
        Just(Action::PublishAll),
        (0u8..8).prop_map(Action::Missing),
        Just(Action::Takeover),
    ]
}

fn queue(i: u8) -> QueueName {
    QueueName::parse(&format!("q{i}")).expect("valid queue")
}

fn work_id(i: u8) -> WorkId {
    WorkId::parse(&format!("job{i}")).expect("valid id")
}

fn worker(i: u8) -> WorkerId {
    WorkerId::parse(&format!("w{i}")).expect("valid worker")
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
}

impl Harness {
    fn step(&mut self, command: Command) {
        let out = self.engine.step(command);
        self.journal.extend(out.events);
        if let Err(e) = self.engine.state().check_invariants() {
            panic!("invariant broken: {e}\n{:#?}", self.engine.state());
        }
    }

    fn run(&mut self, action: Action) {
        let now = self.now;
        self.request += 1;
        let request = self.request;
        match action {
            Action::Advance(ms) => self.now += ms,
            Action::Tick => self.step(Command::Tick { now }),
            Action::Submit { queue: q, id } => {
                self.seq += 1;
                let msg_id =
                    id.map(|i| if i == 7 { "bad.id".to_owned() } else { work_id(i).to_string() });
                self.step(Command::Submitted {
                    queue: queue(q),
                    seq: self.seq,
                    msg_id,
                    size: 10,
                    now,
                });
            }
            Action::Register { worker: w, queues, capacity, running } => {
                let running = running
                    .into_iter()
                    .map(|(i, attempt)| RunningWork { work_id: work_id(i), attempt })
                    .collect();
                let msg = RegisterWorker {
                    worker_id: worker(w),
                    queues: queues_of(queues),
                    capacity,
                    running,
                };
                self.step(Command::Register { request, msg, now });
            }
            Action::Request { worker: w, slots } => {
                // Even slot counts also wait (long poll), so parked requests are exercised.
                let wait_ms = if slots % 2 == 0 { 500 } else { 0 };
                let msg = RequestWork { worker_id: worker(w), slots, wait_ms };
                self.step(Command::RequestWork { request, msg, now });
            }
            Action::Report { worker: w, outcomes, slots } => {
                let outcomes = outcomes
                    .into_iter()
                    .map(|(i, attempt, kind)| Outcome {
                        work_id: work_id(i),
                        attempt,
                        status: [
                            OutcomeStatus::Completed,
                            OutcomeStatus::Failed,
                            OutcomeStatus::Progress,
                        ][kind as usize],
                        result: Bytes::from_static(b"r"),
                        reason: Some("boom".to_owned()),
                    })
                    .collect();
                let msg = Report { worker_id: worker(w), outcomes, slots };
                self.step(Command::Report { request, msg, now });
            }
            Action::PublishAll => {
                let keys = self.engine.state().unpublished.keys().cloned().collect();
                self.step(Command::Published { keys });
            }
            Action::Missing(i) => self.step(Command::PayloadMissing { work_id: work_id(i), now }),
            Action::Takeover => {
                // A new leader replays the journal and carries on from there.
                let mut replayed = State::default();
                for event in &self.journal {
                    replayed.apply(event);
                }
                self.engine = Engine::new(replayed, self.engine.policy().clone());
                self.epoch += 1;
                self.step(Command::Takeover {
                    epoch: self.epoch,
                    leader: format!("m{}", self.epoch),
                    now,
                });
            }
        }
    }
}

fn check_journal(journal: &[Event], max_attempts: u32) {
    // Per id: is it in flight, and which attempt was handed out last.
    let mut live: HashMap<&WorkId, u32> = HashMap::new();
    for event in journal {
        match event {
            Event::WorkAccepted { work_id, .. } => {
                assert!(live.insert(work_id, 0).is_none(), "{work_id} accepted while in flight");
            }
            Event::WorkStarted { work_id, attempt, .. } => {
                let last = live
                    .get_mut(work_id)
                    .unwrap_or_else(|| panic!("{work_id} started but not in flight"));
                assert_eq!(*attempt, *last + 1, "{work_id} attempts out of order");
                assert!(*attempt <= max_attempts, "{work_id} attempt {attempt} beyond the maximum");
                *last = *attempt;
            }
            Event::WorkCompleted { work_id, .. } | Event::WorkFailed { work_id, .. } => {
                assert!(
                    live.remove(work_id).is_some(),
                    "{work_id} finished twice or never accepted"
                );
            }
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn replay_equals_live(actions in proptest::collection::vec(action(), 1..120)) {
        let policy = Policy { work_timeout: 2000, worker_timeout: 5000, max_attempts: 3, ..Policy::default() };
        let mut h = Harness {
            engine: Engine::new(State::default(), policy.clone()),
            journal: Vec::new(),
            now: 0,
            seq: 0,
            request: 0,
            epoch: 1,
        };
        h.step(Command::Takeover { epoch: 1, leader: "m1".to_owned(), now: 0 });
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

        check_journal(&h.journal, policy.max_attempts);
    }
}

#[test]
fn apply_is_total_on_events_that_do_not_fit() {
    // Events the engine would never emit in this state change nothing and do not panic.
    let mut state = State::default();
    let id = work_id(1);
    let w = worker(1);
    for event in [
        Event::WorkStarted { work_id: id.clone(), worker: w.clone(), attempt: 1, deadline: 5 },
        Event::WorkProgressed { work_id: id.clone(), attempt: 1, deadline: 9 },
        Event::WorkRequeued { work_id: id.clone(), attempt: 1, reason: "x".into() },
        Event::WorkCompleted { work_id: id.clone(), attempt: 1, result: Bytes::new(), at: 1 },
        Event::WorkFailed { work_id: id.clone(), attempt: 1, reason: "x".into(), at: 1 },
        Event::WorkerSeen { worker: w.clone(), at: 1 },
        Event::WorkerLost { worker: w, reason: "x".into(), at: 1 },
        Event::Published { keys: vec![PublicationKey::Rejection(4)] },
    ] {
        state.apply(&event);
        assert_eq!(state, State::default(), "{event:?} changed an empty state");
    }
}
