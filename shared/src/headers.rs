//! Header names on stored and published messages. Values are plain ASCII text so that
//! `nats stream view` and `nats sub` show them readably.

/// JetStream's deduplication id; on submissions it carries the work id.
pub const NATS_MSG_ID: &str = "Nats-Msg-Id";
/// JetStream's fence: the write is stored only if the stream's last sequence is this value.
/// Kept with the stored message, so the journal's chain can be checked on replay.
pub const NATS_EXPECTED_LAST_SEQUENCE: &str = "Nats-Expected-Last-Sequence";
/// The stream sequence of a message in a direct-get reply.
pub const NATS_SEQUENCE: &str = "Nats-Sequence";
/// On a direct get: the subject the message was stored on.
pub const NATS_SUBJECT: &str = "Nats-Subject";
/// On a direct get: when the message was stored (RFC 3339, server time).
pub const NATS_TIME_STAMP: &str = "Nats-Time-Stamp";
/// On a batched direct get: how many messages matching the filter follow this one.
pub const NATS_NUM_PENDING: &str = "Nats-Num-Pending";
/// NATS micro-service error replies: the reason.
pub const NATS_SERVICE_ERROR: &str = "Nats-Service-Error";
/// NATS micro-service error replies: the code (400, 404, 503, …).
pub const NATS_SERVICE_ERROR_CODE: &str = "Nats-Service-Error-Code";
/// On a message the server itself wrote as a marker (a KV key whose time to live ran out, a
/// purge): why. Absent on what clients write.
pub const NATS_MARKER_REASON: &str = "Nats-Marker-Reason";
/// On a KV entry read back as a stream message: `DEL` or `PURGE` for a delete or purge
/// marker. Absent on a value that was put.
pub const KV_OPERATION: &str = "KV-Operation";
/// `completed`, `failed` (attempts used up), `cancelled` (by an operator) or `rejected`
/// (invalid submission).
pub const STATUS: &str = "Jetwork-Status";
/// The attempt (1-based) that produced a result.
pub const ATTEMPT: &str = "Jetwork-Attempt";
/// Human-readable reason for a `failed` or `rejected` status (one line, bounded length).
pub const REASON: &str = "Jetwork-Reason";
/// The work id, repeated on results so a consumer of a wildcard need not parse the subject;
/// on the master's own submissions (`jetwork.internal.<queue>`), the work id they run.
pub const WORK_ID: &str = "Jetwork-Work-Id";
/// The queue, repeated on results for the same reason.
pub const QUEUE: &str = "Jetwork-Queue";
/// On rejections: the stream sequence of the rejected submission in `JETWORK_SUBMIT`.
pub const SUBMIT_SEQ: &str = "Jetwork-Submit-Seq";
/// On rejections: the `Nats-Msg-Id` the submission carried, made printable.
pub const SUBMITTED_ID: &str = "Jetwork-Submitted-Id";
/// On journal messages: the leadership epoch (lease revision) of the master that wrote it.
pub const EPOCH: &str = "Jetwork-Epoch";
/// On journal messages: the encoding format they were written in (absent: 1). A master
/// reads formats up to its own and refuses, with an explanation, a journal in a newer one.
pub const JOURNAL_FORMAT: &str = "Jetwork-Format";
/// On snapshot parts: `<index>/<count>`, 1-based.
pub const SNAPSHOT_PART: &str = "Jetwork-Snapshot-Part";

