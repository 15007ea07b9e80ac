"""The app's commands and queries as MCP tools, so AI agents can use the app.

The tools are built at run time from the registries: one per public command
(``posts/create`` -> tool ``posts_create``; input schema = the command's pydantic
model, description = its docstring) and one per query, marked read-only. A call
is validated with the same models as ``POST /commands`` and ``GET /queries``; a
refused call is a tool result with ``isError`` and the same JSON error, and
appends nothing.

``python -m APP mcp`` serves the tools over stdio (:func:`serve_stdio`); a served
app answers MCP at ``/mcp`` (:class:`MCPEndpoint`, streamable HTTP). The ``mcp``
SDK takes about a second to import, so it is imported only once MCP is used.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from inspect import cleandoc
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python
from starlette.requests import ClientDisconnect

from .app import App
from .commands import CommandRejected
from .errors import INTERNAL_ERROR, database_away
from .forms import MAX_BODY_BYTES, field_errors
from .log import LogUnreachable
from .projections import ProjectionsUnavailable

if TYPE_CHECKING:
    from anyio.abc import TaskGroup, TaskStatus
    from mcp.server.lowlevel import Server
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from starlette.types import Message, Receive, Scope, Send

TOOL_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
APP_NAME = __name__.split(".")[0]
logger = logging.getLogger(__name__)


class ToolRefused(Exception):
    """A call the app refused; ``answer`` is the JSON error the HTTP API would give."""

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__(answer["error"])
        self.answer = answer


@dataclass(frozen=True, slots=True)
class AppTool:
    """One command or query offered to agents as an MCP tool."""

    name: str
    type: str
    description: str
    input_schema: dict[str, Any]
    read_only: bool
    run: Callable[[Mapping[str, Any]], Any]

    def call(self, arguments: Mapping[str, Any]) -> tuple[bool, Any]:
        """``(is_error, answer)``: the JSON answer, or the JSON error of a refused call.

        A call that fails unexpectedly gets the HTTP API's generic 500 message: what went wrong
        inside (an exception's text can name tables, paths or values) goes to the log, once. While
        the database is away it gets the HTTP API's 503 message, which names no database.
        """
        try:
            return False, self.run(arguments)
        except ToolRefused as refused:
            return True, refused.answer
        except LogUnreachable as exc:  # an outage, not a bug: the HTTP API's 503 (or 504) text; the log says it once
            return True, {"error": database_away(exc)[1]}
        except Exception:
            logger.exception("MCP tool %s failed", self.name)
            return True, {"error": INTERNAL_ERROR}


def tool_name(type: str) -> str:
    """``posts/create`` -> ``posts_create``: MCP tool names allow letters, digits, ``_``, ``-`` and ``.``."""
    name = type.replace("/", "_")
    if not TOOL_NAME.match(name):
        raise ValueError(f"{type!r} cannot be an MCP tool name (it must match {TOOL_NAME.pattern})")
    return name


def app_tools(app: App) -> dict[str, AppTool]:
    """Every public command and every query of ``app``, by tool name."""
    tools: dict[str, AppTool] = {}
    commands = [
        AppTool(
            tool_name(spec.type),
            spec.type,
            _describe(spec.model, f"Sends the command {spec.type} (appended to the log)."),
            spec.model.model_json_schema(),
            read_only=False,
            run=_command_runner(app, spec.model),
        )
        for spec in app.commands
        if spec.public  # worker-only commands (summaries) stay off, as on POST /commands
    ]
    queries = [
        AppTool(
            tool_name(spec.type),
            spec.type,
            _describe(spec.model, f"Answers the query {spec.type}; changes nothing."),
            spec.model.model_json_schema(),
            read_only=True,
            run=_query_runner(app, spec.type),
        )
        for spec in app.queries
    ]
    for tool in [*commands, *queries]:
        if tool.name in tools:
            raise ValueError(f"command and query {tool.type!r} would both be the MCP tool {tool.name!r}")
        tools[tool.name] = tool
    return tools


def _describe(model: type[BaseModel], what: str) -> str:
    doc = cleandoc(model.__doc__) if model.__doc__ else ""
    return f"{doc}\n\n{what}" if doc else what


def _command_runner(app: App, model: type[BaseModel]) -> Callable[[Mapping[str, Any]], Any]:
    def run(arguments: Mapping[str, Any]) -> Any:
        try:
            message = app.dispatch(model.model_validate(arguments))
        except ValidationError as exc:
            raise ToolRefused({"error": "invalid payload", "fields": field_errors(exc)}) from None
        except (CommandRejected, ProjectionsUnavailable) as exc:
            raise ToolRefused({"error": str(exc)}) from None
        return {
            "id": message.id,
            "type": message.type,
            "timestamp": message.timestamp,
            "data": json.loads(message.data),
        }

    return run


def _query_runner(app: App, type: str) -> Callable[[Mapping[str, Any]], Any]:
    def run(arguments: Mapping[str, Any]) -> Any:
        try:
            return to_jsonable_python(app.query(type, arguments))
        except ValidationError as exc:
            raise ToolRefused({"error": "invalid query parameters", "fields": field_errors(exc)}) from None
        except (CommandRejected, ProjectionsUnavailable) as exc:
            raise ToolRefused({"error": str(exc)}) from None

    return run


def build_server(app: App, name: str = APP_NAME) -> Server:
    """The MCP server (the SDK's low-level ``Server``) offering ``app``'s tools."""
    from mcp import types
    from mcp.server.lowlevel import Server
    from mcp.shared.exceptions import MCPError

    tools = app_tools(app)
    listing = types.ListToolsResult(
        tools=[
            types.Tool(
                name=tool.name,
                title=tool.type,
                description=tool.description,
                input_schema=tool.input_schema,
                annotations=types.ToolAnnotations(read_only_hint=tool.read_only),
            )
            for tool in tools.values()
        ]
    )

    async def list_tools(_context: Any, _params: Any) -> types.ListToolsResult:
        return listing

    async def call_tool(_context: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = tools.get(params.name)
        if tool is None:
            raise MCPError(types.INVALID_PARAMS, f"unknown tool {params.name!r}")
        is_error, answer = tool.call(params.arguments or {})
        return types.CallToolResult(
            content=[types.TextContent(text=json.dumps(answer))],
            # Older protocol versions take only an object as structured content.
            structured_content=answer if isinstance(answer, dict) else {"result": answer},
            is_error=is_error,
        )

    def input_schema(tool: str) -> dict[str, Any] | None:
        return tools[tool].input_schema if tool in tools else None

    return Server(
        name,
        instructions=f"The commands and queries of {name}, an event-sourced app. Queries change nothing.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        get_tool_input_schema=input_schema,
    )


async def serve_stdio(app: App) -> list[str]:
    """Serve the tools on stdin/stdout until the client hangs up, running the app as ``serve`` does:
    the projections made current, the workers started, and stopped at the end. Returns the workers that did not stop."""
    from mcp.server.stdio import stdio_server

    server = build_server(app)
    stopping: list[asyncio.Task[None]] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(
            signum, lambda: stopping.append(asyncio.create_task(_close_and_exit(app)))
        )
    await asyncio.to_thread(app.prepare)
    await app.start_workers()
    try:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())
    finally:
        stuck = await app.close()
    return stuck


async def _close_and_exit(app: App) -> None:
    """Stop on a signal: the workers stopped and the database closed, then leave at once. Cancelling the
    server instead would wait on the SDK's stdin reader, a thread blocked until the client writes or hangs up."""
    stuck = await app.close()
    if stuck:
        print(f"error: worker(s) {', '.join(stuck)} did not stop in time", file=sys.stderr)
    sys.stderr.flush()
    os._exit(1 if stuck else 0)


class MCPEndpoint:
    """``/mcp``: the tools over MCP's streamable HTTP transport, as an ASGI app.

    The SDK's session manager starts on the first request, inside the task group
    that :meth:`running` holds open for the app's lifespan, so a server nobody asks
    over MCP never imports the SDK. It is stateless and answers in JSON: every
    request stands alone, whichever process of the server takes it. ``Host`` and
    ``Origin`` are checked for every route of the app (hosts.py, security.py), so the
    SDK's own copy of those checks is off: it would not know ``APP_ALLOWED_HOSTS``.

    Only POST is served. A GET would open the transport's stream for messages the server
    starts, and a stateless server starts none: the stream would only hold a connection
    open for ever, outside the cap on ``/events`` streams and past its credential's end.
    The transport's spec answers such a GET with 405, which clients take as "no stream".
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self._task_group: TaskGroup | None = None
        self._manager: StreamableHTTPSessionManager | None = None
        self._starting = anyio.Lock()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Hold the place the session manager runs in; on exit it stops."""
        async with anyio.create_task_group() as task_group:
            self._task_group = task_group
            try:
                yield
            finally:
                task_group.cancel_scope.cancel()
                self._task_group = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await _post_only(scope, receive, send)
            return
        if self._manager is None:
            async with self._starting:
                if self._manager is None:
                    if self._task_group is None:
                        raise RuntimeError("/mcp is served only inside the app's lifespan (MCPEndpoint.running)")
                    await self._task_group.start(self._run_manager)
        assert self._manager is not None
        await self._manager.handle_request(scope, await _body_read_first(receive), send)

    async def _run_manager(self, *, task_status: TaskStatus[None]) -> None:
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

        logging.getLogger("mcp.server.streamable_http").setLevel(logging.WARNING)  # a line per request otherwise
        manager = StreamableHTTPSessionManager(
            build_server(self.app),
            stateless=True,
            json_response=True,
            max_request_body_size=MAX_BODY_BYTES,
            security_settings=_checked_by_the_app(),
        )
        async with manager.run():
            self._manager = manager
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._manager = None


async def _post_only(scope: Scope, receive: Receive, send: Send) -> None:
    """405 for GET, DELETE and the rest: no server-to-client stream, no sessions to end."""
    text = b"only POST is served here: this MCP server is stateless and opens no event stream"
    headers = [
        (b"allow", b"POST"),
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(text)).encode()),
    ]
    await send({"type": "http.response.start", "status": 405, "headers": headers})
    await send({"type": "http.response.body", "body": text})


async def _body_read_first(receive: Receive) -> Receive:
    """``receive`` with the request's body already read, up to the limit.

    The SDK logs a client hanging up mid-body as an error with a traceback; read here,
    the hang-up is Starlette's ``ClientDisconnect``: one INFO line (disconnects.py).
    """
    chunks, size, more = [], 0, True
    while more and size <= MAX_BODY_BYTES:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        more = message.get("more_body", False)
    first: Message | None = {"type": "http.request", "body": b"".join(chunks), "more_body": more}

    async def replay() -> Message:
        nonlocal first
        if first is None:
            return await receive()
        message, first = first, None
        return message

    return replay


def _checked_by_the_app() -> Any:
    """The SDK's Host/Origin checks, off: the app's middleware makes them for every route."""
    from mcp.server.transport_security import TransportSecuritySettings

    return TransportSecuritySettings(enable_dns_rebinding_protection=False)
