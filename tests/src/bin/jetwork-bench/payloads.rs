//! Payloads (opt-in, `--phases payloads`): throughput as payloads grow (`--payload-sizes`,
//! 100 B, 16 KiB and 256 KiB by default), jetwork and the baseline side by side, each on a
//! fresh server with 4 worker processes × concurrency 64. Every payload is the job's stamp
//! padded to the size, and the job checks every byte of the padding (so the payload reaches the
//! worker and is read there); the result stays the small stamp. Reported per size: jobs/s and
//! MB/s of payload (10⁶ bytes), target ≥ 0.8× the baseline.
//!
//! Jobs per size: `--payload-jobs`, fewer for large payloads so one run submits at most
//! `--payload-bytes`; at most 64 MiB of submissions await their acknowledgement at once.
//! Limits: nats-server's `max_payload` (1 MiB by default) and jetwork's `streams.max_payload`
//! (512 KiB by default) bound the size; a larger one is refused before anything runs.

use indicatif::MultiProgress;

use crate::cluster::System;
use crate::deployment::Deployment;
use crate::load::Spread;
use crate::report::Report;
use crate::throughput::drive_spread;
use crate::Options;

/// Worker processes and their concurrency.
const WORKERS: u32 = 4;
const CONCURRENCY: u32 = 64;
/// jetwork's default `streams.max_payload`.
const MAX_PAYLOAD: u64 = 512 * 1024;
/// The most bytes of submissions awaiting acknowledgement at once.
const BYTES_IN_FLIGHT: u64 = 64 << 20;

pub async fn run(o: &Options, report: &mut Report, progress: &MultiProgress) -> anyhow::Result<()> {
    for &size in &o.payload_sizes {
        anyhow::ensure!(
            size <= MAX_PAYLOAD,
            "--payload-sizes {size}: above jetwork's default streams.max_payload ({MAX_PAYLOAD})"
        );
    }
    for &size in &o.payload_sizes {
        let jobs = o.payload_jobs.min(o.payload_bytes / size.max(1)).max(1);
        let window = o.window.min((BYTES_IN_FLIGHT / size.max(1)).max(16) as usize);
        let mut rates = [Vec::new(), Vec::new()];
        for run in 0..o.runs {
            for (i, system) in [System::Baseline, System::Jetwork].into_iter().enumerate() {
                let label =
                    format!("payloads {system:?} {} run {}/{}", human(size), run + 1, o.runs);
                let deployment =
                    Deployment::start(system, WORKERS, CONCURRENCY, o.lease_ttl).await?;
                let subjects = [deployment.submit_subject()];
                let spread = Spread { subjects: &subjects, headers: None, size: size as usize };
                let results = deployment.results_subject();
                let cluster = &deployment.cluster;
                rates[i].push(
                    drive_spread(cluster, &spread, &results, jobs, window, progress, &label)
                        .await?,
                );
            }
        }
        let (baseline, jetwork) =
            (crate::samples::median(&rates[0]), crate::samples::median(&rates[1]));
        let case = format!("{} payloads, {jobs} jobs, 4 × 64", human(size));
        let ok = |r: Option<f64>| r.is_some_and(|r| r >= 0.8);
        let record = report.add("payloads", &case, "jobs/s", jetwork, baseline);
        let met = ok(record.ratio);
        record.target("≥ 0.8× baseline", met);
        let mb = |rate: Option<f64>| rate.map(|r| r * size as f64 / 1e6);
        let record = report.add("payloads", &case, "MB/s", mb(jetwork), mb(baseline));
        let met = ok(record.ratio);
        record.target("≥ 0.8× baseline", met);
    }
    Ok(())
}

/// `size` bytes in words: `100 B`, `16 KiB`.
fn human(size: u64) -> String {
    if size >= 1024 && size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

/// A size such as `100`, `16KiB`, `256 KiB`, `1MiB` (binary units), in bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().map_err(|_| format!("{text:?}: not a size"))?;
    let unit = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1024,
        "m" | "mib" => 1024 * 1024,
        other => return Err(format!("{text:?}: unknown unit {other:?} (B, KiB, MiB)")),
    };
    Ok(number * unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("16KiB"), Ok(16 * 1024));
        assert_eq!(parse_size("256 KiB"), Ok(256 * 1024));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("KiB").is_err());
        assert_eq!(human(16 * 1024), "16 KiB");
        assert_eq!(human(100), "100 B");
    }
}
