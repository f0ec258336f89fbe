//! [`ShellCommand`]: the `--exec` handler. Runs `sh -c '<command>'` once per job, in its own
//! process group:
//! - stdin: the payload; env: `JETWORK_WORK_ID`, `JETWORK_QUEUE`, `JETWORK_ATTEMPT`;
//! - stdout: the result (at most `max_output` bytes, or the attempt fails);
//! - exit status 0: completed; anything else: failed, with the status and the tail of stderr
//!   as the reason; the failure is permanent (no more attempts) when the status is the
//!   configured non-retryable exit code (`worker.non_retryable_exit_code`), retryable
//!   otherwise;
//! - a stderr line `jetwork:progress` reports progress (extends the deadline).
//!
//! If the job is abandoned (cancelled or revoked by the master, or the worker shuts down) the
//! whole process group is killed, so no grandchild keeps running unseen.
//!
//! The group is also killed at the attempt's deadline by this worker's own clock
//! ([`Job::deadline`], moved on when the master accepts progress, and by each progress line to
//! `timeout` after it): by then the master has handed the attempt out again, and the command
//! must not go on running beside its re-run. The attempt fails with a reason saying it ran
//! past its timeout. The worker's deadline is never before the master's (it counts from when
//! the grant or the progress verdict arrived, or from a progress line the master hears of
//! later still), so only a progress report lost on its way (a partition) lets the master re-run
//! a job whose command still runs here.

use std::process::Stdio;

use bytes::Bytes;
use futures::future::BoxFuture;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::core::last_chars;
use crate::{Handler, Job, JobError};

/// The stderr line that reports progress.
pub const PROGRESS_LINE: &str = "jetwork:progress";
/// How much of stderr ends up in a failure reason.
const STDERR_TAIL: usize = 2048;
/// Longest stderr line kept whole.
const MAX_LINE: usize = 8192;

/// Runs a shell command per job.
#[derive(Debug, Clone)]
pub struct ShellCommand {
    command: String,
    max_output: usize,
    non_retryable_exit_code: Option<i32>,
}

impl ShellCommand {
    /// A handler running `command` with `sh -c`, accepting at most `max_output` bytes of
    /// stdout; every failure is retryable.
    pub fn new(command: impl Into<String>, max_output: usize) -> Self {
        ShellCommand { command: command.into(), max_output, non_retryable_exit_code: None }
    }

    /// Exiting with `code` fails the job at once instead of attempting it again.
    pub fn non_retryable_exit_code(mut self, code: Option<i32>) -> Self {
        self.non_retryable_exit_code = code;
        self
    }
}

/// Kills the process group when dropped, unless disarmed.
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

impl Handler for ShellCommand {
    fn handle(&self, job: Job) -> BoxFuture<'static, Result<Bytes, JobError>> {
        Box::pin(self.clone().run(job))
    }
}

