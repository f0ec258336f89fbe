//! What a snapshot of a large state costs the leader's loop: the copy it takes on the loop
//! against the encoding (which ran on the loop before it moved off), for 100k held items.
//! A measurement, not a check of timings (those depend on the machine): run it with
//! `cargo test -p jetwork-master --release snapshot_cost -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use jetwork_shared::job_options::JobOptions;
use jetwork_shared::{QueueName, Token, WorkId, WorkerId};

use super::EncodedSnapshot;
use crate::core::{Event, State};

const ITEMS: u64 = 100_000;
const RUNS: usize = 5;

/// `ITEMS` delayed jobs (the case: each waits, a few hundred bytes in the state).
fn delayed() -> State {
    let mut state = State::default();
    let queue = QueueName::parse("bench").expect("a queue name");
    for seq in 1..=ITEMS {
        state.apply(&Event::WorkAccepted {
            work_id: WorkId::parse(&format!("job-{seq:08}")).expect("a work id"),
            queue: queue.clone(),
            seq,
            size: 64,
            at: 1_000,
            prior_attempts: 0,
            options: JobOptions { not_before: 10_000_000, ..JobOptions::default() },
            jumped: false,
        });
    }
    state
}

/// `ITEMS` jobs running on 1000 workers, each with an attempt in its history.
fn running() -> State {
    let mut state = State::default();
    let queue = QueueName::parse("bench").expect("a queue name");
    let workers: Vec<WorkerId> =
        (0..1000).map(|w| WorkerId::parse(&format!("w{w}")).expect("a worker id")).collect();
    for worker in &workers {
        state.apply(&Event::WorkerRegistered {
            worker: worker.clone(),
            session: Token::from_u128(1),
            login: None,
            queues: vec![queue.clone()],
            capacity: 1000,
            at: 1_000,
        });
    }
    for seq in 1..=ITEMS {
        let work_id = WorkId::parse(&format!("job-{seq:08}")).expect("a work id");
        state.apply(&Event::WorkAccepted {
            work_id: work_id.clone(),
            queue: queue.clone(),
            seq,
            size: 64,
            at: 1_000,
            prior_attempts: 0,
            options: JobOptions::default(),
            jumped: false,
        });
        state.apply(&Event::WorkStarted {
            work_id,
            worker: workers[(seq % 1000) as usize].clone(),
            attempt: 1,
            deadline: 20_000,
            token: Token::from_u128(u128::from(seq)),
            at: 2_000,
        });
    }
    state
}

/// The median of `RUNS` timings of `f`.
fn median(mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .collect();
    times.sort();
    times[RUNS / 2]
}

#[test]
#[ignore = "a measurement: run it by name with --ignored --nocapture (and --release)"]
fn snapshot_cost() {
    for (name, state) in [("delayed", delayed()), ("running", running())] {
        assert_eq!(state.work.len() as u64, ITEMS);
        let bytes = EncodedSnapshot::encode(&state, 512 * 1024).expect("encodes").bytes();
        let encode = median(|| {
            EncodedSnapshot::encode(&state, 512 * 1024).expect("encodes");
        });
        let copy = median(|| drop(std::hint::black_box(state.clone())));
        // The copy's drop happens off the loop too: the clone alone is what the loop pays.
        let mut copies = Vec::new();
        let clone_only = median(|| copies.push(state.clone()));
        println!(
            "{name}: {ITEMS} items, snapshot {:.1} MB; on the loop before (encode): {:.1} ms; \
             after (copy): {:.1} ms; copy and drop: {:.1} ms",
            bytes as f64 / 1e6,
            encode.as_secs_f64() * 1e3,
            clone_only.as_secs_f64() * 1e3,
            copy.as_secs_f64() * 1e3,
        );
    }
}
