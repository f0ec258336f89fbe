//! What the processes show about themselves: `/metrics` numbers against the work actually
//! done (and after a takeover, against the journal's counts), `/healthz` and `/readyz` as
//! components start, register and lead, JSON log lines, `status` while no master leads, and
//! that the dashboard and alert rules under deploy/ name only series the processes export.

use std::time::Duration;

use bytes::Bytes;
use jetwork_frontend::ResultStatus;
use jetwork_shared::protocol::LeaseHolder;
use jetwork_shared::WorkId;
use jetwork_tests::{poll_for, wait_until, InProcess, Scrape, Scraper};

const WITHIN: Duration = Duration::from_secs(30);

/// Waits until a scrape of `scraper` satisfies `ok`, and returns it.
async fn scrape_until(
    what: &str,
    scraper: Scraper,
    ok: impl Fn(&Scrape) -> bool,
) -> anyhow::Result<Scrape> {
    let last = std::sync::Mutex::new(String::new());
    let found = poll_for(what, WITHIN, || async {
        let scrape = scraper.metrics().await.ok()?;
        if ok(&scrape) {
            return Some(scrape);
        }
        *last.lock().ok()? = scrape.text;
        None
    })
    .await;
    found.map_err(|e| {
        anyhow::anyhow!("{e}; last scrape:\n{}", last.lock().map(|t| t.clone()).unwrap_or_default())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_match_the_work_done_and_survive_a_takeover() -> anyhow::Result<()> {
    let run = InProcess::build().masters(&[]).start().await?;
    let (m1, s1) = run.master_observed("m1").await?;
    run.await_leader("m1", WITHIN).await?;
    let (_m2, s2) = run.master_observed("m2").await?;
    let (_w1, sw) = run.worker_observed("w1", jetwork_worker::square).await?;

    tracing::info!("--- 20 jobs that complete, one that fails on every attempt");
    let mut ids = Vec::new();
    for i in 1..=20u32 {
        let id = WorkId::parse(&format!("job-{i}"))?;
        run.client.submit(&run.queue, Some(id.clone()), Bytes::from(i.to_string())).await?;
        ids.push(id);
    }
    let bad = run.submit("not-a-number", b"x").await?;
    let failed = run.result(&bad, WITHIN).await?;
    assert_eq!(failed.status, ResultStatus::Failed);
    // Attempts it took to fail (a payload that is not a number fails for good at once).
    let attempts = failed.attempt;
    run.completed(&ids, WITHIN).await?;

    let q = |s: &Scrape, name: &str| s.queue(name, "default").unwrap_or(-1.0);
    let leader = scrape_until("the leader's counts to reach 20 completed, 1 failed", s1, |s| {
        q(s, "jetwork_queue_completed_total") == 20.0 && q(s, "jetwork_queue_failed_total") == 1.0
    })
    .await?;
    assert_eq!(leader.get("jetwork_master_leader", &[]), Some(1.0));
    assert!(leader.get("jetwork_master_epoch", &[]).unwrap_or(0.0) > 0.0);
    assert_eq!(q(&leader, "jetwork_queue_accepted_total"), 21.0);
    assert_eq!(q(&leader, "jetwork_queue_rejected_total"), 0.0);
    assert_eq!(q(&leader, "jetwork_queue_in_flight"), 0.0);
    assert_eq!(leader.get("jetwork_master_workers", &[]), Some(1.0));
    // Every item's first start, and every finished item's last attempt, are timed.
    assert_eq!(q(&leader, "jetwork_queue_wait_seconds_count"), 21.0, "{}", leader.text);
    assert_eq!(q(&leader, "jetwork_queue_run_seconds_count"), 21.0, "{}", leader.text);
    assert!(leader.get("jetwork_master_journal_write_seconds_count", &[]).unwrap_or(0.0) > 0.0);
    assert!(leader.get("jetwork_master_lease_renewals_total", &[]).is_some());
    let leader = scrape_until("the survey to find nothing unread", s1, |s| {
        q(s, "jetwork_queue_submitted_total") == 21.0 && q(s, "jetwork_queue_pending") == 0.0
    })
    .await?;
    assert_eq!(q(&leader, "jetwork_queue_oldest_pending_seconds"), 0.0);

    tracing::info!("--- $SRV.STATS.jetwork carries the job totals");
    let nats = run.client.nats().clone();
    let stats = poll_for("the service stats to count the jobs", WITHIN, || {
        let nats = nats.clone();
        async move {
            let reply = nats.request("$SRV.STATS.jetwork", "".into()).await.ok()?;
            let stats: serde_json::Value = serde_json::from_slice(&reply.payload).ok()?;
            let data = stats["endpoints"].as_array()?.first()?["data"].clone();
            (data["jobs"]["completed"] == 20 && data["jobs"]["failed"] == 1).then_some(data)
        }
    })
    .await?;
    assert_eq!(stats["jobs"]["accepted"], 21, "{stats}");
    assert_eq!(stats["queues"]["default"]["completed"], 20, "{stats}");
    assert!(stats["epoch"].as_u64().unwrap_or(0) > 0, "{stats}");

    tracing::info!("--- the standby exports no leader series");
    let standby = s2.metrics().await?;
    assert_eq!(standby.get("jetwork_master_leader", &[]), Some(0.0));
    assert!(!standby.has("jetwork_queue_completed_total"), "{}", standby.text);

    tracing::info!("--- the worker counts its own runs");
    let worker = scrape_until("the worker's counts", sw, |s| {
        q(s, "jetwork_worker_jobs_completed_total") == 20.0
            && q(s, "jetwork_worker_jobs_failed_total") == f64::from(attempts)
    })
    .await?;
    assert_eq!(q(&worker, "jetwork_worker_jobs_started_total"), 20.0 + f64::from(attempts));
    assert_eq!(q(&worker, "jetwork_worker_job_run_seconds_count"), 20.0 + f64::from(attempts));
    assert_eq!(worker.get("jetwork_worker_registered", &[]), Some(1.0));
    assert_eq!(worker.get("jetwork_worker_slots_busy", &[]), Some(0.0));

    tracing::info!("--- crash the leader: the standby takes over with the journal's counts");
    m1.crash();
    let taken = scrape_until("m2 to lead with the same counts", s2, |s| {
        s.get("jetwork_master_leader", &[]) == Some(1.0)
            && q(s, "jetwork_queue_completed_total") == 20.0
    })
    .await?;
    assert_eq!(q(&taken, "jetwork_queue_failed_total"), 1.0);
    assert_eq!(q(&taken, "jetwork_queue_accepted_total"), 21.0);
    assert!(
        taken.get("jetwork_master_epoch", &[]) > leader.get("jetwork_master_epoch", &[]),
        "a new term, a higher epoch"
    );

    tracing::info!("--- and counts on from there");
    let more = run.submit("after-takeover", b"7").await?;
    run.result(&more, WITHIN).await?;
    scrape_until("the new leader to count the next completion", s2, |s| {
        q(s, "jetwork_queue_completed_total") == 21.0
    })
    .await?;
    run.audit().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_with_no_workers_shows_as_pending() -> anyhow::Result<()> {
    let run = InProcess::build().masters(&[]).start().await?;
    let (_m1, s1) = run.master_observed("m1").await?;
    run.await_leader("m1", WITHIN).await?;
    for i in 0..7 {
        run.submit(&format!("waiting-{i}"), b"1").await?;
    }
    let scrape = scrape_until("7 pending in the never-served queue", s1, |s| {
        s.queue("jetwork_queue_pending", "default") == Some(7.0)
    })
    .await?;
    assert_eq!(scrape.queue("jetwork_queue_submitted_total", "default"), Some(7.0));
    assert!(scrape.queue("jetwork_queue_oldest_pending_seconds", "default").unwrap_or(0.0) > 0.0);
    // What JetworkQueueWithoutWorkers looks at: a backlog, and nobody to serve it.
    assert_eq!(scrape.queue("jetwork_queue_workers", "default"), Some(0.0), "{}", scrape.text);
    run.audit().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_follow_connection_registration_and_leadership() -> anyhow::Result<()> {
    let run = InProcess::build().masters(&[]).start().await?;

    tracing::info!("--- a master that cannot reach NATS is neither alive nor ready");
    let (listener, addr) = jetwork_tests::local_listener().await?;
    let mut unreachable = run.fast.master.clone();
    unreachable.nats.url = format!("nats://127.0.0.1:{}", jetwork_tests::nats_server::free_port()?);
    let _lost = jetwork_tests::inproc::spawn_master_with("lost", unreachable, Some(listener));
    let lost = Scraper { addr };
    wait_until("the unconnected master's listener", WITHIN, || async {
        lost.status("/healthz").await == 503
    })
    .await?;
    assert_eq!(lost.status("/readyz").await, 503);

    tracing::info!("--- a worker with no master: alive, not ready");
    let (_w1, sw) = run.worker_observed("w1", jetwork_worker::square).await?;
    wait_until("the worker to be alive", WITHIN, || async { sw.status("/healthz").await == 200 })
        .await?;
    assert_eq!(sw.status("/readyz").await, 503, "not registered with any leader yet");

    tracing::info!("--- a leader is ready, then the worker registers and is ready");
    let (_m1, s1) = run.master_observed("m1").await?;
    wait_until("the leader to be ready", WITHIN, || async { s1.status("/readyz").await == 200 })
        .await?;
    wait_until("the worker to be ready", WITHIN, || async { sw.status("/readyz").await == 200 })
        .await?;
    let page = sw.get("/readyz").await?;
    assert!(page.body.contains("registered"), "{}", page.body);

    tracing::info!("--- a standby is ready (able to take over) but does not lead");
    let (_m2, s2) = run.master_observed("m2").await?;
    wait_until("the standby to be ready", WITHIN, || async { s2.status("/readyz").await == 200 })
        .await?;
    let page = s2.get("/readyz").await?;
    assert!(page.body.contains("standing by"), "{}", page.body);
    assert_eq!(s2.metrics().await?.get("jetwork_master_leader", &[]), Some(0.0));
    assert_eq!(s2.get("/nothing").await?.status, 404);
    run.audit().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_plain_fields() -> anyhow::Result<()> {
    let run = InProcess::build().masters(&[]).start().await?;
    let mut procs = run.procs()?;
    procs.set("JETWORK_LOG__FORMAT", "json").set("RUST_LOG", "info,jetwork_master=debug");
    let _m1 = procs.master("m1")?;
    let w1 = procs.worker("w1", &["--log-format", "json", "--queue", "default"])?;
    let id = run.submit("logged", b"6").await?;
    run.result(&id, WITHIN).await?;
    let bad = run.submit("logged-bad", b"x").await?;
    assert_eq!(run.result(&bad, WITHIN).await?.status, ResultStatus::Failed);
    let parsed = |text: String| -> anyhow::Result<Vec<serde_json::Value>> {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(|e| anyhow::anyhow!("{e}: {l}")))
            .collect()
    };
    let master_dir = procs.dir().join("m1.log");
    let master = poll_for("the master's debug line for the completion", WITHIN, || {
        let path = master_dir.clone();
        async move {
            let lines = parsed(std::fs::read_to_string(path).ok()?).ok()?;
            lines.into_iter().find(|l| {
                l["fields"]["message"] == "work completed" && l["fields"]["work_id"] == "logged"
            })
        }
    })
    .await?;
    let fields = &master["fields"];
    assert_eq!(fields["queue"], "default", "{master}");
    assert_eq!(fields["attempt"], 1, "{master}");
    assert_eq!(fields["worker"], "w1", "{master}");
    let worker = parsed(w1.logs())?;
    let started = worker
        .iter()
        .find(|l| l["fields"]["message"].as_str().is_some_and(|m| m.starts_with("worker starting")))
        .ok_or_else(|| anyhow::anyhow!("no start line in {worker:?}"))?;
    assert_eq!(started["fields"]["worker"], "w1", "{started}");
    // The worker's line about a failed attempt names it in plain fields.
    let failed = worker
        .iter()
        .find(|l| l["fields"]["work_id"] == "logged-bad" && l["level"] == "WARN")
        .ok_or_else(|| anyhow::anyhow!("no failure line in {worker:?}"))?;
    let fields = &failed["fields"];
    assert_eq!(fields["queue"], "default", "{failed}");
    assert_eq!(fields["attempt"], 1, "{failed}");
    assert_eq!(fields["worker"], "w1", "{failed}");
    run.audit().await?;
    Ok(())
}

/// The JSON lines of the log at `path` with message `message` about work id `id`.
fn log_lines(path: &std::path::Path, message: &str, id: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["fields"]["message"] == message && l["fields"]["work_id"] == id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_logs_each_outcome_that_is_not_a_success_at_info() -> anyhow::Result<()> {
    let run = InProcess::build().masters(&[]).start().await?;
    let mut procs = run.procs()?;
    // Info, as an operator runs it: these lines must not need debug.
    procs.set("JETWORK_LOG__FORMAT", "json").set("RUST_LOG", "info");
    let _m1 = procs.master("m1")?;
    run.await_leader("m1", WITHIN).await?;
    let _w1 = procs.worker("w1", &["--queue", "default"])?;
    let client = &run.client;

    tracing::info!("--- failed for good, cancelled, expired, rejected");
    let bad = run.submit("fails-for-good", b"x").await?;
    let failed = run.result(&bad, WITHIN).await?;
    assert_eq!(failed.status, ResultStatus::Failed);
    let delay = |d: &str| (jetwork_shared::job_options::DELAY, d.to_owned());
    let cancelled = WorkId::parse("cancelled-while-waiting")?;
    client.submit_with(&run.queue, Some(cancelled.clone()), "1".into(), &[delay("1h")]).await?;
    // Cancellable once the leader has read it.
    poll_for("the cancel to be accepted", WITHIN, || async {
        client.cancel(&cancelled, Some("no longer needed".into())).await.ok()
    })
    .await?;
    let expiring = [delay("1h"), (jetwork_shared::job_options::EXPIRES, "1s".to_owned())];
    let expired = WorkId::parse("expired-while-delayed")?;
    client.submit_with(&run.queue, Some(expired.clone()), "2".into(), &expiring).await?;
    let bad_option = [(jetwork_shared::job_options::PRIORITY, "11".to_owned())];
    let rejected = WorkId::parse("rejected-priority")?;
    client.submit_with(&run.queue, Some(rejected.clone()), "3".into(), &bad_option).await?;
    // (A rejection is published by sequence, not under the id: its line is awaited below.)
    for id in [&cancelled, &expired] {
        let outcome = run.result(id, WITHIN).await?;
        assert_ne!(outcome.status, ResultStatus::Completed, "{id}: {outcome:?}");
    }

    tracing::info!("--- each is one line in the master's log, with plain fields");
    let log = procs.dir().join("m1.log");
    let line = |message: &'static str, id: &WorkId| {
        let (log, id) = (log.clone(), id.to_string());
        async move {
            let what = format!("the master's {message:?} line for {id}");
            let found = poll_for(&what, WITHIN, || {
                let found = log_lines(&log, message, &id);
                async move { (!found.is_empty()).then_some(found) }
            })
            .await?;
            anyhow::ensure!(found.len() == 1, "one line each: {found:?}");
            anyhow::Ok(found[0].clone())
        }
    };
    let l = line("work failed for good", &bad).await?;
    assert_eq!(l["level"], "INFO", "{l}");
    let f = &l["fields"];
    assert_eq!(f["queue"], "default", "{l}");
    assert_eq!(f["attempts"], failed.attempt, "{l}");
    assert_eq!(f["worker"], "w1", "{l}");
    assert_eq!(f["reason"].as_str(), failed.reason.as_deref(), "{l}");

    let l = line("work cancelled", &cancelled).await?;
    assert_eq!(l["level"], "INFO", "{l}");
    let f = &l["fields"];
    assert_eq!((&f["queue"], &f["attempts"]), (&"default".into(), &0.into()), "{l}");
    assert!(f["reason"].as_str().is_some_and(|r| r.contains("no longer needed")), "{l}");

    let l = line("work expired", &expired).await?;
    assert_eq!(l["level"], "INFO", "{l}");
    assert_eq!(l["fields"]["queue"], "default", "{l}");
    assert!(l["fields"]["reason"].as_str().is_some_and(|r| r.starts_with("expired")), "{l}");

    // A client's mistake: a warning, with the id it sent.
    let l = line("submission rejected", &rejected).await?;
    assert_eq!(l["level"], "WARN", "{l}");
    assert_eq!(l["fields"]["queue"], "default", "{l}");
    assert!(l["fields"]["reason"].as_str().is_some_and(|r| r.contains("Priority")), "{l}");

    tracing::info!("--- the takeover line says what an epoch is");
    let text = std::fs::read_to_string(&log)?;
    let leading: serde_json::Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| {
            l["fields"]["message"].as_str().is_some_and(|m| m.starts_with("leading in epoch"))
        })
        .ok_or_else(|| anyhow::anyhow!("no takeover line in {text}"))?;
    let f = &leading["fields"];
    assert!(f["epoch"].as_u64().is_some_and(|e| e > 0), "{leading}");
    assert_eq!(f["previous_epoch"], 0, "a new journal: {leading}");
    assert!(f["message"].as_str().is_some_and(|m| m.contains("renewal")), "{leading}");
    run.audit().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_without_a_leader_names_the_lease_holder() -> anyhow::Result<()> {
    let run = InProcess::build().start().await?;
    run.await_leader("m1", WITHIN).await?;
    let procs = run.procs()?;

    tracing::info!(
        "--- freeze the leader's term: write a lease naming a holder that serves nothing"
    );
    let mut run = run;
    run.crash_masters();
    let kv = run.js.get_key_value(jetwork_shared::subjects::LEASE_BUCKET).await?;
    let holder = LeaseHolder { holder: "ghost-1234".into(), epoch: 999 };
    // The crashed leader's key expires within the lease TTL; take it over by hand then.
    wait_until("a free lease to write a ghost holder into", WITHIN, || {
        let kv = kv.clone();
        let value: Bytes = serde_json::to_vec(&holder).unwrap_or_default().into();
        async move { kv.create(jetwork_shared::subjects::LEASE_KEY, value).await.is_ok() }
    })
    .await?;
    // The ghost renews its lease (a leader too busy to answer): the key would expire after
    // the fast set-up's 2 s TTL, which a loaded machine can spend starting the CLI.
    let renewing = tokio::spawn({
        let kv = kv.clone();
        let value: Bytes = serde_json::to_vec(&holder)?.into();
        async move {
            let mut every = tokio::time::interval(Duration::from_millis(300));
            loop {
                every.tick().await;
                let _ = kv.put(jetwork_shared::subjects::LEASE_KEY, value.clone()).await;
            }
        }
    });

    let (ok, text) = procs.frontend(&["status"]).await?;
    assert!(!ok, "status cannot succeed without a leader: {text}");
    assert!(text.contains("no master answered status"), "{text}");
    assert!(text.contains("ghost-1234") && text.contains("999"), "{text}");

    let (ok, text) =
        procs.frontend(&["status", "--watch", "--interval", "200ms", "--count", "2"]).await?;
    assert!(ok, "{text}");
    assert!(text.contains("no master answered status"), "{text}");
    assert!(text.contains("ghost-1234"), "{text}");
    assert!(text.contains("unless renewed"), "{text}");
    renewing.abort();
    run.audit().await?;
    Ok(())
}

/// Every `jetwork_…` name in the Grafana dashboard, the alert rules and their unit tests.
fn deploy_metric_names() -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let files = [
        "grafana/jetwork.json",
        "prometheus/jetwork.rules.yml",
        "prometheus/jetwork.rules.test.yml",
    ];
    let mut names = std::collections::BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(deploy.join(file))
            .map_err(|e| anyhow::anyhow!("cannot read deploy/{file}: {e}"))?;
        let mut rest = text.as_str();
        while let Some(at) = rest.find("jetwork_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(tail.len());
            names.entry(tail[..end].to_owned()).or_insert_with(|| file.to_owned());
            rest = &tail[end..];
        }
    }
    Ok(names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_assets_name_only_exported_metrics() -> anyhow::Result<()> {
    let names = deploy_metric_names()?;
    // Not vacuous: the alerts' own series are among them.
    for needed in ["jetwork_master_leader", "jetwork_queue_workers", "jetwork_build_info"] {
        assert!(names.contains_key(needed), "{needed} not found in deploy/: {names:?}");
    }

    let run = InProcess::build().masters(&[]).start().await?;
    let (_m1, sm) = run.master_observed("m1").await?;
    run.await_leader("m1", WITHIN).await?;
    let (_w1, sw) = run.worker_observed("w1", jetwork_worker::square).await?;
    let good = run.submit("scraped", b"3").await?;
    run.result(&good, WITHIN).await?;
    let q = |s: &Scrape, name: &str| s.queue(name, "default");
    // Every series, the per-queue ones included, once the leader has synced the queue.
    let master = scrape_until("the leader to count the job and its worker", sm, |s| {
        q(s, "jetwork_queue_completed_total") == Some(1.0)
            && q(s, "jetwork_queue_workers") == Some(1.0)
    })
    .await?;
    let worker = scrape_until("the worker to count the job", sw, |s| {
        q(s, "jetwork_worker_jobs_completed_total") == Some(1.0)
    })
    .await?;

    tracing::info!("--- jetwork_build_info on both, with the version and the journal format");
    let version = env!("CARGO_PKG_VERSION");
    let format = jetwork_master::journal::FORMAT.to_string();
    let master_build =
        [("component", "master"), ("version", version), ("journal_format", format.as_str())];
    assert_eq!(master.get("jetwork_build_info", &master_build), Some(1.0), "{}", master.text);
    let worker_build = [("component", "worker"), ("version", version)];
    assert_eq!(worker.get("jetwork_build_info", &worker_build), Some(1.0), "{}", worker.text);

    tracing::info!("--- every name the dashboard and the rules use is exported");
    let missing: Vec<String> = names
        .iter()
        .filter(|(name, _)| !master.has(name) && !worker.has(name))
        .map(|(name, file)| format!("{name} (deploy/{file})"))
        .collect();
    assert!(
        missing.is_empty(),
        "not exported by a master or a worker: {missing:?}\nmaster:\n{}\nworker:\n{}",
        master.text,
        worker.text
    );
    run.audit().await?;
    Ok(())
}
