//! Rendering a [`StatusReport`] for people.

use std::fmt::Write as _;

use jetwork_shared::protocol::StatusReport;

/// The report as aligned text tables.
pub fn render(report: &StatusReport) -> String {
    let mut out = format!("leader {}  epoch {}\n\n", report.leader, report.epoch);
    let _ = writeln!(
        out,
        "{:<24} {:>10} {:>12} {:>8} {:>10} {:>8} {:>9} {:>9}",
        "QUEUE",
        "PENDING",
        "IN PROGRESS",
        "WAITING",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "REJECTED"
    );
    for q in &report.queues {
        // A paused queue says so where the eye lands first: its name.
        let name =
            if q.paused { format!("{} (paused)", q.queue) } else { q.queue.as_str().to_owned() };
        let _ = writeln!(
            out,
            "{:<24} {:>10} {:>12} {:>8} {:>10} {:>8} {:>9} {:>9}",
            name,
            q.pending,
            q.in_progress,
            q.waiting,
            q.completed,
            q.failed,
            q.cancelled,
            q.rejected
        );
    }
    more(&mut out, report.queues.len(), report.queues_total, "queues", "--queues/--queues-offset");
    // As wide as the widest worker id (`<login>-<32 hex digits>` by default) and queue list.
    let queue_list = |w: &jetwork_shared::protocol::WorkerStatus| {
        w.queues.iter().map(|q| q.as_str()).collect::<Vec<_>>().join(",")
    };
    let worker_width =
        report.workers.iter().map(|w| w.worker_id.as_str().len()).max().unwrap_or(0).max(6);
    let queues_width = report.workers.iter().map(|w| queue_list(w).len()).max().unwrap_or(0).max(6);
    let _ = writeln!(
        out,
        "\n{:<worker_width$} {:<queues_width$} {:>8} {:>9}  RUNNING",
        "WORKER", "QUEUES", "CAPACITY", "SEEN"
    );
    for w in &report.workers {
        let running: Vec<String> = w
            .running
            .iter()
            .map(|r| {
                let left = r.deadline_ms.saturating_sub(report.now_ms);
                format!("{}@{} ({}.{}s left)", r.work_id, r.attempt, left / 1000, left % 1000 / 100)
            })
            .collect();
        let seen =
            format!("{}.{}s ago", w.last_seen_ago_ms / 1000, w.last_seen_ago_ms % 1000 / 100);
        let mut running = if running.is_empty() { "idle".to_owned() } else { running.join(", ") };
        let hidden = w.running_total.saturating_sub(w.running.len() as u64);
        if hidden > 0 {
            let _ = write!(running, " and {hidden} more");
        }
        let _ = writeln!(
            out,
            "{:<worker_width$} {:<queues_width$} {:>8} {:>9}  {}",
            w.worker_id.as_str(),
            queue_list(w),
            w.capacity,
            seen,
            running
        );
    }
    more(
        &mut out,
        report.workers.len(),
        report.workers_total,
        "workers",
        "--workers/--workers-offset",
    );
    out
}

/// Notes how many of a list the page left out.
fn more(out: &mut String, listed: usize, total: u64, what: &str, flags: &str) {
    let hidden = total.saturating_sub(listed as u64);
    if hidden > 0 {
        let _ = writeln!(out, "… {listed} of {total} {what} listed ({flags} for the rest)");
    }
}

#[cfg(test)]
mod tests {
    use jetwork_shared::protocol::{StatusReport, WorkerStatus};
    use jetwork_shared::{QueueName, WorkerId};

    use super::render;

    #[test]
    fn the_workers_columns_fit_the_widest_id_and_queue_list() {
        let worker = |id: &str, queues: &[&str]| WorkerStatus {
            worker_id: WorkerId::parse(id).expect("valid id"),
            queues: queues.iter().map(|q| QueueName::parse(q).expect("valid queue")).collect(),
            capacity: 4,
            last_seen_ago_ms: 0,
            running: Vec::new(),
            running_total: 0,
        };
        // A worker's default id: its login and 32 hex digits.
        let long = "worker-1-665b4de0d4a44f61a84169c8433d43ea";
        let report = StatusReport {
            leader: "m1".to_owned(),
            epoch: 1,
            now_ms: 0,
            queues: Vec::new(),
            queues_total: 0,
            workers: vec![worker(long, &["default"]), worker("w2", &["emails", "reports-nightly"])],
            workers_total: 2,
        };
        let text = render(&report);
        let lines: Vec<&str> =
            text.lines().filter(|l| l.contains("idle") || l.starts_with("WORKER")).collect();
        assert_eq!(lines.len(), 3, "{text}");
        let at = |line: &str, word: &str| line.find(word).expect("in the line");
        let queues_at = at(lines[0], "QUEUES");
        assert_eq!(at(lines[1], "default"), queues_at, "{text}");
        assert_eq!(at(lines[2], "emails"), queues_at, "{text}");
        let capacity_end = at(lines[0], "CAPACITY") + "CAPACITY".len();
        assert_eq!(at(lines[1], " 4 ") + 2, capacity_end, "{text}");
        assert_eq!(at(lines[2], " 4 ") + 2, capacity_end, "{text}");
    }
}
