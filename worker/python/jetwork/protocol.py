"""The worker <-> master messages (MessagePack maps keyed by field name) and the lease read.

Decoding is by key: unknown keys are ignored and missing optional ones take their defaults, as
``docs/protocol.md`` requires. Every ``bytes`` field is sent as MessagePack ``bin`` (never nil),
every optional string as a string or nil.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgpack  # type: ignore[import-untyped]
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError, TimeoutError as NatsTimeout

from . import subjects
from .errors import NoMaster, Refused


def encode(message: dict[str, Any]) -> bytes:
    packed: bytes = msgpack.packb(message, use_bin_type=True)
    return packed


def decode(data: bytes) -> dict[str, Any]:
    value = msgpack.unpackb(data, raw=False)
    if not isinstance(value, dict):
        raise ValueError("expected a MessagePack map")
    return value


@dataclass(frozen=True)
class Assignment:
    work_id: str
    queue: str
    attempt: int
    deadline_ms: int
    timeout_ms: int
    payload: bytes
    token: str

    @staticmethod
    def of(m: dict[str, Any]) -> Assignment:
        return Assignment(
            work_id=str(m["work_id"]),
            queue=str(m["queue"]),
            attempt=int(m["attempt"]),
            deadline_ms=int(m["deadline_ms"]),
            timeout_ms=int(m["timeout_ms"]),
            payload=bytes(m.get("payload") or b""),
            token=str(m["token"]),
        )


@dataclass(frozen=True)
class Verdict:
    work_id: str | None
    attempt: int
    verdict: str  # accepted | finished | superseded | rejected: all mean "stop re-sending"
    reason: str | None

    @staticmethod
    def of(m: dict[str, Any]) -> Verdict:
        return Verdict(m.get("work_id"), int(m.get("attempt") or 0), str(m["verdict"]), m.get("reason"))


def service_error(headers: dict[str, str] | None) -> Refused | None:
    """The NATS micro-service error a reply carries, if any."""
    if not headers or "Nats-Service-Error" not in headers:
        return None
    code = headers.get("Nats-Service-Error-Code", "0")
    return Refused(int(code) if code.isdigit() else 0, headers["Nats-Service-Error"])


async def call(nc: NATS, subject: str, body: bytes, timeout: float) -> bytes:
    """One request to a master endpoint: the reply's body, or the error it stands for."""
    try:
        reply = await nc.request(subject, body, timeout=timeout)
    except NoRespondersError as e:
        raise NoMaster("no master is serving") from e
    except NatsTimeout as e:
        raise NoMaster(f"no reply within {timeout} s") from e
    refused = service_error(reply.headers)
    if refused is not None:
        raise refused
    return reply.data


async def lease_epoch(nc: NATS, timeout: float) -> int | None:
    """The epoch the lease names now (None: nobody leads, or it cannot be read).

    The value is JSON ``{"holder": ..., "epoch": N}``; ``epoch`` is 0 for the moment between a
    master taking the key and writing its revision into it. A delete or purge marker (or no
    message) means nobody leads.
    """
    try:
        reply = await nc.request(subjects.LEASE_READ, b"", timeout=timeout)
    except (NoRespondersError, NatsTimeout):
        return None
    headers = reply.headers or {}
    if headers.get("Status") or headers.get("KV-Operation") in ("DEL", "PURGE"):
        return None
    try:
        return int(json.loads(reply.data)["epoch"])
    except (ValueError, KeyError, TypeError):
        return None


def connect_options(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` for ``nats.connect``, with the inbox prefix defaulting to ``_INBOX_<user>``
    when a user name is given: the only inbox the shipped ``nats.conf`` lets a user read (as
    the Rust binaries do). With nkeys or credentials, which name no user, set it yourself."""
    options = dict(options)
    user = options.get("user")
    if user and "inbox_prefix" not in options:
        options["inbox_prefix"] = f"_INBOX_{user}"
    return options
