"""``petrock mcp``: petrock's generators and checks as MCP tools, for coding agents.

Each tool runs ``petrock ... --json`` in the app its ``path`` argument names
(default: the server's working directory) and answers with that JSON, so an
agent gets exactly what a script gets; a refusal is an ``isError`` result with
petrock's one-line ``error: <what> — <how to fix>``. Generating tools take
``dry_run`` to look before they write.

The CLI runs as a subprocess rather than in this process: generators work in
the current directory and print, while this server's stdout carries the
protocol and each call may name another app; a subprocess gives every call its
own directory and output, and binds the tools to the CLI's ``--json`` contract
instead of the generators' internals.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from inspect import cleandoc
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from petrock import __version__

if TYPE_CHECKING:
    from mcp.server.lowlevel import Server

CALL_TIMEOUT = 300.0  # seconds; `petrock new` runs copier and git, `feature list` starts the app once


class InApp(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(
        None, description="The app's directory (or any folder inside it). Default: the server's working directory."
    )


class Writes(InApp):
    dry_run: bool = Field(False, description="Only show the files and the diff; write nothing.")
    allow_dirty: bool = Field(False, description="Run even with uncommitted changes in the app.")


class NewApp(BaseModel):
    """Create a new app NAME in PATH/NAME: Starlette + SQLite message log + workers, with tests, committed to git.

    Same as `petrock new NAME --json`.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The app's name: a lowercase Python identifier, also its package name.")
    path: str | None = Field(None, description="The folder to create the app in. Default: the server's directory.")
    dry_run: bool = Field(False, description="Only list the files that would be created; write nothing.")
    no_git: bool = Field(False, description="Do not run git init or commit.")


class AddFeature(Writes):
    """Add feature NAME to the app: commands, queries, state, pages and tests, registered and committed.

    Same as `petrock feature add NAME [FIELD...] --json`.
    """

    name: str = Field(description="The feature's name: a lowercase Python identifier, usually plural (posts).")
    fields: list[str] = Field(
        default_factory=list,
        description="Field specs passed to `petrock feature add` after the name, e.g. ['title:str', 'body:text'].",
    )
    owned: bool = Field(
        False, description="Items belong to the signed-in user who creates them (needs `petrock generate auth`)."
    )


class GenerateCommand(Writes):
    """Add a command to a feature: a validated pydantic model and the state handler that applies it, with a test.

    Same as `petrock generate command FEATURE/NAME --json`.
    """

    target: str = Field(description="FEATURE/NAME, e.g. posts/publish_draft (type posts/publish-draft).")


class GenerateQuery(Writes):
    """Add a query to a feature: validated parameters and the handler that answers from state, with a test.

    Same as `petrock generate query FEATURE/NAME --json`.
    """

    target: str = Field(description="FEATURE/NAME, e.g. posts/recent_drafts.")


class GenerateWorker(Writes):
    """Add a background worker to a feature: a CommandWorker reacting to a message type, with a test.

    Same as `petrock generate worker FEATURE/NAME [--on TYPE] --json`.
    """

    target: str = Field(description="FEATURE/NAME, e.g. posts/notify_subscribers.")
    on: str | None = Field(None, description="The message type it reacts to. Default: FEATURE/create.")


class ListFeatures(InApp):
    """Each feature of the app with its commands, queries and workers, as the app itself registers them.

    Same as `petrock feature list --json`.
    """


class Check(InApp):
    """Whether the app is current with the installed templates and free of conflict markers ("ok" says).

    Same as `petrock check --json`.
    """


class UpgradeDryRun(InApp):
    """What `petrock upgrade` would change to bring the installed templates' changes in; writes nothing.

    Same as `petrock upgrade --dry-run --json`.
    """

    feature: str | None = Field(None, description="Only this feature.")


@dataclass(frozen=True, slots=True)
class PetrockTool:
    """One MCP tool: its arguments model, and the petrock command line (with ``--json``) it runs."""

    name: str
    model: type[BaseModel]
    argv: Callable[[Any], list[str]]
    read_only: bool = False

    @property
    def description(self) -> str:
        return cleandoc(self.model.__doc__ or "")


def _cli(*words: str, options: Iterable[str] = (), arguments: Iterable[str] = ()) -> list[str]:
    """A petrock command line asking for JSON; after ``--`` an argument such as ``--force`` stays an argument."""
    return [*words, *options, "--json", "--", *arguments]


def _flags(**flags: bool) -> list[str]:
    """``dry_run=True`` -> ``["--dry-run"]``."""
    return [f"--{name.replace('_', '-')}" for name, on in flags.items() if on]


def _writes(args: Writes) -> list[str]:
    return _flags(dry_run=args.dry_run, allow_dirty=args.allow_dirty)


