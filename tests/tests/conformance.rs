//! The conformance kit (`jetwork-conformance`, a fake master on a real nats-server) against
//! the three worker implementations the project ships: the Rust worker (`--exec`), the Python
//! library, and `--forward` to a plain NATS service. Each must pass every case. And the kit
//! itself: each case fails against a Python worker broken in the one way that case is about
//! (`worker/python/tests/conformance_worker.py --break <mode>`), so no case passes by default.

use std::process::Command;

use anyhow::Context as _;
use jetwork_tests::{binaries, python, NatsServer};

/// Each case, and the breakage that must fail it (`conformance_worker.py --break`).
const BROKEN_BY: [(&str, &str); 14] = [
    ("completes-with-its-token", "wrong-token"),
    ("resends-until-a-verdict", "no-resend"),
    ("every-verdict-ends-the-resends", "resends-unless-accepted"),
    ("superseded-stops-the-attempt", "ignores-superseded"),
    ("revoke-stops-the-attempt", "ignores-revokes"),
    ("ignores-a-revoke-from-another-epoch", "revokes-from-any-epoch"),
    ("ignores-a-stale-epoch", "takes-stale-replies"),
    ("ignores-an-unconfirmed-epoch", "trusts-claimed-epochs"),
    ("ignores-a-forged-election", "trusts-announcements"),
    ("follows-a-confirmed-election-mid-report", "ignores-elections"),
    ("runs-again-for-a-new-leader", "one-grant-per-attempt"),
    ("registers-again-when-forgotten", "ignores-404"),
    ("stays-within-its-capacity", "over-asks"),
    ("drains-and-deregisters-on-sigterm", "no-deregister"),
];

/// The worker settings the kit asks for: outcomes re-sent every second (`--resend-within`
/// is 3 s here), registrations at the default 10 s.
const RESEND: &str = "JETWORK_WORKER__RESEND_INTERVAL=1s";

/// Runs the kit with `worker_cmd` (against `nats`, or a server of its own), returning whether
/// it passed and what it printed.
fn kit(worker_cmd: &str, nats: Option<&str>, cases: &[&str]) -> anyhow::Result<(bool, String)> {
    // The workers' output goes where the test cleans up (the kit keeps it for its user).
    let logs = tempfile::tempdir()?;
    let mut command = Command::new(env!("CARGO_BIN_EXE_jetwork-conformance"));
    command.args(["--worker-cmd", worker_cmd, "--resend-within", "3s"]);
    command.arg("--logs").arg(logs.path());
    if let Some(url) = nats {
        command.args(["--nats", url]);
    }
    if !cases.is_empty() {
        command.args(["--case", &cases.join(",")]);
    }
    let output = command.output().context("running jetwork-conformance")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.success(), text))
}

/// The Python library's conformance worker, broken in `mode` if given.
fn python_worker(mode: Option<&str>) -> String {
    let library = python::library_dir();
    let script = library.join("tests/conformance_worker.py");
    let broken = mode.map(|m| format!(" --break {m}")).unwrap_or_default();
    format!(
        "PYTHONPATH={} exec {} {}{broken}",
        library.display(),
        python::interpreter().display(),
        script.display()
    )
}

fn assert_passes(what: &str, (passed, text): (bool, String)) {
    println!("{text}");
    assert!(passed, "{what} fails the conformance kit:\n{text}");
    assert!(text.contains("14 of 14 cases passed"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_worker_passes_every_case() -> anyhow::Result<()> {
    // The handler contract in a shell line: wait the payload's seconds, print the payload.
    let worker = format!(
        "{RESEND} exec {} --queue conformance --concurrency 3 --progress-every 1s \
         --exec 'read -r s t; sleep \"$s\"; printf \"%s %s\" \"$s\" \"$t\"'",
        binaries::worker().display()
    );
    assert_passes("the Rust worker", kit(&worker, None, &[])?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_library_passes_every_case() -> anyhow::Result<()> {
    assert_passes("the Python library", kit(&python_worker(None), None, &[])?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarding_worker_passes_every_case() -> anyhow::Result<()> {
    // The service lives apart from the worker, as it would: the kit stops and starts workers,
    // the service answers throughout.
    let server = NatsServer::start()?;
    let dir = tempfile::tempdir()?;
    let _service =
        python::start(&server, dir.path(), "responder", "tests/conformance_responder.py", &[])?;
    let worker = format!(
        "{RESEND} exec {} --queue conformance --concurrency 3 --forward jetwork.svc.conformance",
        binaries::worker().display()
    );
    let result = kit(&worker, Some(&server.url()), &[])?;
    assert_passes("a --forward worker", result);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_case_fails_against_a_worker_broken_its_way() -> anyhow::Result<()> {
    // The table names every case the kit has, once.
    let listed = list()?;
    let mut named: Vec<&str> = BROKEN_BY.iter().map(|(case, _)| *case).collect();
    named.sort_unstable();
    let mut cases: Vec<&str> = listed.iter().map(String::as_str).collect();
    cases.sort_unstable();
    assert_eq!(named, cases, "every case needs a breakage that fails it");

    let mut passed_anyway = Vec::new();
    for (case, mode) in BROKEN_BY {
        let (passed, text) = kit(&python_worker(Some(mode)), None, &[case])?;
        println!("--break {mode}:\n{text}");
        if passed || !text.contains(&format!("FAIL  {case}")) {
            passed_anyway.push(format!("{case} (--break {mode})"));
        }
    }
    assert!(passed_anyway.is_empty(), "cases that did not fail: {passed_anyway:?}");
    Ok(())
}

/// The case names `jetwork-conformance --list` prints.
fn list() -> anyhow::Result<Vec<String>> {
    let output = Command::new(env!("CARGO_BIN_EXE_jetwork-conformance")).arg("--list").output()?;
    anyhow::ensure!(output.status.success(), "--list failed");
    Ok(String::from_utf8(output.stdout)?
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect())
}
