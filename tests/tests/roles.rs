//! The shipped `nats.conf` and its per-role users: the master, workers and clients each do
//! their whole job with their own least-privilege user, and none can do anyone else's. Refusals
//! are checked with raw protocol (`-ERR 'Permissions Violation …'`), so nothing is inferred
//! from a timeout.

use std::time::Duration;

use bytes::Bytes;
use jetwork_frontend::Client;
use jetwork_shared::config::NatsConfig;
use jetwork_shared::schedules::{ScheduleAdd, ScheduleName};
use jetwork_shared::{subjects, Login, QueueName, WorkId, WorkerId};
use jetwork_tests::manual::ManualWorker;
use jetwork_tests::raw::RawClient;
use jetwork_tests::{
    binaries, fast_settings, init_logging, shipped_logins, shipped_nats_conf, wait_until,
    worker_password, Audit, Fast, InProcess, NatsServer, Procs,
};
use jetwork_worker::square;

/// A server running the shipped `nats.conf`, master `m1` and the frontend client logged in
/// as their roles, and the audit reading as the admin (no role may read everything).
async fn shipped_roles() -> anyhow::Result<InProcess> {
    let logins = shipped_logins()?;
    InProcess::build()
        .config(&shipped_nats_conf()?)
        .tune(move |fast| {
            as_roles(fast);
            fast.master.logins = logins;
        })
        .audit_as("admin", "admin-local")
        // A client may not create the streams: the master does, first.
        .client_after_streams()
        .start()
        .await
}

fn login(nats: &mut NatsConfig, user: &str, password: &str, inbox: &str) {
    nats.user = Some(user.to_owned());
    nats.password = Some(password.to_owned());
    nats.inbox_prefix = Some(inbox.to_owned());
}

/// The fast test settings with the master and the client logged in as their roles (each
/// worker logs in as its own, [`worker_login`]).
fn as_roles(fast: &mut Fast) {
    login(&mut fast.master.nats, "master", "master-local", "_INBOX_master");
    login(&mut fast.frontend.nats, "client", "client-local", "_INBOX_client");
    fast.master.master.snapshot_every = 20;
    fast.master.streams.dedup_horizon = Duration::from_secs(1);
    fast.master.streams.journal_retention = Duration::from_secs(1);
}

