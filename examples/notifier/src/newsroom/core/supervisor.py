"""Runs the app's background tasks: following the log, and one task per worker for its whole life.

Each worker task first takes the worker's lease in the log, so that among the
processes serving one log (``serve --processes N``, or several machines on
PostgreSQL) exactly one runs it; the others stand by and take over when the
lease expires (its holder died) or is released (its holder stopped). The lease
is renewed every third of its lifetime; a worker whose lease was lost is stopped
and goes back to standing by, and the log refuses its position (the fence).

Once leased, the task calls ``start`` (retried with backoff if it fails), then
``work`` in a loop: every poll interval plus a random jitter, and at once when a
message is appended to the log, by this process or another. Under a stream of
appends (a worker whose ``busy`` says its last cycle had many messages) cycles
start at most every ``busy_interval``: the messages gather into larger batches,
and the worker's fixed cost per cycle (its reads and its commit, each a round
trip on PostgreSQL, all on the event loop that serves requests) is paid a few
times a second instead of once per append. A failing ``work`` is logged and
retried with capped exponential backoff while the other workers go on. Shutdown
signals every task, calls every worker's ``stop``, releases the leases and never
waits longer than its timeout.
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

from .log import DEFAULT_LEASE_SECONDS, LeaseLost, LogUnreachable
from .worker import Worker, WorkerAlreadyStarted, WorkerError, worker_name

if TYPE_CHECKING:
    from .app import App

logger = logging.getLogger(__name__)


class WorkerState(StrEnum):
    REGISTERED = "registered"
    STANDBY = "standby"  # another process holds the worker's lease
    STARTING = "starting"
    RUNNING = "running"
    FAILED = "failed"
    STOPPED = "stopped"
    STUCK = "stuck"


# The states of a worker this process runs (as opposed to standing by, or not started).
ACTIVE_STATES = frozenset({WorkerState.STARTING, WorkerState.RUNNING, WorkerState.FAILED, WorkerState.STUCK})


@dataclass(eq=False)
class WorkerHandle:
    """The supervisor's bookkeeping for one worker."""

    worker: Worker
    name: str
    poll_interval: float
    jitter: float
    busy_interval: float
    state: WorkerState = WorkerState.REGISTERED
    task: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    lease_lost: asyncio.Event = field(default_factory=asyncio.Event)
    wake_on_append: bool = True
    cycles: int = 0
    failures: int = 0
    last_error: str | None = None
    waiting_for_database: bool = False  # said once per outage (the log's own outage line says more)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "class": type(self.worker).__name__,
            "state": self.state.value,
            "position": getattr(self.worker, "position", None),
            "rebuilding": getattr(self.worker, "rebuilding", None),  # (done, total) while its state rebuilds
            "poll_interval": self.poll_interval,
            "jitter": self.jitter,
            "cycles": self.cycles,
            "failures": self.failures,
            "last_error": self.last_error,
            # A job `petrock migrate jobs` hosts as it was written (core/hosted.py): where it came from.
            "hosted": getattr(self.worker, "hosted", None),
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
        unreachable_backoff_cap: float = 2.0,
        lease_ttl: float = DEFAULT_LEASE_SECONDS,
        busy_interval: float = 0.05,
    ) -> None:
        self.app = app
        self.lease_ttl = lease_ttl
        self.poll_interval = poll_interval
        self.jitter = jitter
        self.busy_interval = busy_interval
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.unreachable_backoff_cap = unreachable_backoff_cap
        self._random = random
        self._handles: list[WorkerHandle] = []
        self._started = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self._wake_scheduled = False
        self._following: asyncio.Task[None] | None = None

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
        busy = getattr(worker, "busy_interval", None)
        self._handles.append(
            WorkerHandle(
                worker,
                name,
                self.poll_interval if poll is None else poll,
                self.jitter if jitter is None else jitter,
                self.busy_interval if busy is None else busy,
                wake_on_append=getattr(worker, "wake_on_append", True),
            )
        )

    def delay(self, handle: WorkerHandle) -> float:
        """Seconds until the next cycle: the poll interval plus a random share of the jitter."""
        return handle.poll_interval + self._random() * handle.jitter

    def backoff(self, failures: int, error: BaseException | None = None) -> float:
        """Capped exponential backoff after ``failures`` failures in a row.

        While the database is away (``LogUnreachable``) it is at most ``unreachable_backoff_cap``:
        trying again costs a connection attempt, and the worker (and ``/healthz``, which counts a
        failed worker) is back within seconds of the database, not up to ``backoff_cap`` later.
        """
        delay = min(self.backoff_cap, self.backoff_base * 2 ** max(0, failures - 1))
        return min(delay, self.unreachable_backoff_cap) if isinstance(error, LogUnreachable) else delay

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
        # Learn of what other processes append: state stays current, workers wake.
        self._following = asyncio.create_task(self.app.log.follow(), name="follow-log")
        for handle in self._handles:
            # Fresh events: after stop(), a second start must not see the old stop request.
            handle.wake, handle.stopping, handle.lease_lost = asyncio.Event(), asyncio.Event(), asyncio.Event()
            handle.task = asyncio.create_task(self._run(handle), name=f"worker:{handle.name}")
        logger.info("started %d worker(s)", len(self._handles))

    def wake_all(self) -> None:
        """Wake every worker now (called after each committed append, from any thread).

        Wake-ups coalesce: many appends before a worker runs give it one cycle, and
        appends from other threads schedule at most one wake-up on the loop at a time.
        """
        if threading.get_ident() == self._loop_thread:
            self._wake_scheduled = False
            for handle in self._handles:
                if handle.wake_on_append:
                    handle.wake.set()
        elif self._loop is not None and not self._loop.is_closed() and not self._wake_scheduled:
            self._wake_scheduled = True
            self._loop.call_soon_threadsafe(self.wake_all)

    async def stop(self, timeout: float = 5.0) -> list[str]:
        """Stop every worker within ``timeout`` seconds; returns the names that did not finish."""
        if not self._started:
            return []
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        if self._following is not None:
            self._following.cancel()
            await asyncio.gather(self._following, return_exceptions=True)
            self._following = None
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
        await self._stop_worker(handle)
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=max(0.0, deadline - time.monotonic()))
        self._release_lease(handle)
        if task is None or task.done():
            handle.state = WorkerState.STOPPED
            logger.info("worker %r stopped", handle.name)

    async def _run(self, handle: WorkerHandle) -> None:
        """Stand by until this process holds the worker's lease, run the worker while it does; repeat."""
        while await self._take_lease(handle):
            renewing = asyncio.create_task(self._renew_lease(handle), name=f"lease:{handle.name}")
            try:
                await self._run_leased(handle)
            finally:
                renewing.cancel()
            if handle.stopping.is_set():
                return
            logger.warning("worker %r lost its lease to another process; standing by", handle.name)
            await self._stop_worker(handle)

    async def _run_leased(self, handle: WorkerHandle) -> None:
        """Start the worker, then run its cycles until the app stops or the lease is lost."""
        if not await self._start_worker(handle):
            return
        handle.state = WorkerState.RUNNING
        failures = 0
        while not handle.stopping.is_set() and not handle.lease_lost.is_set():
            handle.wake.clear()
            began = time.perf_counter()
            try:
                await handle.worker.work()
            except LeaseLost:
                handle.lease_lost.set()
                return
            except Exception as exc:  # noqa: BLE001 - isolate the failure, back off, retry
                self.app.metrics.worker_cycle(handle.name, time.perf_counter() - began)
                failures += 1
                self._record_failure(handle, "work", exc)
                if await _wait(handle.stopping, self.backoff(failures, exc)):
                    return
                continue
            handle.cycles += 1
            self.app.metrics.worker_cycle(handle.name, time.perf_counter() - began)
            _database_back(handle)
            if failures:
                failures = 0
                handle.state = WorkerState.RUNNING
            rest = handle.busy_interval - (time.perf_counter() - began) if getattr(handle.worker, "busy", False) else 0
            if rest > 0 and await _wait(handle.stopping, rest):
                return
            if await _wait(handle.wake, self.delay(handle)) and handle.stopping.is_set():
                return

    async def _take_lease(self, handle: WorkerHandle) -> bool:
        """Wait until this process holds the worker's lease; False if the app stops first."""
        while not handle.stopping.is_set():
            try:
                if self.app.log.acquire_lease(handle.name, self.lease_ttl):
                    handle.lease_lost.clear()
                    _database_back(handle)
                    if handle.state == WorkerState.STANDBY:  # an operator asks which process took it, and when
                        logger.info("worker %r is this process's now: its lease was released or expired", handle.name)
                    return True
            except Exception as exc:  # noqa: BLE001 - a busy or failing database: try again soon
                self._lease_failed(handle, "take", exc)
            handle.state = WorkerState.STANDBY
            if await _wait(handle.stopping, self.lease_ttl / 3):
                return False
        return False

    async def _renew_lease(self, handle: WorkerHandle) -> None:
        """Renew the lease every third of its lifetime; when another process has it, stop the worker."""
        while True:
            await asyncio.sleep(self.lease_ttl / 3)
            try:
                held = self.app.log.acquire_lease(handle.name, self.lease_ttl)
            except Exception as exc:  # noqa: BLE001 - try again; the fence guards the position meanwhile
                self._lease_failed(handle, "renew", exc)
                continue
            if not held:
                handle.lease_lost.set()
                handle.wake.set()
                return

    def _lease_failed(self, handle: WorkerHandle, verb: str, exc: Exception) -> None:
        if not isinstance(exc, LogUnreachable):
            logger.warning("worker %r could not %s its lease: %r", handle.name, verb, exc)
        elif not handle.waiting_for_database:
            handle.waiting_for_database = True
            logger.warning("worker %r could not %s its lease: %s; trying again until it can", handle.name, verb, exc)

    async def _stop_worker(self, handle: WorkerHandle) -> None:
        try:
            await handle.worker.stop()
        except Exception as exc:
            handle.last_error = f"stop: {exc!r}"
            logger.exception("worker %r failed in stop()", handle.name)

    def _release_lease(self, handle: WorkerHandle) -> None:
        """Give the lease up on shutdown, so a process standing by takes the worker over at once."""
        try:
            self.app.log.release_lease(handle.name)
        except Exception as exc:  # noqa: BLE001 - it expires by itself
            logger.warning("worker %r could not release its lease: %r", handle.name, exc)

    async def _start_worker(self, handle: WorkerHandle) -> bool:
        """Call ``start`` until it succeeds (with backoff) or the app stops; True on success."""
        attempt = 0
        while not handle.stopping.is_set() and not handle.lease_lost.is_set():
            handle.state = WorkerState.STARTING
            try:
                await handle.worker.start(self.app)
                return True
            except LeaseLost:  # another process took the worker (its first start stores a position)
                handle.lease_lost.set()
                return False
            except Exception as exc:  # noqa: BLE001 - report as failed, retry with backoff
                attempt += 1
                self._record_failure(handle, "start", exc)
                if await _wait(handle.stopping, self.backoff(attempt, exc)):
                    return False
        return False

    def _record_failure(self, handle: WorkerHandle, phase: str, exc: Exception) -> None:
        handle.state = WorkerState.FAILED
        handle.failures += 1
        handle.last_error = f"{phase}: {exc!r}"
        if isinstance(exc, LogUnreachable):  # an outage, not a bug: one line for all of it, no traceback
            # /healthz shows last_error: the database's address stays in the log, as in error answers.
            handle.last_error = f"{phase}: the database cannot be reached"
            if not handle.waiting_for_database:
                handle.waiting_for_database = True
                logger.warning("worker %r waits for the database (%s()): %s", handle.name, phase, exc)
            return
        logger.error("worker %r failed in %s(): %r", handle.name, phase, exc, exc_info=exc)


def _database_back(handle: WorkerHandle) -> None:
    if handle.waiting_for_database:
        handle.waiting_for_database = False
        logger.info("worker %r reached the database again", handle.name)


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
