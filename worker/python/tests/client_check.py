"""Exercises the client against a running master and worker (tests/tests/python_workers.rs):
submit (options, duplicates), result (waiting, and stored), job, jobs, pause/resume, cancel,
retry, an expiring job on a queue nobody serves. Prints ``client check passed`` at the end;
any failed check raises.
"""

import asyncio
import os

from jetwork import Client, Refused


async def main() -> None:
    client = await Client.connect(os.environ["NATS_URL"])
    queue = "default"

    # A delayed job: it cannot finish before its delay, so the wait below is listening by then.
    first = await client.submit(queue, b"6", id="py-client-1", delay="3s", priority=4)
    assert not first.duplicate and first.seq > 0, first
    again = await client.submit(queue, b"6", id="py-client-1")
    assert again.duplicate and again.seq == first.seq, again
    done = await client.result("py-client-1", queue=queue, wait=60)
    assert done is not None and done.ok, done
    assert done.payload == b"6 * 6 = 36" and done.attempt == 1, done
    info = await client.job("py-client-1")
    assert info["state"] == "completed" and info["history"][0]["outcome"] == "completed", info

    # Paused, a job waits; cancelled, it ends cancelled; retried, it runs again once resumed.
    await client.pause(queue)
    await client.submit(queue, b"7", id="py-client-2")
    for _ in range(300):
        listed = [j["work_id"] for j in await client.jobs(queue=queue, state="ready")]
        if "py-client-2" in listed:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("py-client-2 never listed as ready")
    await client.cancel("py-client-2", reason="changed my mind")
    cancelled = await client.job("py-client-2")
    assert cancelled["state"] == "cancelled" and "changed my mind" in cancelled["reason"], cancelled
    try:
        await client.cancel("py-client-2")
        raise AssertionError("a finished job cannot be cancelled again")
    except Refused as e:
        assert e.code == 409, e
    await client.resume(queue)
    await client.retry("py-client-2")
    for _ in range(600):
        if (await client.job("py-client-2"))["state"] == "completed":
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the retried job never completed")
    # An expiring job on a queue no worker serves: announced, so the master knows it at
    # once (ready) and expires it on time.
    await client.submit("nobody-serves", b"1", id="py-expiring", expires="2s")
    for _ in range(300):
        try:
            if (await client.job("py-expiring"))["state"] == "ready":
                break
        except Refused:
            pass
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("py-expiring never seen ready on a queue nobody serves")
    expired = await client.result("py-expiring", queue="nobody-serves", wait=30)
    assert expired is not None and expired.status == "cancelled", expired
    assert (expired.reason or "").startswith("expired:"), expired
    try:
        await client.job("never-submitted")
        raise AssertionError("an unknown job is not found")
    except Refused as e:
        assert e.code == 404, e
    await client.close()
    print("client check passed", flush=True)


asyncio.run(main())
