//! [`Cluster`]: one fresh nats-server (file store, own port and directory), or a fresh 3-node
//! cluster with every stream replicated three times, and the processes a phase runs against
//! it: real `jetwork-master` binaries, and worker processes (this benchmark binary re-run as
//! `worker` or `baseline-worker`, so both systems run their workers as separate processes
//! with the same job).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context as _;
use jetwork_shared::protocol::StatusReport;
use jetwork_shared::subjects;
use jetwork_tests::{binaries, NatsCluster, NatsServer, Process};

/// The `jetwork-master` binary to run instead of this build's (`--master-bin`).
static MASTER_BIN: OnceLock<PathBuf> = OnceLock::new();

/// Runs `binary` as every master from now on (set once, before any phase).
pub fn use_master_binary(binary: PathBuf) {
    let _ = MASTER_BIN.set(binary);
}

/// Bytes each of jetwork's streams may hold (and reserves on the server) in this run.
static STREAM_BYTES: OnceLock<u64> = OnceLock::new();
/// The default: room for the largest phase (the payloads phase submits at most 512 MiB a run)
/// without jetwork's own defaults (6 GiB in all), which a server on a small disk cannot reserve.
const FULL_RUN_STREAM_BYTES: u64 = 1 << 30;

/// Caps each of jetwork's streams at `bytes` from now on (set once, before any phase).
pub fn cap_streams(bytes: u64) {
    let _ = STREAM_BYTES.set(bytes);
}

/// Which system's workers to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    Jetwork,
    Baseline,
}

/// What the processes run against.
enum Servers {
    /// Held only to stop it on drop.
    One {
        _server: NatsServer,
    },
    Three(NatsCluster),
}

