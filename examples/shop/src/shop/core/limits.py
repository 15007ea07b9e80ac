"""Connection limits for ``serve``: no client holds a connection it does not use.

The read deadlines and the 431 for an oversized head live in the HTTP protocol classes
(protocols.py), for both of uvicorn's parsers; this module reads their settings and
uvicorn's connection limits from the environment.

The body's deadline is also kept where every HTTP protocol (h11, httptools) honours it:
:class:`BodyDeadline`, an ASGI middleware, gives the whole body ``APP_BODY_TIMEOUT``
seconds from the request's start, however it trickles in (a byte every two seconds
resets no timer), then answers 408 and closes. A ``Content-Length`` of more digits than
any body this app takes gets a 413 at once. The 503 of a full server carries
``Retry-After`` (:func:`busy_answers_say_when_to_retry`).

Settings (environment): ``APP_MAX_CONNECTIONS`` (connections and requests at once per
process; more get a 503), ``APP_HEADER_TIMEOUT``, ``APP_BODY_TIMEOUT``,
``APP_SEND_TIMEOUT`` (a client not reading its answers) and ``APP_KEEP_ALIVE`` (seconds).
"""

from __future__ import annotations

import asyncio
import os
import resource
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .proxies import proxy_options

HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 30.0
SEND_TIMEOUT = 30.0  # seconds a client that fell behind reading its answers has to catch up
MAX_HEAD_BYTES = 32 * 1024  # a request line and its headers
MAX_CONNECTIONS = 1000
KEEP_ALIVE = 5
SPARE_FILES = 64  # descriptors beyond the connections: the database, logs, the listening socket
MAX_LENGTH_DIGITS = 12  # a Content-Length of more digits (a terabyte) is no body this app reads
BUSY_RETRY_AFTER = 5  # seconds a client turned away by a full server is told to wait


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


def server_options(environ: Mapping[str, str] = os.environ, *, http: str = "auto") -> dict[str, Any]:
    """uvicorn's settings for ``serve``: the protocol (``--http``) with read deadlines, and the connection limits."""
    from .protocols import protocol_class  # uvicorn's protocol modules: only a process that serves loads them

    max_connections = _number(environ, "APP_MAX_CONNECTIONS", int, MAX_CONNECTIONS)
    protocol = partial(
        protocol_class(http),
        header_timeout=_number(environ, "APP_HEADER_TIMEOUT", float, HEADER_TIMEOUT),
        body_timeout=_number(environ, "APP_BODY_TIMEOUT", float, BODY_TIMEOUT),
        send_timeout=_number(environ, "APP_SEND_TIMEOUT", float, SEND_TIMEOUT),
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
