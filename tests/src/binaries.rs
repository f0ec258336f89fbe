//! Paths of the real jetwork binaries, built once per test process (cargo does nothing when
//! they are up to date), so a test that kills a process runs the same code users run.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The `jetwork-master` binary.
pub fn master() -> PathBuf {
    built("jetwork-master")
}

/// The `jetwork-worker` binary.
pub fn worker() -> PathBuf {
    built("jetwork-worker")
}

/// The `jetwork-frontend` binary.
pub fn frontend() -> PathBuf {
    built("jetwork-frontend")
}

fn built(name: &'static str) -> PathBuf {
    static PATHS: OnceLock<std::collections::HashMap<&'static str, PathBuf>> = OnceLock::new();
    PATHS
        .get_or_init(|| {
            ["jetwork-master", "jetwork-worker", "jetwork-frontend"]
                .into_iter()
                .map(|bin| {
                    let built = escargot::CargoBuild::new()
                        .package(bin)
                        .bin(bin)
                        .current_release()
                        .current_target()
                        .run()
                        .unwrap_or_else(|e| panic!("cannot build {bin}: {e}"));
                    (bin, built.path().to_path_buf())
                })
                .collect()
        })
        .get(name)
        .cloned()
        .unwrap_or_else(|| panic!("unknown binary {name}"))
}
