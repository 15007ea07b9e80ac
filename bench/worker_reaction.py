"""Worker reaction: a command is appended -> the worker's resulting command is appended.

Ours: a :class:`CommandWorker` that answers every ``bench/ping`` with a ``bench/pong``, on
an app with the default 1 s poll + 1 s jitter; the append wakes it. Baseline: the same
worker with wake-up disabled, so it only sees the ping at its next poll (the Go original).

Measuring the baseline at a 1 s poll over 1,000 events would take half an hour, so it runs
at a scaled poll (``BASELINE_POLL`` + the same jitter) with pings arriving at random
phases; its latency is the time left until the next poll, which scales linearly with the
interval, so the table reports it scaled to the 1 s model (the measured value is in the note).

Across processes (``serve --processes N``): this process appends the pings through its own
App on the log, and the worker runs in another process (``python -m bench.worker_reaction
ponger DB APP_SRC``) that learns of them by following the log. The reaction is measured in
the log itself: the pong's timestamp minus the ping's.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel

from bench.common import REPO, Result, Row, app_module, generated_app, main, percentile

SIZES = {"smoke": (50, 20), "full": (2000, 200)}  # (events for ours, events for the baseline)
CROSS_EVENTS = {"smoke": 30, "full": 500}
BASELINE_POLL = 0.05  # seconds, plus the same again as jitter; scaled up to the 1 s model
MODEL_POLL = 1.0


class Ping(BaseModel):
    n: int


class Pong(BaseModel):
    n: int


async def measure(events: int, *, poll: float, wake: bool, gap: float) -> list[float]:
    """Seconds from each ping's commit to its pong's commit, one ping in flight at a time."""
    core = app_module("core")
    supervisor_module = app_module("core.supervisor")
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as scratch:
        app = core.App(core.MessageLog(Path(scratch) / "app.db"), poll_interval=poll, jitter=poll)
        if not wake:
            app.supervisor = PollOnly(supervisor_module.Supervisor)(app, poll_interval=poll, jitter=poll)
        answered = asyncio.Event()
        pongs: list[int] = []
        app.commands.register("bench/ping", Ping, lambda command, message: None)
        app.commands.register("bench/pong", Pong, lambda command, message: pongs.append(command.n))

        def on_commit() -> None:
            if pongs:
                answered.set()

        app.log.subscribe(on_commit)
        worker = core.CommandWorker("ponger")

        @worker.on("bench/ping")
        def answer(command: Ping, ctx) -> None:
            ctx.dispatch(Pong(n=command.n))

        app.register_worker(worker)
        await app.start_workers()
        await asyncio.sleep(0.05)  # let the worker finish start() and its first cycle
        latencies = []
        try:
            for n in range(events):
                await asyncio.sleep(random.uniform(0, gap))
                answered.clear()
                pongs.clear()
                app.dispatch(Ping(n=n))
                sent = time.perf_counter()
                await asyncio.wait_for(answered.wait(), timeout=10 * (poll + 1))
                latencies.append(time.perf_counter() - sent)
                assert pongs == [n], pongs
        finally:
            await app.close()
        return latencies


def register_ping_pong(app, pongs: list[tuple[int, str]]) -> None:
    app.commands.register("bench/ping", Ping, lambda command, message: None)
    app.commands.register("bench/pong", Pong, lambda command, message: pongs.append((command.n, message.timestamp)))


async def serve_ponger(db: str) -> None:
    """The other process: an app that runs only the ponger worker, until SIGTERM."""
    core = app_module("core")
    app = core.App(core.SQLiteLog(db), poll_interval=1.0, jitter=1.0)
    register_ping_pong(app, [])
    worker = core.CommandWorker("ponger")

    @worker.on("bench/ping")
    def answer(command: Ping, ctx) -> None:
        ctx.dispatch(Pong(n=command.n))

    app.register_worker(worker)
    app.prepare()
    await app.start_workers()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await app.close()


def across_processes(events: int, gap: float) -> list[float]:
    """Seconds from each ping to its pong, by their log timestamps, with the worker in another process."""
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as scratch:
        db = str(Path(scratch) / "app.db")
        ponger = subprocess.Popen(
            [sys.executable, "-m", "bench.worker_reaction", "ponger", db, str(generated_app() / "src")],
            cwd=REPO,
            stdout=subprocess.PIPE,
        )
        try:
            assert ponger.stdout is not None and ponger.stdout.readline().strip() == b"ready"
            return asyncio.run(ping_the_other_process(db, events, gap))
        finally:
            ponger.terminate()
            ponger.wait(10)


async def ping_the_other_process(db: str, events: int, gap: float) -> list[float]:
    core = app_module("core")
    app = core.App(core.SQLiteLog(db))
    pongs: list[tuple[int, str]] = []
    register_ping_pong(app, [])
    answered = asyncio.Event()
    read = 0

    def hear() -> None:
        """The follower heard of another process's append: read the pongs from the log."""
        nonlocal read
        for message in app.log.after(read):
            read = message.id
            if message.type == "bench/pong":
                pongs.append((message.payload()["n"], message.timestamp))
        if pongs:
            answered.set()

    app.log.subscribe(hear)
    app.prepare()
    await app.start_workers()  # no workers here: this follows the log
    latencies = []
    try:
        for n in range(events):
            await asyncio.sleep(random.uniform(0, gap))
            answered.clear()
            pongs.clear()
            ping = app.dispatch(Ping(n=n))
            await asyncio.wait_for(answered.wait(), timeout=10)
            (answer, pong_at), *_ = pongs
            assert answer == n, pongs
            latencies.append((datetime.fromisoformat(pong_at) - datetime.fromisoformat(ping.timestamp)).total_seconds())
    finally:
        await app.close()
    return latencies


