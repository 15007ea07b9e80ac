"""Jobs the server starts (core/hosted.py): migrated jobs run only once the server's start-up reaches
them, and a hosted job's tasks, threads, timers, executors and schedules all stop with the app."""

from __future__ import annotations

import asyncio
import sched
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from newsroom.core import App, MessageLog
from newsroom.core.hosted import HostedJob, run_with_server, until_served
from newsroom.core.http import create_http_app
from newsroom.core.supervisor import WorkerState

pytestmark = pytest.mark.anyio
TICK = 0.01


class Counted:
    """A native migrated worker: it waits for the server before its first cycle."""

    name = "jobs/counted"
    poll_interval = TICK
    jitter = 0.0
    wake_on_append = False

    def __init__(self) -> None:
        self.cycles = 0

    async def start(self, app: App) -> None:
        await until_served(app, self)

    async def work(self) -> None:
        self.cycles += 1

    async def stop(self) -> None:
        pass


def every_kind_of_job(counts: dict[str, int], stop: threading.Event) -> None:
    """Start one job of each kind an app starts by hand, each counting its cycles."""

    def bump(kind: str) -> None:
        counts[kind] = counts.get(kind, 0) + 1

    async def task_loop() -> None:
        while True:
            bump("task")
            await asyncio.sleep(TICK)

    def thread_loop() -> None:
        while not stop.wait(TICK):
            bump("thread")

    def timer() -> None:
        bump("timer")
        threading.Timer(TICK, timer).start()  # re-arms itself, forever

    loop = asyncio.get_running_loop()

    def later() -> None:
        bump("call_later")
        loop.call_later(TICK, later)

    def pool_loop() -> None:
        while True:  # no way out but the stop event the app's shutdown code set
            bump("executor")
            if stop.wait(TICK):
                return

    scheduler = sched.scheduler(time.monotonic, time.sleep)

    def scheduled() -> None:
        bump("sched")
        scheduler.enter(TICK, 1, scheduled)

    asyncio.get_running_loop().create_task(task_loop())
    threading.Thread(target=thread_loop, daemon=True).start()
    threading.Timer(TICK, timer).start()
    loop.call_later(TICK, later)
    ThreadPoolExecutor(max_workers=1).submit(pool_loop)
    scheduler.enter(TICK, 1, scheduled)
    threading.Thread(target=scheduler.run, daemon=True).start()


async def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


async def test_migrated_workers_wait_for_the_server_and_stop_at_once_when_it_never_comes(app: App) -> None:
    worker, hosted = Counted(), HostedJob("jobs/hosted", was="jobs.py: start_all", native_when="never")
    app.register_worker(worker)
    app.register_worker(hosted)

    await app.start_workers()  # as a test that builds the app does: no server start-up
    await asyncio.sleep(0.1)
    started = time.monotonic()
    assert await app.stop_workers() == []

    assert time.monotonic() - started < 0.5
    assert worker.cycles == 0 and hosted.hosted["started"] == {}


async def test_a_hosted_job_runs_once_the_server_starts_it_and_everything_it_started_stops(app: App) -> None:
    counts: dict[str, int] = {}
    stop = threading.Event()
    hosted = HostedJob("jobs/hosted", was="jobs.py: start_all", native_when="never")
    app.register_worker(hosted)
    app.register_worker(Counted())
    threads_before = threading.active_count()

    await app.start_workers()
    run_with_server(app, "jobs/hosted", lambda: every_kind_of_job(counts, stop), stop=lambda _: stop.set())
    run_with_server(app, "jobs/counted")
    kinds = {"task", "thread", "timer", "call_later", "executor", "sched"}
    await wait_until(lambda: all(counts.get(kind, 0) >= 3 for kind in kinds))
    running = hosted.hosted["running"]
    assert running["tasks"] == 1 and running["threads"] >= 3 and running["executor jobs"] == 1
    assert [h.cycles > 0 for h in app.supervisor.handles] == [True, True]
    assert await app.stop_workers() == []

    seen = dict(counts)
    await asyncio.sleep(0.1)
    assert counts == seen  # nothing runs on after the stop
    assert hosted.hosted["still_running_after_stop"] == []
    assert not any(hosted.hosted["running"].values())
    await wait_until(lambda: threading.active_count() <= threads_before + 1)  # the loop's own pool may stay


async def test_a_hosted_job_whose_code_all_died_fails_its_cycles(app: App) -> None:
    async def crash() -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("the feed is gone")

    hosted = HostedJob("jobs/crashing", was="jobs.py: start_feed", native_when="never")
    hosted.poll_interval = TICK  # its check comes every second otherwise: this test would wait one out
    app.register_worker(hosted)
    # The start code returns its task, as `asyncio.create_task(...)` does: the job's handle, not awaited.
    run_with_server(app, "jobs/crashing", lambda: asyncio.get_running_loop().create_task(crash()))
    await app.start_workers()

    (handle,) = app.supervisor.handles
    await wait_until(lambda: handle.state == WorkerState.FAILED)
    assert handle.cycles >= 1  # it started, ran, and then its check found everything dead
    assert (handle.last_error or "").startswith("work: HostedJobDied") and "the feed is gone" in handle.last_error
    await app.stop_workers()


