//! The journal's encoding, pinned. One sample of every [`Event`] kind, a batch, a snapshot of a
//! state and a snapshot marker are encoded and compared with `testdata/format-<FORMAT>.txt`:
//! a change to how anything journaled is encoded fails here.
//!
//! If the change is meant: an older master may be unable to read what this one writes, so
//! bump `journal::FORMAT`, write the new file with `UPDATE_GOLDENFILES=1 cargo test -p
//! jetwork-master format`, and keep every older `format-*.txt` (never regenerate those): the
//! second test decodes each of them with today's types, so journals written by older masters
//! stay readable. See "Upgrades" in `docs/architecture.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use bytes::Bytes;
use jetwork_shared::job_options::JobOptions;
use jetwork_shared::schedules::ScheduleName;
use jetwork_shared::{codec, Login, QueueName, Token, WorkId, WorkerId};

use super::*;
use crate::journal::{SnapshotMarker, FORMAT};

fn q() -> QueueName {
    QueueName::parse("emails").expect("valid")
}
fn id() -> WorkId {
    WorkId::parse("order-42").expect("valid")
}
fn w() -> WorkerId {
    WorkerId::parse("w-1").expect("valid")
}

/// One of every event kind, with every field set.
fn events() -> Vec<(&'static str, Event)> {
    let token = Token::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
    vec![
        (
            "EpochStarted",
            Event::EpochStarted {
                epoch: 7,
                leader: "m1-ab".into(),
                at: 1_000,
                grace_until: 4_000,
                legacy_through: Some(120),
            },
        ),
        (
            "WorkAccepted",
            Event::WorkAccepted {
                work_id: id(),
                queue: q(),
                seq: 17,
                size: 5,
                at: 1_001,
                prior_attempts: 2,
                options: JobOptions {
                    not_before: 1_000,
                    priority: 7,
                    max_attempts: Some(3),
                    timeout: Some(30_000),
                    expires: 90_000,
                    expires_after: 89_000,
                },
                jumped: true,
            },
        ),
        (
            "SubmissionRejected",
            Event::SubmissionRejected {
                queue: q(),
                seq: 18,
                msg_id: Some("bad.id".into()),
                reason: "invalid".into(),
                at: 1_002,
            },
        ),
        (
            "WorkerRegistered",
            Event::WorkerRegistered {
                worker: w(),
                session: token,
                login: Some(Login::parse(w().as_str()).expect("valid")),
                queues: vec![q()],
                capacity: 4,
                at: 1_003,
            },
        ),
        ("WorkerSeen", Event::WorkerSeen { worker: w(), at: 1_004 }),
        ("WorkerLost", Event::WorkerLost { worker: w(), reason: "silent".into(), at: 1_005 }),
        (
            "WorkStarted",
            Event::WorkStarted {
                work_id: id(),
                worker: w(),
                attempt: 1,
                deadline: 11_000,
                token,
                at: 1_000,
            },
        ),
        ("WorkProgressed", Event::WorkProgressed { work_id: id(), attempt: 1, deadline: 12_000 }),
        (
            "WorkRequeued",
            Event::WorkRequeued {
                work_id: id(),
                attempt: 1,
                reason: "failed".into(),
                not_before: 13_000,
                at: 12_500,
            },
        ),
        (
            "WorkCompleted",
            Event::WorkCompleted {
                work_id: id(),
                attempt: 2,
                result: Bytes::from_static(b"25"),
                at: 1_006,
            },
        ),
        (
            "WorkFailed",
            Event::WorkFailed { work_id: id(), attempt: 5, reason: "gave up".into(), at: 1_007 },
        ),
        (
            "Published",
            Event::Published {
                keys: vec![PublicationKey::Result(id()), PublicationKey::Rejection(18)],
            },
        ),
        // Format 2.
        ("WorkDue", Event::WorkDue { work_ids: vec![id()] }),
        (
            "WorkCancelled",
            Event::WorkCancelled { work_id: id(), reason: "by hand".into(), at: 1_009 },
        ),
        ("QueuePaused", Event::QueuePaused { queue: q(), at: 1_010 }),
        ("QueueResumed", Event::QueueResumed { queue: q(), at: 1_011 }),
        // Format 3 (with `WorkAccepted.options` above).
        ("ScheduleAdded", schedule_added()),
        ("ScheduleRemoved", Event::ScheduleRemoved { name: schedule(), at: 1_013 }),
        ("ScheduleFired", schedule_fired()),
        ("TicksSubmitted", Event::TicksSubmitted { work_ids: vec![tick()] }),
        ("QueuePurged", Event::QueuePurged { queue: q(), through_seq: 40, at: 1_014 }),
        // Format 4 (with `WorkAccepted.jumped` above).
        ("SubmissionPassed", Event::SubmissionPassed { queue: q(), seq: 17 }),
        // Format 5 (with `EpochStarted.legacy_through`, `ScheduleFired.key` and
        // `JobOptions.expires_after` above).
        ("SubmissionsStored", Event::SubmissionsStored { work_ids: vec![tick()] }),
        ("RetryDecided", retry_decided()),
        (
            "PendingDropped",
            Event::PendingDropped { work_id: id(), reason: "gone".into(), at: 1_016 },
        ),
        // Format 6 (with `WorkerRegistered.login` above).
        ("QueueForgotten", Event::QueueForgotten { queue: q(), at: 1_017 }),
    ]
}

