//! The patched client library keeps the count a pull ends with (`Batch::unfilled`, see
//! `vendor/async-nats/JETWORK-PATCH.md`): what the master's queue readers rely on to tell that a
//! pull which ended short lost nothing, without asking the consumer. Against a real server: the
//! count is exactly what the server left unsent, and it is absent until the pull has ended.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, stream};
use futures::StreamExt;
use jetwork_tests::NatsServer;

#[tokio::test]
async fn a_pull_that_expires_short_says_how_many_it_left_unsent() -> anyhow::Result<()> {
    let server = NatsServer::start()?;
    let client = async_nats::connect(server.url()).await?;
    let js = jetstream::new(client);
    let stream = js
        .create_stream(stream::Config {
            name: "PULLS".into(),
            subjects: vec!["pulls.>".into()],
            ..Default::default()
        })
        .await?;
    for n in 0..3 {
        js.publish(format!("pulls.{n}"), "x".into()).await?.await?;
    }
    let consumer = stream
        .create_consumer(pull::Config { ack_policy: AckPolicy::None, ..Default::default() })
        .await?;

    // Ten asked for, three stored: three arrive, and the server leaves seven unsent.
    let mut batch =
        consumer.batch().max_messages(10).expires(Duration::from_millis(300)).messages().await?;
    assert_eq!(batch.unfilled(), None, "no count before the pull has ended");
    let mut arrived = 0;
    while let Some(message) = batch.next().await {
        message.map_err(|e| anyhow::anyhow!("{e}"))?;
        arrived += 1;
    }
    assert_eq!(arrived, 3);
    assert_eq!(batch.unfilled(), Some(7));

    // A pull that finds nothing at all leaves everything unsent.
    let mut empty =
        consumer.batch().max_messages(5).expires(Duration::from_millis(300)).messages().await?;
    assert!(empty.next().await.is_none());
    assert_eq!(empty.unfilled(), Some(5));

    // A pull that is filled ends without the status: no count (and none is needed).
    for n in 3..5 {
        js.publish(format!("pulls.{n}"), "x".into()).await?.await?;
    }
    let mut full =
        consumer.batch().max_messages(2).expires(Duration::from_secs(5)).messages().await?;
    let mut arrived = 0;
    while let Some(message) = full.next().await {
        message.map_err(|e| anyhow::anyhow!("{e}"))?;
        arrived += 1;
    }
    assert_eq!(arrived, 2);
    assert_eq!(full.unfilled(), None);
    Ok(())
}
