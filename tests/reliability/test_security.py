"""Security defaults: loopback only, escaped pages, harmless SQL metacharacters, no code through names."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from .harness import APP_NAME, Server, SummaryHistory, add_feature, integrity, log_rows, wait_until

pytestmark = pytest.mark.slow

SCRIPT = "<script>alert(1)</script>"
SQL = "'; DROP TABLE messages; --"


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as the kernel writes them) of the TCP sockets listening on ``port``."""
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                addresses.add(address)
    return addresses


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads the Linux socket table")
def test_serve_binds_to_loopback_only_by_default(app_dir: Path, tmp_path: Path, servers: Callable[..., Server]) -> None:
    server = servers(app_dir, tmp_path / "app.db", host=None).start()
    assert listening_addresses(server.port) == {"0100007F"}  # 127.0.0.1, nothing on 0.0.0.0 or ::
    server.terminate()


def test_script_in_user_data_is_escaped_on_every_page(
    app_dir: Path, tmp_path: Path, servers: Callable[..., Server]
) -> None:
    add_feature(app_dir, "notes")
    server = servers(app_dir, tmp_path / "app.db").start()
    note = {"id": "x", "title": SCRIPT, "body": SCRIPT, "tags": [SCRIPT], "author": {"name": SCRIPT}}
    with httpx.Client(base_url=server.url) as client:
        assert client.post("/commands", json={"type": "notes/add", "payload": note}).status_code == 201
        for path in ("/", "/notes", "/notes/x"):
            page = client.get(path)
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            assert SCRIPT not in page.text, f"{path} renders user data unescaped"
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in client.get("/notes/x").text
        assert client.get("/queries/notes/get", params={"id": "x"}).json()["title"] == SCRIPT
    server.terminate()


def test_sql_metacharacters_are_stored_verbatim_and_harmless(
    app_dir: Path, tmp_path: Path, servers: Callable[..., Server]
) -> None:
    add_feature(app_dir, "notes")
    db = tmp_path / "app.db"
    server = servers(app_dir, db).start()
    with httpx.Client(base_url=server.url) as client:
        note = {"id": "sql", "title": SQL, "body": "1' OR '1'='1", "tags": ['"; --', "%", "_"]}
        assert client.post("/commands", json={"type": "notes/add", "payload": note}).status_code == 201
        for params in (
            {"prefix": "' OR 1=1 --"},
            {"prefix": "%"},
            {"prefix": "_"},
            {"limit": "1; DROP TABLE messages"},
        ):
            response = client.get("/queries/notes/list", params=params)
            assert response.status_code in (200, 400)
            if response.status_code == 200:
                assert response.json() == {}
        assert client.get("/queries/notes/get", params={"id": "' OR 1=1 --"}).status_code == 404
        assert client.get("/queries/notes/get", params={"id": "sql"}).json()["title"] == SQL
    server.terminate()
    assert integrity(db) == "ok"
    assert [row[2] for row in log_rows(db)] == ["notes/add"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(app_dir / "src"), os.environ.get("PYTHONPATH", "")])}
    cli = [sys.executable, "-m", APP_NAME, "kv"]
    subprocess.run([*cli, "set", SQL, SQL, "--db", str(db)], env=env, check=True, capture_output=True)
    got = subprocess.run([*cli, "get", SQL, "--db", str(db)], env=env, check=True, capture_output=True, text=True)
    assert got.stdout.strip() == f'"{SQL}"'
    assert integrity(db) == "ok" and len(log_rows(db)) == 1


def test_generated_files_get_the_usual_permissions(app_template: Path) -> None:
    old = os.umask(0o022)
    os.umask(old)
    modes = {p.relative_to(app_template).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in app_template.rglob("*.py")}
    assert modes and set(modes.values()) == {0o666 & ~old}, modes


def test_script_in_a_post_and_its_summary_is_escaped_on_every_page(
    posts_dir: Path, tmp_path: Path, servers: Callable[..., Server]
) -> None:
    db = tmp_path / "app.db"
    described = subprocess.run(
        [sys.executable, "-m", APP_NAME, "inspect", "--db", str(tmp_path / "scratch.db")],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(posts_dir / "src"), os.environ.get("PYTHONPATH", "")])},
        capture_output=True,
        text=True,
        check=True,
    )
    pages = [
        re.sub(r"\{[^}]+\}", "xss", route["path"])
        for route in json.loads(described.stdout)["routes"]
        if "GET" in route["methods"]
    ]
    server = servers(posts_dir, db, env={"SUMMARY_API_URL": ""}).start()  # the offline summarizer echoes the text
    post = {"id": "xss", "title": SCRIPT, "content": f"{SCRIPT} is how it starts. Then more."}
    with httpx.Client(base_url=server.url) as client:
        assert client.post("/commands", json={"type": "posts/create", "payload": post}).status_code == 201
        assert wait_until(lambda: SummaryHistory.read(db).settled(), 10)
        assert SummaryHistory.read(db).outcomes["xss"][0][0] == "set-generated-summary"
        html = 0
        for path in ["/", *pages]:
            page = client.get(path)
            if page.headers.get("content-type", "").startswith("text/html"):
                html += 1
                assert SCRIPT not in page.text, f"{path} renders user data unescaped"
        assert html >= 4, pages
        assert "&lt;script&gt;" in client.get("/posts/xss").text
        # A refused form comes back with the user's input in it: escaped too.
        refused = client.post("/posts/new", data={"title": SCRIPT, "content": ""})
        assert 400 <= refused.status_code < 500
        assert SCRIPT not in refused.text
    server.terminate()
