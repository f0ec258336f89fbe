//! jetwork's master: any number of candidates run; the one holding the lease leads.
//!
//! Layout: [`core`] is the pure decision engine; [`leader`] is the I/O loop that drives it
//! while this process leads; [`journal`], [`lease`], [`intake`], [`scout`], [`publisher`] and
//! [`housekeeping`] are the resources that loop uses; [`run`] is the candidate loop that
//! campaigns for the lease, replays the journal and leads, over and over until shut down.
//! [`metrics`] and the shared `observe` listener show what it does (`master.metrics_listen`).

pub mod backlog;
pub mod config;
pub mod core;
pub mod error;
pub mod housekeeping;
pub mod intake;
pub mod integrity;
pub mod jobs;
pub mod journal;
pub mod leader;
pub mod lease;
pub mod metrics;
pub mod payloads;
pub mod publisher;
pub mod readiness;
pub mod scout;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use jetwork_shared::observe::{self, Health, ObserveServer};
use jetwork_shared::{connect, subjects, topology};
use tokio::net::TcpListener;

pub use config::MasterSettings;
pub use error::{Error, Result};
use intake::IntakeConnection;
use jetwork_shared::backoff::Backoff;
use journal::ReplayError;
use metrics::MasterMetrics;
use readiness::Readiness;

/// How often a candidate tries again a journal it refused to lead from.
const BROKEN_RETRY: Duration = Duration::from_secs(10);
/// The main connection's name unless `nats.name` says otherwise (the others add their role).
const CONNECTION_NAME: &str = "jetwork-master";
/// Messages each subscription of the requests connection (each endpoint, the priority notices)
/// holds before the client library drops the excess, at least: anyone may flood those subjects.
/// See [`request_backlog`].
const MIN_REQUEST_BACKLOG: usize = 8192;

/// How many messages each subscription of the requests connection holds: twice
/// `master.max_workers`, at least [`MIN_REQUEST_BACKLOG`]. Honest traffic never comes near it:
/// a worker has at most one call to an endpoint outstanding (the libraries send a report or a
/// request, wait for its answer, then the next), and one re-sent after a timeout. Less would
/// drop honest calls when every worker answers at once: 10,000 workers granted work in one
/// burst report it in one burst, and the 8,192 this was once fixed at dropped a thousand reports
/// of issue 24's workers phase, each worker then waiting out its request timeout.
fn request_backlog(max_workers: u32) -> usize {
    usize::try_from(max_workers).unwrap_or(usize::MAX).saturating_mul(2).max(MIN_REQUEST_BACKLOG)
}
use leader::{Env, Exit};

/// Runs a master candidate until `shutdown` resolves: stand by, win the lease, replay the
/// journal, lead; on losing the lease, stand by again. A leader that is shut down hands over
/// at once by releasing the lease. With `master.metrics_listen` set, serves `/metrics`,
/// `/healthz` and `/readyz` there.
pub async fn run(settings: MasterSettings, shutdown: impl Future<Output = ()>) -> Result<()> {
    let listener = match settings.master.metrics_listen {
        Some(addr) => {
            Some(observe::bind(addr).await.map_err(|source| Error::Listen { addr, source })?)
        }
        None => None,
    };
    run_with_listener(settings, listener, shutdown).await
}

/// [`run`], serving metrics and probes on `listener` (already bound: a caller that asks for
/// port 0 learns the port from it) instead of `master.metrics_listen`; none when `None`.
///
/// A master whose NATS user is refused what it cannot run without (its reply inbox, its
/// endpoints, the journal, the lease, the outcomes: [`essentials`]) stops with
/// [`Error::Denied`] naming the permission, instead of running on without answers.
pub async fn run_with_listener(
    settings: MasterSettings,
    listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let denials = connect::Denials::default();
    let essentials = essentials(&settings.nats.inbox());
    tokio::select! {
        ran = run_reporting(settings, listener, shutdown, &denials) => ran,
        denied = denials.refused(&essentials) => {
            tracing::error!(error = %denied, "NATS refuses this master what it cannot run without; stopping");
            Err(Error::Denied(denied))
        }
    }
}

/// What a master cannot run without: replies on `inbox_prefix`, its endpoints (workers',
/// clients', operators'), and writing the journal, the lease and the outcomes. Everything
/// else it is refused (creating a consumer, storing its own submissions) it works around or
/// retries, saying so.
pub fn essentials(inbox_prefix: &str) -> connect::Essentials {
    connect::Essentials::inbox(inbox_prefix)
        .subscribe("jetwork.master.")
        .subscribe("jetwork.admin.")
        .publish("jetwork.journal.")
        .publish("jetwork.outcomes.")
        .publish("$KV.jetwork-lease.")
}

