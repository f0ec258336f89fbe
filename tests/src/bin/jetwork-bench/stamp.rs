//! The benchmark's job, the same for jetwork and the baseline: the payload is the submit time
//! and the result adds the start time, so the results alone give submit→start and
//! submit→result latencies (every process runs on this machine, on one clock).
//!
//! Payload: `"<submit_ns>"`; result: `"<submit_ns> <start_ns>"`, nanoseconds since the Unix
//! epoch in decimal.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A job submitted now.
pub fn payload() -> Bytes {
    payload_at(now_ns())
}

/// A job submitted at `submit_ns` (a caller that must recognise its result keeps the time).
pub fn payload_at(submit_ns: u64) -> Bytes {
    Bytes::from(submit_ns.to_string())
}

/// Runs a job: answers with its submit time and the time it started.
pub fn run(payload: &[u8]) -> Result<Bytes, String> {
    let started = now_ns();
    let submitted = std::str::from_utf8(payload)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .ok_or_else(|| "payload is not a timestamp".to_owned())?;
    Ok(Bytes::from(format!("{submitted} {started}")))
}

/// `(submit_ns, start_ns)` from a result.
pub fn parse(result: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(result).ok()?;
    let (submitted, started) = text.split_once(' ')?;
    Some((submitted.parse().ok()?, started.parse().ok()?))
}
