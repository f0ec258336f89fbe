"""A Python worker for the integration tests (tests/tests/python_workers.rs): squares numbers
like the Rust test workers (``n * n = n²``), with the fast test timings, and can misbehave on
cue. Prints ``took <id>@<attempt>`` as it starts each job, so a test can tell when it is mid-job.

    python scenario_worker.py --id ID [--queue Q] [--concurrency N] [--fail-on K] [--die-on K]
                              [--sleep-ms MS]

``--fail-on K``: its K-th job raises. ``--die-on K``: on its K-th job the process kills itself
(``SIGKILL``, no drain, no deregistration) mid-job.
"""

import argparse
import asyncio
import logging
import os
import signal
import sys

from jetwork import Worker

parser = argparse.ArgumentParser()
parser.add_argument("--id", required=True)
parser.add_argument("--queue", default="default")
parser.add_argument("--concurrency", type=int, default=4)
parser.add_argument("--fail-on", type=int, default=0)
parser.add_argument("--die-on", type=int, default=0)
parser.add_argument("--sleep-ms", type=int, default=0)
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

worker = Worker(
    os.environ["NATS_URL"],
    queues=[args.queue],
    concurrency=args.concurrency,
    id=args.id,
    register_interval=0.5,
    resend_interval=0.5,
    request_timeout=2.0,
    shutdown_grace=2.0,
)
taken = 0


@worker.job
async def handle(job):
    global taken
    taken += 1
    print(f"took {job.id}@{job.attempt} ({taken})", flush=True)
    if taken == args.fail_on:
        raise RuntimeError("flaky executor crashed")
    if taken == args.die_on:
        await asyncio.sleep(0.2)  # mid-job
        os.kill(os.getpid(), signal.SIGKILL)
    if args.sleep_ms:
        await asyncio.sleep(args.sleep_ms / 1000)
    n = int(job.payload)
    return f"{n} * {n} = {n * n}"


worker.run()
