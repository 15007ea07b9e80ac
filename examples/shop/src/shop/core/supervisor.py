"""Runs the app's workers: one asyncio task each, for their whole life.

Each task calls ``start`` (retried with backoff if it fails), then ``work`` in
a loop: every poll interval plus a random jitter, and at once when a message is
appended to the log. A failing ``work`` is logged and retried with capped
exponential backoff while the other workers go on. Shutdown signals every task,
calls every worker's ``stop`` and never waits longer than its timeout.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from .worker import Worker, WorkerAlreadyStarted, WorkerError, worker_name

if TYPE_CHECKING:
    from .app import App

logger = logging.getLogger(__name__)


class WorkerState(StrEnum):
    REGISTERED = "registered"
    STARTING = "starting"
    RUNNING = "running"
    FAILED = "failed"
    STOPPED = "stopped"
    STUCK = "stuck"


@dataclass(eq=False)
class WorkerHandle:
    """The supervisor's bookkeeping for one worker."""

    worker: Worker
    name: str
    poll_interval: float
    jitter: float
    state: WorkerState = WorkerState.REGISTERED
    task: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    wake_on_append: bool = True
    cycles: int = 0
    failures: int = 0
    last_error: str | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "class": type(self.worker).__name__,
            "state": self.state.value,
            "position": getattr(self.worker, "position", None),
            "poll_interval": self.poll_interval,
            "jitter": self.jitter,
            "cycles": self.cycles,
            "failures": self.failures,
            "last_error": self.last_error,
        }


class Supervisor:
    """Owns the worker tasks of one app."""

    def __init__(
        self,
        app: App,
        *,
        poll_interval: float = 1.0,
        jitter: float = 1.0,
        random: Callable[[], float] = random.random,
        backoff_base: float = 0.1,
        backoff_cap: float = 30.0,
    ) -> None:
        self.app = app
        self.poll_interval = poll_interval
        self.jitter = jitter
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._random = random
        self._handles: list[WorkerHandle] = []
        self._started = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._unsubscribe: list[Callable[[], None]] = []

    @property
    def handles(self) -> list[WorkerHandle]:
        return list(self._handles)

    @property
    def started(self) -> bool:
        return self._started

    def register(self, worker: Worker) -> None:
        name = worker_name(worker)
        if self._started:
            raise WorkerAlreadyStarted(name, "register workers before start_workers()")
        if not isinstance(worker, Worker):
            raise WorkerError(name, "needs async start(app), stop() and work() methods")
        if any(h.worker is worker or h.name == name for h in self._handles):
            raise WorkerError(name, "is already registered")
        poll = getattr(worker, "poll_interval", None)
        jitter = getattr(worker, "jitter", None)
        self._handles.append(
            WorkerHandle(
                worker,
                name,
                self.poll_interval if poll is None else poll,
                self.jitter if jitter is None else jitter,
                wake_on_append=getattr(worker, "wake_on_append", True),
            )
        )

    def delay(self, handle: WorkerHandle) -> float:
        """Seconds until the next cycle: the poll interval plus a random share of the jitter."""
        return handle.poll_interval + self._random() * handle.jitter

    def backoff(self, failures: int) -> float:
        """Capped exponential backoff after ``failures`` failures in a row."""
        return min(self.backoff_cap, self.backoff_base * 2 ** max(0, failures - 1))

    async def start(self) -> None:
        if self._started:
            raise WorkerAlreadyStarted("app", "workers are already started")
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        logs = {id(self.app.log): self.app.log}
        for handle in self._handles:
            own_log = getattr(handle.worker, "own_log", None)
            if own_log is not None:
                logs[id(own_log)] = own_log
        self._unsubscribe = [log.subscribe(self.wake_all) for log in logs.values()]
        for handle in self._handles:
            # Fresh events: after stop(), a second start must not see the old stop request.
            handle.wake, handle.stopping = asyncio.Event(), asyncio.Event()
            handle.task = asyncio.create_task(self._run(handle), name=f"worker:{handle.name}")
        logger.info("started %d worker(s)", len(self._handles))

    def wake_all(self) -> None:
        """Wake every worker now (called after each committed append, from any thread)."""
        if threading.get_ident() == self._loop_thread:
            for handle in self._handles:
                if handle.wake_on_append:
                    handle.wake.set()
        elif self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.wake_all)

    async def stop(self, timeout: float = 5.0) -> list[str]:
        """Stop every worker within ``timeout`` seconds; returns the names that did not finish."""
        if not self._started:
            return []
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        deadline = time.monotonic() + timeout
        shutdowns = {asyncio.create_task(self._shutdown(h, deadline)): h for h in self._handles}
        if not shutdowns:
            self._started = False
            return []
        _, pending = await asyncio.wait(shutdowns, timeout=timeout)
        for task in pending:
            task.cancel()
        # A shutdown can end at the deadline with the worker's own task still running
        # (it swallowed cancellation): that worker is stuck too.
        stuck = []
        for shutdown, handle in shutdowns.items():
            if shutdown in pending or (handle.task is not None and not handle.task.done()):
                handle.state = WorkerState.STUCK
                stuck.append(handle.name)
                logger.warning("worker %r did not stop within %.1fs", handle.name, timeout)
        self._started = False
        return stuck

    async def _shutdown(self, handle: WorkerHandle, deadline: float) -> None:
        """Let the current cycle end (half the time), cancel it if it does not, then call ``stop``."""
        handle.stopping.set()
        handle.wake.set()
        task = handle.task
        if task is not None and not task.done():
            grace = max(0.0, (deadline - time.monotonic()) / 2)
            done, _ = await asyncio.wait({task}, timeout=grace)
            if not done:
                task.cancel()
        try:
            await handle.worker.stop()
        except Exception as exc:
            handle.last_error = f"stop: {exc!r}"
            logger.exception("worker %r failed in stop()", handle.name)
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=max(0.0, deadline - time.monotonic()))
        if task is None or task.done():
            handle.state = WorkerState.STOPPED
            logger.info("worker %r stopped", handle.name)

    async def _run(self, handle: WorkerHandle) -> None:
        if not await self._start_worker(handle):
            return
        handle.state = WorkerState.RUNNING
        failures = 0
        while not handle.stopping.is_set():
            handle.wake.clear()
            try:
                await handle.worker.work()
            except Exception as exc:  # noqa: BLE001 - isolate the failure, back off, retry
                failures += 1
                self._record_failure(handle, "work", exc)
                if await _wait(handle.stopping, self.backoff(failures)):
                    return
                continue
            handle.cycles += 1
            if failures:
                failures = 0
                handle.state = WorkerState.RUNNING
            if await _wait(handle.wake, self.delay(handle)) and handle.stopping.is_set():
                return

    async def _start_worker(self, handle: WorkerHandle) -> bool:
        """Call ``start`` until it succeeds (with backoff) or the app stops; True on success."""
        attempt = 0
        while not handle.stopping.is_set():
            handle.state = WorkerState.STARTING
            try:
                await handle.worker.start(self.app)
                return True
            except Exception as exc:  # noqa: BLE001 - report as failed, retry with backoff
                attempt += 1
                self._record_failure(handle, "start", exc)
                if await _wait(handle.stopping, self.backoff(attempt)):
                    return False
        return False

    def _record_failure(self, handle: WorkerHandle, phase: str, exc: Exception) -> None:
        handle.state = WorkerState.FAILED
        handle.failures += 1
        handle.last_error = f"{phase}: {exc!r}"
        logger.error("worker %r failed in %s(): %r", handle.name, phase, exc, exc_info=exc)


async def _wait(event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` up to ``timeout`` seconds; True if it was set."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
