"""``GET /events``: the log as server-sent events, so pages update when a worker acts.

Each appended message becomes one event, ``id: N`` with data
``{"id": N, "type": "feature/verb"}``: the type and id only, never the payload.
A browser's ``EventSource`` reconnects by itself and sends ``Last-Event-ID``; the
stream then resumes after that message, so nothing is missed across a reconnect.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from types import FrameType

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .log import MessageLogBackend
from .metrics import Metrics, NoMetrics

HEARTBEAT_SECONDS = 15.0
RECONNECT_MILLISECONDS = 2000
SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class EventStreams:
    """Serves the event streams and wakes them on every append (in this process or, once followed, another)."""

    def __init__(
        self, log: MessageLogBackend, *, heartbeat: float = HEARTBEAT_SECONDS, metrics: Metrics | None = None
    ) -> None:
        self.log = log
        self.heartbeat = heartbeat
        self.metrics = metrics if metrics is not None else NoMetrics()
        self.closed = False
        self._waiting: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._lock = threading.Lock()
        self._unsubscribe = log.subscribe(self._wake)

    async def endpoint(self, request: Request) -> Response:
        return StreamingResponse(
            self.stream(start_after(request, self.log.version())),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def stream(self, position: int) -> AsyncIterator[str]:
        """Events after ``position`` as SSE text, until :meth:`close` or the client leaves."""
        wake = asyncio.Event()
        waiter = (asyncio.get_running_loop(), wake)
        with self._lock:
            self._waiting.add(waiter)
        self.metrics.stream_opened()
        try:
            yield f"retry: {RECONNECT_MILLISECONDS}\n\n"
            while not self.closed:
                wake.clear()
                for message in self.log.after(position):
                    position = message.id
                    yield f"id: {message.id}\ndata: {json.dumps({'id': message.id, 'type': message.type})}\n\n"
                    if self.closed:
                        return
                with suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self.heartbeat)
                    continue
                yield ": heartbeat\n\n"
        finally:
            self.metrics.stream_closed()
            with self._lock:
                self._waiting.discard(waiter)

    def close(self) -> None:
        """End every stream (at shutdown: an open stream would otherwise hold the server up)."""
        self.closed = True
        self._unsubscribe_once()
        self._wake()

    @contextmanager
    def closed_on_shutdown_signal(self) -> Iterator[None]:
        """Close the streams as soon as SIGINT/SIGTERM arrives, then hand the signal to the server's handler.

        uvicorn waits for open responses to finish before it shuts the app down, and
        an event stream never finishes by itself. Only the main thread can handle
        signals; elsewhere (a test client) this does nothing.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {signum: signal.getsignal(signum) or signal.SIG_DFL for signum in SHUTDOWN_SIGNALS}

        def handle(signum: int, frame: FrameType | None) -> None:
            self.close()
            signal.signal(signum, previous[signum])
            signal.raise_signal(signum)

        for signum in SHUTDOWN_SIGNALS:
            signal.signal(signum, handle)
        try:
            yield
        finally:
            for signum, handler in previous.items():
                if signal.getsignal(signum) is handle:
                    signal.signal(signum, handler)

    def _wake(self) -> None:
        with self._lock:
            waiting = list(self._waiting)
        for loop, wake in waiting:
            with suppress(RuntimeError):  # the loop has closed: that stream is over
                loop.call_soon_threadsafe(wake.set)

    def _unsubscribe_once(self) -> None:
        unsubscribe, self._unsubscribe = self._unsubscribe, lambda: None
        with suppress(ValueError):
            unsubscribe()


def start_after(request: Request, newest: int) -> int:
    """Where a stream starts: after ``Last-Event-ID`` on a reconnect, else after the newest message."""
    last = request.headers.get("last-event-id", "").strip()
    return min(int(last), newest) if last.isdigit() else newest
