//! [`Cadence`]: when a recurring schedule ticks, as a pure function of time. Every time here is
//! an input (Unix milliseconds, UTC); nothing reads a clock.
//!
//! - `Every { ms }`: ticks on the multiples of `ms` since the Unix epoch (a `5m` schedule
//!   ticks at :00, :05, … whenever it was added), so tick times are stable and readable.
//!   `ms` is a whole number of seconds (tick work ids name the second).
//! - `Cron { expr }`: a standard five-field expression (minute hour day-of-month month
//!   day-of-week), evaluated in UTC by the `croner` crate.
//!
//! A cadence is validated once, when a schedule is added ([`Cadence::every`],
//! [`Cadence::cron`]); one read back from the journal is trusted, and if it could somehow no
//! longer be evaluated it simply never ticks again (`next_after` → `None`): replay never fails.

use croner::parser::{CronParser, Seconds};
use serde::{Deserialize, Serialize};

use super::Millis;

/// How often a schedule ticks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cadence {
    /// Every `ms` milliseconds, on the multiples of `ms` since the epoch.
    Every { ms: Millis },
    /// A five-field cron expression, UTC.
    Cron { expr: String },
}

/// At most this many missed cron ticks are counted one by one, so catching up after a long
/// outage costs the leader's loop milliseconds, not seconds; beyond it the latest tick is
/// found directly and `missed` says at least this many (it is informational).
const MAX_COUNTED: u64 = 10_000;

impl Cadence {
    /// An interval cadence from a humantime duration (`30s`, `5m`, `1h 30m`): whole seconds,
    /// at least one.
    pub fn every(text: &str) -> Result<Cadence, String> {
        let duration = humantime::parse_duration(text.trim())
            .map_err(|e| format!("every {text:?} is not a duration (like 30s, 5m, 1h): {e}"))?;
        if duration.subsec_nanos() != 0 || duration.as_secs() == 0 {
            return Err(format!("every {text:?} must be a whole number of seconds, at least 1s"));
        }
        let ms = duration.as_secs().checked_mul(1000).ok_or("every is too long")?;
        Ok(Cadence::Every { ms })
    }

    /// A cron cadence from a five-field expression (UTC).
    pub fn cron(expr: &str) -> Result<Cadence, String> {
        let expr = expr.trim();
        parser()
            .parse(expr)
            .map_err(|e| format!("cron {expr:?} is not a five-field cron expression: {e}"))?;
        Ok(Cadence::Cron { expr: expr.to_owned() })
    }

    /// The first tick strictly after `t`; `None` if there is none (a cron expression that
    /// cannot match again).
    pub fn next_after(&self, t: Millis) -> Option<Millis> {
        match self {
            Cadence::Every { ms } if *ms > 0 => (t / ms).checked_add(1)?.checked_mul(*ms),
            Cadence::Every { .. } => None,
            Cadence::Cron { expr } => cron_next(&parser().parse(expr).ok()?, t),
        }
    }

    /// Of the ticks from `due` (a tick) up to `now`, the latest, and how many before it were
    /// passed over. `due` must be at most `now`.
    pub fn latest(&self, due: Millis, now: Millis) -> (Millis, u64) {
        match self {
            Cadence::Every { ms } if *ms > 0 => {
                let latest = now - now % ms;
                let latest = latest.max(due);
                (latest, (latest - due) / ms)
            }
            Cadence::Every { .. } => (due, 0),
            Cadence::Cron { expr } => {
                let Ok(cron) = parser().parse(expr) else { return (due, 0) };
                let (mut latest, mut passed) = (due, 0);
                while let Some(next) = cron_next(&cron, latest).filter(|n| *n <= now) {
                    latest = next;
                    passed += 1;
                    if passed >= MAX_COUNTED {
                        // Far behind (a long outage of a busy schedule): jump to the end.
                        let last = cron_previous(&cron, now).filter(|p| *p >= latest);
                        return (last.unwrap_or(latest), passed);
                    }
                }
                (latest, passed)
            }
        }
    }

