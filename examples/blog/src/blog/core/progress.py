"""How far a projection rebuild is: a progress bar on a terminal, a log line every few seconds otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Any

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
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=False,
            )
            self._task = self._bar.add_task(f"rebuilding {label}", total=None)
            self._bar.start()

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
            self._bar.stop()
            self._bar = None
