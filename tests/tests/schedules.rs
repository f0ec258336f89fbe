//! Recurring schedules end to end: a schedule's ticks keep coming across a leader takeover with
//! none lost and none run twice (every slot is either fired once or counted as missed), ticks
//! a leader fired but could not get stored are submitted by its successor, once each, the
//! CLI adds, lists and removes schedules, and malformed or over-limit requests are refused
//! with a reason while the master carries on.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use jetwork_frontend::JobsError;
use jetwork_master::core::Event;
use jetwork_shared::schedules::{ScheduleAdd, ScheduleName};
use jetwork_shared::{headers, subjects, QueueName, WorkId};
use jetwork_tests::inproc::spawn_master;
use jetwork_tests::{poll_for, Audit, InProcess};
use jetwork_worker::Job;

const WAIT: Duration = Duration::from_secs(60);

/// A fired tick, from the journal: (work id, scheduled time, ticks passed over before it,
/// the epoch that fired it).
type Fired = (WorkId, u64, u64, u64);

/// The ticks of `name` fired so far, in journal order, and the time its first tick was due.
fn fired(audit: &Audit, name: &str) -> (Vec<Fired>, Option<u64>) {
    let mut ticks = Vec::new();
    let mut first_due = None;
    for (_, epoch, event) in &audit.events {
        match event {
            Event::ScheduleAdded { name: n, next, .. } if n.as_str() == name => {
                first_due = Some(*next)
            }
            Event::ScheduleFired { name: n, work_id, scheduled, missed, .. }
                if n.as_str() == name =>
            {
                ticks.push((work_id.clone(), *scheduled, *missed, *epoch));
            }
            _ => {}
        }
    }
    (ticks, first_due)
}

/// Waits until `count` ticks of `name` have fired and every fired one has a stored result.
async fn ticks_done(run: &InProcess, name: &str, count: usize) -> anyhow::Result<Audit> {
    let what = format!("{count} ticks of {name} to fire and complete");
    poll_for(&what, WAIT, || async {
        let audit = Audit::read(&run.js).await.ok()?;
        let (ticks, _) = fired(&audit, name);
        let done = ticks.iter().all(|(id, ..)| audit.results.contains_key(id));
        (ticks.len() >= count && done).then_some(audit)
    })
    .await
}

