//! Workers that stop cleanly, and reports that are partly garbage:
//! - a deregistration releases the worker id at once (a new process registers under it
//!   straight away, not after `worker_timeout`) and re-queues what the worker held at once (not
//!   at its deadline); a forged one (another session, another login) is refused with 403 and
//!   changes nothing;
//! - an unreadable entry of a report (`result: nil`, as a newcomer's worker sends) is refused
//!   on its own: the completed outcome beside it is still recorded;
//! - a worker request sent as JSON by mistake is refused with a reason that says so.
//!
//! The master runs with a 60 s `worker_timeout` and `work_timeout`, so anything that happens
//! within the test's deadlines happened because of the deregistration, not a timer.

use std::time::Duration;

use bytes::Bytes;
use jetwork_shared::jobs::JobState;
use jetwork_shared::msgpack_value::AnyValue;
use jetwork_shared::protocol::{
    Deregister, Deregistered, RegisterWorker, Registered, ReportReply, RequestWork, VerdictKind,
    WorkGrant,
};
use jetwork_shared::{codec, subjects, QueueName, Token, WorkerId};
use jetwork_tests::{call_raw, poll_for, wait_until, InProcess, Refusal};
use jetwork_worker::square;

const LONG: Duration = Duration::from_secs(60);
const WITHIN: Duration = Duration::from_secs(20);

async fn start() -> anyhow::Result<InProcess> {
    InProcess::start(|fast| {
        fast.master.master.worker_timeout = LONG;
        fast.master.master.work_timeout = LONG;
    })
    .await
}

/// Calls a master endpoint with a MessagePack body: the decoded reply, or the refusal.
async fn call<T: serde::Serialize, R: serde::de::DeserializeOwned>(
    nats: &async_nats::Client,
    subject: &str,
    body: &T,
) -> anyhow::Result<Result<R, Refusal>> {
    Ok(match call_raw(nats, subject, codec::encode(body)?).await? {
        Ok(reply) => Ok(codec::decode(&reply)?),
        Err(refusal) => Err(refusal),
    })
}

/// Registers `worker` (session `session`, capacity 2) on the endpoint without a login.
async fn register(
    nats: &async_nats::Client,
    worker: &WorkerId,
    session: Token,
) -> anyhow::Result<()> {
    let msg = RegisterWorker {
        worker_id: worker.clone(),
        session,
        queues: vec![QueueName::default_queue()],
        capacity: 2,
        running: vec![],
    };
    // The first call may come before a master leads: asked again until one answers.
    let _: Registered = poll_for("a leader to register with", WITHIN, || async {
        call(nats, subjects::MASTER_REGISTER, &msg).await.ok()?.ok()
    })
    .await?;
    Ok(())
}

