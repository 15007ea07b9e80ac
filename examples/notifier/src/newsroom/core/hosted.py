"""Jobs the server starts: background jobs the app used to start by hand, run by its workers.

``petrock migrate jobs`` puts every job an app started by hand (a task, a thread, a
timer, a scheduler...) under the app's workers, in one of two ways:

- *native*: the job's loop is a worker class (in the feature's ``worker.py``): one pass of
  the loop is its ``work``, the loop's sleep its ``poll_interval``;
- *hosted*: petrock could not read the loop safely, so the job runs as it was written. A
  :class:`HostedJob` runs the job's original start code when the worker starts, and on stop
  it stops whatever that code started: it calls the job's own stop code, cancels its tasks
  and timers, shuts down its executors and joins its threads (up to the app's stop timeout).

Either way the job runs where it ran before. The line of the server's start-up that
started it now calls :func:`run_with_server`, and the worker waits for that call
(:func:`until_served`) before it starts. Tests that build the app, or start its workers
without that start-up, never run the job; ``serve --processes N`` runs it once, in the
process holding the worker's lease. ``/healthz`` and ``inspect`` show hosted jobs with a
``hosted`` entry: where the job came from, what would make it native, and what it runs now.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
import sched
import threading
import time
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import App

logger = logging.getLogger(__name__)

StartCode = Callable[[], Any]  # the job's original start code; a coroutine it returns is awaited
StopCode = Callable[[Any], Any]  # called with what the start code returned; a coroutine it returns is awaited


# --- where the server starts each job ----------------------------------------------------------


@dataclass(eq=False)
class _Start:
    """One call of a hosted job's start line: its start code, its stop code, and what it started."""

    code: StartCode
    stop: StopCode | None = None
    handle: Any = None  # what the start code returned: a task, a thread, a future, a timer
    started: bool = False
    launching: bool = False  # its start code runs now (a coroutine being awaited)
    cancelled: bool = False  # cancelled through its JobHandle before it started


@dataclass(eq=False)
class _Release:
    """Whether the server's start-up has reached a job's start line, and the start code each call gave
    (a start method run for two objects calls it twice: both run, in the one hosted worker)."""

    released: bool = False
    starts: list[_Start] = field(default_factory=list)
    waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = field(default_factory=list)
    cancelled: bool = False  # a native worker cancelled through its JobHandle: it does not start (again)
    app: Any = None
    name: str = ""
    running: Any = None  # the HostedJob running it now: a later call starts its code at once
    bound: Any = None  # a native worker: the object whose loop it runs (``bound=self`` at the start line)


class JobHandle:
    """What ``run_with_server`` returns, standing in for the task, thread or future the start line kept.

    Code that kept the handle goes on working: a status page asking ``done()``, a route or a stop
    method calling ``cancel()``, a lifespan awaiting it. For a hosted job every call goes to the
    real handle once the job has started. For a native worker, ``cancel()`` stops the worker and
    ``done()`` says whether it has stopped. Before the server starts the job (or where it never
    does), it is a job not yet running: cancelling it keeps it from starting.
    """

    def __init__(self, release: _Release, start: _Start | None = None) -> None:
        self._release = release
        self._start = start

    @property
    def _real(self) -> Any:
        return self._start.handle if self._start is not None and self._start.started else None

    def _worker(self) -> Any:
        """The supervisor's handle of a native worker (None for a hosted job, or before the app has one)."""
        app = self._release.app
        if self._start is not None or app is None:
            return None
        return next((h for h in app.supervisor.handles if h.name == self._release.name), None)

    def _cancelled(self) -> bool:
        return self._start.cancelled if self._start is not None else self._release.cancelled

    def done(self) -> bool:
        real, worker = self._real, self._worker()
        if hasattr(real, "done"):
            return bool(real.done())
        if worker is not None and worker.task is not None:
            return worker.task.done() or bool(getattr(worker.worker, "finished", False))  # its loop ended
        return self._cancelled()

    def cancelled(self) -> bool:
        real = self._real
        return bool(real.cancelled()) if hasattr(real, "cancelled") else self._cancelled()

    def cancel(self, *args: Any) -> bool:
        real, worker = self._real, self._worker()
        if hasattr(real, "cancel"):
            return bool(real.cancel(*args)) is not False
        if self._start is not None:
            self._start.cancelled = True
            return True
        self._release.cancelled = True
        if worker is not None:  # a native worker: it stops after its current cycle
            worker.stopping.set()
            worker.wake.set()
        return True

    def is_alive(self) -> bool:
        real, worker = self._real, self._worker()
        if hasattr(real, "is_alive"):
            return bool(real.is_alive())
        return worker is not None and worker.task is not None and not self.done()

    def running(self) -> bool:
        """A future's ``running()``: for a native worker, whether it runs now."""
        real = self._real
        if hasattr(real, "running"):
            return bool(real.running())
        return self.is_alive()

    def join(self, timeout: float | None = None) -> None:
        real = self._real
        if hasattr(real, "join"):
            real.join(timeout)

    def add_done_callback(self, callback: Callable[[Any], object]) -> None:
        real, worker = self._real, self._worker()
        if hasattr(real, "add_done_callback"):
            real.add_done_callback(callback)
        elif worker is not None and worker.task is not None:
            worker.task.add_done_callback(lambda _: callback(self))

    def __await__(self) -> Any:
        real, worker = self._real, self._worker()
        if inspect.isawaitable(real):
            return real.__await__()
        if worker is not None and worker.task is not None:
            return asyncio.wait({worker.task}).__await__()
        return _nothing().__await__()

    def __getattr__(self, name: str) -> Any:
        real = self._real
        if real is None:
            raise AttributeError(f"{name!r}: the job is a worker now, or has not started")
        return getattr(real, name)


