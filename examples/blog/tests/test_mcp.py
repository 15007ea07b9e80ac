"""The MCP tools: the app's commands and queries for AI agents, through the mcp SDK's own client."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from mcp import Client, MCPError, StdioServerParameters
from pydantic import BaseModel

from blog.core import App
from blog.core.errors import DATABASE_AWAY
from blog.core.log import LogUnreachable
from blog.core.mcp import build_server, tool_name
from blog.main import build_app

from .conftest import register_notes

pytestmark = pytest.mark.anyio


class Stamp(BaseModel):
    """Only a worker may send this."""

    id: str


@pytest.fixture
def notes_app(app: App) -> App:
    register_notes(app)
    app.commands.register("notes/stamp", Stamp, public=False)
    return app


async def test_public_commands_and_queries_are_the_tools(notes_app: App) -> None:
    async with Client(build_server(notes_app)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert sorted(tools) == ["notes_add", "notes_get", "notes_remove"]  # notes/stamp is worker-only
    assert tools["notes_add"].input_schema == notes_app.commands.get("notes/add").model.model_json_schema()
    assert tools["notes_get"].annotations.read_only_hint is True
    assert tools["notes_add"].annotations.read_only_hint is False


async def test_a_command_is_appended_and_answered_as_json(notes_app: App) -> None:
    async with Client(build_server(notes_app)) as client:
        result = await client.call_tool("notes_add", {"id": "a", "text": "hi"})
        assert not result.is_error
        assert result.structured_content["type"] == "notes/add"
        assert json.loads(result.content[0].text) == result.structured_content
        answer = await client.call_tool("notes_get", {"id": "a"})
    assert answer.structured_content == {"id": "a", "text": "hi"}
    assert notes_app.log.version() == 1


async def test_invalid_arguments_are_an_error_result_with_the_fields(notes_app: App) -> None:
    async with Client(build_server(notes_app)) as client:
        result = await client.call_tool("notes_add", {"id": "a", "text": ""})
    assert result.is_error
    assert [field["loc"] for field in result.structured_content["fields"]] == [["text"]]
    assert notes_app.log.version() == 0


async def test_a_refused_command_is_an_error_result_and_appends_nothing(notes_app: App) -> None:
    async with Client(build_server(notes_app)) as client:
        result = await client.call_tool("notes_remove", {"id": "missing"})
    assert result.is_error and "missing" in result.structured_content["error"]
    assert notes_app.log.version() == 0


async def test_worker_only_and_unknown_tools_cannot_be_called(notes_app: App) -> None:
    async with Client(build_server(notes_app)) as client:
        for name in ("notes_stamp", "notes_nope"):
            with pytest.raises(MCPError, match="unknown tool"):
                await client.call_tool(name, {"id": "a"})
    assert notes_app.log.version() == 0


class Page(BaseModel):
    offset: int = 0


def overflowing(query: Page) -> None:
    raise OverflowError("Python int too large to convert to SQLite INTEGER")


async def test_a_tool_that_fails_inside_answers_a_generic_error_and_logs_the_detail_once(
    notes_app: App, caplog: pytest.LogCaptureFixture
) -> None:
    """Security trial 3, F14: the SDK passed the exception's own text to the client."""
    notes_app.queries.register("notes/broken", Page, overflowing)
    async with Client(build_server(notes_app)) as client:
        result = await client.call_tool("notes_broken", {"offset": 1})
    assert result.is_error and result.structured_content == {"error": "The server hit an error; it has been logged."}
    assert "SQLite" not in result.content[0].text
    failures = [record for record in caplog.records if record.exc_info]
    assert len(failures) == 1 and "notes_broken" in failures[0].getMessage()
    assert "too large" in str(failures[0].exc_info[1])


async def test_a_tool_called_while_the_database_is_away_says_so_without_naming_it_or_a_traceback(
    notes_app: App, caplog: pytest.LogCaptureFixture
) -> None:
    """A fault trial: a tool called during an outage got the generic error, and the log a traceback."""

    def away(query: Page) -> None:
        raise LogUnreachable("cannot reach the database at postgresql://app@db.internal:5432/app (refused)")

    notes_app.queries.register("notes/away", Page, away)
    async with Client(build_server(notes_app)) as client:
        result = await client.call_tool("notes_away", {"offset": 1})
    assert result.is_error and result.structured_content == {"error": DATABASE_AWAY}
    assert "db.internal" not in result.content[0].text
    assert not [record for record in caplog.records if record.exc_info]


def test_tool_names_are_command_types_with_an_underscore_for_the_slash() -> None:
    assert tool_name("posts/create") == "posts_create"
    assert tool_name("posts/set-generated-summary") == "posts_set-generated-summary"
    with pytest.raises(ValueError, match="cannot be an MCP tool name"):
        tool_name("posts/créer")


async def test_python_m_app_mcp_serves_every_registered_tool_over_stdio(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    registered = build_app(str(db))
    expected = sorted(
        [tool_name(spec.type) for spec in registered.commands if spec.public]
        + [tool_name(spec.type) for spec in registered.queries]
    )
    registered.log.close()
    src = str(Path(__file__).resolve().parent.parent / "src")
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "blog", "mcp", "--db", str(db)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))},
    )
    async with Client(server, read_timeout_seconds=30) as client:
        tools = (await client.list_tools()).tools
    assert sorted(tool.name for tool in tools) == expected
