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


# --- cross-origin protection, headers and the API token (issue 14) ---

TOKEN = "rel-token-7c1f0a9e4b2d"
NEXT_TOKEN = "rel-token-next-3e8d5b16"
SAME_SITE = "http://127.0.0.1:1"  # another port of the same host: a different origin, the same site


def app_output_env(app_dir: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(app_dir / "src"), os.environ.get("PYTHONPATH", "")])}


def created_post(client: httpx.Client, title: str, headers: dict[str, str] | None = None) -> str:
    payload = {"title": title, "content": f"{title}: a post that must survive the attempts."}
    response = client.post("/commands", json={"type": "posts/create", "payload": payload}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["data"]["id"]


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"origin": SAME_SITE},
        {"origin": "null"},
        {"origin": "http://127.0.0.1"},  # the right host without the port is another origin
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
        {"sec-fetch-site": "cross-site", "origin": "SELF"},  # what the browser says wins over a spoofable origin
        {"sec-fetch-site": "same-site", "origin": "SELF", "referer": "SELF/posts"},
    ],
    ids=["evil", "other-port", "null", "no-port", "cross-site", "same-site", "fetch-site-wins", "referer"],
)
def test_cross_origin_form_posts_are_refused_and_nothing_is_appended(
    posts_dir: Path, tmp_path: Path, servers: Callable[..., Server], headers: dict[str, str]
) -> None:
    db = tmp_path / "app.db"
    server = servers(posts_dir, db, env={"SUMMARY_API_URL": ""}).start()
    crafted = {name: value.replace("SELF", server.url) for name, value in headers.items()}
    with httpx.Client(base_url=server.url, timeout=5) as client:
        target = created_post(client, "Target")
        assert wait_until(lambda: SummaryHistory.read(db).settled(), 10)
        before = log_rows(db)
        attempts = [
            ("/posts/new", {"title": "Forged", "content": "forged"}),
            (f"/posts/{target}/edit", {"title": "Defaced", "content": "defaced"}),
            (f"/posts/{target}/delete", {}),
        ]
        for path, form in attempts:
            for accept in ("text/html", "*/*"):
                response = client.post(path, data=form, headers={**crafted, "accept": accept})
                assert response.status_code == 403, (path, response.status_code)
                assert "another site" in response.text
        assert log_rows(db) == before
        assert client.get("/queries/posts/get", params={"id": target}).json()["title"] == "Target"
    server.terminate()


def test_same_origin_forms_and_clients_without_browser_headers_still_work(
    posts_dir: Path, tmp_path: Path, servers: Callable[..., Server]
) -> None:
    server = servers(posts_dir, tmp_path / "app.db", env={"SUMMARY_API_URL": ""}).start()
    with httpx.Client(base_url=server.url, timeout=5) as client:
        for headers in ({}, {"origin": server.url}, {"sec-fetch-site": "same-origin", "origin": server.url}):
            created = client.post("/posts/new", data={"title": "Mine", "content": "ok"}, headers=headers)
            assert created.status_code == 303, created.text
        # The JSON API keeps its own defence: only application/json, which browsers preflight.
        cross = {"sec-fetch-site": "cross-site", "origin": "https://evil.example"}
        text = {**cross, "content-type": "text/plain"}
        plain = client.post("/commands", content=b'{"type": "posts/create"}', headers=text)
        assert plain.status_code == 415
        preflight = client.options("/commands", headers={**cross, "access-control-request-method": "POST"})
        assert preflight.status_code >= 400
        assert not [name for name in preflight.headers if name.lower().startswith("access-control-")]
        assert client.get("/queries/posts/list").json()["total"] == 3
    server.terminate()


def test_every_response_of_a_served_app_carries_the_security_headers(
    posts_dir: Path, tmp_path: Path, servers: Callable[..., Server]
) -> None:
    server = servers(posts_dir, tmp_path / "app.db", env={"SUMMARY_API_URL": ""}).start()
    with httpx.Client(base_url=server.url, timeout=5) as client:
        item = created_post(client, "Headers")
        paths = ("/", "/posts", "/posts/new", f"/posts/{item}", f"/posts/{item}/edit", "/nope", "/static/app.js")
        responses = [client.get(path, headers={"accept": "text/html"}) for path in paths]
        responses += [client.get("/healthz"), client.get("/queries"), client.post("/commands", json={})]
        responses.append(client.post("/posts/new", data={}, headers={"origin": "https://evil.example"}))
        for response in responses:
            csp = response.headers.get("content-security-policy", "")
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, response.url
            assert "unsafe-inline" not in csp
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "same-origin"
            assert response.headers["x-frame-options"] == "DENY"
        pages = [r for r in responses if r.headers["content-type"].startswith("text/html")]
        assert len(pages) >= 6
        for page in pages:
            assert not re.search(r"<script>|<style|\sstyle=|\son[a-z]+=", page.text), page.url
    server.terminate()