    /// The shortest gap between two ticks, as far as the next few ticks after `from` show
    /// (for the minimum-interval limit; `None` if it does not tick twice).
    pub fn shortest_gap(&self, from: Millis) -> Option<Millis> {
        match self {
            Cadence::Every { ms } => Some(*ms),
            Cadence::Cron { .. } => {
                let mut t = self.next_after(from)?;
                let mut gap: Option<Millis> = None;
                for _ in 0..8 {
                    let Some(n) = self.next_after(t) else { break };
                    gap = Some(gap.map_or(n - t, |g| g.min(n - t)));
                    t = n;
                }
                gap
            }
        }
    }

    /// How it reads in listings: (`every`, `cron`).
    pub fn describe(&self) -> (Option<String>, Option<String>) {
        match self {
            Cadence::Every { ms } => {
                let d = std::time::Duration::from_millis(*ms);
                (Some(humantime::format_duration(d).to_string()), None)
            }
            Cadence::Cron { expr } => (None, Some(expr.clone())),
        }
    }
}

/// The first match of `cron` strictly after `t`.
fn cron_next(cron: &croner::Cron, t: Millis) -> Option<Millis> {
    let start = chrono::DateTime::from_timestamp_millis(i64::try_from(t).ok()?)?;
    let next = cron.find_next_occurrence(&start, false).ok()?;
    u64::try_from(next.timestamp_millis()).ok()
}

/// The last match of `cron` at or before `t`.
fn cron_previous(cron: &croner::Cron, t: Millis) -> Option<Millis> {
    let start = chrono::DateTime::from_timestamp_millis(i64::try_from(t).ok()?)?;
    let previous = cron.find_previous_occurrence(&start, true).ok()?;
    u64::try_from(previous.timestamp_millis()).ok()
}

/// Five fields, no seconds: what `crontab` reads.
fn parser() -> CronParser {
    CronParser::builder().seconds(Seconds::Disallowed).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60_000;

    #[test]
    fn every_ticks_on_multiples_of_its_interval() {
        let c = Cadence::every("5m").unwrap();
        assert_eq!(c, Cadence::Every { ms: 5 * MIN });
        assert_eq!(c.next_after(0), Some(5 * MIN));
        assert_eq!(c.next_after(5 * MIN), Some(10 * MIN));
        assert_eq!(c.next_after(5 * MIN - 1), Some(5 * MIN));
        assert_eq!(c.latest(5 * MIN, 17 * MIN), (15 * MIN, 2));
        assert_eq!(c.latest(5 * MIN, 5 * MIN), (5 * MIN, 0));
        assert!(Cadence::every("1500ms").is_err());
        assert!(Cadence::every("0s").is_err());
        assert!(Cadence::every("soon").is_err());
    }

    #[test]
    fn cron_is_five_fields_in_utc() {
        let c = Cadence::cron("0 3 * * *").unwrap();
        // 2026-11-30T00:00:00Z → 03:00 the same day, then the next day.
        let midnight = 1_795_996_800_000;
        let three = midnight + 3 * 60 * MIN;
        assert_eq!(c.next_after(midnight), Some(three));
        assert_eq!(c.next_after(three), Some(three + 24 * 60 * MIN));
        assert_eq!(c.latest(three, three + 3 * 24 * 60 * MIN + 5), (three + 3 * 24 * 60 * MIN, 3));
        assert_eq!(c.shortest_gap(midnight), Some(24 * 60 * MIN));
        assert_eq!(Cadence::cron("*/5 * * * *").unwrap().shortest_gap(midnight), Some(5 * MIN));
        // A year behind an every-minute schedule: the latest tick, found without counting all.
        let minutely = Cadence::cron("* * * * *").unwrap();
        let year = 365 * 24 * 60 * MIN;
        let (latest, passed) = minutely.latest(midnight, midnight + year + 30_000);
        assert_eq!((latest, passed), (midnight + year, MAX_COUNTED));
        assert!(Cadence::cron("0 0 3 * * *").is_err(), "six fields");
        assert!(Cadence::cron("61 * * * *").is_err());
        assert!(Cadence::cron("").is_err());
    }
}
