"""Access control with ``APP_API_TOKEN``: a bearer token for programs, a login for people.

Unset, the app is open (fine on 127.0.0.1, which is where ``serve`` binds by
default). Set (one token, or several separated by commas while you rotate them),
the API (``/commands``, ``/queries``, ``/events``, ``/mcp``) needs
``Authorization: Bearer <token>`` and the pages need a login with a token, which
leaves a signed session cookie. ``/healthz``, ``/login`` and ``/static`` stay open;
``/metrics`` checks its own token, this one or ``APP_METRICS_TOKEN`` (metrics.py).
Tokens are compared in constant time and never written anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import time
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import quote

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .forms import RequestTooLarge, read_form
from .pages import APP_NAME, Pages

TOKEN_VARIABLE = "APP_API_TOKEN"
SESSION_COOKIE = f"{APP_NAME}_session"
SESSION_SECONDS = 7 * 24 * 3600
API_PREFIXES = ("/commands", "/queries", "/events", "/mcp")
OPEN_PATHS = ("/healthz", "/login", "/logout", "/favicon.ico")
OPEN_PREFIXES = ("/static/",)
# Paths that check a bearer token themselves: /metrics also takes APP_METRICS_TOKEN (core/metrics.py).
SELF_GUARDED_PATHS = ("/metrics",)
# Event streams are opened by the pages' own script, which carries the session cookie, not a token.
SESSION_API_PREFIXES = ("/events",)


def tokens_from_env(environ: Mapping[str, str] = os.environ, variable: str = TOKEN_VARIABLE) -> tuple[str, ...]:
    """The accepted tokens: ``APP_API_TOKEN`` (or ``variable``) split on commas, blanks dropped."""
    return tuple(token.strip() for token in environ.get(variable, "").split(",") if token.strip())


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the app reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def open_bind_refusal(host: str, tokens: Sequence[str], *, insecure: bool) -> str | None:
    """Why serving on ``host`` is refused (no token, not loopback, no ``--insecure``), or None if it is fine."""
    if tokens or insecure or is_loopback(host):
        return None
    return (
        f"refusing to serve on {host} without {TOKEN_VARIABLE}: anyone who can reach it could send commands"
        f" — set {TOKEN_VARIABLE} to a long random secret to require it, or pass --insecure to serve it open anyway"
    )


class Tokens:
    """Checks tokens and issues and checks login sessions signed with them.

    A session is signed with a key derived from the token that was used to log in,
    so it stays valid while that token is accepted, and ends when the token is
    rotated out. Every process serving the app accepts it; nothing is stored.
    """

    def __init__(self, tokens: Sequence[str], *, session_seconds: int = SESSION_SECONDS) -> None:
        if not tokens:
            raise ValueError("at least one token is needed")
        self._digests = [_digest(token) for token in tokens]
        self._session_keys = [hmac.new(token.encode(), b"session key", hashlib.sha256).digest() for token in tokens]
        self.session_seconds = session_seconds

    def __repr__(self) -> str:
        return f"Tokens({len(self._digests)} accepted)"

    def accepts(self, candidate: str) -> bool:
        """Whether ``candidate`` is one of the tokens (constant time: every token is compared)."""
        return _matches_any(_digest(candidate), self._digests)

    def new_session(self, token: str, now: float | None = None) -> str:
        """A session cookie value for someone who logged in with ``token`` (which must be accepted)."""
        key = self._session_keys[self._index(token)]
        issued = str(int(time.time() if now is None else now))
        return f"{issued}.{_sign(key, issued)}"

    def valid_session(self, value: str, now: float | None = None) -> bool:
        issued, _, signature = value.partition(".")
        if not issued.isdigit() or not signature:
            return False
        age = (time.time() if now is None else now) - int(issued)
        if not 0 <= age <= self.session_seconds:
            return False
        return _matches_any(signature.encode(), [_sign(key, issued).encode() for key in self._session_keys])

    def _index(self, token: str) -> int:
        digest = _digest(token)
        for index, known in enumerate(self._digests):
            if hmac.compare_digest(digest, known):
                return index
        raise ValueError("not an accepted token")


class RequireToken:
    """ASGI middleware: lets a request through only with a valid token or login session.

    It records how the request got in as ``scope["access"]``: ``"token"``,
    ``"session"``, or ``"anonymous"`` for the open paths (``/healthz`` then
    tells less).
    """

    def __init__(self, app: ASGIApp, *, tokens: Tokens, refuse: Callable[[Request, int, str], Response]) -> None:
        self.app = app
        self.tokens = tokens
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        path = scope["path"]
        bearer = bearer_token(Headers(scope=scope))
        session = request.cookies.get(SESSION_COOKIE, "")
        if bearer is not None and self.tokens.accepts(bearer):
            scope["access"] = "token"
        elif bearer is None and session and self.tokens.valid_session(session) and not _is_token_only(path):
            scope["access"] = "session"
        elif path in OPEN_PATHS or path in SELF_GUARDED_PATHS or path.startswith(OPEN_PREFIXES):
            scope["access"] = "anonymous"
        else:
            await self._refuse(request, bearer is not None)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refuse(self, request: Request, wrong_token: bool) -> Response:
        is_api = _under(request.url.path, API_PREFIXES)
        if not is_api and not wrong_token and "text/html" in request.headers.get("accept", ""):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
        error = ', error="invalid_token"' if wrong_token else ""
        message = "this token is not accepted" if wrong_token else "send Authorization: Bearer <APP_API_TOKEN>"
        response = self.refuse(request, 401, message)
        response.headers["www-authenticate"] = f'Bearer realm="{APP_NAME}"{error}'
        return response


def auth_routes(tokens: Tokens, pages: Pages) -> list[BaseRoute]:
    """``/login`` (a form asking for a token) and ``/logout``."""

    async def login(request: Request) -> Response:
        target = safe_next(request.query_params.get("next", "/"))
        if request.method == "GET":
            return pages.render("core/login.html", request=request, next=target, error=None)
        try:
            form = await read_form(request)
        except RequestTooLarge:
            return pages.render("core/login.html", 413, request=request, next=target, error="That is far too long.")
        target = safe_next(form.get("next", target))
        token = form.get("token", "").strip()
        if not token or not tokens.accepts(token):
            error = "That token is not right." if token else "Please enter the token."
            return pages.render("core/login.html", 401, request=request, next=target, error=error)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            tokens.new_session(token),
            max_age=tokens.session_seconds,
            path="/",
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(_: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
        return response

    return [
        Route("/login", login, methods=["GET", "POST"], name="login"),
        Route("/logout", logout, methods=["POST"], name="logout"),
    ]


def safe_next(target: str) -> str:
    """Where to go after logging in: a path on this site only, never another site.

    Browsers read ``/\\host`` as ``//host`` and drop tabs and newlines from URLs, so
    a path with a backslash or a control character is refused too.
    """
    if not target.startswith("/") or target.startswith("//") or any(c < " " or c == "\\" for c in target):
        return "/"
    return target


def bearer_token(headers: Headers) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if there is one."""
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip()


def _under(path: str, prefixes: Sequence[str]) -> bool:
    return any(path == prefix or path.startswith(f"{prefix}/") for prefix in prefixes)


def _is_token_only(path: str) -> bool:
    return _under(path, API_PREFIXES) and not _under(path, SESSION_API_PREFIXES)


def _matches_any(candidate: bytes, known: Sequence[bytes]) -> bool:
    """Compare with every known value, in constant time, without stopping at a match."""
    matched = False
    for value in known:
        matched |= hmac.compare_digest(candidate, value)
    return matched


def _digest(token: str) -> bytes:
    """Tokens are compared as SHA-256 digests: equal lengths, so the time taken says nothing."""
    return hashlib.sha256(token.encode()).digest()


def _sign(key: bytes, text: str) -> str:
    mac = hmac.new(key, text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")