def test_the_token_guards_the_api_and_pages_and_rotates(
    posts_dir: Path, tmp_path: Path, servers: Callable[..., Server]
) -> None:
    db = tmp_path / "app.db"
    rotating = servers(posts_dir, db, env={"SUMMARY_API_URL": "", "APP_API_TOKEN": f"{TOKEN}, {NEXT_TOKEN}"}).start()
    with httpx.Client(base_url=rotating.url, timeout=5) as client:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Bearer {TOKEN[:-1]}"}):
            for method, path in [("POST", "/commands"), ("GET", "/queries"), ("GET", "/queries/posts/list")]:
                response = client.request(method, path, json={"type": "posts/create", "payload": {}}, headers=headers)
                assert response.status_code == 401 and "www-authenticate" in response.headers
            assert client.get("/posts", headers={**headers, "accept": "text/html"}).status_code in (303, 401)
        assert log_rows(db) == []
        for token in (TOKEN, NEXT_TOKEN):
            created_post(client, f"By {token[-4:]}", headers={"authorization": f"Bearer {token}"})
        assert client.get("/healthz").json() == {"status": "ok"}  # open, and says nothing more
        login = client.post("/login", data={"token": TOKEN, "next": "/posts"})
        assert login.status_code == 303 and login.headers["location"] == "/posts"
        assert client.get("/posts").status_code == 200  # the session cookie
    rotating.terminate()

    rotating.env = {"SUMMARY_API_URL": "", "APP_API_TOKEN": NEXT_TOKEN}  # the old token retired
    rotating.start()
    with httpx.Client(base_url=rotating.url, timeout=5) as client:
        assert client.get("/queries", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 401
        assert client.get("/queries", headers={"authorization": f"Bearer {NEXT_TOKEN}"}).status_code == 200
    rotating.terminate()
    assert len(log_rows(db)) >= 2


def test_tokens_are_compared_in_constant_time(app_template: Path) -> None:
    source = (app_template / "src" / APP_NAME / "core" / "auth.py").read_text()
    assert "hmac.compare_digest" in source
    assert not re.search(r"token\s*==|==\s*token|in self\._tokens", source)


def test_serving_beyond_loopback_without_a_token_is_refused_in_one_line(app_dir: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in app_output_env(app_dir).items() if k != "APP_API_TOKEN"}
    for host in ("0.0.0.0", "::", "192.0.2.10", "example.com"):
        result = subprocess.run(
            [sys.executable, "-m", APP_NAME, "serve", "--host", host, "--db", str(tmp_path / "app.db")],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode != 0 and result.stdout == ""
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
        assert "APP_API_TOKEN" in result.stderr and "--insecure" in result.stderr
    assert not (tmp_path / "app.db").exists()


def test_the_token_is_in_no_output_of_a_served_run(
    posts_dir: Path, tmp_path: Path, servers: Callable[..., Server], fake_summary_api: object
) -> None:
    db = tmp_path / "app.db"
    env = {"APP_API_TOKEN": f"{TOKEN},{NEXT_TOKEN}", "SUMMARY_API_URL": ""}
    server = servers(posts_dir, db, env=env).start()
    seen: list[str] = []
    with httpx.Client(base_url=server.url, timeout=5) as client:
        attempts = [
            ("GET", "/", {}, {}),
            ("GET", "/posts", {"authorization": f"Bearer {TOKEN}x"}, {}),
            ("GET", "/queries", {"authorization": f"Bearer {TOKEN}x"}, {}),
            ("GET", "/queries", {"authorization": f"Basic {TOKEN}"}, {}),
            ("POST", "/login", {}, {"token": f"{TOKEN}x"}),
            ("POST", "/login", {}, {"token": TOKEN}),
            ("GET", "/posts", {}, {}),
            ("GET", "/nope", {"accept": "text/html"}, {}),
            ("GET", "/healthz", {}, {}),
            ("GET", "/healthz", {"authorization": f"Bearer {TOKEN}"}, {}),
        ]
        for method, path, headers, form in attempts:
            response = client.request(method, path, headers=headers, data=form or None)
            seen.append(str(response.headers) + response.text)
        item = created_post(client, "Secret-free", headers={"authorization": f"Bearer {TOKEN}"})
        assert wait_until(lambda: SummaryHistory.read(db).settled(), 10)
        for path in ("/posts", f"/posts/{item}", f"/posts/{item}/edit", "/"):
            seen.append(client.get(path).text)
    inspected = subprocess.run(
        [sys.executable, "-m", APP_NAME, "inspect", "--db", str(db), "--url", server.url],
        env={**app_output_env(posts_dir), **env}, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert '"workers"' in inspected.stdout
    server.terminate()
    outputs = {
        "server stdout/stderr": server.output(),
        "responses": "\n".join(seen),
        "inspect": inspected.stdout + inspected.stderr,
        "manifest": (posts_dir / ".petrock.toml").read_text(),
        "database": db.read_bytes().decode("latin-1"),
    }
    assert "GET /posts" in outputs["server stdout/stderr"]  # the access log is there
    for where, text in outputs.items():
        for token in (TOKEN, NEXT_TOKEN):
            assert token not in text, f"the token is in the {where}"
