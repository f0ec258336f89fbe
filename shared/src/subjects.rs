//! Every subject, stream and bucket name jetwork uses, in one place, so that no other module
//! spells a subject by hand. `docs/protocol.md` lists the same names for other-language
//! clients; change both together.

use crate::{Login, QueueName, WorkId, WorkerId};

/// Stream holding submitted work until it is finished (the durable pending queue).
pub const SUBMIT_STREAM: &str = "JETWORK_SUBMIT";
/// Stream holding the master's journal: event batches, epoch markers and snapshots.
pub const JOURNAL_STREAM: &str = "JETWORK_JOURNAL";
/// Stream holding published results and rejected submissions.
pub const RESULTS_STREAM: &str = "JETWORK_RESULTS";
/// KV bucket holding the master lease.
pub const LEASE_BUCKET: &str = "jetwork-lease";
/// The key in [`LEASE_BUCKET`] whose holder is the leader.
pub const LEASE_KEY: &str = "master";

/// Client submissions, `jetwork.submit.<queue>`, captured by [`SUBMIT_STREAM`].
pub const SUBMIT_ALL: &str = "jetwork.submit.*";
/// The master's own submissions, `jetwork.internal.<queue>` (an operator's retry, a schedule's
/// tick), captured by [`SUBMIT_STREAM`] too. Only the master's NATS user may publish here, and
/// the master honours its bookkeeping headers only here (and only against a decision it
/// journaled), so no client can forge a retry or a tick.
pub const INTERNAL_ALL: &str = "jetwork.internal.*";
/// Within [`SUBMIT_STREAM`] (which holds only [`SUBMIT_ALL`] and [`INTERNAL_ALL`]): every
/// submission, of either kind.
pub const SUBMISSIONS_ALL: &str = "jetwork.*.*";
/// Notices of stored submissions, `jetwork.submitted.<queue>` (core NATS, not stored): a
/// submitter announces its priority submission there once stored (or, with
/// `streams.republish_submissions`, [`SUBMIT_STREAM`] republishes every submission's headers
/// there), and the leader finds priority submissions stored behind an unread backlog there.
pub const SUBMITTED_ALL: &str = "jetwork.submitted.*";
/// The republication's destination, in the server's subject-mapping syntax.
pub const SUBMITTED_MAPPING: &str = "jetwork.submitted.{{wildcard(1)}}";
/// Subjects captured by [`JOURNAL_STREAM`].
pub const JOURNAL_ALL: &str = "jetwork.journal.>";
/// Journal subject of event batches.
pub const JOURNAL_EVENTS: &str = "jetwork.journal.events";
/// Journal subject of epoch markers (one per leadership term).
pub const JOURNAL_EPOCH: &str = "jetwork.journal.epoch";
/// Journal subject of snapshot parts.
pub const JOURNAL_SNAPSHOT_DATA: &str = "jetwork.journal.snapshot.data";
/// Journal subject of snapshot markers (written after all parts of a snapshot).
pub const JOURNAL_SNAPSHOT: &str = "jetwork.journal.snapshot.done";
/// Stored outcomes of runs, captured by [`RESULTS_STREAM`] (see [`stored_result`]).
pub const OUTCOMES_ALL: &str = "jetwork.outcomes.>";
/// Results as they are published live: [`RESULTS_STREAM`] republishes each outcome it stores
/// here, once ([`result`]).
pub const RESULTS_ALL: &str = "jetwork.results.>";
/// Rejected-submission subjects captured by [`RESULTS_STREAM`].
pub const REJECTED_ALL: &str = "jetwork.rejected.>";

