"""Connection limits for ``serve``: no client holds a connection it does not use.

uvicorn closes a connection that is idle *between* requests (``timeout_keep_alive``),
but not one that was never used, and not one that sends its request a byte at a time
(slowloris): every byte it receives resets the keep-alive timer. :class:`TimedH11Protocol`
adds what is missing: a fresh connection must start a request within the keep-alive
timeout, a request's headers must arrive within ``APP_HEADER_TIMEOUT`` seconds of its
first byte, and its body within ``APP_BODY_TIMEOUT`` seconds of its headers; otherwise
the connection is closed. Streaming a response (``/events``) is not reading, so it is
never cut. A request line and headers over 32 KiB get a 431, however they arrive (h11's
own limit catches only those that arrive in pieces).

The body's deadline is also kept where every HTTP protocol (h11, httptools) honours it:
:class:`BodyDeadline`, an ASGI middleware, gives the whole body ``APP_BODY_TIMEOUT``
seconds from the request's start, however it trickles in (a byte every two seconds
resets no timer), then answers 408 and closes. A ``Content-Length`` of more digits than
any body this app takes gets a 413 at once. The 503 of a full server carries
``Retry-After`` (:func:`busy_answers_say_when_to_retry`).

Settings (environment): ``APP_MAX_CONNECTIONS`` (connections and requests at once per
process; more get a 503), ``APP_HEADER_TIMEOUT``, ``APP_BODY_TIMEOUT`` and
``APP_KEEP_ALIVE`` (seconds).
"""

from __future__ import annotations

import asyncio
import os
import resource
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import h11
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from .proxies import proxy_options

