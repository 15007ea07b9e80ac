"""Error answers: a styled page for people, JSON for programs.

A browser asks for ``text/html`` and gets core/error.html; the JSON API (and any
client that does not ask for HTML) gets ``{"error": "..."}``.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .log import CommitOutcomeUnknown, LogUnreachable
from .pages import Pages
from .projections import ProjectionsUnavailable
from .security import add_security_headers

INTERNAL_ERROR = "The server hit an error; it has been logged."
# The database's address and the driver's words go to the server's log, not to every client.
DATABASE_AWAY = "The database cannot be reached right now; nothing was changed. Try again in a few seconds."
DATABASE_RETRY_AFTER = "2"
API_PREFIXES = ("/commands", "/queries", "/events", "/mcp", "/healthz")
HEADINGS = {
    400: "Bad request",
    401: "Sign in needed",
    403: "Refused",
    404: "Not found",
    405: "Not allowed",
    413: "Too large",
    421: "Wrong address",
    429: "Too many attempts",
    500: "Something went wrong",
    503: "Back in a moment",
    504: "Outcome unknown",
}


def database_away(exc: LogUnreachable) -> tuple[int, str]:
    """The status and text every interface answers while the database is away: 503, nothing was
    changed; or 504 when it went away as the command was committed, which may have landed."""
    if isinstance(exc, CommitOutcomeUnknown):  # not a 503: that says nothing was appended
        return 504, str(exc)
    return 503, DATABASE_AWAY


def is_api_path(path: str) -> bool:
    return any(path == prefix or path.startswith(f"{prefix}/") for prefix in API_PREFIXES)


def wants_html(request: Request) -> bool:
    """A page request from a browser, as opposed to a call to the JSON API."""
    # The scope's path, not request.url: that is built from the Host header, which may be anything.
    return not is_api_path(request.scope["path"]) and "text/html" in request.headers.get("accept", "")


def error_response(
    pages: Pages,
    request: Request,
    status_code: int,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The error page, or ``{"error": message}`` for API clients."""
    if wants_html(request):
        heading = HEADINGS.get(status_code, "Error")
        response: Response = pages.render(
            "core/error.html", status_code, request=request, heading=heading, message=message, back_url="/"
        )
    else:
        response = JSONResponse({"error": message}, status_code=status_code)
    response.headers.update(headers or {})
    return response


def exception_handlers(pages: Pages) -> dict[int | type[Exception], object]:
    """Starlette exception handlers: styled 404 and 405 for unknown routes and methods, 503 while
    a projection is rebuilt or the database cannot be reached (504 when it went away as a command
    was committed), 500 for crashes."""

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(pages, request, 404, "There is nothing at this address.")

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        headers = exc.headers if isinstance(exc, HTTPException) else None
        return error_response(pages, request, 405, f"{request.method} is not allowed here.", headers=headers)

    async def unavailable(request: Request, exc: Exception) -> Response:
        headers = {"retry-after": str(ProjectionsUnavailable.retry_after)}
        return error_response(pages, request, 503, f"{exc}; try again in a few seconds.", headers=headers)

    async def unreachable(request: Request, exc: LogUnreachable) -> Response:
        status, text = database_away(exc)
        headers = {"retry-after": DATABASE_RETRY_AFTER} if status == 503 else None
        return error_response(pages, request, status, text, headers=headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        # Starlette answers crashes outside the other middleware, so the headers are added here.
        response = error_response(pages, request, 500, INTERNAL_ERROR)
        add_security_headers(response.headers)
        if "request_id" in request.scope:  # set by observe.py: the id to look for in the log
            response.headers["x-request-id"] = request.scope["request_id"]
        return response

    return {
        404: not_found,
        405: method_not_allowed,
        ProjectionsUnavailable: unavailable,
        LogUnreachable: unreachable,
        500: server_error,
    }
