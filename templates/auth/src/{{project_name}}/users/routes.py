"""The users pages: sign in and out, register, your account and sessions, password resets, and the admin list.

Every form posts to this app only (core/security.py refuses cross-site posts). A
sign-in says the same, and takes as long, whether or not the account exists, and a
reset request says the same whether or not a link was sent. Every password hash or
check runs in the bounded queue of hashing.py, off the event loop (503 when it is full).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..core import App, CommandRejected
from ..core.auth import safe_next
from ..core.forms import RequestTooLarge, read_form
from ..core.pages import redirect_with_flash
from ..core.ratelimit import client_address
from .access import USER_COOKIE, current_user
from .accounts import SESSION_SECONDS, Accounts
from .devices import DEVICE_COOKIE, DEVICE_SECONDS, DeviceCookies
from .hashing import Busy, PasswordWork
from .limits import SignInLimits, every_attempt, reset_mails
from .mailer import Mailbox, resets_off
from .state import StaleCheck, password_version
from .tokens import NoSecretKey

TEMPLATES = Path(__file__).parent / "templates"
SIGNUP_VARIABLE = "APP_OPEN_SIGNUP"
WRONG = "That email and password do not match an account."
MAX_FORM_BYTES = 8192


class UsersPages:
    def __init__(self, app: App, accounts: Accounts, mailbox: Mailbox, limits: SignInLimits | None = None) -> None:
        self.app = app
        self.accounts = accounts
        self.mailbox = mailbox
        self.limits = limits or SignInLimits()
        self.devices = DeviceCookies()  # browsers that signed in before (limits.py)
        self.signups = every_attempt()  # registrations: each hashes a password, and says if an email has an account
        self.password_checks = every_attempt()  # the current password on /account: a guess like a sign-in's
        self.reset_requests = reset_mails()  # apart from sign-ins: asking for mail never keeps the owner out
        self.password_work = PasswordWork()  # every argon2 hash or check of these pages, a few at a time

    def register(self) -> None:
        app = self.app
        app.add_route("/login", self.login, methods=("GET", "POST"), name="login")
        app.add_route("/logout", self.logout, methods=("POST",), name="logout")
        app.add_route("/register", self.sign_up, methods=("GET", "POST"), name="users:register")
        app.add_route("/account", self.account, name="users:account")
        app.add_route("/account/password", self.change_password, methods=("POST",), name="users:password")
        app.add_route("/account/sessions/{session_id}/revoke", self.revoke, methods=("POST",), name="users:revoke")
        app.add_route("/account/tokens", self.create_token, methods=("POST",), name="users:token")
        app.add_route(
            "/account/tokens/{token_id}/revoke", self.revoke_token, methods=("POST",), name="users:revoke-token"
        )
        app.add_route("/password-reset", self.password_reset, methods=("GET", "POST"), name="users:reset")
        app.add_route("/users", self.users_page, name="users:list")
        app.add_route("/users/{user_id}", self.change_user, methods=("POST",), name="users:change")
        app.add_route("/dev/mailbox", self.dev_mailbox, name="users:mailbox")

    # --- signing in and out ---

    async def login(self, request: Request) -> Response:
        target = safe_next(request.query_params.get("next", "/"))
        if request.method == "GET":
            return self._render(request, "login.html", next=target, email="")
        form = await self._form(request)
        if form is None:
            return self._render(request, "login.html", 413, next=target, email="", error="That is far too long.")
        target, email, password = safe_next(form.get("next", target)), form.get("email", ""), form.get("password", "")
        address = client_address(request.scope)
        device = self.devices.device(request.cookies.get(DEVICE_COOKIE), email)
        wait = self.limits.attempt(address, email, device)
        if wait is not None:
            return _later(self._render(request, "login.html", 429, next=target, email=email, error=_wait(wait)), wait)
        user_agent = request.headers.get("user-agent", "")
        try:
            signed_in = await self.password_work.run(
                self.accounts.sign_in, email, password, ip=address, user_agent=user_agent
            )
        except Busy as busy:
            page = self._render(request, "login.html", 503, next=target, email=email, error=_busy(busy))
            return _later(page, busy.retry_after)
        if signed_in is None:
            self.limits.failed(device)
            return self._render(request, "login.html", 401, next=target, email=email, error=WRONG)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            USER_COOKIE,
            signed_in.cookie,
            max_age=SESSION_SECONDS,
            path="/",
            httponly=True,
            samesite="lax",
            secure=request.scope.get("scheme") == "https",
        )
        response.set_cookie(  # kept after signing out: it marks this browser, it signs no one in
            DEVICE_COOKIE,
            self.devices.signed_in(request.cookies.get(DEVICE_COOKIE), email),
            max_age=DEVICE_SECONDS,
            path="/login",
            httponly=True,
            samesite="strict",
            secure=request.scope.get("scheme") == "https",
        )
        return response

    async def logout(self, request: Request) -> Response:
        form = await self._form(request) or {}
        user = current_user(request)
        if form.get("everywhere") and user is not None:
            self.accounts.sign_out_everywhere(user["id"])
        else:
            self.accounts.sign_out(request.cookies.get(USER_COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(USER_COOKIE, path="/", httponly=True, samesite="lax")
        return response

    async def sign_up(self, request: Request) -> Response:
        if os.environ.get(SIGNUP_VARIABLE) != "1":
            return self._render(request, "closed.html", 404)
        if request.method == "GET":
            return self._render(request, "register.html", email="", errors={})
        form = await self._form(request) or {}
        email, password = form.get("email", ""), form.get("password", "")
        wait = self.signups.attempt(client_address(request.scope), email)
        if wait is not None:
            return _later(self._render(request, "register.html", 429, email=email, errors={"email": _wait(wait)}), wait)
        try:
            await self.password_work.run(self.accounts.register, email, password)
        except Busy as busy:
            page = self._render(request, "register.html", 503, email=email, errors={"email": _busy(busy)})
            return _later(page, busy.retry_after)
        except ValueError as exc:  # the password (a ValidationError is a ValueError too: the email)
            field = "email" if isinstance(exc, ValidationError) else "password"
            message = "Enter an email address like ann@example.com." if field == "email" else str(exc)
            return self._render(request, "register.html", 400, email=email, errors={field: message})
        except CommandRejected:
            errors = {"email": "That email already has an account. Sign in, or reset its password."}
            return self._render(request, "register.html", 409, email=email, errors=errors)
        return redirect_with_flash("/login", "Your account is ready. Sign in.")

    # --- your account ---

    async def account(self, request: Request) -> Response:
        user = current_user(request)
        if user is None:
            return self._render(request, "closed.html", 404)
        return self._account_page(request, user)

    async def change_password(self, request: Request) -> Response:
        user = current_user(request)
        if user is None:
            return self._render(request, "closed.html", 404)
        form = await self._form(request) or {}
        wait = self.password_checks.attempt(client_address(request.scope), user["email"])
        if wait is not None:
            return _later(self._account_page(request, user, 429, error=_wait(wait)), wait)
        current, new = form.get("current", ""), form.get("new", "")
        try:
            problem = await self.password_work.run(self.accounts.change_password, user["id"], current, new)
        except Busy as busy:
            return _later(self._account_page(request, user, 503, error=_busy(busy)), busy.retry_after)
        if problem is not None:
            return self._account_page(request, user, 400, error=problem)
        return redirect_with_flash(
            "/login", "Your password is changed; every session and API token ended. Sign in again."
        )

    async def revoke(self, request: Request) -> Response:
        user = current_user(request)
        if user is None or not self.accounts.revoke(user["id"], request.path_params["session_id"]):
            return self._render(request, "closed.html", 404)
        return redirect_with_flash("/account", "That session has ended.")

    async def create_token(self, request: Request) -> Response:
        user = current_user(request)
        if user is None:
            return self._render(request, "closed.html", 404)
        form = await self._form(request) or {}
        try:
            name, version = form.get("name", ""), password_version(user)
            token = self.accounts.create_api_token(user["id"], name, password_version=version)
        except ValidationError:
            return self._account_page(request, user, 400, token_error="Give the token a name (80 characters at most).")
        except StaleCheck:  # the password changed (every session and token ended) or the account was disabled
            return redirect_with_flash("/login", "Your session has ended: no token was made. Sign in again.")
        response = self._account_page(request, user, new_token=token)
        response.headers["cache-control"] = "no-store"  # the token is shown this once
        return response

    async def revoke_token(self, request: Request) -> Response:
        user = current_user(request)
        if user is None or not self.accounts.revoke_api_token(user["id"], request.path_params["token_id"]):
            return self._render(request, "closed.html", 404)
        return redirect_with_flash("/account", "That token is revoked.")

    def _account_page(self, request: Request, user: dict[str, Any], status_code: int = 200, **context: Any) -> Response:
        return self._render(
            request,
            "account.html",
            status_code,
            user=user,
            sessions=self.accounts.sessions_of(user["id"]),
            tokens=self.accounts.api_tokens_of(user["id"]),
            this=request.scope.get("session"),
            **context,
        )

    # --- password resets ---

    async def password_reset(self, request: Request) -> Response:
        if request.method == "GET":
            token = request.query_params.get("token")
            if token is None:
                return self._render(request, "reset_request.html")
            valid = self.accounts.valid_reset(token) is not None
            response = self._render(request, "reset_confirm.html", 200 if valid else 404, token=token, valid=valid)
            response.headers["cache-control"] = "no-store"  # the page holds the token
            return response
        form = await self._form(request) or {}
        if "token" in form:
            token = form["token"]
            try:
                problem = await self.password_work.run(self.accounts.reset_password, token, form.get("password", ""))
            except Busy as busy:
                page = self._render(request, "reset_confirm.html", 503, token=token, valid=True, error=_busy(busy))
                return _later(page, busy.retry_after)
            if problem is not None:
                valid = self.accounts.valid_reset(token) is not None
                return self._render(request, "reset_confirm.html", 400, token=token, valid=valid, error=problem)
            return redirect_with_flash("/login", "Your password is changed. Sign in with it.")
        email = form.get("email", "")
        wait = self.reset_requests.attempt(client_address(request.scope), email)
        if wait is not None:
            return _later(self._render(request, "reset_request.html", 429, error=_wait(wait)), wait)
        try:
            if resets_off() is not None:  # before the email is looked at: the same answer for every one
                raise NoSecretKey("password resets are off")
            self.accounts.request_reset(email)
        except NoSecretKey:
            return self._render(request, "reset_request.html", 503, error="Password resets are not set up here.")
        return redirect_with_flash("/login", "If that email has an account, a reset link is on its way.")

    # --- admins ---

    async def users_page(self, request: Request) -> Response:
        if not _is_admin(request):
            return self._render(request, "closed.html", 404)
        users = [{k: v for k, v in u.items() if k != "password_hash"} for u in self.accounts.state.every_user()]
        return self._render(request, "users.html", users=users)

    async def change_user(self, request: Request) -> Response:
        if not _is_admin(request):
            return self._render(request, "closed.html", 404)
        form = await self._form(request) or {}
        user_id = request.path_params["user_id"]
        try:
            if form.get("action") == "disable":
                self.accounts.disable(user_id)
            elif form.get("role") in ("admin", "member"):
                self.accounts.change_role(user_id, form["role"])
            else:
                return self._render(request, "closed.html", 400)
        except CommandRejected as exc:
            return redirect_with_flash("/users", f"Not changed: {exc}.")
        return redirect_with_flash("/users", "Changed.")

    # --- the development mailbox ---

    async def dev_mailbox(self, request: Request) -> Response:
        """The mails the mailer would send, for development: only without SMTP_URL, only from this
        machine, and only to an admin or the operator's token (a link in it signs in as its user)."""
        if not self.mailbox.is_open() or not _from_loopback(request) or not _is_admin_or_operator(request):
            return self._render(request, "closed.html", 404)
        return self._render(request, "mailbox.html", mails=self.mailbox.mails())

    # --- helpers ---

    async def _form(self, request: Request) -> dict[str, str] | None:
        try:
            return await read_form(request, MAX_FORM_BYTES)
        except RequestTooLarge:
            return None

    def _render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
        return self.app.pages.render(f"users/{template}", status_code, request=request, **context)