/// A server (or three) and the processes started against it (all stopped on drop).
pub struct Cluster {
    /// Stopped (and its store removed) when the cluster is dropped.
    servers: Servers,
    pub client: async_nats::Client,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Cluster {
    /// Starts a fresh server. `lease_ttl` is the masters' lease TTL.
    pub async fn start(lease_ttl: Duration) -> anyhow::Result<Self> {
        let server = NatsServer::start()?;
        let client = server.connect().await?;
        let url = server.url();
        Self::with(Servers::One { _server: server }, client, &url, lease_ttl)
    }

    /// Starts a fresh 3-node cluster; jetwork replicates its streams on all three (the
    /// baseline is told with [`Cluster::replicas`]). Processes get every node's URL.
    pub async fn start_replicated(lease_ttl: Duration) -> anyhow::Result<Self> {
        let nodes = NatsCluster::start(3).await?;
        let client = nodes.connect().await?;
        let url = nodes.urls();
        let mut cluster = Self::with(Servers::Three(nodes), client, &url, lease_ttl)?;
        cluster.set_env("JETWORK_STREAMS__REPLICAS", "3");
        Ok(cluster)
    }

    fn with(
        servers: Servers,
        client: async_nats::Client,
        url: &str,
        lease_ttl: Duration,
    ) -> anyhow::Result<Self> {
        let env = vec![
            ("NATS_URL".to_owned(), url.to_owned()),
            ("JETWORK_MASTER__LEASE_TTL".to_owned(), format!("{}ms", lease_ttl.as_millis())),
            // Workers re-register at once on an election; the heartbeat only matters for
            // the master noticing a dead worker.
            ("JETWORK_WORKER__REGISTER_INTERVAL".to_owned(), "1s".to_owned()),
        ];
        let bytes = STREAM_BYTES.get().copied().unwrap_or(FULL_RUN_STREAM_BYTES).to_string();
        let caps = ["MAX_PENDING_BYTES", "JOURNAL_MAX_BYTES", "RESULTS_MAX_BYTES"]
            .map(|cap| (format!("JETWORK_STREAMS__{cap}"), bytes.clone()));
        Ok(Cluster { servers, client, dir: tempfile::tempdir()?, env: [env, caps.into()].concat() })
    }

    /// The server URL(s) processes connect to (comma separated on a cluster).
    pub fn url(&self) -> &str {
        self.env.iter().find(|(k, _)| k == "NATS_URL").map_or("", |(_, v)| v.as_str())
    }

    /// Replicas per stream: 1 on one server, 3 on a cluster.
    pub fn replicas(&self) -> usize {
        match &self.servers {
            Servers::One { .. } => 1,
            Servers::Three(_) => 3,
        }
    }

    /// The cluster's nodes, if it is one (for node faults).
    pub fn nodes(&mut self) -> Option<&mut NatsCluster> {
        match &mut self.servers {
            Servers::One { .. } => None,
            Servers::Three(nodes) => Some(nodes),
        }
    }

    /// Adds `key=value` to the environment of the processes started from now on (a master
    /// setting such as `JETWORK_QUEUES__BENCH__RATE`).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// The JetStream context of the benchmark's own connection.
    pub fn js(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(self.client.clone())
    }

    /// Starts a process named `name` (unique within this cluster: it names the log file).
    fn launch(&self, name: &str, binary: &Path, args: &[&str]) -> anyhow::Result<Process> {
        Process::start(name, binary, args, &self.env, self.dir.path())
    }

    /// Starts `jetwork-master --id <id>` (this build's, or the one given by `--master-bin`).
    pub fn master(&self, id: &str) -> anyhow::Result<Process> {
        let binary = MASTER_BIN.get().cloned().unwrap_or_else(binaries::master);
        self.launch(id, &binary, &["--id", id])
    }

    /// Starts a master as [`Cluster::master`] does, given `url` alone (it learns the other
    /// nodes from that one, so the benchmark knows which node it uses).
    pub fn master_at(&self, id: &str, url: &str) -> anyhow::Result<Process> {
        let binary = MASTER_BIN.get().cloned().unwrap_or_else(binaries::master);
        let mut env = self.env.clone();
        env.retain(|(k, _)| k != "NATS_URL");
        env.push(("NATS_URL".to_owned(), url.to_owned()));
        Process::start(id, &binary, &["--id", id], &env, self.dir.path())
    }

    /// Starts `n` worker processes of `system`, each running `concurrency` jobs at once.
    pub fn workers(
        &self,
        system: System,
        n: u32,
        concurrency: u32,
    ) -> anyhow::Result<Vec<Process>> {
        let mode = match system {
            System::Jetwork => "worker",
            System::Baseline => "baseline-worker",
        };
        self.worker_processes(n, &[mode, "--concurrency", &concurrency.to_string()])
    }

    /// Starts `n` Python processes of `script` (in `worker/python/tests`, with the library
    /// importable), each with `--id bench-p<i> --concurrency <concurrency>`.
    pub fn python_workers(
        &self,
        script: &str,
        n: u32,
        concurrency: u32,
    ) -> anyhow::Result<Vec<Process>> {
        let library = jetwork_tests::python::library_dir();
        let script = library.join("tests").join(script);
        let script = script.to_str().context("a non-UTF-8 path")?;
        let python = jetwork_tests::python::interpreter();
        let mut env = self.env.clone();
        env.push(("PYTHONPATH".to_owned(), library.display().to_string()));
        let concurrency = concurrency.to_string();
        (0..n)
            .map(|i| {
                let id = format!("bench-p{i}");
                let args = [script, "--id", &id, "--concurrency", &concurrency];
                Process::start(&id, &python, &args, &env, self.dir.path())
            })
            .collect()
    }

    /// Starts `n` jetwork worker processes whose jobs each take `job` (after stamping their
    /// start), so the workers stay busy.
    pub fn slow_workers(
        &self,
        n: u32,
        concurrency: u32,
        job: Duration,
    ) -> anyhow::Result<Vec<Process>> {
        let (concurrency, ms) = (concurrency.to_string(), job.as_millis().to_string());
        self.worker_processes(n, &["worker", "--concurrency", &concurrency, "--job-ms", &ms])
    }

    /// Starts `n` processes of this benchmark binary with `args` and `--id bench-w<i>`.
    fn worker_processes(&self, n: u32, args: &[&str]) -> anyhow::Result<Vec<Process>> {
        let me = std::env::current_exe().context("the benchmark's own path")?;
        (0..n)
            .map(|i| {
                let id = format!("bench-w{i}");
                let mut all = args.to_vec();
                all.extend(["--id", &id]);
                self.launch(&id, &me, &all)
            })
            .collect()
    }

    /// The leading master's status, if one answers within a second.
    pub async fn status(&self) -> Option<StatusReport> {
        let request = async_nats::Request::new().timeout(Some(Duration::from_secs(1)));
        let reply = self.client.send_request(subjects::MASTER_STATUS, request).await.ok()?;
        serde_json::from_slice(&reply.payload).ok()
    }

    /// Waits until a master leads with an epoch above `after` and `workers` workers
    /// registered; returns its status.
    pub async fn await_leader(&self, after: u64, workers: usize) -> anyhow::Result<StatusReport> {
        jetwork_tests::poll_for("a leader and its workers", Duration::from_secs(60), || async {
            self.status().await.filter(|s| s.epoch > after && s.workers.len() >= workers)
        })
        .await
    }
}

/// Waits until `master`'s log says it stands by for the lease.
pub async fn await_standby(master: &Process) -> anyhow::Result<()> {
    jetwork_tests::wait_until("the standby master", Duration::from_secs(30), || async {
        master.logs().contains("standing by for the lease")
    })
    .await
}

/// Resident set size now and at its peak (`VmRSS`, `VmHWM`), in MiB.
pub fn rss_mib(pid: u32) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("{name} in /proc/{pid}/status"))?;
        let kb: f64 =
            line.split_whitespace().nth(1).context("a value")?.parse().context("a number of kB")?;
        Ok(kb / 1024.0)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}
