//! The leader lease against a real nats-server: what a holder does when its view of the key's
//! revision is behind the server's (a renewal landed but its reply was lost in a blip).

use std::time::Duration;

use async_nats::jetstream::kv::Store;
use jetwork_master::lease::Lease;
use jetwork_shared::config::StreamsConfig;
use jetwork_shared::protocol::LeaseHolder;
use jetwork_shared::subjects::LEASE_KEY;
use jetwork_shared::topology;
use jetwork_tests::NatsServer;

const TTL: Duration = Duration::from_secs(10);

/// A fresh server's lease bucket (kept alive with the server) and a lease `m1-test` holds.
async fn held_lease() -> anyhow::Result<(NatsServer, Store, Lease)> {
    let server = NatsServer::start()?;
    let js = async_nats::jetstream::new(server.connect().await?);
    let kv = topology::ensure_lease_bucket(&js, &StreamsConfig::default(), TTL).await?;
    let lease = Lease::try_acquire(&kv, "m1-test", TTL).await?.expect("a free lease");
    Ok((server, kv, lease))
}

/// What a renewal whose reply was lost does: the holder's value written again, at the next
/// revision, without the holder's handle learning of it.
async fn land_a_renewal_unseen(kv: &Store, lease: &Lease) -> anyhow::Result<()> {
    let entry = kv.entry(LEASE_KEY).await?.expect("the lease key");
    let value =
        serde_json::to_vec(&LeaseHolder { holder: "m1-test".into(), epoch: lease.epoch() })?;
    kv.update(LEASE_KEY, value.into(), entry.revision).await?;
    Ok(())
}

/// The field finding: a renewal whose reply was lost had moved the revision, the release's
/// compare-and-set on the old one failed ("wrong last sequence"), and the standbys waited out
/// the whole TTL. The holder now re-reads the key and releases it if it still names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_whose_renewal_reply_was_lost_is_still_released_at_once() -> anyhow::Result<()> {
    let (_server, kv, mut lease) = held_lease().await?;
    land_a_renewal_unseen(&kv, &lease).await?;

    lease.release().await;
    let after = kv.entry(LEASE_KEY).await?;
    assert!(
        after.as_ref().is_none_or(|e| e.operation != async_nats::jetstream::kv::Operation::Put),
        "the lease is still held after its holder released it: {after:?}"
    );
    // And a candidate can take it at once, not a TTL later.
    assert!(Lease::try_acquire(&kv, "m2-test", TTL).await?.is_some(), "the freed lease is taken");
    Ok(())
}

/// Someone else's lease is never released, whatever the old holder believes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_holder_never_releases_the_next_holders_lease() -> anyhow::Result<()> {
    let (_server, kv, mut old) = held_lease().await?;
    // The key expired (or was taken over) and m2 holds it now.
    kv.purge(LEASE_KEY).await?;
    let next = Lease::try_acquire(&kv, "m2-test", TTL).await?.expect("the freed lease");

    old.release().await;
    let entry = kv.entry(LEASE_KEY).await?.expect("m2's lease");
    let holder: LeaseHolder = serde_json::from_slice(&entry.value)?;
    assert_eq!(holder.holder, "m2-test", "the old holder released someone else's lease");
    assert_eq!(holder.epoch, next.epoch());
    Ok(())
}

/// A renewal whose reply was lost still renewed the lease on the server: the next renewal,
/// refused for its old revision, finds the key naming its holder at a newer revision and
/// counts that as renewed (from when the lost one was sent), instead of letting the lease
/// run out while the link is healthy again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_whose_reply_was_lost_counts_as_renewed() -> anyhow::Result<()> {
    let (_server, kv, mut lease) = held_lease().await?;
    land_a_renewal_unseen(&kv, &lease).await?;

    lease.renew().await.map_err(|e| anyhow::anyhow!("the renewal was not counted: {e}"))?;
    // And the next one goes through at the adopted revision.
    lease.renew().await.map_err(|e| anyhow::anyhow!("the next renewal failed: {e}"))?;
    Ok(())
}
