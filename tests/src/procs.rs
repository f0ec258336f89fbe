//! [`Procs`]: starts the real binaries against one test server (or a cluster's URLs), with
//! the fast test settings in their environment and their logs in one temporary directory.

use std::path::Path;

use crate::{binaries, fast_env, NatsServer, Process};

/// A launcher for jetwork binaries.
pub struct Procs {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Procs {
    /// Launches against `server` with the fast settings.
    pub fn new(server: &NatsServer) -> anyhow::Result<Self> {
        Self::at(&server.url())
    }

    /// Launches against the servers at `url` (comma separated: a cluster's nodes) with the
    /// fast settings.
    pub fn at(url: &str) -> anyhow::Result<Self> {
        Ok(Procs { dir: tempfile::tempdir()?, env: fast_env(url) })
    }

    /// Overrides (or adds) one environment variable for processes started from now on.
    pub fn set(&mut self, key: &str, value: &str) -> &mut Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Where the logs are.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `jetwork-master --id <name>`.
    pub fn master(&self, name: &str) -> anyhow::Result<Process> {
        Process::start(name, &binaries::master(), &["--id", name], &self.env, self.dir.path())
    }

    /// Starts `jetwork-worker --id <name> <args…>`.
    pub fn worker(&self, name: &str, args: &[&str]) -> anyhow::Result<Process> {
        let mut all = vec!["--id", name];
        all.extend_from_slice(args);
        Process::start(name, &binaries::worker(), &all, &self.env, self.dir.path())
    }

    /// Starts `jetwork-frontend dashboard <args…>` (a long-running frontend command).
    pub fn dashboard(&self, args: &[&str]) -> anyhow::Result<Process> {
        let mut all = vec!["dashboard"];
        all.extend_from_slice(args);
        Process::start("dashboard", &binaries::frontend(), &all, &self.env, self.dir.path())
    }

    /// Starts `binary args…` named `name`, with `env` on top of the fast settings (a role's
    /// `NATS_USER` and `NATS_PASSWORD`, say).
    pub fn start(
        &self,
        name: &str,
        binary: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Process> {
        let mut all = self.env.clone();
        all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        Process::start(name, binary, args, &all, self.dir.path())
    }

    /// Runs `jetwork-frontend <args…>` to completion and returns (success, stdout+stderr).
    pub async fn frontend(&self, args: &[&str]) -> anyhow::Result<(bool, String)> {
        self.frontend_with(&[], args).await
    }

    /// [`frontend`](Self::frontend) with `env` on top of the fast settings.
    pub async fn frontend_with(
        &self,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> anyhow::Result<(bool, String)> {
        let output = tokio::process::Command::new(binaries::frontend())
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .output()
            .await?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok((output.status.success(), text))
    }
}
