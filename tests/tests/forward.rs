//! `--forward`: a worker whose jobs are answered by a NATS service, here plain async-nats
//! subscribers in a queue group, as a service in any language would be. Results, failures
//! (micro-service errors, `Jetwork-Status: failed`, for good or not), timeouts, progress on
//! the per-attempt subject, the headers a responder sees, a worker that takes no work while no
//! responder is there (and resumes when one is), a responder that disappears mid-job, and the
//! shipped `nats.conf` roles.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{HeaderMap, Message};
use bytes::Bytes;
use futures::StreamExt;
use jetwork_frontend::ResultStatus;
use jetwork_master::core::Event;
use jetwork_shared::{clock, connect, headers, WorkId};
use jetwork_tests::{shipped_nats_conf, wait_until, Audit, InProcess, Scraper};
use jetwork_worker::{Forward, WorkerSettings};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(40);
const SERVICE: &str = "jetwork.svc.test";

/// A responder: a task serving [`SERVICE`] in the queue group `svc`, running `handle` for
/// every request (each in a task of its own, so a slow one holds up no other). Dropping it
/// ends the task and its subscription: the service is gone.
struct Responder(JoinHandle<()>);

impl Drop for Responder {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn serve<F, Fut>(nats: &async_nats::Client, handle: F) -> anyhow::Result<Responder>
where
    F: Fn(async_nats::Client, Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut requests = nats.queue_subscribe(SERVICE, "svc".to_owned()).await?;
    let (nats, handle) = (nats.clone(), Arc::new(handle));
    Ok(Responder(tokio::spawn(async move {
        let mut running = tokio::task::JoinSet::new();
        while let Some(request) = requests.next().await {
            let (nats, handle) = (nats.clone(), handle.clone());
            running.spawn(async move {
                if let Err(e) = handle(nats, request).await {
                    tracing::warn!(error = %e, "the test responder failed");
                }
            });
        }
    })))
}

/// Answers `request` with `payload` and these headers.
async fn answer(
    nats: &async_nats::Client,
    request: &Message,
    pairs: &[(&str, &str)],
    payload: impl Into<Bytes>,
) -> anyhow::Result<()> {
    let reply = request.reply.clone().ok_or_else(|| anyhow::anyhow!("a request without reply"))?;
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.insert(*name, *value);
    }
    nats.publish_with_headers(reply, h, payload.into()).await?;
    Ok(())
}

/// A header of a request, as text.
fn header<'a>(request: &'a Message, name: &str) -> &'a str {
    request.headers.as_ref().and_then(|h| h.get(name)).map_or("", |v| v.as_str())
}

/// The `--forward` handler a worker of `run` would use, on a connection of its own made with
/// `settings`.
async fn forwarder(settings: &WorkerSettings) -> anyhow::Result<Forward> {
    let nats = connect::connect(&settings.nats, "test forward").await?;
    Ok(Forward::new(nats, SERVICE)?)
}

/// Why attempt `attempt` of `id` was re-queued, per the journal.
fn requeue_reason(audit: &Audit, id: &WorkId, attempt: u32) -> String {
    audit
        .events
        .iter()
        .find_map(|(_, _, e)| match e {
            Event::WorkRequeued { work_id, attempt: a, reason, .. }
                if work_id == id && *a == attempt =>
            {
                Some(reason.clone())
            }
            _ => None,
        })
        .unwrap_or_default()
}