fn every(name: &str, interval: &str, payload: &str) -> anyhow::Result<ScheduleAdd> {
    Ok(ScheduleAdd {
        name: ScheduleName::parse(name)?,
        queue: QueueName::default_queue(),
        every: Some(interval.to_owned()),
        cron: None,
        payload: payload.to_owned(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_go_on_across_a_takeover_none_lost_none_doubled() -> anyhow::Result<()> {
    let mut run = InProcess::start(|_| {}).await?;
    run.await_leader("m1", WAIT).await?;
    let _worker = run.worker("w1", |job: Job| async move { Ok(job.payload) });
    let reply = run.client.schedule_add(&every("tick", "1s", "beat")?).await?;
    assert!(reply.message.contains("schedule tick added"), "{reply:?}");
    ticks_done(&run, "tick", 3).await?;

    tracing::info!("--- the leader dies; its successor goes on ticking");
    let _m2 = run.master("m2");
    run.crash_masters();
    run.await_leader("m2", WAIT).await?;
    let before = fired(&Audit::read(&run.js).await?, "tick").0.len();
    ticks_done(&run, "tick", before + 3).await?;
    let listed = run.client.schedules().await?;
    let tick = listed.schedules.iter().find(|s| s.name.as_str() == "tick").expect("listed");
    assert_eq!(tick.every.as_deref(), Some("1s"));
    assert!(tick.fired >= (before + 3) as u64, "{tick:?}");

    tracing::info!("--- removed: no more ticks, and every fired one ran");
    run.client.schedule_rm(&ScheduleName::parse("tick")?).await?;
    let count = fired(&Audit::read(&run.js).await?, "tick").0.len();
    let audit = ticks_done(&run, "tick", count).await?;
    audit.check()?;
    let (ticks, first_due) = fired(&audit, "tick");
    assert_eq!(ticks.len(), count, "a tick fired after the schedule was removed");
    let first_due = first_due.expect("the schedule's addition is journaled");

    // Every slot from the first due tick to the last fired one was fired once or counted as
    // missed (none lost), at strictly increasing times under distinct ids (none doubled).
    let mut expected = first_due;
    for (id, scheduled, missed, _) in &ticks {
        assert_eq!(*scheduled, expected + missed * 1000, "{id}: a tick unaccounted for");
        expected = scheduled + 1000;
        let results = &audit.results[id];
        assert_eq!(results.len(), 1, "{id} has {} results", results.len());
        assert_eq!(results[0].status, headers::STATUS_COMPLETED, "{id}");
        assert_eq!(results[0].payload, b"beat", "{id}");
    }
    let ids: BTreeSet<_> = ticks.iter().map(|(id, ..)| id.clone()).collect();
    assert_eq!(ids.len(), ticks.len(), "a tick id fired twice");
    assert_eq!(audit.rejections, 0, "a tick was submitted twice and refused");
    let epochs: BTreeSet<_> = ticks.iter().map(|t| t.3).collect();
    assert!(epochs.len() >= 2, "ticks fired by both leaders: {epochs:?}");
    run.stop().await;
    Ok(())
}

/// Two users: `all` may do anything; `nosubmit` anything but publish the master's own
/// submissions (a master logged in as it fires ticks, but cannot get any of them stored).
const TWO_USERS: &str = r#"
authorization {
  users = [
    { user: "all", password: "all" }
    { user: "nosubmit", password: "nosubmit", permissions: {
        publish: { deny: ["jetwork.internal.*"] }
    } }
  ]
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_fired_but_never_stored_are_submitted_by_the_next_leader() -> anyhow::Result<()> {
    let run = InProcess::build()
        .config(TWO_USERS)
        .masters(&[])
        .tune(|fast| {
            for nats in [&mut fast.master.nats, &mut fast.worker.nats, &mut fast.frontend.nats] {
                nats.user = Some("all".to_owned());
                nats.password = Some("all".to_owned());
            }
        })
        .start()
        .await?;
    let mut stuck = run.fast.master.clone();
    stuck.nats.user = Some("nosubmit".to_owned());
    stuck.nats.password = Some("nosubmit".to_owned());
    let m1 = spawn_master("m1", stuck);
    run.await_leader("m1", WAIT).await?;
    let _worker = run.worker("w1", |job: Job| async move { Ok(job.payload) });
    run.client.schedule_add(&every("stuck", "1s", "late")?).await?;

    tracing::info!("--- m1 fires ticks but cannot store them: they wait, unconfirmed");
    let (audit, fired_by_m1) = poll_for("m1 to fire 3 ticks", WAIT, || async {
        let audit = Audit::read(&run.js).await.ok()?;
        let ticks = fired(&audit, "stuck").0;
        (ticks.len() >= 3).then_some((audit, ticks))
    })
    .await?;
    for (id, ..) in &fired_by_m1 {
        assert!(!audit.results.contains_key(id), "{id} ran although it could not be submitted");
    }
    let submitted =
        audit.events.iter().any(|(_, _, e)| matches!(e, Event::SubmissionsStored { .. }));
    assert!(!submitted, "m1 confirmed a tick it could not store");

    tracing::info!("--- m1 dies; m2 (allowed to submit) submits every tick m1 fired, once");
    m1.crash();
    let _m2 = run.master("m2");
    run.await_leader("m2", WAIT).await?;
    let audit = poll_for("m1's ticks to run", WAIT, || async {
        let audit = Audit::read(&run.js).await.ok()?;
        fired_by_m1.iter().all(|(id, ..)| audit.results.contains_key(id)).then_some(audit)
    })
    .await?;
    audit.check()?;
    for (id, ..) in &fired_by_m1 {
        assert_eq!(audit.results[id].len(), 1, "{id}");
        assert_eq!(audit.results[id][0].payload, b"late", "{id}");
    }
    run.client.schedule_rm(&ScheduleName::parse("stuck")?).await?;
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_adds_lists_and_removes_schedules() -> anyhow::Result<()> {
    let run = InProcess::start(|_| {}).await?;
    run.await_leader("m1", WAIT).await?;
    let procs = run.procs()?;
    let add = ["schedule", "add", "nightly", "--queue", "reports", "--cron", "0 3 * * *", "hi"];
    let (ok, out) = procs.frontend(&add).await?;
    assert!(ok && out.contains("schedule nightly added"), "{out}");
    // The first tick as a reader reads it: ISO-8601 in UTC, at 03:00, not Unix ms.
    let first = out.split("first tick at ").nth(1).unwrap_or_default().trim();
    let year = first.get(..4).and_then(|y| y.parse::<u32>().ok());
    assert!(year.is_some() && first.len() == 20 && first.ends_with("T03:00:00Z"), "{out}");
    let (ok, out) = procs.frontend(&add).await?;
    assert!(!ok && out.contains("exists") && out.contains("409"), "{out}");
    let (ok, out) = procs.frontend(&["schedule", "add", "often", "--every", "5m", "x"]).await?;
    assert!(ok, "{out}");

    let (ok, out) = procs.frontend(&["schedule", "ls"]).await?;
    assert!(ok, "{out}");
    assert!(out.contains("nightly") && out.contains("cron 0 3 * * *"), "{out}");
    assert!(out.contains("often") && out.contains("every 5m"), "{out}");
    let (ok, out) = procs.frontend(&["schedule", "ls", "--json"]).await?;
    assert!(ok, "{out}");
    let page: jetwork_shared::schedules::SchedulesPage = serde_json::from_str(&out)?;
    let names: Vec<_> = page.schedules.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["nightly", "often"]);
    assert_eq!(page.schedules[0].queue.as_str(), "reports");
    assert_eq!(page.schedules[0].next_ms % 86_400_000, 3 * 3_600_000, "03:00 UTC");

    let (ok, out) = procs.frontend(&["schedule", "rm", "nightly"]).await?;
    assert!(ok && out.contains("removed"), "{out}");
    let (ok, out) = procs.frontend(&["schedule", "rm", "nightly"]).await?;
    assert!(!ok && out.contains("no schedule named nightly") && out.contains("404"), "{out}");
    let (ok, out) =
        procs.frontend(&["schedule", "add", "x", "--every", "1m", "--cron", "* * * * *"]).await?;
    assert!(!ok && out.contains("cannot be used with"), "the CLI refuses both: {out}");
    let (ok, out) = procs.frontend(&["schedule", "ls"]).await?;
    assert!(ok && !out.contains("nightly") && out.contains("often"), "{out}");
    run.stop().await;
    Ok(())
}

/// The master's answer to a raw request: Ok(body) or Err((code, reason)).
async fn ask(
    run: &InProcess,
    subject: &str,
    body: &[u8],
) -> anyhow::Result<Result<Bytes, (u16, String)>> {
    let reply = run.client.nats().request(subject.to_owned(), Bytes::copy_from_slice(body)).await?;
    if let Some(error) = reply.headers.as_ref().and_then(|h| h.get(headers::NATS_SERVICE_ERROR)) {
        let code = reply
            .headers
            .as_ref()
            .and_then(|h| h.get(headers::NATS_SERVICE_ERROR_CODE))
            .and_then(|c| c.as_str().parse().ok())
            .unwrap_or(0);
        return Ok(Err((code, error.as_str().to_owned())));
    }
    Ok(Ok(reply.payload))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_schedule_requests_are_refused_with_a_reason() -> anyhow::Result<()> {
    let run = InProcess::start(|fast| {
        fast.master.master.max_schedule_payload = 16;
        fast.master.master.max_schedules = 2;
        fast.master.master.schedule_min_interval = Duration::from_secs(2);
    })
    .await?;
    run.await_leader("m1", WAIT).await?;
    let too_big =
        format!(r#"{{"name":"n","queue":"q","every":"5s","payload":"{}"}}"#, "x".repeat(17));
    let refused_400: Vec<(&str, &str)> = vec![
        ("", "expected"),
        ("not json", "expected"),
        (r#"{"name":"a.b","queue":"q","every":"5s"}"#, "schedule name"),
        (r#"{"name":"seq","queue":"q","every":"5s"}"#, "reserved"),
        (r#"{"name":"n","queue":"a b","every":"5s"}"#, "queue name"),
        (r#"{"name":"n","queue":"q"}"#, "exactly one"),
        (r#"{"name":"n","queue":"q","every":"5s","cron":"* * * * *"}"#, "exactly one"),
        (r#"{"name":"n","queue":"q","every":"soon"}"#, "not a duration"),
        (r#"{"name":"n","queue":"q","every":"1500ms"}"#, "whole number of seconds"),
        (r#"{"name":"n","queue":"q","every":"1s"}"#, "shortest interval"),
        (r#"{"name":"n","queue":"q","cron":"61 * * * *"}"#, "cron"),
        (r#"{"name":"n","queue":"q","cron":"0 0 30 2 *"}"#, "never tick"),
        (r#"{"name":"n","queue":"q","every":"5s","surprise":1}"#, "unknown field"),
        (&too_big, "limit is 16"),
    ];
    for (body, why) in &refused_400 {
        match ask(&run, subjects::ADMIN_SCHEDULE_ADD, body.as_bytes()).await? {
            Err((code, reason)) => {
                assert_eq!(code, 400, "{body}: {reason}");
                assert!(reason.contains(why), "{body}: {reason:?} should say {why:?}");
            }
            Ok(reply) => panic!("{body} was accepted: {reply:?}"),
        }
    }
    let refused = ask(&run, subjects::ADMIN_SCHEDULE_RM, b"{\"nom\":1}").await?;
    assert!(matches!(refused, Err((400, _))), "{refused:?}");
    let refused = ask(&run, subjects::ADMIN_SCHEDULE_RM, br#"{"name":"ghost"}"#).await?;
    assert!(matches!(&refused, Err((404, r)) if r.contains("ghost")), "{refused:?}");

    tracing::info!("--- limits: a name in use (409), too many schedules (503)");
    run.client.schedule_add(&every("a", "1h", "")?).await?;
    let again = run.client.schedule_add(&every("a", "2h", "")?).await;
    assert!(matches!(again, Err(JobsError::Refused { code: 409, .. })), "{again:?}");
    run.client.schedule_add(&every("b", "1h", "")?).await?;
    let third = run.client.schedule_add(&every("c", "1h", "")?).await;
    assert!(
        matches!(&third, Err(JobsError::Refused { code: 503, reason }) if reason.contains("max_schedules")),
        "{third:?}"
    );

    tracing::info!("--- the master carries on: the listing holds exactly the two accepted");
    let page = run.client.schedules().await?;
    let names: Vec<_> = page.schedules.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["a", "b"]);
    let id = run.submit("after-bad-schedules", b"1").await?;
    let _worker = run.worker("w1", |job: Job| async move { Ok(job.payload) });
    run.result(&id, WAIT).await?;
    run.stop().await;
    Ok(())
}
