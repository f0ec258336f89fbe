"""``Job``: one attempt of a job, as a handler sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Job:
    """One attempt of a job, as the handler sees it."""

    id: str
    queue: str
    attempt: int
    payload: bytes
    #: When the master re-queues this attempt without a result or progress (Unix ms, its clock).
    deadline_ms: int
    #: The same as a duration from when the master handed it out.
    timeout_ms: int
    _progress: Callable[[], None] = field(repr=False, default=lambda: None)

    def progress(self) -> None:
        """Still working: extends the deadline (sent at most once a second)."""
        self._progress()
