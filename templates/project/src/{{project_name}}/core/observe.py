"""Every request observed once: an id (``X-Request-ID``), its route template, status and duration.

The id is the client's ``X-Request-ID`` when it sends a plausible one (a proxy's, so
one id follows a request through every hop), else a new one. It goes back on every
response, into ``scope["request_id"]`` and into every log line written while the
request runs (core/logformat.py). The route is the template the request matched
(``/queries/{feature}/{name}``), never the raw path, so the metrics and the logs
hold a bounded set of values whatever clients send.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Iterable
from contextvars import ContextVar

from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .metrics import Metrics

REQUEST_ID_HEADER = b"x-request-id"
# What a client may choose as its request id: short, and harmless in a log line or a header.
PLAUSIBLE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
UNMATCHED = "unmatched"  # the route of a request no route matched (a 404)

# The id of the request being handled, for log lines written on its behalf.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


class RouteTemplates:
    """Which route template a request matched.

    The router leaves the matched endpoint in the scope; requests refused before
    routing (no token, another site) are matched here, which costs more but is rare.
    """

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self.routes = list(routes)
        self._by_endpoint: dict[object, str] = {}
        for route in self.routes:
            if isinstance(route, Route):
                self._by_endpoint.setdefault(route.endpoint, route.path)
            elif isinstance(route, Mount):
                self._by_endpoint.setdefault(route.app, f"{route.path}/{{path}}")

    def of(self, scope: Scope) -> str:
        endpoint = scope.get("endpoint")
        if endpoint is not None:
            template = self._by_endpoint.get(endpoint)
            if template is not None:
                return template
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                return self._by_endpoint.get(getattr(route, "endpoint", getattr(route, "app", None)), UNMATCHED)
        return UNMATCHED


class ObserveRequests:
    """ASGI middleware, outermost: gives each request its id, then reports it to the metrics and the access log.

    ``access_log`` (the JSON log format's access lines) is None when uvicorn writes the
    access log itself (the text format).
    """

    def __init__(
        self, app: ASGIApp, *, routes: Iterable[BaseRoute], metrics: Metrics, access_log: logging.Logger | None = None
    ) -> None:
        self.app = app
        self.templates = RouteTemplates(routes)
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        id = _request_id(scope)
        scope["request_id"] = id
        header = (REQUEST_ID_HEADER, id.encode())
        status = 500  # unless a response starts: the app raised before answering
        reported = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, reported
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            elif not reported and not message.get("more_body", False):  # the last byte: counted before it is sent
                reported = True
                self._report(scope, status, time.perf_counter() - began)
            await send(message)

        token = request_id.set(id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if not reported:  # the app raised, or the client left mid-answer
                self._report(scope, status, time.perf_counter() - began)
            request_id.reset(token)

    def _report(self, scope: Scope, status: int, seconds: float) -> None:
        if not self.metrics.enabled and self.access_log is None:
            return
        route = self.templates.of(scope)
        method = scope["method"]
        self.metrics.observe_request(route, method, status, seconds)
        if self.access_log is not None:
            path = scope["path"]  # never the query string: it may carry what should not be logged
            fields = {"method": method, "path": path, "route": route, "status": status}
            self.access_log.info("%s %s %d", method, path, status, extra={**fields, "duration_ms": seconds * 1000})


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            given = value.decode("latin-1")
            if PLAUSIBLE_ID.fullmatch(given):
                return given
            break
    return f"{random.getrandbits(64):016x}"  # an id to find, not a secret: no need for the OS's randomness
