//! The shipped `nats.conf` and its per-role users: the master, workers and clients each do
//! their whole job with their own least-privilege user, and none can do anyone else's. Refusals
//! are checked with raw protocol (`-ERR 'Permissions Violation …'`), so nothing is inferred
//! from a timeout.

use std::time::Duration;

use bytes::Bytes;
use jetwork_frontend::Client;
use jetwork_shared::config::NatsConfig;
use jetwork_shared::{subjects, QueueName, WorkId};
use jetwork_tests::inproc::{spawn_master, spawn_worker};
use jetwork_tests::raw::RawClient;
use jetwork_tests::{fast_settings, init_logging, wait_until, Audit, Fast, NatsServer};
use jetwork_worker::square;

/// A server running the repository's `nats.conf` (on its own port and store).
fn shipped_server() -> anyhow::Result<NatsServer> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../nats.conf");
    let conf = std::fs::read_to_string(path)?;
    // The monitoring port and the store are fixed in the file; tests run side by side (the
    // harness gives each server its own port and store).
    let keep =
        |line: &&str| !line.starts_with("http:") && !line.trim_start().starts_with("store_dir");
    let conf: String = conf.lines().filter(keep).collect::<Vec<_>>().join("\n");
    NatsServer::start_with_config(&conf)
}

fn login(nats: &mut NatsConfig, user: &str, password: &str, inbox: &str) {
    nats.user = Some(user.to_owned());
    nats.password = Some(password.to_owned());
    nats.inbox_prefix = Some(inbox.to_owned());
}

/// The fast test settings with each component logged in as its role.
fn as_roles(server: &NatsServer) -> Fast {
    let mut fast = fast_settings(&server.url());
    login(&mut fast.master.nats, "master", "master-local", "_INBOX_master");
    login(&mut fast.frontend.nats, "client", "client-local", "_INBOX_client");
    fast.master.master.snapshot_every = 20;
    fast.master.streams.dedup_horizon = Duration::from_secs(1);
    fast.master.streams.journal_retention = Duration::from_secs(1);
    fast
}

fn worker_settings(fast: &Fast, n: u32) -> jetwork_worker::WorkerSettings {
    let mut settings = fast.worker.clone();
    let user = format!("worker-{n}");
    login(&mut settings.nats, &user, "worker-local", &format!("_INBOX_{user}"));
    settings
}

