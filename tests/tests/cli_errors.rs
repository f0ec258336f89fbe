//! Errors of the CLI that name their cause at once: with no master leading, each command says
//! so and what the lease says (free since when, or held by whom until when), not "no
//! responders"; a client on an inbox prefix it may not read is told so before anything is
//! sent (no job stored without its acknowledgement); and no error prints a backtrace unless
//! asked with `-v`, even with `RUST_BACKTRACE=1` in the environment; pausing or purging a
//! queue never seen is refused, saying so, and creates nothing. The real
//! `jetwork-frontend` binary against a real nats-server running the shipped `nats.conf`.
//! (Commands a role may not run at all: `role_matrix.rs`.)

use std::time::{Duration, Instant};

use jetwork_tests::{binaries, init_logging, shipped_nats_conf, wait_until, NatsServer, Procs};

/// Far longer than a refusal or a lease read may take: an error that comes after it waited.
const REQUEST_TIMEOUT: &str = "10s";
const AT_ONCE: Duration = Duration::from_secs(5);
const WITHIN: Duration = Duration::from_secs(60);
const JETWORK_TOML: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../jetwork.toml");

/// A role of the shipped `nats.conf`, as the README logs in, with `RUST_BACKTRACE=1`.
fn as_user<'a>(user: &'a str, password: &'a str) -> [(&'a str, &'a str); 3] {
    [("NATS_USER", user), ("NATS_PASSWORD", password), ("RUST_BACKTRACE", "1")]
}

/// Runs a CLI command that must fail; returns what it said, checked to have come at once and
/// without a backtrace.
async fn fails(procs: &Procs, env: &[(&str, &str)], args: &[&str]) -> anyhow::Result<String> {
    let started = Instant::now();
    let (ok, said) = procs.frontend_with(env, args).await?;
    let took = started.elapsed();
    anyhow::ensure!(!ok, "{args:?} succeeded: {said}");
    anyhow::ensure!(took < AT_ONCE, "{args:?} took {took:?}: {said}");
    anyhow::ensure!(!said.contains("Stack backtrace"), "{args:?} printed a backtrace: {said}");
    anyhow::ensure!(!said.contains("no responders"), "{args:?}: {said}");
    Ok(said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_errors_name_their_cause_at_once() -> anyhow::Result<()> {
    init_logging();
    let server = NatsServer::start_with_config(&shipped_nats_conf()?)?;
    let mut procs = Procs::new(&server)?;
    procs.set("JETWORK_NATS__REQUEST_TIMEOUT", REQUEST_TIMEOUT);
    // A killed leader's lease must outlast the commands that read it (a stopped one releases
    // it at once).
    procs.set("JETWORK_MASTER__LEASE_TTL", "60s");
    let (client, operator) =
        (as_user("client", "client-local"), as_user("operator", "operator-local"));
    let master = as_user("master", "master-local");
    let start_master = |name: &str| {
        procs.start(name, &binaries::master(), &["--config", JETWORK_TOML, "--id", name], &master)
    };
    let mut m1 = start_master("m1")?;
    wait_until("m1 to lead", WITHIN, || {
        let leading = m1.logs().contains("INFO leading");
        async move { leading }
    })
    .await?;

    tracing::info!("--- a client on an inbox prefix it may not read: told so, nothing stored");
    let mut deaf = client.to_vec();
    deaf.push(("JETWORK_NATS__INBOX_PREFIX", "_INBOX"));
    for args in [&["submit", "--id", "deaf-1", "7"][..], &["status"], &["job", "deaf-1"]] {
        let said = fails(&procs, &deaf, args).await?;
        assert!(said.contains("Permissions Violation for Subscription to \"_INBOX."), "{said}");
        assert!(said.contains("set nats.inbox_prefix"), "{said}");
        assert!(!said.contains("streams are not there"), "a misleading warning: {said}");
    }
    let (ok, said) = procs.frontend_with(&client, &["job", "deaf-1"]).await?;
    assert!(!ok && said.contains("deaf-1") && said.contains("(404)"), "stored: {said}");

    tracing::info!("--- a queue never seen is neither paused nor purged, and not created");
    for verb in ["pause", "purge"] {
        let said = fails(&procs, &operator, &[verb, "nosuchqueue"]).await?;
        let unknown = "queue nosuchqueue is unknown: nothing was ever submitted to it or served";
        assert!(said.contains(unknown) && said.contains("(404)"), "{verb}: {said}");
    }
    let (ok, said) = procs.frontend_with(&client, &["status", "--json"]).await?;
    assert!(ok && !said.contains("nosuchqueue"), "the unknown queue is listed: {said}");
    // One with a submission waiting (nobody serves it yet) may be paused ahead of its workers.
    let (ok, said) = procs.frontend_with(&client, &["submit", "--queue", "later", "1"]).await?;
    assert!(ok, "{said}");
    let (ok, said) = procs.frontend_with(&operator, &["pause", "later"]).await?;
    assert!(ok && said.contains("queue later paused"), "{said}");
    let (ok, said) = procs.frontend_with(&operator, &["resume", "later"]).await?;
    assert!(ok && said.contains("queue later resumed"), "{said}");

    tracing::info!("--- the leader stops: every command says no master leads, since when");
    assert!(m1.terminate(WITHIN).await?, "m1 did not stop");
    let no_master = [
        (&client, &["status"][..]),
        (&client, &["job", "x"]),
        (&client, &["jobs"]),
        (&client, &["schedule", "ls"]),
        (&operator, &["cancel", "x"]),
        (&operator, &["retry", "x"]),
        (&operator, &["pause", "default"]),
        (&operator, &["schedule", "rm", "x"]),
    ];
    for (role, args) in no_master {
        let said = fails(&procs, role, args).await?;
        assert!(said.contains("no master is leading (lease free since 20"), "{args:?}: {said}");
    }

    tracing::info!("--- -v asks for the whole report (a backtrace with RUST_BACKTRACE=1)");
    let (_, said) = procs.frontend_with(&client, &["-v", "status"]).await?;
    assert!(said.contains("no master is leading") && said.contains("Stack backtrace"), "{said}");

    tracing::info!("--- a leader killed: the lease still names it, until when");
    let mut m2 = start_master("m2")?;
    wait_until("m2 to lead", WITHIN, || {
        let leading = m2.logs().contains("INFO leading");
        async move { leading }
    })
    .await?;
    m2.kill9()?;
    let said = fails(&procs, &operator, &["cancel", "x"]).await?;
    assert!(said.contains("the lease is held by m2-"), "{said}");
    assert!(said.contains("unless renewed"), "{said}");
    Ok(())
}
