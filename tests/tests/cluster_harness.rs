//! The cluster harness itself ([`NatsCluster`]): three real nodes form a JetStream cluster,
//! a stream's leadership can be moved off a node, a replicated stream survives its leader's `kill -9` (a new leader is elected and the
//! stored messages are still there), the node rejoins on its old ports after a restart, and
//! a frozen node is seen as such by a client connected to it alone.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use jetwork_tests::{init_logging, wait_until, NatsCluster};

const STREAM: &str = "HARNESS";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_stream_elects_a_new_leader_when_its_leader_is_killed() -> anyhow::Result<()> {
    init_logging();
    let mut cluster = NatsCluster::start(3).await?;
    assert_eq!(cluster.urls().split(',').count(), 3);
    let js = jetstream::new(cluster.connect().await?);
    js.create_stream(stream::Config {
        name: STREAM.to_owned(),
        subjects: vec!["harness.>".to_owned()],
        num_replicas: 3,
        ..Default::default()
    })
    .await?;
    for n in 0..10 {
        js.publish("harness.x", n.to_string().into()).await?.await?;
    }
    let leader = cluster.await_stream_leader(&js, STREAM, Duration::from_secs(10)).await?;
    let info = js.get_stream(STREAM).await?.info().await?.clone();
    let replicas = info.cluster.as_ref().map_or(0, |c| c.replicas.len());
    assert_eq!(replicas, 2, "a leader and two replicas: {:?}", info.cluster);

    // A leader can be moved off a node (tests fault one node without its streams' leaders).
    let elsewhere = cluster.move_leader_off(&js, STREAM, leader).await?;
    assert_ne!(elsewhere, leader);
    assert_eq!(cluster.await_stream_leader(&js, STREAM, Duration::from_secs(10)).await?, elsewhere);
    let leader = elsewhere;

    let meta = cluster.meta_leader();
    assert!(meta.is_some(), "the nodes log the metadata leader");

    let old_port = cluster.url(leader);
    cluster.kill9(leader);
    assert!(!cluster.is_running(leader));
    // The client fails over to a live node; the two others elect a leader among themselves.
    let new_leader = cluster.await_stream_leader(&js, STREAM, Duration::from_secs(30)).await?;
    assert_ne!(new_leader, leader, "the dead node cannot lead");
    js.publish("harness.x", "after".into()).await?.await?;
    if meta == Some(leader) {
        wait_until("a new metadata leader", Duration::from_secs(30), || {
            let now = cluster.meta_leader();
            async move { now.is_some_and(|m| m != leader) }
        })
        .await?;
    }
    let state = js.get_stream(STREAM).await?.info().await?.state.clone();
    assert_eq!(state.messages, 11, "nothing acknowledged was lost");

    cluster.restart(leader).await?;
    assert_eq!(cluster.url(leader), old_port, "a restarted node keeps its client port");
    let direct = jetstream::new(cluster.connect_to(leader).await?);
    wait_until("the restarted node to catch up", Duration::from_secs(30), || async {
        let Ok(mut stream) = direct.get_stream(STREAM).await else { return false };
        let Ok(info) = stream.info().await else { return false };
        info.cluster.as_ref().is_some_and(|c| c.replicas.iter().all(|r| r.current && !r.offline))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_node_answers_nothing_until_resumed() -> anyhow::Result<()> {
    init_logging();
    let cluster = NatsCluster::start(3).await?;
    let direct = cluster.connect_to(1).await?;
    direct.flush().await?;
    cluster.freeze(1).await?;
    let request = async_nats::Request::new().timeout(Some(Duration::from_millis(500)));
    // A stopped server reads nothing: the request to its account info gets no answer.
    let frozen = direct.send_request("$JS.API.INFO", request).await;
    assert!(frozen.is_err(), "a frozen node answered: {frozen:?}");
    // The other nodes keep the JetStream cluster going.
    let js = jetstream::new(cluster.connect_to(0).await?);
    wait_until("JetStream through a live node", Duration::from_secs(30), || async {
        js.query_account().await.is_ok()
    })
    .await?;
    cluster.resume(1)?;
    wait_until("the resumed node to answer", Duration::from_secs(30), || async {
        let request = async_nats::Request::new().timeout(Some(Duration::from_secs(1)));
        direct.send_request("$JS.API.INFO", request).await.is_ok()
    })
    .await?;
    Ok(())
}