const FORMAT_6_KINDS: [&str; 1] = ["QueueForgotten"];

const FORMAT_5_KINDS: [&str; 3] = ["SubmissionsStored", "RetryDecided", "PendingDropped"];

const FORMAT_4_KINDS: [&str; 1] = ["SubmissionPassed"];

const FORMAT_3_KINDS: [&str; 5] =
    ["ScheduleAdded", "ScheduleRemoved", "ScheduleFired", "TicksSubmitted", "QueuePurged"];

fn schedule() -> ScheduleName {
    ScheduleName::parse("nightly").expect("valid")
}
fn tick() -> WorkId {
    WorkId::parse("nightly-19700101T000100Z").expect("valid")
}
fn schedule_added() -> Event {
    Event::ScheduleAdded {
        name: schedule(),
        queue: q(),
        cadence: Cadence::Every { ms: 60_000 },
        payload: Bytes::from_static(b"report"),
        next: 60_000,
        at: 1_012,
    }
}
fn schedule_fired() -> Event {
    Event::ScheduleFired {
        name: schedule(),
        work_id: tick(),
        scheduled: 60_000,
        missed: 1,
        next: 120_000,
        at: 60_005,
        key: format!("{}~00000000000000ab", tick()),
    }
}
fn retry_decided() -> Event {
    Event::RetryDecided {
        work_id: WorkId::parse("failed-once").expect("valid"),
        queue: q(),
        key: "failed-once~0000000000000abc".into(),
        prior_attempts: 3,
        options: JobOptions {
            priority: 2,
            expires: 70_000,
            expires_after: 60_000,
            ..JobOptions::default()
        },
        payload_seq: 77,
        at: 10_000,
    }
}

/// The samples as a journal of `format` holds them: only the kinds it had, and the fields
/// it did not have at their defaults.
fn events_of(format: u32) -> Vec<(&'static str, Event)> {
    if format >= 6 {
        return events();
    }
    // Format 5 had no worker logins nor forgotten queues.
    let events = events().into_iter().filter(|(name, _)| !FORMAT_6_KINDS.contains(name)).map(
        |(name, mut event)| {
            if let Event::WorkerRegistered { login, .. } = &mut event {
                *login = None;
            }
            (name, event)
        },
    );
    if format == 5 {
        return events.collect();
    }
    // Format 4 had no master-only submissions nor operator retries in the journal.
    let events =
        events.filter(|(name, _)| !FORMAT_5_KINDS.contains(name)).map(|(name, mut event)| {
            match &mut event {
                Event::EpochStarted { legacy_through, .. } => *legacy_through = None,
                Event::ScheduleFired { key, .. } => key.clear(),
                Event::WorkAccepted { options, .. } => options.expires_after = 0,
                _ => {}
            }
            (name, event)
        });
    if format == 4 {
        return events.collect();
    }
    // Format 3 had no priority jumps.
    let events =
        events.filter(|(name, _)| !FORMAT_4_KINDS.contains(name)).map(|(name, mut event)| {
            if let Event::WorkAccepted { jumped, .. } = &mut event {
                *jumped = false;
            }
            (name, event)
        });
    if format == 3 {
        return events.collect();
    }
    // Format 2 had no job options and no schedules.
    let events =
        events.filter(|(name, _)| !FORMAT_3_KINDS.contains(name)).map(|(name, mut event)| {
            if let Event::WorkAccepted { options, .. } = &mut event {
                *options = JobOptions::default();
            }
            (name, event)
        });
    if format == 2 {
        return events.collect();
    }
    // Format 1 had no job lifecycle.
    events
        .filter(|(name, _)| {
            !matches!(*name, "WorkDue" | "WorkCancelled" | "QueuePaused" | "QueueResumed")
        })
        .map(|(name, mut event)| {
            match &mut event {
                Event::WorkStarted { at, .. } => *at = 0,
                Event::WorkAccepted { prior_attempts, .. } => *prior_attempts = 0,
                Event::WorkRequeued { reason, not_before, at, .. } => {
                    *reason = "timed out".into();
                    (*not_before, *at) = (0, 0);
                }
                _ => {}
            }
            (name, event)
        })
        .collect()
}

