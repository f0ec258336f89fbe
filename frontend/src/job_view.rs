//! Rendering jobs for people: a [`JobInfo`] (its state, then one line per attempt), and a
//! [`JobsPage`] (one line per job).

use std::fmt::Write as _;

use jetwork_shared::jobs::{AttemptOutcome, JobInfo, JobsPage};

/// The job as text; `now_ms` turns times into ages.
pub fn render(job: &JobInfo, now_ms: u64) -> String {
    let mut out = format!(
        "{}  queue {}  {}  attempts {}  submission {}\n",
        job.work_id,
        job.queue,
        job.state.as_str(),
        job.attempts,
        job.submit_seq
    );
    if let Some(at) = job.ready_at_ms {
        let _ = writeln!(out, "ready in {}", duration(at.saturating_sub(now_ms)));
    }
    let options = job.options.headers();
    if !options.is_empty() {
        let shown: Vec<String> =
            options.iter().map(|(name, value)| format!("{name}: {value}")).collect();
        let _ = writeln!(out, "options: {}", shown.join(", "));
    }
    if let Some(at) = job.finished_ms {
        let _ = writeln!(out, "finished {} ago", duration(now_ms.saturating_sub(at)));
    }
    if let Some(reason) = &job.reason {
        let _ = writeln!(out, "reason: {reason}");
    }
    // As wide as the widest worker id (`<login>-<32 hex digits>` by default).
    let worker_width =
        job.history.iter().map(|r| r.worker.as_str().len()).max().unwrap_or(0).max(6);
    if !job.history.is_empty() {
        let _ = writeln!(
            out,
            "\n{:>7}  {:<worker_width$} {:>12} {:>10}  {:<10} REASON",
            "ATTEMPT", "WORKER", "STARTED", "RAN", "OUTCOME"
        );
    }
    for record in &job.history {
        let ran = match record.outcome {
            AttemptOutcome::Running => duration(now_ms.saturating_sub(record.started_ms)),
            _ => duration(record.ended_ms.saturating_sub(record.started_ms)),
        };
        let outcome = record.outcome.as_str();
        let _ = writeln!(
            out,
            "{:>7}  {:<worker_width$} {:>12} {:>10}  {:<10} {}",
            record.attempt,
            record.worker.as_str(),
            format!("{} ago", duration(now_ms.saturating_sub(record.started_ms))),
            ran,
            outcome,
            record.reason.as_deref().unwrap_or("")
        );
    }
    out
}

/// A list of jobs, one line each: id, queue, state, attempts, age, reason.
/// The id and queue columns are as wide as the widest shown (ids of up to 64 characters, a
/// UUID's 36 among them, are never cut or run into the next column).
pub fn render_list(page: &JobsPage, now_ms: u64) -> String {
    let id_width = page.jobs.iter().map(|j| j.work_id.as_str().len()).max().unwrap_or(0).max(7);
    let queue_width = page.jobs.iter().map(|j| j.queue.as_str().len()).max().unwrap_or(0).max(5);
    let mut out = format!(
        "{:<id_width$} {:<queue_width$} {:<10} {:>8} {:>10}  REASON\n",
        "WORK ID", "QUEUE", "STATE", "ATTEMPTS", "AGE"
    );
    for job in &page.jobs {
        // Finished: since it finished; in flight: since its latest attempt started.
        let since = job.finished_ms.or_else(|| job.history.last().map(|a| a.started_ms));
        let age = since.map_or("-".to_owned(), |at| duration(now_ms.saturating_sub(at)));
        let reason = job.reason.as_deref().unwrap_or("");
        let _ = writeln!(
            out,
            "{:<id_width$} {:<queue_width$} {:<10} {:>8} {:>10}  {}",
            job.work_id.as_str(),
            job.queue.as_str(),
            job.state.as_str(),
            job.attempts,
            age,
            first_line(reason, 100)
        );
    }
    if page.jobs.is_empty() {
        out.push_str("(none)\n");
    }
    if page.truncated {
        out.push_str("… older outcomes were not searched (the listing reads the newest 100000)\n");
    }
    out
}

/// The first line of `text`, at most `max` characters.
fn first_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    match line.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

/// `1.2s`, `3m04s`, `2h05m`: short enough for a table.
fn duration(ms: u64) -> String {
    match ms {
        0..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

#[cfg(test)]
mod tests {
    use jetwork_shared::jobs::{JobInfo, JobState, JobsPage};
    use jetwork_shared::{QueueName, WorkId};

    use super::render_list;

    #[test]
    fn the_attempts_keep_their_columns_whatever_the_worker_ids_length() {
        use jetwork_shared::jobs::{AttemptOutcome, AttemptRecord};
        use jetwork_shared::WorkerId;
        let attempt = |n: u32, worker: &str| AttemptRecord {
            attempt: n,
            worker: WorkerId::parse(worker).expect("valid id"),
            started_ms: 1_000,
            ended_ms: 2_000,
            outcome: AttemptOutcome::Failed,
            reason: Some("boom".to_owned()),
        };
        let job = JobInfo {
            work_id: WorkId::parse("j").expect("valid id"),
            queue: QueueName::parse("q").expect("valid queue"),
            state: JobState::Failed,
            submit_seq: 1,
            attempts: 2,
            ready_at_ms: None,
            reason: None,
            finished_ms: None,
            history: vec![
                attempt(1, "worker-1-665b4de0d4a44f61a84169c8433d43ea"),
                attempt(2, "w2"),
            ],
            options: Default::default(),
        };
        let text = super::render(&job, 10_000);
        let lines: Vec<&str> =
            text.lines().filter(|l| l.contains("ATTEMPT") || l.contains("boom")).collect();
        assert_eq!(lines.len(), 3, "{text}");
        let started_end = lines[0].find("STARTED").expect("header") + "STARTED".len();
        for line in &lines[1..] {
            assert_eq!(line.find(" ago").expect("a start") + " ago".len(), started_end, "{text}");
        }
    }

    #[test]
    fn a_list_keeps_its_columns_whatever_the_ids_length() {
        let job = |id: &str, queue: &str| JobInfo {
            work_id: WorkId::parse(id).expect("valid id"),
            queue: QueueName::parse(queue).expect("valid queue"),
            state: JobState::Ready,
            submit_seq: 1,
            attempts: 0,
            ready_at_ms: None,
            reason: None,
            finished_ms: None,
            history: Vec::new(),
            options: Default::default(),
        };
        let uuid = "0b9c5a5e-4f7e-4f37-9a0c-1c2f3d4e5f60";
        let page = JobsPage {
            jobs: vec![job(uuid, "default"), job("short", "a-much-longer-queue-name")],
            truncated: false,
        };
        let text = render_list(&page, 0);
        let lines: Vec<&str> = text.lines().collect();
        let column = |line: &str, word: &str| line.find(word).expect("in the line");
        let queue_at = column(lines[0], "QUEUE");
        assert_eq!(column(lines[1], "default"), queue_at, "{text}");
        assert_eq!(column(lines[2], "a-much-longer-queue-name"), queue_at, "{text}");
        assert!(lines[1].starts_with(&format!("{uuid} ")), "the id is whole: {text}");
        let state_at = column(lines[0], "STATE");
        assert_eq!(column(lines[1], "ready"), state_at, "{text}");
        assert_eq!(column(lines[2], "ready"), state_at, "{text}");
    }
}
