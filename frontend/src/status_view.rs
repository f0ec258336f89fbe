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
    let _ = writeln!(
        out,
        "\n{:<36} {:<16} {:>8} {:>9}  RUNNING",
        "WORKER", "QUEUES", "CAPACITY", "SEEN"
    );
    for w in &report.workers {
        let queues: Vec<&str> = w.queues.iter().map(|q| q.as_str()).collect();
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
            "{:<36} {:<16} {:>8} {:>9}  {}",
            w.worker_id,
            queues.join(","),
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
