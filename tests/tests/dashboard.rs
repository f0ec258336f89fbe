//! The web dashboard in a real browser: headless Chromium loads the pages the real
//! `jetwork-frontend dashboard` serves while a master and a worker run jobs, and the test
//! checks what a person would see — the queue counts `status --json` reports, the workers,
//! a failed job's reason in the list and on its page, "no leader" during a failover — then
//! saves a screenshot (`target/dashboard.png`, or `JETWORK_SCREENSHOT`).

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use fantoccini::Locator;
use jetwork_frontend::ResultStatus;
use jetwork_shared::WorkId;
use jetwork_tests::nats_server::free_port;
use jetwork_tests::{wait_until, Browser, InProcess};

const WITHIN: Duration = Duration::from_secs(30);
/// Jobs that complete (one more fails).
const JOBS: u32 = 30;

/// Where the screenshot goes.
fn screenshot_path() -> PathBuf {
    if let Some(path) = std::env::var_os("JETWORK_SCREENSHOT") {
        return PathBuf::from(path);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard.png")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_what_status_reports() -> anyhow::Result<()> {
    let Some(browser) = Browser::start(1280, 1000).await? else {
        eprintln!("JETWORK_SKIP_BROWSER=1: skipping the browser test");
        return Ok(());
    };
    let mut run = InProcess::build().start().await?;
    run.await_leader("m1", WITHIN).await?;
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
    assert!(browser.text("#workers tr[data-worker='w1']").await.is_some());
    assert!(browser.text("#workers tr[data-worker='w2']").await.is_some());
    browser.wait_text("#mode", WITHIN, |t| t == "read-only").await?;

    tracing::info!("--- the failure is listed with its reason");
    let row = "#failures tr[data-work-id='shown-bad'] td.reason";
    browser.wait_text(row, WITHIN, |t| t == reason).await?;
    let charts =
        browser.client.find_all(Locator::Css("#charts svg path[data-queue='default']")).await?;
    assert!(!charts.is_empty(), "the charts draw the default queue");

    // The screenshot of the overview, for README.
    let png = browser.client.screenshot().await?;
    let path = screenshot_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, png)?;
    tracing::info!(path = %path.display(), "screenshot saved");

    tracing::info!("--- the failed job's page shows the reason");
    browser.click("#failures tr[data-work-id='shown-bad'] a.job-link", WITHIN).await?;
    browser.wait_text("#job-status", WITHIN, |t| t == "failed").await?;
    browser.wait_text("#job-reason", WITHIN, |t| t == reason).await?;
    assert_eq!(browser.text("#job-queue").await.as_deref(), Some("default"));

    tracing::info!("--- a completed job's page shows its result");
    browser.client.goto(&format!("{url}#/job/shown-3")).await?;
    browser.wait_text("#job-status", WITHIN, |t| t == "completed").await?;
    browser.wait_text("#job-result", WITHIN, |t| t == "3 * 3 = 9").await?;

    tracing::info!("--- read-only: actions are refused");
    let refused = post(port, "/api/action?kind=retry&id=shown-bad").await?;
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");

    tracing::info!("--- no leader: the page says so and names the lease holder");
    browser.client.goto(&url).await?;
    run.stop_masters().await;
    browser.wait_text("#leader", WITHIN, |t| t == "no leader").await?;
    browser.wait_text("#no-leader pre", WITHIN, |t| t.contains("no leader right now")).await?;

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
    run.await_leader("m1", WITHIN).await?;
    let _w1 = run.worker("w1", jetwork_worker::square);
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

    tracing::info!("--- pause the queue with its button, then resume it");
    browser.client.goto(&url).await?;
    browser.wait_text("#mode", WITHIN, |t| t == "actions enabled").await?;
    let pause = "#queues tr[data-queue='default'] button.queue-pause";
    browser.wait_text(pause, WITHIN, |t| t == "Pause").await?;
    browser.click(pause, WITHIN).await?;
    browser
        .wait_text("#queues tr[data-queue='default'] .paused", WITHIN, |t| t.contains("paused"))
        .await?;
    let (ok, text) = procs.frontend(&["status", "--json"]).await?;
    assert!(ok && text.contains("\"paused\": true"), "{text}");
    let resume = "#queues tr[data-queue='default'] button.queue-resume";
    browser.click(resume, WITHIN).await?;
    browser.wait_text(pause, WITHIN, |t| t == "Pause").await?;

    tracing::info!("--- retry the failed job from its page: it runs again, attempts numbered on");
    browser.client.goto(&format!("{url}#/job/retried")).await?;
    browser.wait_text("#job-status", WITHIN, |t| t == "failed").await?;
    let attempts: u32 =
        browser.wait_text("#job-attempt", WITHIN, |t| t.parse::<u32>().is_ok()).await?.parse()?;
    browser.click("#retry", WITHIN).await?;
    browser
        .wait_text("#job-attempt", WITHIN, |t| t.parse::<u32>().is_ok_and(|n| n > attempts))
        .await?;
    // Its attempt history is on the page, the new attempts numbered after the old ones.
    let numbered = format!("#attempts tr[data-attempt='{}']", attempts + 1);
    browser.wait_text(&numbered, WITHIN, |t| t.contains("w1")).await?;

    browser.close().await?;
    run.audit().await?;
    Ok(())
}

/// POSTs to the dashboard with a bare HTTP request; returns the whole response.
async fn post(port: u16, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Jetwork-Action: 1\r\nContent-Length: 0\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw)).await??;
    Ok(String::from_utf8_lossy(&raw).into_owned())
}
