//! Rendering the recurring schedules for people: one line per schedule (name, queue, cadence,
//! next and last tick in UTC, ticks fired and missed).

use std::fmt::Write as _;

use jetwork_shared::schedules::SchedulesPage;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The schedules as a table.
pub fn render(page: &SchedulesPage) -> String {
    if page.schedules.is_empty() {
        return "no schedules\n".to_owned();
    }
    let mut out = format!(
        "{:<24} {:<16} {:<18} {:<21} {:<21} {:>7} {:>7}\n",
        "NAME", "QUEUE", "CADENCE", "NEXT (UTC)", "LAST (UTC)", "FIRED", "MISSED"
    );
    for s in &page.schedules {
        let cadence = match (&s.every, &s.cron) {
            (Some(every), _) => format!("every {every}"),
            (None, Some(cron)) => format!("cron {cron}"),
            (None, None) => "?".to_owned(),
        };
        let last = s.last_ms.map_or_else(|| "-".to_owned(), utc);
        let _ = writeln!(
            out,
            "{:<24} {:<16} {:<18} {:<21} {:<21} {:>7} {:>7}",
            s.name,
            s.queue,
            cadence,
            utc(s.next_ms),
            last,
            s.fired,
            s.missed
        );
    }
    out
}

/// A Unix millisecond time as RFC 3339 in UTC (`never` past the calendar's end).
fn utc(ms: u64) -> String {
    i64::try_from(ms / 1000)
        .ok()
        .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "never".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetwork_shared::schedules::{ScheduleInfo, ScheduleName};
    use jetwork_shared::QueueName;

    #[test]
    fn lists_each_schedule_with_utc_times() {
        let page = SchedulesPage {
            schedules: vec![ScheduleInfo {
                name: ScheduleName::parse("nightly").unwrap(),
                queue: QueueName::parse("reports").unwrap(),
                every: None,
                cron: Some("0 3 * * *".into()),
                next_ms: 1_796_007_600_000,
                last_ms: None,
                fired: 0,
                missed: 0,
                payload_bytes: 2,
                added_ms: 0,
            }],
        };
        let text = render(&page);
        assert!(text.contains("nightly"), "{text}");
        assert!(text.contains("cron 0 3 * * *"), "{text}");
        assert!(text.contains("2026-11-30T03:00:00Z"), "{text}");
        assert_eq!(render(&SchedulesPage::default()), "no schedules\n");
    }
}
