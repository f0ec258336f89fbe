"""The exceptions the library raises, and the ones a job handler raises to fail an attempt."""

from __future__ import annotations


class JetworkError(Exception):
    """Base of every error this library raises."""


class Refused(JetworkError):
    """The master refused a request (a NATS micro-service error reply)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


class NoMaster(JetworkError):
    """No master is leading right now (no responders, or the request timed out)."""


class NotStored(JetworkError):
    """A submission was not stored (JetStream refused it, or the streams do not exist)."""


class JobFailed(Exception):
    """Raise from a handler to fail the attempt with ``reason``; the master retries it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NonRetryable(JobFailed):
    """Raise from a handler when retrying cannot help: the job fails for good at once."""
