//! [`JobOptions`]: what a submission may ask for itself, in headers (`Jetwork-Delay`,
//! `Jetwork-Not-Before`, `Jetwork-Priority`, `Jetwork-Max-Attempts`, `Jetwork-Timeout`,
//! `Jetwork-Expires`), read by the master when it takes the submission and journaled with it.
//!
//! Invariants: every option is within its documented bound ([`MAX_PRIORITY`],
//! [`MAX_ATTEMPTS`], [`MIN_TIMEOUT`]..=[`MAX_TIMEOUT`], times at most [`MAX_DELAY`] after the
//! submission was stored); a value outside it, or one that does not parse, rejects the
//! submission with a reason naming the header — an option is never silently dropped or
//! clamped, since a job run differently from how it was asked is worse than one refused.
//! Relative times (`Jetwork-Delay`, a duration in `Jetwork-Expires`) count from when the server
//! stored the submission, so every master reading it gets the same absolute time.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Run no earlier than this long after the submission was stored (`30s`, `5m`, `1h 30m`).
pub const DELAY: &str = "Jetwork-Delay";
/// Run no earlier than this time (RFC 3339, e.g. `2026-12-01T03:00:00Z`).
pub const NOT_BEFORE: &str = "Jetwork-Not-Before";
/// 0 (default) to 9: within a queue, higher is handed out first.
pub const PRIORITY: &str = "Jetwork-Priority";
/// Attempts this job may use (overrides its queue's `max_attempts`).
pub const MAX_ATTEMPTS_HEADER: &str = "Jetwork-Max-Attempts";
/// How long one attempt may run without a result or progress (overrides `work_timeout`).
pub const TIMEOUT: &str = "Jetwork-Timeout";
/// Start by then (RFC 3339, or a duration after the submission was stored), or the job ends
/// `cancelled` with reason `expired`.
pub const EXPIRES: &str = "Jetwork-Expires";

/// The highest priority.
pub const MAX_PRIORITY: u8 = 9;
/// The most attempts a job may ask for.
pub const MAX_ATTEMPTS: u32 = 1000;
/// The shortest attempt timeout a job may ask for.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(100);
/// The longest attempt timeout a job may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// How far after its submission a job may be delayed or expire.
pub const MAX_DELAY: Duration = Duration::from_secs(366 * 24 * 3600);

/// A submission's own options; the default asks for nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOptions {
    /// Not to start before this time (ms since the Unix epoch); 0: no delay.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub not_before: u64,
    /// 0 to [`MAX_PRIORITY`].
    #[serde(default, skip_serializing_if = "is_zero_u8")]
    pub priority: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Attempt timeout (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// Must start by this time (ms since the Unix epoch); 0: never expires.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub expires: u64,
    /// How long after its submission was stored it had to start (`expires` minus that time):
    /// what a retry of the job keeps, counted from the retry. 0 with no expiry.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub expires_after: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_u8(n: &u8) -> bool {
    *n == 0
}

impl JobOptions {
    /// Whether nothing is asked for.
    pub fn is_default(&self) -> bool {
        *self == JobOptions::default()
    }

