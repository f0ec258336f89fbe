"""A jetwork worker: runs ``async def handle(job) -> bytes`` for the jobs of some queues.

One asyncio loop owns all state; requests, jobs and notices run as tasks that change it and
wake the loop, which then decides what to send. The same guarantees as the Rust worker
(``worker/src/core``), in its words:

- **Slots.** running + backlog + outcomes awaiting a verdict + slots asked for <= concurrency,
  each slot counted once (an outcome riding a report that asks for its slot counts in that
  ask). No request asks for a slot the worker does not have.
- **Outcomes.** A completed or failed outcome stays until a verdict for it arrives (any of the
  four), is re-sent every ``resend_interval``, and at once to a new master. At most one report
  is in flight; outcomes that end meanwhile go together in the next one.
- **Epochs.** Replies and notices from an epoch older than the newest confirmed one are
  ignored; a newer epoch is believed only once the lease names it.
- **Identity.** Every request carries this process's session, every outcome its token.
- **No attempt twice.** An attempt held, or held recently (the last 4096), is never taken
  again; a revoked, cancelled or expired one is never started.
- **Shutdown** (SIGTERM/SIGINT or :meth:`Worker.stop`): the open request is withdrawn, running
  jobs get ``shutdown_grace`` to finish, the rest are reported failed (re-queued at once), and
  once every outcome has its verdict (or one more ``resend_interval`` has passed) the worker
  deregisters, releasing its id at once.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Union

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from . import protocol, subjects
from .errors import JetworkError, JobFailed, NoMaster, NonRetryable, Refused
from .job import Job
from .protocol import Assignment, Verdict

log = logging.getLogger("jetwork.worker")

Result = Union[bytes, bytearray, memoryview, str, None]
Handler = Callable[[Job], Awaitable[Result]]
Key = tuple[str, int]

#: Attempts remembered after they left, so a late duplicate grant is never started.
REMEMBERED = 4096
#: How an attempt that may never be taken again under its token is remembered.
NEVER = float("inf")
#: Progress for one attempt goes out at most this often (each costs the master a write).
PROGRESS_INTERVAL = 1.0
#: Longest failure reason sent (its tail: that is where errors usually are).
MAX_REASON = 4096


@dataclass
class _Running:
    assignment: Assignment
    task: asyncio.Task[None] | None = None
    progress_wanted: bool = False
    progress_sent: float = float("-inf")
    progressed: bool = False


@dataclass
class _Pending:
    outcome: dict[str, Any]
    sent: float | None = None  # when last sent (monotonic), None: not yet to this master
    revoked: bool = False  # revoked while it waited: never taken again under its token


@dataclass
class _Flight:
    kind: str  # register | request | report
    slots: int = 0
    covers: set[Key] = field(default_factory=set)  # pending outcomes whose slots `slots` counts
    carried: set[tuple[Key, str]] = field(default_factory=set)  # outcomes sent, with their tokens
    released: bool = False


class Worker:
    """A worker for ``queues``, running at most ``concurrency`` jobs at once.

    ``url`` and ``nats_options`` (user, password, inbox_prefix, tls, ...) go to
    ``nats.connect``; with a ``user``, ``inbox_prefix`` defaults to ``_INBOX_<user>``. ``login`` is the NATS user's worker login (``None`` for a master without
    ``[logins]``); ``id`` defaults to ``<login>-<random>`` (or ``py-<random>``).
    """

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        queues: list[str] | tuple[str, ...] = ("default",),
        concurrency: int = 8,
        *,
        id: str | None = None,
        login: str | None = None,
        nats_options: dict[str, Any] | None = None,
        register_interval: float = 10.0,
        resend_interval: float = 5.0,
        request_timeout: float = 5.0,
        shutdown_grace: float = 10.0,
        progress_every: float | None = None,
        max_result: int = 512 * 1024,
    ) -> None:
        if not 1 <= concurrency <= 10000:
            raise ValueError("concurrency must be 1..=10000")
        if not queues:
            raise ValueError("a worker serves at least one queue")
        self.url = url
        self.queues = list(queues)
        self.concurrency = concurrency
        self.login = login
        self.id = id or f"{login or 'py'}-{secrets.token_hex(4)}"
        self.session = secrets.token_hex(16)
        self.nats_options = dict(nats_options or {})
        self.register_interval = register_interval
        self.resend_interval = resend_interval
        self.request_timeout = request_timeout
        self.shutdown_grace = shutdown_grace
        self.progress_every = progress_every
        self.max_result = max_result
        self._handler: Handler | None = None
        self._nc: NATS | None = None
        self._epoch = 0
        self._registered = False
        self._running: dict[Key, _Running] = {}
        self._backlog: collections.deque[tuple[Assignment, float]] = collections.deque()
        self._pending: dict[Key, _Pending] = {}
        # Attempts that left, with the token they were held under: the epoch of the verdict
        # they left with (a later leader's grant of it runs again), or NEVER.
        self._left: collections.OrderedDict[tuple[Key, str], float] = collections.OrderedDict()
        self._flights: dict[int, _Flight] = {}
        self._next_flight = 0
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._draining_since: float | None = None
        self._abandoned = False
        self._next_register = 0.0
        self._poll_after = 0.0
        self._checking_lease = False
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- the public API -------------------------------------------------------------------

    def job(self, handler: Handler) -> Handler:
        """Decorator: ``handler(job)`` runs each job and returns its result bytes."""
        self._handler = handler
        return handler

    def run(self) -> None:
        """Runs until SIGTERM or SIGINT, then drains (see the module docstring)."""
        asyncio.run(self.serve(signals=True))

    def stop(self) -> None:
        """Asks the worker to drain and stop (what SIGTERM does)."""
        self._stopping.set()
        self._wake.set()

    async def serve(self, nc: NATS | None = None, *, signals: bool = False) -> None:
        """Runs on ``nc`` (or a connection of its own) until :meth:`stop`, then drains."""
        if self._handler is None:
            raise JetworkError("no handler: decorate one with @worker.job")
        own = nc is None
        self._nc = nc or await nats.connect(
            self.url, name=f"jetwork-worker {self.id}", **protocol.connect_options(self.nats_options)
        )
        if signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        subs = [
            await self._nc.subscribe(subjects.MASTER_ELECTED, cb=self._on_elected),
            await self._nc.subscribe(subjects.worker_notice("cancel", self.login, self.id), cb=self._on_cancel),
        ]
        try:
            await self._loop()
            await self._deregister()
        finally:
            for sub in subs:
                await sub.unsubscribe()
            for task in list(self._tasks):
                task.cancel()
            if own:
                await self._nc.drain()

    # -- the loop -------------------------------------------------------------------------

    async def _loop(self) -> None:
        next_progress = time.monotonic() + (self.progress_every or 0)
        while True:
            now = time.monotonic()
            if self._stopping.is_set() and self._draining_since is None:
                self._begin_drain(now)
            if self._draining_since is not None and self._drained(now):
                log.info("worker %s stopped", self.id)
                return
            if self.progress_every and now >= next_progress:
                for running in self._running.values():
                    running.progress_wanted = True
                next_progress = now + self.progress_every
            self._start_backlog(now)
            if now >= self._next_register and not self._flying("register"):
                self._send_register()
            self._maybe_report(now)
            self._maybe_poll(now)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=0.1)
            except asyncio.TimeoutError:
                pass

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _flying(self, kind: str) -> bool:
        return any(f.kind == kind and not f.released for f in self._flights.values())

    def _fly(self, flight: _Flight) -> int:
        self._next_flight += 1
        self._flights[self._next_flight] = flight
        return self._next_flight

    def _free(self) -> int:
        covered: set[Key] = set()
        asked = 0
        for f in self._flights.values():
            if not f.released:
                asked += f.slots
                covered |= f.covers
        uncovered = sum(1 for key in self._pending if key not in covered)
        return self.concurrency - len(self._running) - len(self._backlog) - uncovered - asked

    def _held(self) -> list[Key]:
        keys = set(self._running) | set(self._pending) | {(a.work_id, a.attempt) for a, _ in self._backlog}
        return sorted(keys)

    def _held_list(self) -> list[dict[str, Any]]:
        """Every attempt held, as `RegisterWorker.running`, `RequestWork.running` list it."""
        return [{"work_id": w, "attempt": a} for w, a in self._held()]

    # -- registration ---------------------------------------------------------------------

    def _send_register(self) -> None:
        interval = self.register_interval if self._registered else min(0.5, self.register_interval)
        self._next_register = time.monotonic() + interval
        msg = {
            "worker_id": self.id,
            "session": self.session,
            "queues": self.queues,
            "capacity": self.concurrency,
            "running": self._held_list(),
        }
        flight = self._fly(_Flight("register"))
        self._spawn(self._request(flight, subjects.MASTER_REGISTER, msg, self._on_registered))

    def _on_registered(self, flight: _Flight, reply: dict[str, Any]) -> None:
        if flight.released:
            return
        self._registered = True
        for held in reply.get("revoked") or []:
            self._revoke((str(held["work_id"]), int(held["attempt"])), "the master revoked it")

    # -- requests for work ----------------------------------------------------------------

    def _maybe_poll(self, now: float) -> None:
        if self._draining_since is not None or not self._registered or now < self._poll_after:
            return
        if self._flying("request"):
            return
        free = self._free()
        if free <= 0:
            return
        wait_ms = int(self.request_timeout * 1000 / 2)
        # What it holds: the master hands out again what it granted and this worker never got
        # (a reply lost on its way), instead of letting it wait for its deadline.
        msg = {"worker_id": self.id, "session": self.session, "slots": free, "wait_ms": wait_ms,
               "running": self._held_list()}
        flight = self._fly(_Flight("request", slots=free))
        self._spawn(self._request(flight, subjects.MASTER_REQUEST, msg, self._on_granted))

    def _on_granted(self, flight: _Flight, reply: dict[str, Any]) -> None:
        granted = reply.get("assignments") or []
        self._take(granted)
        if not granted and not flight.released:
            # Held open and empty: ask again, but never spin on a master answering at once.
            self._poll_after = time.monotonic() + 0.05

    def _take(self, granted: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        for raw in granted:
            a = Assignment.of(raw)
            key = (a.work_id, a.attempt)
            left = self._left.get((key, a.token))
            if left is not None and left >= self._epoch:
                # Never an attempt twice under one token, unless a later leader grants it again:
                # its predecessor's verdict on the outcome was never recorded.
                continue
            if self._regrant(key, a, now):
                continue
            if self._draining_since is not None:
                # Granted as the worker drains (a late grant): back to the master at once.
                self._pending[key] = _Pending(_shutting_down(a))
                continue
            self._backlog.append((a, now))
        self._start_backlog(now)

    def _regrant(self, key: Key, a: Assignment, now: float) -> bool:
        """Whether ``a`` is an attempt held here already. Under another token it is a new
        master's hand-out of what its predecessor granted (or accepted the outcome of) early
        and never recorded: from now on the attempt is held under the new token (a job runs
        on, an outcome goes again, a waiting one takes the new deadline)."""
        running = self._running.get(key)
        pending = self._pending.get(key)
        waiting = next((i for i, (b, _) in enumerate(self._backlog) if (b.work_id, b.attempt) == key), None)
        if running is not None:
            held = running.assignment.token
        elif pending is not None:
            held = pending.outcome["token"]
        elif waiting is not None:
            held = self._backlog[waiting][0].token
        else:
            return False
        if held == a.token:
            return True  # a copy
        log.info("%s@%s: handed out again under a new token (a new master that never recorded the first grant)", *key)
        if running is not None:
            running.assignment = a
        elif pending is not None:
            pending.outcome["token"], pending.sent = a.token, None
        elif waiting is not None:
            self._backlog[waiting] = (a, now)
        return True

    # -- running jobs ---------------------------------------------------------------------

    def _start_backlog(self, now: float) -> None:
        while self._backlog and len(self._running) < self.concurrency and self._draining_since is None:
            a, received = self._backlog.popleft()
            key = (a.work_id, a.attempt)
            if now > received + a.timeout_ms / 1000:
                log.warning("%s@%s: its time was up before it could start; not started", *key)
                self._forget(key, a.token)
                continue
            running = _Running(a)
            self._running[key] = running

            def wanted(running: _Running = running) -> None:
                running.progress_wanted = True
                running.progressed = True
                self._wake.set()

            job = Job(a.work_id, a.queue, a.attempt, a.payload, a.deadline_ms, a.timeout_ms, wanted)
            running.task = self._spawn(self._run(key, job))

    async def _run(self, key: Key, job: Job) -> None:
        assert self._handler is not None
        outcome: dict[str, Any]
        try:
            result = await self._handler(job)
            data = _as_bytes(result)
            if len(data) > self.max_result:
                raise JobFailed(f"result of {len(data)} bytes exceeds the limit of {self.max_result} bytes")
            outcome = {"status": "completed", "result": data, "reason": None}
        except asyncio.CancelledError:
            return  # revoked, cancelled or abandoned: nothing to report from here
        except NonRetryable as e:
            outcome = {"status": "failed", "result": b"", "reason": _reason(e.reason), "non_retryable": True}
        except JobFailed as e:
            outcome = {"status": "failed", "result": b"", "reason": _reason(e.reason)}
        except Exception as e:  # a handler's bug fails the attempt, never the worker
            outcome = {"status": "failed", "result": b"", "reason": _reason(f"{type(e).__name__}: {e}")}
        self._finish(key, outcome)

    def _finish(self, key: Key, outcome: dict[str, Any]) -> None:
        running = self._running.pop(key, None)
        if running is None:
            return
        a = running.assignment
        outcome.update(work_id=a.work_id, attempt=a.attempt, token=a.token)
        self._pending[key] = _Pending(outcome)
        self._wake.set()

    def _revoke(self, key: Key, why: str) -> None:
        running = self._running.pop(key, None)
        tokens = [] if running is None else [running.assignment.token]
        if running is not None and running.task is not None:
            log.info("%s@%s: stopped: %s", key[0], key[1], why)
            running.task.cancel()
        tokens += [a.token for a, _ in self._backlog if (a.work_id, a.attempt) == key]
        self._backlog = collections.deque((a, t) for a, t in self._backlog if (a.work_id, a.attempt) != key)
        pending = self._pending.get(key)
        if pending is not None:
            pending.revoked = True
        else:
            for token in tokens:
                self._forget(key, token)
        for left in [k for k in self._left if k[0] == key]:
            self._left[left] = NEVER  # revoked: not taken again, whichever leader grants it
        self._wake.set()

    def _forget(self, key: Key, token: str, verdict_epoch: float = NEVER) -> None:
        """Remembers an attempt that left under ``token``: with the epoch of its verdict, a
        later leader's grant of it runs again (that leader never recorded the verdict);
        revoked or dropped (``NEVER``), no grant of it under that token is taken again."""
        self._left[(key, token)] = verdict_epoch
        while len(self._left) > REMEMBERED:
            self._left.popitem(last=False)

    # -- reports --------------------------------------------------------------------------

    def _maybe_report(self, now: float) -> None:
        in_flight = self._flying("report")
        due = [k for k, p in self._pending.items() if p.sent is None or now - p.sent >= self.resend_interval]
        if in_flight:
            # One report at a time, except for outcomes unanswered for resend_interval.
            due = [k for k in due if self._pending[k].sent is not None]
        progress = [] if in_flight else [
            k for k, r in self._running.items() if r.progress_wanted and now - r.progress_sent >= PROGRESS_INTERVAL
        ]
        if not due and not progress:
            return
        outcomes: list[dict[str, Any]] = []
        carried: set[tuple[Key, str]] = set()
        size = 0
        for key in due:
            pending = self._pending[key]
            size += len(pending.outcome.get("result") or b"")
            if outcomes and size > self.max_result:
                break  # the rest goes in the next report
            outcomes.append(pending.outcome)
            pending.sent = now
            carried.add((key, pending.outcome["token"]))
        for key in progress:
            r = self._running[key]
            r.progress_wanted, r.progress_sent = False, now
            a = r.assignment
            outcomes.append({"work_id": a.work_id, "attempt": a.attempt, "token": a.token,
                             "status": "progress", "result": b"", "reason": None})
        covers = set() if self._draining_since is not None else {key for key, _ in carried}
        covered_elsewhere = set().union(*(f.covers for f in self._flights.values() if not f.released))
        covers -= covered_elsewhere
        msg = {"worker_id": self.id, "session": self.session, "outcomes": outcomes, "slots": len(covers)}
        if covers:
            msg["running"] = self._held_list()
        flight = self._fly(_Flight("report", slots=len(covers), covers=covers, carried=carried))
        self._spawn(self._request(flight, subjects.MASTER_REPORT, msg, self._on_reported))

    def _on_reported(self, flight: _Flight, reply: dict[str, Any]) -> None:
        for raw in reply.get("verdicts") or []:
            verdict = Verdict.of(raw)
            if verdict.work_id is None:
                log.warning("the master could not read an outcome: %s", verdict.reason)
                continue
            key = (verdict.work_id, verdict.attempt)
            if verdict.verdict == "rejected":
                log.warning("%s@%s: the master rejected the outcome: %s", key[0], key[1], verdict.reason)
            pending = self._pending.get(key)
            # Settled only under the token it was sent with: granted again under another
            # since, it still goes under that one.
            if pending is not None and (key, pending.outcome["token"]) in flight.carried:
                del self._pending[key]
                self._forget(key, pending.outcome["token"], NEVER if pending.revoked else self._epoch)
            elif verdict.verdict == "superseded" and key in self._running:
                self._revoke(key, "superseded: the master handed it out again")
        self._take(reply.get("assignments") or [])

    # -- the request plumbing -------------------------------------------------------------

    async def _request(
        self, flight_id: int, endpoint: str, msg: dict[str, Any],
        on_reply: Callable[[_Flight, dict[str, Any]], None],
    ) -> None:
        flight = self._flights[flight_id]
        epoch = self._epoch
        subject = subjects.worker_endpoint(endpoint, self.login, self.id)
        try:
            assert self._nc is not None
            body = await protocol.call(self._nc, subject, protocol.encode(msg), self.request_timeout)
            reply = protocol.decode(body)
            if not await self._believe(int(reply.get("epoch") or 0)):
                return  # a deposed master's, or one the lease does not name: nothing counts
            on_reply(flight, reply)
        except Refused as e:
            self._refused(flight, e)
        except NoMaster:
            if flight.kind == "request":
                self._poll_after = time.monotonic() + 0.25
        except (JetworkError, ValueError, KeyError, TypeError) as e:
            log.warning("%s: unreadable reply: %s", endpoint, e)
        except Exception as e:  # the connection may be closing: the timers retry
            log.debug("%s failed: %s (epoch %s)", endpoint, e, epoch)
        finally:
            self._flights.pop(flight_id, None)
            self._wake.set()

    def _refused(self, flight: _Flight, e: Refused) -> None:
        if e.code == 404:
            # The master does not know this worker (it forgot it, or a new one leads): register.
            self._registered = False
            self._next_register = 0.0
        elif e.code in (403, 409):
            self._registered = False
            log.warning("refused (%s); registering again in %s s", e, self.register_interval)
            self._next_register = time.monotonic() + self.register_interval
        else:
            log.warning("refused: %s", e)
            if flight.kind == "request":
                self._poll_after = time.monotonic() + 1.0

    # -- leaders --------------------------------------------------------------------------

    async def _believe(self, claimed: int) -> bool:
        """Whether a reply claiming epoch ``claimed`` counts: never one older than the epoch
        followed (a deposed master's), a newer one only once the lease names it."""
        if claimed < self._epoch:
            return False
        return claimed == self._epoch or await self._confirm(claimed)

    async def _confirm(self, claimed: int) -> bool:
        """Whether the lease names ``claimed``; adopts it if so. The lease is read a few times:
        a new leader writes its epoch into the value a moment after taking the key."""
        assert self._nc is not None
        for _ in range(10):
            if claimed <= self._epoch:
                return claimed == self._epoch
            named = await protocol.lease_epoch(self._nc, self.request_timeout)
            if named is not None and named > self._epoch:
                self._adopt(named)  # the lease is the truth, whatever was claimed
            if named is not None and named >= claimed:
                return named == claimed
            await asyncio.sleep(0.1)
        return False

    def _adopt(self, epoch: int) -> None:
        """A newer leader is confirmed: what was asked of the old one is asked of it."""
        if epoch <= self._epoch:
            return
        log.info("following the leader of epoch %s", epoch)
        self._epoch = epoch
        for f in self._flights.values():
            f.released = True
        for pending in self._pending.values():
            pending.sent = None
        for running in self._running.values():
            if running.progressed:
                running.progress_wanted, running.progress_sent = True, float("-inf")
        self._next_register = 0.0
        self._poll_after = 0.0
        self._wake.set()

    async def _on_elected(self, msg: Msg) -> None:
        try:
            epoch = int(protocol.decode(msg.data)["epoch"])
        except Exception:
            log.debug("ignoring an unreadable election announcement")
            return
        if epoch <= self._epoch or self._checking_lease:
            return
        self._checking_lease = True
        try:
            if not await self._confirm(epoch):
                log.warning("ignoring an announcement of epoch %s the lease does not confirm", epoch)
        finally:
            self._checking_lease = False

    async def _on_cancel(self, msg: Msg) -> None:
        try:
            revoke = protocol.decode(msg.data)
            epoch, key = int(revoke["epoch"]), (str(revoke["work_id"]), int(revoke["attempt"]))
        except Exception:
            return
        # Only from the leader followed, and only for an attempt running here.
        if epoch == self._epoch and (key in self._running or any((a.work_id, a.attempt) == key for a, _ in self._backlog)):
            self._revoke(key, "cancelled by an operator")

    # -- shutdown -------------------------------------------------------------------------

    def _begin_drain(self, now: float) -> None:
        log.info("worker %s draining: %d running", self.id, len(self._running))
        self._draining_since = now
        # Granted but not started: back to the master at once (failed, re-queued without wait).
        for a, _ in self._backlog:
            self._pending[(a.work_id, a.attempt)] = _Pending(_shutting_down(a))
        self._backlog.clear()
        for f in self._flights.values():
            if f.kind == "request":
                f.released = True
        if self._registered and self._nc is not None:
            # A request for no slots answers the open one with an empty grant.
            msg = {"worker_id": self.id, "session": self.session, "slots": 0, "wait_ms": 0}
            flight = self._fly(_Flight("withdraw"))
            self._spawn(self._request(flight, subjects.MASTER_REQUEST, msg, lambda f, r: self._take(r.get("assignments") or [])))

    def _drained(self, now: float) -> bool:
        since = self._draining_since
        assert since is not None
        if now >= since + self.shutdown_grace and not self._abandoned:
            self._abandoned = True
            abandoned = list(self._running.items())
            for key, running in abandoned:
                if running.task is not None:
                    running.task.cancel()
                self._finish(key, _shutting_down(running.assignment))
        if self._running or self._backlog:
            return False
        if not self._pending:
            return True
        return now >= since + self.shutdown_grace + self.resend_interval

    async def _deregister(self) -> None:
        """Releases the id: the master re-queues what it still counts as ours at once."""
        if self._nc is None or self._nc.is_closed:
            return
        msg = {"worker_id": self.id, "session": self.session}
        subject = subjects.worker_endpoint(subjects.MASTER_DEREGISTER, self.login, self.id)
        try:
            body = await protocol.call(self._nc, subject, protocol.encode(msg), self.request_timeout)
            log.info("deregistered (%s re-queued)", protocol.decode(body).get("requeued"))
        except Refused as e:
            log.info("deregistration: %s", e)
        except Exception as e:
            log.warning("could not deregister (%s): the master forgets this worker after its worker_timeout", e)


def _shutting_down(a: Assignment) -> dict[str, Any]:
    return {"work_id": a.work_id, "attempt": a.attempt, "token": a.token, "status": "failed",
            "result": b"", "reason": "the worker is shutting down"}


def _as_bytes(result: Result) -> bytes:
    if result is None:
        return b""
    if isinstance(result, str):
        return result.encode()
    if isinstance(result, (bytes, bytearray, memoryview)):
        return bytes(result)
    raise JobFailed(f"the handler returned {type(result).__name__}, not bytes")


def _reason(text: str) -> str:
    return text if len(text) <= MAX_REASON else "…" + text[-MAX_REASON:]
