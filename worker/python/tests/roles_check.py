"""The library with the shipped ``nats.conf``'s roles, given only users and passwords (the
inbox prefix defaults from the user): a ``worker-1`` worker runs the job a ``client`` submits
and waits for. Prints ``roles ok: <result>``.

    python roles_check.py          # NATS_URL: a server running the shipped nats.conf, a master
"""
import asyncio
import os

from jetwork import Client, Worker


async def main() -> None:
    url = os.environ["NATS_URL"]
    worker = Worker(url, queues=["default"], concurrency=2, login="worker-1",
                    nats_options={"user": "worker-1", "password": "worker-1-local"})

    @worker.job
    async def handle(job):
        return b"python ran " + job.payload

    serving = asyncio.ensure_future(worker.serve())
    client = await Client.connect(url, user="client", password="client-local")
    submitted = await client.submit("default", b"7")
    result = await client.result(submitted.id, wait=60)
    assert result is not None and result.payload == b"python ran 7", result
    print("roles ok:", result.payload.decode(), flush=True)
    worker.stop()
    await serving
    await client.close()


asyncio.run(main())
