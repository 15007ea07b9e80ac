"""``petrock mcp``: petrock's generators and checks as MCP tools, through the mcp SDK's own client,
in memory and over a real ``petrock mcp`` subprocess. Each tool answers with the CLI's ``--json``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError, StdioServerParameters

from petrock.mcp import build_server

from .support import git_snapshot, petrock_in

pytestmark = pytest.mark.slow


def call_tools(*calls: tuple[str, dict[str, Any]], server: Any = None) -> list[Any]:
    """Call the tools in order through one client session (in memory unless ``server`` says otherwise)."""

    async def session() -> list[Any]:
        with anyio.fail_after(240):
            async with Client(server or build_server(), read_timeout_seconds=120) as client:
                return [await client.call_tool(name, arguments) for name, arguments in calls]

    return anyio.run(session)


def cli_json(root: Path, *args: str) -> dict[str, Any]:
    result = petrock_in(root, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_tools_are_petrocks_generators_and_checks() -> None:
    async def listing() -> dict[str, Any]:
        async with Client(build_server()) as client:
            return {tool.name: tool for tool in (await client.list_tools()).tools}

    tools = anyio.run(listing)
    assert sorted(tools) == [
        "add_feature", "check", "generate_command", "generate_query", "generate_worker", "list_features",
        "new_app", "upgrade_dry_run",
    ]  # fmt: skip
    read_only = sorted(name for name, tool in tools.items() if tool.annotations.read_only_hint)
    assert read_only == ["check", "list_features", "upgrade_dry_run"]
    assert "dry_run" in tools["add_feature"].input_schema["properties"]
    assert tools["add_feature"].input_schema["properties"]["fields"]["type"] == "array"


def test_new_app_looks_first_then_creates_the_app(tmp_path: Path) -> None:
    looked, created = call_tools(
        ("new_app", {"name": "shop", "path": str(tmp_path), "dry_run": True}),
        ("new_app", {"name": "shop", "path": str(tmp_path)}),
    )
    assert not looked.is_error and looked.structured_content["dry_run"] is True
    assert not created.is_error and created.structured_content["root"] == str(tmp_path / "shop")
    assert created.structured_content["commit"]
    assert {file["path"] for file in looked.structured_content["files"]} == {
        file["path"] for file in created.structured_content["files"]
    }
    assert (tmp_path / "shop" / ".petrock.toml").is_file()


def test_dry_runs_write_nothing_and_generators_answer_as_the_cli_does(blog_with_posts: Path) -> None:
    root = str(blog_with_posts)
    before = git_snapshot(blog_with_posts)
    looks = call_tools(
        ("add_feature", {"name": "tags", "path": root, "dry_run": True}),
        ("generate_command", {"target": "posts/publish", "path": root, "dry_run": True}),
        ("generate_query", {"target": "posts/drafts", "path": root, "dry_run": True}),
        ("generate_worker", {"target": "posts/notify", "on": "posts/update", "path": root, "dry_run": True}),
        ("upgrade_dry_run", {"path": root}),
        ("check", {"path": root}),
    )
    assert git_snapshot(blog_with_posts) == before
    assert [result.is_error for result in looks] == [False] * 6
    assert looks[3].structured_content["component"] == "posts/notify"
    assert looks[4].structured_content == cli_json(blog_with_posts, "upgrade", "--dry-run")
    assert looks[5].structured_content["ok"] is True

    made = call_tools(
        ("generate_command", {"target": "posts/publish", "path": root}),
        ("list_features", {"path": root}),
    )
    assert made[0].structured_content["commit"] and made[0].structured_content["dry_run"] is False
    assert made[1].structured_content == cli_json(blog_with_posts, "feature", "list")
    assert "posts/publish" in made[1].structured_content["features"][0]["commands"]


def test_refusals_are_error_results_with_petrocks_one_line_error(blog_with_posts: Path, tmp_path: Path) -> None:
    not_an_app, taken, invalid, option_like = call_tools(
        ("check", {"path": str(tmp_path)}),
        ("add_feature", {"name": "posts", "path": str(blog_with_posts)}),
        ("generate_command", {"path": str(blog_with_posts)}),
        ("add_feature", {"name": "--force", "path": str(blog_with_posts)}),
    )
    cli = petrock_in(tmp_path, "check")
    assert not_an_app.is_error and not_an_app.content[0].text == cli.stderr.strip()
    assert taken.is_error and taken.content[0].text.startswith("error: ") and "\n" not in taken.content[0].text
    assert taken.structured_content["error"] and taken.structured_content["fix"]
    assert invalid.is_error and invalid.structured_content["fields"][0]["loc"] == ["target"]
    assert option_like.is_error and "'--force' is not a valid feature name" in option_like.content[0].text


def test_fields_are_passed_to_feature_add_as_the_cli_takes_them(blog_app: Path) -> None:
    arguments = {"name": "notes", "fields": ["title:str"], "path": str(blog_app), "dry_run": True}
    (result,) = call_tools(("add_feature", arguments))
    cli = petrock_in(blog_app, "feature", "add", "notes", "title:str", "--dry-run", "--json")
    assert result.is_error == (cli.returncode != 0)
    if result.is_error:  # both refuse the same way (click's "Error: ..." for an argument it does not take)
        line = next(line for line in cli.stderr.splitlines() if line.lower().startswith("error:"))
        assert result.content[0].text == "error:" + line[len("error:") :]
    else:
        assert result.structured_content == json.loads(cli.stdout)


def test_unknown_tools_are_a_protocol_error() -> None:
    async def session() -> None:
        async with Client(build_server()) as client:
            with pytest.raises(MCPError, match="unknown tool"):
                await client.call_tool("make_coffee", {})

    anyio.run(session)


def test_petrock_mcp_over_stdio_works_in_its_directory_by_default(blog_with_posts: Path) -> None:
    server = StdioServerParameters(command=sys.executable, args=["-m", "petrock", "mcp"], cwd=str(blog_with_posts))
    (listed,) = call_tools(("list_features", {}), server=server)
    assert not listed.is_error
    assert listed.structured_content == cli_json(blog_with_posts, "feature", "list")
