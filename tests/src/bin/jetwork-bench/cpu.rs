//! CPU time used by the processes under test, read from `/proc/<pid>/stat` (user + system, all
//! threads), and [`Usage`]: what a system's master, workers and nats-server used between two
//! readings, for CPU per job.
//!
//! The nats-servers are found as this process's children named `nats-server` (the harness
//! starts them and the pyenv shim `exec`s down to the binary, so the child is the server): a
//! phase holds one cluster at a time, so they are exactly the servers of the system measured.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::Context as _;

/// User and system CPU time process `pid` has used, in seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let (utime, stime) = times(&stat).context("a /proc stat line")?;
    Ok((utime + stime) / clock_ticks_per_second())
}

/// `(utime, stime)` in clock ticks from a `/proc/<pid>/stat` line.
fn times(stat: &str) -> Option<(f64, f64)> {
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Some((fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?))
}

/// `sysconf(_SC_CLK_TCK)` via `getconf` (100 on Linux in practice), asked once.
fn clock_ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The nats-servers this process runs (its children named `nats-server`).
pub fn nats_server_pids() -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let dir = Path::new("/proc").join(pid.to_string());
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
            // Field 4 (the parent) is the second after the name.
            let parent = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            comm.trim() == "nats-server" && parent == Some(me)
        })
        .collect()
}

/// The CPU seconds of a set of processes: a master (jetwork only), the workers, the servers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub master: Option<f64>,
    pub workers: f64,
    pub nats: f64,
}

impl Usage {
    /// The parts, by name, for reports.
    pub const PARTS: [&'static str; 3] = ["master", "workers", "nats-server"];

    /// The part named `name` (one of [`Usage::PARTS`]).
    pub fn part(&self, name: &str) -> Option<f64> {
        match name {
            "master" => self.master,
            "workers" => Some(self.workers),
            "nats-server" => Some(self.nats),
            _ => None,
        }
    }

    /// Reads the processes' CPU time now. A process that has exited counts as 0 (its time
    /// is lost, so readings around a process's exit are not comparable).
    pub fn read(master: Option<u32>, workers: &[u32]) -> Usage {
        let of = |pid: u32| cpu_seconds(pid).unwrap_or(0.0);
        Usage {
            master: master.map(of),
            workers: workers.iter().map(|p| of(*p)).sum(),
            nats: nats_server_pids().into_iter().map(of).sum(),
        }
    }

    /// µs of CPU per job between `self` (earlier) and `later`, over `jobs` jobs.
    pub fn per_job_us(&self, later: &Usage, jobs: u64) -> Usage {
        let per = |a: f64, b: f64| (b - a).max(0.0) * 1e6 / jobs.max(1) as f64;
        Usage {
            master: self.master.zip(later.master).map(|(a, b)| per(a, b)),
            workers: per(self.workers, later.workers),
            nats: per(self.nats, later.nats),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::times;

    #[test]
    fn times_are_read_after_a_name_with_spaces_and_parentheses() {
        let line = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 4 0 1 2 3";
        assert_eq!(times(line), Some((250.0, 75.0)));
        assert_eq!(times("garbage"), None);
    }
}
