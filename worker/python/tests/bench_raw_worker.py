"""The raw JetStream consumer a Python user would write (`jetwork-bench --phases python`): the
benchmark baseline's protocol (tests/src/bin/jetwork-bench/baseline.rs) in nats-py. It pulls
jobs from the ``workers`` consumer of ``BENCH_JOBS``, runs the benchmark job, publishes the
result to ``bench.results.<seq>`` waiting for its acknowledgement, and only then acks the job;
at most ``--concurrency`` jobs at once.

    python bench_raw_worker.py --id ID --concurrency N
"""
import argparse
import asyncio
import os
import time

import nats
from nats.errors import TimeoutError as NatsTimeout

parser = argparse.ArgumentParser()
parser.add_argument("--id", required=True)
parser.add_argument("--concurrency", type=int, required=True)
args = parser.parse_args()


async def main():
    nc = await nats.connect(os.environ["NATS_URL"], name=args.id)
    js = nc.jetstream()
    sub = await js.pull_subscribe_bind("workers", stream="BENCH_JOBS")
    free = asyncio.Semaphore(args.concurrency)

    async def run(msg):
        try:
            result = f"{int(msg.data)} {time.time_ns()}".encode()
            await js.publish(f"bench.results.{msg.metadata.sequence.stream}", result)
            await msg.ack()
        finally:
            free.release()

    while True:
        await free.acquire()
        want = 1
        while want < args.concurrency and not free.locked():
            await free.acquire()
            want += 1
        try:
            msgs = await sub.fetch(batch=want, timeout=5)
        except NatsTimeout:
            msgs = []
        for msg in msgs:
            asyncio.ensure_future(run(msg))
        for _ in range(want - len(msgs)):
            free.release()


asyncio.run(main())