    /// Reads the options from a submission's headers (`get` looks one up by name), the
    /// submission having been stored at `stored_ms`. The error names the header and why.
    pub fn from_headers<'a>(
        get: impl Fn(&str) -> Option<&'a str>,
        stored_ms: u64,
    ) -> Result<JobOptions, String> {
        let mut options = JobOptions::default();
        let latest = stored_ms.saturating_add(millis(MAX_DELAY));
        let invalid = |name: &str, value: &str, why: &str| {
            format!("invalid {name} {:?}: {why}", crate::headers::sanitize(value, 64))
        };
        match (get(DELAY), get(NOT_BEFORE)) {
            (Some(_), Some(_)) => {
                return Err(format!("{DELAY} and {NOT_BEFORE} exclude each other: give one"))
            }
            (Some(value), None) => {
                let delay = humantime::parse_duration(value.trim())
                    .map_err(|e| invalid(DELAY, value, &e.to_string()))?;
                if delay > MAX_DELAY {
                    return Err(invalid(DELAY, value, "longer than 366 days"));
                }
                options.not_before = stored_ms.saturating_add(millis(delay));
            }
            (None, Some(value)) => {
                let at = parse_time(value).ok_or_else(|| {
                    invalid(NOT_BEFORE, value, "not an RFC 3339 time (2026-12-01T03:00:00Z)")
                })?;
                if at > latest {
                    return Err(invalid(NOT_BEFORE, value, "more than 366 days ahead"));
                }
                options.not_before = at.max(1);
            }
            (None, None) => {}
        }
        if let Some(value) = get(PRIORITY) {
            options.priority = value
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= MAX_PRIORITY)
                .ok_or_else(|| invalid(PRIORITY, value, "must be an integer from 0 to 9"))?;
        }
        if let Some(value) = get(MAX_ATTEMPTS_HEADER) {
            let n = value.trim().parse::<u32>().ok().filter(|n| (1..=MAX_ATTEMPTS).contains(n));
            options.max_attempts = Some(n.ok_or_else(|| {
                invalid(MAX_ATTEMPTS_HEADER, value, "must be an integer from 1 to 1000")
            })?);
        }
        if let Some(value) = get(TIMEOUT) {
            let timeout = humantime::parse_duration(value.trim())
                .map_err(|e| invalid(TIMEOUT, value, &e.to_string()))?;
            if !(MIN_TIMEOUT..=MAX_TIMEOUT).contains(&timeout) {
                return Err(invalid(TIMEOUT, value, "must be from 100ms to 7 days"));
            }
            options.timeout = Some(millis(timeout));
        }
        if let Some(value) = get(EXPIRES) {
            let at = match humantime::parse_duration(value.trim()) {
                Ok(after) if after <= MAX_DELAY => stored_ms.saturating_add(millis(after)),
                Ok(_) => return Err(invalid(EXPIRES, value, "longer than 366 days")),
                Err(_) => parse_time(value).filter(|at| *at <= latest).ok_or_else(|| {
                    invalid(EXPIRES, value, "not a duration or an RFC 3339 time within 366 days")
                })?,
            };
            options.expires = at.max(1);
            options.expires_after = options.expires.saturating_sub(stored_ms);
        }
        Ok(options)
    }

    /// What a retry of a job that asked for these options asks for, the retry being decided
    /// at `now`: the same priority, attempts and attempt timeout, no delay (it was waited out
    /// once), and the same time to start counted from the retry.
    pub fn for_retry(&self, now: u64) -> JobOptions {
        let expires = match self.expires_after {
            0 => 0,
            after => now.saturating_add(after).max(1),
        };
        JobOptions { not_before: 0, expires, ..*self }
    }

    /// The headers a failed or cancelled job's stored outcome carries, so a retry decided
    /// from it keeps what [`for_retry`](Self::for_retry) keeps: priority, attempts, timeout,
    /// and the expiry as a duration (read back with [`from_headers`](Self::from_headers) at
    /// the retry's time, it counts from there).
    pub fn retry_headers(&self) -> Vec<(&'static str, String)> {
        let kept = JobOptions { expires: self.expires_after, ..self.for_retry(0) };
        let mut out = kept.headers();
        if let Some(expires) = out.iter_mut().find(|(name, _)| *name == EXPIRES) {
            expires.1 = format!("{}ms", self.expires_after);
        }
        out
    }

    /// The headers that ask for these options (the inverse of
    /// [`from_headers`](Self::from_headers), with times written absolute).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.not_before > 0 {
            out.push((NOT_BEFORE, format_time(self.not_before)));
        }
        if self.priority > 0 {
            out.push((PRIORITY, self.priority.to_string()));
        }
        if let Some(n) = self.max_attempts {
            out.push((MAX_ATTEMPTS_HEADER, n.to_string()));
        }
        if let Some(ms) = self.timeout {
            out.push((TIMEOUT, format!("{ms}ms")));
        }
        if self.expires > 0 {
            out.push((EXPIRES, format_time(self.expires)));
        }
        out
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// An RFC 3339 time as ms since the Unix epoch (`None` before the epoch or unparseable).
fn parse_time(value: &str) -> Option<u64> {
    let at = OffsetDateTime::parse(value.trim(), &Rfc3339).ok()?;
    u64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// The headers of the notice announcing a stored priority submission at `seq` (published on
/// `subjects::submitted(queue)`): the leader then takes it ahead of an unread backlog.
pub fn priority_notice(seq: u64, priority: &str) -> async_nats::HeaderMap {
    let mut notice = async_nats::HeaderMap::new();
    notice.insert(crate::headers::NATS_SEQUENCE, seq.to_string().as_str());
    notice.insert(PRIORITY, priority);
    notice
}

/// The notice announcing a submission stored at `seq` with the headers `asked` (what a
/// submitter sent), if it is worth announcing: it asks for a priority above 0 (the leader
/// takes it ahead of an unread backlog) or for an expiry (the leader takes it even while
/// nobody serves its queue, so it is seen waiting and expires on time). `None` otherwise,
/// which is nearly every submission.
pub fn submission_notice(seq: u64, asked: &[(&str, String)]) -> Option<async_nats::HeaderMap> {
    let get = |name: &str| {
        asked.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
    };
    let priority = get(PRIORITY).filter(|p| p.parse::<u8>().is_ok_and(|p| p > 0));
    let expires = get(EXPIRES).filter(|e| !e.is_empty());
    if priority.is_none() && expires.is_none() {
        return None;
    }
    let mut notice = async_nats::HeaderMap::new();
    notice.insert(crate::headers::NATS_SEQUENCE, seq.to_string().as_str());
    if let Some(priority) = priority {
        notice.insert(PRIORITY, priority);
    }
    if let Some(expires) = expires {
        notice.insert(EXPIRES, expires);
    }
    Some(notice)
}

/// Ms since the Unix epoch as RFC 3339 (UTC, milliseconds).
pub fn format_time(ms: u64) -> String {
    i128::from(ms)
        .checked_mul(1_000_000)
        .and_then(|ns| OffsetDateTime::from_unix_timestamp_nanos(ns).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)], stored: u64) -> Result<JobOptions, String> {
        JobOptions::from_headers(
            |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v),
            stored,
        )
    }

    #[test]
    fn no_headers_ask_for_nothing() {
        assert!(parse(&[], 5).map(|o| o.is_default()).unwrap_or(false));
    }

    #[test]
    fn every_option_is_read() -> Result<(), String> {
        let o = parse(
            &[
                (DELAY, "1m 30s"),
                (PRIORITY, "9"),
                (MAX_ATTEMPTS_HEADER, "2"),
                (TIMEOUT, "45s"),
                (EXPIRES, "1h"),
            ],
            1_000,
        )?;
        assert_eq!(o.not_before, 91_000);
        assert_eq!(o.priority, 9);
        assert_eq!(o.max_attempts, Some(2));
        assert_eq!(o.timeout, Some(45_000));
        assert_eq!(o.expires, 3_601_000);
        let stored = 1_796_000_000_000; // 2026-11-29T22:13:20Z
        let at = parse(
            &[(NOT_BEFORE, "2026-12-01T03:00:00Z"), (EXPIRES, "2026-12-01T04:00:00Z")],
            stored,
        )?;
        assert_eq!(at.not_before, 1_796_094_000_000);
        assert_eq!(at.expires, 1_796_097_600_000);
        assert_eq!(o.expires_after, 3_600_000);
        assert_eq!(at.expires_after, 97_600_000);
        // Written back absolute, and read again the same.
        let again =
            parse(&o.headers().iter().map(|(n, v)| (*n, v.as_str())).collect::<Vec<_>>(), 1_000)?;
        assert_eq!(again, o);
        Ok(())
    }

    #[test]
    fn a_retry_keeps_priority_attempts_timeout_and_the_time_to_start_but_no_delay(
    ) -> Result<(), String> {
        let asked = parse(
            &[
                (DELAY, "1m"),
                (PRIORITY, "7"),
                (MAX_ATTEMPTS_HEADER, "2"),
                (TIMEOUT, "45s"),
                (EXPIRES, "1h"),
            ],
            1_000,
        )?;
        let retry = asked.for_retry(50_000);
        assert_eq!(
            retry,
            JobOptions {
                not_before: 0,
                priority: 7,
                max_attempts: Some(2),
                timeout: Some(45_000),
                expires: 3_650_000,
                expires_after: 3_600_000,
            }
        );
        // Stored with the outcome, read back when the retry is decided: the same.
        let stored = asked.retry_headers();
        assert!(stored.iter().all(|(name, _)| *name != DELAY && *name != NOT_BEFORE), "{stored:?}");
        let pairs: Vec<(&str, &str)> = stored.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert_eq!(parse(&pairs, 0)?.for_retry(50_000), retry);
        assert!(JobOptions::default().retry_headers().is_empty());
        assert_eq!(JobOptions::default().for_retry(9), JobOptions::default());
        Ok(())
    }

    #[test]
    fn invalid_values_are_refused_with_the_header_named() {
        for (pairs, expected) in [
            (vec![(PRIORITY, "10")], PRIORITY),
            (vec![(PRIORITY, "high")], PRIORITY),
            (vec![(MAX_ATTEMPTS_HEADER, "0")], MAX_ATTEMPTS_HEADER),
            (vec![(MAX_ATTEMPTS_HEADER, "1001")], MAX_ATTEMPTS_HEADER),
            (vec![(TIMEOUT, "1ms")], TIMEOUT),
            (vec![(TIMEOUT, "soon")], TIMEOUT),
            (vec![(DELAY, "-5s")], DELAY),
            (vec![(DELAY, "400days")], DELAY),
            (vec![(NOT_BEFORE, "tomorrow")], NOT_BEFORE),
            (vec![(NOT_BEFORE, "2099-01-01T00:00:00Z")], NOT_BEFORE),
            (vec![(EXPIRES, "never")], EXPIRES),
            (vec![(DELAY, "1s"), (NOT_BEFORE, "2026-12-01T03:00:00Z")], NOT_BEFORE),
        ] {
            let result = parse(&pairs, 1_796_000_000_000);
            assert!(
                result.as_ref().is_err_and(|e| e.contains(expected)),
                "{pairs:?} gave {result:?}"
            );
        }
    }
}
