//! Messages no well-behaved client would send, written as raw protocol bytes: they cost the
//! sender a rejection with a reason and nobody else anything. No jetwork connection drops, no
//! reader stops, no other submission is lost or delayed.

use std::time::Duration;

use bytes::Bytes;
use jetwork_shared::{headers, subjects, WorkId, WorkerId};
use jetwork_tests::raw::RawClient;
use jetwork_tests::{wait_until, Audit, InProcess};
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

    tracing::info!("--- bad header blocks on every subject a jetwork process listens to");
    let mut raw = RawClient::connect(&run.server.url()).await?;
    for kind in 0..3 {
        let header = bad_header(kind, kind);
        for subject in [
            subjects::MASTER_ELECTED.to_owned(),
            subjects::worker_ready(&WorkerId::parse("w1")?),
            subjects::MASTER_REGISTER.to_owned(),
            subjects::MASTER_REQUEST.to_owned(),
            subjects::MASTER_REPORT.to_owned(),
            subjects::MASTER_STATUS.to_owned(),
        ] {
            raw.hpub(&subject, &header, b"\x00garbage").await?;
        }
    }

    tracing::info!("--- everyone is still connected (on its first connection) and working");
    let after = run.submit("after", b"3").await?;
    let result = run.result(&after, Duration::from_secs(30)).await?;
    assert_eq!(result.payload, Bytes::from_static(b"3 * 3 = 9"));
    assert_eq!(master_link.connections(), 1, "the master's connection was never dropped");
    assert_eq!(worker_link.connections(), 1, "the worker's connection was never dropped");
    run.audit().await?;
    run.stop().await;
    Ok(())
}