def PollOnly(supervisor_class: type) -> type:
    """The app's supervisor with wake-up on append disabled: workers only poll."""

    class PollOnlySupervisor(supervisor_class):
        def wake_all(self) -> None:
            """Ignore appends, like the Go original."""

    return PollOnlySupervisor


def run(size: str) -> list[Row]:
    ours_events, base_events = SIZES[size]
    ours = asyncio.run(measure(ours_events, poll=MODEL_POLL, wake=True, gap=0.002))
    base = asyncio.run(measure(base_events, poll=BASELINE_POLL, wake=False, gap=2 * BASELINE_POLL))
    scale = MODEL_POLL / BASELINE_POLL
    rows: list[Row] = []
    for p, target in ((50, 5.0), (99, 25.0)):
        ours_ms = percentile(ours, p) * 1000
        base_ms = percentile(base, p) * 1000
        rows.append(
            Result(
                name=f"worker reaction p{p}, {ours_events} events",
                ours=ours_ms,
                baseline=base_ms * scale,
                unit="ms",
                ratio=ours_ms / (base_ms * scale),
                target=f"≤ {target:.0f} ms",
                met=ours_ms <= target,
                note=f"baseline: poll only, {base_events} events at {BASELINE_POLL * 1000:.0f} ms poll "
                f"+ jitter = {base_ms:.1f} ms, ×{scale:.0f} for 1 s",
            )
        )
    across = across_processes(CROSS_EVENTS[size], gap=0.01)
    for p, target in ((50, 10.0), (99, 50.0)):
        ms = percentile(across, p) * 1000
        rows.append(
            Result(
                name=f"worker reaction p{p} across processes, {len(across)} events",
                ours=ms,
                baseline=None,
                unit="ms",
                ratio=None,
                target=f"≤ {target:.0f} ms",
                met=ms <= target if p == 99 else None,
            )
        )
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["ponger"]:
        sys.path.insert(0, sys.argv[3])
        asyncio.run(serve_ponger(sys.argv[2]))
    else:
        main(run)