/// The group of the leader's request/reply endpoints (a NATS micro service named
/// [`SERVICE_NAME`]): each endpoint's subject is `<group>.<endpoint name>`.
pub const MASTER_GROUP: &str = "jetwork.master";
/// Workers register here (an endpoint of [`MASTER_GROUP`]).
pub const MASTER_REGISTER: &str = "jetwork.master.register";
/// Workers ask for work here.
pub const MASTER_REQUEST: &str = "jetwork.master.request";
/// Workers report completion, failure and progress here.
pub const MASTER_REPORT: &str = "jetwork.master.report";
/// Workers that stop cleanly release their id here.
pub const MASTER_DEREGISTER: &str = "jetwork.master.deregister";
/// Anyone asks for the leader's view of queues and workers here (JSON reply).
pub const MASTER_STATUS: &str = "jetwork.master.status";
/// A newly elected leader announces itself here (core NATS, not stored).
pub const MASTER_ELECTED: &str = "jetwork.master.elected";
/// Name of the micro service the leader runs (`nats micro info jetwork`).
pub const SERVICE_NAME: &str = "jetwork";

/// Where work for `queue` is submitted.
pub fn submit(queue: &QueueName) -> String {
    format!("jetwork.submit.{queue}")
}

/// Where the master submits work to `queue` itself (see [`INTERNAL_ALL`]).
pub fn internal(queue: &QueueName) -> String {
    format!("jetwork.internal.{queue}")
}

/// Within [`SUBMIT_STREAM`]: every submission to `queue`, a client's or the master's
/// (`jetwork.*.<queue>` matches exactly [`submit`] and [`internal`] there, since the stream
/// holds no other subjects). One filter, so a queue is read, counted and purged in stream order
/// whoever submitted.
pub fn submissions_of(queue: &QueueName) -> String {
    format!("jetwork.*.{queue}")
}

/// Where a stored submission to `queue` is announced (see [`SUBMITTED_ALL`]).
pub fn submitted(queue: &QueueName) -> String {
    format!("jetwork.submitted.{queue}")
}

/// Where the result of `work_id` in `queue` is delivered live: `JETWORK_RESULTS` republishes
/// each outcome it stores ([`stored_result`]) here, once. Nobody publishes here directly, so
/// a live subscriber sees every stored result exactly when, and only as often as, it is
/// stored (the server's republish is at most once: a subscriber that must not miss one also
/// reads the store).
pub fn result(queue: &QueueName, work_id: &WorkId) -> String {
    format!("{RESULTS_PREFIX}{queue}.{work_id}")
}

/// Where the master stores the outcome of a run of `work_id` in `queue` (in
/// `JETWORK_RESULTS`, which republishes it on [`result`]).
pub fn stored_result(queue: &QueueName, work_id: &WorkId) -> String {
    format!("{OUTCOMES_PREFIX}{queue}.{work_id}")
}

/// Wildcard matching the stored outcome of `work_id` in any queue.
pub fn stored_result_any_queue(work_id: &WorkId) -> String {
    format!("{OUTCOMES_PREFIX}*.{work_id}")
}

/// The queue and work id a result's subject names, stored ([`stored_result`]) or live
/// ([`result`]); `None` for any other subject.
pub fn result_parts(subject: &str) -> Option<(&str, &str)> {
    let rest =
        subject.strip_prefix(OUTCOMES_PREFIX).or_else(|| subject.strip_prefix(RESULTS_PREFIX))?;
    rest.split_once('.')
}

/// Where the rejection of the submission stored at `seq` in `queue` is published and stored
/// (one subject per submission, so its submitter can look it up by the sequence its
/// acknowledgement gave, and a second copy can be refused).
pub fn rejected(queue: &QueueName, seq: u64) -> String {
    format!("jetwork.rejected.{queue}.{seq}")
}

/// The prefix of every live results subject.
pub const RESULTS_PREFIX: &str = "jetwork.results.";
/// The prefix of every stored outcome's subject.
pub const OUTCOMES_PREFIX: &str = "jetwork.outcomes.";
/// The prefix of every rejection subject.
pub const REJECTED_PREFIX: &str = "jetwork.rejected.";

