//! [`Process`]: a jetwork binary run by a test, with its output in a log file, that can be
//! killed (`kill -9`), frozen (`SIGSTOP`), resumed (`SIGCONT`) or stopped (`SIGTERM`), and is
//! killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A child process under test.
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `binary args…` with `env` (plus `NO_COLOR`), logging to `<dir>/<name>.log`.
    pub fn start(
        name: &str,
        binary: &Path,
        args: &[&str],
        env: &[(String, String)],
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).context("process log")?;
        let err = out.try_clone()?;
        // `RUST_LOG` in `env` (a test that needs debug lines) wins over the default.
        let child = Command::new(binary)
            .args(args)
            .env("RUST_LOG", std::env::var("JETWORK_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Process { name: name.to_owned(), child, log })
    }

    /// The name it was started with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = i32::try_from(self.child.id()).context("pid")?;
        kill(Pid::from_raw(pid), signal).with_context(|| format!("{signal} to {}", self.name))
    }

    /// `kill -9`.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        self.signal(Signal::SIGKILL)?;
        let _ = self.child.wait();
        Ok(())
    }

    /// Freezes it (`SIGSTOP`).
    pub fn freeze(&self) -> anyhow::Result<()> {
        self.signal(Signal::SIGSTOP)
    }

    /// Resumes it (`SIGCONT`).
    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal(Signal::SIGCONT)
    }

    /// Sends `SIGTERM` and waits up to `grace` for it to exit; returns whether it did.
    pub async fn terminate(&mut self, grace: Duration) -> anyhow::Result<bool> {
        self.signal(Signal::SIGTERM)?;
        let child = &mut self.child;
        let exited = crate::wait_until("the process to exit", grace, || {
            let done = matches!(child.try_wait(), Ok(Some(_)));
            async move { done }
        })
        .await;
        Ok(exited.is_ok())
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its output so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.signal(Signal::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
