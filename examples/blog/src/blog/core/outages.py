"""One warning when the database goes away, a reminder now and then, one line when it is back.

While PostgreSQL is away every request, lease renewal, worker cycle and notification
fails on its own. Logged one by one, that was some twenty identical lines a second per
instance, burying whatever else happened. An :class:`OutageLog` logs the first failure,
counts the others, reminds every ``remind_every`` seconds that the outage goes on, and
says how long it lasted at the first success.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


class OutageLog:
    """The log lines of one thing that can be unreachable (the log's connection, its LISTEN connection)."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        remind_every: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.what = what  # "cannot reach <what>", "reached <what> again"
        self.remind_every = remind_every
        self._clock = clock
        self._lock = threading.Lock()  # the serving loop and a rebuild's thread may both report
        self._began: float | None = None
        self._reminded = 0.0
        self._failures = 0

    @property
    def ongoing(self) -> bool:
        return self._began is not None

    def failed(self, reason: str) -> None:
        """One failed attempt: logged if it is the outage's first, or a reminder is due."""
        with self._lock:
            now = self._clock()
            self._failures += 1
            if self._began is None:
                self._began = self._reminded = now
                self.logger.warning("cannot reach %s (%s)", self.what, reason)
            elif now - self._reminded >= self.remind_every:
                self._reminded = now
                self.logger.warning(
                    "still cannot reach %s after %.0f s (%d attempts failed; the last: %s)",
                    self.what, now - self._began, self._failures, reason,
                )  # fmt: skip

    def succeeded(self) -> None:
        """An attempt worked: ends the outage, if there was one, with a line saying how long it lasted."""
        if self._began is None:  # the common case, without taking the lock
            return
        with self._lock:
            if self._began is None:
                return
            lasted, failures = self._clock() - self._began, self._failures
            self._began, self._failures = None, 0
        self.logger.warning("reached %s again after %.1f s (%d attempts failed)", self.what, lasted, failures)
