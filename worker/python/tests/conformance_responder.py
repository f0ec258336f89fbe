"""The NATS service behind `jetwork-worker --forward jetwork.svc.conformance` when
`jetwork-conformance` tests forwarding: keeps the kit's handler contract (the payload is
``<seconds> <tag>``; wait that long, answer with the payload), sending progress on the
``Jetwork-Progress`` subject every second while it waits."""
import asyncio
import os

import nats


async def main():
    nc = await nats.connect(os.environ["NATS_URL"])
    loop = asyncio.get_running_loop()

    async def handle(msg):
        progress = (msg.headers or {}).get("Jetwork-Progress")
        end = loop.time() + float(msg.data.split(b" ")[0])
        while (left := end - loop.time()) > 0:
            await asyncio.sleep(min(1.0, left))
            if progress and end > loop.time():
                await nc.publish(progress, b"")
        await msg.respond(msg.data)

    async def each(msg):  # one task per job: a callback runs its messages one at a time
        asyncio.ensure_future(handle(msg))

    await nc.subscribe("jetwork.svc.conformance", queue="conformance", cb=each)
    await asyncio.Event().wait()


asyncio.run(main())
