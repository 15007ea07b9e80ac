"""Rebuilding a worker's own state before a start (``projections rebuild worker:NAME``).

A worker rebuilds its tables itself when it starts and finds them built by other code;
on a big log that takes minutes of the serving process. Done beforehand, from the command
line, the start has nothing to redo. The rebuild holds the worker's lease all along, so no
served process runs the worker (and writes its tables) meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from .projections import Progress
from .worker import CommandWorker

if TYPE_CHECKING:
    from .app import App

LEASE_SECONDS = 30.0  # renewed every third of it; a crashed rebuild frees the worker this long after


class WorkerRunning(RuntimeError):
    """Another process runs the worker, so its tables cannot be rebuilt here."""


def worker_states(app: App) -> dict[str, CommandWorker]:
    """The registered workers that keep tables of their own, by their state's name (``worker:NAME``)."""
    workers = (handle.worker for handle in app.supervisor.handles)
    return {worker.state_name: worker for worker in workers if isinstance(worker, CommandWorker) and worker.tables}


def rebuild_worker_state(app: App, worker: CommandWorker, progress: Progress) -> int:
    """Rebuild ``worker``'s tables up to its stored position, holding its lease; the messages read."""
    if not app.log.acquire_lease(worker.name, LEASE_SECONDS):
        raise WorkerRunning(
            f"worker {worker.name!r} runs in a served process now: it rebuilds its own state when it "
            "starts; stop the app to rebuild it here"
        )
    renewed = time.monotonic()

    def report(done: int, total: int) -> None:
        nonlocal renewed
        if time.monotonic() - renewed >= LEASE_SECONDS / 3:
            if not app.log.acquire_lease(worker.name, LEASE_SECONDS):
                raise WorkerRunning(f"worker {worker.name!r}: another process took its lease during the rebuild")
            renewed = time.monotonic()
        progress(done, total)

    try:
        return asyncio.run(worker.rebuild_state(app, report))
    finally:
        app.log.release_lease(worker.name)