TOOLS = {
    tool.name: tool
    for tool in [
        PetrockTool(
            "new_app",
            NewApp,
            lambda a: _cli("new", options=_flags(dry_run=a.dry_run, no_git=a.no_git), arguments=[a.name]),
        ),
        PetrockTool(
            "add_feature",
            AddFeature,
            lambda a: _cli(
                "feature", "add", options=[*_writes(a), *_flags(owned=a.owned)], arguments=[a.name, *a.fields]
            ),
        ),
        PetrockTool(
            "generate_command",
            GenerateCommand,
            lambda a: _cli("generate", "command", options=_writes(a), arguments=[a.target]),
        ),
        PetrockTool(
            "generate_query",
            GenerateQuery,
            lambda a: _cli("generate", "query", options=_writes(a), arguments=[a.target]),
        ),
        PetrockTool(
            "generate_worker",
            GenerateWorker,
            lambda a: _cli(
                "generate", "worker", options=[*_writes(a), *(["--on", a.on] if a.on else [])], arguments=[a.target]
            ),
        ),
        PetrockTool("list_features", ListFeatures, lambda _: _cli("feature", "list"), read_only=True),
        PetrockTool("check", Check, lambda _: _cli("check"), read_only=True),
        PetrockTool(
            "upgrade_dry_run",
            UpgradeDryRun,
            lambda a: _cli("upgrade", options=["--dry-run", *(["--feature", a.feature] if a.feature else [])]),
            read_only=True,
        ),
    ]
}


async def call(name: str, arguments: dict[str, Any]) -> tuple[bool, dict[str, Any], str]:
    """Run tool ``name``: ``(is_error, JSON answer, text)``; the text of an error is its one line."""
    tool = TOOLS[name]
    try:
        args = tool.model.model_validate(arguments)
    except ValidationError as exc:
        fields = [
            {"loc": [str(part) for part in error["loc"]], "msg": error["msg"]}
            for error in exc.errors(include_url=False, include_input=False)
        ]
        where = ", ".join(".".join(field["loc"]) or "arguments" for field in fields)
        return _error(f"invalid arguments ({where})", "see the tool's input schema", fields=fields)
    cwd = Path(args.path).expanduser() if args.path else Path.cwd()
    if not cwd.is_dir():
        return _error(f"{cwd} is not a directory", "pass the app's directory as path")
    command = [sys.executable, "-m", "petrock", *tool.argv(args)]
    with anyio.fail_after(CALL_TIMEOUT):
        result = await anyio.run_process(command, cwd=cwd, input=b"", check=False, env=_environment())
    stdout = result.stdout.decode(errors="replace")
    stderr = result.stderr.decode(errors="replace")
    try:
        answer = json.loads(stdout)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and "error" not in answer:
        return False, answer, stdout.strip()
    line = _json_error_line(answer) or _error_line(stderr)
    line = line or f"error: petrock exited with {result.returncode} and no message"
    return True, answer if isinstance(answer, dict) else {"error": line.removeprefix("error: ")}, line


def _error(what: str, fix: str, **extra: Any) -> tuple[bool, dict[str, Any], str]:
    return True, {"error": what, "fix": fix, **extra}, f"error: {what} — {fix}"


def _json_error_line(answer: object) -> str | None:
    """petrock's one-line error, from the JSON a ``--json`` refusal prints instead of the text line."""
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        fix = answer.get("fix")
        return f"error: {answer['error']} — {fix}" if fix else f"error: {answer['error']}"
    return None


def _error_line(stderr: str) -> str | None:
    """petrock's ``error: ...`` line (or click's ``Error: ...`` for a bad command line)."""
    for line in reversed(stderr.splitlines()):
        if line.lower().startswith("error:"):
            return "error:" + line[len("error:") :]
    return None


def _environment() -> dict[str, str]:
    """The server's environment, without a terminal's colours: the tools answer in plain JSON."""
    return {**os.environ, "NO_COLOR": "1", "TERM": "dumb"}


def build_server() -> Server:
    """The MCP server (the SDK's low-level ``Server``) offering petrock's tools."""
    from mcp import types
    from mcp.server.lowlevel import Server
    from mcp.shared.exceptions import MCPError

    listing = types.ListToolsResult(
        tools=[
            types.Tool(
                name=tool.name,
                description=tool.description,
                input_schema=tool.model.model_json_schema(),
                annotations=types.ToolAnnotations(read_only_hint=tool.read_only, destructive_hint=False),
            )
            for tool in TOOLS.values()
        ]
    )

    async def list_tools(_context: Any, _params: Any) -> types.ListToolsResult:
        return listing

    one_at_a_time = anyio.Lock()  # two generators committing in one repository would trip over git's index lock

    async def call_tool(_context: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        if params.name not in TOOLS:
            raise MCPError(types.INVALID_PARAMS, f"unknown tool {params.name!r}")
        async with one_at_a_time:
            is_error, answer, text = await call(params.name, params.arguments or {})
        return types.CallToolResult(
            content=[types.TextContent(text=text)], structured_content=answer, is_error=is_error
        )

    return Server(
        "petrock",
        version=__version__,
        instructions="petrock's generators and checks for event-sourced Python apps. Each tool works in the app "
        "named by `path` (default: the server's directory) and answers with the JSON of `petrock ... --json`; "
        "pass dry_run to see the files and diff before writing.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        get_tool_input_schema=lambda name: TOOLS[name].model.model_json_schema() if name in TOOLS else None,
    )


async def serve_stdio() -> None:
    """Serve the tools on stdin/stdout until the client hangs up."""
    from mcp.server.stdio import stdio_server

    server = build_server()
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())