/// Waits until the worker's `/readyz` says it takes no work because of no responders.
async fn await_paused(scraper: &Scraper) -> anyhow::Result<()> {
    wait_until("the worker to pause: no responders", WAIT, || async {
        scraper
            .get("/readyz")
            .await
            .is_ok_and(|p| p.status != 200 && p.body.contains("no responders"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_answers_the_jobs_and_sees_their_headers() -> anyhow::Result<()> {
    let run = InProcess::start(|_| {}).await?;
    let service = run.server.connect().await?;
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<Message>();
    let _responder = serve(&service, move |nats, request| {
        let seen = seen_tx.clone();
        async move {
            let text = String::from_utf8_lossy(&request.payload).to_uppercase();
            answer(&nats, &request, &[], format!("{text}!")).await?;
            let _ = seen.send(request);
            Ok(())
        }
    })
    .await?;
    let tune = |s: &mut WorkerSettings| {
        s.worker.concurrency = 4;
        s.nats.inbox_prefix = Some("_INBOX_fwd".to_owned());
    };
    let mut settings = run.fast.worker.clone();
    tune(&mut settings);
    let _worker = run.worker_with("fwd", tune, forwarder(&settings).await?);

    let submitted = clock::now_ms();
    let mut ids = Vec::new();
    for n in 0..20 {
        let id = WorkId::parse(&format!("job-{n}"))?;
        let payload = Bytes::from(format!("hello {n}"));
        run.client.submit(&run.queue, Some(id.clone()), payload).await?;
        ids.push(id);
    }
    let audit = run.completed(&ids, WAIT).await?;
    for (n, id) in ids.iter().enumerate() {
        let stored = &audit.results[id][0];
        assert_eq!(stored.payload, format!("HELLO {n}!").as_bytes(), "{id}");
        assert_eq!(stored.attempt, 1, "{id}");
    }

    tracing::info!("--- every request carried the job's headers");
    let timeout = clock::millis(run.fast.master.master.work_timeout);
    let mut progress_subjects = Vec::new();
    for _ in 0..ids.len() {
        let request = seen.recv().await.ok_or_else(|| anyhow::anyhow!("a request went unseen"))?;
        let id = header(&request, headers::WORK_ID);
        assert!(ids.iter().any(|i| i.as_str() == id), "{id:?}");
        assert_eq!(request.payload, format!("hello {}", &id[4..]).as_bytes());
        assert_eq!(header(&request, headers::QUEUE), "default");
        assert_eq!(header(&request, headers::ATTEMPT), "1");
        let deadline: u64 = header(&request, headers::DEADLINE).parse()?;
        assert!(
            deadline > submitted && deadline <= clock::now_ms() + timeout,
            "deadline {deadline}, submitted at {submitted}"
        );
        let progress = header(&request, headers::PROGRESS);
        assert!(progress.starts_with("_INBOX_fwd."), "{progress:?}");
        let reply = request.reply.as_ref().map_or("", |r| r.as_str());
        assert!(reply.starts_with("_INBOX_fwd."), "{reply:?}");
        progress_subjects.push(progress.to_owned());
    }

    tracing::info!("--- each attempt's inbox was given up when it ended");
    for subject in progress_subjects {
        let err = service.request(subject.clone(), Bytes::new()).await.unwrap_err();
        assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders, "{subject}: {err}");
    }
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_errors_fail_the_attempt_and_client_errors_the_job() -> anyhow::Result<()> {
    let run = InProcess::start(|_| {}).await?;
    let service = run.server.connect().await?;
    let _responder = serve(&service, |nats, request| async move {
        let first = header(&request, headers::ATTEMPT) == "1";
        let error =
            |code| [("Nats-Service-Error", "it went wrong"), ("Nats-Service-Error-Code", code)];
        match &request.payload[..] {
            b"500" if first => answer(&nats, &request, &error("500"), "").await,
            b"400" => answer(&nats, &request, &error("400"), "").await,
            b"failed" if first => {
                answer(&nats, &request, &[(headers::STATUS, "failed")], "disk full").await
            }
            b"refused" => {
                let refuse = [(headers::STATUS, "failed"), (headers::NON_RETRYABLE, "true")];
                answer(&nats, &request, &refuse, "not an image").await
            }
            _ => answer(&nats, &request, &[], "done").await,
        }
    })
    .await?;
    let _worker = run.worker("fwd", forwarder(&run.fast.worker).await?);

    let retried_500 = run.submit("e500", b"500").await?;
    let failed_400 = run.submit("e400", b"400").await?;
    let retried_failed = run.submit("failed", b"failed").await?;
    let refused = run.submit("refused", b"refused").await?;

    tracing::info!("--- 500 and a plain failure: the attempt fails, the next one completes");
    for id in [&retried_500, &retried_failed] {
        let result = run.result(id, WAIT).await?;
        assert_eq!((result.status, result.attempt), (ResultStatus::Completed, 2), "{id}");
        assert_eq!(result.payload, Bytes::from_static(b"done"));
    }
    tracing::info!("--- 400 and a non-retryable failure: the job fails for good, with the reason");
    for (id, why) in [(&failed_400, "400 it went wrong"), (&refused, "not an image")] {
        let result = run.result(id, WAIT).await?;
        assert_eq!((result.status, result.attempt), (ResultStatus::Failed, 1), "{id}");
        let reason = result.reason.unwrap_or_default();
        assert!(reason.contains(why) && reason.contains(SERVICE), "{id}: {reason}");
    }
    let audit = run.audit().await?;
    assert_eq!(audit.attempts(&retried_500), vec![1, 2]);
    assert_eq!(audit.attempts(&failed_400), vec![1]);
    assert_eq!(audit.attempts(&refused), vec![1]);
    let why = requeue_reason(&audit, &retried_500, 1);
    assert!(why.contains("500 it went wrong"), "{why}");
    let why = requeue_reason(&audit, &retried_failed, 1);
    assert!(why.contains("disk full"), "{why}");
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_service_times_the_attempt_out_and_it_is_retried() -> anyhow::Result<()> {
    // A 10s work timeout: the worker gives up 1s before the master would, time enough for its
    // failure to arrive first on a loaded machine.
    let run =
        InProcess::start(|fast| fast.master.master.work_timeout = Duration::from_secs(10)).await?;
    let service = run.server.connect().await?;
    // Attempt 1 gets no answer at all (well past the work timeout); attempt 2 at once.
    let _responder = serve(&service, |nats, request| async move {
        if header(&request, headers::ATTEMPT) == "1" {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        answer(&nats, &request, &[], "late but done").await
    })
    .await?;
    let _worker = run.worker("fwd", forwarder(&run.fast.worker).await?);
    let id = run.submit("slow", b"").await?;
    let result = run.result(&id, WAIT).await?;
    assert_eq!((result.status, result.attempt), (ResultStatus::Completed, 2));
    let audit = run.audit().await?;
    assert_eq!(audit.attempts(&id), vec![1, 2]);
    // The worker's own reason, not the master's "timed out on worker": it gave up first.
    let why = requeue_reason(&audit, &id, 1);
    assert!(
        why.contains(&format!("no reply from {SERVICE} within the attempt's deadline")),
        "{why}"
    );
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_from_the_service_keeps_a_long_job_alive() -> anyhow::Result<()> {
    let run = InProcess::start(|_| {}).await?;
    let service = run.server.connect().await?;
    // Runs 7s, well past the 3s work timeout, sending progress every half second; a message
    // elsewhere in the attempt's inbox is ignored.
    let _responder = serve(&service, |nats, request| async move {
        let progress = header(&request, headers::PROGRESS).to_owned();
        let stranger = progress.replace(".progress", ".other");
        nats.publish(stranger, Bytes::from_static(b"ignore me")).await?;
        for _ in 0..14 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            nats.publish(progress.clone(), Bytes::from_static(b"any text")).await?;
        }
        answer(&nats, &request, &[], "long job done").await
    })
    .await?;
    let _worker = run.worker("fwd", forwarder(&run.fast.worker).await?);
    let id = run.submit("long", b"").await?;
    let result = run.result(&id, WAIT).await?;
    assert_eq!((result.status, result.attempt), (ResultStatus::Completed, 1));
    assert_eq!(result.payload, Bytes::from_static(b"long job done"));
    let audit = run.audit().await?;
    assert_eq!(audit.attempts(&id), vec![1]);
    let progressed = audit
        .events
        .iter()
        .filter(|(_, _, e)| matches!(e, Event::WorkProgressed { work_id, .. } if *work_id == id))
        .count();
    assert!(progressed >= 4, "the deadline moved {progressed} times");
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_responders_the_worker_waits_and_takes_no_work() -> anyhow::Result<()> {
    // A long work timeout: the first job waits for the service within one attempt.
    let run =
        InProcess::start(|fast| fast.master.master.work_timeout = Duration::from_secs(20)).await?;
    let tune = |s: &mut WorkerSettings| s.worker.concurrency = 4;
    let (_worker, scraper) =
        run.worker_observed_with("fwd", tune, forwarder(&run.fast.worker).await?).await?;

    tracing::info!("--- no service yet: the first job meets no responders, the worker pauses");
    let first = run.submit("first", b"1").await?;
    await_paused(&scraper).await?;
    let later = [run.submit("second", b"2").await?, run.submit("third", b"3").await?];

    tracing::info!("--- for two seconds (four ready notices), the worker asks for nothing");
    let js = run.js.clone();
    let window = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < window {
        let audit = Audit::read(&js).await?;
        for id in &later {
            assert!(audit.attempts(id).is_empty(), "{id} was handed out while paused");
        }
        assert_eq!(audit.attempts(&first), vec![1]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    tracing::info!("--- the service comes up: every job completes at its first attempt");
    let service = run.server.connect().await?;
    let _responder =
        serve(&service, |nats, request| async move { answer(&nats, &request, &[], "ok").await })
            .await?;
    let mut ids = vec![first];
    ids.extend(later);
    let audit = run.completed(&ids, WAIT).await?;
    for id in &ids {
        assert_eq!(audit.attempts(id), vec![1], "{id} burnt an attempt");
    }
    wait_until("the worker to be ready again", WAIT, || async {
        scraper.status("/readyz").await == 200
    })
    .await?;
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_goes_away_mid_job_is_waited_for() -> anyhow::Result<()> {
    // An 8s work timeout: the worker gives up 800 ms before the master would (see above).
    let run = InProcess::start(|fast| {
        fast.master.master.max_attempts = 10;
        fast.master.master.work_timeout = Duration::from_secs(8);
    })
    .await?;
    let (_worker, scraper) =
        run.worker_observed_with("fwd", |_| {}, forwarder(&run.fast.worker).await?).await?;
    let service = run.server.connect().await?;
    let (got_tx, mut got) = mpsc::unbounded_channel::<()>();
    let first = serve(&service, move |nats, request| {
        let got = got_tx.clone();
        async move {
            if &request.payload[..] == b"hang" {
                let _ = got.send(());
                return std::future::pending().await;
            }
            answer(&nats, &request, &[], "first").await
        }
    })
    .await?;
    let quick = run.submit("quick", b"").await?;
    run.result(&quick, WAIT).await?;

    tracing::info!("--- the service takes a job and disappears with it");
    let hang = run.submit("hang", b"hang").await?;
    tokio::time::timeout(WAIT, got.recv()).await?;
    drop(first);

    tracing::info!("--- attempt 1 times out; attempt 2 meets no responders and waits");
    await_paused(&scraper).await?;
    tracing::info!("--- its deadline comes: it fails, and the worker takes one job to probe with");
    let js = run.js.clone();
    wait_until("attempt 3 to be handed out", WAIT, || async {
        Audit::read(&js).await.is_ok_and(|a| a.attempts(&hang).len() == 3)
    })
    .await?;
    let _second =
        serve(
            &service,
            |nats, request| async move { answer(&nats, &request, &[], "second").await },
        )
        .await?;
    let result = run.result(&hang, WAIT).await?;
    assert_eq!((result.payload, result.attempt), (Bytes::from_static(b"second"), 3));
    let audit = run.audit().await?;
    assert_eq!(audit.attempts(&hang), vec![1, 2, 3]);
    let why = requeue_reason(&audit, &hang, 1);
    assert!(why.contains("no reply from"), "{why}");
    let why = requeue_reason(&audit, &hang, 2);
    assert!(why.contains(&format!("no responders on {SERVICE}")), "{why}");
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_roles_forward_with_progress() -> anyhow::Result<()> {
    let run = InProcess::build()
        .config(&shipped_nats_conf()?)
        .tune(|fast| {
            let login = |nats: &mut jetwork_shared::config::NatsConfig, user: &str, pw: &str| {
                nats.user = Some(user.to_owned());
                nats.password = Some(pw.to_owned());
                nats.inbox_prefix = Some(format!("_INBOX_{user}"));
            };
            login(&mut fast.master.nats, "master", "master-local");
            login(&mut fast.frontend.nats, "client", "client-local");
            login(&mut fast.worker.nats, "worker-1", "worker-1-local");
        })
        .audit_as("admin", "admin-local")
        .client_after_streams()
        .start()
        .await?;
    let service = async_nats::ConnectOptions::with_user_and_password(
        "responder".to_owned(),
        "responder-local".to_owned(),
    )
    .custom_inbox_prefix("_INBOX_responder")
    .connect(run.server.url())
    .await?;
    // Past the 3s work timeout, alive only through its progress (published into worker-1's
    // inbox) and answered through the reply permission.
    let _responder = serve(&service, |nats, request| async move {
        let progress = header(&request, headers::PROGRESS).to_owned();
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            nats.publish(progress.clone(), Bytes::new()).await?;
        }
        answer(&nats, &request, &[], "done as responder").await
    })
    .await?;
    let _worker = run.worker("worker-1", forwarder(&run.fast.worker).await?);
    let id = run.submit("roles", b"").await?;
    let result = run.result(&id, WAIT).await?;
    assert_eq!((result.payload, result.attempt), (Bytes::from_static(b"done as responder"), 1));
    let log = std::fs::read_to_string(run.server.log_path())?;
    let violations: Vec<_> = log.lines().filter(|l| l.contains("Permissions Violation")).collect();
    assert!(violations.is_empty(), "{violations:#?}");
    run.stop().await;
    Ok(())
}
