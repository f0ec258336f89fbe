//! The role matrix: every documented CLI command and every request subject the leader serves,
//! as each role of the shipped `nats.conf`: it works, or it is refused at once with an error
//! naming the missing permission (the server's "Permissions Violation", reported by the
//! command well before any request timeout), never a timeout or a misleading error.
//!
//! The rows come from the code: the CLI's subcommands as its own `--help` lists them, and
//! `subjects::ENDPOINTS` (the workers' ones also under login `worker-1`, as worker `worker-1`).
//! A command or endpoint added without a row here fails this test.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use jetwork_frontend::dashboard::FEED_STARTING;
use jetwork_frontend::{Client, FrontendSettings, ResultStatus};
use jetwork_shared::config::NatsConfig;
use jetwork_shared::jobs::JobState;
use jetwork_shared::{connect, subjects, QueueName, WorkId};
use jetwork_tests::{binaries, fast_env, shipped_logins, shipped_nats_conf, Fast, InProcess};
use jetwork_worker::{Job, JobError};

const WAIT: Duration = Duration::from_secs(60);
/// A refusal must come well before the request timeout the commands run with.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const AT_ONCE: Duration = Duration::from_secs(5);

/// The roles of the shipped `nats.conf`: user, password.
const ROLES: [(&str, &str); 6] = [
    ("master", "master-local"),
    ("worker-1", "worker-1-local"),
    ("responder", "responder-local"),
    ("client", "client-local"),
    ("operator", "operator-local"),
    ("admin", "admin-local"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Works,
    Refused,
}
use Expect::{Refused, Works};

/// What each CLI row does, as role `r` (arguments; `{r}` is the role's name).
const COMMANDS: [(&str, &[&str]); 19] = [
    ("submit", &["submit", "--id", "{r}-submitted", "7"]),
    ("result", &["result", "done"]),
    ("status", &["status"]),
    ("demo", &["demo", "--count", "2", "--interval", "10ms", "--wait", "30s"]),
    ("init", &["init"]),
    ("job", &["job", "done"]),
    ("jobs", &["jobs"]),
    ("jobs --state failed", &["jobs", "--state", "failed"]),
    ("cancel", &["cancel", "{r}-held"]),
    ("retry", &["retry", "{r}-failed"]),
    ("retry --queue --failed", &["retry", "--queue", "default", "--failed"]),
    ("purge", &["purge", "purged-{r}"]),
    ("pause", &["pause", "paused-{r}"]),
    ("resume", &["resume", "paused-{r}"]),
    ("schedule add", &["schedule", "add", "s-{r}", "--every", "1h", "--queue", "sq", "x"]),
    ("schedule ls", &["schedule", "ls"]),
    ("schedule rm", &["schedule", "rm", "s-{r}"]),
    ("dashboard", &[]),
    ("status --watch", &["status", "--watch", "--count", "1", "--interval", "100ms"]),
];

/// The expected outcome of a CLI row for a role.
fn command_expect(row: &str, role: &str) -> Expect {
    let reader = ["client", "operator", "admin"].contains(&role);
    let operator = ["operator", "admin"].contains(&role);
    let allowed = match row {
        // Reading stored results: the master may too (it reads them back itself).
        "result" => reader || role == "master",
        // Checking the streams: the master creates them, clients may look them up.
        "init" => reader || role == "master",
        "submit"
        | "status"
        | "demo"
        | "job"
        | "jobs"
        | "jobs --state failed"
        | "schedule ls"
        | "dashboard"
        | "status --watch" => reader,
        "cancel"
        | "retry"
        | "retry --queue --failed"
        | "purge"
        | "pause"
        | "resume"
        | "schedule add"
        | "schedule rm" => operator,
        other => panic!("no row for the CLI command {other:?}"),
    };
    if allowed {
        Works
    } else {
        Refused
    }
}

/// The expected outcome of asking an endpoint as a role.
fn endpoint_expect(subject: &str, role: &str) -> Expect {
    if WORKER_1_ENDPOINTS.contains(&subject) {
        // A worker login's endpoints are its user's (and the admin's).
        return if ["worker-1", "admin"].contains(&role) { Works } else { Refused };
    }
    let allowed = match subject {
        // Without a login: nobody but the admin (the shipped master refuses them anyway).
        subjects::MASTER_REGISTER
        | subjects::MASTER_REQUEST
        | subjects::MASTER_REPORT
        | subjects::MASTER_DEREGISTER => role == "admin",
        subjects::MASTER_STATUS
        | subjects::MASTER_JOB
        | subjects::MASTER_JOBS
        | subjects::MASTER_SCHEDULES => ["client", "operator", "admin"].contains(&role),
        subjects::ADMIN_CANCEL
        | subjects::ADMIN_RETRY
        | subjects::ADMIN_RETRY_ALL
        | subjects::ADMIN_PURGE
        | subjects::ADMIN_PAUSE
        | subjects::ADMIN_RESUME
        | subjects::ADMIN_SCHEDULE_ADD
        | subjects::ADMIN_SCHEDULE_RM => ["operator", "admin"].contains(&role),
        other => panic!("no row for the endpoint {other}"),
    };
    if allowed {
        Works
    } else {
        Refused
    }
}

/// The workers' endpoints under login `worker-1`, as its worker `worker-1`.
const WORKER_1_ENDPOINTS: [&str; 4] = [
    "jetwork.master.register.worker-1.worker-1",
    "jetwork.master.request.worker-1.worker-1",
    "jetwork.master.report.worker-1.worker-1",
    "jetwork.master.deregister.worker-1.worker-1",
];

fn inbox_of(user: &str) -> Option<String> {
    (user != "admin").then(|| format!("_INBOX_{user}"))
}

fn login(nats: &mut NatsConfig, user: &str, password: &str) {
    nats.user = Some(user.to_owned());
    nats.password = Some(password.to_owned());
    nats.inbox_prefix = inbox_of(user);
}

fn as_roles(fast: &mut Fast) {
    login(&mut fast.master.nats, "master", "master-local");
    login(&mut fast.frontend.nats, "client", "client-local");
}

/// The CLI's subcommands, as its `--help` lists them (`schedule`'s own too).
fn cli_commands(args: &[&str]) -> anyhow::Result<Vec<String>> {
    let help =
        std::process::Command::new(binaries::frontend()).args(args).arg("--help").output()?;
    let text = String::from_utf8_lossy(&help.stdout).into_owned();
    let listed = text.split("Commands:").nth(1).unwrap_or_default();
    let listed = listed.split("Options:").next().unwrap_or_default();
    Ok(listed
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect())
}

/// Runs one CLI row as a role: whether it worked, how long it took, what it said.
async fn run_cli(
    env: &[(String, String)],
    role: (&str, &str),
    args: &[&str],
) -> anyhow::Result<(bool, Duration, String)> {
    let (user, password) = role;
    let args: Vec<String> = args.iter().map(|a| a.replace("{r}", user)).collect();
    let mut command = tokio::process::Command::new(binaries::frontend());
    command
        .args(&args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("NATS_USER", user)
        .env("NATS_PASSWORD", password)
        .env("JETWORK_NATS__REQUEST_TIMEOUT", format!("{}s", REQUEST_TIMEOUT.as_secs()))
        .env("NO_COLOR", "1")
        .env_remove("RUST_BACKTRACE")
        .kill_on_drop(true);
    if let Some(inbox) = inbox_of(user) {
        command.env("JETWORK_NATS__INBOX_PREFIX", inbox);
    }
    let started = Instant::now();
    let output = tokio::time::timeout(WAIT, command.output()).await??;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.success(), started.elapsed(), text))
}

