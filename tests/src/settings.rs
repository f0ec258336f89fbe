//! Short timings for tests, as settings structs (in-process components) and as `JETWORK_*`
//! environment variables (binaries). Both describe the same configuration. Also the
//! repository's own `nats.conf` and `jetwork.toml`, for tests of the shipped roles.

use std::collections::BTreeMap;
use std::time::Duration;

use jetwork_frontend::FrontendSettings;
use jetwork_master::config::LoginConfig;
use jetwork_master::MasterSettings;
use jetwork_worker::WorkerSettings;

/// The byte cap of each stream in tests (256 MiB), and as an environment value.
pub const TEST_STREAM_BYTES: i64 = 256 << 20;
const TEST_STREAM_BYTES_TEXT: &str = "268435456";

/// Settings for every component, pointing at one server.
#[derive(Debug, Clone)]
pub struct Fast {
    pub master: MasterSettings,
    pub worker: WorkerSettings,
    pub frontend: FrontendSettings,
}

/// Test settings against the server at `url`.
pub fn fast_settings(url: &str) -> Fast {
    let mut master = MasterSettings::default();
    master.nats.url = url.to_owned();
    master.nats.request_timeout = Duration::from_secs(2);
    master.streams.journal_retention = Duration::from_secs(3600);
    // Caps every test's data fits many times over, small enough that a test server's store
    // (by default three quarters of the free disk) always has room to reserve them.
    master.streams.max_pending_bytes = TEST_STREAM_BYTES;
    master.streams.journal_max_bytes = TEST_STREAM_BYTES;
    master.streams.results_max_bytes = TEST_STREAM_BYTES;
    let m = &mut master.master;
    m.lease_ttl = Duration::from_secs(2);
    m.work_timeout = Duration::from_secs(3);
    m.worker_timeout = Duration::from_secs(3);
    m.tick_interval = Duration::from_millis(50);
    m.notify_interval = Duration::from_millis(500);
    m.purge_interval = Duration::from_millis(500);
    m.snapshot_every = 200;
    m.snapshot_interval = Duration::from_secs(2);
    // Short back-offs: tests of retries must not wait a second per failure.
    m.backoff_initial = Duration::from_millis(100);
    m.backoff_max = Duration::from_millis(400);

    let mut worker = WorkerSettings {
        nats: master.nats.clone(),
        streams: master.streams.clone(),
        ..Default::default()
    };
    let w = &mut worker.worker;
    w.register_interval = Duration::from_millis(500);
    w.resend_interval = Duration::from_millis(500);
    w.request_timeout = Duration::from_secs(2);
    w.shutdown_grace = Duration::from_secs(2);

    let mut frontend = FrontendSettings {
        nats: master.nats.clone(),
        streams: master.streams.clone(),
        ..Default::default()
    };
    frontend.frontend.submit_timeout = Duration::from_secs(30);
    frontend.frontend.retry_delay = Duration::from_millis(200);
    Fast { master, worker, frontend }
}

/// The test byte caps of every stream as environment variables, for any binary that may
/// create the streams: the defaults (6 GiB in all) do not fit a test server's store on a
/// machine with little free disk, and the server then refuses the streams.
pub fn stream_caps_env() -> [(&'static str, &'static str); 3] {
    [
        ("JETWORK_STREAMS__MAX_PENDING_BYTES", TEST_STREAM_BYTES_TEXT),
        ("JETWORK_STREAMS__JOURNAL_MAX_BYTES", TEST_STREAM_BYTES_TEXT),
        ("JETWORK_STREAMS__RESULTS_MAX_BYTES", TEST_STREAM_BYTES_TEXT),
    ]
}

/// The same settings as environment variables for the binaries.
pub fn fast_env(url: &str) -> Vec<(String, String)> {
    [
        ("NATS_URL", url),
        ("JETWORK_NATS__REQUEST_TIMEOUT", "2s"),
        ("JETWORK_STREAMS__JOURNAL_RETENTION", "1h"),
        ("JETWORK_MASTER__LEASE_TTL", "2s"),
        ("JETWORK_MASTER__WORK_TIMEOUT", "3s"),
        ("JETWORK_MASTER__WORKER_TIMEOUT", "3s"),
        ("JETWORK_MASTER__TICK_INTERVAL", "50ms"),
        ("JETWORK_MASTER__NOTIFY_INTERVAL", "500ms"),
        ("JETWORK_MASTER__PURGE_INTERVAL", "500ms"),
        ("JETWORK_MASTER__SNAPSHOT_EVERY", "200"),
        ("JETWORK_MASTER__SNAPSHOT_INTERVAL", "2s"),
        ("JETWORK_MASTER__BACKOFF_INITIAL", "100ms"),
        ("JETWORK_MASTER__BACKOFF_MAX", "400ms"),
        ("JETWORK_WORKER__REGISTER_INTERVAL", "500ms"),
        ("JETWORK_WORKER__RESEND_INTERVAL", "500ms"),
        ("JETWORK_WORKER__REQUEST_TIMEOUT", "2s"),
        ("JETWORK_WORKER__SHUTDOWN_GRACE", "2s"),
        ("JETWORK_FRONTEND__SUBMIT_TIMEOUT", "30s"),
        ("JETWORK_FRONTEND__RETRY_DELAY", "200ms"),
    ]
    .into_iter()
    .chain(stream_caps_env())
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The repository's `nats.conf`, to run a server with (on its own port and store): the
/// monitoring port and the store directory it fixes are left out, so tests run side by side.
pub fn shipped_nats_conf() -> anyhow::Result<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../nats.conf");
    let conf = std::fs::read_to_string(path)?;
    let keep =
        |line: &&str| !line.starts_with("http:") && !line.trim_start().starts_with("store_dir");
    Ok(conf.lines().filter(keep).collect::<Vec<_>>().join("\n"))
}

/// The worker logins of the repository's `jetwork.toml` (the master's configuration for the
/// shipped `nats.conf`), for a master of the shipped roles.
pub fn shipped_logins() -> anyhow::Result<BTreeMap<String, LoginConfig>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../jetwork.toml");
    Ok(MasterSettings::load(Some(std::path::Path::new(path)))?.logins)
}

/// The password of a worker login of the shipped `nats.conf`.
pub fn worker_password(user: &str) -> String {
    format!("{user}-local")
}
