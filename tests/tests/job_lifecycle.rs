//! The job lifecycle end to end: failures back off before the next attempt, a permanent
//! failure ends the job at once, every outcome carries its attempt history and (when it did
//! not complete) the submitted payload, an operator can cancel a job wherever it is (its
//! worker is told to stop, and a late result changes nothing), retry a failed or cancelled one
//! under its id, retry every failed job of a queue at once (the dead-letter replay), purge a
//! queue's pending work (held and unread, across a takeover), and pause a queue (which stays
//! paused across a takeover).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use jetwork_frontend::{Client, ResultStatus, WorkResult};
use jetwork_master::config::QueueConfig;
use jetwork_shared::jobs::{
    AttemptOutcome, BulkRetry, JobInfo, JobState, JobsPage, JobsQuery, Revoke,
};
use jetwork_shared::protocol::{OutcomeStatus, ReportReply, VerdictKind};
use jetwork_shared::{codec, headers, subjects, QueueName, WorkId};
use jetwork_tests::manual::ManualWorker;
use jetwork_tests::{poll_for, InProcess};
use jetwork_worker::{Job, JobError, ShellCommand};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(40);

/// Waits until the master reports `id` in `state`.
async fn job_in(client: &Client, id: &WorkId, state: JobState) -> anyhow::Result<JobInfo> {
    let what = format!("{id} to be {}", state.as_str());
    poll_for(&what, WAIT, || async {
        client.job(id, None).await.ok().filter(|info| info.state == state)
    })
    .await
}

/// The headers `id`'s newest outcome is stored with, read back from the results stream.
async fn stored_headers(run: &InProcess, id: &WorkId) -> anyhow::Result<async_nats::HeaderMap> {
    let results = run.js.get_stream_no_info(subjects::RESULTS_STREAM).await?;
    let subject = subjects::stored_result(&run.queue, id);
    Ok(results.get_last_raw_message_by_subject(&subject).await?.headers)
}

