"""Workers that misbehave on shutdown, for the shutdown-bound test.

``RELIABILITY_MARKERS`` is a folder where each worker leaves a file when it
reaches a step, so the test can see which ``stop`` methods ran.
``RELIABILITY_STALLS`` picks the misbehaving workers (comma-separated kinds).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from ..core import App


def mark(step: str) -> None:
    (Path(os.environ["RELIABILITY_MARKERS"]) / step).touch()


class HangsInWork:
    """Its first cycle awaits forever."""

    name = "hangs-in-work"
    poll_interval = 0.05
    jitter = 0.0

    async def start(self, app: App) -> None:
        pass

    async def work(self) -> None:
        mark("hangs-in-work.working")
        await asyncio.Event().wait()

    async def stop(self) -> None:
        mark("hangs-in-work.stopped")


class HangsInStop:
    """Works fine, but its ``stop`` never returns."""

    name = "hangs-in-stop"
    poll_interval = 0.05
    jitter = 0.0

    async def start(self, app: App) -> None:
        pass

    async def work(self) -> None:
        mark("hangs-in-stop.working")

    async def stop(self) -> None:
        mark("hangs-in-stop.stopping")
        await asyncio.Event().wait()


class IgnoresCancellation:
    """Swallows every cancellation while it works: only process exit ends it."""

    name = "ignores-cancellation"
    poll_interval = 0.05
    jitter = 0.0

    async def start(self, app: App) -> None:
        pass

    async def work(self) -> None:
        mark("ignores-cancellation.working")
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue

    async def stop(self) -> None:
        mark("ignores-cancellation.stopped")


class BlocksInThread:
    """Waits on blocking code in a thread (a sync client without a timeout)."""

    name = "blocks-in-thread"
    poll_interval = 0.05
    jitter = 0.0

    async def start(self, app: App) -> None:
        pass

    async def work(self) -> None:
        mark("blocks-in-thread.working")
        await asyncio.to_thread(time.sleep, 3600)

    async def stop(self) -> None:
        mark("blocks-in-thread.stopped")


class Healthy:
    """A well-behaved neighbour: its ``stop`` must run whatever the others do."""

    name = "healthy"
    poll_interval = 0.05
    jitter = 0.0

    async def start(self, app: App) -> None:
        pass

    async def work(self) -> None:
        mark("healthy.working")

    async def stop(self) -> None:
        mark("healthy.stopped")


KINDS = {
    "work": HangsInWork,
    "stop": HangsInStop,
    "cancellation": IgnoresCancellation,
    "thread": BlocksInThread,
}


def register(app: App) -> None:
    app.add_feature("stalls")
    for kind in filter(None, os.environ.get("RELIABILITY_STALLS", "work,stop").split(",")):
        app.register_worker(KINDS[kind]())
    app.register_worker(Healthy())
