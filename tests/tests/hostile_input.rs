//! Messages no well-behaved client would send, written as raw protocol bytes or as bodies of
//! the wrong shape and size (on the worker, job and admin subjects, and as submissions with
//! unreadable headers), or as operator requests with fields no request declares: they cost
//! the sender a rejection with a reason and nobody else anything. No jetwork connection
//! drops, no reader stops, no other submission is lost or delayed, and a refused request
//! changes nothing.

use std::time::Duration;

use bytes::Bytes;
use jetwork_shared::jobs::JobState;
use jetwork_shared::schedules::{ScheduleAdd, ScheduleName};
use jetwork_shared::{headers, subjects, QueueName, WorkId, WorkerId};
use jetwork_tests::raw::RawClient;
use jetwork_tests::{call_raw, poll_for, wait_until, Audit, InProcess};
use jetwork_worker::square;

/// Header blocks a client library would refuse to produce; `n` makes their ids unique (JetStream
/// would drop a repeated `Nats-Msg-Id` as a duplicate).
fn bad_header(kind: u32, n: u32) -> Vec<u8> {
    let mut block = b"NATS/1.0\r\n".to_vec();
    match kind % 3 {
        0 => {
            block.extend_from_slice(format!("{}: bad{n}", headers::NATS_MSG_ID).as_bytes());
            block.extend_from_slice(b"\xff\xfe");
        }
        1 => block.extend_from_slice(
            format!("no colon here\r\n{}: nc{n}", headers::NATS_MSG_ID).as_bytes(),
        ),
        _ => block.extend_from_slice(format!("Bad Name: {n}").as_bytes()),
    }
    block.extend_from_slice(b"\r\n\r\n");
    block
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_submissions_between_valid_ones_cost_nothing_also_across_a_takeover(
) -> anyhow::Result<()> {
    let mut run = InProcess::start(|_| {}).await?;
    let _workers = [run.worker("w1", square), run.worker("w2", square)];
    let mut raw = RawClient::connect(&run.server.url()).await?;
    let subject = subjects::submit(&run.queue);
    let mut ids = Vec::new();

    tracing::info!("--- 40 valid submissions with 3 unreadable ones among them");
    for n in 1..=40u32 {
        let id = WorkId::parse(&format!("v{n}"))?;
        run.client.submit(&run.queue, Some(id.clone()), Bytes::from(n.to_string())).await?;
        ids.push(id);
        if n % 13 == 0 {
            raw.hpub(&subject, &bad_header(n / 13, n), b"7").await?;
        }
    }
    run.completed(&ids, Duration::from_secs(60)).await?;
    let js = &run.js;
    wait_until("three rejections", Duration::from_secs(30), || async {
        Audit::read(js).await.is_ok_and(|a| a.rejections == 3)
    })
    .await?;
    let audit = Audit::read(js).await?;
    assert!(
        audit.rejected.values().all(|reason| reason.contains("malformed headers")),
        "{:?}",
        audit.rejected
    );

    tracing::info!("--- while no master runs, more of both are stored; the next leader reads them");
    run.crash_masters();
    for n in 41..=60u32 {
        let id = WorkId::parse(&format!("v{n}"))?;
        run.client.submit(&run.queue, Some(id.clone()), Bytes::from(n.to_string())).await?;
        ids.push(id);
        if n % 10 == 0 {
            raw.hpub(&subject, &bad_header(n / 10, n), b"7").await?;
        }
    }
    let m2 = run.master("m2");
    run.completed(&ids, Duration::from_secs(60)).await?;
    let js = &run.js;
    wait_until("five rejections", Duration::from_secs(30), || async {
        Audit::read(js).await.is_ok_and(|a| a.rejections == 5)
    })
    .await?;

    tracing::info!("--- the submitter finds its rejection by the sequence it was stored at");
    let audit = run.audit().await?;
    let seq = *audit.rejected.keys().next().expect("a rejection");
    let reason = run.client.rejection(&run.queue, seq).await?.expect("stored");
    assert!(reason.contains("unreadable submission"), "{reason}");
    m2.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_messages_on_worker_and_master_subjects_drop_no_connection() -> anyhow::Result<()>
{
    // The proxies only count connections: a dropped connection shows as a second one.
    let run = InProcess::build().through_proxy().start().await?;
    let master_link = run.master_link()?;
    let worker_link = run.proxy().await?;
    let _worker = run.worker_with("w1", |s| s.nats.url = worker_link.url(), square);
    let first = run.submit("before", b"2").await?;
    run.result(&first, Duration::from_secs(30)).await?;
    // The master has three connections (main, requests, intake; see `leader::Env`).
    let master_connections = master_link.connections();

    tracing::info!("--- bad header blocks on every subject a jetwork process listens to");
    let mut raw = RawClient::connect(&run.server.url()).await?;
    for kind in 0..3 {
        let header = bad_header(kind, kind);
        for subject in [
            subjects::MASTER_ELECTED.to_owned(),
            subjects::worker_ready(None, &WorkerId::parse("w1")?),
            subjects::MASTER_REGISTER.to_owned(),
            subjects::MASTER_REQUEST.to_owned(),
            subjects::MASTER_REPORT.to_owned(),
            "jetwork.master.register.w1.w1".to_owned(),
            "jetwork.master.report.w1.w1".to_owned(),
            subjects::MASTER_STATUS.to_owned(),
            subjects::MASTER_JOB.to_owned(),
            subjects::MASTER_JOBS.to_owned(),
            subjects::ADMIN_CANCEL.to_owned(),
            subjects::ADMIN_RETRY.to_owned(),
            subjects::ADMIN_RETRY_ALL.to_owned(),
            subjects::ADMIN_PURGE.to_owned(),
            subjects::ADMIN_PAUSE.to_owned(),
            subjects::ADMIN_RESUME.to_owned(),
        ] {
            raw.hpub(&subject, &header, b"\x00garbage").await?;
        }
    }

    tracing::info!("--- everyone is still connected (on its first connection) and working");
    let after = run.submit("after", b"3").await?;
    let result = run.result(&after, Duration::from_secs(30)).await?;
    assert_eq!(result.payload, Bytes::from_static(b"3 * 3 = 9"));
    assert_eq!(master_connections, 3, "the master's three connections");
    assert_eq!(
        master_link.connections(),
        master_connections,
        "none of the master's connections was dropped"
    );
    assert_eq!(worker_link.connections(), 1, "the worker's connection was never dropped");
    run.audit().await?;
    run.stop().await;
    Ok(())
}

/// Bodies no endpoint of the job lifecycle can read: not JSON, JSON of the wrong shape, every
/// field of the wrong type, and fields far over their limits.
fn unreadable_lifecycle_bodies() -> Vec<Vec<u8>> {
    let long = |c: char, n: usize| c.to_string().repeat(n);
    let mut bodies: Vec<Vec<u8>> = [
        &b""[..],
        b"\x00\xff\xfe garbage",
        b"PUB jetwork.submit.default 1\r\nx\r\n",
        b"HPUB jetwork.admin.cancel 12 14\r\nNATS/1.0\r\n\r\nxx\r\n",
        b"INFO {\"server_id\":\"evil\"}\r\n",
        b"PING\r\n",
        b"[]",
        b"null",
        b"42",
        b"\"order-42\"",
        b"{\"work_id\":\"order-42\"",
        b"{\"work_id\":\"\xff\xfe\",\"queue\":\"\xff\"}",
    ]
    .iter()
    .map(|b| b.to_vec())
    .collect();
    // Every field each request reads, of the wrong type or value.
    bodies.push(br#"{"work_id":7,"queue":{"nested":true},"state":"exploded","limit":-1}"#.to_vec());
    bodies.push(br#"{"work_id":"a b","queue":"a.b.>","state":7,"limit":"all"}"#.to_vec());
    // Far over the limits: a 100 000-character id and queue, a limit beyond any integer.
    let over = format!(
        r#"{{"work_id":"{}","queue":"{}","limit":{}}}"#,
        long('a', 100_000),
        long('q', 100_000),
        long('9', 400)
    );
    bodies.push(over.into_bytes());
    // Nested deeper than any reader goes.
    bodies.push(format!("{}{}", long('[', 50_000), long(']', 50_000)).into_bytes());
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_job_and_admin_subjects_is_refused_with_a_reason() -> anyhow::Result<()> {
    let run = InProcess::start(|_| {}).await?;
    let _worker = run.worker("w1", square);
    let before = run.submit("before", b"2").await?;
    run.result(&before, Duration::from_secs(30)).await?;

    tracing::info!("--- every unreadable body on every job and admin subject: 400 with the reason");
    let nats = run.server.connect().await?;
    for subject in [
        subjects::MASTER_JOB,
        subjects::MASTER_JOBS,
        subjects::ADMIN_CANCEL,
        subjects::ADMIN_RETRY,
        subjects::ADMIN_RETRY_ALL,
        subjects::ADMIN_PURGE,
        subjects::ADMIN_PAUSE,
        subjects::ADMIN_RESUME,
    ] {
        for body in unreadable_lifecycle_bodies() {
            let shown = String::from_utf8_lossy(&body[..body.len().min(40)]).into_owned();
            let reply = call_raw(&nats, subject, body).await?;
            let refusal = reply.expect_err(&format!("{subject} accepted {shown:?}"));
            assert_eq!(refusal.code, 400, "{subject} {shown:?}: {refusal}");
            assert!(refusal.reason.starts_with("bad request: "), "{subject}: {refusal}");
            assert!(refusal.reason.len() > "bad request: ".len() + 10, "{subject}: {refusal}");
            assert!(
                refusal.reason.len() < 4096,
                "{subject}: a reason of {} bytes",
                refusal.reason.len()
            );
        }
    }

    tracing::info!("--- the master still serves: a job runs, and the operator is answered");
    let after = run.submit("after", b"3").await?;
    let result = run.result(&after, Duration::from_secs(30)).await?;
    assert_eq!(result.payload, Bytes::from_static(b"3 * 3 = 9"));
    let info = run.client.job(&after, None).await?;
    assert_eq!(info.work_id, after);
    run.audit().await?;
    run.stop().await;
    Ok(())
}

/// Sends `body` to `subject` and checks it is refused 400 with a reason naming `field`.
async fn refused_naming(
    nats: &async_nats::Client,
    subject: &str,
    body: &str,
    field: &str,
) -> anyhow::Result<()> {
    let refusal = call_raw(nats, subject, body.to_owned()).await?;
    let refusal = refusal.expect_err(&format!("{subject} accepted {body}"));
    assert_eq!(refusal.code, 400, "{subject} {body}: {refusal}");
    assert!(
        refusal.reason.contains(&format!("unknown field `{field}`")),
        "{subject} {body}: {refusal}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_requests_with_an_unknown_field_are_refused_and_change_nothing(
) -> anyhow::Result<()> {
    let run = InProcess::start(|_| {}).await?;
    let within = Duration::from_secs(30);
    run.await_leader("m1", within).await?;
    let nats = run.server.connect().await?;
    let keep = ScheduleName::parse("keep")?;
    let add = |name: &ScheduleName| ScheduleAdd {
        name: name.clone(),
        queue: run.queue.clone(),
        every: Some("1h".to_owned()),
        cron: None,
        payload: String::new(),
    };
    run.client.schedule_add(&add(&keep)).await?;
    let paused = |queue: QueueName| {
        let client = &run.client;
        async move {
            let status = client.status().await?;
            anyhow::Ok(status.queues.iter().any(|q| q.queue == queue && q.paused))
        }
    };

    tracing::info!("--- the reproduced one: a pause with a limit is refused, nothing is paused");
    let limited = r#"{"queue":"default","limit":1e30}"#;
    refused_naming(&nats, subjects::ADMIN_PAUSE, limited, "limit").await?;
    assert!(!paused(run.queue.clone()).await?, "a refused pause paused the queue");

    tracing::info!("--- every other operator request, with one field too many");
    for (subject, body, field) in [
        (
            subjects::ADMIN_RETRY,
            r#"{"work_id":"held-1","queue":"default","attempts":9}"#,
            "attempts",
        ),
        (subjects::ADMIN_RETRY_ALL, r#"{"queue":"default","stat":"cancelled"}"#, "stat"),
        (subjects::ADMIN_SCHEDULE_RM, r#"{"name":"keep","force":true}"#, "force"),
        (
            subjects::ADMIN_SCHEDULE_ADD,
            r#"{"name":"more","queue":"default","every":"1h","payload":"","paused":true}"#,
            "paused",
        ),
        (subjects::MASTER_JOB, r#"{"work_id":"held-1","verbose":true}"#, "verbose"),
        (subjects::MASTER_JOBS, r#"{"queue":"default","limt":5}"#, "limt"),
    ] {
        refused_naming(&nats, subject, body, field).await?;
    }
    let names: Vec<_> =
        run.client.schedules().await?.schedules.into_iter().map(|s| s.name).collect();
    assert_eq!(names, vec![keep.clone()], "the schedules are as they were");

    tracing::info!(
        "--- jobs held by the leader, their queue paused: purge, cancel, resume refused"
    );
    run.client.pause(&run.queue, true).await?;
    let _worker = run.worker("w1", square);
    let mut held = Vec::new();
    for n in 1..=3u32 {
        let id = WorkId::parse(&format!("held-{n}"))?;
        run.client.submit(&run.queue, Some(id.clone()), Bytes::from(n.to_string())).await?;
        held.push(id);
    }
    for id in &held {
        poll_for(&format!("{id} to be ready"), within, || async {
            run.client.job(id, None).await.ok().filter(|info| info.state == JobState::Ready)
        })
        .await?;
    }
    refused_naming(&nats, subjects::ADMIN_PURGE, limited, "limit").await?;
    let forced = r#"{"work_id":"held-1","reason":"no","force":true}"#;
    refused_naming(&nats, subjects::ADMIN_CANCEL, forced, "force").await?;
    let all = r#"{"queue":"default","all":true}"#;
    refused_naming(&nats, subjects::ADMIN_RESUME, all, "all").await?;
    assert!(paused(run.queue.clone()).await?, "a refused resume resumed the queue");
    for id in &held {
        let info = run.client.job(id, None).await?;
        assert_eq!(info.state, JobState::Ready, "{id} after the refused requests: {info:?}");
    }

    tracing::info!("--- resumed as asked properly: every held job runs once and completes");
    run.client.pause(&run.queue, false).await?;
    let audit = run.completed(&held, within).await?;
    for id in &held {
        assert_eq!(audit.attempts(id), vec![1], "{id}");
    }
    run.client.schedule_rm(&keep).await?;
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_submission_carrying_master_only_headers_is_rejected_naming_them(
) -> anyhow::Result<()> {
    let run = InProcess::start(|_| {}).await?;
    let _worker = run.worker("w1", square);
    let subject = subjects::submit(&run.queue);
    let submit = |id: &str, name: &'static str, value: &str| {
        let mut stored = async_nats::HeaderMap::new();
        stored.insert(headers::NATS_MSG_ID, id);
        stored.insert(name, value);
        run.js.publish_with_headers(subject.clone(), stored, Bytes::from_static(b"4"))
    };

    tracing::info!("--- each header only the master sets, readable or not");
    let mut refused = Vec::new();
    for (n, name) in headers::MASTER_ONLY.into_iter().enumerate() {
        for (m, value) in ["2", "many", &"9".repeat(200), "some-id"].into_iter().enumerate() {
            let ack = submit(&format!("claim-{n}-{m}"), name, value).await?.await?;
            refused.push((ack.sequence, name));
        }
    }
    for (seq, name) in refused {
        let what = format!("the rejection of submission {seq}");
        let reason = jetwork_tests::poll_for(&what, Duration::from_secs(30), || async {
            run.client.rejection(&run.queue, seq).await.ok().flatten()
        })
        .await?;
        assert!(reason.contains(name), "{name}: {reason}");
        assert!(reason.contains("set only by the master"), "{name}: {reason}");
    }
    let after = run.submit("after", b"5").await?;
    assert_eq!(run.result(&after, Duration::from_secs(30)).await?.attempt, 1);
    run.audit().await?;
    run.stop().await;
    Ok(())
}
