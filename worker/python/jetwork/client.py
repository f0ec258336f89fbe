"""A jetwork client: submit jobs, read their results and state, and the operators' calls.

Submissions go straight to JetStream (``jetwork.submit.<queue>``): they are stored whether or
not a master runs, and a retry with the same id is a duplicate, never a second job. The
streams must exist first: a master creates them at start, or ``jetwork-frontend init`` does.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Union

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError, TimeoutError as NatsTimeout

from . import subjects
from .errors import NoMaster, NotStored
from .protocol import connect_options, service_error

#: JetStream's "duplicate message id is in process": not a refusal, ask again.
DUPLICATE_IN_PROCESS = 10158

#: A duration: seconds, or text the master reads (``"30s"``, ``"5m"``, ``"1h 30m"``).
Duration = Union[float, int, str]


#: The options a stored submission is announced for on ``jetwork.submitted.<queue>``.
_ANNOUNCED = ("Jetwork-Priority", "Jetwork-Expires")


@dataclass(frozen=True)
class Submitted:
    id: str
    queue: str
    #: The submission's sequence in JETWORK_SUBMIT.
    seq: int
    #: Already stored within the dedup horizon: nothing new was queued.
    duplicate: bool


@dataclass(frozen=True)
class JobResult:
    id: str
    queue: str
    #: ``completed``, ``failed`` or ``cancelled``.
    status: str
    #: The result for ``completed``; the submitted payload for ``failed`` and ``cancelled``.
    payload: bytes
    attempt: int
    reason: str | None
    submit_seq: int | None
    headers: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    @staticmethod
    def of(msg: Msg) -> JobResult | None:
        headers = dict(msg.headers or {})
        status = headers.get("Jetwork-Status")
        if status not in ("completed", "failed", "cancelled"):
            return None
        seq = headers.get("Jetwork-Submit-Seq", "")
        attempt = headers.get("Jetwork-Attempt", "0")
        return JobResult(
            id=headers.get("Jetwork-Work-Id", ""),
            queue=headers.get("Jetwork-Queue", ""),
            status=status,
            payload=msg.data,
            attempt=int(attempt) if attempt.isdigit() else 0,
            reason=headers.get("Jetwork-Reason"),
            submit_seq=int(seq) if seq.isdigit() else None,
            headers=headers,
        )


def _duration(value: Duration) -> str:
    return value if isinstance(value, str) else f"{int(float(value) * 1000)}ms"


class Client:
    """A client on an open NATS connection (see :meth:`connect`)."""

    def __init__(self, nc: NATS, request_timeout: float = 5.0) -> None:
        self.nc = nc
        self.request_timeout = request_timeout

    @classmethod
    async def connect(cls, url: str = "nats://127.0.0.1:4222", **nats_options: Any) -> Client:
        return cls(await nats.connect(url, name="jetwork-client", **connect_options(nats_options)))

    async def close(self) -> None:
        await self.nc.drain()

    # -- submitting -----------------------------------------------------------------------

    async def submit(
        self,
        queue: str,
        payload: bytes,
        id: str | None = None,
        *,
        delay: Duration | None = None,
        not_before: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        timeout: Duration | None = None,
        expires: Duration | None = None,
        submit_timeout: float = 30.0,
    ) -> Submitted:
        """Stores a job; returns once JetStream has it. Retried until ``submit_timeout`` with
        the same id (a retry of a stored submission is a duplicate, not a second job)."""
        work_id = id or str(uuid.uuid4())
        headers = {"Nats-Msg-Id": work_id}
        options = {
            "Jetwork-Delay": None if delay is None else _duration(delay),
            "Jetwork-Not-Before": not_before,
            "Jetwork-Priority": None if priority is None else str(priority),
            "Jetwork-Max-Attempts": None if max_attempts is None else str(max_attempts),
            "Jetwork-Timeout": None if timeout is None else _duration(timeout),
            "Jetwork-Expires": None if expires is None else _duration(expires),
        }
        headers.update({k: v for k, v in options.items() if v is not None})
        subject = subjects.submit(queue)
        deadline = time.monotonic() + submit_timeout
        last = "nothing tried"
        while True:
            try:
                reply = await self.nc.request(subject, payload, timeout=self.request_timeout, headers=headers)
                ack = json.loads(reply.data)
                if "error" in ack:
                    error = ack["error"]
                    if error.get("err_code") == DUPLICATE_IN_PROCESS:
                        # A copy of this submission is still being stored (a replicated
                        # stream waiting for its quorum): ask again, the same id.
                        last = "a copy is still being stored"
                        if time.monotonic() >= deadline:
                            raise NotStored(f"submission of {work_id} not stored within {submit_timeout} s: {last}")
                        await asyncio.sleep(0.2)
                        continue
                    raise NotStored(f"submission of {work_id} refused: {error.get('description')} ({error.get('err_code')})")
                done = Submitted(work_id, queue, int(ack["seq"]), bool(ack.get("duplicate", False)))
                announced = {k: v for k, v in options.items() if k in _ANNOUNCED and v is not None}
                if announced.get("Jetwork-Priority") == "0":
                    del announced["Jetwork-Priority"]
                if announced and not done.duplicate:
                    # The notice lets the leader take it ahead of an unread backlog (a
                    # priority), or while no worker serves its queue (an expiry: then it is
                    # seen waiting and expires on time).
                    notice = {"Nats-Sequence": str(done.seq), **announced}
                    await self.nc.publish(subjects.submitted(queue), b"", headers=notice)
                return done
            except NoRespondersError:
                last = f"no stream stores {subject}: start a master or run `jetwork-frontend init` first"
            except NatsTimeout:
                last = "not acknowledged in time"
            if time.monotonic() >= deadline:
                raise NotStored(f"submission of {work_id} not stored within {submit_timeout} s: {last}")
            await asyncio.sleep(0.2)

    # -- results --------------------------------------------------------------------------

    async def result(self, id: str, queue: str | None = None, wait: float | None = None) -> JobResult | None:
        """The stored outcome of ``id`` (the newest run's), or ``None``. With ``wait``, waits
        up to that many seconds for it: it listens first, then reads what is stored, so an
        outcome stored in between is not missed."""
        if not wait:
            return await self._stored(id, queue)
        live: asyncio.Queue[Msg] = asyncio.Queue()

        async def on_live(msg: Msg) -> None:
            await live.put(msg)

        sub = await self.nc.subscribe(subjects.live_result(queue, id), cb=on_live)
        try:
            stored = await self._stored(id, queue)
            if stored is not None:
                return stored
            deadline = time.monotonic() + wait
            while (left := deadline - time.monotonic()) > 0:
                try:
                    found = JobResult.of(await asyncio.wait_for(live.get(), timeout=left))
                except asyncio.TimeoutError:
                    break
                if found is not None:
                    return found
            return None
        finally:
            await sub.unsubscribe()

    async def _stored(self, id: str, queue: str | None) -> JobResult | None:
        subject = subjects.direct_get(subjects.RESULTS_STREAM, subjects.stored_result(queue, id))
        try:
            reply = await self.nc.request(subject, b"", timeout=self.request_timeout)
        except NoRespondersError as e:
            raise NotStored("the results stream does not exist: start a master or run `jetwork-frontend init`") from e
        if (reply.headers or {}).get("Status"):
            return None  # 404: nothing stored
        return JobResult.of(reply)

    # -- jobs and operators ---------------------------------------------------------------

    async def _call(self, subject: str, body: dict[str, Any]) -> Any:
        try:
            reply = await self.nc.request(subject, json.dumps(body).encode(), timeout=self.request_timeout)
        except (NoRespondersError, NatsTimeout) as e:
            raise NoMaster(f"{subject}: no master answered") from e
        refused = service_error(reply.headers)
        if refused is not None:
            raise refused
        return json.loads(reply.data)

    async def job(self, id: str, queue: str | None = None) -> dict[str, Any]:
        """The job's state and attempts (``JobInfo``); :class:`Refused` 404 if unknown."""
        body: dict[str, Any] = {"work_id": id}
        if queue:
            body["queue"] = queue
        return dict(await self._call(subjects.MASTER_JOB, body))

    async def jobs(self, queue: str | None = None, state: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Jobs in flight, then finished ones, newest first (``JobsPage.jobs``)."""
        body = {k: v for k, v in {"queue": queue, "state": state, "limit": limit}.items() if v is not None}
        return list((await self._call(subjects.MASTER_JOBS, body))["jobs"])

    async def status(self) -> dict[str, Any]:
        return dict(await self._call(subjects.MASTER_STATUS, {}))

    async def cancel(self, id: str, reason: str | None = None) -> str:
        body: dict[str, Any] = {"work_id": id}
        if reason:
            body["reason"] = reason
        return str((await self._call(subjects.ADMIN_CANCEL, body))["message"])

    async def retry(self, id: str, queue: str | None = None) -> str:
        body: dict[str, Any] = {"work_id": id}
        if queue:
            body["queue"] = queue
        return str((await self._call(subjects.ADMIN_RETRY, body))["message"])

    async def pause(self, queue: str) -> str:
        return str((await self._call(subjects.ADMIN_PAUSE, {"queue": queue}))["message"])

    async def resume(self, queue: str) -> str:
        return str((await self._call(subjects.ADMIN_RESUME, {"queue": queue}))["message"])
