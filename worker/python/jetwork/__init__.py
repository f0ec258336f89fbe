"""jetwork for Python: a worker library and a client for the jetwork work-dispatch system.

    from jetwork import Worker

    worker = Worker("nats://127.0.0.1:4222", queues=["default"], concurrency=8)

    @worker.job
    async def handle(job):
        return job.payload.upper()

    worker.run()
"""

from .client import Client, JobResult, Submitted
from .errors import JetworkError, JobFailed, NoMaster, NonRetryable, NotStored, Refused
from .job import Job
from .worker import Worker

__all__ = [
    "Client",
    "JetworkError",
    "Job",
    "JobFailed",
    "JobResult",
    "NoMaster",
    "NonRetryable",
    "NotStored",
    "Refused",
    "Submitted",
    "Worker",
]
