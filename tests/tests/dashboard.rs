//! The web dashboard in a real browser: headless Chromium loads the pages the real
//! `jetwork-frontend dashboard` serves while a master and a worker run jobs, and the test
//! checks what a person would see — the queue counts `status --json` reports, the workers,
//! a failed job's reason in the list and on its page, charts with clock-time and value axes
//! that a page opened later draws from the samples taken before it (5 minutes, and the hour),
//! "no leader" during a failover — then
//! saves a screenshot (`target/dashboard.png`, or `JETWORK_SCREENSHOT`). The job browser: jobs
//! by state a page at a time, search by id, a job's payload and result (JSON, text, hex; a
//! `<script>` payload shown as text, never run), a queue's page, the schedules, and, with
//! `--allow-actions`, the buttons a job's state allows, each confirmed first, and "dashboard
//! lost NATS" with the last figures greyed while NATS is down, and failures listed again, by
//! the dashboard and by `status --watch`, after NATS restarts (screenshots of each view in
//! `target/`, or `JETWORK_SCREENSHOT_DIR`). And, with bare HTTP requests as another site's
//! page would send them: a foreign `Host` (DNS rebinding) reads nothing, and an action from
//! another site changes nothing.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use fantoccini::Locator;
use jetwork_frontend::ResultStatus;
use jetwork_shared::schedules::{ScheduleAdd, ScheduleName};
use jetwork_shared::{QueueName, WorkId};
use jetwork_tests::nats_server::free_port;
use jetwork_tests::{wait_until, Browser, InProcess};

const WITHIN: Duration = Duration::from_secs(30);
/// A leader comes within a second or two; on a loaded 2-core machine (four of these tests,
/// each with its master, its browser and its server) it once took more than 30 s.
const LEAD_WITHIN: Duration = Duration::from_secs(90);
/// Jobs that complete (one more fails).
const JOBS: u32 = 30;

