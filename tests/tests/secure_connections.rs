//! Connecting to a secured nats-server: every authentication method (user/password in the
//! settings and in the URL, token, nkey seed), server-only and mutual TLS, a custom inbox
//! prefix for a user whose permissions allow nothing else, and a whole master + worker +
//! frontend run over user/password and mutual TLS. Failures must be fast and say what is
//! wrong (authorization, certificate), naming the URL, never retrying silently.
//!
//! JWT credentials (`.creds`) are only checked for a broken file here: a full operator /
//! account / user JWT setup is left out.

#[path = "support/pki.rs"]
mod pki;

use std::time::{Duration, Instant};

use bytes::Bytes;
use jetwork_frontend::{Client, FrontendSettings};
use jetwork_shared::config::NatsConfig;
use jetwork_shared::connect::{self, Cause, ConnectError};
use jetwork_shared::{QueueName, WorkId};
use jetwork_tests::nats_server::free_port;
use jetwork_tests::{
    binaries, fast_settings, init_logging, stream_caps_env, Audit, InProcess, NatsServer,
};
use jetwork_worker::square;
use pki::Pki;

const USERS: &str = r#"authorization { users = [ { user: "app", password: "s3cret" } ] }"#;

/// Frontend settings against `server`, with `tune` applied to the `[nats]` section.
fn frontend(server: &NatsServer, tune: impl FnOnce(&mut NatsConfig)) -> FrontendSettings {
    let mut settings = fast_settings(&server.url()).frontend;
    tune(&mut settings.nats);
    settings
}

/// Logs in as `app` (of [`USERS`]) over mutual TLS, with `pki`'s client certificate.
fn app_over_mutual_tls(pki: &Pki) -> impl Fn(&mut NatsConfig) + Send + 'static {
    let (ca, cert, key) = (pki.ca.clone(), pki.client_cert.clone(), pki.client_key.clone());
    move |n| {
        n.user = Some("app".into());
        n.password = Some("s3cret".into());
        n.tls_ca_file = Some(ca.clone());
        n.tls_cert_file = Some(cert.clone());
        n.tls_key_file = Some(key.clone());
    }
}

/// Connects as a frontend (which creates the streams through the JetStream API) and submits
/// one item: the whole path a submitter needs.
async fn submits(settings: FrontendSettings) -> anyhow::Result<()> {
    let client = Client::connect(settings).await?;
    let submitted =
        client.submit(&QueueName::default_queue(), None, Bytes::from_static(b"7")).await?;
    anyhow::ensure!(submitted.seq >= 1 && !submitted.duplicate, "{submitted:?}");
    Ok(())
}

/// The closing audit of a test that set up only a server: reads the streams back connected
/// with `settings` (creating them if no one did), checks the invariants, and that exactly
/// `stored` submissions were kept (one per acknowledged `submits`, none from a refused
/// connection).
async fn audit(settings: FrontendSettings, stored: usize) -> anyhow::Result<()> {
    let audit = Audit::read_as(settings).await?;
    audit.check()?;
    anyhow::ensure!(
        audit.submissions.len() == stored,
        "{} submissions stored, {stored} acknowledged",
        audit.submissions.len()
    );
    Ok(())
}