/// Value of [`STATUS`] for completed work.
pub const STATUS_COMPLETED: &str = "completed";
/// Value of [`STATUS`] for work that used up its attempts.
pub const STATUS_FAILED: &str = "failed";
/// Value of [`STATUS`] for a submission that could not be accepted.
pub const STATUS_REJECTED: &str = "rejected";
/// Value of [`STATUS`] for work an operator cancelled.
pub const STATUS_CANCELLED: &str = "cancelled";
/// On results: the job's attempts as compact JSON (`[{"attempt":1,"worker":"w-1",…}]`, the
/// latest 32), so a stored outcome says how it came about. Absent when [`RAN`] stands for it.
pub const HISTORY: &str = "Jetwork-History";
/// On a `completed` result instead of [`HISTORY`], when the history is the common one: a
/// single attempt, the one in [`ATTEMPT`], that completed without a reason. The value is
/// `<worker> <started_ms> <ended_ms>` (single spaces; a worker id has none, the times are
/// decimal ms since the Unix epoch). The server stores and delivers this header with every
/// completed job: its value takes about 60 bytes where the JSON takes about 135. Not named
/// `Jetwork-Run`: a run is one submission of an id (`Jetwork-Submit-Seq`), and this says how
/// its one attempt ran.
pub const RAN: &str = "Jetwork-Ran";
/// On a retry an older master submitted on `jetwork.submit.<queue>`: the work id it runs
/// again. Honoured only on such submissions stored before the upgrade (see
/// [`MASTER_ONLY`]); today's master submits retries on `jetwork.internal.<queue>`.
pub const RETRY_OF: &str = "Jetwork-Retry-Of";
/// On a retried job's submission: how many attempts its earlier runs used (informative: the
/// master numbers the new run's attempts on from there from its own journaled decision, so an
/// attempt number names one hand-out of the id ever).
pub const PRIOR_ATTEMPTS: &str = "Jetwork-Prior-Attempts";
/// On a submission the master made for a recurring schedule: the schedule's name.
pub const SCHEDULE: &str = "Jetwork-Schedule";
/// On a submission the master made for a recurring schedule: the tick's scheduled time (Unix
/// milliseconds, UTC), which its work id also encodes.
pub const SCHEDULED_AT: &str = "Jetwork-Scheduled-At";
/// On a `--forward` worker's request to its service: when the worker gives up waiting for the
/// reply (Unix milliseconds, the worker's clock); progress moves it.
pub const DEADLINE: &str = "Jetwork-Deadline";
/// On a `--forward` worker's request to its service: the subject on which the responder may
/// send progress for this attempt (any message there extends the attempt's deadline).
pub const PROGRESS: &str = "Jetwork-Progress";
/// On a `--forward` service's failure reply: `true` fails the job for good (no more
/// attempts).
pub const NON_RETRYABLE: &str = "Jetwork-Non-Retryable";
/// The most prior attempts a submission may claim.
pub const MAX_PRIOR_ATTEMPTS: u32 = 1_000_000;

/// Headers only the master sets on submissions (on `jetwork.internal.<queue>`). A client
/// submission carrying any of them is rejected with a reason: they would claim a retry's or a
/// tick's bookkeeping, which only the master's journaled decisions may.
pub const MASTER_ONLY: [&str; 5] = [RETRY_OF, PRIOR_ATTEMPTS, SCHEDULE, SCHEDULED_AT, WORK_ID];

/// A header the server adds to a message it delivers from a stream (a direct get's
/// `Nats-Sequence`, `Nats-Subject`, `Nats-Time-Stamp`, `Nats-Num-Pending`; a republished
/// message's): the last value. The server appends its own after the headers stored with the
/// message, and JetStream stores whatever a client put there, so the first value of such a name
/// may be a client's forgery (say `Nats-Sequence: 57` on submission 60, to have its payload
/// taken for another job's).
pub fn from_server<'a>(stored: &'a async_nats::HeaderMap, name: &str) -> Option<&'a str> {
    stored.get_last(name).map(|value| value.as_str())
}

/// Makes `text` safe for a header value: one line, printable ASCII, at most `max` bytes.
pub fn sanitize(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars() {
        let c = if c.is_ascii_graphic() || c == ' ' { c } else { ' ' };
        if out.len() + 1 > max {
            break;
        }
        out.push(c);
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_value_is_the_last_one() {
        let mut stored = async_nats::HeaderMap::new();
        stored.append(NATS_SEQUENCE, "57");
        stored.append(NATS_SEQUENCE, "60");
        assert_eq!(from_server(&stored, NATS_SEQUENCE), Some("60"));
        assert_eq!(from_server(&stored, NATS_SUBJECT), None);
    }

    #[test]
    fn sanitize_makes_one_bounded_line() {
        assert_eq!(sanitize("exit 1:\nboom\r\n", 100), "exit 1: boom");
        assert_eq!(sanitize("abcdef", 3), "abc");
        assert_eq!(sanitize("héllo", 10), "h llo");
    }
}
