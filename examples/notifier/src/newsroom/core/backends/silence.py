"""A bound on the wait for PostgreSQL's answer, so a silent database cannot freeze the app.

The log's connection is used on the serving event loop. A database that stops
answering without closing the connection would hold every request, ``/healthz`` and
shutdown for as long as it stays silent: a pooler such as pgbouncer holds each query
while PostgreSQL is down (up to its ``query_wait_timeout``, 120 s by default), and a
host gone from the network is noticed by TCP after some 15 minutes.

A :class:`SilenceWatch` thread shuts the socket of a connection whose answer is
overdue (``APP_DB_ANSWER_TIMEOUT`` seconds, 10 by default). The waiting call then
fails as on a broken connection, and the log's usual handling follows: a 503, or the
check of a commit whose answer was lost. Until the database answers again (the
thread asks it, off the event loop), the log refuses at once instead of waiting
again: callers get a 503 in microseconds, not after another timeout.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import psycopg

ANSWER_TIMEOUT = 10.0  # seconds; above the log's lock_timeout (5 s), which a BEGIN may wait for
PROBE_INTERVAL = 1.0  # seconds between the questions asked of a silent database


def answer_timeout_from_env(environ: Mapping[str, str] = os.environ) -> float:
    """``APP_DB_ANSWER_TIMEOUT`` in seconds, or the default; ValueError for anything but a positive number."""
    raw = environ.get("APP_DB_ANSWER_TIMEOUT", "")
    if not raw:
        return ANSWER_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"APP_DB_ANSWER_TIMEOUT must be a positive number of seconds, not {raw!r}")
    return seconds


class WatchedConnection(psycopg.Connection[Any]):
    """A connection whose every wait for the server is timed by its :class:`SilenceWatch` (if it has one)."""

    watch: SilenceWatch | None = None

    def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
        watch = self.watch
        if watch is None:
            return super().wait(gen, *args, **kwargs)
        watch.waiting(self.pgconn.socket)
        try:
            return super().wait(gen, *args, **kwargs)
        finally:
            watch.answered()


class SilenceWatch:
    """Watches one connection at a time (the log's); breaks it when its answer is overdue.

    ``probe`` asks the database a question on a connection of its own and raises if it
    cannot; it runs on this watch's thread while the database is :attr:`silent`. Both
    callbacks are methods of the log, held weakly: the thread ends with the log, closed or not.
    """

    def __init__(self, seconds: float, probe: Callable[[], None], *, on_silence: Callable[[], None]) -> None:
        self.seconds = seconds
        self._probe = weakref.WeakMethod(probe)  # type: ignore[arg-type]
        self._on_silence = weakref.WeakMethod(on_silence)  # type: ignore[arg-type]
        self._lock = threading.Lock()  # the socket is shut only while its wait is still going on
        self._socket: int | None = None  # the waiting connection's socket
        self._deadline = 0.0
        self._silent = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="database silence watch", daemon=True)
        self._thread.start()

    @property
    def silent(self) -> bool:
        """The database left an answer overdue and has not answered since."""
        return self._silent.is_set()

    def waiting(self, fileno: int) -> None:
        with self._lock:
            self._socket, self._deadline = fileno, time.monotonic() + self.seconds

    def answered(self) -> None:
        with self._lock:
            self._socket = None

    def close(self) -> None:
        self._closed.set()

    def _run(self) -> None:
        tick = min(0.25, self.seconds / 4)
        while not self._closed.wait(tick):
            if self._break_overdue() and not self._call(self._on_silence):
                return
            while self._silent.is_set() and not self._closed.is_set():
                try:
                    if not self._call(self._probe):
                        return
                except Exception:  # noqa: BLE001 - still silent (or away): ask again
                    self._closed.wait(PROBE_INTERVAL)
                else:
                    self._silent.clear()

    @staticmethod
    def _call(callback: weakref.WeakMethod[Callable[[], None]]) -> bool:
        """Call the log's method; False if the log is gone (nothing left to watch)."""
        method = callback()
        if method is None:
            return False
        method()
        return True

    def _break_overdue(self) -> bool:
        """Shut the waiting connection's socket if its answer is overdue: its wait then fails at once."""
        with self._lock:
            if self._socket is None or time.monotonic() < self._deadline:
                return False
            self._silent.set()  # before the wait fails: its caller then knows why
            with contextlib.suppress(OSError), socket.socket(fileno=os.dup(self._socket)) as waiting:
                waiting.shutdown(socket.SHUT_RDWR)
            self._socket = None
            return True
