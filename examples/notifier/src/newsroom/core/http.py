"""The HTTP face of the app: Starlette, with the JSON command/query API, the pages and /events.

``POST /commands`` takes ``{"type": "posts/create", "payload": {...}}`` and answers
201 with the new message id. Every refusal is a 4xx and appends nothing.
Every route is wrapped in the app's defences: security headers and cross-origin
protection (security.py), the Host allow-list (hosts.py), HEAD as GET (head.py),
quiet disconnects (disconnects.py) and, with a token, the token check (auth.py);
outside them, every request gets its id and is measured (observe.py).
``/openapi.json`` and ``/docs`` describe the API (openapi.py), ``/metrics`` measures
the app (metrics.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from .access_log import redact_secrets_in_access_log
from .app import App
from .auth import RequireToken, Tokens, auth_routes, tokens_from_env
from .commands import CommandRejected
from .disconnects import QuietDisconnects
from .errors import error_response, exception_handlers
from .events import EventStreams, max_streams_from_env
from .forms import MAX_BODY_BYTES, RequestTooLarge, field_errors, form_errors, read_body, read_form
from .head import HeadAsGet
from .hosts import RequireAllowedHost, allowed_hosts
from .limits import BodyDeadline, body_timeout_from_env
from .log import LogUnreachable, Message
from .metrics import MetricsEndpoint, metrics_tokens
from .navigation import overviews
from .observe import ObserveRequests
from .openapi import OpenAPIRoutes
from .owners import ActAsRequester
from .queries import UnknownQuery
from .ratelimit import AttemptLimiter
from .security import CrossOriginProtection, SecurityHeaders
from .sessions import Sessions
from .supervisor import WorkerState

# The feature pages import the form helpers from here.
__all__ = ["MAX_BODY_BYTES", "RequestTooLarge", "create_http_app", "form_errors", "read_body", "read_form"]

STATIC = Path(__file__).parent / "static"


def create_http_app(
    app: App,
    *,
    prepare: bool = True,
    start_workers: bool = True,
    on_closed: Callable[[list[str]], None] | None = None,
    tokens: Sequence[str] | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    access_log: logging.Logger | None = None,
) -> Starlette:
    """The ASGI app: on startup it makes the projections current (rebuilding, on another thread, any
    whose code changed, while commands and queries answer 503) and then starts the workers; it stops
    them on shutdown.

    ``on_closed`` gets the names of workers that did not stop in time, once the
    database is closed (``serve`` uses it to leave without them). ``tokens`` are the
    accepted API tokens (default: ``APP_API_TOKEN``); none means the app is open.
    ``host`` and ``port`` are where it is served (``port`` None: not known, any port):
    only ``Host`` headers naming them, loopback or ``APP_ALLOWED_HOSTS`` are answered.
    ``access_log`` gets one line per request (the JSON log format; see logformat.py).
    """
    from .mcp import MCPEndpoint  # the mcp SDK itself is imported on the first /mcp request

    accepted = tokens_from_env() if tokens is None else tuple(tokens)
    events = EventStreams(app.log, max_streams=max_streams_from_env(), metrics=app.metrics)
    mcp = MCPEndpoint(app)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        redact_secrets_in_access_log(accepted)
        stopping = threading.Event()
        rebuild = app.projections.begin() if prepare else []
        starting = asyncio.create_task(_start(app, rebuild, stopping, start_workers=start_workers), name="start")
        try:
            with events.closed_on_shutdown_signal():
                async with mcp.running():
                    yield
        finally:
            stopping.set()
            await asyncio.gather(starting, return_exceptions=True)
            events.close()
            stuck = await app.close()
            if on_closed is not None:
                on_closed(stuck)

    async def index(request: Request) -> Response:
        return app.pages.render("core/index.html", request=request, overviews=overviews(app))

    async def about(request: Request) -> Response:
        """The developer's view: commands, queries, workers (behind the token, as every page is)."""
        return app.pages.render("core/about.html", app=app, request=request)

    def refuse_command(reason: str, status_code: int, message: str, **extra: Any) -> Response:
        """A command refused before dispatch (dispatch counts its own refusals), counted by reason."""
        app.metrics.command_refused(reason)
        return _error(status_code, message, **extra)

    async def post_command(request: Request) -> Response:
        if _media_type(request) != "application/json":
            return refuse_command("unsupported_media_type", 415, "send JSON with Content-Type: application/json")
        try:
            body = await read_body(request)
        except RequestTooLarge:
            return refuse_command("too_large", 413, f"request body is over {MAX_BODY_BYTES} bytes")
        try:
            envelope = ENVELOPE.decode(body.decode())
        except (ValueError, RecursionError):
            return refuse_command("malformed", 400, "body is not valid JSON (or nested too deeply)")
        if not isinstance(envelope, dict) or not isinstance(envelope.get("type"), str):
            return refuse_command("malformed", 400, 'expected {"type": "feature/verb", "payload": {...}}')
        payload = envelope.get("payload", {})
        if not isinstance(payload, dict):
            return refuse_command("malformed", 400, "payload must be a JSON object")
        spec = app.commands.find(envelope["type"])
        if spec is None or not spec.public:
            return refuse_command("unknown_type", 404, f"unknown command type {envelope['type']!r}")
        try:
            command = spec.model.model_validate(payload)
        except ValidationError as exc:
            return refuse_command("invalid_payload", 400, "invalid payload", fields=field_errors(exc))
        try:
            message = await app.group_commit.dispatch(command)
        except CommandRejected as exc:
            return _error(exc.status_code, str(exc))
        # The database away (LogUnreachable) is answered by errors.py: 503 with Retry-After, nothing
        # appended; or 504 when it went away as the command was committed, and may have committed.
        return _created(message)

    async def list_commands(_: Request) -> Response:
        public = {spec.type for spec in app.commands if spec.public}  # what a client can send, nothing else
        return JSONResponse([command for command in app.describe()["commands"] if command["type"] in public])

    async def list_queries(_: Request) -> Response:
        return JSONResponse(app.describe()["queries"])

    async def run_query(request: Request) -> Response:
        type = f"{request.path_params['feature']}/{request.path_params['name']}"
        try:
            answer = app.query_json(type, dict(request.query_params))
        except UnknownQuery:
            return _error(404, f"unknown query type {type!r}")
        except ValidationError as exc:
            return _error(400, "invalid query parameters", fields=field_errors(exc))
        except CommandRejected as exc:
            return _error(exc.status_code, str(exc))
        # Encoded in one pass in pydantic-core; a list page's rows go out as the store keeps them (store.Page).
        return Response(answer, media_type="application/json")

    async def healthz(request: Request) -> Response:
        workers = [handle.describe() for handle in app.supervisor.handles]
        try:
            version: int | None = app.log.version()
            dead_letters = app.dead_letters.counts()
        except LogUnreachable:
            version, dead_letters = None, {}
        rebuilding = app.projections.unavailable
        healthy = version is not None and rebuilding is None and all(w["state"] != WorkerState.FAILED for w in workers)
        # 503 when this process cannot do its job; "degraded" with 200 when dead letters wait for an operator.
        status = "ok" if healthy and not dead_letters else "rebuilding" if rebuilding else "degraded"
        status_code = 200 if healthy else 503
        if request.scope.get("access") == "anonymous":  # a token is required and none was sent: say only this
            return JSONResponse({"status": status}, status_code=status_code)
        return JSONResponse(
            {
                "status": status,
                "database": "reachable" if version is not None else "unreachable",
                "version": version,
                "workers": workers,
                "dead_letters": dead_letters,
                "process": app.runtime(),  # which workers this process runs, which it stands by for
                "projections": {"unavailable": rebuilding, "progress": app.projections.progress},
            },
            status_code=status_code,
        )

    refuse = partial(error_response, app.pages)
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(BodyDeadline, seconds=body_timeout_from_env()),
        Middleware(QuietDisconnects),
        Middleware(RequireAllowedHost, hosts=allowed_hosts(host, port), refuse=refuse),
        Middleware(HeadAsGet),
        Middleware(CrossOriginProtection, refuse=refuse),
    ]
    routes: list[BaseRoute] = [
        Route("/", index, name="index"),
        Route("/_/about", about, name="about"),
        Route("/commands", post_command, methods=["POST"]),
        Route("/commands", list_commands, methods=["GET"]),
        Route("/queries", list_queries),
        Route("/queries/{feature}/{name}", run_query),
        Route("/events", events.endpoint, name="events"),
        Route("/healthz", healthz),
        Route("/mcp", mcp),
        *OpenAPIRoutes(app, secured=bool(accepted)).routes(),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        *app.routes,
    ]
    limiter = AttemptLimiter()  # wrong tokens at /metrics and at the API count together
    if app.metrics.enabled:
        routes.append(Route("/metrics", MetricsEndpoint(app, metrics_tokens(accepted), limiter)))
    if app.guard is not None:  # a users feature decides who comes in; APP_API_TOKEN stays the operator's token
        middleware.append(Middleware(app.guard, tokens=accepted, refuse=refuse))
    elif accepted:
        checker, sessions = Tokens(accepted), Sessions(app.kv)
        middleware.append(Middleware(RequireToken, tokens=checker, sessions=sessions, limiter=limiter, refuse=refuse))
        routes[1:1] = auth_routes(checker, sessions, limiter, app.pages)
    middleware.append(Middleware(ActAsRequester))  # innermost: owned features see who asks (owners.py)
    # Outermost: the request id reaches every answer, refusals included, and every answer is measured.
    middleware.insert(0, Middleware(ObserveRequests, routes=routes, metrics=app.metrics, access_log=access_log))
    return Starlette(
        routes=routes, middleware=middleware, exception_handlers=exception_handlers(app.pages), lifespan=lifespan
    )


