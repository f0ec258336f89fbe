//! Floods of what anyone may send: the master's priority notices, status and admin requests
//! by the hundred thousand cost their own subscriptions some dropped messages and never make
//! the queue readers doubt their deliveries (intake has a connection of its own); idle HTTP
//! connections by the hundred cost the metrics listener and the dashboard no more than their
//! connection cap (the excess is answered 503 and closed at once), the connections admitted
//! are still served, and new ones are again once those close; garbage, oversized and silent
//! request heads are answered 400 or 431, or closed, and the next client is served.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use jetwork_shared::{subjects, QueueName, WorkId};
use jetwork_tests::nats_server::free_port;
use jetwork_tests::{wait_until, InProcess, Process, Scraper};
use jetwork_worker::square;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WITHIN: Duration = Duration::from_secs(120);

/// Publishes `n` messages on `subject` as fast as the connection takes them: with a reply
/// subject nobody listens on (requests) or without (notices), `body(i)` each.
async fn flood(
    nats: async_nats::Client,
    subject: &'static str,
    n: usize,
    request: bool,
    body: fn(usize) -> (Option<async_nats::HeaderMap>, Bytes),
) -> anyhow::Result<()> {
    for i in 0..n {
        let (headers, payload) = body(i);
        match (request, headers) {
            (true, _) => nats.publish_with_reply(subject, "_INBOX.flood", payload).await?,
            (false, Some(headers)) => nats.publish_with_headers(subject, headers, payload).await?,
            (false, None) => nats.publish(subject, payload).await?,
        }
    }
    nats.flush().await?;
    Ok(())
}

/// Junk and forged priority notices on `jetwork.submitted.default`.
fn notice(i: usize) -> (Option<async_nats::HeaderMap>, Bytes) {
    if i.is_multiple_of(2) {
        return (None, Bytes::from(format!("junk {i}")));
    }
    // A priority notice naming a sequence nobody stored: each may cost an out-of-turn read.
    let forged = jetwork_shared::job_options::priority_notice(1_000_000 + i as u64, "9");
    (Some(forged), Bytes::new())
}

fn status_request(_: usize) -> (Option<async_nats::HeaderMap>, Bytes) {
    (None, Bytes::from_static(b"{}"))
}

fn admin_garbage(i: usize) -> (Option<async_nats::HeaderMap>, Bytes) {
    (None, Bytes::from(format!("{{\"queue\": {i}")))
}

/// Every flood at once, each from a connection of its own.
async fn floods(run: &InProcess, size: usize) -> anyhow::Result<()> {
    let submitted = "jetwork.submitted.default";
    let f = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok()).unwrap_or(1);
    let sent = tokio::try_join!(
        flood(run.server.connect().await?, submitted, size * f("FN"), false, notice),
        flood(
            run.server.connect().await?,
            subjects::MASTER_STATUS,
            size * f("FS"),
            true,
            status_request
        ),
        flood(
            run.server.connect().await?,
            subjects::ADMIN_PAUSE,
            size * f("FA") / 4,
            true,
            admin_garbage
        ),
    );
    sent.map(|_| ())
}

/// When each result of the default queue was seen.
fn watch_results(nats: async_nats::Client) -> Arc<Mutex<HashMap<String, Instant>>> {
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        let Ok(mut results) = nats.subscribe("jetwork.results.default.>").await else { return };
        while let Some(result) = results.next().await {
            let id = result.subject.rsplit('.').next().unwrap_or_default().to_owned();
            record
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(id)
                .or_insert(Instant::now());
        }
    });
    seen
}

/// Submits `count` squares one every `pace`, noting when each was acknowledged.
fn load(
    run: &InProcess,
    prefix: &'static str,
    count: u32,
    pace: Duration,
) -> tokio::task::JoinHandle<anyhow::Result<Vec<(WorkId, Instant)>>> {
    let client = run.client.clone();
    tokio::spawn(async move {
        let queue = QueueName::default_queue();
        let mut acked = Vec::new();
        for n in 1..=count {
            let id = WorkId::parse(&format!("{prefix}{n}"))?;
            client.submit(&queue, Some(id.clone()), Bytes::from(n.to_string())).await?;
            acked.push((id, Instant::now()));
            // Spreads the jobs over the floods; not a wait for anything.
            tokio::time::sleep(pace).await;
        }
        Ok(acked)
    })
}