async fn run_reporting(
    settings: MasterSettings,
    listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
    denials: &connect::Denials,
) -> Result<()> {
    let health = Health::new();
    let (metrics, _server) = match listener {
        Some(listener) => {
            let (metrics, registry) = MasterMetrics::new();
            let max = settings.master.http_max_connections;
            let server = ObserveServer::spawn(listener, Arc::new(registry), health.clone(), max);
            (Some(metrics), Some(server))
        }
        None => (None, None),
    };
    let readiness = Readiness::new(health.clone());
    tokio::pin!(shutdown);
    readiness.phase(false, "connecting to NATS");
    // Connecting waits for a server that is not up yet: a shutdown meanwhile ends it. Three
    // connections (see `leader::Env`): what anyone may send to the master arrives on one of
    // its own, so a flood there can slow or cut only that one, never the journal and the
    // lease on the main connection nor the queue readers on intake's.
    let connected = async {
        let client = connect::connect_reporting(&settings.nats, CONNECTION_NAME, denials).await?;
        let requests_nats = connect::for_role(&settings.nats, CONNECTION_NAME, "requests");
        let backlog = request_backlog(settings.master.max_workers);
        let requests =
            connect::connect_bounded(&requests_nats, CONNECTION_NAME, backlog, denials).await?;
        let intake = IntakeConnection::connect(&settings.nats, CONNECTION_NAME, denials).await?;
        Ok::<_, connect::ConnectError>((client, requests, intake))
    };
    let (client, requests, intake) = tokio::select! {
        _ = &mut shutdown => return Ok(()),
        connected = connected => connected.map_err(jetwork_shared::Error::from)?,
    };
    health.connected(&client);
    readiness.phase(false, "setting up the streams and the lease bucket");
    let js = connect::jetstream(&client, &settings.nats);
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
    let kv = loop {
        let ready = async {
            topology::ensure_streams(&js, &settings.streams, topology::EnsureMode::CreateOrUpdate)
                .await?;
            // The lease gets a JetStream context of its own: renewals must never wait behind
            // publish acknowledgements held by the journal or the publisher.
            let lease_js = connect::jetstream(&client, &settings.nats);
            topology::ensure_lease_bucket(&lease_js, &settings.streams, settings.master.lease_ttl)
                .await
        };
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            ready = ready => match ready {
                Ok(kv) => break kv,
                // Each stream reserves its cap: one the server cannot hold never will fit by
                // waiting, and a master that ran without it could be starved by a flood.
                Err(e) if e.insufficient_storage => {
                    tracing::error!(error = %e, "the server cannot reserve the streams' storage");
                    readiness.phase(false, e.to_string());
                    return Err(Error::Storage(e));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot set up streams yet; retrying");
                    backoff.wait().await;
                }
            },
        }
    };
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let holder = format!("{}-{}", settings.master.id, &suffix[..8]);
    let env = Env { client, js, settings, holder, intake, metrics, readiness, requests };
    let ttl = env.settings.master.lease_ttl;
    let mut journal_retry = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
    // A journal that cannot be read yet (its stream electing a leader, JetStream's 503 just
    // after a quorum returns) is usually readable within a second: try again often, since a
    // try costs one lease write, and a longer step would be the pause (seen: a 1 s step made
    // a two-nodes-down recovery 3.07 s).
    let mut replay_retry = Backoff::new(Duration::from_millis(250), Duration::from_millis(500));
    loop {
        tracing::info!(candidate = %env.holder, "standing by for the lease");
        // A standby holds no state to be behind on (it replays when it wins): it is ready
        // when it can take over, which it can from here.
        // (Unless its last write failed: see `readiness.rs`.)
        env.readiness.phase(true, "standing by, able to take over");
        let lease = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            lease = lease::campaign(&kv, &env.holder, ttl, &env.readiness) => lease,
            () = journal_recovery(&env.js, &env.readiness) => unreachable!("it never ends"),
        };
        let guard = lease::LeaseGuard::spawn(lease, env.metrics.clone(), env.readiness.clone());
        let epoch = guard.epoch();
        tracing::info!(
            epoch,
            "won the lease at epoch {epoch} (its revision in the lease bucket); replaying the \
             journal"
        );
        let replaying = format!("replaying the journal for epoch {epoch}");
        env.readiness.phase(false, replaying);
        let replayed = tokio::select! {
            _ = &mut shutdown => {
                guard.stop(true).await;
                return Ok(());
            }
            replayed = journal::replay(&env.js, guard.epoch()) => replayed,
        };
        let replayed = match replayed {
            Ok(replayed) => {
                replay_retry.reset();
                replayed
            }
            Err(e) => {
                // Either way nothing was written: the journal stays as it is for whoever (or
                // whatever operator) looks next.
                env.readiness.phase(false, format!("cannot lead from the journal: {e}"));
                let pause = match &e {
                    ReplayError::Unavailable(_) => {
                        tracing::warn!(error = %e, "cannot replay the journal now; giving the lease back");
                        replay_retry.next_delay()
                    }
                    // Waiting will not mend it (an operator must), but try now and then.
                    ReplayError::Broken(_) => {
                        tracing::error!(error = %e, "refusing to lead from this journal; giving the lease back");
                        BROKEN_RETRY
                    }
                };
                guard.stop(true).await;
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    _ = tokio::time::sleep(pause) => {}
                }
                continue;
            }
        };
        env.readiness.phase(true, format!("leading epoch {epoch}"));
        let pause = match leader::lead(&env, guard, replayed, shutdown.as_mut()).await {
            Exit::Shutdown => return Ok(()),
            Exit::Deposed(_) => {
                journal_retry.reset();
                Duration::from_millis(200)
            }
            // Likely refused again at once (a full journal or store): back off, and say so.
            Exit::JournalFailed(why) => {
                env.readiness.journal_failed(why);
                journal_retry.next_delay()
            }
        };
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// While this candidate's last journal write failed, looks at where the journal ends every
/// second: once anyone's write goes through, the journal can be written again. Never ends.
async fn journal_recovery(js: &async_nats::jetstream::Context, readiness: &Readiness) {
    loop {
        if readiness.journal_blocked() {
            match housekeeping::last_sequence(js, subjects::JOURNAL_STREAM).await {
                Ok(last) => readiness.journal_moved(last),
                Err(e) => tracing::debug!(error = %e, "cannot look at the journal"),
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_subscriptions_hold_a_call_and_a_resend_per_worker_and_never_less_than_the_floor() {
        assert_eq!(request_backlog(10_000), 20_000, "the default max_workers");
        assert_eq!(request_backlog(100), MIN_REQUEST_BACKLOG);
        assert_eq!(request_backlog(0), MIN_REQUEST_BACKLOG);
        assert!(request_backlog(u32::MAX) > u32::MAX as usize, "no overflow");
    }
}
