//! Submitting work: durability before any master exists, deduplication, the raw-NATS contract
//! (`nats req jetwork.submit.<queue>` with or without `Nats-Msg-Id`), and bad submissions.

use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use jetwork_frontend::ClientError;
use jetwork_shared::{headers, subjects, WorkId};
use jetwork_tests::{wait_until, Audit, InProcess};
use jetwork_worker::square;

/// A scenario whose master starts later in the test.
async fn without_masters() -> anyhow::Result<InProcess> {
    InProcess::build().masters(&[]).start().await
}

fn ids(range: std::ops::RangeInclusive<u32>, prefix: &str) -> Vec<WorkId> {
    range.map(|n| WorkId::parse(&format!("{prefix}{n}")).expect("valid id")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_while_no_master_runs_are_kept_and_run_later() -> anyhow::Result<()> {
    let run = without_masters().await?;
    let (client, queue) = (&run.client, &run.queue);

    tracing::info!("--- 50 submissions with no master and no worker: all acknowledged");
    let expected = ids(1..=50, "early-");
    for (n, id) in expected.iter().enumerate() {
        let submitted = client.submit(queue, Some(id.clone()), Bytes::from(n.to_string())).await?;
        assert!(!submitted.duplicate);
    }

    tracing::info!("--- a worker starts before any master; then the master");
    let _worker = run.worker("w1", square);
    let master = run.master("m1");

    run.completed(&expected, Duration::from_secs(60)).await?;
    master.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_submissions_are_acknowledged_and_run_once() -> anyhow::Result<()> {
    let run = without_masters().await?;
    let (client, queue) = (&run.client, &run.queue);
    let id = WorkId::parse("order-42")?;

    tracing::info!("--- the same id ten times, five of them concurrently");
    let first = client.submit(queue, Some(id.clone()), Bytes::from_static(b"6")).await?;
    assert!(!first.duplicate);
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let (client, queue, id) = (client.clone(), queue.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            client.submit(&queue, Some(id), Bytes::from_static(b"6")).await
        }));
    }
    for task in tasks {
        let again = task.await??;
        assert!(again.duplicate, "a re-submission must be reported as a duplicate");
        assert_eq!(again.seq, first.seq, "and point at the stored original");
    }

    let master = run.master("m1");
    let _worker = run.worker("w1", square);
    let result = run.result(&id, Duration::from_secs(30)).await?;
    assert_eq!(result.payload, Bytes::from_static(b"6 * 6 = 36"));

    tracing::info!("--- after completion, within the dedup horizon: acknowledged, not run again");
    for _ in 0..4 {
        assert!(client.submit(queue, Some(id.clone()), Bytes::from_static(b"6")).await?.duplicate);
    }
    // One more unrelated item proves the master has consumed everything behind the duplicates.
    let marker = run.submit("marker", b"1").await?;
    run.result(&marker, Duration::from_secs(30)).await?;

    let audit = run.audit().await?;
    assert_eq!(audit.attempts(&id), vec![1], "order-42 ran exactly once");
    assert_eq!(audit.results[&id].len(), 1);
    master.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_nats_requests_submit_work() -> anyhow::Result<()> {
    let run = without_masters().await?; // its client creates the streams
    let master = run.master("m1");
    let _worker = run.worker("w1", square);
    let nats = run.server.connect().await?;
    let queue = &run.queue;

    tracing::info!("--- `nats req jetwork.submit.default 12`: the work id is seq-<seq>");
    let reply = nats.request(subjects::submit(queue), Bytes::from_static(b"12")).await?;
    let ack: serde_json::Value = serde_json::from_slice(&reply.payload)?;
    assert_eq!(ack["stream"], subjects::SUBMIT_STREAM, "{ack}");
    let seq = ack["seq"].as_u64().expect("seq in the ack");
    let assigned = WorkId::assigned(seq);
    let result = run.result(&assigned, Duration::from_secs(30)).await?;
    assert_eq!(result.payload, Bytes::from_static(b"12 * 12 = 144"));

    tracing::info!("--- `nats req -H Nats-Msg-Id:mine jetwork.submit.default 3`, twice");
    let mut hdrs = HeaderMap::new();
    hdrs.insert(headers::NATS_MSG_ID, "mine");
    for expect_duplicate in [false, true] {
        let reply = nats
            .request_with_headers(subjects::submit(queue), hdrs.clone(), Bytes::from_static(b"3"))
            .await?;
        let ack: serde_json::Value = serde_json::from_slice(&reply.payload)?;
        assert_eq!(
            ack.get("duplicate").and_then(|d| d.as_bool()).unwrap_or(false),
            expect_duplicate,
            "{ack}"
        );
    }
    let mine = WorkId::parse("mine")?;
    let result = run.result(&mine, Duration::from_secs(30)).await?;
    assert_eq!(result.payload, Bytes::from_static(b"3 * 3 = 9"));
    assert_eq!(result.attempt, 1);
    let audit = run.audit().await?;
    assert_eq!(audit.attempts(&mine), vec![1], "the duplicate request did not queue it twice");
    master.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_submissions_get_a_reason_and_lose_nothing() -> anyhow::Result<()> {
    let run = InProcess::start(|fast| {
        fast.master.streams.max_payload = 1024;
        fast.frontend.streams.max_payload = 1024;
        fast.worker.streams.max_payload = 1024;
    })
    .await?;
    let _worker = run.worker("w1", square);
    let (client, queue, js) = (&run.client, &run.queue, &run.js);
    let nats = run.server.connect().await?;
    wait_until("the master to configure the streams", Duration::from_secs(20), || async {
        let info = run.stream_info(subjects::SUBMIT_STREAM).await;
        info.is_some_and(|i| i.config.max_message_size == 1024)
    })
    .await?;

    tracing::info!("--- an oversized payload: JetStream answers with an error, nothing is stored");
    let reply = nats.request(subjects::submit(queue), Bytes::from(vec![b'x'; 4096])).await?;
    let text = String::from_utf8_lossy(&reply.payload).to_string();
    assert!(text.contains("error") && text.contains("size"), "{text}");
    let refused = client.submit(queue, None, Bytes::from(vec![b'x'; 4096])).await;
    assert!(matches!(refused, Err(ClientError::Refused { .. })), "{refused:?}");

    tracing::info!(
        "--- invalid Nats-Msg-Id values: stored, then rejected with a reason, payload kept"
    );
    for (bad, payload) in
        [("has.dot", "a"), ("has space", "b"), ("seq-1", "c"), (&*"x".repeat(129), "d")]
    {
        let mut hdrs = HeaderMap::new();
        hdrs.insert(headers::NATS_MSG_ID, bad);
        let reply =
            nats.request_with_headers(subjects::submit(queue), hdrs, Bytes::from(payload)).await?;
        assert!(String::from_utf8_lossy(&reply.payload).contains("seq"), "stored");
    }
    wait_until("four rejections", Duration::from_secs(30), || async {
        Audit::read(js).await.map(|a| a.rejections == 4).unwrap_or(false)
    })
    .await?;
    let rejected = jetwork_tests::audit::read_stream(js, subjects::RESULTS_STREAM).await?;
    let in_queue = subjects::rejected_prefix(queue);
    let reasons: Vec<String> = rejected
        .iter()
        .filter(|(_, subject, _, _)| subject.starts_with(&in_queue))
        .map(|(_, _, h, payload)| {
            let reason = h
                .as_ref()
                .and_then(|h| h.get(headers::REASON))
                .map(|v| v.to_string())
                .unwrap_or_default();
            format!("{} <- {}", reason, String::from_utf8_lossy(payload))
        })
        .collect();
    assert!(reasons.iter().any(|r| r.contains("'.'") && r.ends_with("<- a")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("' '") && r.ends_with("<- b")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("reserved") && r.ends_with("<- c")), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("129 characters") && r.ends_with("<- d")),
        "{reasons:?}"
    );

    tracing::info!("--- a payload the executor cannot use fails at once, with the reason");
    let id = run.submit("not-a-number", b"seven").await?;
    let result = run.result(&id, Duration::from_secs(60)).await?;
    assert_eq!(result.status, jetwork_frontend::ResultStatus::Failed);
    assert!(result.reason.unwrap_or_default().contains("not an integer"));
    assert_eq!(result.attempt, 1, "a permanent failure is not attempted again");

    tracing::info!("--- and the system still works");
    let ok = run.submit("after-garbage", b"4").await?;
    assert_eq!(
        run.result(&ok, Duration::from_secs(30)).await?.payload,
        Bytes::from_static(b"4 * 4 = 16")
    );
    run.audit().await?;
    run.stop().await;
    Ok(())
}