async def test_a_hosted_job_runs_in_one_process_of_a_group_under_the_workers_lease(db_path: Path) -> None:
    """``serve --processes 2``: both processes reach the start line; the lease holder alone runs the job."""
    runs: list[int] = []

    async def serving(number: int) -> App:
        app = App(MessageLog(db_path), poll_interval=0.01, jitter=0.0, lease_ttl=0.3)
        app.register_worker(HostedJob("jobs/once", was="jobs.py: start_once", native_when="never"))
        await app.start_workers()

        async def job() -> None:
            runs.append(number)
            await asyncio.sleep(3600)

        run_with_server(app, "jobs/once", lambda: asyncio.get_running_loop().create_task(job()))
        return app

    first = await serving(1)
    await wait_until(lambda: runs == [1])
    second = await serving(2)
    await wait_until(lambda: second.runtime()["stands_by_for"] == ["jobs/once"])
    assert runs == [1]

    await first.close()  # releases the lease: the second process starts the job
    await wait_until(lambda: runs == [1, 2])
    await second.close()


def test_healthz_says_which_jobs_are_hosted_and_that_they_run(app: App) -> None:
    app.register_worker(HostedJob("jobs/hosted", was="jobs.py: start_all", native_when="its loop is a `while True:`"))
    http = create_http_app(app)
    core = http.router.lifespan_context
    stop = threading.Event()

    def start() -> threading.Thread:
        thread = threading.Thread(target=lambda: stop.wait(60))
        thread.start()
        return thread

    @asynccontextmanager
    async def lifespan(server: Starlette) -> AsyncIterator[None]:  # the start-up, as a legacy create_server had it
        async with core(server):
            run_with_server(app, "jobs/hosted", start, stop=lambda thread: (stop.set(), thread.join()))
            yield

    http.router.lifespan_context = lifespan
    with TestClient(http) as client:
        deadline = time.monotonic() + 5
        while (worker := client.get("/healthz").json()["workers"][0])["cycles"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert worker["class"] == "HostedJob" and worker["state"] == "running"
    assert worker["hosted"]["was"] == "jobs.py: start_all"
    assert worker["hosted"]["native_when"] == "its loop is a `while True:`"
    assert worker["hosted"]["running"]["threads"] == 1
    assert stop.is_set()


async def test_the_handle_a_start_line_kept_works_for_hosted_and_native_jobs(app: App) -> None:
    """``self._task = create_task(...)`` became ``self._task = run_with_server(...)``: done() and cancel() still work."""
    counts: dict[str, int] = {}

    async def count(key: str) -> None:
        while True:
            counts[key] = counts.get(key, 0) + 1
            await asyncio.sleep(TICK)

    app.register_worker(HostedJob("jobs/hosted", was="jobs.py: start", native_when="never"))
    native = Counted()
    app.register_worker(native)
    hosted_handle = run_with_server(app, "jobs/hosted", lambda: asyncio.get_running_loop().create_task(count("h")))
    native_handle = run_with_server(app, "jobs/counted")
    assert not hosted_handle.done() and not native_handle.done()  # a status page: not started yet, not done

    await app.start_workers()
    await wait_until(lambda: counts.get("h", 0) >= 2 and native.cycles >= 2)
    assert hosted_handle.cancel() and native_handle.cancel()  # a pause route: both stop
    await wait_until(lambda: hosted_handle.done() and native_handle.done())
    seen = (counts["h"], native.cycles)
    await asyncio.sleep(0.1)
    assert (counts["h"], native.cycles) == seen
    await app.stop_workers()


async def test_a_start_line_run_for_two_objects_starts_both_and_a_timer_re_arms_through_it(app: App) -> None:
    """A start method called for two objects, and a timer whose tick re-arms through the same line."""
    ticks: list[str] = []

    class Ticker:
        def __init__(self, label: str) -> None:
            self.label = label

        def start(self) -> None:
            run_with_server(app, "jobs/ticker", lambda: threading.Timer(TICK, self.tick).start())

        def tick(self) -> None:
            ticks.append(self.label)
            self.start()  # the job re-arming itself: it starts again at once

    app.register_worker(HostedJob("jobs/ticker", was="jobs.py: Ticker.start", native_when="never"))
    Ticker("a").start()
    await app.start_workers()
    Ticker("b").start()  # after the worker started: it starts at once too

    await wait_until(lambda: ticks.count("a") >= 3 and ticks.count("b") >= 3)
    await app.stop_workers()
    seen = len(ticks)
    await asyncio.sleep(0.1)
    assert len(ticks) == seen