/// A state with something in every field (of those `format` had).
fn state_of(format: u32) -> State {
    let mut state = State::default();
    for (_, event) in events_of(format).into_iter().take(7) {
        state.apply(&event);
    }
    if format >= 3 {
        state.apply(&schedule_added());
        state.apply(&schedule_fired());
        state.apply(&Event::QueuePurged { queue: q(), through_seq: 40, at: 1_014 });
    }
    if format >= 2 {
        state.apply(&Event::QueuePaused { queue: q(), at: 1_010 });
    } else {
        // Format 1 had no attempt histories.
        for work in state.work.values_mut() {
            work.history.clear();
        }
    }
    state.apply(&Event::SubmissionRejected {
        queue: q(),
        seq: 19,
        msg_id: None,
        reason: "clash".into(),
        at: 1_008,
    });
    if format >= 4 {
        // A submission past the cursor taken out of turn.
        state.apply(&Event::WorkAccepted {
            work_id: WorkId::parse("urgent").expect("valid"),
            queue: q(),
            seq: 50,
            size: 3,
            at: 1_015,
            prior_attempts: 0,
            options: JobOptions { priority: 9, ..JobOptions::default() },
            jumped: true,
        });
    }
    if format >= 5 {
        state.apply(&retry_decided());
    } else {
        // Format 4 kept no ids of jumped submissions, and ticks had no keys of their own.
        for q in state.queues.values_mut() {
            q.jumped_ids.clear();
        }
        for tick in state.unsubmitted.values_mut() {
            tick.key.clear();
        }
    }
    state
}

fn state() -> State {
    state_of(FORMAT)
}

/// Every sample, encoded, as `name: hex` lines.
fn encodings() -> String {
    let mut out = String::new();
    let mut line = |name: &str, bytes: Bytes| {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let _ = writeln!(out, "{name}: {hex}");
    };
    for (name, event) in events() {
        line(name, codec::encode(&event).expect("encodes"));
    }
    let batch = JournalBatch { events: events().into_iter().map(|(_, e)| e).take(2).collect() };
    line("JournalBatch", codec::encode(&batch).expect("encodes"));
    line("State", codec::encode(&state()).expect("encodes"));
    let marker = SnapshotMarker { first_seq: 100, parts: 2, bytes: 700_000, epoch: 7 };
    line("SnapshotMarker", codec::encode(&marker).expect("encodes"));
    out
}

fn testdata(format: u32) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("src/core/testdata/format-{format}.txt"))
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn encodings_of_the_current_format_are_unchanged() {
    let path = testdata(FORMAT);
    let current = encodings();
    if std::env::var_os("UPDATE_GOLDENFILES").is_some() && !path.exists() {
        std::fs::write(&path, &current).expect("write golden encodings");
    }
    let pinned = std::fs::read_to_string(&path).expect("golden encodings of the current format");
    assert!(
        pinned == current,
        "the journal encoding changed: bump journal::FORMAT and keep older formats readable \
         (see the module docs)\n--- pinned\n{pinned}\n--- now\n{current}"
    );
}

#[test]
fn every_pinned_format_still_decodes() {
    for format in 1..=FORMAT {
        let samples: BTreeMap<&str, Event> = events_of(format).into_iter().collect();
        let pinned = std::fs::read_to_string(testdata(format)).expect("pinned encodings");
        for line in pinned.lines() {
            let (name, hex) = line.split_once(": ").expect("name: hex");
            let bytes = unhex(hex);
            match name {
                "JournalBatch" => {
                    let batch: JournalBatch = codec::decode(&bytes).expect("a batch decodes");
                    assert_eq!(batch.events.len(), 2, "format {format}");
                }
                "State" => {
                    let state: State = codec::decode(&bytes).expect("a snapshot decodes");
                    assert_eq!(state, state_of(format), "format {format}");
                }
                "SnapshotMarker" => {
                    let marker: SnapshotMarker = codec::decode(&bytes).expect("a marker decodes");
                    assert_eq!(marker.first_seq, 100, "format {format}");
                }
                event => {
                    let decoded: Event = codec::decode(&bytes).expect("an event decodes");
                    assert_eq!(Some(&decoded), samples.get(event), "format {format}: {event}");
                }
            }
        }
    }
}

#[test]
fn a_state_always_encodes_to_the_same_bytes() {
    // Ordered maps throughout: the same state is the same snapshot, whatever order it was
    // built in.
    let other = Event::WorkAccepted {
        work_id: WorkId::parse("another").expect("valid"),
        queue: q(),
        seq: 3,
        size: 1,
        at: 0,
        prior_attempts: 0,
        options: JobOptions::default(),
        jumped: false,
    };
    let events: Vec<Event> = events().into_iter().take(7).map(|(_, e)| e).collect();
    let mut forward = State::default();
    for event in events.iter().chain([&other]) {
        forward.apply(event);
    }
    let mut backward = State::default();
    for event in [&other].into_iter().chain(&events) {
        backward.apply(event);
    }
    assert_eq!(codec::encode(&forward).ok(), codec::encode(&backward).ok());
}