async def _nothing() -> None:
    return None


# Keyed by the app; a start line with no app at hand is keyed by the event loop it ran on (the
# server's), or, before any loop runs (at import time), by the process.
_releases: weakref.WeakKeyDictionary[Any, dict[str, _Release]] = weakref.WeakKeyDictionary()
_process_wide: dict[str, _Release] = {}
_lock = threading.Lock()


def _owner(app: App | None) -> Any:
    if app is not None:
        return app
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _release(owner: Any, name: str) -> _Release:
    with _lock:
        table = _process_wide if owner is None else _releases.setdefault(owner, {})
        return table.setdefault(name, _Release())


def run_with_server(
    app: App | None, name: str, start: StartCode | None = None, *, stop: StopCode | None = None, bound: Any = None
) -> JobHandle:
    """Let the worker ``name`` run: called where the server's start-up used to start the job by hand.

    For a hosted job, ``start`` is the job's original start code (``lambda: jobs.start_sync()``)
    and ``stop`` what the app did to stop it, called with what ``start`` returned. ``app`` is
    None where the start line has no app at hand: the job then runs for the apps whose workers
    run on the event loop the line ran on (the server's), or, before any loop runs (at import
    time), for every app of the process. It returns a :class:`JobHandle` for the line that kept
    what the start code returns (``self._task = ...``). ``bound`` is the object a native worker
    runs its loop on (``bound_to``): the one whose start method this line is in.
    """
    if start is not None and _hosting.get() is not None:
        # The job's own code starting it again (a timer that re-arms itself through this line): as before.
        again = _Start(start, handle=start(), started=True)
        return JobHandle(_Release(released=True, starts=[again]), again)
    release = _release(_owner(app), name)
    entry = _Start(start, stop) if start is not None else None
    if app is not None and entry is not None and not _registered(app, name):
        logger.warning("no worker %r is registered: starting the job by hand, as before", name)
        entry.handle, entry.started = start(), True  # type: ignore[misc]
        return JobHandle(release, entry)
    with _lock:
        release.released, release.app, release.name = True, app, name
        if bound is not None and release.bound is None:
            release.bound = bound
        if entry is not None:
            release.starts.append(entry)
        waiters, release.waiters, running = release.waiters, [], release.running
    if running is not None and entry is not None:  # its worker runs already: start this call's code now
        asyncio.run_coroutine_threadsafe(running.launch(entry), running.loop)
    for loop, event in waiters:
        if not loop.is_closed():
            loop.call_soon_threadsafe(event.set)
    return JobHandle(release, entry)


def bound_to(app: App, worker: Any) -> Any:
    """The object the server's start-up started this worker's job with (``run_with_server(..., bound=self)``)."""
    name = getattr(worker, "name", None) or type(worker).__name__
    release = _released(app, name)
    return release.bound if release is not None else None


def _registered(app: App, name: str) -> bool:
    return any(handle.name == name for handle in app.supervisor.handles)


def _released(app: App, name: str) -> _Release | None:
    for owner in (app, _owner(None)):
        release = _release(owner, name)
        if release.released:
            return release
    release = _process_wide.get(name)
    return release if release is not None and release.released else None


