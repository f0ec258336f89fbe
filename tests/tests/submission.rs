//! Submitting work: durability before any master exists, deduplication, the raw-NATS contract
//! (`nats req jetwork.submit.<queue>` with or without `Nats-Msg-Id`), and bad submissions.

use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use jetwork_frontend::{Client, ClientError};
use jetwork_shared::{connect, headers, subjects, QueueName, WorkId};
use jetwork_tests::inproc::{spawn_master, spawn_worker};
use jetwork_tests::{fast_settings, init_logging, wait_until, Audit, NatsServer};
use jetwork_worker::square;

fn ids(range: std::ops::RangeInclusive<u32>, prefix: &str) -> Vec<WorkId> {
    range.map(|n| WorkId::parse(&format!("{prefix}{n}")).expect("valid id")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_while_no_master_runs_are_kept_and_run_later() -> anyhow::Result<()> {
    init_logging();
    let server = NatsServer::start()?;
    let fast = fast_settings(&server.url());
    let client = Client::connect(fast.frontend.clone()).await?;
    let queue = QueueName::default_queue();

    tracing::info!("--- 50 submissions with no master and no worker: all acknowledged");
    let expected = ids(1..=50, "early-");
    for (n, id) in expected.iter().enumerate() {
        let submitted = client.submit(&queue, Some(id.clone()), Bytes::from(n.to_string())).await?;
        assert!(!submitted.duplicate);
    }

    tracing::info!("--- a worker starts before any master; then the master");
    let _worker = spawn_worker("w1", fast.worker.clone(), square);
    let master = spawn_master("m1", fast.master.clone());

    let js = connect::jetstream(client.nats(), &fast.frontend.nats);
    Audit::await_completed(&js, &expected, Duration::from_secs(60)).await?;
    master.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_submissions_are_acknowledged_and_run_once() -> anyhow::Result<()> {
    init_logging();
    let server = NatsServer::start()?;
    let fast = fast_settings(&server.url());
    let client = Client::connect(fast.frontend.clone()).await?;
    let queue = QueueName::default_queue();
    let id = WorkId::parse("order-42")?;

    tracing::info!("--- the same id ten times, five of them concurrently");
    let first = client.submit(&queue, Some(id.clone()), Bytes::from_static(b"6")).await?;
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

    let master = spawn_master("m1", fast.master.clone());
    let _worker = spawn_worker("w1", fast.worker.clone(), square);
    let result = client.wait_result(&queue, &id, Duration::from_secs(30)).await?;
    assert_eq!(result.payload, Bytes::from_static(b"6 * 6 = 36"));

    tracing::info!("--- after completion, within the dedup horizon: acknowledged, not run again");
    for _ in 0..4 {
        assert!(client.submit(&queue, Some(id.clone()), Bytes::from_static(b"6")).await?.duplicate);
    }
    // One more unrelated item proves the master has consumed everything behind the duplicates.
    let marker = WorkId::parse("marker")?;
    client.submit(&queue, Some(marker.clone()), Bytes::from_static(b"1")).await?;
    client.wait_result(&queue, &marker, Duration::from_secs(30)).await?;

    let js = connect::jetstream(client.nats(), &fast.frontend.nats);
    let audit = Audit::read(&js).await?;
    audit.check()?;
    assert_eq!(audit.attempts(&id), vec![1], "order-42 ran exactly once");
    assert_eq!(audit.results[&id].len(), 1);
    master.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_nats_requests_submit_work() -> anyhow::Result<()> {
    init_logging();
    let server = NatsServer::start()?;
    let fast = fast_settings(&server.url());
    let client = Client::connect(fast.frontend.clone()).await?; // creates the streams
    let master = spawn_master("m1", fast.master.clone());
    let _worker = spawn_worker("w1", fast.worker.clone(), square);
    let nats = server.connect().await?;
    let queue = QueueName::default_queue();

    tracing::info!("--- `nats req jetwork.submit.default 12`: the work id is seq-<seq>");
    let reply = nats.request(subjects::submit(&queue), Bytes::from_static(b"12")).await?;
    let ack: serde_json::Value = serde_json::from_slice(&reply.payload)?;
    assert_eq!(ack["stream"], subjects::SUBMIT_STREAM, "{ack}");
    let seq = ack["seq"].as_u64().expect("seq in the ack");
    let assigned = WorkId::assigned(seq);
    let result = client.wait_result(&queue, &assigned, Duration::from_secs(30)).await?;
    assert_eq!(result.payload, Bytes::from_static(b"12 * 12 = 144"));

    tracing::info!("--- `nats req -H Nats-Msg-Id:mine jetwork.submit.default 3`, twice");
    let mut hdrs = HeaderMap::new();
    hdrs.insert(headers::NATS_MSG_ID, "mine");
    for expect_duplicate in [false, true] {
        let reply = nats
            .request_with_headers(subjects::submit(&queue), hdrs.clone(), Bytes::from_static(b"3"))
            .await?;
        let ack: serde_json::Value = serde_json::from_slice(&reply.payload)?;
        assert_eq!(
            ack.get("duplicate").and_then(|d| d.as_bool()).unwrap_or(false),
            expect_duplicate,
            "{ack}"
        );
    }
    let mine = WorkId::parse("mine")?;
    let result = client.wait_result(&queue, &mine, Duration::from_secs(30)).await?;
    assert_eq!(result.payload, Bytes::from_static(b"3 * 3 = 9"));
    assert_eq!(result.attempt, 1);
    let js = connect::jetstream(&nats, &fast.frontend.nats);
    let audit = Audit::read(&js).await?;
    audit.check()?;
    assert_eq!(audit.attempts(&mine), vec![1], "the duplicate request did not queue it twice");
    master.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_submissions_get_a_reason_and_lose_nothing() -> anyhow::Result<()> {
    init_logging();
    let server = NatsServer::start()?;
    let mut fast = fast_settings(&server.url());
    fast.master.streams.max_payload = 1024;
    fast.frontend.streams.max_payload = 1024;
    fast.worker.streams.max_payload = 1024;
    let master = spawn_master("m1", fast.master.clone());
    let _worker = spawn_worker("w1", fast.worker.clone(), square);
    let client = Client::connect(fast.frontend.clone()).await?;
    let nats = server.connect().await?;
    let queue = QueueName::default_queue();
    let js = connect::jetstream(&nats, &fast.frontend.nats);
    wait_until("the master to configure the streams", Duration::from_secs(20), || async {
        match js.get_stream(subjects::SUBMIT_STREAM).await {
            Ok(stream) => stream.cached_info().config.max_message_size == 1024,
            Err(_) => false,
        }
    })
    .await?;

    tracing::info!("--- an oversized payload: JetStream answers with an error, nothing is stored");
    let reply = nats.request(subjects::submit(&queue), Bytes::from(vec![b'x'; 4096])).await?;
    let text = String::from_utf8_lossy(&reply.payload).to_string();
    assert!(text.contains("error") && text.contains("size"), "{text}");
    let refused = client.submit(&queue, None, Bytes::from(vec![b'x'; 4096])).await;
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
            nats.request_with_headers(subjects::submit(&queue), hdrs, Bytes::from(payload)).await?;
        assert!(String::from_utf8_lossy(&reply.payload).contains("seq"), "stored");
    }
    wait_until("four rejections", Duration::from_secs(30), || async {
        Audit::read(&js).await.map(|a| a.rejections == 4).unwrap_or(false)
    })
    .await?;
    let rejected = jetwork_tests::audit::read_stream(&js, subjects::RESULTS_STREAM).await?;
    let reasons: Vec<String> = rejected
        .iter()
        .filter(|(_, subject, _, _)| subject.starts_with("jetwork.rejected.default."))
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

    tracing::info!("--- a payload the executor cannot use fails with the executor's reason");
    let id = WorkId::parse("not-a-number")?;
    client.submit(&queue, Some(id.clone()), Bytes::from_static(b"seven")).await?;
    let result = client.wait_result(&queue, &id, Duration::from_secs(60)).await?;
    assert_eq!(result.status, jetwork_frontend::ResultStatus::Failed);
    assert!(result.reason.unwrap_or_default().contains("not an integer"));
    assert_eq!(result.attempt, fast.master.master.max_attempts);

    tracing::info!("--- and the system still works");
    let ok = WorkId::parse("after-garbage")?;
    client.submit(&queue, Some(ok.clone()), Bytes::from_static(b"4")).await?;
    assert_eq!(
        client.wait_result(&queue, &ok, Duration::from_secs(30)).await?.payload,
        Bytes::from_static(b"4 * 4 = 16")
    );
    Audit::read(&js).await?.check()?;
    master.stop().await;
    Ok(())
}
