//! The master's outcome acknowledgements (`master/src/publisher/acks.rs`) against a real
//! nats-server: what the stream answers is read as the stream meant it (stored, refused by the
//! fence, no stream at all, silence), and an answer that arrived while the leader's loop was
//! busy for longer than the timeout still counts.

use std::time::Duration;

use async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE;
use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use jetwork_master::publisher::acks::{AckError, Acks, Answer};
use jetwork_tests::NatsServer;

const TIMEOUT: Duration = Duration::from_millis(500);
/// Longest a test waits for one answer.
const WITHIN: Duration = Duration::from_secs(10);

/// A fresh server with a stream on `out.>`, and a client of it.
async fn server() -> anyhow::Result<(NatsServer, async_nats::Client)> {
    let server = NatsServer::start()?;
    let client = server.connect().await?;
    let js = jetstream::new(client.clone());
    js.create_stream(stream::Config {
        name: "OUT".to_owned(),
        subjects: vec!["out.>".to_owned()],
        max_bytes: 16 << 20,
        ..Default::default()
    })
    .await?;
    Ok((server, client))
}

/// Headers fencing a publication on a subject that holds nothing yet.
fn fence() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, "0");
    headers
}

/// Publishes on `subject` with the fence for an empty subject, waiting for its answer as `entry`.
async fn send(acks: &mut Acks<u32>, subject: &str, entry: u32) -> anyhow::Result<()> {
    let id = acks.publish(subject.to_owned().into(), fence(), Bytes::from_static(b"36")).await?;
    acks.track(id, entry);
    Ok(())
}

async fn next(acks: &mut Acks<u32>) -> anyhow::Result<(u32, Answer)> {
    Ok(tokio::time::timeout(WITHIN, acks.next()).await?)
}

/// The review finding: the loop that asks for answers can be busy longer than the timeout (a
/// snapshot, a slow journal write). Answers already received then counted as timed out, and
/// every publication in flight was sent the long way again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_arrived_while_nobody_asked_count_even_past_the_timeout() -> anyhow::Result<()>
{
    let (_server, client) = server().await?;
    let mut acks = Acks::new(client.clone(), TIMEOUT);
    for (entry, subject) in ["out.a", "out.b", "out.c"].into_iter().enumerate() {
        send(&mut acks, subject, entry as u32).await?;
    }
    client.flush().await?;
    // The loop busy elsewhere: time passing is the point, not a condition.
    tokio::time::sleep(TIMEOUT * 3).await;
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(next(&mut acks).await?);
    }
    answers.sort_by_key(|(entry, _)| *entry);
    assert_eq!(
        answers,
        vec![(0, Answer::Stored), (1, Answer::Stored), (2, Answer::Stored)],
        "answered after a stall"
    );
    assert!(acks.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_fence_no_stream_and_silence_are_told_apart() -> anyhow::Result<()> {
    let (_server, client) = server().await?;
    let mut acks = Acks::new(client.clone(), TIMEOUT);

    send(&mut acks, "out.once", 1).await?;
    assert_eq!(next(&mut acks).await?, (1, Answer::Stored));
    // The subject holds a message now: a second copy with the same fence is refused.
    send(&mut acks, "out.once", 2).await?;
    assert_eq!(next(&mut acks).await?, (2, Answer::WrongLastSequence));

    // No stream captures the subject: the server says so at once.
    send(&mut acks, "elsewhere.x", 3).await?;
    assert_eq!(next(&mut acks).await?, (3, Answer::Failed(AckError::NoResponders)));

    // Something listens but never answers: the wait ends after the timeout.
    let mut silent = client.subscribe("silent.>").await?;
    client.flush().await?;
    send(&mut acks, "silent.x", 4).await?;
    let started = tokio::time::Instant::now();
    assert_eq!(next(&mut acks).await?, (4, Answer::Failed(AckError::TimedOut(TIMEOUT))));
    assert!(started.elapsed() >= TIMEOUT - Duration::from_millis(50));
    let heard = tokio::time::timeout(WITHIN, silent.next()).await?.expect("the message");
    let reply = heard.reply.expect("a reply subject").to_string();
    // The id in the reply subject is not a counter a forger could follow.
    let id = reply.rsplit('.').next().unwrap_or_default().parse::<u64>()?;
    assert!(id > 1_000_000, "reply subject {reply}");
    assert!(acks.is_empty());
    Ok(())
}
