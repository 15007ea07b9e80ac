"""Browser-facing defences: security headers on every response, and no cross-origin form posts.

Cross-origin protection follows Go 1.25's ``http.CrossOriginProtection``: a
state-changing request is refused when the browser says it came from another site
(``Sec-Fetch-Site``), or when its ``Origin`` is not this host. Requests with neither
header (curl, scripts, old browsers) pass: they carry no one else's cookies.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .headers import origin_host

# No inline scripts, styles or handlers anywhere: pages load /static/app.css and /static/app.js.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
}
_RAW_SECURITY_HEADERS = [(name.encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CROSS_ORIGIN_MESSAGE = "Refused: this request came from another site. Send the form from this app's own pages."


def add_security_headers(headers: MutableHeaders) -> None:
    """Set every security header the response does not set itself."""
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)


class SecurityHeaders:
    """ASGI middleware: :data:`SECURITY_HEADERS` on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [header for header in _RAW_SECURITY_HEADERS if header[0] not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def cross_origin(method: str, headers: Headers) -> bool:
    """Whether a browser sent this state-changing request from another origin."""
    if method in SAFE_METHODS:
        return False
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    origin = headers.get("origin")
    if origin is None:
        return False
    return origin_host(origin) != headers.get("host", "").lower()


class CrossOriginProtection:
    """ASGI middleware: refuses cross-origin state-changing requests before the app sees them.

    ``exempt`` lists ``(method, path)`` pairs left to their own defence; none by default.
    ``POST /commands`` is checked too, although it takes only ``application/json`` (which
    a browser sends to another origin only after a preflight this app never approves):
    a browser bug or a relaxed content-type check must not be all that stands in the way.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        refuse: Callable[[Request, int, str], Response],
        exempt: Collection[tuple[str, str]] = (),
    ) -> None:
        self.app = app
        self.refuse = refuse
        self.exempt = frozenset(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and (scope["method"], scope["path"]) not in self.exempt
            and cross_origin(scope["method"], Headers(scope=scope))
        ):
            response = self.refuse(Request(scope), 403, CROSS_ORIGIN_MESSAGE)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
