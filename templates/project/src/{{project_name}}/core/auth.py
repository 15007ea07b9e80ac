"""Access control with ``APP_API_TOKEN``: a bearer token for programs, a login for people.

Unset, the app is open (fine on 127.0.0.1, which is where ``serve`` binds by
default). Set (one token, or several separated by commas while you rotate them),
the API (``/commands``, ``/queries``, ``/events``, ``/mcp``) needs
``Authorization: Bearer <token>`` and the pages need a login with a token, which
starts a session kept on the server (sessions.py). ``/healthz``, ``/login`` and
``/static`` stay open; ``/metrics`` checks its own token, this one or
``APP_METRICS_TOKEN`` (metrics.py). Tokens are compared in constant time and never
written anywhere; guessing them is rate-limited (ratelimit.py), and a token in the URL
(``?access_token=``), where logs and browser histories keep it, is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import os
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import parse_qsl, quote

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .forms import RequestTooLarge, read_form
from .log import LogUnreachable
from .pages import APP_NAME, Pages
from .ratelimit import AttemptLimiter, client_address
from .sessions import STILL_ALLOWED, Sessions

TOKEN_VARIABLE = "APP_API_TOKEN"
METRICS_TOKEN_VARIABLE = "APP_METRICS_TOKEN"
SESSION_COOKIE = f"{APP_NAME}_session"
URL_TOKEN_PARAMETER = "access_token"  # RFC 6750's name for a bearer token in the URL
API_PREFIXES = ("/commands", "/queries", "/events", "/mcp")
OPEN_PATHS = ("/healthz", "/login", "/logout", "/favicon.ico")
OPEN_PREFIXES = ("/static/",)
# Paths that check a bearer token themselves: /metrics also takes APP_METRICS_TOKEN (core/metrics.py).
SELF_GUARDED_PATHS = ("/metrics",)
# Beyond loopback a token must be at least this long, of at least this many different characters,
# and not repeat itself: about this many bits by the estimate in token_bits.
MIN_TOKEN_LENGTH = 32
MIN_TOKEN_SYMBOLS = 6
MIN_TOKEN_BITS = 25
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


def open_bind_refusal(
    host: str, tokens: Sequence[str], *, insecure: bool, metrics_tokens: Sequence[str] = ()
) -> str | None:
    """Why serving on ``host`` is refused (no token or a weak one, not loopback), or None if it is fine.

    ``APP_METRICS_TOKEN`` opens ``/metrics``, so a weak one is refused as a weak API token is.
    """
    if is_loopback(host):
        return None
    if tokens or metrics_tokens:
        refusal = weak_token_refusal(host, tokens) or weak_token_refusal(host, metrics_tokens, METRICS_TOKEN_VARIABLE)
        if refusal is not None or tokens:
            return refusal
    if insecure:
        return None
    return (
        f"refusing to serve on {host} without {TOKEN_VARIABLE}: anyone who can reach it could send commands"
        f" — set {TOKEN_VARIABLE} to a long random secret to require it, or pass --insecure to serve it open anyway"
    )


def weak_token_refusal(host: str, tokens: Sequence[str], variable: str = TOKEN_VARIABLE) -> str | None:
    """Why a token is too weak to guard ``host`` (short, of few distinct characters, or repeating
    itself), or None.

    A token that can be guessed, from the network or offline from a copy of the sessions
    (which hold a keyed hash of it), guards nothing; a random one of 32 characters cannot.
    """
    for number, token in enumerate(tokens, start=1):
        bits = token_bits(token)
        if len(token) < MIN_TOKEN_LENGTH or len(set(token)) < MIN_TOKEN_SYMBOLS or bits < MIN_TOKEN_BITS:
            which = f"token {number} of {variable}" if len(tokens) > 1 else variable
            shape = f"{len(token)} characters, {len(set(token))} different"
            if bits < MIN_TOKEN_BITS and len(token) >= MIN_TOKEN_LENGTH:
                shape += f", repeating itself: about {bits:.0f} bits"
            return (
                f"refusing to serve on {host} with a weak {which} ({shape})"
                f" — use {MIN_TOKEN_LENGTH} or more random characters:"
                " python3 -c 'import secrets; print(secrets.token_hex(32))'"
            )
    return None


def token_bits(token: str) -> float:
    """A rough, low estimate of a token's entropy in bits: its different pairs of neighbouring
    characters, each worth log2(its different characters). A repeated pattern counts once:
    ``"abcdef" * 6`` is 6 pairs of 6 characters, about 16 bits; 32 random hex digits about 110
    (never below 70)."""
    pairs = {token[index : index + 2] for index in range(len(token) - 1)}
    return len(pairs) * math.log2(max(len(set(token)), 1))


class Tokens:
    """Checks tokens, and names each one by a fingerprint that sessions record instead of the token."""

    def __init__(self, tokens: Sequence[str]) -> None:
        if not tokens:
            raise ValueError("at least one token is needed")
        self._digests = [_digest(token) for token in tokens]
        self.fingerprints = frozenset(_fingerprint(token) for token in tokens)

    def __repr__(self) -> str:
        return f"Tokens({len(self._digests)} accepted)"

    def accepts(self, candidate: str) -> bool:
        """Whether ``candidate`` is one of the tokens (constant time: every token is compared)."""
        return _matches_any(_digest(candidate), self._digests)

    def fingerprint(self, token: str) -> str:
        """What a session records of the token it was started with (which must be accepted)."""
        if not self.accepts(token):
            raise ValueError("not an accepted token")
        return _fingerprint(token)


class RequireToken:
    """ASGI middleware: lets a request through only with a valid token or login session.

    It records how the request got in as ``scope["access"]``: ``"token"``,
    ``"session"``, or ``"anonymous"`` for the open paths (``/healthz`` then
    tells less). Wrong bearer tokens count towards the ``limiter``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        tokens: Tokens,
        sessions: Sessions,
        limiter: AttemptLimiter,
        refuse: Callable[[Request, int, str], Response],
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.sessions = sessions
        self.limiter = limiter
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._let_in(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _let_in(self, scope: Scope) -> Response | None:
        """Set ``scope["access"]`` and return None, or return the refusal."""
        request = Request(scope)
        path = scope["path"]
        if path in SELF_GUARDED_PATHS:  # it checks its own tokens (metrics.py)
            scope["access"] = "anonymous"
            return None
        bearer = bearer_token(Headers(scope=scope))
        if _token_in_url(scope, self.tokens):
            message = "send the token in an Authorization: Bearer header, never in the URL (URLs are logged)"
            return self.refuse(request, 400, message)
        if bearer is not None:
            client = client_address(scope)
            right = self.tokens.accepts(bearer)
            wait = self.limiter.token_wait(client, right=right)
            if wait is not None:
                return too_many_attempts(self.refuse, request, wait)
            if not right:
                self.limiter.failed(client)
                return self._refuse(request, wrong_token=True)
            scope["access"] = "token"
            return None
        try:
            session = self._valid_session(request)
        except LogUnreachable as exc:  # the sessions are in the database: nobody is let in on a guess
            return self.refuse(request, 503, str(exc))
        if session and not _is_token_only(path):
            scope["access"] = "session"
            cookie = request.cookies.get(SESSION_COOKIE)
            scope[STILL_ALLOWED] = lambda: self._still_signed_in(cookie)  # a stream ends with its session
        elif path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            scope["access"] = "anonymous"
        else:
            return self._refuse(request, wrong_token=False)
        return None

    def _still_signed_in(self, cookie: str | None) -> bool:
        try:
            return self.sessions.valid(cookie, self.tokens.fingerprints)
        except LogUnreachable:
            return False  # nobody is let in on a guess

    def _valid_session(self, request: Request) -> bool:
        cookie = request.cookies.get(SESSION_COOKIE)
        return cookie is not None and self.sessions.valid(cookie, self.tokens.fingerprints)

    def _refuse(self, request: Request, *, wrong_token: bool) -> Response:
        path, query = request.scope["path"], request.scope.get("query_string", b"").decode("latin-1")
        is_api = _under(path, API_PREFIXES)
        if not is_api and not wrong_token and "text/html" in request.headers.get("accept", ""):
            target = path + (f"?{query}" if query else "")
            return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
        error = ', error="invalid_token"' if wrong_token else ""
        message = "this token is not accepted" if wrong_token else "send Authorization: Bearer <APP_API_TOKEN>"
        response = self.refuse(request, 401, message)
        response.headers["www-authenticate"] = f'Bearer realm="{APP_NAME}"{error}'
        return response


def too_many_attempts(refuse: Callable[[Request, int, str], Response], request: Request, wait: int) -> Response:
    """The 429 for a client over its allowance of failed attempts."""
    response = refuse(request, 429, f"too many wrong tokens: try again in {wait} seconds")
    response.headers["retry-after"] = str(wait)
    return response


def auth_routes(tokens: Tokens, sessions: Sessions, limiter: AttemptLimiter, pages: Pages) -> list[BaseRoute]:
    """``/login`` (a form asking for a token) and ``/logout`` (this browser, or every session with ``everywhere``)."""

    async def login(request: Request) -> Response:
        target = safe_next(request.query_params.get("next", "/"))
        if request.method == "GET":
            return pages.render("core/login.html", request=request, next=target, error=None)
        client = client_address(request.scope)
        wait = limiter.retry_after(client, overall=False)
        if wait is not None:
            return _login_limited(request, target, wait)
        try:
            form = await read_form(request)
        except RequestTooLarge:
            return pages.render("core/login.html", 413, request=request, next=target, error="That is far too long.")
        target = safe_next(form.get("next", target))
        token = form.get("token", "").strip()
        right = bool(token) and tokens.accepts(token)
        wait = None if right else limiter.retry_after(client)  # the cap on everyone slows wrong tokens only
        if wait is not None:
            return _login_limited(request, target, wait)
        if not right:
            if token:
                limiter.failed(client)
            error = "That token is not right." if token else "Please enter the token."
            return pages.render("core/login.html", 401, request=request, next=target, error=error)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            sessions.start(tokens.fingerprint(token), tokens.fingerprints),
            max_age=sessions.seconds,
            path="/",
            httponly=True,
            samesite="lax",
            secure=request.scope.get("scheme") == "https",
        )
        return response

    def _login_limited(request: Request, target: str, wait: int) -> Response:
        error = f"Too many wrong tokens. Try again in {wait} seconds."
        response = pages.render("core/login.html", 429, request=request, next=target, error=error)
        response.headers["retry-after"] = str(wait)
        return response

    async def logout(request: Request) -> Response:
        try:
            form = await read_form(request)
        except RequestTooLarge:
            form = {}
        if form.get("everywhere") and request.scope.get("access") in ("session", "token"):
            sessions.end_all()
        else:
            sessions.end(request.cookies.get(SESSION_COOKIE))
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


def _token_in_url(scope: Scope, tokens: Tokens) -> bool:
    """Whether the query names an ``access_token`` or holds an accepted token as any value."""
    query = scope.get("query_string", b"").decode("latin-1")
    pairs = parse_qsl(query, keep_blank_values=True)
    return any(name.lower() == URL_TOKEN_PARAMETER or (value and tokens.accepts(value)) for name, value in pairs)


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


def _fingerprint(token: str) -> str:
    """A short keyed hash naming a token: it tells which token a session used, and cannot be used as one."""
    return hmac.new(token.encode(), b"session owner", hashlib.sha256).hexdigest()[:32]
