"""The smallest correct jetwork worker: squares the number each job carries."""
import os

from jetwork import Worker

worker = Worker(os.environ.get("NATS_URL", "nats://127.0.0.1:4222"), queues=["default"], concurrency=8)


@worker.job
async def handle(job):
    n = int(job.payload)
    return f"{n} * {n} = {n * n}"


worker.run()