/// Logs worker `worker-<n>` in as its own user (which is also its login).
fn worker_login(settings: &mut jetwork_worker::WorkerSettings, n: u32) {
    let user = format!("worker-{n}");
    login(&mut settings.nats, &user, &worker_password(&user), &format!("_INBOX_{user}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_roles_run_the_whole_system() -> anyhow::Result<()> {
    let mut run = shipped_roles().await?;
    let _workers: Vec<_> = (1..=2)
        .map(|n| run.worker_with(&format!("worker-{n}"), |s| worker_login(s, n), square))
        .collect();
    let (client, queue, js) = (run.client.clone(), run.queue.clone(), run.js.clone());

    tracing::info!("--- submissions, results, a rejection, status, snapshots and purges");
    let mut ids = Vec::new();
    for n in 1..=60u32 {
        let id = WorkId::parse(&format!("r{n}"))?;
        client.submit(&queue, Some(id.clone()), Bytes::from(n.to_string())).await?;
        ids.push(id);
    }
    let mut raw =
        RawClient::connect_as(&run.server.url(), Some(("client", "client-local"))).await?;
    raw.hpub(&subjects::submit(&queue), b"NATS/1.0\r\nNats-Msg-Id: not.valid\r\n\r\n", b"1")
        .await?;
    run.completed(&ids, Duration::from_secs(60)).await?;
    wait_until("the rejection", Duration::from_secs(30), || async {
        Audit::read(&js).await.is_ok_and(|a| a.rejections == 1)
    })
    .await?;
    let status = client.status().await?;
    assert!(status.workers_total >= 2, "{status:?}");
    wait_until("journal history to be trimmed", Duration::from_secs(30), || async {
        run.stream_info(subjects::JOURNAL_STREAM).await.is_some_and(|i| i.state.first_sequence > 1)
    })
    .await?;

    tracing::info!("--- an operator's schedule ticks under the master's own user");
    let mut as_operator = run.fast.frontend.clone();
    login(&mut as_operator.nats, "operator", "operator-local", "_INBOX_operator");
    let operator = Client::connect(as_operator).await?;
    let beat = ScheduleName::parse("beat")?;
    let add = ScheduleAdd {
        name: beat.clone(),
        queue: queue.clone(),
        every: Some("1s".to_owned()),
        cron: None,
        payload: "7".to_owned(),
    };
    operator.schedule_add(&add).await?;
    let listed = client.schedules().await?;
    assert!(listed.schedules.iter().any(|s| s.name == beat), "a client may list: {listed:?}");
    wait_until("a scheduled tick to complete", Duration::from_secs(30), || async {
        Audit::read(&js)
            .await
            .is_ok_and(|a| a.results.keys().any(|id| id.as_str().starts_with("beat-")))
    })
    .await?;
    operator.schedule_rm(&beat).await?;

    tracing::info!("--- the leader dies; a standby takes over under the same user");
    run.crash_masters();
    let m2 = run.master("m2");
    let mut more = Vec::new();
    for n in 61..=80u32 {
        let id = WorkId::parse(&format!("r{n}"))?;
        client.submit(&queue, Some(id.clone()), Bytes::from(n.to_string())).await?;
        more.push(id);
    }
    run.completed(&more, Duration::from_secs(60)).await?;

    tracing::info!("--- nobody was refused anything along the way");
    let log = std::fs::read_to_string(run.server.log_path())?;
    let violations: Vec<&str> = log.lines().filter(|l| l.contains("Violation")).collect();
    assert!(violations.is_empty(), "{violations:#?}");
    m2.stop().await;
    Ok(())
}

/// The shipped roles, but the master's user may not create consumers on the submit stream
/// (in a cluster: the node of the JetStream meta leader died and the next one is not elected
/// yet), with worker-1's login allowed any queue.
async fn without_submit_consumers() -> anyhow::Result<InProcess> {
    let create =
        r#""$JS.API.CONSUMER.CREATE.JETWORK_SUBMIT", "$JS.API.CONSUMER.CREATE.JETWORK_SUBMIT.>","#;
    let conf = shipped_nats_conf()?;
    assert!(conf.contains(create), "the shipped master may create submit consumers");
    let conf = conf.replace(create, "");
    let mut logins = shipped_logins()?;
    if let Some(login) = logins.get_mut("worker-1") {
        login.queues = vec!["*".to_owned()];
    }
    InProcess::build()
        .config(&conf)
        .tune(move |fast| {
            as_roles(fast);
            fast.master.logins = logins;
        })
        .audit_as("admin", "admin-local")
        .client_after_streams()
        .start()
        .await
}

/// Submits `per_queue` jobs to each of `queues` in turn and waits (`within`) until each has
/// one outcome, a completion; then checks the master tried to create consumers.
async fn run_without_consumers(
    run: &InProcess,
    queues: &[QueueName],
    per_queue: u32,
    within: Duration,
) -> anyhow::Result<()> {
    let served: Vec<String> = queues.iter().map(|q| q.to_string()).collect();
    let _worker = run.worker_with(
        "worker-1",
        move |s| {
            worker_login(s, 1);
            s.worker.queues = served;
        },
        square,
    );
    let mut ids = Vec::new();
    for n in 1..=per_queue {
        for queue in queues {
            let id = WorkId::parse(&format!("{queue}-{n}"))?;
            run.client.submit(queue, Some(id.clone()), Bytes::from(n.to_string())).await?;
            ids.push(id);
        }
    }
    let audit = run.completed(&ids, within).await?;
    audit.expect_one_outcome_each()?;
    let log = std::fs::read_to_string(run.server.log_path())?;
    let refused = log.lines().filter(|l| l.contains("Violation")).collect::<Vec<_>>();
    assert!(
        refused.iter().any(|l| l.contains("CONSUMER.CREATE.JETWORK_SUBMIT")),
        "the master did not try to create a consumer: {refused:#?}"
    );
    Ok(())
}

/// When no consumer can be created on the submit stream, the queues are read by direct gets
/// meanwhile: every submission reaches the leader that way, in order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_submit_consumer_the_readers_read_by_direct_gets() -> anyhow::Result<()> {
    let run = without_submit_consumers().await?;
    let queue = run.queue.clone();
    run_without_consumers(&run, &[queue], 40, Duration::from_secs(60)).await
}

/// Thirty queues asking to join the stream reader together while it cannot create its
/// consumer are all handed back to readers of their own after its one failed creation (a
/// second or so), not one after another, a second each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_submit_consumer_many_queues_are_read_at_once() -> anyhow::Result<()> {
    let run = without_submit_consumers().await?;
    let queues: Vec<QueueName> =
        (0..30).map(|n| QueueName::parse(&format!("q{n}"))).collect::<Result<_, _>>()?;
    run_without_consumers(&run, &queues, 2, Duration::from_secs(15)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_login_gets_only_what_it_was_granted() -> anyhow::Result<()> {
    let run = shipped_roles().await?;
    let (client, queue) = (run.client.clone(), run.queue.clone());
    let within = Duration::from_secs(60);
    run.await_leader("m1", within).await?;
    // Worker login `worker-3` spoken by hand, as a hostile holder of its password would.
    let nats = async_nats::ConnectOptions::with_user_and_password(
        "worker-3".to_owned(),
        worker_password("worker-3"),
    )
    .custom_inbox_prefix("_INBOX_worker-3")
    .connect(run.server.url())
    .await?;
    let as_3 = |id: &str| ManualWorker::with_login(nats.clone(), "worker-3", id);

    tracing::info!("--- not another login's worker id, not a queue it was not given");
    let err = as_3("worker-1")?.register().await.expect_err("another login's id");
    assert!(err.to_string().contains("not one of login worker-3's"), "{err}");
    let emails = QueueName::parse("emails")?;
    let err = as_3("worker-3")?.register_for(vec![emails], 4).await.expect_err("not its queue");
    assert!(err.to_string().contains("may not serve emails"), "{err}");

    tracing::info!("--- declaring 10000 slots takes no more than the first window");
    let greedy = as_3("worker-3-greedy")?;
    greedy.register_for(vec![queue.clone()], 10_000).await?;
    let mut ids = Vec::new();
    for n in 0..100u32 {
        let id = WorkId::parse(&format!("g{n}"))?;
        client.submit(&queue, Some(id.clone()), Bytes::from(n.to_string())).await?;
        ids.push(id);
    }
    wait_until("the jobs read ahead", within, || async {
        client
            .status()
            .await
            .is_ok_and(|s| s.queues.iter().any(|q| q.queue == queue && q.pending >= 100))
    })
    .await?;
    let grant = greedy.request(10_000).await?;
    let initial_window = jetwork_master::config::MasterConfig::default().initial_window as usize;
    assert!(
        !grant.assignments.is_empty() && grant.assignments.len() <= initial_window,
        "granted {} of 100 ready to a worker that has finished nothing",
        grant.assignments.len()
    );
    // A real worker of another login runs everything, the greedy one's share once it times out.
    let _worker = run.worker_with("worker-1", |s| worker_login(s, 1), square);
    run.completed(&ids, within).await?;

    tracing::info!("--- at most max_workers (10 in jetwork.toml) of its workers at once");
    // The greedy one may have been forgotten meanwhile (it sends no heartbeats): back to 10.
    greedy.register_for(vec![queue.clone()], 10_000).await?;
    for n in 1..10 {
        as_3(&format!("worker-3-{n}"))?.register().await?;
    }
    let err = as_3("worker-3-10")?.register().await.expect_err("an eleventh");
    assert!(err.to_string().contains("at most 10 workers of login worker-3"), "{err}");
    run.stop().await;
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
    let run = shipped_roles().await?;
    let url = run.server.url();
    let queue = QueueName::default_queue();
    let some_id = WorkId::parse("some-id")?;
    let (worker_1, worker_2) = (WorkerId::parse("worker-1")?, WorkerId::parse("worker-2")?);
    let (login_1, login_2) = (Login::parse("worker-1")?, Login::parse("worker-2")?);
    let (l1, l2) = (Some(&login_1), Some(&login_2));
    let forbidden_to_all_but_the_master = [
        subjects::stored_result(&queue, &some_id),
        subjects::result(&queue, &some_id),
        subjects::rejected(&queue, 7),
        subjects::JOURNAL_EVENTS.to_owned(),
        subjects::JOURNAL_EPOCH.to_owned(),
        subjects::internal(&queue),
        subjects::MASTER_ELECTED.to_owned(),
        subjects::worker_ready(l1, &worker_1),
        subjects::worker_cancel(l1, &worker_1),
        subjects::worker_ready(None, &worker_1),
        subjects::worker_cancel(None, &worker_1),
        // JetStream's own API, spelled as the permissions in nats.conf spell it.
        "$KV.jetwork-lease.master".to_owned(),
        "$JS.API.STREAM.PURGE.JETWORK_JOURNAL".to_owned(),
        "$JS.API.STREAM.PURGE.JETWORK_SUBMIT".to_owned(),
        "$JS.API.STREAM.UPDATE.JETWORK_SUBMIT".to_owned(),
        "$JS.API.STREAM.UPDATE.JETWORK_JOURNAL".to_owned(),
        "$JS.API.STREAM.DELETE.JETWORK_RESULTS".to_owned(),
        "$JS.API.STREAM.MSG.DELETE.JETWORK_SUBMIT".to_owned(),
        // The master's inbox, where the stream's acknowledgements of outcomes land: a forged
        // "stored" there would have the leader record an outcome the stream never got.
        "_INBOX_master.x".to_owned(),
    ];

    tracing::info!(
        "--- a worker: no submitting, no results, no journal, no lease, no one else's inbox"
    );
    let mut worker =
        RawClient::connect_as(&url, Some(("worker-1", &worker_password("worker-1")))).await?;
    let announce = subjects::submitted(&queue);
    for subject in forbidden_to_all_but_the_master.iter().chain(&[
        subjects::submit(&queue),
        announce.clone(),
        // Only under its own login: not another's, not without one.
        subjects::worker_endpoint(subjects::MASTER_REGISTER, &login_2, &worker_2),
        subjects::worker_endpoint(subjects::MASTER_REPORT, &login_2, &worker_1),
        subjects::MASTER_REGISTER.to_owned(),
        subjects::MASTER_REQUEST.to_owned(),
        subjects::MASTER_REPORT.to_owned(),
    ]) {
        cannot_publish(&mut worker, "worker-1", subject).await;
    }
    for subject in [
        "_INBOX_worker-2.>",
        "_INBOX_client.>",
        "_INBOX_master.>",
        &subjects::worker_ready(l2, &worker_2),
        &subjects::worker_cancel(l2, &worker_2),
        &subjects::worker_ready(None, &worker_1),
        subjects::RESULTS_ALL,
        subjects::MASTER_REGISTER,
        subjects::SUBMITTED_ALL,
    ] {
        cannot_subscribe(&mut worker, "worker-1", subject).await;
    }
    worker.subscribe(&subjects::worker_cancel(l1, &worker_1), 3).await?;
    for endpoint in subjects::WORKER_ENDPOINTS {
        worker.publish(&subjects::worker_endpoint(endpoint, &login_1, &worker_1), b"").await?;
    }
    worker.subscribe("_INBOX_worker-1.x", 1).await?;
    worker.subscribe(&subjects::worker_ready(l1, &WorkerId::parse("worker-1-b")?), 2).await?;

    tracing::info!("--- a client: submit and read results, nothing else");
    let mut client = RawClient::connect_as(&url, Some(("client", "client-local"))).await?;
    for subject in forbidden_to_all_but_the_master.iter().chain(&[
        subjects::MASTER_REGISTER.to_owned(),
        subjects::MASTER_REQUEST.to_owned(),
        subjects::MASTER_REPORT.to_owned(),
        subjects::MASTER_DEREGISTER.to_owned(),
        subjects::ADMIN_CANCEL.to_owned(),
        subjects::ADMIN_RETRY.to_owned(),
        subjects::ADMIN_RETRY_ALL.to_owned(),
        subjects::ADMIN_PURGE.to_owned(),
        subjects::ADMIN_PAUSE.to_owned(),
        subjects::ADMIN_RESUME.to_owned(),
        subjects::ADMIN_SCHEDULE_ADD.to_owned(),
        subjects::ADMIN_SCHEDULE_RM.to_owned(),
    ]) {
        cannot_publish(&mut client, "client", subject).await;
    }
    let master_endpoints = format!("{}.>", subjects::MASTER_GROUP);
    for subject in [
        "_INBOX_worker-1.>",
        "_INBOX_master.>",
        &master_endpoints,
        "jetwork.worker.*.ready",
        "jetwork.worker.*.*.ready",
        subjects::SUBMITTED_ALL,
    ] {
        cannot_subscribe(&mut client, "client", subject).await;
    }
    // The failures feed's consumer (the dashboard, status --watch): an ephemeral one on the
    // results stream, pulled; not a named or durable one, not deleting, not another stream.
    for subject in [
        "$JS.API.CONSUMER.CREATE.JETWORK_RESULTS.named.jetwork.outcomes.>",
        "$JS.API.CONSUMER.DURABLE.CREATE.JETWORK_RESULTS.kept",
        "$JS.API.CONSUMER.DELETE.JETWORK_RESULTS.any",
        "$JS.API.CONSUMER.INFO.JETWORK_RESULTS.any",
        "$JS.API.CONSUMER.CREATE.JETWORK_SUBMIT",
        "$JS.API.CONSUMER.MSG.NEXT.JETWORK_SUBMIT.any",
        "$JS.API.CONSUMER.CREATE.JETWORK_JOURNAL",
    ] {
        cannot_publish(&mut client, "client", subject).await;
    }
    client.publish("$JS.API.CONSUMER.CREATE.JETWORK_RESULTS", b"{}").await?;
    client.publish("$JS.API.CONSUMER.MSG.NEXT.JETWORK_RESULTS.any", b"{}").await?;
    client.publish(&subjects::submit(&queue), b"1").await?;
    client.publish(&announce, b"").await?;
    client.publish(subjects::MASTER_SCHEDULES, b"{}").await?;
    client.subscribe(subjects::RESULTS_ALL, 1).await?;
    client.subscribe(subjects::REJECTED_ALL, 2).await?;

    tracing::info!("--- a --forward responder: serves jetwork.svc.>, answers into worker inboxes");
    let mut responder = RawClient::connect_as(&url, Some(("responder", "responder-local"))).await?;
    for subject in forbidden_to_all_but_the_master.iter().chain(&[
        subjects::submit(&queue),
        subjects::MASTER_REGISTER.to_owned(),
        subjects::MASTER_REPORT.to_owned(),
        "_INBOX_client.x".to_owned(),
    ]) {
        cannot_publish(&mut responder, "responder", subject).await;
    }
    for subject in ["jetwork.master.>", "jetwork.worker.*.ready", "_INBOX_worker-1.>"] {
        cannot_subscribe(&mut responder, "responder", subject).await;
    }
    responder.subscribe("jetwork.svc.>", 1).await?;
    responder.publish("_INBOX_worker-1.progress", b"").await?;
    worker.publish("jetwork.svc.resize", b"").await?;

    tracing::info!(
        "--- an operator: what a client may, and cancel, retry, pause, resume, schedules"
    );
    let mut operator = RawClient::connect_as(&url, Some(("operator", "operator-local"))).await?;
    for subject in
        forbidden_to_all_but_the_master.iter().chain(&[subjects::MASTER_REPORT.to_owned()])
    {
        cannot_publish(&mut operator, "operator", subject).await;
    }
    cannot_subscribe(&mut operator, "operator", "_INBOX_client.>").await;
    operator.publish("$JS.API.CONSUMER.CREATE.JETWORK_RESULTS", b"{}").await?;
    cannot_publish(&mut operator, "operator", "$JS.API.CONSUMER.DELETE.JETWORK_RESULTS.any").await;
    operator.publish(subjects::ADMIN_PAUSE, b"{}").await?;
    operator.publish(subjects::ADMIN_RETRY_ALL, b"{}").await?;
    operator.publish(subjects::ADMIN_PURGE, b"{}").await?;
    operator.publish(subjects::MASTER_JOB, b"{}").await?;
    operator.publish(subjects::ADMIN_SCHEDULE_ADD, b"{}").await?;
    operator.publish(subjects::ADMIN_SCHEDULE_RM, b"{}").await?;
    operator.publish(subjects::MASTER_SCHEDULES, b"{}").await?;

    tracing::info!("--- the master does not read other inboxes either");
    let mut master = RawClient::connect_as(&url, Some(("master", "master-local"))).await?;
    // Not even the master publishes live results: the stream does, once per stored outcome.
    cannot_publish(&mut master, "master", &subjects::result(&queue, &some_id)).await;
    cannot_subscribe(&mut master, "master", "_INBOX_client.>").await;
    cannot_subscribe(&mut master, "master", "_INBOX_worker-1.>").await;

    tracing::info!("--- a client on an inbox prefix it may not read is told so at once");
    let mut wrong = fast_settings(&url).frontend;
    wrong.nats.user = Some("client".into());
    wrong.nats.password = Some("client-local".into());
    wrong.nats.inbox_prefix = Some("_INBOX".into());
    wrong.nats.request_timeout = Duration::from_secs(10);
    let started = std::time::Instant::now();
    let refused = Client::connect(wrong).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(refused.contains("Subscription to \"_INBOX."), "{refused}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());

    tracing::info!("--- and nothing a role was refused reached a stream");
    let audit = run.audit().await?;
    assert_eq!(audit.foreign, 0, "a refused journal write was stored");
    assert_eq!(audit.rejections, 0, "a refused rejection notice was stored");
    assert!(!audit.results.contains_key(&some_id), "a refused result was stored");
    run.stop().await;
    Ok(())
}

/// The repository's `jetwork.toml` (the masters' configuration for the shipped roles).
const JETWORK_TOML: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../jetwork.toml");

/// A role's credentials as the README sets them, and nothing else: no inbox prefix, no
/// worker id. `RUST_BACKTRACE` is set, as in many developers' shells.
fn as_user<'a>(user: &'a str, password: &'a str) -> [(&'a str, &'a str); 3] {
    [("NATS_USER", user), ("NATS_PASSWORD", password), ("RUST_BACKTRACE", "1")]
}

/// The README's quickstart, as written: the real binaries, each with its role's user and
/// password only. The worker's inbox prefix and id come from its user, so it receives the
/// operator's cancel (and is free for the next job at once, not after its command ends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_roles_work_as_written() -> anyhow::Result<()> {
    init_logging();
    let server = NatsServer::start_with_config(&shipped_nats_conf()?)?;
    let mut procs = Procs::new(&server)?;
    // Long enough that only a cancel, not a time-out, ends the slow job in time.
    procs.set("JETWORK_MASTER__WORK_TIMEOUT", "120s");
    let (client, operator) =
        (as_user("client", "client-local"), as_user("operator", "operator-local"));
    let master = procs.start(
        "m1",
        &binaries::master(),
        &["--config", JETWORK_TOML, "--id", "m1"],
        &as_user("master", "master-local"),
    )?;
    let script = r#"p=$(cat); if [ "$p" = slow ]; then sleep 120; fi; echo "ran $p""#;
    let worker = procs.start(
        "worker-1",
        &binaries::worker(),
        &["--queue", "default", "--exec", script],
        &as_user("worker-1", "worker-1-local"),
    )?;
    let within = Duration::from_secs(60);

    // The master creates the streams (a client may not): the README starts it first.
    wait_until("m1 to lead", within, || {
        let leading = master.logs().contains("INFO leading");
        async move { leading }
    })
    .await?;

    tracing::info!("--- the client submits and waits; the worker runs it");
    let (ok, said) = procs.frontend_with(&client, &["submit", "--wait", "7"]).await?;
    assert!(ok && said.contains("ran 7"), "{said}\nworker:\n{}", worker.logs());
    assert!(worker.logs().contains("registering under login worker-1"), "{}", worker.logs());

    tracing::info!("--- the operator cancels a running job: the worker stops it at once");
    let (ok, said) = procs.frontend_with(&client, &["submit", "--id", "slow-1", "slow"]).await?;
    assert!(ok, "{said}");
    wait_until("slow-1 to run", within, || async {
        let job = procs.frontend_with(&client, &["job", "slow-1", "--json"]).await;
        job.is_ok_and(|(ok, json)| ok && json.contains(r#""state": "running""#))
    })
    .await?;
    let (ok, said) = procs.frontend_with(&operator, &["cancel", "slow-1"]).await?;
    assert!(ok, "{said}");
    let (ok, said) =
        procs.frontend_with(&client, &["submit", "--wait", "--timeout", "30s", "fast"]).await?;
    assert!(ok && said.contains("ran fast"), "{said}\nworker:\n{}", worker.logs());
    assert!(worker.logs().contains("slow-1@1 cancelled; stopping it"), "{}", worker.logs());

    tracing::info!("--- nobody was refused anything");
    let log = std::fs::read_to_string(server.log_path())?;
    let violations: Vec<&str> = log.lines().filter(|l| l.contains("Violation")).collect();
    assert!(violations.is_empty(), "{violations:#?}");
    assert!(!master.logs().contains("ERROR"), "{}", master.logs());
    Ok(())
}

/// Runs a binary until it exits by itself (within a minute) and returns its output.
async fn exits(mut process: jetwork_tests::Process) -> anyhow::Result<String> {
    wait_until(&format!("{} to exit", process.name()), Duration::from_secs(60), || {
        let running = process.is_running();
        async move { !running }
    })
    .await?;
    Ok(process.logs())
}

/// A master or worker whose user is refused what it cannot run without stops at once, with
/// the server's words, what to change, and no backtrace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_refused_what_it_needs_stops_naming_it() -> anyhow::Result<()> {
    init_logging();
    let server = NatsServer::start_with_config(&shipped_nats_conf()?)?;
    let procs = Procs::new(&server)?;
    let master = as_user("master", "master-local");
    let worker_2 = as_user("worker-2", "worker-2-local");
    let _m1 = procs.start(
        "m1",
        &binaries::master(),
        &["--config", JETWORK_TOML, "--id", "m1"],
        &master,
    )?;
    let stopped_with = |said: &str, words: &[&str]| {
        let named = words.iter().all(|w| said.contains(w));
        assert!(named && !said.contains("Stack backtrace"), "expected {words:?} in:\n{said}");
    };

    tracing::info!("--- a worker with an id that is not its login's: its notices are refused");
    let foreign = procs.start(
        "w-9",
        &binaries::worker(),
        &["--queue", "default", "--id", "w-9"],
        &worker_2,
    )?;
    let said = exits(foreign).await?;
    stopped_with(
        &said,
        &[
            "Error: worker failed: the worker cannot run as this NATS user",
            "Permissions Violation for Subscription to \"jetwork.worker.w-9.",
            "its own login's notices",
        ],
    );

    tracing::info!("--- a worker and a master on an inbox prefix their user may not read");
    let args = ["--queue", "default", "--inbox-prefix", "_INBOX"];
    let said = exits(procs.start("deaf-worker", &binaries::worker(), &args, &worker_2)?).await?;
    stopped_with(&said, &["Subscription to \"_INBOX.", "set nats.inbox_prefix"]);
    let args = ["--config", JETWORK_TOML, "--id", "m2", "--inbox-prefix", "_INBOX_m"];
    let said = exits(procs.start("deaf-master", &binaries::master(), &args, &master)?).await?;
    stopped_with(
        &said,
        &[
            "Error: master failed: the master cannot run as this NATS user",
            "Subscription to \"_INBOX_m.",
            "set nats.inbox_prefix",
        ],
    );
    Ok(())
}
