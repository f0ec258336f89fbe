//! Paths of the real jetwork binaries, built once per test process (cargo does nothing when
//! they are up to date), so a test that kills a process runs the same code users run.
//!
//! They are built next to the test executable (same target directory and profile). The
//! build runs without the `CARGO_*` variables cargo sets for tests: build scripts such as
//! ring's watch `CARGO_MANIFEST_DIR`, and inheriting the test's value would make every
//! build after a test build start over.

use std::path::PathBuf;
use std::process::Command;
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

fn built(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(build).join(name)
}

fn build() -> PathBuf {
    // target/<profile>/deps/<test> (a test) or target/<profile>/<bin> (the benchmark)
    // → target/<profile>
    let exe = std::env::current_exe().expect("the test executable's path");
    let mut profile_dir = exe.parent().expect("the executable's directory").to_path_buf();
    if profile_dir.file_name().is_some_and(|d| d == "deps") {
        profile_dir.pop();
    }
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "build",
        "--quiet",
        "--bins",
        "-p",
        "jetwork-master",
        "-p",
        "jetwork-worker",
        "-p",
        "jetwork-frontend",
    ]);
    if profile_dir.file_name().is_some_and(|p| p == "release") {
        cargo.arg("--release");
    }
    for (key, _) in std::env::vars() {
        if key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_TARGET_DIR" {
            cargo.env_remove(key);
        }
    }
    let status = cargo.status().expect("running cargo to build the jetwork binaries");
    assert!(status.success(), "building the jetwork binaries failed");
    profile_dir
}
