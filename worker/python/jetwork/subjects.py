"""Every subject, stream and bucket name the library uses, in one place.

The Rust reference is ``shared/src/subjects.rs``; ``docs/protocol.md`` lists the same names.
Change them here only, together with those.
"""

from __future__ import annotations

SUBMIT_STREAM = "JETWORK_SUBMIT"
RESULTS_STREAM = "JETWORK_RESULTS"
LEASE_BUCKET = "jetwork-lease"
LEASE_KEY = "master"

#: Where a finished job's outcome is stored in ``RESULTS_STREAM`` (read it by direct get).
STORED_RESULTS = "jetwork.outcomes"
#: Where each stored outcome is delivered live, once (subscribe to wait for one).
LIVE_RESULTS = "jetwork.results"
#: Where a rejected submission is stored, by its submit sequence.
REJECTED = "jetwork.rejected"

MASTER_ELECTED = "jetwork.master.elected"
MASTER_REGISTER = "jetwork.master.register"
MASTER_DEREGISTER = "jetwork.master.deregister"
MASTER_REQUEST = "jetwork.master.request"
MASTER_REPORT = "jetwork.master.report"
MASTER_STATUS = "jetwork.master.status"
MASTER_JOB = "jetwork.master.job"
MASTER_JOBS = "jetwork.master.jobs"
ADMIN_CANCEL = "jetwork.admin.cancel"
ADMIN_RETRY = "jetwork.admin.retry"
ADMIN_PAUSE = "jetwork.admin.pause"
ADMIN_RESUME = "jetwork.admin.resume"


def submit(queue: str) -> str:
    return f"jetwork.submit.{queue}"


def submitted(queue: str) -> str:
    """Where a stored priority submission is announced (a priority jump)."""
    return f"jetwork.submitted.{queue}"


def stored_result(queue: str | None, work_id: str) -> str:
    """The stored outcome of ``work_id`` (any queue when ``queue`` is None)."""
    return f"{STORED_RESULTS}.{queue or '*'}.{work_id}"


def live_result(queue: str | None, work_id: str) -> str:
    """The live delivery of ``work_id``'s outcome (any queue when ``queue`` is None)."""
    return f"{LIVE_RESULTS}.{queue or '*'}.{work_id}"


def direct_get(stream: str, subject: str) -> str:
    """JetStream's direct get of the last message on ``subject`` (any replica answers)."""
    return f"$JS.API.DIRECT.GET.{stream}.{subject}"


LEASE_READ = direct_get(f"KV_{LEASE_BUCKET}", f"$KV.{LEASE_BUCKET}.{LEASE_KEY}")


def worker_endpoint(endpoint: str, login: str | None, worker_id: str) -> str:
    """A worker's own subject of a master endpoint (under its login when it has one)."""
    return f"{endpoint}.{login}.{worker_id}" if login else endpoint


def worker_notice(kind: str, login: str | None, worker_id: str) -> str:
    """``jetwork.worker.[<login>.]<id>.<kind>`` (``ready`` or ``cancel``)."""
    middle = f"{login}.{worker_id}" if login else worker_id
    return f"jetwork.worker.{middle}.{kind}"
