"""A plain NATS service that jetwork-worker --forward jetwork.svc.square turns into a worker."""
import asyncio, os, nats


async def main():
    nc = await nats.connect(os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))

    async def square(msg):
        n = int(msg.data)
        await msg.respond(f"{n} * {n} = {n * n}".encode())

    await nc.subscribe("jetwork.svc.square", queue="square", cb=square)
    await asyncio.Event().wait()

asyncio.run(main())