MAX_CONNECTIONS = 1000
HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 30.0
KEEP_ALIVE = 5
MAX_HEAD_BYTES = 32 * 1024  # a request line and its headers (h11 alone checks only those arriving in pieces)
TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
SPARE_FILES = 64  # descriptors beyond the connections: the database, logs, the listening socket
MAX_LENGTH_DIGITS = 12  # a Content-Length of more digits (a terabyte) is no body this app reads
BUSY_RETRY_AFTER = 5  # seconds a client turned away by a full server is told to wait


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with deadlines for reading a request (see the module's docstring)."""

    def __init__(
        self, *args: Any, header_timeout: float = HEADER_TIMEOUT, body_timeout: float = BODY_TIMEOUT, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._read_deadline: asyncio.TimerHandle | None = None
        self._reading_body = False
        self._head_bytes = 0  # of the request line and headers read so far
        self._head_tail = b""  # the last bytes read, in case the blank line ending the headers is split
        # uvicorn's keep-alive timer starts only after a first response; start it now too.
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and self._head_too_large(data):
            self.transport.write(TOO_LARGE)
            self.transport.close()
            return
        if self._read_deadline is None:
            self._set_deadline(self.header_timeout)
        super().data_received(data)
        state = self.conn.their_state
        if self.transport.get_protocol() is not self:  # upgraded to a WebSocket: no longer reading a request
            self._clear_deadline()
        elif state is h11.SEND_BODY and not self._reading_body:
            self._reading_body = True
            self._set_deadline(self.body_timeout)
        elif state is not h11.SEND_BODY and state is not h11.IDLE:  # the request is all in
            self._clear_deadline()

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

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE:  # ready for the next request, whose first byte starts the clock
            self._clear_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._clear_deadline()
        super().connection_lost(exc)

    def _set_deadline(self, seconds: float) -> None:
        self._clear_deadline()
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


class BodyDeadline:
    """ASGI middleware: the request's body must be all in ``seconds`` after the request started.

    A total deadline, not an idle timeout: a client dripping a byte now and then is cut off
    as surely as one that stops. When it passes, the client gets a 408 (if nothing was
    answered yet) and the connection is closed; the app, still waiting for the body, hears a
    disconnect (one INFO line, disconnects.py). Once the body is in, ``receive`` waits
    as long as the app likes (a stream listens on it for the client leaving).
    """

    def __init__(self, app: ASGIApp, *, seconds: float = BODY_TIMEOUT) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _absurd_length(scope):
            await _answer_and_close(send, 413, b"request body is far too large")
            return
        deadline = asyncio.get_running_loop().time() + self.seconds
        body_in = False  # the whole body was received
        answered = False  # the client got a response start (the app's, or our 408)
        cut_off = False

        async def timed_receive() -> Message:
            nonlocal body_in, answered, cut_off
            if body_in:
                return await receive()
            if cut_off:
                return {"type": "http.disconnect"}
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                cut_off = True
                if not answered:
                    answered = True
                    await _answer_and_close(send, 408, b"the request body took too long")
                return {"type": "http.disconnect"}
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_in = True
            return message

        async def send_unless_cut_off(message: Message) -> None:
            nonlocal answered
            if cut_off:
                return  # the client was answered 408 and is gone
            if message["type"] == "http.response.start":
                answered = True
            await send(message)

        await self.app(scope, timed_receive, send_unless_cut_off)


def _absurd_length(scope: Scope) -> bool:
    """Whether the request declares a Content-Length no body here could have (or one that is no number)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            value = value.strip()
            return len(value) > MAX_LENGTH_DIGITS or not value.isdigit()
    return False


async def _answer_and_close(send: Send, status: int, text: bytes) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(text)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": text})


def body_timeout_from_env(environ: Mapping[str, str] = os.environ) -> float:
    """``APP_BODY_TIMEOUT``: seconds a request's whole body may take (ValueError naming it if malformed)."""
    return _number(environ, "APP_BODY_TIMEOUT", float, BODY_TIMEOUT)


async def _busy(scope: Scope, receive: Receive, send: Send) -> None:
    """What a full server answers: 503, and when to come back."""
    text = b"Service Unavailable: too many connections, try again shortly"
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(text)).encode()),
        (b"retry-after", str(BUSY_RETRY_AFTER).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": text})


def busy_answers_say_when_to_retry() -> None:
    """Give uvicorn's over-the-limit 503 a ``Retry-After``, whichever HTTP protocol runs.

    uvicorn answers a connection over ``limit_concurrency`` with its own ASGI app
    ``service_unavailable`` before ours runs, and offers no option for its headers; each of
    its protocol modules looks that app up by name, so this names ours there instead.
    """
    import importlib

    for module in ("uvicorn.protocols.http.h11_impl", "uvicorn.protocols.http.httptools_impl"):
        try:
            protocol = importlib.import_module(module)
        except ImportError:  # httptools not installed
            continue
        if hasattr(protocol, "service_unavailable"):
            protocol.service_unavailable = _busy


def server_options(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """uvicorn's settings for ``serve``: the protocol with read deadlines, the connection limits, the proxies."""
    max_connections = _number(environ, "APP_MAX_CONNECTIONS", int, MAX_CONNECTIONS)
    protocol = partial(
        TimedH11Protocol,
        header_timeout=_number(environ, "APP_HEADER_TIMEOUT", float, HEADER_TIMEOUT),
        body_timeout=_number(environ, "APP_BODY_TIMEOUT", float, BODY_TIMEOUT),
    )
    raise_open_files_limit(max_connections + SPARE_FILES)
    busy_answers_say_when_to_retry()
    return proxy_options(environ) | {
        "http": protocol,  # uvicorn calls it as it would the protocol class
        "limit_concurrency": max_connections,
        "timeout_keep_alive": _number(environ, "APP_KEEP_ALIVE", int, KEEP_ALIVE),
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
    }


def raise_open_files_limit(wanted: int) -> None:
    """Let this process open ``wanted`` files if the system allows it (the soft limit is often 1,024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _number(environ: Mapping[str, str], name: str, kind: Callable[[str], Any], default: Any) -> Any:
    raw = environ.get(name, "")
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name} must be a positive number, not {raw!r}") from None
    if not value > 0:
        raise ValueError(f"{name} must be a positive number, not {raw!r}")
    return value
