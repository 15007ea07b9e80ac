"""HTML pages: one Jinja environment, autoescaped, with a folder per feature, and flash messages.

Templates are named ``"feature/file.html"``; the core's own are under ``"core/"``.
Every page gets ``app_name``, ``request``, ``flash`` (the one-time message left by
:func:`redirect_with_flash`), ``signed_in`` and ``current_user`` (with a users feature:
the signed-in user, else None) without being passed them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from jinja2 import BytecodeCache, Environment, FileSystemLoader, PrefixLoader, select_autoescape
from jinja2.bccache import Bucket
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

CORE_TEMPLATES = Path(__file__).parent / "templates"
APP_NAME = __name__.split(".")[0]
# Named after the app: browsers share cookies between every port of a host, so two apps
# on 127.0.0.1 must not read each other's.
FLASH_COOKIE = f"{APP_NAME}_flash"
FLASH_MAX_CHARS = 300


class CompiledTemplates(BytecodeCache):
    """Compiled templates kept in memory for every :class:`Pages` of this process, by file and by a
    checksum of the source (an edited template is compiled again): each App builds its own
    environment, and compiling a page costs milliseconds that a second App need not pay."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)  # ignored if the source's checksum differs

    def dump_bytecode(self, bucket: Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()

    def clear(self) -> None:
        self._code.clear()


COMPILED = CompiledTemplates()


class Pages:
    """Renders feature templates to HTML responses."""

    def __init__(self) -> None:
        self._loaders: dict[str, FileSystemLoader] = {"core": FileSystemLoader(CORE_TEMPLATES)}
        self.environment = Environment(
            loader=PrefixLoader(self._loaders),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
            bytecode_cache=COMPILED,  # every environment here has these same settings
        )
        self.environment.globals["app_name"] = APP_NAME
        self.environment.filters["compact_time"] = compact_time

    def add(self, prefix: str, directory: Path) -> None:
        self._loaders[prefix] = FileSystemLoader(directory)

    def render(
        self, template: str, status_code: int = 200, *, request: Request | None = None, **context: Any
    ) -> HTMLResponse:
        """Render ``template``; pass the ``request`` so the page shows the flash message and who is signed in."""
        flash = read_flash(request) if request is not None else None
        html = self.environment.get_template(template).render(
            request=request,
            flash=flash,
            signed_in=signed_in(request),
            current_user=request.scope.get("user") if request is not None else None,
            **context,
        )
        response = HTMLResponse(html, status_code=status_code)
        if flash is not None:
            response.delete_cookie(FLASH_COOKIE, path="/", httponly=True, samesite="lax")
        return response


def compact_time(moment: str | None, now: datetime | None = None) -> str:
    """An ISO time as lists show it: ``14:05`` today, ``3 Dec`` this year, ``3 Dec 2025`` before (UTC)."""
    if not moment:
        return ""
    try:
        when = datetime.fromisoformat(moment).astimezone(UTC)
    except ValueError:
        return moment
    now = now or datetime.now(UTC)
    if when.date() == now.date():
        return when.strftime("%H:%M")
    day = f"{when.day} {when.strftime('%b')}"
    return day if when.year == now.year else f"{day} {when.year}"


def redirect_with_flash(url: str, message: str, status_code: int = 303) -> RedirectResponse:
    """Redirect (303: the browser follows with a GET) and show ``message`` once on the next page."""
    response = RedirectResponse(url, status_code=status_code)
    response.set_cookie(
        FLASH_COOKIE, quote(message[:FLASH_MAX_CHARS]), max_age=60, path="/", httponly=True, samesite="lax"
    )
    return response


def read_flash(request: Request) -> str | None:
    """The pending flash message, if any (the page that shows it clears it)."""
    value = request.cookies.get(FLASH_COOKIE)
    return unquote(value)[:FLASH_MAX_CHARS] if value else None


def signed_in(request: Request | None) -> bool:
    """Whether the request came with a login session (see auth.py), so the page offers to sign out."""
    return request is not None and request.scope.get("access") == "session"
