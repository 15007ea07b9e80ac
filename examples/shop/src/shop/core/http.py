"""The HTTP face of the app: Starlette, with the JSON command/query API and the pages.

``POST /commands`` takes ``{"type": "posts/create", "payload": {...}}`` and answers
201 with the new message id. Every refusal is a 4xx and appends nothing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

from pydantic import ValidationError
from pydantic_core import to_jsonable_python
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .app import App
from .commands import CommandRejected, StateDiverged
from .queries import UnknownQuery
from .supervisor import WorkerState

MAX_BODY_BYTES = 1024 * 1024


class RequestTooLarge(Exception):
    """The request body is over the limit."""


def create_http_app(
    app: App,
    *,
    replay: bool = True,
    start_workers: bool = True,
    on_closed: Callable[[list[str]], None] | None = None,
) -> Starlette:
    """The ASGI app: replays the log and starts the workers on startup, stops them on shutdown.

    ``on_closed`` gets the names of workers that did not stop in time, once the
    database is closed (``serve`` uses it to leave without them).
    """

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if replay:
            app.replay()
        if start_workers:
            await app.start_workers()
        try:
            yield
        finally:
            stuck = await app.close()
            if on_closed is not None:
                on_closed(stuck)

    async def index(request: Request) -> Response:
        return app.pages.render("core/index.html", app=app, request=request)

    async def post_command(request: Request) -> Response:
        if _media_type(request) != "application/json":
            return _error(415, "send JSON with Content-Type: application/json")
        try:
            body = await read_body(request)
        except RequestTooLarge:
            return _error(413, f"request body is over {MAX_BODY_BYTES} bytes")
        try:
            envelope = json.loads(body, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            return _error(400, "body is not valid JSON (or nested too deeply)")
        if not isinstance(envelope, dict) or not isinstance(envelope.get("type"), str):
            return _error(400, 'expected {"type": "feature/verb", "payload": {...}}')
        payload = envelope.get("payload", {})
        if not isinstance(payload, dict):
            return _error(400, "payload must be a JSON object")
        spec = app.commands.find(envelope["type"])
        if spec is None or not spec.public:
            return _error(404, f"unknown command type {envelope['type']!r}")
        try:
            command = spec.model.model_validate(payload)
        except ValidationError as exc:
            return _error(400, "invalid payload", fields=field_errors(exc))
        try:
            message = app.dispatch(command)
        except CommandRejected as exc:
            return _error(exc.status_code, str(exc))
        except StateDiverged as exc:
            return _error(503, str(exc))
        return JSONResponse(
            {"id": message.id, "type": message.type, "timestamp": message.timestamp, "data": json.loads(message.data)},
            status_code=201,
        )

    async def list_commands(_: Request) -> Response:
        return JSONResponse(app.describe()["commands"])

    async def list_queries(_: Request) -> Response:
        return JSONResponse(app.describe()["queries"])

    async def run_query(request: Request) -> Response:
        type = f"{request.path_params['feature']}/{request.path_params['name']}"
        try:
            result = app.query(type, dict(request.query_params))
        except UnknownQuery:
            return _error(404, f"unknown query type {type!r}")
        except ValidationError as exc:
            return _error(400, "invalid query parameters", fields=field_errors(exc))
        except CommandRejected as exc:
            return _error(exc.status_code, str(exc))
        return JSONResponse(to_jsonable_python(result))

    async def healthz(_: Request) -> Response:
        workers = [handle.describe() for handle in app.supervisor.handles]
        healthy = app.diverged is None and all(w["state"] != WorkerState.FAILED for w in workers)
        return JSONResponse(
            {
                "status": "ok" if healthy else "degraded",
                "version": app.log.version(),
                "workers": workers,
                "diverged": app.diverged,
            },
            status_code=200 if healthy else 503,
        )

    routes = [
        Route("/", index, name="index"),
        Route("/commands", post_command, methods=["POST"]),
        Route("/commands", list_commands, methods=["GET"]),
        Route("/queries", list_queries),
        Route("/queries/{feature}/{name}", run_query),
        Route("/healthz", healthz),
        *app.routes,
    ]
    return Starlette(routes=routes, lifespan=lifespan)


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """Read the body, refusing it as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def read_form(request: Request, limit: int = MAX_BODY_BYTES) -> dict[str, str]:
    """Decode an HTML form post (urlencoded) without extra dependencies."""
    body = await read_body(request, limit)
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


def field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic errors as JSON: where, what, and the error kind (never the input)."""
    return [
        {"loc": [str(part) for part in error["loc"]], "msg": error["msg"], "type": error["type"]}
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def form_errors(exc: ValidationError) -> dict[str, str]:
    """The first error message for each field, for showing next to a form's inputs."""
    errors: dict[str, str] = {}
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        errors.setdefault(".".join(str(part) for part in error["loc"]) or "form", error["msg"])
    return errors


def _refuse_constant(name: str) -> float:
    """NaN and Infinity are not JSON; stored as null they would break replay."""
    raise ValueError(f"{name} is not allowed")


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _error(status_code: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status_code)