/// Wildcard matching every result in `queue`.
pub fn results_in(queue: &QueueName) -> String {
    format!("{RESULTS_PREFIX}{queue}.>")
}

/// The prefix of every rejection subject of `queue` (`<prefix><seq>`).
pub fn rejected_prefix(queue: &QueueName) -> String {
    format!("{REJECTED_PREFIX}{queue}.")
}

/// The name under [`MASTER_GROUP`] of one of the leader's endpoint subjects
/// ([`MASTER_REGISTER`] → `register`), if it is one.
pub fn master_endpoint(subject: &str) -> Option<&str> {
    endpoint_in(MASTER_GROUP, subject)
}

/// The name under `group` of an endpoint subject ([`ADMIN_CANCEL`] in [`ADMIN_GROUP`] →
/// `cancel`), if it is in the group.
pub fn endpoint_in<'a>(group: &str, subject: &'a str) -> Option<&'a str> {
    subject.strip_prefix(group)?.strip_prefix('.').filter(|name| !name.is_empty())
}

/// JetStream's direct-get API subject of `stream` (a request with a JSON body such as
/// `{"start_time": …}` is answered by any replica, without a consumer).
pub fn direct_get(stream: &str) -> String {
    format!("$JS.API.DIRECT.GET.{stream}")
}

/// Where the leader tells one worker that work is ready for it: `jetwork.worker.<login>.<id>.ready`
/// for a worker registered under a login, `jetwork.worker.<id>.ready` for one without.
pub fn worker_ready(login: Option<&Login>, worker: &WorkerId) -> String {
    match login {
        Some(login) => format!("jetwork.worker.{login}.{worker}.ready"),
        None => format!("jetwork.worker.{worker}.ready"),
    }
}

/// A worker endpoint under the worker's login: `<endpoint>.<login>.<worker id>` (e.g.
/// `jetwork.master.register.worker-1.worker-1-a`). A login's NATS user may publish only
/// `<endpoint>.<login>.*`, which is what binds the worker to its login.
pub fn worker_endpoint(endpoint: &str, login: &Login, worker: &WorkerId) -> String {
    format!("{endpoint}.{login}.{worker}")
}

/// The login and worker id tokens of a login-bound `subject` of `endpoint`
/// (see [`worker_endpoint`]); `None` if it is the endpoint itself (no login) or not of it.
pub fn login_of_endpoint<'a>(endpoint: &str, subject: &'a str) -> Option<(&'a str, &'a str)> {
    let rest = subject.strip_prefix(endpoint)?.strip_prefix('.')?;
    let (login, worker) = rest.split_once('.')?;
    (!login.is_empty() && !worker.is_empty() && !worker.contains('.')).then_some((login, worker))
}

/// Anyone asks for one job's state and attempt history here (JSON).
pub const MASTER_JOB: &str = "jetwork.master.job";
/// Anyone lists jobs here, by queue and state (JSON).
pub const MASTER_JOBS: &str = "jetwork.master.jobs";
/// The operators' endpoints (a group of the leader's micro service; grant `jetwork.admin.>`
/// to operators only).
pub const ADMIN_GROUP: &str = "jetwork.admin";
/// Operators cancel a job here (JSON).
pub const ADMIN_CANCEL: &str = "jetwork.admin.cancel";
/// Operators re-run a failed or cancelled job here.
pub const ADMIN_RETRY: &str = "jetwork.admin.retry";
/// Operators re-run every failed (or cancelled) job of a queue here, newest first, bounded
/// (JSON: `BulkRetry` → `BulkRetryReply`).
pub const ADMIN_RETRY_ALL: &str = "jetwork.admin.retry-all";
/// Operators cancel all pending work of a queue here (JSON: `QueueRequest` → `PurgeReply`).
pub const ADMIN_PURGE: &str = "jetwork.admin.purge";
/// Operators stop handing out a queue's work here.
pub const ADMIN_PAUSE: &str = "jetwork.admin.pause";
/// Operators resume a paused queue here.
pub const ADMIN_RESUME: &str = "jetwork.admin.resume";

