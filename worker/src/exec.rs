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

use std::process::Stdio;

use bytes::Bytes;
use futures::future::BoxFuture;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

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
        let progress = job.progress_handle();
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

        let (stdout, stderr) = tokio::join!(read_stdout, read_stderr);
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

/// Handles one stderr line: a progress report, or text for the failure reason's tail.
fn take_line(line: &mut Vec<u8>, tail: &mut String, progress: &crate::ProgressHandle) {
    if line.is_empty() {
        return;
    }
    let text = String::from_utf8_lossy(line);
    if text.trim() == PROGRESS_LINE {
        progress.progress();
    } else {
        tail.push_str(&text);
        tail.push('\n');
        if tail.len() > 2 * STDERR_TAIL {
            *tail = last_chars(tail, STDERR_TAIL).to_owned();
        }
    }
    line.clear();
}
