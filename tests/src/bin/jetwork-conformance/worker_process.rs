//! [`WorkerProcess`]: the worker under test, `sh -c '<worker command>'` in a process group of
//! its own (so a signal reaches the worker and whatever it started), its output in a log
//! file, killed with its group when dropped. One per case: every case meets a fresh process.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};

use anyhow::Context as _;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// A running worker command.
pub struct WorkerProcess {
    child: Child,
}

impl WorkerProcess {
    /// Starts `command` with `NATS_URL` set to `url`, logging to `log`.
    pub fn start(command: &str, url: &str, log: &Path) -> anyhow::Result<Self> {
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .env("NATS_URL", url)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .context("starting the worker command")?;
        Ok(WorkerProcess { child })
    }

    /// `SIGTERM` to its group: a worker drains and stops.
    pub fn terminate(&self) -> anyhow::Result<()> {
        self.signal(Signal::SIGTERM)
    }

    /// How it exited, if it has.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = i32::try_from(self.child.id()).context("pid")?;
        killpg(Pid::from_raw(pid), signal).with_context(|| format!("{signal} to the worker"))
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.signal(Signal::SIGKILL);
        let _ = self.child.wait();
    }
}