/// Operators add a recurring schedule here (JSON).
pub const ADMIN_SCHEDULE_ADD: &str = "jetwork.admin.schedule.add";
/// Operators remove a recurring schedule here (JSON).
pub const ADMIN_SCHEDULE_RM: &str = "jetwork.admin.schedule.rm";
/// Anyone lists the recurring schedules here (JSON).
pub const MASTER_SCHEDULES: &str = "jetwork.master.schedules";

/// Every request/reply subject the leader serves (its micro-service endpoints): what workers,
/// clients and operators may ask. The role matrix test (`tests/tests/role_matrix.rs`) asks each
/// of them as each role of the shipped `nats.conf`, and fails for one it has no row for.
pub const ENDPOINTS: [&str; 16] = [
    MASTER_REGISTER,
    MASTER_DEREGISTER,
    MASTER_REQUEST,
    MASTER_REPORT,
    MASTER_STATUS,
    MASTER_JOB,
    MASTER_JOBS,
    MASTER_SCHEDULES,
    ADMIN_CANCEL,
    ADMIN_RETRY,
    ADMIN_RETRY_ALL,
    ADMIN_PURGE,
    ADMIN_PAUSE,
    ADMIN_RESUME,
    ADMIN_SCHEDULE_ADD,
    ADMIN_SCHEDULE_RM,
];

/// The workers' endpoints: each is also served under the worker's login, as
/// `<endpoint>.<login>.<worker id>` ([`worker_endpoint`]).
pub const WORKER_ENDPOINTS: [&str; 4] =
    [MASTER_REGISTER, MASTER_REQUEST, MASTER_REPORT, MASTER_DEREGISTER];

/// Where the leader tells one worker to stop a cancelled attempt (with its login, as
/// [`worker_ready`]).
pub fn worker_cancel(login: Option<&Login>, worker: &WorkerId) -> String {
    match login {
        Some(login) => format!("jetwork.worker.{login}.{worker}.cancel"),
        None => format!("jetwork.worker.{worker}.cancel"),
    }
}

/// The queue token of a submit subject (`jetwork.submit.<queue>`), if it is one.
pub fn queue_of_submit(subject: &str) -> Option<&str> {
    subject.strip_prefix("jetwork.submit.").filter(|rest| !rest.is_empty() && !rest.contains('.'))
}

/// The queue token of a submission's subject, a client's (`jetwork.submit.<queue>`) or the
/// master's (`jetwork.internal.<queue>`), and whether it is the master's.
pub fn queue_of_submission(subject: &str) -> Option<(&str, bool)> {
    let internal = subject
        .strip_prefix("jetwork.internal.")
        .filter(|rest| !rest.is_empty() && !rest.contains('.'));
    match internal {
        Some(queue) => Some((queue, true)),
        None => queue_of_submit(subject).map(|queue| (queue, false)),
    }
}

