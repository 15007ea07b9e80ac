"""How far a projection rebuild is: a progress bar on a terminal, a log line every few seconds otherwise.

Rebuilds that run at once (two workers rebuilding their state at start) share one live display
on their terminal, a line each: two displays of their own would draw over each other's line.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import IO, Any, ClassVar

logger = logging.getLogger(__name__)
LOG_EVERY_SECONDS = 5.0


class RebuildProgress:
    """A ``Progress`` callback for :meth:`~.projections.Projections.rebuild` (called from the rebuild's thread)."""

    def __init__(self, label: str, stream: IO[str] | None = None) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self._bar: Any = None
        self._task: Any = None
        self._logged_at = 0.0
        self._finished_logged = False
        self._started = time.monotonic()
        if self.stream.isatty():
            self._bar, self._task = _SharedBar.join(self.stream, f"rebuilding {label}")

    def __call__(self, done: int, total: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total)
            return
        now = time.monotonic()
        finished = done >= total
        if finished and self._finished_logged:
            return  # the last batch and the rebuild's end both report the total: one line says it
        if now - self._logged_at >= LOG_EVERY_SECONDS or finished:
            self._logged_at, self._finished_logged = now, finished
            rate = done / max(now - self._started, 1e-6)
            logger.info("rebuilding %s: %d of %d messages (%.0f/s)", self.label, done, total, rate)

    def close(self) -> None:
        if self._bar is not None:
            _SharedBar.leave(self.stream)
            self._bar = None


class _SharedBar:
    """The live display of a terminal's rebuilds: started by the first, stopped when the last closes
    (each finished one's line stays, as it ended)."""

    _lock: ClassVar[threading.Lock] = threading.Lock()
    _by_stream: ClassVar[dict[int, _SharedBar]] = {}

    def __init__(self, stream: IO[str]) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(file=stream),
            transient=False,
        )
        self.users = 0

    @classmethod
    def join(cls, stream: IO[str], description: str) -> tuple[Any, Any]:
        """The display of ``stream`` (started if need be) and a new line on it."""
        with cls._lock:
            bar = cls._by_stream.get(id(stream))
            if bar is None:
                bar = cls._by_stream[id(stream)] = cls(stream)
                bar.progress.start()
            bar.users += 1
            return bar.progress, bar.progress.add_task(description, total=None)

    @classmethod
    def leave(cls, stream: IO[str]) -> None:
        with cls._lock:
            bar = cls._by_stream[id(stream)]
            bar.users -= 1
            if bar.users == 0:
                del cls._by_stream[id(stream)]
                bar.progress.stop()