/// Runs the dashboard as a role until its overview shows the leader's status and whether its
/// failures feed reads (it works if both) or an error (refused): whether it worked, how long
/// it took, what it showed.
async fn run_dashboard(
    env: &[(String, String)],
    role: (&str, &str),
) -> anyhow::Result<(bool, Duration, String)> {
    let (user, password) = role;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    drop(listener);
    let mut command = tokio::process::Command::new(binaries::frontend());
    command
        .args(["dashboard", "--listen", &address.to_string(), "--refresh", "200ms"])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("NATS_USER", user)
        .env("NATS_PASSWORD", password)
        .env("JETWORK_NATS__REQUEST_TIMEOUT", format!("{}s", REQUEST_TIMEOUT.as_secs()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some(inbox) = inbox_of(user) {
        command.env("JETWORK_NATS__INBOX_PREFIX", inbox);
    }
    let started = Instant::now();
    let _dashboard = command.spawn()?;
    let http = reqwest_free_get(address);
    let overview = jetwork_tests::poll_for("the dashboard's first sample", WAIT, || async {
        let body = http(String::from("/api/overview")).await.ok()?;
        let overview: serde_json::Value = serde_json::from_str(&body).ok()?;
        let feed_started = overview["failures_note"] != FEED_STARTING;
        let sampled = !overview["status"].is_null() && feed_started;
        (sampled || !overview["error"].is_null()).then_some(overview)
    })
    .await?;
    let works = !overview["status"].is_null() && overview["failures_note"].is_null();
    let said = format!("{} / failures: {}", overview["error"], overview["failures_note"]);
    Ok((works, started.elapsed(), said))
}

/// A plain HTTP/1.1 GET of a path on `address`, the body as text.
fn reqwest_free_get(
    address: std::net::SocketAddr,
) -> impl Fn(String) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<String>> + Send>>
{
    move |path: String| {
        Box::pin(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = tokio::net::TcpStream::connect(address).await?;
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await?;
            let mut response = String::new();
            stream.read_to_string(&mut response).await?;
            let (_, body) = response.split_once("\r\n\r\n").unwrap_or_default();
            Ok(body.to_owned())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_and_request_works_or_is_refused_at_once_naming_the_permission(
) -> anyhow::Result<()> {
    // The shipped logins, with worker-1 also serving the queue the held jobs wait in.
    let mut logins = shipped_logins()?;
    if let Some(worker_1) = logins.get_mut("worker-1") {
        worker_1.queues.push("held".to_owned());
    }
    let run = InProcess::build()
        .config(&shipped_nats_conf()?)
        .tune(move |fast| {
            as_roles(fast);
            fast.master.logins = logins;
        })
        .audit_as("admin", "admin-local")
        .client_after_streams()
        .start()
        .await?;
    let held = QueueName::parse("held")?;
    let served = vec!["default".to_owned(), "held".to_owned()];
    let _worker = run.worker_with(
        "worker-1",
        move |w| {
            login(&mut w.nats, "worker-1", "worker-1-local");
            w.worker.queues = served;
        },
        |job: Job| async move {
            match job.payload.as_ref() {
                b"fail" => Err(JobError::permanent("asked to fail")),
                _ => Ok(job.payload),
            }
        },
    );

    tracing::info!("--- the rows come from the CLI and from subjects.rs");
    let mut commands: BTreeSet<String> = cli_commands(&[])?.into_iter().collect();
    commands.remove("schedule");
    for sub in cli_commands(&["schedule"])? {
        commands.insert(format!("schedule {sub}"));
    }
    let rows: BTreeSet<String> =
        COMMANDS.iter().map(|(row, _)| row.split(" --").next().unwrap_or(row).to_owned()).collect();
    let missing: Vec<&String> = commands.difference(&rows).collect();
    assert!(missing.is_empty(), "CLI commands without a row in the matrix: {missing:?}");

    tracing::info!("--- what the rows act on: a finished job, held and failed jobs per role");
    let mut admin_settings: FrontendSettings = run.fast.frontend.clone();
    login(&mut admin_settings.nats, "admin", "admin-local");
    let admin = Client::connect(admin_settings).await?;
    let queue = QueueName::default_queue();
    let done = admin.submit(&queue, Some(WorkId::parse("done")?), Bytes::from_static(b"1")).await?;
    admin.wait_for(&done, WAIT).await?;
    admin.pause(&held, true).await?;
    let mut failed_runs = Vec::new();
    for (user, _) in ROLES {
        let id = WorkId::parse(&format!("{user}-held"))?;
        admin.submit(&held, Some(id), Bytes::new()).await?;
        let failed = WorkId::parse(&format!("{user}-failed"))?;
        let failed = admin.submit(&queue, Some(failed), Bytes::from_static(b"fail")).await?;
        assert_eq!(admin.wait_for(&failed, WAIT).await?.status, ResultStatus::Failed);
        failed_runs.push(failed);
        // A queue must be known to be purged or paused (a name never seen is refused): one
        // submission each, waiting unread (nobody serves them).
        for known in [format!("purged-{user}"), format!("paused-{user}")] {
            admin.submit(&QueueName::parse(&known)?, None, Bytes::new()).await?;
        }
    }
    // The held jobs are read (the queue is paused, and served): cancel finds them in flight.
    for (user, _) in ROLES {
        let id = WorkId::parse(&format!("{user}-held"))?;
        jetwork_tests::wait_until(&format!("{id} to be read"), WAIT, || async {
            admin.job(&id, None).await.is_ok_and(|job| job.state == JobState::Ready)
        })
        .await?;
    }

    tracing::info!("--- every CLI command as every role");
    let env = fast_env(&run.server.url());
    let mut wrong = Vec::new();
    for (row, args) in COMMANDS {
        for role in ROLES {
            let expect = command_expect(row, role.0);
            let (worked, took, said) = match row {
                "dashboard" => run_dashboard(&env, role).await?,
                _ => run_cli(&env, role, args).await?,
            };
            let named = said.contains("Permissions Violation");
            let ok = match expect {
                Works => worked && !named,
                Refused => !worked && named && took < AT_ONCE,
            };
            tracing::info!(row, role = role.0, ?expect, worked, ?took, "matrix row");
            if !ok {
                wrong.push(format!(
                    "{row} as {}: expected {expect:?}, took {took:?}: {said}",
                    role.0
                ));
            }
        }
    }

    tracing::info!("--- every endpoint as every role");
    let login_endpoints = subjects::WORKER_ENDPOINTS.map(|endpoint| {
        let subject = format!("{endpoint}.worker-1.worker-1");
        assert!(WORKER_1_ENDPOINTS.contains(&subject.as_str()), "{subject} has a row");
        subject
    });
    let all: Vec<String> =
        subjects::ENDPOINTS.iter().map(|s| (*s).to_owned()).chain(login_endpoints).collect();
    for subject in &all {
        let subject = subject.as_str();
        for (user, password) in ROLES {
            let expect = endpoint_expect(subject, user);
            let mut nats = run.fast.frontend.nats.clone();
            login(&mut nats, user, password);
            let (client, denials) =
                connect::connect_with_denials(&nats, "matrix", REQUEST_TIMEOUT).await?;
            let inbox = inbox_of(user).unwrap_or_else(|| "_INBOX".to_owned());
            let started = Instant::now();
            let asked = client.request(subject.to_owned(), Bytes::from_static(b"{}"));
            let answer = tokio::time::timeout(WAIT, denials.guard(subject, &inbox, asked)).await?;
            let took = started.elapsed();
            let ok = match (&answer, expect) {
                (Ok(Ok(_)), Works) => true,
                (Err(denied), Refused) => {
                    denied.violation.contains("Permissions Violation") && took < AT_ONCE
                }
                _ => false,
            };
            if !ok {
                wrong.push(format!("{subject} as {user}: expected {expect:?}, got {answer:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{} rows are wrong:\n{}", wrong.len(), wrong.join("\n"));

    tracing::info!("--- the retries the operator's rows asked for ran: the master may submit them");
    // `retry --queue default --failed` as the operator retried every failed job of the queue;
    // each runs again (and fails again) only if the master may store its own submissions and
    // read the retried payload back.
    for failed in &failed_runs {
        let what = format!("a new run of {}", failed.work_id);
        jetwork_tests::poll_for(&what, WAIT, || async {
            let stored = admin.result(Some(&queue), &failed.work_id).await.ok().flatten()?;
            (stored.submit_seq > failed.seq).then_some(())
        })
        .await?;
    }
    run.stop().await;
    Ok(())
}