/// Asks for work until `worker` holds `n` assignments.
async fn take(
    nats: &async_nats::Client,
    worker: &WorkerId,
    session: Token,
    n: usize,
) -> anyhow::Result<Vec<jetwork_shared::protocol::Assignment>> {
    let mut held = Vec::new();
    while held.len() < n {
        let ask = RequestWork {
            worker_id: worker.clone(),
            session,
            slots: 2,
            wait_ms: 1000,
            running: None,
        };
        let grant: WorkGrant =
            call(nats, subjects::MASTER_REQUEST, &ask).await?.map_err(anyhow::Error::msg)?;
        held.extend(grant.assignments);
    }
    Ok(held)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deregistration_releases_the_id_and_requeues_at_once_and_only_its_session_may_send_it(
) -> anyhow::Result<()> {
    let run = start().await?;
    let nats = run.server.connect().await?;
    let gone = WorkerId::parse("gone")?;
    let session = Token::from_u128(0x5e55_1011);
    register(&nats, &gone, session).await?;
    let ids = [run.submit("held-1", b"3").await?, run.submit("held-2", b"4").await?];
    let held = take(&nats, &gone, session, 2).await?;
    assert_eq!(held.len(), 2);

    tracing::info!("--- forgeries: another session, another login, a garbled body");
    let forged = Deregister { worker_id: gone.clone(), session: Token::from_u128(7) };
    let refused = call::<_, Deregistered>(&nats, subjects::MASTER_DEREGISTER, &forged).await?;
    let refusal = refused.expect_err("another session may not deregister it");
    assert_eq!(refusal.code, 403, "{refusal}");
    assert!(refusal.reason.contains("wrong session"), "{refusal}");
    // The real session, but under a login (`gone`) the worker did not register with.
    let own = Deregister { worker_id: gone.clone(), session };
    let under_login = format!("{}.gone.gone", subjects::MASTER_DEREGISTER);
    let refusal = call::<_, Deregistered>(&nats, &under_login, &own).await?.expect_err("login");
    assert_eq!(refusal.code, 403, "{refusal}");
    let garbled = call_raw(&nats, subjects::MASTER_DEREGISTER, Bytes::from_static(b"\xc1")).await?;
    assert_eq!(garbled.expect_err("garbage").code, 400);

    tracing::info!("--- nothing changed: the worker still holds both attempts");
    let status = run.client.status().await?;
    let listed = status.workers.iter().find(|w| w.worker_id == gone).expect("still registered");
    assert_eq!(listed.running_total, 2, "{listed:?}");

    tracing::info!("--- its own deregistration re-queues both at once; a worker finishes them");
    let released: Deregistered =
        call(&nats, subjects::MASTER_DEREGISTER, &own).await?.map_err(anyhow::Error::msg)?;
    assert_eq!(released.requeued, 2);
    let _worker = run.worker("finisher", square);
    let audit = run.completed(&ids, WITHIN).await?;
    for id in &ids {
        let attempts = audit.attempts(id);
        assert_eq!(attempts.len(), 2, "{id}: handed out again once: {attempts:?}");
    }

    tracing::info!("--- a re-sent deregistration is answered 404: the id is free");
    let again = call::<_, Deregistered>(&nats, subjects::MASTER_DEREGISTER, &own).await?;
    assert_eq!(again.expect_err("already released").code, 404);
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_cleanly_can_be_restarted_under_its_id_at_once() -> anyhow::Result<()> {
    let run = start().await?;
    let fixed = WorkerId::parse("fixed")?;
    let worker = run.worker("fixed", square);
    let first = run.submit("before", b"5").await?;
    run.result(&first, WITHIN).await?;

    tracing::info!("--- a clean stop deregisters: the master lists the worker no more");
    worker.stop().await;
    wait_until("the worker to be gone from the master", WITHIN, || async {
        run.client.status().await.is_ok_and(|s| s.workers.iter().all(|w| w.worker_id != fixed))
    })
    .await?;

    tracing::info!(
        "--- a new process under the same id registers and works at once (no 409 for 60 s)"
    );
    let _again = run.worker("fixed", square);
    let second = run.submit("after", b"6").await?;
    let result = run.result(&second, WITHIN).await?;
    assert_eq!(result.payload, Bytes::from_static(b"6 * 6 = 36"));
    let job = run.client.job(&second, None).await?;
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(job.history[0].worker, fixed);
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_outcome_is_refused_on_its_own_and_json_is_named() -> anyhow::Result<()> {
    let run = start().await?;
    let nats = run.server.connect().await?;
    let raw = WorkerId::parse("raw")?;
    let session = Token::from_u128(0xabc);
    register(&nats, &raw, session).await?;
    let ids = [run.submit("nil-result", b"1").await?, run.submit("good", b"2").await?];
    let held = take(&nats, &raw, session, 2).await?;

    tracing::info!("--- one report: a completion with `result: nil`, then a good one");
    let entry = |a: &jetwork_shared::protocol::Assignment, result: AnyValue| {
        let pairs = [
            ("work_id", AnyValue::Str(a.work_id.to_string())),
            ("attempt", AnyValue::UInt(a.attempt.into())),
            ("token", AnyValue::Str(a.token.to_string())),
            ("status", AnyValue::Str("completed".into())),
            ("result", result),
            ("reason", AnyValue::Nil),
        ];
        AnyValue::Map(pairs.into_iter().map(|(k, v)| (AnyValue::Str(k.into()), v)).collect())
    };
    let (bad, good) =
        if held[0].work_id == ids[0] { (&held[0], &held[1]) } else { (&held[1], &held[0]) };
    let report = AnyValue::Map(vec![
        (AnyValue::Str("worker_id".into()), AnyValue::Str("raw".into())),
        (AnyValue::Str("session".into()), AnyValue::Str(session.to_string())),
        (
            AnyValue::Str("outcomes".into()),
            AnyValue::Array(vec![
                entry(bad, AnyValue::Nil),
                entry(good, AnyValue::Bin(b"fine".to_vec())),
            ]),
        ),
        (AnyValue::Str("slots".into()), AnyValue::UInt(0)),
    ]);
    let reply = call_raw(&nats, subjects::MASTER_REPORT, codec::encode(&report)?).await?;
    let reply: ReportReply = codec::decode(&reply.map_err(anyhow::Error::msg)?)?;
    let kinds: Vec<_> = reply.verdicts.iter().map(|v| (v.work_id.clone(), v.verdict)).collect();
    assert_eq!(
        kinds,
        [
            (Some(bad.work_id.clone()), VerdictKind::Rejected),
            (Some(good.work_id.clone()), VerdictKind::Accepted)
        ]
    );
    let why = reply.verdicts[0].reason.clone().unwrap_or_default();
    assert!(why.contains("`result`") && why.contains("unit value"), "{why}");

    tracing::info!("--- the good one is stored; the bad one is still running, untouched");
    let stored = run.result(&good.work_id, WITHIN).await?;
    assert_eq!(stored.payload, Bytes::from_static(b"fine"));
    let state = poll_for("the bad job's state", WITHIN, || async {
        run.client.job(&ids[0], None).await.ok().map(|j| j.state)
    })
    .await?;
    assert_eq!(state, JobState::Running);

    tracing::info!("--- JSON instead of MessagePack: 400, and the reason says so");
    let json = br#"{"worker_id":"raw","session":"x","queues":["default"],"capacity":1}"#;
    let refusal = call_raw(&nats, subjects::MASTER_REGISTER, &json[..]).await?.expect_err("json");
    assert_eq!(refusal.code, 400);
    assert!(refusal.reason.contains("this is JSON"), "{refusal}");
    run.stop().await;
    Ok(())
}