/// The master's count of reader restarts (its `/metrics`).
async fn rereads(scraper: &Scraper) -> anyhow::Result<f64> {
    let scrape = scraper.metrics().await?;
    scrape.get("jetwork_master_intake_rereads_total", &[]).ok_or_else(|| {
        anyhow::anyhow!("no jetwork_master_intake_rereads_total in\n{}", scrape.text)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_notices_and_requests_never_make_the_readers_read_again() -> anyhow::Result<()> {
    let run = InProcess::build().masters(&[]).start().await?;
    let mut procs = run.procs()?;
    let port = free_port()?;
    // The real binary (one thread, like in production) logging as it does by default; a lease
    // that outlives the freeze.
    procs
        .set("JETWORK_MASTER__METRICS_LISTEN", &format!("127.0.0.1:{port}"))
        .set("JETWORK_MASTER__LEASE_TTL", "10s")
        .set("RUST_LOG", "info,async_nats=warn");
    let master: Process = procs.master("m1")?;
    let scraper = Scraper { addr: ([127, 0, 0, 1], port).into() };
    let _workers = [run.worker("w1", square), run.worker("w2", square)];
    run.await_leader("m1", WITHIN).await?;
    let seen = watch_results(run.server.connect().await?);
    let warm = run.submit("warm", b"3").await?;
    run.result(&warm, WITHIN).await?;
    assert_eq!(rereads(&scraper).await?, 0.0);
    let started = Instant::now();

    tracing::info!("--- floods while jobs arrive and run");
    let live = load(&run, "live-", 200, Duration::from_millis(20));
    floods(&run, 100_000).await?;
    let acked = live.await??;

    tracing::info!("--- floods that pile up while the master is frozen, then arrive at once");
    let frozen = load(&run, "frozen-", 100, Duration::from_millis(20));
    master.freeze()?;
    let froze = Instant::now();
    let flooded = floods(&run, 60_000).await;
    master.resume()?;
    let resumed = Instant::now();
    flooded?;
    let frozen = frozen.await??;

    let ids: Vec<WorkId> = acked.iter().chain(&frozen).map(|(id, _)| id.clone()).collect();
    run.completed(&ids, WITHIN).await?;
    let logs = master.logs();
    let overflowed = logs.matches("messages dropped for a slow subscription").count();
    assert!(
        overflowed > 0,
        "the floods overflowed no subscription (this test shows nothing):\n{logs}"
    );
    // At most one line a second per connection, however many messages were dropped.
    let bound = 3 * (started.elapsed().as_secs() as usize + 1);
    assert!(overflowed <= bound, "{overflowed} lines about dropped messages:\n{logs}");
    assert_eq!(rereads(&scraper).await?, 0.0, "a reader read again:\n{logs}");
    assert!(!logs.contains("may have missed deliveries"), "{logs}");

    // Figures for the record: how long jobs took from their acknowledgement to their result (a
    // job acknowledged while the master was frozen cannot start before it resumes).
    let seen = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let delays = |jobs: &[(WorkId, Instant)]| {
        let mut d: Vec<Duration> = jobs
            .iter()
            .filter_map(|(id, at)| {
                let from = if *at > froze && *at < resumed { resumed } else { *at };
                Some(seen.get(id.as_str())?.saturating_duration_since(from))
            })
            .collect();
        d.sort();
        (d.get(d.len() / 2).copied(), d.last().copied())
    };
    println!("frozen for {:?}; {overflowed} lines about dropped messages", resumed - froze);
    println!("during the floods, job delay (median, max): {:?}", delays(&acked));
    println!("after the freeze, job delay (median, max): {:?}", delays(&frozen));
    run.stop().await;
    Ok(())
}

/// Connections each listener serves at once in the test below.
const CAP: usize = 8;
/// Connections opened beyond the cap.
const EXCESS: usize = 300;

/// Sends one request on `stream` and reads the whole answer (the listeners close after it).
async fn ask(stream: &mut TcpStream, path: &str, port: u16) -> anyhow::Result<String> {
    let head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    read_all(stream).await
}

/// Everything `stream` sends until it is closed, within 3 s (an admitted idle connection is
/// only closed after 5 s, so a refusal is told apart from it).
async fn read_all(stream: &mut TcpStream) -> anyhow::Result<String> {
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut answer))
        .await
        .map_err(|_| anyhow::anyhow!("nothing but silence for 3 s"))??;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// The open file descriptors of process `pid`.
fn descriptors(pid: u32) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// Holds `CAP` idle connections to `port`, checks that `EXCESS` more are each answered 503 and
/// closed at once (so they cost the process no descriptor), that a held one is still served,
/// and that once they are closed a new connection is served again.
async fn capped(name: &str, port: u16, pid: u32, path: &str) -> anyhow::Result<()> {
    let before = descriptors(pid)?;
    let mut held = Vec::new();
    for _ in 0..CAP {
        held.push(TcpStream::connect(("127.0.0.1", port)).await?);
    }
    // The listener accepts in the order connections arrive: once one beyond them is refused,
    // all of them are admitted.
    wait_until(&format!("{name}: a connection beyond the cap to be refused"), WITHIN, || async {
        let Ok(mut extra) = TcpStream::connect(("127.0.0.1", port)).await else { return false };
        read_all(&mut extra).await.is_ok_and(|a| a.starts_with("HTTP/1.1 503"))
    })
    .await?;
    let mut excess = Vec::new();
    for _ in 0..EXCESS {
        excess.push(TcpStream::connect(("127.0.0.1", port)).await?);
    }
    for (i, stream) in excess.iter_mut().enumerate() {
        let answer =
            read_all(stream).await.map_err(|e| anyhow::anyhow!("{name}, excess {i}: {e}"))?;
        assert!(answer.starts_with("HTTP/1.1 503"), "{name}, excess {i}: {answer}");
        assert!(answer.contains("too many connections"), "{name}: {answer}");
    }
    let during = descriptors(pid)?;
    println!("{name}: {before} descriptors before, {during} with {CAP} held and {EXCESS} refused");
    assert!(during <= before + CAP + 4, "{name}: {during} descriptors, {before} before");

    let answer = ask(&mut held[0], path, port).await?;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{name}: an admitted connection is served: {answer}"
    );
    drop(held);
    wait_until(&format!("{name}: a new connection to be served"), WITHIN, || async {
        let Ok(mut probe) = TcpStream::connect(("127.0.0.1", port)).await else { return false };
        ask(&mut probe, path, port).await.is_ok_and(|a| a.starts_with("HTTP/1.1 200"))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_listeners_serve_at_most_their_connection_cap() -> anyhow::Result<()> {
    let run = InProcess::build().masters(&[]).start().await?;
    let mut procs = run.procs()?;
    let (metrics_port, dashboard_port) = (free_port()?, free_port()?);
    procs
        .set("JETWORK_MASTER__METRICS_LISTEN", &format!("127.0.0.1:{metrics_port}"))
        .set("JETWORK_MASTER__HTTP_MAX_CONNECTIONS", &CAP.to_string());
    let master = procs.master("m1")?;
    run.await_leader("m1", WITHIN).await?;
    let listen = format!("127.0.0.1:{dashboard_port}");
    let cap = CAP.to_string();
    let dashboard = procs.dashboard(&["--listen", &listen, "--max-connections", &cap])?;
    wait_until("the dashboard to listen", WITHIN, || async {
        TcpStream::connect(("127.0.0.1", dashboard_port)).await.is_ok()
    })
    .await?;

    capped("metrics", metrics_port, master.pid(), "/healthz").await?;
    capped("dashboard", dashboard_port, dashboard.pid(), "/style.css").await?;
    for (name, logs) in [("metrics", master.logs()), ("dashboard", dashboard.logs())] {
        let lines = logs.matches("too many connections at once").count();
        assert!((1..=10).contains(&lines), "{name}: {lines} lines about refusals:\n{logs}");
    }
    run.stop().await;
    Ok(())
}

/// Sends `bytes` on a new connection to `port`; what comes back before the listener closes
/// it (a reset after an answer included: a listener that refuses a head it has not read whole
/// closes with bytes unread).
async fn send(port: u16, bytes: &[u8]) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(bytes).await?;
    let mut answer = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = stream.read(&mut chunk).await {
            answer.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .map_err(|_| anyhow::anyhow!("not closed within 10 s"))?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_listeners_answer_garbage_and_oversized_heads_and_serve_the_next() -> anyhow::Result<()>
{
    let run = InProcess::build().masters(&[]).start().await?;
    let mut procs = run.procs()?;
    let (metrics_port, dashboard_port) = (free_port()?, free_port()?);
    procs.set("JETWORK_MASTER__METRICS_LISTEN", &format!("127.0.0.1:{metrics_port}"));
    let _master = procs.master("m1")?;
    run.await_leader("m1", WITHIN).await?;
    let listen = format!("127.0.0.1:{dashboard_port}");
    let _dashboard = procs.dashboard(&["--listen", &listen])?;
    wait_until("the dashboard to listen", WITHIN, || async {
        TcpStream::connect(("127.0.0.1", dashboard_port)).await.is_ok()
    })
    .await?;

    for (name, port, path) in
        [("metrics", metrics_port, "/healthz"), ("dashboard", dashboard_port, "/style.css")]
    {
        // Held open, silent or half-sent, while the others are answered.
        let mut silent = TcpStream::connect(("127.0.0.1", port)).await?;
        let mut half = TcpStream::connect(("127.0.0.1", port)).await?;
        half.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n").as_bytes())
            .await?;
        for garbage in [
            &b"\x16\x03\x01\x02\x00\x01\x00 a TLS hello\r\n\r\n"[..],
            b"GET /\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nno colon\r\n\r\n",
        ] {
            let answer = send(port, garbage).await?;
            assert!(answer.starts_with("HTTP/1.1 400"), "{name}, {garbage:?}: {answer}");
        }
        let big = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Big: {}\r\n\r\n",
            "a".repeat(9 * 1024)
        );
        let answer = send(port, big.as_bytes()).await?;
        assert!(answer.starts_with("HTTP/1.1 431"), "{name}, a 9 KiB head: {answer}");
        let answer = ask(&mut TcpStream::connect(("127.0.0.1", port)).await?, path, port).await?;
        assert!(answer.starts_with("HTTP/1.1 200"), "{name}: the next is served: {answer}");
        // The header timeout (5 s) closes the silent ones, unanswered.
        for stream in [&mut silent, &mut half] {
            let mut rest = Vec::new();
            tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut rest)).await??;
            assert!(rest.is_empty(), "{name}: {}", String::from_utf8_lossy(&rest));
        }
    }
    run.stop().await;
    Ok(())
}