async fn admin(server: &NatsServer) -> anyhow::Result<async_nats::jetstream::Context> {
    let client =
        async_nats::ConnectOptions::with_user_and_password("admin".into(), "admin-local".into())
            .connect(server.url())
            .await?;
    Ok(async_nats::jetstream::new(client))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_roles_run_the_whole_system() -> anyhow::Result<()> {
    init_logging();
    let server = shipped_server()?;
    let fast = as_roles(&server);
    let m1 = spawn_master("m1", fast.master.clone());
    let _workers: Vec<_> = (1..=2)
        .map(|n| spawn_worker(&format!("worker-{n}"), worker_settings(&fast, n), square))
        .collect();
    let js = admin(&server).await?;
    // A client may not create the streams: the master does, first.
    wait_until("the master to create the streams", Duration::from_secs(30), || async {
        js.get_stream(subjects::RESULTS_STREAM).await.is_ok()
    })
    .await?;
    let client = Client::connect(fast.frontend.clone()).await?;
    let queue = QueueName::default_queue();

    tracing::info!("--- submissions, results, a rejection, status, snapshots and purges");
    let mut ids = Vec::new();
    for n in 1..=60u32 {
        let id = WorkId::parse(&format!("r{n}"))?;
        client.submit(&queue, Some(id.clone()), Bytes::from(n.to_string())).await?;
        ids.push(id);
    }
    let mut raw = RawClient::connect_as(&server.url(), Some(("client", "client-local"))).await?;
    raw.hpub(&subjects::submit(&queue), b"NATS/1.0\r\nNats-Msg-Id: not.valid\r\n\r\n", b"1")
        .await?;
    Audit::await_completed(&js, &ids, Duration::from_secs(60)).await?;
    wait_until("the rejection", Duration::from_secs(30), || async {
        Audit::read(&js).await.is_ok_and(|a| a.rejections == 1)
    })
    .await?;
    let status = client.status().await?;
    assert!(status.workers_total >= 2, "{status:?}");
    wait_until("journal history to be trimmed", Duration::from_secs(30), || async {
        match js.get_stream(subjects::JOURNAL_STREAM).await {
            Ok(mut s) => s.info().await.is_ok_and(|i| i.state.first_sequence > 1),
            Err(_) => false,
        }
    })
    .await?;

    tracing::info!("--- the leader dies; a standby takes over under the same user");
    m1.crash();
    let m2 = spawn_master("m2", fast.master.clone());
    let mut more = Vec::new();
    for n in 61..=80u32 {
        let id = WorkId::parse(&format!("r{n}"))?;
        client.submit(&queue, Some(id.clone()), Bytes::from(n.to_string())).await?;
        more.push(id);
    }
    Audit::await_completed(&js, &more, Duration::from_secs(60)).await?;

    tracing::info!("--- nobody was refused anything along the way");
    let log = std::fs::read_to_string(server.log_path())?;
    let violations: Vec<&str> =
        log.lines().filter(|l| l.contains("Permissions Violation")).collect();
    assert!(violations.is_empty(), "{violations:#?}");
    m2.stop().await;
    Ok(())
}

/// `subject` is refused to `who` for publishing.
async fn cannot_publish(raw: &mut RawClient, who: &str, subject: &str) {
    let refused = raw.publish(subject, b"x").await;
    let err = refused.expect_err(&format!("{who} must not publish to {subject}")).to_string();
    assert!(err.contains("Permissions Violation"), "{who} → {subject}: {err}");
}

/// `subject` is refused to `who` for subscribing.
async fn cannot_subscribe(raw: &mut RawClient, who: &str, subject: &str) {
    let refused = raw.subscribe(subject, 99).await;
    let err = refused.expect_err(&format!("{who} must not subscribe to {subject}")).to_string();
    assert!(err.contains("Permissions Violation"), "{who} ⇐ {subject}: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_can_do_only_its_job() -> anyhow::Result<()> {
    init_logging();
    let server = shipped_server()?;
    let url = server.url();
    let forbidden_to_all_but_the_master = [
        "jetwork.results.default.some-id",
        "jetwork.rejected.default.7",
        "jetwork.journal.events",
        "jetwork.journal.epoch",
        "jetwork.master.elected",
        "jetwork.worker.worker-1.ready",
        "jetwork.worker.worker-1.cancel",
        "$KV.jetwork-lease.master",
        "$JS.API.STREAM.PURGE.JETWORK_JOURNAL",
        "$JS.API.STREAM.PURGE.JETWORK_SUBMIT",
        "$JS.API.STREAM.UPDATE.JETWORK_SUBMIT",
        "$JS.API.STREAM.UPDATE.JETWORK_JOURNAL",
        "$JS.API.STREAM.DELETE.JETWORK_RESULTS",
        "$JS.API.STREAM.MSG.DELETE.JETWORK_SUBMIT",
    ];

    tracing::info!(
        "--- a worker: no submitting, no results, no journal, no lease, no one else's inbox"
    );
    let mut worker = RawClient::connect_as(&url, Some(("worker-1", "worker-local"))).await?;
    for subject in forbidden_to_all_but_the_master.iter().chain(&["jetwork.submit.default"]) {
        cannot_publish(&mut worker, "worker-1", subject).await;
    }
    for subject in [
        "_INBOX_worker-2.>",
        "_INBOX_client.>",
        "_INBOX_master.>",
        "jetwork.worker.worker-2.ready",
        "jetwork.worker.worker-2.cancel",
        "jetwork.results.>",
        "jetwork.master.register",
    ] {
        cannot_subscribe(&mut worker, "worker-1", subject).await;
    }
    worker.subscribe("jetwork.worker.worker-1.cancel", 3).await?;
    worker.publish(subjects::MASTER_REGISTER, b"").await?;
    worker.subscribe("_INBOX_worker-1.x", 1).await?;
    worker.subscribe("jetwork.worker.worker-1.ready", 2).await?;

    tracing::info!("--- a client: submit and read results, nothing else");
    let mut client = RawClient::connect_as(&url, Some(("client", "client-local"))).await?;
    for subject in forbidden_to_all_but_the_master.iter().chain(&[
        "jetwork.master.register",
        "jetwork.master.request",
        "jetwork.master.report",
        "jetwork.admin.cancel",
        "jetwork.admin.retry",
        "jetwork.admin.pause",
    ]) {
        cannot_publish(&mut client, "client", subject).await;
    }
    for subject in
        ["_INBOX_worker-1.>", "_INBOX_master.>", "jetwork.master.>", "jetwork.worker.*.ready"]
    {
        cannot_subscribe(&mut client, "client", subject).await;
    }
    client.publish("jetwork.submit.default", b"1").await?;
    client.subscribe("jetwork.results.>", 1).await?;
    client.subscribe("jetwork.rejected.>", 2).await?;

    tracing::info!("--- an operator: what a client may, and the operator's requests");
    let mut operator = RawClient::connect_as(&url, Some(("operator", "operator-local"))).await?;
    for subject in forbidden_to_all_but_the_master.iter().chain(&["jetwork.master.report"]) {
        cannot_publish(&mut operator, "operator", subject).await;
    }
    cannot_subscribe(&mut operator, "operator", "_INBOX_client.>").await;
    operator.publish("jetwork.admin.pause", b"{}").await?;
    operator.publish("jetwork.master.job", b"{}").await?;

    tracing::info!("--- the master does not read other inboxes either");
    let mut master = RawClient::connect_as(&url, Some(("master", "master-local"))).await?;
    cannot_subscribe(&mut master, "master", "_INBOX_client.>").await;
    cannot_subscribe(&mut master, "master", "_INBOX_worker-1.>").await;

    tracing::info!("--- a client connecting with the wrong inbox prefix gets no replies");
    let mut wrong = jetwork_tests::fast_settings(&url).frontend;
    wrong.nats.user = Some("client".into());
    wrong.nats.password = Some("client-local".into());
    wrong.nats.request_timeout = Duration::from_secs(1);
    wrong.frontend.submit_timeout = Duration::from_secs(2);
    let client = Client::connect(wrong).await?;
    let refused = client.submit(&QueueName::default_queue(), None, Bytes::from_static(b"1")).await;
    assert!(refused.is_err(), "a client on _INBOX. cannot get its acknowledgements");
    Ok(())
}
