"""The Python library as `jetwork-conformance` tests it, correct or broken on purpose.

    python conformance_worker.py [--break MODE] [--concurrency N]

Its handler keeps the kit's contract: the payload is ``<seconds> <tag>``; it waits that long
and returns the payload. ``--break MODE`` patches the library to break one protocol rule, so
``tests/tests/conformance.rs`` can show that the kit's case about that rule fails:

- ``wrong-token``: outcomes carry a made-up token;
- ``no-resend``: an outcome whose verdict was lost is never sent again;
- ``resends-unless-accepted``: only ``accepted`` ends the re-sends;
- ``ignores-superseded``: a ``superseded`` verdict on progress does not stop the attempt;
- ``ignores-revokes``: revokes are dropped;
- ``revokes-from-any-epoch``: a revoke of any epoch stops the attempt;
- ``takes-stale-replies``: replies from older epochs count;
- ``trusts-claimed-epochs``: a reply's newer epoch is followed without reading the lease;
- ``trusts-announcements``: an announced epoch is followed without reading the lease;
- ``ignores-elections``: announcements are dropped (the next reply still moves it on);
- ``ignores-404``: "unknown worker" does not make it register again;
- ``over-asks``: asks for slots without counting what it holds;
- ``no-deregister``: stops without deregistering.
"""

import argparse
import asyncio
import logging
import os
import sys

from jetwork import Worker
from jetwork import worker as lib

parser = argparse.ArgumentParser()
parser.add_argument("--break", dest="broken", default=None)
parser.add_argument("--concurrency", type=int, default=3)
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

W = lib.Worker


def wrap(name, before=None, after=None):
    original = getattr(W, name)

    def patched(self, *a):
        if before:
            a = before(self, *a)
        result = original(self, *a)
        if after:
            after(self, *a)
        return result

    setattr(W, name, patched)


async def _nothing(self, *a):
    return None


def _verdicts_only(kinds):
    def before(self, flight, reply):
        reply = dict(reply)
        reply["verdicts"] = [v for v in reply.get("verdicts") or [] if v.get("verdict") in kinds]
        return (flight, reply)
    return before


def _superseded_as_accepted(self, flight, reply):
    reply = dict(reply)
    reply["verdicts"] = [dict(v, verdict="accepted") if v.get("verdict") == "superseded" else v
                         for v in reply.get("verdicts") or []]
    return (flight, reply)


async def _revoke_any(self, msg):
    revoke = lib.protocol.decode(msg.data)
    self._revoke((str(revoke["work_id"]), int(revoke["attempt"])), "revoked (any epoch)")


original_believe = W._believe


async def _takes_stale(self, claimed):
    return claimed <= self._epoch or await original_believe(self, claimed)


async def _trusts_claims(self, claimed):
    if claimed > self._epoch:
        self._adopt(claimed)
    return claimed >= self._epoch


async def _trusts_announcements(self, msg):
    self._adopt(int(lib.protocol.decode(msg.data)["epoch"]))


original_refused = W._refused


def _ignores_404(self, flight, e):
    if e.code != 404:
        original_refused(self, flight, e)


def _over_asks(self):
    return self.concurrency - len(self._running)


def _one_grant_per_attempt(self, granted):
    held = {key for key, _ in self._left} | set(self._running) | set(self._pending)
    return ([g for g in granted if (str(g["work_id"]), int(g["attempt"])) not in held],)


breakages = {
    "wrong-token": lambda: wrap("_finish", after=lambda self, key, outcome: self._pending[key].outcome.update(token="0" * 32)),
    "no-resend": lambda: setattr(W, "resend_interval", property(lambda self: 3600.0, lambda self, v: None)),
    "resends-unless-accepted": lambda: wrap("_on_reported", before=_verdicts_only({"accepted"})),
    "ignores-superseded": lambda: wrap("_on_reported", before=_superseded_as_accepted),
    "ignores-revokes": lambda: setattr(W, "_on_cancel", _nothing),
    "revokes-from-any-epoch": lambda: setattr(W, "_on_cancel", _revoke_any),
    "takes-stale-replies": lambda: setattr(W, "_believe", _takes_stale),
    "trusts-claimed-epochs": lambda: setattr(W, "_believe", _trusts_claims),
    "trusts-announcements": lambda: setattr(W, "_on_elected", _trusts_announcements),
    "ignores-elections": lambda: setattr(W, "_on_elected", _nothing),
    "ignores-404": lambda: setattr(W, "_refused", _ignores_404),
    "over-asks": lambda: setattr(W, "_free", _over_asks),
    "one-grant-per-attempt": lambda: wrap("_take", before=_one_grant_per_attempt),
    "no-deregister": lambda: setattr(W, "_deregister", _nothing),
}
if args.broken is not None:
    breakages[args.broken]()

worker = Worker(os.environ["NATS_URL"], queues=["conformance"], concurrency=args.concurrency,
                resend_interval=1.0, progress_every=1.0)


@worker.job
async def handle(job):
    seconds, _, _ = job.payload.partition(b" ")
    await asyncio.sleep(float(seconds))
    return job.payload


worker.run()