/// Connects with no limit on transient retries and expects a permanent failure, quickly.
async fn refused(cfg: &NatsConfig) -> anyhow::Result<ConnectError> {
    let started = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(20), connect::connect(cfg, "test"))
        .await
        .map_err(|_| anyhow::anyhow!("still retrying after 20s: the failure was not final"))?;
    let Err(err) = outcome else { anyhow::bail!("connected, but should have been refused") };
    anyhow::ensure!(err.cause.is_permanent(), "{err} should be permanent ({:?})", err.cause);
    anyhow::ensure!(
        started.elapsed() < Duration::from_secs(5),
        "{err} took {:?}",
        started.elapsed()
    );
    Ok(err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password_from_the_settings_or_the_url() -> anyhow::Result<()> {
    init_logging();
    let server = NatsServer::start_with_config(USERS)?;
    submits(frontend(&server, |n| {
        n.user = Some("app".into());
        n.password = Some("s3cret".into());
    }))
    .await?;
    let url = format!("nats://app:s3cret@127.0.0.1:{}", server.port());
    submits(frontend(&server, |n| n.url = url)).await?;
    // Percent-encoded, as URLs carry reserved characters.
    let url = format!("nats://%61pp:s3%63ret@127.0.0.1:{}", server.port());
    submits(frontend(&server, |n| n.url = url.clone())).await?;
    audit(frontend(&server, |n| n.url = url), 3).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_an_authorization_violation_at_once() -> anyhow::Result<()> {
    init_logging();
    let server = NatsServer::start_with_config(USERS)?;
    let url = format!("nats://app:wrong-pass@127.0.0.1:{}", server.port());
    let err = refused(&frontend(&server, |n| n.url = url).nats).await?;
    let text = err.to_string();
    assert_eq!(err.cause, Cause::Authorization);
    assert!(text.contains("authorization violation"), "{text}");
    assert!(text.contains(&format!("nats://app:***@127.0.0.1:{}", server.port())), "{text}");
    assert!(!text.contains("wrong-pass"), "the password leaked: {text}");

    // No credentials at all: the message says they are missing.
    let err = refused(&frontend(&server, |_| {}).nats).await?;
    assert!(err.to_string().contains("none were given"), "{err}");

    // The frontend reports the refusal as such, not as a JetStream time-out.
    let settings = frontend(&server, |n| {
        n.user = Some("app".into());
        n.password = Some("wrong-pass".into());
    });
    let text = Client::connect(settings).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("authorization violation") && text.contains(&server.url()), "{text}");
    assert!(!text.contains("timed out"), "{text}");
    audit(
        frontend(&server, |n| n.url = format!("nats://app:s3cret@127.0.0.1:{}", server.port())),
        0,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_from_the_settings_or_the_url() -> anyhow::Result<()> {
    init_logging();
    let server = NatsServer::start_with_config(r#"authorization { token: "t0k3n" }"#)?;
    submits(frontend(&server, |n| n.token = Some("t0k3n".into()))).await?;
    let url = format!("nats://t0k3n@127.0.0.1:{}", server.port());
    submits(frontend(&server, |n| n.url = url)).await?;
    let err = refused(&frontend(&server, |n| n.token = Some("other".into())).nats).await?;
    assert!(err.to_string().contains("authorization violation: the server refused a token"));
    audit(frontend(&server, |n| n.token = Some("t0k3n".into())), 2).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nkey_seed_file_and_bad_key_material() -> anyhow::Result<()> {
    init_logging();
    let user = nkeys::KeyPair::new_user();
    let conf = format!("authorization {{ users = [ {{ nkey: {} }} ] }}", user.public_key());
    let server = NatsServer::start_with_config(&conf)?;
    let dir = tempfile::tempdir()?;
    let seed = dir.path().join("user.nk");
    std::fs::write(&seed, format!("{}\n", user.seed()?))?;
    submits(frontend(&server, |n| n.nkey_seed_file = Some(seed.clone()))).await?;

    tracing::info!("--- a file that holds no seed, and an account seed instead of a user's");
    let garbage = dir.path().join("garbage.nk");
    std::fs::write(&garbage, "SUNOTASEED")?;
    let err = refused(&frontend(&server, |n| n.nkey_seed_file = Some(garbage)).nats).await?;
    assert_eq!(err.cause, Cause::Settings);
    assert!(err.to_string().contains("invalid nkey seed in"), "{err}");
    let account = dir.path().join("account.nk");
    std::fs::write(&account, nkeys::KeyPair::new_account().seed()?)?;
    let err = refused(&frontend(&server, |n| n.nkey_seed_file = Some(account)).nats).await?;
    assert!(err.to_string().contains("not a user's"), "{err}");

    tracing::info!("--- another user's seed: refused by the server");
    let stranger = dir.path().join("stranger.nk");
    std::fs::write(&stranger, nkeys::KeyPair::new_user().seed()?)?;
    let err = refused(&frontend(&server, |n| n.nkey_seed_file = Some(stranger)).nats).await?;
    assert_eq!(err.cause, Cause::Authorization, "{err}");

    tracing::info!("--- a credentials file that is not one");
    let creds = dir.path().join("broken.creds");
    std::fs::write(&creds, "not a creds file")?;
    let err = refused(&frontend(&server, |n| n.credentials = Some(creds)).nats).await?;
    assert!(err.to_string().contains("invalid credentials file"), "{err}");
    audit(frontend(&server, |n| n.nkey_seed_file = Some(seed)), 1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_tls_with_the_ca_and_without_it() -> anyhow::Result<()> {
    init_logging();
    let pki = Pki::generate()?;
    let server = NatsServer::start_with_config(&pki.server_block(false))?;
    submits(frontend(&server, |n| n.tls_ca_file = Some(pki.ca.clone()))).await?;

    tracing::info!("--- without the CA, the system roots do not know this server");
    let err = refused(&frontend(&server, |_| {}).nats).await?;
    assert_eq!(err.cause, Cause::Tls);
    let text = err.to_string();
    assert!(text.contains("TLS: unknown certificate authority"), "{text}");
    assert!(text.contains(&server.url()), "{text}");

    tracing::info!("--- a CA file that is not PEM is reported as a setting, with its path");
    let bogus = tempfile::NamedTempFile::new()?;
    std::fs::write(bogus.path(), "not a certificate")?;
    let err =
        refused(&frontend(&server, |n| n.tls_ca_file = Some(bogus.path().into())).nats).await?;
    assert!(err.to_string().contains("nats.tls_ca_file"), "{err}");
    audit(frontend(&server, |n| n.tls_ca_file = Some(pki.ca.clone())), 1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_the_client_certificate() -> anyhow::Result<()> {
    init_logging();
    let pki = Pki::generate()?;
    let server = NatsServer::start_with_config(&pki.server_block(true))?;
    let with_certificate = |n: &mut NatsConfig| {
        n.tls_ca_file = Some(pki.ca.clone());
        n.tls_cert_file = Some(pki.client_cert.clone());
        n.tls_key_file = Some(pki.client_key.clone());
    };
    submits(frontend(&server, with_certificate)).await?;

    tracing::info!(
        "--- no client certificate: refused, and the error says a certificate is needed"
    );
    let err = refused(&frontend(&server, |n| n.tls_ca_file = Some(pki.ca.clone())).nats).await?;
    assert_eq!(err.cause, Cause::Tls, "{err}");
    assert!(err.to_string().contains("certificate required"), "{err}");
    audit(frontend(&server, with_certificate), 1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_inbox_prefix_works_where_only_it_may_be_subscribed() -> anyhow::Result<()> {
    init_logging();
    let server = NatsServer::start_with_config(
        r#"authorization { users = [ {
            user: "frontend", password: "pw",
            permissions: {
                publish: { allow: ["$JS.API.>", "jetwork.submit.>"] },
                subscribe: { allow: ["_INBOX_test.>"] }
            }
        } ] }"#,
    )?;
    let limited = |prefix: Option<&str>| {
        frontend(&server, |n| {
            n.user = Some("frontend".into());
            n.password = Some("pw".into());
            n.inbox_prefix = prefix.map(str::to_owned);
            n.request_timeout = Duration::from_secs(10);
        })
    };
    submits(limited(Some("_INBOX_test"))).await?;

    tracing::info!("--- the same user on the default prefix is told at once it may not read it");
    // (The default is `_INBOX_frontend`, from the user name; the server refuses the
    // subscription to `_INBOX_frontend.…`, so no reply could ever arrive.)
    let started = Instant::now();
    let err = submits(limited(None)).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("Subscription to \"_INBOX_frontend."), "{err:?}");
    assert!(err.contains("set nats.inbox_prefix"), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    // The refused client's publication may be stored (only its acknowledgement is lost):
    // the audit checks the invariants, not a count.
    Audit::read_as(limited(Some("_INBOX_test"))).await?.check()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_a_server_that_is_not_up_yet() -> anyhow::Result<()> {
    init_logging();
    let port = free_port()?;
    let cfg = NatsConfig { url: format!("nats://127.0.0.1:{port}"), ..Default::default() };
    let err = connect::connect_within(&cfg, "test", Duration::from_millis(300))
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("connected to nothing"))?;
    assert_eq!(err.cause, Cause::Refused, "{err}");
    assert!(err.to_string().contains("connection refused"), "{err}");

    let waiting = tokio::spawn(async move { connect::connect(&cfg, "test").await });
    let server = NatsServer::start_on(port, None)?;
    let client = tokio::time::timeout(Duration::from_secs(20), waiting).await???;
    client.flush().await?;
    audit(frontend(&server, |_| {}), 0).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_worker_and_frontend_over_user_password_and_mutual_tls() -> anyhow::Result<()> {
    let pki = Pki::generate()?;
    let secure = app_over_mutual_tls(&pki);
    let run = InProcess::build()
        .config(&format!("{USERS}\n{}", pki.server_block(true)))
        .tune(move |fast| {
            secure(&mut fast.master.nats);
            secure(&mut fast.worker.nats);
            secure(&mut fast.frontend.nats);
        })
        .start()
        .await?;
    let _worker = run.worker("w1", square);
    let mut ids = Vec::new();
    for n in 1..=5u32 {
        let id = WorkId::parse(&format!("secure-{n}"))?;
        run.client.submit(&run.queue, Some(id.clone()), Bytes::from(n.to_string())).await?;
        ids.push(id);
    }
    run.completed(&ids, Duration::from_secs(60)).await?;
    let result = run.result(&ids[2], Duration::from_secs(5)).await?;
    assert_eq!(result.payload, Bytes::from_static(b"3 * 3 = 9"));
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_frontend_binary_takes_the_flags_and_names_a_refusal() -> anyhow::Result<()> {
    init_logging();
    let pki = Pki::generate()?;
    let server = NatsServer::start_with_config(&format!("{USERS}\n{}", pki.server_block(true)))?;
    let binary = binaries::frontend();
    let run = |password: &str, args: &[&str]| {
        let mut command = tokio::process::Command::new(&binary);
        command
            .args(["--nats-url", &server.url(), "--nats-user", "app"])
            .args(["--tls-ca", &pki.ca.display().to_string()])
            .args(["--tls-cert", &pki.client_cert.display().to_string()])
            .args(["--tls-key", &pki.client_key.display().to_string()])
            .args(args)
            .env("NATS_PASSWORD", password)
            .env("JETWORK_NATS__REQUEST_TIMEOUT", "2s")
            .envs(stream_caps_env())
            .env("NO_COLOR", "1")
            .kill_on_drop(true);
        for var in ["NATS_USER", "NATS_TOKEN", "NATS_NKEY", "NATS_CREDS", "JETWORK_CONFIG"] {
            command.env_remove(var);
        }
        async move {
            let output = tokio::time::timeout(Duration::from_secs(60), command.output()).await??;
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            anyhow::Ok((output.status.success(), text(&output.stdout), text(&output.stderr)))
        }
    };

    let (ok, stdout, stderr) = run("s3cret", &["init"]).await?;
    assert!(ok && stdout.contains("streams ready"), "{stdout}{stderr}");

    let (ok, _, stderr) = run("wrong-pass", &["status"]).await?;
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("authorization violation"), "{stderr}");
    assert!(stderr.contains(&server.url()), "{stderr}");
    assert!(!stderr.contains("timed out") && !stderr.contains("wrong-pass"), "{stderr}");

    let (_, help, _) = run("s3cret", &["--help"]).await?;
    assert!(help.contains("--nats-password") && help.contains("--tls-ca"), "{help}");
    assert!(!help.contains("s3cret"), "--help shows the password: {help}");
    audit(frontend(&server, app_over_mutual_tls(&pki)), 0).await
}