async def until_served(app: App, worker: Any) -> bool:
    """Wait until the server's start-up starts this worker's job; False if the app stops first.

    A migrated worker's ``start`` begins with this, so the job runs only where the server
    started it by hand before (see the module docstring).
    """
    name = getattr(worker, "name", None) or type(worker).__name__
    if (release := _released(app, name)) is not None:
        return not release.cancelled
    loop, event = asyncio.get_running_loop(), asyncio.Event()
    releases = [_release(app, name), _release(loop, name), _release(None, name)]
    with _lock:
        for release in releases:
            release.waiters.append((loop, event))
    # The supervisor's own events for this worker: the app stops, or another process took its lease.
    stops = [
        getattr(handle, attribute)
        for handle in app.supervisor.handles
        if handle.worker is worker
        for attribute in ("stopping", "lease_lost")
        if isinstance(getattr(handle, attribute, None), asyncio.Event)
    ]
    waits = [asyncio.ensure_future(e.wait()) for e in [event, *stops]]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
        with _lock:
            for release in releases:
                if (loop, event) in release.waiters:
                    release.waiters.remove((loop, event))
    release = _released(app, name)
    return release is not None and not release.cancelled and not any(e.is_set() for e in stops)


def paced(work: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    """Run a migrated worker's ``work`` at most once per ``poll_interval``.

    For a core older than ``wake_on_append`` (it wakes every worker after each append): there a
    worker appending messages would wake itself at once, again and again. petrock adds this
    decorator to migrated workers only where the app's core needs it.
    """

    @functools.wraps(work)
    async def paced_work(worker: Any) -> None:
        now = time.monotonic()
        if now < getattr(worker, "_next_pass", 0.0):
            return
        worker._next_pass = now + worker.poll_interval
        await work(worker)

    return paced_work


# --- what a hosted job starts --------------------------------------------------------------------

_hosting: contextvars.ContextVar[Spawned | None] = contextvars.ContextVar("hosted_job", default=None)


@dataclass(eq=False)
class Spawned:
    """Everything a hosted job's code started, found as it starts it (its own code, and what that starts)."""

    job: str
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    timers: weakref.WeakSet[asyncio.TimerHandle] = field(default_factory=weakref.WeakSet)
    threads: list[threading.Thread] = field(default_factory=list)
    executors: list[ThreadPoolExecutor] = field(default_factory=list)
    futures: set[Future[Any]] = field(default_factory=set)
    scheduled: list[tuple[sched.scheduler, Any]] = field(default_factory=list)
    started: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    stopped: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def error(self, where: str, exc: BaseException) -> None:
        self.errors = [*self.errors[-4:], f"{where}: {exc!r}"]

    def task(self, task: asyncio.Task[Any]) -> None:
        self.started["tasks"] += 1
        if self.stopped:
            task.cancel()
            return
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.error(f"task {task.get_name()}", task.exception())

    def timer(self, handle: asyncio.TimerHandle) -> None:
        self.started["timers"] += 1
        if self.stopped:
            handle.cancel()
        else:
            self.timers.add(handle)

    def thread(self, thread: threading.Thread) -> None:
        """Run the thread in the job's context, so what it starts (a timer re-arming itself) is the job's too."""
        with self.lock:  # stopping checks every thread it knows: none may slip in meanwhile
            self.started["threads"] += 1
            if self.stopped and isinstance(thread, threading.Timer):
                thread.cancel()
            # Keep those not started yet too: two timers re-arming at once each start after registering.
            self.threads = [t for t in self.threads if t.is_alive() or t.ident is None] + [thread]
        context, run = contextvars.copy_context(), thread.run

        def hosted_run() -> None:
            try:
                context.run(run)
            except BaseException as exc:
                self.error(f"thread {thread.name}", exc)
                raise

        thread.run = hosted_run  # type: ignore[method-assign]

    def future(self, future: Future[Any]) -> None:
        self.started["executor jobs"] += 1
        if self.stopped:
            future.cancel()
            return
        self.futures.add(future)
        future.add_done_callback(self.futures.discard)

    def event(self, scheduler: sched.scheduler, event: Any) -> None:
        self.started["scheduled calls"] += 1
        self.scheduled = [(s, e) for s, e in self.scheduled if e in s.queue] + [(scheduler, event)]
        if self.stopped:
            _cancel_event(scheduler, event)

    def running(self) -> dict[str, int]:
        """What of the job is still alive: a hosted job is running while any of these is."""
        return {
            "tasks": sum(not t.done() for t in self.tasks),
            "threads": sum(t.is_alive() for t in self.threads),
            "timers": sum(not h.cancelled() and getattr(h, "_scheduled", True) for h in list(self.timers)),
            "executor jobs": sum(not f.done() for f in self.futures),
            "scheduled calls": sum(e in s.queue for s, e in self.scheduled),
        }

    def cancel(self, default_executor: Any) -> None:
        """Stop everything that can be stopped from outside; threads are joined by :meth:`HostedJob.stop`."""
        with self.lock:
            self.stopped = True
            for thread in self.threads:
                if isinstance(thread, threading.Timer):
                    thread.cancel()
        for handle in list(self.timers):
            handle.cancel()
        for task in list(self.tasks):
            task.cancel()
        for scheduler, event in self.scheduled:
            _cancel_event(scheduler, event)
        for future in list(self.futures):
            future.cancel()
        for executor in self.executors:
            if executor is not default_executor:  # the event loop's own pool serves everyone
                executor.shutdown(wait=False, cancel_futures=True)


def _cancel_event(scheduler: sched.scheduler, event: Any) -> None:
    with contextlib.suppress(ValueError):  # it ran already
        scheduler.cancel(event)


def _install_hooks(loop: asyncio.AbstractEventLoop) -> None:
    """Let hosted jobs see what they start: each hook passes straight through outside a hosted job."""
    _install_process_hooks()
    if getattr(loop, "_hosted_hooks", False):
        return
    previous = loop.get_task_factory()

    def task_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task = previous(loop, coro, **kwargs) if previous else asyncio.Task(coro, loop=loop, **kwargs)
        context = kwargs.get("context")
        spawned = context.get(_hosting) if context is not None else _hosting.get()
        if spawned is not None:
            spawned.task(task)
        return task

    loop.set_task_factory(task_factory)
    call_at = loop.call_at

    def hosted_call_at(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        handle = call_at(when, callback, *args, **kwargs)
        if (spawned := _hosting.get()) is not None:
            spawned.timer(handle)
        return handle

    try:  # call_later goes through call_at; an event loop written in C (uvloop) keeps its own
        loop.call_at = hosted_call_at  # type: ignore[method-assign]
        loop._hosted_hooks = True  # type: ignore[attr-defined]
    except AttributeError:
        logger.info("this event loop cannot report the timers hosted jobs set (call_later); they are not cancelled")


_process_hooks_installed = False


def _install_process_hooks() -> None:
    """Threads, executors and ``sched`` schedulers started inside a hosted job are recorded as its own."""
    global _process_hooks_installed
    with _lock:
        if _process_hooks_installed:
            return
        _process_hooks_installed = True
    start_thread = threading.Thread.start
    executor_init = ThreadPoolExecutor.__init__
    submit = ThreadPoolExecutor.submit
    enterabs = sched.scheduler.enterabs

    def hosted_start(thread: threading.Thread) -> None:
        if (spawned := _hosting.get()) is not None:
            spawned.thread(thread)
        start_thread(thread)

    def hosted_init(executor: ThreadPoolExecutor, *args: Any, **kwargs: Any) -> None:
        executor_init(executor, *args, **kwargs)
        if (spawned := _hosting.get()) is not None:
            spawned.executors.append(executor)

    def hosted_submit(executor: ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        spawned = _hosting.get()
        if spawned is None:
            return submit(executor, fn, *args, **kwargs)
        context = contextvars.copy_context()
        token = _hosting.set(None)  # the pool's own threads are not the job's: it may serve others
        try:
            future = submit(executor, context.run, fn, *args, **kwargs)
        finally:
            _hosting.reset(token)
        spawned.future(future)
        return future

    def hosted_enterabs(scheduler: sched.scheduler, *args: Any, **kwargs: Any) -> Any:
        event = enterabs(scheduler, *args, **kwargs)
        if (spawned := _hosting.get()) is not None:
            spawned.event(scheduler, event)
        return event

    threading.Thread.start = hosted_start  # type: ignore[method-assign]
    ThreadPoolExecutor.__init__ = hosted_init  # type: ignore[method-assign]
    ThreadPoolExecutor.submit = hosted_submit  # type: ignore[method-assign]
    sched.scheduler.enterabs = hosted_enterabs  # type: ignore[method-assign]


# --- the worker ----------------------------------------------------------------------------------


class HostedJobDied(Exception):
    """Everything a hosted job started has ended, and some of it with an error."""


class HostedJob:
    """A worker that runs a job as it was written, started and stopped by the app.

    Its ``start`` waits for the server's start-up (:func:`run_with_server`), then runs the
    job's start code, recording every task, thread, timer, executor and ``sched`` call the
    code starts. Each ``work`` cycle checks the job is still alive: once everything it
    started has ended with an error, the cycle fails (``/healthz`` says so). ``stop`` runs
    the job's stop code, cancels what can be cancelled and joins its threads.
    """

    poll_interval = 1.0  # how often it checks the job is alive
    jitter = 0.0
    wake_on_append = False

    def __init__(self, name: str, *, was: str, native_when: str) -> None:
        self.name = name
        self.was = was  # where the job came from: "catalog/jobs.py Jobs.start_price_sync"
        self.native_when = native_when  # what would let petrock make it a native worker
        self.spawned: Spawned | None = None
        self.release: _Release | None = None
        self.context = contextvars.copy_context()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.still_running: list[str] = []
        self._stop_timeout = 5.0

    @property
    def hosted(self) -> dict[str, Any]:
        """What ``/healthz`` and ``inspect`` show about the job."""
        return {
            "was": self.was,
            "native_when": self.native_when,
            "running": self.spawned.running() if self.spawned else {},
            "started": dict(self.spawned.started) if self.spawned else {},
            "errors": list(self.spawned.errors) if self.spawned else [],
            "still_running_after_stop": self.still_running,
        }

    async def start(self, app: App) -> None:
        self._stop_timeout = float(getattr(app, "stop_timeout", 5.0))
        if not await until_served(app, self):
            return
        release = _released(app, self.name)
        if release is None or not release.starts:
            raise HostedJobDied(f"the server started {self.name!r} without its start code")
        self.loop = asyncio.get_running_loop()
        _install_hooks(self.loop)
        self.spawned, self.still_running, self.release = Spawned(self.name), [], release
        self.context = contextvars.copy_context()
        self.context.run(_hosting.set, self.spawned)
        release.running = self
        for entry in list(release.starts):
            await self.launch(entry)

    async def launch(self, entry: _Start) -> None:
        """Run one call's start code, recording everything it starts as the job's."""
        if entry.cancelled or entry.started or entry.launching or self.spawned is None:
            return
        entry.launching = True
        try:
            result = self.context.run(entry.code)
            if inspect.iscoroutine(result):  # start code that is a coroutine (a task it returns is the handle)
                # Awaited in a task of the job's own, so what it starts is recorded as the job's too.
                result = await asyncio.get_running_loop().create_task(_awaited(result), context=self.context)
            entry.handle, entry.started = result, True
        finally:
            entry.launching = False

    async def work(self) -> None:
        spawned = self.spawned
        if spawned is None or any(spawned.running().values()) or not spawned.errors:
            return
        raise HostedJobDied(f"everything {self.name!r} started has ended: {spawned.errors[-1]}")

    async def stop(self) -> None:
        spawned, release = self.spawned, self.release
        if spawned is None:
            return
        if release is not None:
            release.running = None
        deadline = time.monotonic() + self._stop_timeout * 0.8
        for entry in release.starts if release is not None else []:
            if entry.stop is None or not entry.started:
                continue
            try:
                outcome = entry.stop(entry.handle)
                if inspect.iscoroutine(outcome):
                    await asyncio.wait_for(_awaited(outcome), timeout=max(0.1, deadline - time.monotonic()))
            except Exception:
                logger.exception("hosted job %r: its stop code failed; stopping what it started anyway", self.name)
        loop = asyncio.get_running_loop()
        spawned.cancel(default_executor=getattr(loop, "_default_executor", None))
        if spawned.tasks:
            await asyncio.wait(list(spawned.tasks), timeout=max(0.0, deadline - time.monotonic()))
        await asyncio.to_thread(_join, spawned, deadline)
        for entry in release.starts if release is not None else []:
            entry.started = False  # a restart runs each call's code again
        running = spawned.running()
        self.still_running = [f"{count} {kind}" for kind, count in running.items() if count]
        if self.still_running:
            logger.warning("hosted job %r: still running after stop: %s", self.name, ", ".join(self.still_running))


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _join(spawned: Spawned, deadline: float) -> None:
    """Join the job's threads and wait for its executor jobs, until the deadline."""
    current = threading.current_thread()
    for thread in spawned.threads:
        if thread is not current and thread.is_alive():
            thread.join(max(0.0, deadline - time.monotonic()))
    for future in list(spawned.futures):
        with contextlib.suppress(CancelledError, FutureTimeout):  # cancelled, or still running at the deadline
            future.exception(timeout=max(0.0, deadline - time.monotonic()))
