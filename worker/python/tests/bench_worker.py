"""The benchmark's job on the Python library (`jetwork-bench --phases python`): answers with
the submit time it was given and the time it started (``"<submit_ns> <start_ns>"``), as the
Rust benchmark worker does.

    python bench_worker.py --id ID --concurrency N
"""
import argparse
import os
import time

from jetwork import Worker

parser = argparse.ArgumentParser()
parser.add_argument("--id", required=True)
parser.add_argument("--concurrency", type=int, required=True)
args = parser.parse_args()

worker = Worker(os.environ["NATS_URL"], queues=["bench"], concurrency=args.concurrency, id=args.id)


@worker.job
async def handle(job):
    return f"{int(job.payload)} {time.time_ns()}"


worker.run()