impl ShellCommand {
    async fn run(self, job: Job) -> Result<Bytes, JobError> {
        let (command, max_output) = (&self.command, self.max_output);
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .env("JETWORK_WORK_ID", job.work_id.as_str())
            .env("JETWORK_QUEUE", job.queue.as_str())
            .env("JETWORK_ATTEMPT", job.attempt.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start `sh -c {command}`: {e}"))?;
        let mut group = GroupGuard(child.id().and_then(|id| i32::try_from(id).ok()));

        let mut stdin = child.stdin.take().ok_or(JobError::retryable("no stdin pipe"))?;
        let payload = job.payload.clone();
        let feed = tokio::spawn(async move {
            // A command that does not read its input closes the pipe early; that is fine.
            let _ = stdin.write_all(&payload).await;
        });

        let stdout = child.stdout.take().ok_or(JobError::retryable("no stdout pipe"))?;
        let pgid = group.0;
        let read_stdout = async move {
            let mut out = Vec::new();
            let mut limited = stdout.take(max_output as u64 + 1);
            let read = limited.read_to_end(&mut out).await.map(|_| out);
            if read.as_ref().is_ok_and(|out| out.len() > max_output) {
                // Stop a runaway command now; otherwise it blocks on a full pipe for ever.
                if let Some(pgid) = pgid {
                    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
                }
            }
            read
        };

        let stderr = child.stderr.take().ok_or(JobError::retryable("no stderr pipe"))?;
        let progress = Progress {
            handle: job.progress_handle(),
            deadline: watch::Sender::new(job.deadline.at()),
            timeout: job.timeout,
        };
        let mut deadline = progress.deadline.subscribe();
        let mut extended = job.deadline.clone();
        let read_stderr = async move {
            // Lines are read in bounded pieces: a command writing megabytes without a newline
            // costs at most MAX_LINE bytes here, not its whole output.
            let mut tail = String::new();
            let mut line: Vec<u8> = Vec::new();
            let mut chunk = [0u8; 8192];
            let mut stderr = stderr;
            loop {
                let n = match stderr.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                for &byte in &chunk[..n] {
                    if byte == b'\n' || line.len() >= MAX_LINE {
                        take_line(&mut line, &mut tail, &progress);
                    }
                    if byte != b'\n' {
                        line.push(byte);
                    }
                }
            }
            take_line(&mut line, &mut tail, &progress);
            tail
        };

        let outputs = async { tokio::join!(read_stdout, read_stderr) };
        tokio::pin!(outputs);
        let (stdout, stderr) = loop {
            let due = (*deadline.borrow_and_update()).max(extended.at());
            tokio::select! {
                joined = &mut outputs => break joined,
                // A progress line, or the master, moved the deadline on: wait for the new one.
                Ok(()) = deadline.changed() => {}
                () = extended.changed() => {}
                () = tokio::time::sleep_until(due) => {
                    if (*deadline.borrow()).max(extended.at()) > due {
                        continue;
                    }
                    // Killed now, not when the future is dropped: the re-run may start any
                    // moment. Then reaped, so nothing of it is left in the process table.
                    if let Some(pgid) = group.0 {
                        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
                    }
                    let _ = child.wait().await;
                    let timeout = job.timeout.as_millis();
                    let reason = format!(
                        "ran past its timeout ({timeout} ms without a result or progress): its \
                         process group was killed at its deadline (the master has handed it out \
                         again)"
                    );
                    return Err(JobError::retryable(reason));
                }
            }
        };
        let stdout = stdout.map_err(|e| format!("reading stdout: {e}"))?;
        if stdout.len() > max_output {
            return Err(format!("output exceeds the limit of {max_output} bytes").into());
        }
        let status = child.wait().await.map_err(|e| format!("waiting for the command: {e}"))?;
        feed.abort();
        group.0 = None;
        if status.success() {
            return Ok(Bytes::from(stdout));
        }
        let code = status.code();
        let how = match code {
            Some(code) => format!("exit status {code}"),
            None => "killed by a signal".to_owned(),
        };
        let tail = last_chars(stderr.trim(), STDERR_TAIL);
        let reason = if tail.is_empty() { how } else { format!("{how}: {tail}") };
        let permanent = code.is_some() && code == self.non_retryable_exit_code;
        Err(JobError { reason, retryable: !permanent })
    }
}

/// What a progress line does: report it, and move the attempt's deadline on.
struct Progress {
    handle: crate::ProgressHandle,
    deadline: watch::Sender<Instant>,
    timeout: std::time::Duration,
}

/// Handles one stderr line: a progress report, or text for the failure reason's tail.
fn take_line(line: &mut Vec<u8>, tail: &mut String, progress: &Progress) {
    if line.is_empty() {
        return;
    }
    let text = String::from_utf8_lossy(line);
    if text.trim() == PROGRESS_LINE {
        progress.handle.progress();
        // The master counts `timeout` from when it hears of it, later than now.
        let later = Instant::now() + progress.timeout;
        progress.deadline.send_if_modified(|at| {
            let moved = later > *at;
            if moved {
                *at = later;
            }
            moved
        });
    } else {
        tail.push_str(&text);
        tail.push('\n');
        if tail.len() > 2 * STDERR_TAIL {
            *tail = last_chars(tail, STDERR_TAIL).to_owned();
        }
    }
    line.clear();
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jetwork_shared::{QueueName, WorkId};
    use tokio::sync::mpsc;

    use super::*;

    fn job(timeout: Duration) -> (Job, mpsc::UnboundedReceiver<(WorkId, u32)>) {
        let (progress, reports) = mpsc::unbounded_channel();
        let job = Job {
            work_id: WorkId::parse("j").expect("valid"),
            queue: QueueName::default_queue(),
            attempt: 1,
            payload: Bytes::new(),
            timeout,
            deadline: crate::Deadline::new(watch::channel(Instant::now() + timeout).1),
            progress,
        };
        (job, reports)
    }

    #[tokio::test]
    async fn a_command_past_its_deadline_is_killed_and_fails_saying_so() {
        let (job, _reports) = job(Duration::from_millis(300));
        let started = std::time::Instant::now();
        let ended = ShellCommand::new("sleep 30", 64).handle(job).await;
        let error = ended.expect_err("killed at its deadline");
        assert!(error.reason.contains("ran past its timeout (300 ms"), "{}", error.reason);
        assert!(error.retryable);
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn progress_moves_the_deadline_on() {
        let (job, mut reports) = job(Duration::from_millis(400));
        // Runs about 1.2 s, three times its timeout, reporting progress every 0.2 s.
        let command =
            "for i in 1 2 3 4 5 6; do echo jetwork:progress >&2; sleep 0.2; done; echo ok";
        let ended = ShellCommand::new(command, 64).handle(job).await;
        assert_eq!(ended.expect("progress kept it alive"), Bytes::from_static(b"ok\n"));
        assert!(reports.try_recv().is_ok(), "progress was reported");
    }
}
