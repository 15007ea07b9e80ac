"""Worker reaction: a command is appended -> the worker's resulting command is appended.

Ours: a :class:`CommandWorker` that answers every ``bench/ping`` with a ``bench/pong``, on
an app with the default 1 s poll + 1 s jitter; the append wakes it. Baseline: the same
worker with wake-up disabled, so it only sees the ping at its next poll (the Go original).

Measuring the baseline at a 1 s poll over 1,000 events would take half an hour, so it runs
at a scaled poll (``BASELINE_POLL`` + the same jitter) with pings arriving at random
phases; its latency is the time left until the next poll, which scales linearly with the
interval, so the table reports it scaled to the 1 s model (the measured value is in the note).
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel

from bench.common import Result, Row, app_module, main, percentile

SIZES = {"smoke": (50, 20), "full": (2000, 200)}  # (events for ours, events for the baseline)
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
    return rows


if __name__ == "__main__":
    main(run)
