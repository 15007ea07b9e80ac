"""``GET /events``: the log as server-sent events, so pages update when a worker acts.

Each appended message becomes one event, ``id: N`` with data
``{"id": N, "type": "feature/verb"}``: the type and id only, never the payload.
A browser's ``EventSource`` reconnects by itself and sends ``Last-Event-ID``; the
stream then resumes after that message, so nothing is missed across a reconnect.

One task per process reads each new batch of messages once and hands it to every
open stream; a stream that falls ``STREAM_BACKLOG`` batches behind (its client does
not read) is closed, and its client reconnects and catches up from the log. At most
``APP_MAX_EVENT_STREAMS`` streams are open per process; beyond that a new one gets a
503 with ``Retry-After``. A stream opened with a login session ends when the session does
(sign out, sign out everywhere, a retired token): the middleware that let it in leaves a
check in ``scope[STILL_ALLOWED]``, asked at most every ``RECHECK_SECONDS`` while events
flow, and at every heartbeat.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from types import FrameType

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from .headers import whole_number
from .log import Message, MessageLogBackend
from .metrics import Metrics, NoMetrics
from .sessions import STILL_ALLOWED

HEARTBEAT_SECONDS = 15.0
RECONNECT_MILLISECONDS = 2000
SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)
MAX_STREAMS = 500
MAX_STREAMS_VARIABLE = "APP_MAX_EVENT_STREAMS"
RETRY_AFTER_SECONDS = 10
STREAM_BACKLOG = 64  # batches a stream may fall behind before it is closed
# Streams handed a batch before a pause that lets requests in: with a thousand streams open,
# handing a batch to all at once would hold every other request up for tens of milliseconds.
FAN_OUT_SLICE = 25
FAN_OUT_PAUSE_SECONDS = 0.001
# Appends this close together go out as one batch: one write per stream instead of one per message.
COALESCE_SECONDS = 0.05
RECHECK_SECONDS = 5.0  # how often a stream asks whether its session still stands

Batch = list[tuple[int, str]]  # (message id, its event text)


def max_streams_from_env(environ: Mapping[str, str] = os.environ) -> int:
    """``APP_MAX_EVENT_STREAMS``, or the default; a malformed value raises ValueError naming the variable."""
    raw = environ.get(MAX_STREAMS_VARIABLE, "")
    if not raw:
        return MAX_STREAMS
    value = whole_number(raw, max_digits=7)
    if not value:
        raise ValueError(f"{MAX_STREAMS_VARIABLE} must be a whole number above 0, not {raw!r}")
    return value


class EventStreams:
    """Serves the event streams and fans every append out to them (in this process or, once followed, another)."""

    def __init__(
        self,
        log: MessageLogBackend,
        *,
        heartbeat: float = HEARTBEAT_SECONDS,
        max_streams: int = MAX_STREAMS,
        metrics: Metrics | None = None,
    ) -> None:
        self.log = log
        self.heartbeat = heartbeat
        self.max_streams = max_streams
        self.metrics = metrics if metrics is not None else NoMetrics()
        self.closed = False
        self._streams: set[_Stream] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._appended: asyncio.Event | None = None
        self._fan_out_task: asyncio.Task[None] | None = None
        self._unsubscribe = log.subscribe(self._wake)

    async def endpoint(self, request: Request) -> Response:
        if len(self._streams) >= self.max_streams:
            return JSONResponse(
                {"error": "too many event streams are open; try again later"},
                status_code=503,
                headers={"retry-after": str(RETRY_AFTER_SECONDS)},
            )
        stream = self._open(start_after(request, self.log.version()))
        stream.still_allowed = request.scope.get(STILL_ALLOWED)
        return _EventStreamResponse(self._events(stream), stream)

    def stream(self, position: int) -> AsyncIterator[str]:
        """Events after ``position`` as SSE text, until :meth:`close` (what ``/events`` sends, a batch at a time)."""
        return self._events(self._open(position))

    def close(self) -> None:
        """End every stream (at shutdown: an open stream would otherwise hold the server up).

        Safe from a signal handler: the streams are ended by the event loop itself.
        """
        self.closed = True
        self._unsubscribe_once()
        loop = self._loop
        if loop is not None:
            with suppress(RuntimeError):  # the loop has closed: so have the streams
                loop.call_soon_threadsafe(self._end_streams)

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

    # --- the streams and the fan-out ---

    def _open(self, position: int) -> _Stream:
        """Register a stream before it catches up from the log, so nothing appended meanwhile is missed."""
        self._start_fan_out()
        stream = _Stream(position, self._streams)
        self._streams.add(stream)
        return stream

    async def _events(self, stream: _Stream) -> AsyncIterator[str]:
        self.metrics.stream_opened()
        try:
            yield f"retry: {RECONNECT_MILLISECONDS}\n\n"
            while not stream.ended:  # catch up from the log, a page at a time
                page = [(message.id, event_text(message)) for message in _first(self.log, stream.position)]
                if not page:
                    break
                yield stream.text_of(page)
            while not (stream.ended or self.closed):
                try:
                    async with asyncio.timeout(self.heartbeat):
                        batch = await stream.batches.get()
                except TimeoutError:
                    if not stream.allowed():
                        break
                    yield ": heartbeat\n\n"
                    continue
                if not stream.allowed():
                    break
                if batch is not None and (text := stream.text_of(batch)):
                    yield text
        finally:
            self.metrics.stream_closed()
            stream.leave()

    def _start_fan_out(self) -> None:
        if self._fan_out_task is None or self._fan_out_task.done():
            self._loop = asyncio.get_running_loop()
            self._appended = asyncio.Event()
            self._fan_out_task = self._loop.create_task(self._fan_out(), name="event-streams-fan-out")

    async def _fan_out(self) -> None:
        """Read each new batch of messages once, and queue it for every open stream."""
        assert self._appended is not None
        position = self.log.version()
        while not self.closed:
            await self._appended.wait()
            await asyncio.sleep(COALESCE_SECONDS)
            self._appended.clear()
            if not self._streams:
                position = self.log.version()  # nobody to tell: new streams catch up by themselves
                continue
            batch = [(message.id, event_text(message)) for message in self.log.after(position)]
            if not batch:
                continue
            position = batch[-1][0]
            for count, stream in enumerate(list(self._streams), 1):
                stream.deliver(batch)
                if count % FAN_OUT_SLICE == 0:
                    await asyncio.sleep(FAN_OUT_PAUSE_SECONDS)

    def _wake(self) -> None:
        """Called by the log after every append or catch-up, from whichever thread made it."""
        loop, appended = self._loop, self._appended
        if loop is not None and appended is not None:
            with suppress(RuntimeError):  # the loop has closed: no stream is left to tell
                loop.call_soon_threadsafe(appended.set)

    def _end_streams(self) -> None:
        for stream in list(self._streams):
            stream.end()
        if self._appended is not None:
            self._appended.set()  # lets the fan-out task see `closed` and finish

    def _unsubscribe_once(self) -> None:
        unsubscribe, self._unsubscribe = self._unsubscribe, lambda: None
        with suppress(ValueError):
            unsubscribe()


class _Stream:
    """One open stream: where it is in the log, and the batches waiting to be sent to it."""

    def __init__(self, position: int, registry: set[_Stream]) -> None:
        self.position = position
        self.registry = registry  # the open streams, which this one is in until it leaves
        self.batches: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=STREAM_BACKLOG)
        self.ended = False
        self.still_allowed: Callable[[], bool] | None = None  # None: nothing can end its access
        self._checked_at = time.monotonic()

    def allowed(self) -> bool:
        """Whether its client may still read: asked of ``still_allowed`` at most every RECHECK_SECONDS."""
        if self.still_allowed is None or time.monotonic() - self._checked_at < RECHECK_SECONDS:
            return True
        self._checked_at = time.monotonic()
        return self.still_allowed()

    def deliver(self, batch: Batch) -> None:
        try:
            self.batches.put_nowait(batch)
        except asyncio.QueueFull:  # the client does not read: close it, it will reconnect and catch up
            self.end()

    def end(self) -> None:
        self.ended = True
        with suppress(asyncio.QueueFull):  # a full queue wakes its reader anyway
            self.batches.put_nowait(None)

    def leave(self) -> None:
        self.registry.discard(self)

    def text_of(self, batch: Batch) -> str:
        """The events of ``batch`` this stream has not sent yet (it may have read some from the log itself)."""
        text = "".join(event for id, event in batch if id > self.position)
        self.position = max(self.position, batch[-1][0])
        return text


class _EventStreamResponse(Response):
    """Sends a stream's events until it ends or the client leaves; the stream is closed either way."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[str], stream: _Stream) -> None:
        # No Response.__init__: it would declare a body of 0 bytes (StreamingResponse does the same).
        self.status_code = 200
        self.background = None
        self.events = events
        self.stream = stream
        self.init_headers({"cache-control": "no-store", "x-accel-buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.create_task(_end_on_disconnect(receive, self.stream))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for text in self.events:
                await send({"type": "http.response.body", "body": text.encode(), "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            await self.events.aclose()
            self.stream.leave()  # aclose() runs no cleanup in a generator that never started


def _first(log: MessageLogBackend, position: int, count: int = 500) -> list[Message]:
    messages = []
    for message in log.after(position, batch_size=count):
        messages.append(message)
        if len(messages) == count:
            break
    return messages


async def _end_on_disconnect(receive: Receive, stream: _Stream) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    stream.end()


def event_text(message: Message) -> str:
    """One message as a server-sent event: its id, and its type (never its payload)."""
    return f"id: {message.id}\ndata: {json.dumps({'id': message.id, 'type': message.type})}\n\n"


def start_after(request: Request, newest: int) -> int:
    """Where a stream starts: after ``Last-Event-ID`` on a reconnect, else after the newest message.

    A malformed ``Last-Event-ID`` (not 1 to 18 ASCII digits) is ignored.
    """
    last = whole_number(request.headers.get("last-event-id"))
    return newest if last is None else min(last, newest)