async def _start(app: App, rebuild: list[str], stopping: threading.Event, *, start_workers: bool) -> None:
    """Rebuild what needs it, then start the workers (they read the projections)."""
    if rebuild and not await app.projections.rebuild_in_background(rebuild, stopping):
        return
    if start_workers and not stopping.is_set():
        await app.start_workers()


def _refuse_constant(name: str) -> float:
    """NaN and Infinity are not JSON; stored as null they would break a rebuild."""
    raise ValueError(f"{name} is not allowed")


# Made once: json.loads and json.dumps with options build a new decoder or encoder on every call.
ENVELOPE = json.JSONDecoder(parse_constant=_refuse_constant)
COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _created(message: Message) -> Response:
    """201 with the appended message. Its data is JSON text already: spliced in, not parsed and encoded again."""
    head = COMPACT.encode({"id": message.id, "type": message.type, "timestamp": message.timestamp})
    return Response(f'{head[:-1]},"data":{message.data}}}', status_code=201, media_type="application/json")


def _media_type(request: Request) -> str:
    """The Content-Type's media type, from the raw headers: ``request.headers`` builds a Headers object first."""
    for name, value in request.scope["headers"]:
        if name == b"content-type":
            return value.decode("latin-1").split(";", 1)[0].strip().lower()
    return ""


def _error(status_code: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status_code)
