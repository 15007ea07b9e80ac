"""Who may come in once users exist: a signed-in user, or a program with an API token.

Every page needs a session (a browser without one is sent to ``/login``); the JSON
API (``/commands``, ``/queries``, ``/mcp``) needs ``Authorization: Bearer`` with
``APP_API_TOKEN`` (the operator's token) or a user's own API token (made on
``/account``, stored as its digest, revocable; the request then has that user).
A user's API token is for programs: it opens the API and ``/events`` only, never a
page, the account, the admins' pages or the mailbox (403), so a leaked one cannot
make more tokens, sign its owner out or manage users. The sign-in, registration and
reset pages, ``/healthz`` and the static files stay open. The signed-in user is
``request.scope["user"]`` (``current_user(request)``), without the password hash.

Wrong bearer tokens are counted per client address (10 a minute) and, for wrong ones
only, over all addresses together: a right token is refused only when its own address
is over its allowance, never because others sent wrong ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.auth import SELF_GUARDED_PATHS, SESSION_COOKIE, Tokens, bearer_token, too_many_attempts
from ..core.log import LogUnreachable
from ..core.metrics import metrics_tokens
from ..core.pages import APP_NAME
from ..core.projections import ProjectionsUnavailable
from ..core.ratelimit import AttemptLimiter, client_address
from ..core.sessions import STILL_ALLOWED
from .accounts import SESSION_SECONDS, Accounts

API_PREFIXES = ("/commands", "/queries", "/mcp")
# Where a user's API token is taken: the API, its description, the event stream and the health check.
TOKEN_PREFIXES = (*API_PREFIXES, "/events")
TOKEN_PATHS = ("/healthz", "/openapi.json")
NOT_FOR_TOKENS = "an API token opens /commands, /queries, /mcp and /events only: sign in for the pages"
OPEN_PATHS = ("/healthz", "/login", "/logout", "/register", "/password-reset", "/favicon.ico", "/dev/mailbox")
OPEN_PREFIXES = ("/static/",)
USER_COOKIE = SESSION_COOKIE


def current_user(request: Request) -> dict[str, Any] | None:
    """The signed-in user of this request (None for a program with a token, or an open page)."""
    return request.scope.get("user")


class RequireUser:
    """ASGI middleware: sets ``scope["access"]`` (``session``, ``token``, ``anonymous``) and ``scope["user"]``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        accounts: Accounts,
        tokens: Sequence[str],
        refuse: Callable[[Request, int, str], Response],
        limiter: AttemptLimiter | None = None,
    ) -> None:
        self.app = app
        self.accounts = accounts
        self.tokens = Tokens(tokens) if tokens else None
        self.metrics_tokens = metrics_tokens(tokens)  # APP_API_TOKEN's and APP_METRICS_TOKEN's
        self.refuse = refuse
        self.limiter = limiter or AttemptLimiter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope["user"] = None
        refusal = self._let_in(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        if scope.get("session_extended"):
            send = _with_cookie_renewed(send, Request(scope).cookies[USER_COOKIE], scope.get("scheme") == "https")
        if scope.get("access") in ("session", "token") and not scope["path"].startswith(OPEN_PREFIXES):
            send = _kept_private(send)
        await self.app(scope, receive, send)

    def _let_in(self, scope: Scope) -> Response | None:
        request = Request(scope)
        path = scope["path"]
        if path in SELF_GUARDED_PATHS:
            return self._metrics_access(request)
        bearer = bearer_token(Headers(scope=scope))
        if bearer is not None:
            return self._check_token(request, bearer)
        try:
            found = self.accounts.session_user(request.cookies.get(USER_COOKIE))
        except (LogUnreachable, ProjectionsUnavailable) as exc:  # sessions are in the database: no guessing
            if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
                found = None
            else:
                return _unavailable(self.refuse, request, str(exc))
        if found is not None and not _under(path, API_PREFIXES):
            scope["access"], scope["session"], scope["user"] = "session", found.id, found.user
            scope["session_extended"] = found.extended
            cookie = request.cookies.get(USER_COOKIE)
            scope[STILL_ALLOWED] = lambda: self._still_in(self.accounts.session_user, cookie)  # ends /events
            return None
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            scope["access"] = "anonymous"
            return None
        return self._refuse(request)

    def _metrics_access(self, request: Request) -> Response | None:
        """``/metrics`` checks ``APP_API_TOKEN`` or ``APP_METRICS_TOKEN`` itself; without either it
        would be open to anyone, so here it needs a bearer for it to check, or a signed-in admin."""
        if self.metrics_tokens and bearer_token(Headers(scope=request.scope)) is not None:
            request.scope["access"] = "anonymous"  # the endpoint checks the token
            return None
        try:
            found = self.accounts.session_user(request.cookies.get(USER_COOKIE))
        except (LogUnreachable, ProjectionsUnavailable) as exc:
            return _unavailable(self.refuse, request, str(exc))
        if found is not None and found.user["role"] == "admin":
            request.scope["access"], request.scope["user"] = "session", found.user
            return None
        return self._refuse(request)

    def _check_token(self, request: Request, bearer: str) -> Response | None:
        client = client_address(request.scope)
        wait = self.limiter.retry_after(client, overall=False)  # this address's own wrong tokens
        if wait is not None:
            return too_many_attempts(self.refuse, request, wait)
        if self.tokens is not None and self.tokens.accepts(bearer):  # the operator's
            request.scope["access"] = "token"
            return None
        try:
            user = self.accounts.token_user(bearer)
        except (LogUnreachable, ProjectionsUnavailable) as exc:
            return _unavailable(self.refuse, request, str(exc))
        if user is None:
            # The cap on all addresses together slows wrong tokens only: many addresses sending
            # wrong ones must never lock a right one out (a right one is let through above).
            wait = self.limiter.retry_after(client)
            if wait is not None:
                return too_many_attempts(self.refuse, request, wait)
            self.limiter.failed(client)
            response = self.refuse(request, 401, "this token is not accepted")
            response.headers["www-authenticate"] = f'Bearer realm="{APP_NAME}", error="invalid_token"'
            return response
        if not (_under(request.scope["path"], TOKEN_PREFIXES) or request.scope["path"] in TOKEN_PATHS):
            return self.refuse(request, 403, NOT_FOR_TOKENS)
        request.scope["access"], request.scope["user"] = "token", user
        request.scope[STILL_ALLOWED] = lambda: self._still_in(self.accounts.token_user, bearer)  # ends /events
        return None

    @staticmethod
    def _still_in(check: Callable[[Any], object], credential: str | None) -> bool:
        """Whether a session or token still lets its user in (signed out, revoked, disabled: no)."""
        try:
            return check(credential) is not None
        except (LogUnreachable, ProjectionsUnavailable):
            return False  # nobody is let in on a guess

    def _refuse(self, request: Request) -> Response:
        path, query = request.scope["path"], request.scope.get("query_string", b"").decode("latin-1")
        if not _under(path, API_PREFIXES) and "text/html" in request.headers.get("accept", ""):
            target = path + (f"?{query}" if query else "")
            return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
        response = self.refuse(request, 401, "sign in, or send Authorization: Bearer <APP_API_TOKEN>")
        response.headers["www-authenticate"] = f'Bearer realm="{APP_NAME}"'
        return response


def _unavailable(refuse: Callable[[Request, int, str], Response], request: Request, message: str) -> Response:
    response = refuse(request, 503, message)
    response.headers["retry-after"] = str(ProjectionsUnavailable.retry_after)
    return response


def _with_cookie_renewed(send: Send, cookie: str, secure: bool) -> Send:
    """``send`` that sets the session cookie again (another 14 days in the browser too), unless the
    response sets or deletes it itself (signing out)."""
    renewal = Response()
    renewal.set_cookie(
        USER_COOKIE, cookie, max_age=SESSION_SECONDS, path="/", httponly=True, samesite="lax", secure=secure
    )
    header = next((name, value) for name, value in renewal.raw_headers if name == b"set-cookie")
    prefix = USER_COOKIE.encode() + b"="

    async def send_renewing(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            if not any(name == b"set-cookie" and value.startswith(prefix) for name, value in headers):
                message["headers"] = [*headers, header]
        await send(message)

    return send_renewing


PRIVATE = (b"cache-control", b"private, no-store")
VARY = b"Cookie, Authorization"


def _kept_private(send: Send) -> Send:
    """``send`` that keeps an answer made for one user (their page, their items) out of every cache:
    ``Cache-Control: private, no-store`` unless the response says otherwise, and ``Vary: Cookie, Authorization``."""

    async def send_private(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(name, value) for name, value in message.get("headers", []) if name.lower() != b"vary"]
            vary = [value for name, value in message.get("headers", []) if name.lower() == b"vary"]
            if not any(name.lower() == b"cache-control" for name, _ in headers):
                headers.append(PRIVATE)
            headers.append((b"vary", b", ".join([*vary, VARY])))
            message["headers"] = headers
        await send(message)

    return send_private


def _under(path: str, prefixes: Sequence[str]) -> bool:
    return any(path == prefix or path.startswith(f"{prefix}/") for prefix in prefixes)
