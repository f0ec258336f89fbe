//! Recurring schedules on the wire: the [`ScheduleName`] an operator picks, the JSON bodies of
//! `jetwork.admin.schedule.add` / `.rm` and the `jetwork.master.schedules` listing, and the
//! work id each tick is submitted under ([`tick_work_id`]).
//!
//! Invariant: a tick's work id is a pure function of the schedule's name and the tick's
//! scheduled time (`<name>-<YYYYMMDDTHHMMSSZ>`, UTC), so every leader that fires or re-submits
//! the same tick submits it under the same `Nats-Msg-Id`: JetStream's duplicate window and the
//! master's in-flight check then keep it to one run. A name can never make the id start with
//! the reserved `seq-` prefix (the name `seq` and names starting `seq-` are refused).

use serde::{Deserialize, Serialize};

use crate::name::{self, validated_name, InvalidName};
use crate::work_id::ASSIGNED_PREFIX;
use crate::{QueueName, WorkId};

validated_name!(
    /// A validated schedule name: 1 to 64 characters of `[A-Za-z0-9_-]`, not `seq` or `seq-…`.
    ScheduleName,
    "schedule name",
    64
);

impl ScheduleName {
    /// Validates a schedule name.
    pub fn parse(value: &str) -> Result<Self, InvalidName> {
        name::check("schedule name", value, Self::MAX_LEN)?;
        // `<name>-<stamp>` must not start with the prefix of ids the master assigns.
        if format!("{value}-").starts_with(ASSIGNED_PREFIX) {
            return Err(InvalidName::Reserved { kind: "schedule name", prefix: "seq" });
        }
        Ok(ScheduleName::checked(value))
    }
}

/// The work id of the tick of `schedule` scheduled at `at_ms` (Unix milliseconds, UTC):
/// `<name>-<YYYYMMDDTHHMMSSZ>`. Ticks fall on whole seconds (see the master's cadences); a
/// fraction of a second would be dropped.
pub fn tick_work_id(schedule: &ScheduleName, at_ms: u64) -> WorkId {
    let secs = at_ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    let (h, m, s) = (rest / 3600, rest / 60 % 60, rest % 60);
    let id = format!("{schedule}-{year:04}{month:02}{day:02}T{h:02}{m:02}{s:02}Z");
    // A 64-character name plus 17 characters of stamp is well inside a work id's 128, and
    // both parts are in the alphabet: this cannot fail.
    WorkId::parse(&id).unwrap_or_else(|_| WorkId::assigned(at_ms))
}

/// Days since 1970-01-01 to a (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`, for days ≥ 0).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Body of `jetwork.admin.schedule.add` (JSON). Exactly one of `every` (a humantime
/// duration, whole seconds: `30s`, `5m`, `1h 30m`) and `cron` (five fields, UTC:
/// `0 3 * * *`). `payload` is submitted as the body of every tick (UTF-8 text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleAdd {
    pub name: ScheduleName,
    pub queue: QueueName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default)]
    pub payload: String,
}

/// Body of `jetwork.admin.schedule.rm` (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRemove {
    pub name: ScheduleName,
}

/// One schedule as `jetwork.master.schedules` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleInfo {
    pub name: ScheduleName,
    pub queue: QueueName,
    /// The interval, for an `every` schedule (humantime, e.g. `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// The expression, for a cron schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// When the next tick is due (Unix ms, UTC).
    pub next_ms: u64,
    /// The scheduled time of the latest tick fired, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ms: Option<u64>,
    /// Ticks fired (each submitted once).
    pub fired: u64,
    /// Ticks skipped because they fell due while no master led (see the missed-tick policy).
    pub missed: u64,
    pub payload_bytes: u64,
    pub added_ms: u64,
}

/// Reply of `jetwork.master.schedules` (JSON), by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulesPage {
    pub schedules: Vec<ScheduleInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_ids_name_the_schedule_and_the_utc_time() {
        let name = ScheduleName::parse("nightly").unwrap();
        // 2026-11-30T03:00:00Z
        assert_eq!(tick_work_id(&name, 1_796_007_600_000).as_str(), "nightly-20261130T030000Z");
        assert_eq!(tick_work_id(&name, 0).as_str(), "nightly-19700101T000000Z");
        // A leap day.
        assert_eq!(tick_work_id(&name, 951_782_400_000).as_str(), "nightly-20000229T000000Z");
        let long = ScheduleName::parse(&"a".repeat(64)).unwrap();
        assert!(WorkId::parse_submitted(tick_work_id(&long, u64::MAX / 2).as_str()).is_ok());
    }

    #[test]
    fn names_cannot_make_reserved_ids() {
        for bad in ["seq", "seq-1", "a.b", ""] {
            assert!(ScheduleName::parse(bad).is_err(), "{bad}");
        }
        for good in ["sequence", "seq_1", "nightly-report"] {
            assert!(ScheduleName::parse(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn bodies_read_as_documented() {
        let add: ScheduleAdd =
            serde_json::from_str(r#"{"name":"n","queue":"q","every":"5m","payload":"hi"}"#)
                .unwrap();
        assert_eq!(add.every.as_deref(), Some("5m"));
        assert!(serde_json::from_str::<ScheduleAdd>(r#"{"name":"n","queue":"q","x":1}"#).is_err());
    }
}
