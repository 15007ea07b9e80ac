"""A generated app's MCP tools through the mcp SDK's own client: over a real stdio subprocess
(``python -m blog mcp``) and over streamable HTTP against a real served app."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from .support import REPO, app_env, serving

pytestmark = pytest.mark.slow

GUIDE = REPO / "docs" / "guide.md"
POSTS_TOOLS = ["posts_create", "posts_delete", "posts_get", "posts_list", "posts_update"]


def stdio_server(root: Path, db: Path) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable, args=["-m", "blog", "mcp", "--db", str(db)], env=app_env(root), cwd=str(root)
    )


def logged_types(root: Path, db: Path) -> list[str]:
    """The type of every message in the log, oldest first (read with the app's own ``log tail``)."""
    log = subprocess.run(
        [sys.executable, "-m", "blog", "log", "tail", "--db", str(db)],
        cwd=root, env=app_env(root), capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return [json.loads(line)["type"] for line in log.stdout.splitlines()]


async def wait_for_summary(client: Client, post_id: str) -> dict[str, Any]:
    """The summary worker runs in the MCP server's process too: poll until it has answered."""
    while True:
        post = (await client.call_tool("posts_get", {"id": post_id})).structured_content
        if post["summary_status"] != "pending":
            return post
        await anyio.sleep(0.05)


def test_python_m_app_mcp_runs_the_app_over_stdio_workers_included(blog_with_posts: Path, tmp_path: Path) -> None:
    db = tmp_path / "app.db"

    async def session() -> tuple[list[str], dict[str, Any], dict[str, Any], dict[str, Any]]:
        with anyio.fail_after(60):  # and 30 s a request: httpx's default 5 s ran out on a busy machine
            async with Client(stdio_server(blog_with_posts, db), read_timeout_seconds=30) as client:
                tools = sorted(tool.name for tool in (await client.list_tools()).tools)
                created = await client.call_tool("posts_create", {"title": "Hello", "content": "Hello from MCP."})
                refused = await client.call_tool("posts_create", {"title": "", "content": "x"})
                post = await wait_for_summary(client, created.structured_content["data"]["id"])
        return tools, created.structured_content, refused.structured_content, post

    tools, created, refused, post = anyio.run(session)
    assert tools == POSTS_TOOLS  # the summary worker's commands are not tools
    assert created["id"] == 1 and created["type"] == "posts/create"
    assert refused["error"] == "invalid payload" and refused["fields"][0]["loc"] == ["title"]
    assert post["summary_status"] == "ready" and post["summary"]
    types = logged_types(blog_with_posts, db)
    assert types[0] == "posts/create" and "posts/create" not in types[1:]  # the refused call appended nothing
    assert "posts/set-generated-summary" in types


def test_mcp_refuses_a_database_a_server_already_owns(blog_with_posts: Path, tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    with serving(blog_with_posts, db):
        result = subprocess.run(
            [sys.executable, "-m", "blog", "mcp", "--db", str(db)],
            cwd=blog_with_posts, env=app_env(blog_with_posts), stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stdout == ""  # stdout is the protocol: nothing else is ever written there
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "already in use" in result.stderr


def test_sigterm_stops_the_stdio_server_cleanly(blog_with_posts: Path, tmp_path: Path) -> None:
    """Clients close stdin to stop a server, then send SIGTERM if it lingers: the workers still stop."""
    server = subprocess.Popen(
        [sys.executable, "-m", "blog", "mcp", "--db", str(tmp_path / "app.db")],
        cwd=blog_with_posts, env=app_env(blog_with_posts), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    watchdog = threading.Timer(60, server.kill)  # bounds the blocking readline below
    watchdog.start()
    try:
        assert server.stderr is not None
        # The app is up (its projections built, its worker started), stdin still open.
        assert any("started 1 worker(s)" in line for line in iter(server.stderr.readline, ""))
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=20)
    finally:
        watchdog.cancel()
        server.kill()
    assert server.returncode == 0
    assert "worker 'posts-summaries' stopped" in stderr


def test_a_served_app_answers_mcp_at_slash_mcp(blog_with_posts: Path, tmp_path: Path) -> None:
    async def session(url: str) -> tuple[Any, ...]:
        with anyio.fail_after(60):  # and 30 s a request: httpx's default 5 s ran out on a busy machine
            async with Client(url) as client:
                tools = (await client.list_tools()).tools
                created = await client.call_tool("posts_create", {"title": "Hi", "content": "Over HTTP."})
                missing = await client.call_tool("posts_delete", {"id": "nope"})
                listed = await client.call_tool("posts_list", {"limit": 5})
        read_only = {tool.name: tool.annotations.read_only_hint for tool in tools}
        return sorted(read_only), (created.is_error, created.structured_content), missing, listed, read_only

    db = tmp_path / "app.db"
    with serving(blog_with_posts, db) as server:
        names, (created_error, created), missing, listed, read_only = anyio.run(session, f"{server.url}/mcp")
    assert names == POSTS_TOOLS
    assert read_only["posts_list"] and read_only["posts_get"] and not read_only["posts_create"]
    assert not created_error and created["data"]["title"] == "Hi"
    assert missing.is_error and missing.structured_content == {"error": "no post with id 'nope'"}
    assert listed.structured_content["total"] == 1
    assert "posts/delete" not in logged_types(blog_with_posts, db)  # the refused delete appended nothing


def test_the_guides_mcp_examples_work(blog_with_posts: Path, tmp_path: Path) -> None:
    """docs/guide.md, section 9: its client configs are JSON and its Python client runs as printed."""
    section = GUIDE.read_text().split("## 9. Connecting an AI agent (MCP)")[1].split("\n## ")[0]
    configs = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", section, re.DOTALL)]
    assert configs and all("mcpServers" in config for config in configs)
    assert configs[0]["mcpServers"]["blog"]["args"][:3] == ["-m", "blog", "mcp"]
    (client,) = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    with serving(blog_with_posts, tmp_path / "app.db") as server:
        script = client.replace("http://127.0.0.1:8080", server.url)
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    registration_order = ["posts_create", "posts_update", "posts_delete", "posts_get", "posts_list"]
    assert result.stdout.splitlines()[0] == str(registration_order)
    assert result.stdout.splitlines()[1].startswith("False {'id': 1, 'type': 'posts/create'")


def test_slash_mcp_refuses_a_host_header_it_is_not_served_under(blog_with_posts: Path, tmp_path: Path) -> None:
    """DNS-rebinding protection: a page on another name that resolves to 127.0.0.1 gets nothing."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"accept": "application/json, text/event-stream", "host": "evil.example"}
    with serving(blog_with_posts, tmp_path / "app.db") as server:
        response = httpx.post(f"{server.url}/mcp", json=body, headers=headers, timeout=30)
    assert response.status_code == 421


def test_help_and_building_the_http_app_do_not_import_the_mcp_sdk(blog_with_posts: Path) -> None:
    code = (
        "import sys\n"
        "from blog.cli import cli\n"
        "from blog.core.http import create_http_app\n"
        "from blog.main import build_app\n"
        "create_http_app(build_app(':memory:'))\n"
        "try:\n"
        "    cli(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in ('mcp', 'mcp_types')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=blog_with_posts, env=app_env(blog_with_posts),
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert " mcp " in result.stdout  # the command is listed...
    assert result.stdout.rstrip().endswith("[]")  # ...and nothing of the SDK was imported


def test_slash_mcp_needs_the_api_token_when_the_app_has_one(blog_with_posts: Path, tmp_path: Path) -> None:
    token = "mcp-test-token-0123456789abcdef"

    async def tools_with(url: str, authorization: str) -> list[str]:
        with anyio.fail_after(60):  # and 30 s a request: httpx's default 5 s ran out on a busy machine
            async with (
                httpx2.AsyncClient(headers={"Authorization": authorization}, timeout=30) as http,
                Client(streamable_http_client(url, http_client=http)) as client,
            ):
                return sorted(tool.name for tool in (await client.list_tools()).tools)

    with serving(blog_with_posts, tmp_path / "app.db", env={"APP_API_TOKEN": token}) as server:
        url = f"{server.url}/mcp"
        refused = [
            httpx.post(url, json={}, headers=headers, timeout=30).status_code
            for headers in ({}, {"Authorization": "Bearer not-the-token"})
        ]
        names = anyio.run(tools_with, url, f"Bearer {token}")
    assert refused == [401, 401]
    assert names == POSTS_TOOLS
