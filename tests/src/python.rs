//! The Python library (`worker/python`) under test: its interpreter, from a virtual
//! environment `scripts/python-env` makes (once per test process: quick when it exists), and
//! Python processes run against a test server like the real binaries ([`Process`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::{fast_env, NatsServer, Process};

/// Where the library's package and its scripts are.
pub fn library_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../worker/python")
}

/// The interpreter of the test environment (nats-py and msgpack installed).
pub fn interpreter() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/python-env");
            let output = Command::new(&script).output().expect("running scripts/python-env");
            assert!(
                output.status.success(),
                "scripts/python-env failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
        })
        .clone()
}

/// Starts `python <script> <args…>` (`script` relative to [`library_dir`]) against `server`,
/// with the library importable and the fast test settings in its environment, logging to
/// `<dir>/<name>.log`.
pub fn start(
    server: &NatsServer,
    dir: &Path,
    name: &str,
    script: &str,
    args: &[&str],
) -> anyhow::Result<Process> {
    let library = library_dir();
    let script = library.join(script);
    let mut all = vec![script.to_str().ok_or_else(|| anyhow::anyhow!("a non-UTF-8 path"))?];
    all.extend_from_slice(args);
    let mut env = fast_env(&server.url());
    env.push(("PYTHONPATH".to_owned(), library.display().to_string()));
    env.push(("PYTHONUNBUFFERED".to_owned(), "1".to_owned()));
    Process::start(name, &interpreter(), &all, &env, dir)
}
