"""What ``serve`` runs on: uvicorn's two HTTP protocols, each with read deadlines and a cap on the head, and the loop.

uvicorn closes a connection that is idle *between* requests (``timeout_keep_alive``),
but not one that was never used, and not one that sends its request a byte at a time
(slowloris): every byte it receives resets the keep-alive timer. :class:`ReadDeadlines`
adds what is missing, the same way for both parsers: a fresh connection must start a
request within the keep-alive timeout, a request's headers must arrive within the header
timeout of its first byte, and its body within the body timeout of its headers; otherwise
the connection is closed. The body's deadline is a total one (a byte every second does not
move it), and it holds whether or not the app reads the body: an app that answers at once
(a 401, 404 or 413) leaves the rest to arrive within ``LINGER_SECONDS`` at most, read and
dropped so the client sees the answer, then the connection is closed (as nginx's lingering
close does). Streaming a response (``/events``) is not reading, so it is never cut. A request line and headers over 32 KiB get a 431, however they arrive (h11's own limit
catches only those that arrive in pieces; httptools has none).

:class:`SendDeadline` bounds the other direction: a client that does not read what it is
sent (a slow reader pipelining GET requests, or one that stops reading a stream) once held
its connection, the answer's task and the bytes buffered for it for ever, since uvicorn
waits for the socket to drain without a limit and a close waits for the buffer to flush.
Once the client falls behind (the transport's buffer passes its high-water mark, or the
connection is closing with bytes still buffered), it has ``send_timeout`` seconds to catch
up (read the buffer down to the low-water mark, or all of it when closing); otherwise the
connection is reset. A reader that keeps up, however slowly, is never cut; one that stops
costs at most the buffer's high-water mark plus the one message being written.

:class:`TimedHttpToolsProtocol` (the C parser, the default when installed) and
:class:`TimedH11Protocol` (pure Python, ``serve --http h11``) differ only in how they learn
where the request being read has got to. Both read a client that pipelines requests
without reading the answers only so far ahead (pipelining.py). The event loop is uvloop when installed
(``serve --loop asyncio`` without it). Both write each response in one ``send`` on the
socket, not two (:class:`CoalescedWrites`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import logging
import socket
import struct
from collections.abc import Callable
from enum import Enum
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .limits import BODY_TIMEOUT, HEADER_TIMEOUT, MAX_HEAD_BYTES, SEND_TIMEOUT
from .pipelining import MAX_PIPELINED, BoundedPipelining, through_head_ends

ANSWER_GRACE = 1.0  # past the body's deadline, for the app reading it to answer 408 itself
LINGER_SECONDS = 2.0  # after an answer given before the body was all in: the most the rest may take
TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
HTTP_CHOICES = ("auto", "httptools", "h11")
LOOP_CHOICES = ("auto", "uvloop", "asyncio")

logger = logging.getLogger(__name__)


class CoalescedWrites:
    """A connection's transport whose writes made in one turn of the event loop go out as one.

    uvicorn writes a response's head and its body separately: two ``send`` calls on the
    socket, each waking the client. The writes are held until the callback making them is
    done (``call_soon``), then written together. Everything written on the connection goes
    through here, so it stays in order; past ``MAX_HELD`` bytes the held writes go out at
    once, so the transport's flow control (pausing a writer whose client reads slowly) sees
    every byte as before. ``close`` and ``write_eof`` write what is held first; ``abort``
    drops it, as the transport's own buffer is dropped.
    """

    MAX_HELD = 64 * 1024

    __slots__ = ("_held", "_loop", "_size", "_transport", "on_close")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._size = 0
        # Called after every close, whoever closes (uvicorn's own code too, when an app raises mid-answer).
        self.on_close: Callable[[], None] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(bytes(data))
        self._size += len(data)
        if self._size > self.MAX_HELD:
            self.flush()

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        """Write what is held (dropped if the connection is closing: no one would read it)."""
        held, self._held, self._size = self._held, [], 0
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self.flush()
        self._transport.close()
        if self.on_close is not None:
            self.on_close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()
        if self.on_close is not None:
            self.on_close()

    def abort(self) -> None:
        self._held, self._size = [], 0
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._size

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class ReadDeadlines:
    """The deadlines and the head cap; a protocol class calls the ``_reading_*`` hooks as its parser goes."""

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    timeout_keep_alive: int
    timeout_keep_alive_task: asyncio.TimerHandle | None
    timeout_keep_alive_handler: Callable[[], None]

    def __init__(
        self, *args: Any, header_timeout: float = HEADER_TIMEOUT, body_timeout: float = BODY_TIMEOUT, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        self.transport = CoalescedWrites(transport, self.loop)  # every write of this connection, in order
        self._read_deadline: asyncio.Handle | None = None
        self._read_deadline_at = 0.0  # the loop time it fires at (uvloop's handle for a past time has no when())
        self._reading_body = False
        self._head_bytes = 0  # of the request line and headers read so far
        self._head_tail = b""  # the last bytes read, in case the blank line ending the headers is split
        # uvicorn's keep-alive timer starts only after a first response; start it now too.
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def _refused_large_head(self, data: bytes) -> bool:
        """Answer 431 and close when the head being read passes MAX_HEAD_BYTES with ``data``."""
        if not self._head_too_large(data):
            return False
        self.transport.write(TOO_LARGE)
        self.transport.close()
        return True

    def _head_too_large(self, data: bytes) -> bool:
        """Count the request's head; whether it is over MAX_HEAD_BYTES (the body after it is not counted)."""
        seen = self._head_tail + data
        end = seen.find(b"\r\n\r\n")
        if end >= 0:
            size = self._head_bytes - len(self._head_tail) + end + 4
            self._head_bytes, self._head_tail = 0, b""
            return size > MAX_HEAD_BYTES
        self._head_bytes += len(data)
        self._head_tail = seen[-3:]
        return self._head_bytes > MAX_HEAD_BYTES

    def _reading_started(self) -> None:
        """Bytes arrived: a request's head is on its way, unless a deadline already runs."""
        if self._read_deadline is None:
            self._set_deadline(self.header_timeout)

    def _reading_parsed(self, *, upgraded: bool, in_body: bool, in_head: bool) -> None:
        """After the parser took the bytes: switch to the body's deadline, or stop the clock."""
        if upgraded:  # a WebSocket now: no longer reading a request
            self._clear_deadline()
        elif in_body:
            if not self._reading_body:
                self._reading_body = True
                self._set_deadline(self.body_timeout + ANSWER_GRACE)
        elif in_head:
            if self._reading_body:  # a pipelined request's head after a body: the head's own deadline
                self._reading_body = False
                self._set_deadline(self.header_timeout)
        else:  # the request is all in
            self._clear_deadline()

    def _body_began(self) -> None:
        """A new request's head is complete: its body gets its own deadline (a pipelined one follows another's)."""
        self._reading_body = False

    def _answered_before_the_body(self) -> None:
        """The app answered while the body was still coming: the rest gets LINGER_SECONDS at most."""
        remaining = self.body_timeout
        if self._read_deadline is not None:
            remaining = self._read_deadline_at - self.loop.time()
        self._set_deadline(min(LINGER_SECONDS, remaining))

    def _set_deadline(self, seconds: float) -> None:
        """Start a deadline (in place of any running one; whether a body is being read stays as it is)."""
        if self._read_deadline is not None:
            self._read_deadline.cancel()
        self._read_deadline_at = self.loop.time() + seconds
        self._read_deadline = self.loop.call_later(seconds, self._read_timed_out)

    def _clear_deadline(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None
        self._reading_body = False

    def _read_timed_out(self) -> None:
        """Too slow: close. An app waiting for the body hears a disconnect (see disconnects.py)."""
        self._read_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


class SendDeadline:
    """A client that falls behind reading its answers has ``send_timeout`` seconds to catch up, then is reset.

    The clock starts when the transport pauses writing (its buffer passed the high-water
    mark: the socket's buffers are full and the client is not reading) or when the
    connection is closing with bytes still buffered; it stops when the buffer drains below
    the low-water mark (and, closing, when the connection is gone). It is a total, not an
    idle timer: a byte read now and then does not move it.
    """

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def __init__(self, *args: Any, send_timeout: float = SEND_TIMEOUT, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.send_timeout = send_timeout

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._send_deadline: asyncio.Handle | None = None
        self._writing_paused = False
        super().connection_made(transport)  # type: ignore[misc]
        if isinstance(self.transport, CoalescedWrites):  # a close by anyone starts the clock (below)
            self.transport.on_close = self._check_closing

    def pause_writing(self) -> None:
        self._writing_paused = True
        super().pause_writing()  # type: ignore[misc]
        self._falling_behind()

    def resume_writing(self) -> None:
        self._writing_paused = False
        super().resume_writing()  # type: ignore[misc]
        if not self._closing_unsent():
            self._stop_send_clock()

    # Every way a connection gets closed with bytes still buffered starts the clock: these, and any
    # other close of the transport (uvicorn's, when the app raises mid-answer) through its on_close.
    def data_received(self, data: bytes) -> None:  # a 400, a 431, or a bad request
        super().data_received(data)  # type: ignore[misc]
        self._check_closing()

    def on_response_complete(self) -> None:  # "Connection: close", or an answer on a closing connection
        super().on_response_complete()  # type: ignore[misc]
        self._check_closing()

    def timeout_keep_alive_handler(self) -> None:
        super().timeout_keep_alive_handler()  # type: ignore[misc]
        self._check_closing()

    def shutdown(self) -> None:
        super().shutdown()  # type: ignore[misc]
        self._check_closing()

    def _read_timed_out(self) -> None:
        super()._read_timed_out()  # type: ignore[misc]
        self._check_closing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_send_clock()
        super().connection_lost(exc)  # type: ignore[misc]

    def _closing_unsent(self) -> bool:
        return self.transport.is_closing() and self.transport.get_write_buffer_size() > 0

    def _check_closing(self) -> None:
        if self._closing_unsent():
            self._falling_behind()

    def _falling_behind(self) -> None:
        if self._send_deadline is None:
            self._send_deadline = self.loop.call_later(self.send_timeout, self._send_timed_out)

    def _stop_send_clock(self) -> None:
        if self._send_deadline is not None:
            self._send_deadline.cancel()
            self._send_deadline = None

    def _send_timed_out(self) -> None:
        """The client did not catch up: reset the connection (a close would wait for the buffer to drain)."""
        self._send_deadline = None
        if self.transport.get_protocol() is not self:  # a WebSocket now: its own protocol's business
            return
        if not (self._writing_paused or self._closing_unsent()):
            return
        client = self.transport.get_extra_info("peername")
        unsent = self.transport.get_write_buffer_size()
        logger.info("reset a connection from %s: %d bytes sent went unread for %gs", client, unsent, self.send_timeout)
        sock = self.transport.get_extra_info("socket")
        if sock is not None:  # no FIN queued behind unread bytes: a reset, and the kernel frees them too
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


class TimedH11Protocol(SendDeadline, BoundedPipelining, ReadDeadlines, H11Protocol):
    """uvicorn's pure-Python h11 protocol with the read and send deadlines; h11's states say where the request is."""

    def _parsable(self, data: bytes) -> int:
        """Nothing while a request is read and not yet answered: h11 would only buffer it."""
        return 0 if self.conn.their_state is h11.DONE else len(data)

    def _parse(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and self._refused_large_head(data):
            return
        self._reading_started()
        H11Protocol.data_received(self, data)
        state = self.conn.their_state
        self._reading_parsed(
            upgraded=self.transport.get_protocol() is not self,
            in_body=state is h11.SEND_BODY,
            in_head=state is h11.IDLE,
        )

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE:  # ready for the next request, whose first byte starts the clock
            self._clear_deadline()
        elif self.conn.their_state is h11.SEND_BODY:
            self._answered_before_the_body()
        self._release_held()

    def connection_lost(self, exc: Exception | None) -> None:
        self._clear_deadline()
        self._drop_held()
        super().connection_lost(exc)


class Part(Enum):
    """Which part of a request the httptools parser is in (it keeps no state one can ask for)."""

    BETWEEN = "between requests"
    HEAD = "request line and headers"
    BODY = "body"


@functools.cache
def _httptools_protocol() -> type[ReadDeadlines]:
    """:class:`TimedHttpToolsProtocol`, defined only where httptools is installed."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class TimedHttpToolsProtocol(SendDeadline, BoundedPipelining, ReadDeadlines, HttpToolsProtocol):
        """uvicorn's httptools protocol with read and send deadlines; the parser's callbacks say where a request is."""

        _part = Part.BETWEEN

        def _parsable(self, data: bytes) -> int:
            """Up to the head that would queue more than MAX_PIPELINED requests (httptools parses all it is given)."""
            return through_head_ends(self._parsed_tail, data, MAX_PIPELINED - len(self.pipeline))

        def _parse(self, data: bytes) -> None:
            if self._part is not Part.BODY and self._refused_large_head(data):
                return
            self._reading_started()
            HttpToolsProtocol.data_received(self, data)
            self._reading_parsed(
                upgraded=self.transport.get_protocol() is not self,
                in_body=self._part is Part.BODY,
                in_head=self._part is Part.HEAD,
            )

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._part = Part.HEAD

        def on_headers_complete(self) -> None:
            self._part = Part.BODY
            self._body_began()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._part = Part.BETWEEN
            super().on_message_complete()

        def on_response_complete(self) -> None:
            answered = getattr(self, "_answering", None)
            super().on_response_complete()
            if self._part is Part.BETWEEN:  # ready for the next request, whose first byte starts the clock
                self._clear_deadline()
            elif self._part is Part.BODY and answered is self.cycle:
                # the body still coming is the answered request's own; a body being read after
                # it belongs to a pipelined request, which keeps its own deadline
                self._answered_before_the_body()
            self._release_held()

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            self._answering = cycle
            super()._start_asgi_task(cycle, app)

        def connection_lost(self, exc: Exception | None) -> None:
            self._clear_deadline()
            self._drop_held()
            # uvicorn tells only the last request read that its client left; with requests
            # queued behind it, the one being answered would write to a closed transport.
            answering = getattr(self, "_answering", None)
            if answering is not None and not answering.response_complete:
                answering.disconnected = True
                answering.message_event.set()
            super().connection_lost(exc)

    TimedHttpToolsProtocol.__qualname__ = "TimedHttpToolsProtocol"  # pickled by name for serve --reload
    return TimedHttpToolsProtocol


def __getattr__(name: str) -> Any:
    """``protocols.TimedHttpToolsProtocol``: how ``serve --reload``'s child process finds the class it was given."""
    if name == "TimedHttpToolsProtocol":
        return _httptools_protocol()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def protocol_class(http: str = "auto") -> type[ReadDeadlines]:
    """The protocol for ``serve --http``: httptools when installed (``auto``), else h11."""
    if http not in HTTP_CHOICES:
        raise ValueError(f"unknown --http {http!r} — pass {', '.join(HTTP_CHOICES)}")
    has_httptools = importlib.util.find_spec("httptools") is not None
    if http == "httptools" and not has_httptools:
        raise ValueError("--http httptools needs the httptools package — pip install httptools, or pass --http h11")
    if http == "h11" or not has_httptools:
        return TimedH11Protocol
    return _httptools_protocol()


def event_loop(loop: str = "auto") -> str:
    """uvicorn's ``loop`` for ``serve --loop``: uvloop when installed (``auto``, as uvicorn decides), else asyncio."""
    if loop not in LOOP_CHOICES:
        raise ValueError(f"unknown --loop {loop!r} — pass {', '.join(LOOP_CHOICES)}")
    if loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise ValueError("--loop uvloop needs the uvloop package — pip install uvloop, or pass --loop asyncio")
    return loop