/// Waits for the stored result of a run of `id` submitted after `seq` (a retry's, not the run
/// at `seq`).
async fn result_after(run: &InProcess, id: &WorkId, seq: u64) -> anyhow::Result<WorkResult> {
    poll_for(&format!("a run of {id} after submission {seq} to finish"), WAIT, || async {
        let stored = run.client.result(Some(&run.queue), id).await.ok().flatten();
        stored.filter(|result| result.submit_seq > seq)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_back_off_and_the_outcome_carries_the_history() -> anyhow::Result<()> {
    let run = InProcess::start(|fast| {
        let m = &mut fast.master.master;
        m.max_attempts = 3;
        (m.backoff_initial, m.backoff_max) = (Duration::from_millis(400), Duration::from_secs(2));
        m.backoff_jitter = false;
    })
    .await?;
    let _worker = run.worker("w1", |job: Job| async move {
        match &job.payload[..] {
            b"bad" => Err(JobError::permanent("no such customer")),
            _ => Err(format!("disk full (attempt {})", job.attempt).into()),
        }
    });
    let id = run.submit("backs-off", b"the payload").await?;
    let result = run.result(&id, WAIT).await?;
    assert_eq!((result.status, result.attempt), (ResultStatus::Failed, 3));
    assert_eq!(result.payload, Bytes::from_static(b"the payload"), "a failure keeps the payload");

    tracing::info!("--- the history: three failed attempts, each after its back-off");
    let info = run.client.job(&id, None).await?;
    assert_eq!((info.state, info.attempts), (JobState::Failed, 3));
    let history = &info.history;
    assert_eq!(history.iter().map(|a| a.attempt).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(history
        .iter()
        .all(|a| a.outcome == AttemptOutcome::Failed && a.worker.as_str() == "w1"));
    assert!(history[2].reason.as_deref().unwrap_or("").contains("disk full (attempt 3)"));
    // No jitter: 400 ms after the first failure, then 800 ms after the second.
    for (later, wait) in [(1, 400), (2, 800)] {
        let gap = history[later].started_ms.saturating_sub(history[later - 1].ended_ms);
        assert!(gap >= wait, "attempt {} started {gap} ms after a failure, not {wait}", later + 1);
    }

    tracing::info!("--- a permanent failure ends the job at once");
    let bad = run.submit("bad-input", b"bad").await?;
    let result = run.result(&bad, WAIT).await?;
    assert_eq!((result.status, result.attempt), (ResultStatus::Failed, 1));
    assert!(result.reason.unwrap_or_default().contains("no such customer"));
    let info = run.client.job(&bad, None).await?;
    assert_eq!((info.state, info.history.len()), (JobState::Failed, 1), "{info:?}");
    let stored = stored_headers(&run, &bad).await?;
    assert!(stored.get(headers::HISTORY).is_some(), "a failure's history stays JSON");
    assert!(stored.get(headers::RAN).is_none(), "{stored:?}");
    assert_eq!(run.audit().await?.attempts(&bad), vec![1]);
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_retried_runs_again_under_its_id() -> anyhow::Result<()> {
    let run = InProcess::start(|fast| fast.master.master.max_attempts = 1).await?;
    let calls = Arc::new(AtomicU32::new(0));
    let _worker = run.worker("w1", {
        let calls = calls.clone();
        move |job: Job| {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                match call {
                    0 => Err("the database is down".into()),
                    _ => {
                        Ok(Bytes::from(format!("done: {}", String::from_utf8_lossy(&job.payload))))
                    }
                }
            }
        }
    });
    let id = run.submit("retried", b"order 7").await?;
    let first = run.result(&id, WAIT).await?;
    assert_eq!(first.status, ResultStatus::Failed);

    tracing::info!("--- retry: a new run of the id, from the stored payload");
    let reply = run.client.retry(&id, None).await?;
    assert!(reply.message.contains("runs again"), "{reply:?}");
    let second = result_after(&run, &id, first.submit_seq).await?;
    let seq = second.submit_seq;
    assert_eq!(second.status, ResultStatus::Completed, "{second:?}");
    assert_eq!(second.payload, Bytes::from_static(b"done: order 7"));
    assert_eq!(second.attempt, 2, "the new run's attempts are numbered on from the first run's");
    let info = job_in(&run.client, &id, JobState::Completed).await?;
    assert_eq!(info.submit_seq, seq);

    tracing::info!("--- its one attempt is stored short, and reads back as a history");
    let stored = stored_headers(&run, &id).await?;
    assert!(stored.get(headers::HISTORY).is_none(), "{stored:?}");
    let ran = stored.get(headers::RAN).map(|v| v.as_str().to_owned()).unwrap_or_default();
    assert!(ran.starts_with("w1 "), "{stored:?}");
    let [only] = &info.history[..] else { panic!("one attempt: {:?}", info.history) };
    assert_eq!((only.attempt, only.worker.as_str()), (2, "w1"));
    assert_eq!((only.outcome, only.reason.as_deref()), (AttemptOutcome::Completed, None));
    assert_eq!(ran, format!("w1 {} {}", only.started_ms, only.ended_ms));
    assert!(0 < only.started_ms && only.started_ms <= only.ended_ms, "{only:?}");

    tracing::info!("--- what cannot be retried is refused with a code");
    let again = run.client.retry(&id, None).await.expect_err("a completed job is not retried");
    assert_eq!(again.code(), Some(409), "{again}");
    let unknown = WorkId::parse("never-submitted")?;
    let missing = run.client.retry(&unknown, None).await.expect_err("unknown job");
    assert_eq!(missing.code(), Some(404), "{missing}");
    let nothing = run.client.job(&unknown, None).await.expect_err("unknown job");
    assert_eq!(nothing.code(), Some(404), "{nothing}");
    run.audit().await?;
    run.stop().await;
    Ok(())
}

/// Signals when dropped: how a test sees that a worker stopped a job's future.
struct DropSignal(mpsc::UnboundedSender<()>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_job_stops_it_on_its_worker() -> anyhow::Result<()> {
    let run = InProcess::start(|_| {}).await?;
    let (stopped_tx, mut stopped) = mpsc::unbounded_channel();
    let calls = Arc::new(AtomicU32::new(0));
    let _worker = run.worker("w1", {
        let calls = calls.clone();
        move |job: Job| {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            let signal = DropSignal(stopped_tx.clone());
            async move {
                if call == 0 {
                    // Runs until the worker drops it; progress keeps it from timing out.
                    let _signal = signal;
                    loop {
                        job.progress();
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                Ok(Bytes::from_static(b"second run"))
            }
        }
    });
    let id = run.submit("cancel-me", b"payload").await?;
    job_in(&run.client, &id, JobState::Running).await?;
    run.client.cancel(&id, Some("the customer changed their mind".into())).await?;
    tokio::time::timeout(WAIT, stopped.recv()).await?;

    let result = run.result(&id, WAIT).await?;
    assert_eq!(result.status, ResultStatus::Cancelled);
    assert_eq!(result.payload, Bytes::from_static(b"payload"));
    assert!(result.reason.unwrap_or_default().contains("changed their mind"));
    let info = run.client.job(&id, None).await?;
    assert_eq!(info.state, JobState::Cancelled);
    assert_eq!(info.history.last().map(|a| a.outcome), Some(AttemptOutcome::Cancelled));
    let twice = run.client.cancel(&id, None).await.expect_err("already cancelled");
    assert_eq!(twice.code(), Some(409), "{twice}");

    tracing::info!("--- a cancelled job can be retried");
    run.client.retry(&id, None).await?;
    let again = result_after(&run, &id, result.submit_seq).await?;
    assert_eq!(again.payload, Bytes::from_static(b"second run"));
    run.audit().await?;
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_attempt_is_revoked_and_its_late_result_changes_nothing() -> anyhow::Result<()>
{
    let run = InProcess::start(|_| {}).await?;
    run.await_leader("m1", WAIT).await?;
    let manual = ManualWorker::new(run.server.connect().await?, "manual")?;
    let mut revocations = manual.nats.subscribe(subjects::worker_cancel(None, &manual.id)).await?;
    manual.register().await?;
    let id = run.submit("revoked", b"x").await?;
    let assignment = manual.take().await?;
    assert_eq!(assignment.work_id, id);

    run.client.cancel(&id, None).await?;
    let message = tokio::time::timeout(WAIT, revocations.next()).await?.expect("subscribed");
    let revoke: Revoke = codec::decode(&message.payload)?;
    assert_eq!((revoke.work_id, revoke.attempt), (id.clone(), assignment.attempt));

    tracing::info!("--- the worker reports anyway: answered finished, the job stays cancelled");
    let report = manual.report(&id, assignment.attempt, OutcomeStatus::Completed, "late");
    let reply: ReportReply = manual.call(subjects::MASTER_REPORT, &report).await?;
    assert_eq!(reply.verdicts[0].verdict, VerdictKind::Finished);
    assert_eq!(run.result(&id, WAIT).await?.status, ResultStatus::Cancelled);
    assert_eq!(run.client.job(&id, None).await?.state, JobState::Cancelled);
    run.audit().await?;
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_and_waiting_jobs_can_be_cancelled() -> anyhow::Result<()> {
    let run = InProcess::start(|fast| {
        let m = &mut fast.master.master;
        (m.backoff_initial, m.backoff_max) = (Duration::from_secs(60), Duration::from_secs(60));
    })
    .await?;
    run.await_leader("m1", WAIT).await?;
    tracing::info!("--- ready: read by the master, its queue paused");
    let queue = QueueName::default_queue();
    let ready = run.submit("never-runs", b"").await?;
    run.client.pause(&queue, true).await?;
    let _worker = run.worker("w1", |_job: Job| async move { Err("flaky".into()) });
    job_in(&run.client, &ready, JobState::Ready).await?;
    run.client.cancel(&ready, None).await?;
    assert_eq!(run.result(&ready, WAIT).await?.status, ResultStatus::Cancelled);

    tracing::info!("--- waiting: failed once, backing off for a minute");
    run.client.pause(&queue, false).await?;
    let waiting = run.submit("backing-off", b"").await?;
    let info = job_in(&run.client, &waiting, JobState::Waiting).await?;
    assert!(info.ready_at_ms.is_some(), "a waiting job says when it is ready");
    run.client.cancel(&waiting, None).await?;
    assert_eq!(run.result(&waiting, WAIT).await?.status, ResultStatus::Cancelled);

    let audit = run.audit().await?;
    assert!(audit.attempts(&ready).is_empty(), "the cancelled ready job never ran");
    assert_eq!(audit.attempts(&waiting), vec![1], "nor did the waiting one again");
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_stays_paused_across_a_takeover() -> anyhow::Result<()> {
    let mut run = InProcess::start(|_| {}).await?;
    run.await_leader("m1", WAIT).await?;
    let queue = QueueName::default_queue();
    // Paused ahead of its worker: the submission, stored unread, makes the queue known.
    let id = run.submit("held", b"held back").await?;
    run.client.pause(&queue, true).await?;
    let _worker = run.worker("w1", |job: Job| async move { Ok(job.payload) });
    job_in(&run.client, &id, JobState::Ready).await?;

    tracing::info!("--- the leader dies; its successor keeps the queue paused");
    let _m2 = run.master("m2");
    run.crash_masters();
    run.await_leader("m2", WAIT).await?;
    let status = run.client.status().await?;
    let default = status.queues.iter().find(|q| q.queue == queue).expect("the queue is known");
    assert!(default.paused, "paused after the takeover");
    // Time for a hand-out to happen if it were going to: the idle worker's long poll is
    // answered well within this, and the job must still be ready.
    let within = Duration::from_secs(2);
    let ran = poll_for("a hand-out from the paused queue", within, || async {
        run.client.job(&id, None).await.ok().filter(|info| info.state != JobState::Ready)
    })
    .await;
    assert!(ran.is_err(), "a paused queue handed out work: {ran:?}");

    tracing::info!("--- resumed: the job runs");
    run.client.pause(&queue, false).await?;
    assert_eq!(run.result(&id, WAIT).await?.payload, Bytes::from_static(b"held back"));
    run.audit().await?;
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_job_fails_for_good_on_its_exit_code_and_is_killed_when_cancelled(
) -> anyhow::Result<()> {
    let run = InProcess::start(|fast| fast.master.master.max_attempts = 3).await?;
    let dir = tempfile::tempdir()?;
    let pid_file = dir.path().join("pid");
    // Payload `permanent` exits 3, `flaky` exits 4, anything else sleeps (in a grandchild,
    // whose pid it writes down) until it is killed.
    let script = format!(
        r#"read what; case "$what" in permanent) exit 3;; flaky) exit 4;; esac
sleep 300 & echo $! > {}; wait"#,
        pid_file.display()
    );
    let handler = ShellCommand::new(script, 1024).non_retryable_exit_code(Some(3));
    let _worker = run.worker("w1", handler);

    let permanent = run.submit("exit-3", b"permanent\n").await?;
    let result = run.result(&permanent, WAIT).await?;
    assert_eq!((result.status, result.attempt), (ResultStatus::Failed, 1));
    assert!(result.reason.unwrap_or_default().contains("exit status 3"));
    let flaky = run.submit("exit-4", b"flaky\n").await?;
    assert_eq!(run.result(&flaky, WAIT).await?.attempt, 3, "other statuses are retried");

    tracing::info!("--- cancelled: the command's whole process group is killed");
    let sleeper = run.submit("sleeps", b"sleep\n").await?;
    let pid: u32 = poll_for("the command's pid", WAIT, || async {
        std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    })
    .await?;
    job_in(&run.client, &sleeper, JobState::Running).await?;
    run.client.cancel(&sleeper, None).await?;
    poll_for("the grandchild to die", WAIT, || async { (!alive(pid)).then_some(()) }).await?;
    assert_eq!(run.result(&sleeper, WAIT).await?.status, ResultStatus::Cancelled);
    run.audit().await?;
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_job_past_its_timeout_is_killed_before_it_runs_again_on_the_same_worker(
) -> anyhow::Result<()> {
    let run = InProcess::start(|fast| {
        let m = &mut fast.master.master;
        (m.work_timeout, m.max_attempts) = (Duration::from_secs(2), 2);
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let pids = dir.path().join("pids");
    // Every attempt writes down its number and its grandchild's pid, then sleeps far past the
    // timeout (until it is killed).
    let script = format!(r#"sleep 300 & echo "$JETWORK_ATTEMPT $!" >> {}; wait"#, pids.display());
    // Two slots: the re-run could start here beside the first attempt if it were not killed.
    let _worker =
        run.worker_with("w1", |w| w.worker.concurrency = 2, ShellCommand::new(script, 64));
    let started = |attempt: u32| {
        let pids = pids.clone();
        move || {
            let written = std::fs::read_to_string(&pids).unwrap_or_default();
            let pid = written.lines().find_map(|line| {
                let (n, pid) = line.split_once(' ')?;
                (n.parse::<u32>().ok()? == attempt).then(|| pid.parse::<u32>().ok()).flatten()
            });
            async move { pid }
        }
    };

    let id = run.submit("overruns", b"").await?;
    let first = poll_for("attempt 1 to start", WAIT, started(1)).await?;
    poll_for("attempt 2 to start", WAIT, started(2)).await?;
    // Stopped as the re-run is granted: the grant's reply revokes it, and the worker stops any
    // older attempt of an item it is granted again even without that (the abort is carried
    // out by the runtime a moment later, hence the wait; unstopped, it would run 300 s).
    let gone = poll_for("attempt 1 to be killed", Duration::from_secs(2), || async {
        (!alive(first)).then_some(())
    })
    .await;
    assert!(gone.is_ok(), "attempt 1 (pid {first}) still runs beside its re-run");
    let result = run.result(&id, WAIT).await?;
    assert_eq!((result.status, result.attempt), (ResultStatus::Failed, 2), "{result:?}");
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_job_kept_alive_by_progress_every_runs_past_its_timeout() -> anyhow::Result<()> {
    let run = InProcess::start(|fast| {
        let m = &mut fast.master.master;
        (m.work_timeout, m.max_attempts) = (Duration::from_secs(2), 1);
    })
    .await?;
    // The command says nothing; the worker's keepalive reports progress for it every 0.5 s,
    // and each accepted report moves its deadline on, so it is not killed at 2 s.
    let _worker = run.worker_with(
        "w1",
        |w| w.worker.progress_every = Some(Duration::from_millis(500)),
        ShellCommand::new("sleep 5; echo done", 64),
    );
    let id = run.submit("long", b"").await?;
    let result = run.result(&id, WAIT).await?;
    assert_eq!(
        (result.status, result.attempt, result.payload),
        (ResultStatus::Completed, 1, Bytes::from_static(b"done\n")),
        "{:?}",
        result.reason
    );
    run.stop().await;
    Ok(())
}

/// Whether process `pid` runs (a zombie awaiting its reaper does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_listed_by_state_newest_first_with_their_reasons() -> anyhow::Result<()> {
    let run = InProcess::start(|fast| fast.master.master.max_attempts = 1).await?;
    let _worker = run.worker("w1", |job: Job| async move {
        match job.payload.strip_prefix(b"bad ") {
            Some(why) => Err(JobError::permanent(String::from_utf8_lossy(why))),
            None => Ok(job.payload),
        }
    });
    let mut ids = Vec::new();
    for (id, payload) in [
        ("ok-1", &b"1"[..]),
        ("bad-1", b"bad no such customer"),
        ("ok-2", b"2"),
        ("bad-2", b"bad card declined"),
        ("ok-3", b"3"),
    ] {
        let id = WorkId::parse(id)?;
        run.client.submit(&run.queue, Some(id.clone()), Bytes::from_static(payload)).await?;
        // One at a time, so the order of outcomes is the order of submissions.
        run.result(&id, WAIT).await?;
        ids.push(id);
    }
    // A result reaches subscribers as it is stored: wait until the last one reads back.
    job_in(&run.client, &ids[4], JobState::Completed).await?;
    let ids_of = |page: &JobsPage| page.jobs.iter().map(|j| j.work_id.to_string()).collect();
    let list = |state: Option<JobState>, limit: u32| {
        let query = JobsQuery { queue: None, state, limit: Some(limit) };
        let client = &run.client;
        async move { client.jobs(&query).await }
    };

    let failed = list(Some(JobState::Failed), 50).await?;
    assert_eq!(ids_of(&failed), vec!["bad-2".to_owned(), "bad-1".to_owned()]);
    assert!(failed.jobs[0].reason.as_deref().unwrap_or("").contains("card declined"));
    assert_eq!(failed.jobs[1].history.len(), 1, "the history comes with the listing");
    let newest: Vec<String> = ids_of(&list(None, 2).await?);
    assert_eq!(newest, vec!["ok-3".to_owned(), "bad-2".to_owned()], "newest first, limited");
    assert_eq!(list(Some(JobState::Completed), 50).await?.jobs.len(), 3);
    let elsewhere =
        JobsQuery { queue: Some(QueueName::parse("elsewhere")?), state: None, limit: None };
    assert!(run.client.jobs(&elsewhere).await?.jobs.is_empty());

    tracing::info!("--- a retried job is listed by its newest run only");
    let first = run.client.job(&ids[1], None).await?.submit_seq;
    run.client.retry(&ids[1], None).await?;
    let rerun = result_after(&run, &ids[1], first).await?;
    let seq = rerun.submit_seq;
    assert_eq!(rerun.status, ResultStatus::Failed);
    // The result reaches subscribers as it is stored: the listing may lag by a moment.
    let failed = poll_for("the rerun to be listed", WAIT, || async {
        list(Some(JobState::Failed), 50)
            .await
            .ok()
            .filter(|p| p.jobs.first().is_some_and(|j| j.submit_seq == seq))
    })
    .await?;
    assert_eq!(ids_of(&failed), vec!["bad-1".to_owned(), "bad-2".to_owned()], "{failed:?}");

    tracing::info!("--- jobs in flight come first");
    run.client.pause(&run.queue, true).await?;
    let held = run.submit("held", b"4").await?;
    job_in(&run.client, &held, JobState::Ready).await?;
    let all = list(None, 50).await?;
    assert_eq!(all.jobs[0].work_id, held);
    assert_eq!(all.jobs.len(), 6, "one in flight and five finished: {:?}", ids_of(&all));
    let ready = list(Some(JobState::Ready), 50).await?;
    assert_eq!(ids_of(&ready), vec!["held".to_owned()]);

    tracing::info!("--- a job retried and in flight again is listed once, as it is now");
    run.client.retry(&ids[3], None).await?;
    job_in(&run.client, &ids[3], JobState::Ready).await?;
    let all = list(None, 50).await?;
    let listed: Vec<String> = ids_of(&all);
    assert_eq!(listed.iter().filter(|id| *id == "bad-2").count(), 1, "{listed:?}");
    assert_eq!(all.jobs.len(), 6, "two in flight and four finished: {listed:?}");
    let rejected = JobsQuery { state: Some(JobState::Rejected), ..Default::default() };
    let refused = run.client.jobs(&rejected).await.expect_err("rejections are not listed");
    assert_eq!(refused.code(), Some(400), "{refused}");
    run.client.pause(&run.queue, false).await?;
    run.result(&held, WAIT).await?;
    job_in(&run.client, &ids[3], JobState::Failed).await?;
    run.audit().await?;
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_limited_to_two_runs_two_at_a_time_across_workers() -> anyhow::Result<()> {
    let run = InProcess::start(|fast| {
        let limited = QueueConfig { concurrency: Some(2), ..Default::default() };
        fast.master.queues.insert("limited".to_owned(), limited);
    })
    .await?;
    let queue = QueueName::parse("limited")?;
    let (running, most) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let handler = {
        let (running, most) = (running.clone(), most.clone());
        move |job: Job| {
            let (running, most) = (running.clone(), most.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(job.payload)
            }
        }
    };
    let four_slots = |s: &mut jetwork_worker::WorkerSettings| {
        s.worker.queues = vec!["limited".to_owned()];
        s.worker.concurrency = 4;
    };
    let _a = run.worker_with("a", four_slots, handler.clone());
    let _b = run.worker_with("b", four_slots, handler);
    let mut ids = Vec::new();
    for i in 0..12 {
        let id = WorkId::parse(&format!("limited-{i}"))?;
        run.client.submit(&queue, Some(id.clone()), Bytes::from_static(b"x")).await?;
        ids.push(id);
    }
    for id in &ids {
        run.client.wait_result(&queue, id, WAIT).await?;
    }
    assert_eq!(most.load(Ordering::SeqCst), 2, "8 slots, but at most 2 of the queue at once");
    run.audit().await?;
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_queue_starts_no_faster_than_its_rate() -> anyhow::Result<()> {
    let run = InProcess::start(|fast| {
        let paced = QueueConfig { rate: Some(10), ..Default::default() };
        fast.master.queues.insert("paced".to_owned(), paced);
    })
    .await?;
    let queue = QueueName::parse("paced")?;
    let _worker = run.worker_with(
        "w1",
        |s| {
            s.worker.queues = vec!["paced".to_owned()];
            s.worker.concurrency = 16;
        },
        |job: Job| async move { Ok(job.payload) },
    );
    let mut ids = Vec::new();
    for i in 0..25 {
        let id = WorkId::parse(&format!("paced-{i}"))?;
        run.client.submit(&queue, Some(id.clone()), Bytes::from_static(b"x")).await?;
        ids.push(id);
    }
    let mut starts = Vec::new();
    for id in &ids {
        run.client.wait_result(&queue, id, WAIT).await?;
        let info = job_in(&run.client, id, JobState::Completed).await?;
        starts.push(info.history[0].started_ms);
    }
    starts.sort_unstable();
    // A full bucket (10) goes at once; the other 15 follow at 10 a second.
    let spread = starts[24] - starts[0];
    assert!(spread >= 1400, "25 starts at 10/s took {spread} ms, not ≥ 1.5 s");
    for (i, at) in starts.iter().enumerate() {
        let in_second = starts[i..].iter().take_while(|t| **t < at + 1000).count();
        assert!(in_second <= 20, "{in_second} starts within a second of {at}");
    }
    run.audit().await?;
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failed_jobs_of_a_queue_are_retried_in_bulk() -> anyhow::Result<()> {
    let run = InProcess::start(|fast| fast.master.master.max_attempts = 1).await?;
    let broken = Arc::new(AtomicBool::new(true));
    let _worker = run.worker("w1", {
        let broken = broken.clone();
        move |job: Job| {
            let fail = broken.load(Ordering::SeqCst) && job.payload.starts_with(b"fail");
            async move {
                match fail {
                    true => Err("the database is down".into()),
                    false => Ok(Bytes::from(format!("done: attempt {}", job.attempt))),
                }
            }
        }
    });
    let shared = &run;
    let failed_run = |id: &'static str| async move {
        let id = shared.submit(id, b"fail").await?;
        let result = shared.result(&id, WAIT).await?;
        anyhow::ensure!(result.status == ResultStatus::Failed, "{result:?}");
        anyhow::Ok(id)
    };
    let old = failed_run("old").await?;
    // Outcomes stored from the next millisecond on are recent; `old`'s was stored by now.
    let since_ms = jetwork_shared::clock::now_ms() + 1;
    poll_for("the clock to pass the boundary", WAIT, || async {
        (jetwork_shared::clock::now_ms() > since_ms).then_some(())
    })
    .await?;
    let recent = [failed_run("f1").await?, failed_run("f2").await?, failed_run("f3").await?];
    let fine = run.submit("fine", b"ok").await?;
    assert_eq!(run.result(&fine, WAIT).await?.status, ResultStatus::Completed);

    tracing::info!("--- f3 is retried on its own first (held back by a pause): it is skipped");
    let queue = QueueName::default_queue();
    run.client.pause(&queue, true).await?;
    run.client.retry(&recent[2], None).await?;
    let bulk = BulkRetry {
        queue: queue.clone(),
        state: None,
        since_ms: Some(since_ms),
        limit: Some(BulkRetry::MAX_LIMIT),
    };
    let reply = run.client.retry_all(&bulk).await?;
    assert_eq!(
        (reply.retried, reply.skipped, reply.failed, reply.truncated),
        (2, 1, 0, false),
        "{reply:?}"
    );
    assert!(reply.message.contains("retried 2 failed jobs"), "{}", reply.message);

    tracing::info!("--- the service is back: each runs again, its new outcome supersedes");
    broken.store(false, Ordering::SeqCst);
    run.client.pause(&queue, false).await?;
    for id in &recent {
        let info = job_in(&run.client, id, JobState::Completed).await?;
        assert_eq!(info.attempts, 2, "the retry is attempt 2 of {id}: {info:?}");
    }
    let info = run.client.job(&old, None).await?;
    assert_eq!((info.state, info.attempts), (JobState::Failed, 1), "older than --since: {info:?}");

    tracing::info!("--- asked again: nothing recent is left; a limit of 1 says it may stop early");
    let again = run.client.retry_all(&bulk).await?;
    assert_eq!((again.retried, again.skipped, again.truncated), (0, 0, false), "{again:?}");
    let one = BulkRetry { since_ms: None, limit: Some(1), ..bulk.clone() };
    let reply = run.client.retry_all(&one).await?;
    assert_eq!((reply.retried, reply.truncated), (1, true), "{reply:?}");
    assert_eq!(job_in(&run.client, &old, JobState::Completed).await?.attempts, 2);

    tracing::info!("--- what cannot be asked is refused with a reason");
    let ready = BulkRetry { state: Some(JobState::Completed), ..bulk };
    let refused = run.client.retry_all(&ready).await.expect_err("completed jobs are not retried");
    assert_eq!(refused.code(), Some(400), "{refused}");
    run.audit().await?;
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_a_queue_cancels_its_held_and_unread_work_also_across_a_takeover(
) -> anyhow::Result<()> {
    let mut run = InProcess::start(|fast| {
        fast.master.master.prefetch = 2;
        fast.master.master.prefetch_shared = 0;
    })
    .await?;
    run.await_leader("m1", WAIT).await?;
    let queue = QueueName::default_queue();
    // Submitted before its worker starts, so the queue is known when paused.
    let mut ids = Vec::new();
    for n in 0..30 {
        ids.push(run.submit(&format!("purged-{n}"), b"never runs").await?);
    }
    run.client.pause(&queue, true).await?;
    let _worker = run.worker("w1", |job: Job| async move { Ok(job.payload) });

    tracing::info!("--- held: the worker's free slot and the prefetch (3); the rest is unread");
    let ready = JobsQuery { queue: Some(queue.clone()), state: Some(JobState::Ready), limit: None };
    poll_for("three jobs held ready", WAIT, || async {
        run.client.jobs(&ready).await.ok().filter(|page| page.jobs.len() == 3)
    })
    .await?;
    let reply = run.client.purge(&queue).await?;
    assert_eq!((reply.cancelled, reply.backlog, reply.running), (3, 27, 0), "{reply:?}");
    assert!(reply.message.contains("purged"), "{}", reply.message);

    tracing::info!("--- a queue no worker serves is read for its purge all the same");
    let orphan = QueueName::parse("orphan")?;
    let mut orphans = Vec::new();
    for n in 0..5 {
        let id = WorkId::parse(&format!("orphan-{n}"))?;
        orphans.push(run.client.submit(&orphan, Some(id), Bytes::from_static(b"no one")).await?);
    }
    let reply = run.client.purge(&orphan).await?;
    assert_eq!((reply.cancelled, reply.backlog), (0, 5), "{reply:?}");

    tracing::info!("--- the leader dies right after; its successor finishes the purges");
    let _m2 = run.master("m2");
    run.crash_masters();
    run.await_leader("m2", WAIT).await?;
    for id in &ids {
        let result = run.result(id, WAIT).await?;
        assert_eq!(result.status, ResultStatus::Cancelled, "{id}: {result:?}");
        assert!(result.reason.unwrap_or_default().contains("purged"), "{id}");
        assert_eq!(result.payload, Bytes::from_static(b"never runs"));
    }
    for submitted in &orphans {
        let result = run.client.wait_for(submitted, WAIT).await?;
        assert_eq!(result.status, ResultStatus::Cancelled, "{submitted:?}: {result:?}");
    }

    tracing::info!("--- later submissions run as usual");
    run.client.pause(&queue, false).await?;
    let later = run.submit("after-the-purge", b"runs").await?;
    let result = run.result(&later, WAIT).await?;
    assert_eq!(
        (result.status, result.payload),
        (ResultStatus::Completed, Bytes::from_static(b"runs"))
    );
    let again = run.client.purge(&queue).await?;
    assert_eq!((again.cancelled, again.backlog), (0, 0), "nothing pending: {again:?}");
    run.audit().await?;
    run.stop().await;
    Ok(())
}