/// The queue named by a `jetwork.submitted.<queue>` subject (a republished submission's
/// headers), if it is one.
pub fn queue_of_submitted(subject: &str) -> Option<&str> {
    subject
        .strip_prefix("jetwork.submitted.")
        .filter(|rest| !rest.is_empty() && !rest.contains('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_built_from_validated_names() {
        let q = QueueName::parse("emails").unwrap();
        let id = WorkId::parse("job-1").unwrap();
        assert_eq!(submit(&q), "jetwork.submit.emails");
        assert_eq!(result(&q, &id), "jetwork.results.emails.job-1");
        assert_eq!(rejected(&q, 42), "jetwork.rejected.emails.42");
        assert_eq!(queue_of_submit("jetwork.submit.emails"), Some("emails"));
        assert_eq!(queue_of_submit("jetwork.submit."), None);
        assert_eq!(queue_of_submit("jetwork.results.x"), None);
        assert_eq!(internal(&q), "jetwork.internal.emails");
        assert_eq!(submissions_of(&q), "jetwork.*.emails");
        assert_eq!(queue_of_submission(&submit(&q)), Some(("emails", false)));
        assert_eq!(queue_of_submission(&internal(&q)), Some(("emails", true)));
        assert_eq!(queue_of_submission("jetwork.internal.a.b"), None);
        assert_eq!(queue_of_submission("jetwork.submitted.emails"), None);
        assert_eq!(queue_of_submitted("jetwork.submitted.emails"), Some("emails"));
        assert_eq!(queue_of_submitted(&submitted(&q)), Some("emails"));
        assert_eq!(queue_of_submitted("jetwork.submitted.a.b"), None);
        assert_eq!(queue_of_submitted("jetwork.submit.emails"), None);
        assert_eq!(results_in(&q), "jetwork.results.emails.>");
        assert_eq!(rejected_prefix(&q), "jetwork.rejected.emails.");
        assert!(result(&q, &id).starts_with(RESULTS_PREFIX));
        assert!(rejected(&q, 42).starts_with(&rejected_prefix(&q)));
        assert_eq!(direct_get(SUBMIT_STREAM), "$JS.API.DIRECT.GET.JETWORK_SUBMIT");
    }

    #[test]
    fn worker_subjects_carry_the_login_when_there_is_one() {
        let (login, worker) =
            (Login::parse("worker-1").unwrap(), WorkerId::parse("worker-1-a").unwrap());
        let bound = worker_endpoint(MASTER_REGISTER, &login, &worker);
        assert_eq!(bound, "jetwork.master.register.worker-1.worker-1-a");
        assert_eq!(login_of_endpoint(MASTER_REGISTER, &bound), Some(("worker-1", "worker-1-a")));
        assert_eq!(login_of_endpoint(MASTER_REGISTER, MASTER_REGISTER), None);
        assert_eq!(login_of_endpoint(MASTER_REGISTER, "jetwork.master.register.a"), None);
        assert_eq!(login_of_endpoint(MASTER_REGISTER, "jetwork.master.register.a.b.c"), None);
        assert_eq!(login_of_endpoint(MASTER_REQUEST, &bound), None);
        assert_eq!(worker_ready(Some(&login), &worker), "jetwork.worker.worker-1.worker-1-a.ready");
        assert_eq!(worker_ready(None, &worker), "jetwork.worker.worker-1-a.ready");
        assert_eq!(
            worker_cancel(Some(&login), &worker),
            "jetwork.worker.worker-1.worker-1-a.cancel"
        );
    }

    #[test]
    fn every_master_endpoint_is_in_the_master_group() {
        for (subject, name) in [
            (MASTER_REGISTER, "register"),
            (MASTER_REQUEST, "request"),
            (MASTER_REPORT, "report"),
            (MASTER_DEREGISTER, "deregister"),
            (MASTER_STATUS, "status"),
            (MASTER_JOB, "job"),
            (MASTER_JOBS, "jobs"),
            (MASTER_SCHEDULES, "schedules"),
        ] {
            assert_eq!(master_endpoint(subject), Some(name));
        }
        assert_eq!(master_endpoint("jetwork.masterx.y"), None);
        assert_eq!(master_endpoint(MASTER_GROUP), None);
        for (subject, name) in [
            (ADMIN_CANCEL, "cancel"),
            (ADMIN_RETRY, "retry"),
            (ADMIN_PAUSE, "pause"),
            (ADMIN_RESUME, "resume"),
            (ADMIN_SCHEDULE_ADD, "schedule.add"),
            (ADMIN_SCHEDULE_RM, "schedule.rm"),
        ] {
            assert_eq!(endpoint_in(ADMIN_GROUP, subject), Some(name));
        }
    }
}
