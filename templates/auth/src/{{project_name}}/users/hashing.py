"""The queue of password checks: argon2 off the event loop, a few at a time, and a bounded wait.

One argon2id check (64 MiB, 3 passes) takes about 0.1 to 0.5 s of a core. Run on the
event loop it would stop every other request meanwhile, and an unbounded line of
them lets a few dozen addresses make everyone's sign-in wait for minutes. So each
piece of password work (a sign-in, a registration, a password change or reset) runs
in a worker thread (argon2 releases the GIL), at most :data:`IN_FLIGHT` at once; at
most :data:`WAITING` more wait their turn, and any beyond get :class:`Busy` at once
(a 503 with ``Retry-After``) instead of a place at the back of a long line.

Throughput is what the cores give: about ``IN_FLIGHT / seconds per check`` sign-ins a
second per server process (docs/guide.md, "Users and sign-in", has the measurement).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import partial
from typing import ParamSpec, TypeVar

import anyio
import anyio.to_thread

IN_FLIGHT = 2  # argon2 uses up to 4 threads and 64 MiB per check: more at once only shares the same cores
WAITING = 8  # the longest wait of one that gets a place: (WAITING / IN_FLIGHT + 1) checks, a few seconds

P = ParamSpec("P")
R = TypeVar("R")


class Busy(Exception):
    """Every place in the queue is taken; try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many password checks at once; try again in {retry_after} s")
        self.retry_after = retry_after


class PasswordWork:
    """Runs password work in threads, ``in_flight`` at a time, refusing more than ``waiting`` in line."""

    def __init__(self, *, in_flight: int = IN_FLIGHT, waiting: int = WAITING) -> None:
        self.in_flight = in_flight
        self.places = in_flight + waiting
        self.pending = 0  # running or waiting; only the event loop's thread changes it
        self.seconds_each = 0.5  # a running average of how long one piece of work takes in its thread
        self._threads = anyio.CapacityLimiter(in_flight)

    async def run(self, work: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """``work(*args, **kwargs)`` in a thread once there is room; :class:`Busy` if the line is full."""
        if self.pending >= self.places:
            raise Busy(self.retry_after())
        self.pending += 1
        try:
            return await anyio.to_thread.run_sync(partial(self._timed, work, *args, **kwargs), limiter=self._threads)
        finally:
            self.pending -= 1

    def _timed(self, work: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        started = time.monotonic()
        try:
            return work(*args, **kwargs)
        finally:
            self.seconds_each = 0.8 * self.seconds_each + 0.2 * (time.monotonic() - started)

    def retry_after(self) -> int:
        """Seconds until the line now waiting has had its turn."""
        return max(1, math.ceil(self.pending / self.in_flight * self.seconds_each))