/// Where the screenshot goes.
fn screenshot_path() -> PathBuf {
    if let Some(path) = std::env::var_os("JETWORK_SCREENSHOT") {
        return PathBuf::from(path);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard.png")
}

/// Saves a screenshot of what the browser shows as `name` in `JETWORK_SCREENSHOT_DIR` (else
/// `target/`): the job browser's views, for docs/operations.md.
async fn screenshot(browser: &Browser, name: &str) -> anyhow::Result<()> {
    let dir = std::env::var_os("JETWORK_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(name);
    std::fs::write(&path, browser.client.screenshot().await?)?;
    tracing::info!(path = %path.display(), "screenshot saved");
    Ok(())
}

/// Squares, except that a job whose payload is `hold` runs until it is cancelled.
async fn hold_or_square(job: jetwork_worker::Job) -> Result<Bytes, jetwork_worker::JobError> {
    if job.payload.as_ref() == b"hold" {
        tokio::time::sleep(Duration::from_secs(600)).await;
    }
    jetwork_worker::square(job).await
}

/// Clicks `button`, then the confirmation's button, and returns what the action answered.
async fn confirmed(browser: &Browser, button: &str) -> anyhow::Result<String> {
    browser.click(button, WITHIN).await?;
    browser.wait_text("#confirm .question", WITHIN, |t| !t.is_empty()).await?;
    browser.click("#confirm button.confirm", WITHIN).await?;
    browser.wait_text("#confirm-result", WITHIN, |t| !t.is_empty() && t != "…").await
}

/// How many elements match `css`.
async fn count(browser: &Browser, css: &str) -> anyhow::Result<usize> {
    Ok(browser.client.find_all(Locator::Css(css)).await?.len())
}

/// The text of every element matching `css` (SVG text too), read in one go: the page
/// re-renders on every refresh.
async fn texts(browser: &Browser, css: &str) -> anyhow::Result<Vec<String>> {
    let script =
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent)";
    let found = browser.client.execute(script, vec![serde_json::json!(css)]).await?;
    Ok(serde_json::from_value(found)?)
}

/// The attribute `name` of the first element matching `css`, if any.
async fn attr(browser: &Browser, css: &str, name: &str) -> Option<String> {
    let script =
        "const e = document.querySelector(arguments[0]); return e && e.getAttribute(arguments[1])";
    let found =
        browser.client.execute(script, vec![serde_json::json!(css), serde_json::json!(name)]);
    found.await.ok()?.as_str().map(str::to_owned)
}

/// Whether `text` is a clock time, `HH:MM`.
fn is_clock(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 5 && b[2] == b':' && [0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_what_status_reports() -> anyhow::Result<()> {
    let Some(browser) = Browser::start(1280, 1000).await? else {
        eprintln!("JETWORK_SKIP_BROWSER=1: skipping the browser test");
        return Ok(());
    };
    let mut run = InProcess::build().start().await?;
    run.await_leader("m1", LEAD_WITHIN).await?;
    let _w1 = run.worker("w1", jetwork_worker::square);
    let _w2 = run.worker("w2", jetwork_worker::square);
    let procs = run.procs()?;
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let _dashboard = procs.dashboard(&["--listen", &listen, "--refresh", "300ms"])?;
    let url = format!("http://{listen}/");
    wait_until("the dashboard to listen", WITHIN, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
    })
    .await?;

    tracing::info!("--- the page is up before the jobs, so it sees the failure published");
    browser.client.goto(&url).await?;
    browser.wait_text("#leader", WITHIN, |t| t.starts_with("leader m1")).await?;

    // A steady trickle for a few samples, so the chart has a line to draw.
    let mut ids = Vec::new();
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    for i in 1..=JOBS {
        pace.tick().await;
        let id = WorkId::parse(&format!("shown-{i}"))?;
        run.client.submit(&run.queue, Some(id.clone()), Bytes::from(i.to_string())).await?;
        ids.push(id);
    }
    let bad = run.submit("shown-bad", b"not a number").await?;
    let failed = run.result(&bad, WITHIN).await?;
    assert_eq!(failed.status, ResultStatus::Failed);
    let reason = failed.reason.clone().unwrap_or_default();
    assert!(!reason.is_empty(), "a failure has a reason");
    run.completed(&ids, WITHIN).await?;

    tracing::info!("--- the queue row shows what status --json says");
    let (ok, text) = procs.frontend(&["status", "--json"]).await?;
    assert!(ok, "{text}");
    let report: serde_json::Value = serde_json::from_str(&text)?;
    let queue = report["queues"]
        .as_array()
        .and_then(|qs| qs.iter().find(|q| q["queue"] == "default"))
        .ok_or_else(|| anyhow::anyhow!("no default queue in {report}"))?
        .clone();
    assert_eq!(queue["completed"], JOBS, "{report}");
    for field in
        ["pending", "waiting", "in-progress", "completed", "failed", "cancelled", "rejected"]
    {
        let expected = queue[field.replace('-', "_")].to_string();
        let css = format!("#queues tr[data-queue='default'] td.{field}");
        browser.wait_text(&css, WITHIN, |t| t == expected).await?;
    }
    browser
        .wait_text("#workers h2", WITHIN, |t| t.contains(&format!("({})", report["workers_total"])))
        .await?;
    // One read races the 300 ms re-render (the row found is replaced before its text is
    // read), so these wait like every other look at the page.
    browser.wait_text("#workers tr[data-worker='w1']", WITHIN, |_| true).await?;
    browser.wait_text("#workers tr[data-worker='w2']", WITHIN, |_| true).await?;
    browser.wait_text("#mode", WITHIN, |t| t == "read-only").await?;

    tracing::info!("--- the failure is listed with its reason");
    let row = "#failures tr[data-work-id='shown-bad'] td.reason";
    browser.wait_text(row, WITHIN, |t| t == reason).await?;
    let charts =
        browser.client.find_all(Locator::Css("#charts svg path[data-queue='default']")).await?;
    assert!(!charts.is_empty(), "the charts draw the default queue");

    tracing::info!("--- the charts have a time axis (clock times, UTC) and a value axis");
    for chart in ["#chart-rate", "#chart-pending", "#chart-in_flight"] {
        let times = texts(&browser, &format!("{chart} text.tick-x")).await?;
        assert!(times.len() >= 4 && times.iter().all(|t| is_clock(t)), "{chart}: {times:?}");
        let values = texts(&browser, &format!("{chart} text.tick-y")).await?;
        let numbers: Vec<f64> = values.iter().filter_map(|v| v.parse().ok()).collect();
        assert!(numbers.len() >= 2 && numbers.len() == values.len(), "{chart}: {values:?}");
        assert!(numbers.windows(2).all(|w| w[0] < w[1]) && numbers[0] == 0.0, "{values:?}");
    }

    // The screenshot of the overview, for docs/operations.md ("The dashboard").
    let png = browser.client.screenshot().await?;
    let path = screenshot_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, png)?;
    tracing::info!(path = %path.display(), "screenshot saved");

    tracing::info!("--- a page opened now draws what the dashboard sampled before it opened");
    let opened_ms = jetwork_shared::clock::now_ms();
    browser.client.goto("about:blank").await?;
    browser.client.goto(&url).await?;
    browser.wait_text("#leader", WITHIN, |t| t.starts_with("leader m1")).await?;
    let line = "#charts[data-range='recent'] #chart-pending path[data-queue='default']";
    let (first_ms, points) =
        jetwork_tests::poll_for("the reopened page's chart", WITHIN, || async {
            let first: u64 = attr(&browser, line, "data-first-ms").await?.parse().ok()?;
            let points: u64 = attr(&browser, line, "data-points").await?.parse().ok()?;
            Some((first, points))
        })
        .await?;
    assert!(first_ms + 2_000 < opened_ms, "first point {first_ms}, page opened {opened_ms}");
    assert!(points >= 3, "{points} points");
    let minutes = texts(&browser, "#chart-pending text.tick-x").await?;
    assert!((4..=6).contains(&minutes.len()), "5 minutes, a tick a minute: {minutes:?}");
    tracing::info!("--- the hour: ticks every 10 minutes, the same samples in 10 s points");
    browser.click("#range-long", WITHIN).await?;
    let hour = "#charts[data-range='long'] #chart-pending path[data-queue='default']";
    jetwork_tests::poll_for("the hour's chart", WITHIN, || async {
        attr(&browser, hour, "data-points").await?.parse::<u64>().ok().filter(|n| *n >= 1)
    })
    .await?;
    let ticks = texts(&browser, "#chart-pending text.tick-x").await?;
    assert!((5..=7).contains(&ticks.len()), "{ticks:?}");
    assert!(ticks.iter().all(|t| is_clock(t) && t.ends_with('0')), "{ticks:?}");
    browser.click("#range-recent", WITHIN).await?;
    browser
        .wait_text("#failures tr[data-work-id='shown-bad'] td.reason", WITHIN, |t| t == reason)
        .await?;

    tracing::info!("--- the failed job's page shows the reason");
    browser.click("#failures tr[data-work-id='shown-bad'] a.job-link", WITHIN).await?;
    browser.wait_text("#job-status", WITHIN, |t| t == "failed").await?;
    browser.wait_text("#job-reason", WITHIN, |t| t == reason).await?;
    browser.wait_text("#job-queue", WITHIN, |t| t == "default").await?;

    tracing::info!("--- a completed job's page shows its result");
    browser.client.goto(&format!("{url}#/job/shown-3")).await?;
    browser.wait_text("#job-status", WITHIN, |t| t == "completed").await?;
    browser.wait_text("#job-result", WITHIN, |t| t == "3 * 3 = 9").await?;

    tracing::info!("--- read-only: actions are refused");
    let origin = format!("http://{listen}");
    let headers = [("Host", listen.as_str()), ("Origin", &origin), ("X-Jetwork-Action", "1")];
    let (code, body) = http(port, "POST", "/api/action?kind=retry&id=shown-bad", &headers).await?;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("read-only"), "{body}");

    tracing::info!("--- no leader: the page says so and names the lease holder");
    browser.client.goto(&url).await?;
    run.stop_masters().await;
    browser.wait_text("#leader", WITHIN, |t| t == "no leader").await?;
    browser
        .wait_text("#no-leader pre", WITHIN, |t| {
            t.contains("no master is leading (lease free since")
        })
        .await?;

    browser.close().await?;
    run.audit().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_from_the_dashboard_pause_a_queue_and_retry_a_job() -> anyhow::Result<()> {
    let Some(browser) = Browser::start(1280, 1000).await? else {
        eprintln!("JETWORK_SKIP_BROWSER=1: skipping the browser test");
        return Ok(());
    };
    let run = InProcess::build().start().await?;
    run.await_leader("m1", LEAD_WITHIN).await?;
    let _w1 = run.worker("w1", hold_or_square);
    let bad = run.submit("retried", b"not a number").await?;
    let first = run.result(&bad, WITHIN).await?;
    assert_eq!(first.status, ResultStatus::Failed);
    let procs = run.procs()?;
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let args = ["--listen", listen.as_str(), "--refresh", "300ms", "--allow-actions"];
    let _dashboard = procs.dashboard(&args)?;
    wait_until("the dashboard to listen", WITHIN, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
    })
    .await?;
    let url = format!("http://{listen}/");

    tracing::info!("--- pause the queue with its button, then resume it, each confirmed");
    browser.client.goto(&url).await?;
    browser.wait_text("#mode", WITHIN, |t| t == "actions enabled").await?;
    let pause = "#queues tr[data-queue='default'] button.queue-pause";
    browser.wait_text(pause, WITHIN, |t| t == "Pause").await?;
    // Asked, then kept as it is: nothing happens.
    browser.click(pause, WITHIN).await?;
    browser.click("#confirm button.dismiss", WITHIN).await?;
    let (ok, text) = procs.frontend(&["status", "--json"]).await?;
    assert!(ok && text.contains("\"paused\": false"), "{text}");
    confirmed(&browser, pause).await?;
    browser
        .wait_text("#queues tr[data-queue='default'] .paused", WITHIN, |t| t.contains("paused"))
        .await?;
    let (ok, text) = procs.frontend(&["status", "--json"]).await?;
    assert!(ok && text.contains("\"paused\": true"), "{text}");
    let resume = "#queues tr[data-queue='default'] button.queue-resume";
    confirmed(&browser, resume).await?;
    browser.wait_text(pause, WITHIN, |t| t == "Pause").await?;

    tracing::info!("--- retry the failed job from its page: it runs again, attempts numbered on");
    browser.client.goto(&format!("{url}#/job/retried")).await?;
    browser.wait_text("#job-status", WITHIN, |t| t == "failed").await?;
    let attempts: u32 =
        browser.wait_text("#job-attempt", WITHIN, |t| t.parse::<u32>().is_ok()).await?.parse()?;
    assert_eq!(count(&browser, "#cancel").await?, 0, "a failed job cannot be cancelled");
    confirmed(&browser, "#retry").await?;
    browser
        .wait_text("#job-attempt", WITHIN, |t| t.parse::<u32>().is_ok_and(|n| n > attempts))
        .await?;
    // Its attempt history is on the page, the new attempts numbered after the old ones.
    let numbered = format!("#attempts tr[data-attempt='{}']", attempts + 1);
    browser.wait_text(&numbered, WITHIN, |t| t.contains("w1")).await?;
    browser.wait_text("#job-status", WITHIN, |t| t == "failed").await?;

    tracing::info!("--- retry every failed job of the queue from its page");
    let bulk = run.submit("bulk-bad", b"not a number either").await?;
    assert_eq!(run.result(&bulk, WITHIN).await?.status, ResultStatus::Failed);
    browser.client.goto(&format!("{url}#/queue/default")).await?;
    browser.wait_text("#queue-failed", WITHIN, |t| t.parse::<u32>().is_ok()).await?;
    let answer = confirmed(&browser, "#queue-summary button.retry-failed").await?;
    assert!(answer.starts_with("queue default: retried 2 failed jobs"), "{answer}");
    browser.client.goto(&format!("{url}#/job/bulk-bad")).await?;
    browser.wait_text("#job-attempt", WITHIN, |t| t == "2").await?;

    tracing::info!(
        "--- a running job: its worker's row links it; it can be cancelled, not retried"
    );
    let held = run.submit("held", b"hold").await?;
    browser.client.goto(&url).await?;
    browser
        .wait_text("#workers tr[data-worker='w1'] td.running", WITHIN, |t| t == "held @1")
        .await?;
    browser.click("#workers tr[data-worker='w1'] td.running a.job-link", WITHIN).await?;
    browser.wait_text("#job-status", WITHIN, |t| t == "running").await?;
    browser.wait_text("#cancel", WITHIN, |t| t == "Cancel").await?;
    assert_eq!(count(&browser, "#retry").await?, 0, "a running job cannot be retried");

    tracing::info!("--- purge the queue while the worker is busy: what waits is cancelled");
    let waiting = run.submit("purged-1", b"5").await?;
    browser.client.goto(&format!("{url}#/queue/default")).await?;
    let answer = confirmed(&browser, "#queue-summary button.purge").await?;
    assert!(answer.starts_with("queue default purged through submission"), "{answer}");
    assert_eq!(run.result(&waiting, WITHIN).await?.status, ResultStatus::Cancelled);

    tracing::info!("--- cancel the running job: then it can be retried, not cancelled");
    browser.client.goto(&format!("{url}#/job/held")).await?;
    browser.wait_text("#job-status", WITHIN, |t| t == "running").await?;
    confirmed(&browser, "#cancel").await?;
    browser.wait_text("#job-status", WITHIN, |t| t == "cancelled").await?;
    browser.wait_text("#retry", WITHIN, |t| t == "Retry").await?;
    assert_eq!(count(&browser, "#cancel").await?, 0, "a cancelled job cannot be cancelled");
    assert_eq!(run.result(&held, WITHIN).await?.status, ResultStatus::Cancelled);

    browser.close().await?;
    run.audit().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_browser_lists_pages_and_shows_payloads_as_text() -> anyhow::Result<()> {
    let Some(browser) = Browser::start(1280, 1000).await? else {
        eprintln!("JETWORK_SKIP_BROWSER=1: skipping the browser test");
        return Ok(());
    };
    let mut run = InProcess::build().start().await?;
    run.await_leader("m1", LEAD_WITHIN).await?;
    let _w1 = run.worker("w1", jetwork_worker::square);
    let mut ids = Vec::new();
    for i in 1..=25 {
        let id = WorkId::parse(&format!("page-{i:02}"))?;
        run.client.submit(&run.queue, Some(id.clone()), Bytes::from(i.to_string())).await?;
        ids.push(id);
    }
    run.completed(&ids, WITHIN).await?;
    let script = "<script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\">";
    let payloads: [(&str, &[u8]); 3] = [
        ("bad-script", script.as_bytes()),
        ("bad-json", br#"{"order":42,"items":["a","b"]}"#),
        ("bad-binary", &[0xff, 0x00, 0x01, b'A']),
    ];
    for (id, payload) in payloads {
        let id = WorkId::parse(id)?;
        run.client.submit(&run.queue, Some(id.clone()), Bytes::copy_from_slice(payload)).await?;
        assert_eq!(run.result(&id, WITHIN).await?.status, ResultStatus::Failed);
    }
    let nightly = ScheduleAdd {
        name: ScheduleName::parse("nightly")?,
        queue: run.queue.clone(),
        every: None,
        cron: Some("0 3 * * *".to_owned()),
        payload: "7".to_owned(),
    };
    run.client.schedule_add(&nightly).await?;
    let procs = run.procs()?;
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let _dashboard = procs.dashboard(&["--listen", &listen, "--refresh", "300ms"])?;
    wait_until("the dashboard to listen", WITHIN, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
    })
    .await?;
    let url = format!("http://{listen}/");

    tracing::info!("--- all jobs, 20 a page; the failed tab; the second page of completed");
    browser.client.goto(&format!("{url}#/jobs")).await?;
    browser.wait_text("#page-number", WITHIN, |t| t == "page 1").await?;
    assert_eq!(count(&browser, "#job-list tbody tr[data-work-id]").await?, 20);
    // 28 jobs: there is a next page.
    browser.wait_text("#page-next", WITHIN, |_| true).await?;
    browser.click("#state-tabs a[data-state='failed']", WITHIN).await?;
    browser
        .wait_text("#job-list tr[data-work-id='bad-json'] td.state", WITHIN, |t| t == "failed")
        .await?;
    // bad-json is failed in the list of all jobs too: the failed tab's list is the one of 3.
    wait_until("the failed tab's 3 rows", WITHIN, || async {
        count(&browser, "#job-list tbody tr[data-work-id]").await.is_ok_and(|n| n == 3)
    })
    .await?;
    assert_eq!(count(&browser, "#page-next").await?, 0);
    screenshot(&browser, "dashboard-jobs.png").await?;
    browser.client.goto(&format!("{url}#/jobs?state=completed&page=1")).await?;
    browser.wait_text("#page-number", WITHIN, |t| t == "page 2").await?;
    assert_eq!(count(&browser, "#job-list tbody tr[data-work-id]").await?, 5);
    browser.wait_text("#page-prev", WITHIN, |_| true).await?;
    assert_eq!(count(&browser, "#page-next").await?, 0);

    tracing::info!("--- search by id");
    browser.client.goto(&format!("{url}#/jobs")).await?;
    browser.wait_text("#page-number", WITHIN, |t| t == "page 1").await?;
    let search = browser.client.find(Locator::Css("#job-search")).await?;
    search.send_keys("page-1").await?;
    browser.click("#job-search-form button[type='submit']", WITHIN).await?;
    browser.wait_text("#search-open", WITHIN, |t| t == "open job page-1").await?;
    // page-1 is no id here, page-10 … page-19 are.
    assert_eq!(count(&browser, "#job-list tbody tr[data-work-id]").await?, 10);

    tracing::info!("--- a job's page: its id as it is, JSON pretty, a link to its queue");
    browser.client.goto(&format!("{url}#/job/bad-json")).await?;
    browser.wait_text("#job-status", WITHIN, |t| t == "failed").await?;
    browser.wait_text("#job-title-id", WITHIN, |t| t == "bad-json").await?;
    let pretty = "{\n  \"items\": [\n    \"a\",\n    \"b\"\n  ],\n  \"order\": 42\n}";
    browser.wait_text("#job-payload[data-kind='json']", WITHIN, |t| t == pretty).await?;
    screenshot(&browser, "dashboard-job.png").await?;
    browser.client.goto(&format!("{url}#/job/bad-binary")).await?;
    browser
        .wait_text("#job-payload[data-kind='hex']", WITHIN, |t| {
            t.starts_with("00000000  ff 00 01 41")
        })
        .await?;
    browser.client.goto(&format!("{url}#/job/page-03")).await?;
    browser.wait_text("#job-result", WITHIN, |t| t == "3 * 3 = 9").await?;
    browser.wait_text("#job-payload", WITHIN, |t| t == "3").await?;

    tracing::info!("--- a payload with markup is shown as text and never runs");
    browser.client.goto(&format!("{url}#/job/bad-script")).await?;
    browser.wait_text("#job-payload", WITHIN, |t| t == script).await?;
    let ran = browser.client.execute("return window.pwned === undefined", vec![]).await?;
    assert_eq!(ran, serde_json::json!(true), "a payload's markup ran");
    assert_eq!(count(&browser, "img[src='x']").await?, 0, "a payload's markup became HTML");

    tracing::info!("--- the queue's page: its counters and its jobs; read-only: no buttons");
    browser.client.goto(&format!("{url}#/job/page-03")).await?;
    browser.click("#job-queue a", WITHIN).await?;
    browser.wait_text("#queue-completed", WITHIN, |t| t == "25").await?;
    browser.wait_text("#queue-failed", WITHIN, |t| t == "3").await?;
    browser.wait_text("#jobs h2", WITHIN, |t| t.to_lowercase() == "jobs of default").await?;
    assert_eq!(count(&browser, "#queue-summary button").await?, 0);
    screenshot(&browser, "dashboard-queue.png").await?;

    tracing::info!("--- the schedules");
    browser.client.goto(&format!("{url}#/schedules")).await?;
    let row = "#schedule-list tr[data-schedule='nightly']";
    browser.wait_text(&format!("{row} td.cadence"), WITHIN, |t| t == "cron 0 3 * * *").await?;
    screenshot(&browser, "dashboard-schedules.png").await?;

    tracing::info!("--- the API checks what it is asked");
    let host = [("Host", listen.as_str())];
    for bad in
        ["/api/jobs?state=rejected", "/api/jobs?page=99", "/api/jobs?queue=a.b", "/api/jobs?page=x"]
    {
        let (code, body) = http(port, "GET", bad, &host).await?;
        assert_eq!(code, 400, "{bad}: {body}");
    }

    tracing::info!("--- status --watch and the dashboard list a failure stored while they run");
    let watch_args = ["status", "--watch", "--interval", "300ms"];
    let watch = procs.start("watch", &jetwork_tests::binaries::frontend(), &watch_args, &[])?;
    browser.client.goto(&url).await?;
    browser.wait_text("#leader", WITHIN, |t| t.starts_with("leader m1")).await?;
    wait_until("the watch's first frame", WITHIN, || async {
        watch.logs().contains("jetwork status at")
    })
    .await?;
    let before = run.submit("before-restart", b"not a number").await?;
    assert_eq!(run.result(&before, WITHIN).await?.status, ResultStatus::Failed);
    let listed = "#failures tr[data-work-id='before-restart'] td.reason";
    browser.wait_text(listed, WITHIN, |t| !t.is_empty()).await?;
    wait_until("status --watch to list before-restart", WITHIN, || async {
        watch.logs().contains("before-restart [default] attempt")
    })
    .await?;

    tracing::info!("--- NATS down: the dashboard says so and keeps the last figures, greyed");
    run.server.kill();
    browser.wait_text("#leader", WITHIN, |t| t == "dashboard lost NATS").await?;
    browser
        .wait_text("#nats-lost h2", WITHIN, |t| t.to_lowercase() == "dashboard lost nats")
        .await?;
    browser
        .wait_text("#queues.stale tr[data-queue='default'] td.completed", WITHIN, |t| t == "25")
        .await?;
    run.server.restart()?;
    browser.wait_text("#leader", WITHIN, |t| t.starts_with("leader m1")).await?;
    assert_eq!(count(&browser, "#queues.stale").await?, 0);

    tracing::info!(
        "--- after the restart both list new failures again (their consumers are made again)"
    );
    let after = run.submit("after-restart", b"not a number").await?;
    assert_eq!(run.result(&after, WITHIN).await?.status, ResultStatus::Failed);
    let listed = "#failures tr[data-work-id='after-restart'] td.reason";
    browser.wait_text(listed, WITHIN, |t| !t.is_empty()).await?;
    browser
        .wait_text("#failures tr[data-work-id='before-restart'] td.reason", WITHIN, |_| true)
        .await?;
    assert_eq!(count(&browser, "#failures-note").await?, 0, "the feed reads again");
    let frame =
        jetwork_tests::poll_for("a status --watch frame with after-restart", WITHIN, || {
            let logs = watch.logs();
            async move {
                let frames: Vec<&str> = logs.split("jetwork status at").collect();
                // The last frame may still be being written.
                let complete = &frames[..frames.len().saturating_sub(1)];
                let listing = complete.iter().rev().find(|f| f.contains("after-restart [default]"));
                listing.map(|f| (*f).to_owned())
            }
        })
        .await?;
    assert_eq!(frame.matches("before-restart ").count(), 1, "one row per job: {frame}");
    assert!(!frame.contains("not being read"), "{frame}");

    browser.close().await?;
    run.audit().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_reads_nothing_and_a_cross_site_action_changes_nothing() -> anyhow::Result<()>
{
    let run = InProcess::build().start().await?;
    run.await_leader("m1", LEAD_WITHIN).await?;
    let mut procs = run.procs()?;
    // Names added in the environment and on the command line: a reverse proxy's.
    procs.set("JETWORK_FRONTEND__DASHBOARD_ALLOWED_HOSTS", "proxy.internal:8443,Other.Example");
    let port = free_port()?;
    let local = format!("127.0.0.1:{port}");
    let args = [
        "--listen",
        local.as_str(),
        "--refresh",
        "300ms",
        "--allow-actions",
        "--allowed-host",
        "jobs.example.com",
    ];
    let dashboard = procs.dashboard(&args)?;
    wait_until("the dashboard to listen", WITHIN, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
    })
    .await?;

    tracing::info!("--- DNS rebinding: a site's name pointed at the dashboard reads nothing");
    let rebound = format!("rebind.evil.example:{port}");
    for path in [
        "/",
        "/app.js",
        "/api/overview",
        "/api/job?id=order-42",
        "/api/jobs",
        "/api/schedules",
        "/no-such-page",
    ] {
        for method in ["GET", "HEAD"] {
            let (code, body) = http(port, method, path, &[("Host", &rebound)]).await?;
            assert_eq!(code, 403, "{method} {path} through {rebound}: {body}");
            if method == "GET" {
                assert!(body.contains("not a name this dashboard answers for"), "{body}");
                assert!(!body.contains("localhost"), "the allowed names are not listed: {body}");
            }
        }
    }
    let (code, body) = http(port, "GET", "/api/overview", &[]).await?;
    assert_eq!(code, 403, "no Host at all: {body}");
    // A request line in absolute form names a host of its own: it counts too.
    let absolute = format!("http://{rebound}/api/overview");
    let (code, body) = http(port, "GET", &absolute, &[("Host", &local)]).await?;
    assert_eq!(code, 403, "{absolute}: {body}");
    for refused in [
        format!("127.0.0.1:{}", port + 1),
        "127.0.0.1".to_owned(),
        "proxy.internal:9999".to_owned(),
    ] {
        let (code, body) = http(port, "GET", "/api/overview", &[("Host", &refused)]).await?;
        assert_eq!(code, 403, "{refused}: {body}");
    }

    tracing::info!("--- the names it is reachable as, and the operator's, read the pages");
    for host in [
        local.clone(),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        "jobs.example.com".to_owned(),
        "jobs.example.com:443".to_owned(),
        "proxy.internal:8443".to_owned(),
        "other.example:8080".to_owned(),
    ] {
        let (code, body) = http(port, "GET", "/api/overview", &[("Host", &host)]).await?;
        assert_eq!(code, 200, "{host}: {body}");
        assert!(body.contains("\"actions\":true"), "{host}: {body}");
    }

    tracing::info!("--- actions from another site, or from no page: refused, nothing paused");
    let queue = QueueName::parse("csrfq")?;
    // A queue the master knows (one of nothing would be refused 404 whoever asks).
    run.client.submit(&queue, None, Bytes::new()).await?;
    let pause = "/api/action?kind=pause&queue=csrfq";
    let rebound_origin = format!("http://{rebound}");
    let refused: [&[(&str, &str)]; 6] = [
        // The attack reproduced: the page of the rebound name, same-origin with itself.
        &[("Host", &rebound), ("Origin", &rebound_origin), ("X-Jetwork-Action", "1")],
        &[("Host", &local), ("Origin", "http://evil.example"), ("X-Jetwork-Action", "1")],
        &[("Host", &local), ("Origin", "null"), ("X-Jetwork-Action", "1")],
        &[("Host", &local), ("Referer", "http://evil.example/page"), ("X-Jetwork-Action", "1")],
        &[("Host", &local), ("X-Jetwork-Action", "1")],
        // The Origin counts where there is one, whatever the Referer says.
        &[
            ("Host", &local),
            ("Origin", "https://evil.example"),
            ("Referer", "http://localhost/"),
            ("X-Jetwork-Action", "1"),
        ],
    ];
    for headers in refused {
        let (code, body) = http(port, "POST", pause, headers).await?;
        assert_eq!(code, 403, "{headers:?}: {body}");
        assert!(body.contains("Host") || body.contains("another site"), "{headers:?}: {body}");
    }
    // The CORS preflight a cross-origin page would need for X-Jetwork-Action: never approved.
    let preflight = [
        ("Host", local.as_str()),
        ("Origin", "http://evil.example"),
        ("Access-Control-Request-Method", "POST"),
        ("Access-Control-Request-Headers", "x-jetwork-action"),
    ];
    let (code, body) = http(port, "OPTIONS", pause, &preflight).await?;
    assert_eq!(code, 405, "a preflight: {body}");
    assert!(!paused(&run, &queue).await?, "a refused action paused the queue");
    wait_until("the refusals logged", WITHIN, || {
        let logs = dashboard.logs();
        async move { logs.contains("dashboard request refused") }
    })
    .await?;
    let logs = dashboard.logs();
    assert!(logs.contains("rebind.evil.example"), "the log names the host: {logs}");
    // One line a second at most: a flood of refusals does not flood the log.
    let before = logs.matches("dashboard request refused").count();
    for _ in 0..50 {
        let (code, _) = http(port, "GET", "/", &[("Host", &rebound)]).await?;
        assert_eq!(code, 403);
    }
    let lines = dashboard.logs().matches("dashboard request refused").count() - before;
    assert!(lines < 25, "{lines} log lines for 50 refused requests");

    tracing::info!("--- the dashboard's own page, directly or through the proxy, still acts");
    let origin = format!("http://{local}");
    let own = [("Host", local.as_str()), ("Origin", origin.as_str()), ("X-Jetwork-Action", "1")];
    let (code, body) = http(port, "POST", pause, &own).await?;
    assert_eq!(code, 200, "{body}");
    assert!(paused(&run, &queue).await?, "the queue is paused");
    let proxied = [
        ("Host", "jobs.example.com"),
        ("Origin", "https://jobs.example.com"),
        ("X-Jetwork-Action", "1"),
    ];
    let (code, body) = http(port, "POST", "/api/action?kind=resume&queue=csrfq", &proxied).await?;
    assert_eq!(code, 200, "{body}");
    assert!(!paused(&run, &queue).await?, "the queue is resumed");
    // A browser that sends no Origin: its Referer is the dashboard's page.
    let referer = format!("http://localhost:{port}/#/job/x");
    let by_referer = [("Host", local.as_str()), ("Referer", &referer), ("X-Jetwork-Action", "1")];
    let (code, body) = http(port, "POST", pause, &by_referer).await?;
    assert_eq!(code, 200, "{body}");
    assert!(paused(&run, &queue).await?, "paused again");
    run.audit().await?;
    Ok(())
}

/// Whether the leader reports `queue` paused.
async fn paused(run: &InProcess, queue: &QueueName) -> anyhow::Result<bool> {
    let status = run.client.status().await?;
    Ok(status.queues.iter().any(|q| &q.queue == queue && q.paused))
}

/// One request to the dashboard, written as bare HTTP with exactly `headers`; returns its
/// status code and body.
async fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut request = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await??;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let code = raw
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("not an HTTP response: {raw:?}"))?;
    let body = raw.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    Ok((code, body))
}