def _wait(seconds: int) -> str:
    return f"Too many attempts. Try again in {seconds} seconds."


def _busy(busy: Busy) -> str:
    return f"Too many password checks at this moment. Try again in {busy.retry_after} seconds."


def _later(response: Response, seconds: int) -> Response:
    """A 429 or 503 page, with when to come back."""
    response.headers["retry-after"] = str(seconds)
    return response


def _is_admin(request: Request) -> bool:
    user = current_user(request)
    return user is not None and user["role"] == "admin"


def _is_admin_or_operator(request: Request) -> bool:
    """A signed-in admin, or ``APP_API_TOKEN`` (a token without a user; a user's token never gets here)."""
    operator = request.scope.get("access") == "token" and current_user(request) is None
    return operator or _is_admin(request)


def _from_loopback(request: Request) -> bool:
    """Sent from this machine to a loopback address, not through a proxy: a proxy on this machine
    makes every client look local, so a request with any header a browser does not send by itself
    (whatever a proxy or CDN adds: ``Forwarded``, ``X-Forwarded-*``, ``Via``, ``X-Real-IP``,
    ``CF-Ray``, ``CDN-Loop``, ``Fastly-Client-IP``...) or a public Host name is refused."""
    if not all(_sent_by_browsers(name) for name in request.headers):
        return False
    host = request.headers.get("host", "").rsplit(":", 1)[0].strip("[]").lower()
    return _is_loopback(request.scope.get("client", ("",))[0]) and (host == "localhost" or _is_loopback(host))


# What a browser (or curl) sends by itself for a GET. Anything else came from somewhere else: an
# allow-list, because the headers proxies and CDNs add have no common shape and new ones keep coming.
BROWSER_HEADERS = frozenset(
    (
        "host", "user-agent", "accept", "accept-language", "accept-encoding", "connection", "keep-alive",
        "cookie", "authorization", "cache-control", "pragma", "referer", "dnt", "upgrade-insecure-requests",
        "priority", "te", "if-none-match", "if-modified-since", "purpose", "sec-purpose", "sec-gpc", "save-data",
    )
)  # fmt: skip
BROWSER_PREFIXES = ("sec-fetch-", "sec-ch-")  # fetch metadata and client hints, which browsers alone may set


def _sent_by_browsers(name: str) -> bool:
    return name in BROWSER_HEADERS or name.startswith(BROWSER_PREFIXES)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
