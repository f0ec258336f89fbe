//! The benchmark's job, the same for jetwork and the baseline: the payload is the submit time
//! and the result adds the start time, so the results alone give submit→start and
//! submit→result latencies (every process runs on this machine, on one clock).
//!
//! Payload: `"<submit_ns>"`, or `"<submit_ns> <padding>"` to a given size (the payloads
//! phase), the padding all `.`, every byte of it checked by the job so a payload is read, not
//! only carried; result: `"<submit_ns> <start_ns>"`, nanoseconds since the Unix epoch in
//! decimal (small whatever the payload).

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

/// A job submitted now, padded to `size` bytes (no padding if the stamp alone is as long).
pub fn payload_sized(size: usize) -> Bytes {
    let stamp = now_ns().to_string();
    if size <= stamp.len() + 1 {
        return Bytes::from(stamp);
    }
    let mut payload = Vec::with_capacity(size);
    payload.extend_from_slice(stamp.as_bytes());
    payload.push(b' ');
    payload.resize(size, PADDING);
    Bytes::from(payload)
}

/// The byte that pads a payload.
const PADDING: u8 = b'.';

/// Runs a job: answers with its submit time and the time it started.
pub fn run(payload: &[u8]) -> Result<Bytes, String> {
    let started = now_ns();
    let (stamp, padding) = match payload.iter().position(|b| *b == b' ') {
        Some(space) => (&payload[..space], &payload[space + 1..]),
        None => (payload, &[][..]),
    };
    let submitted = std::str::from_utf8(stamp)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .ok_or_else(|| "payload is not a timestamp".to_owned())?;
    if !padding.iter().all(|b| *b == PADDING) {
        return Err("the payload's padding is not all '.'".to_owned());
    }
    Ok(Bytes::from(format!("{submitted} {started}")))
}

/// `(submit_ns, start_ns)` from a result.
pub fn parse(result: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(result).ok()?;
    let (submitted, started) = text.split_once(' ')?;
    Some((submitted.parse().ok()?, started.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_padded_payload_has_its_size_and_runs() {
        let payload = payload_sized(16 * 1024);
        assert_eq!(payload.len(), 16 * 1024);
        let result = run(&payload).expect("a stamped payload");
        assert!(parse(&result).is_some());
        assert!(run(&payload_sized(0)).is_ok());
    }

    #[test]
    fn a_payload_with_other_padding_fails() {
        let mut payload = payload_sized(100).to_vec();
        payload[99] = b'x';
        assert!(run(&payload).is_err());
        assert!(run(b"not a time").is_err());
    }
}
