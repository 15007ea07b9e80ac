"""``petrock feature add NAME --owned`` run as a user would, and the owned feature it makes, served by a real uvicorn.

Two members sign up in a real served app, each with their own session and API token:
through the pages, the JSON API and MCP each sees, counts and changes only their own
notes; someone else's is answered as missing and a refused command appends nothing; an
admin and the operator's token see all of them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from .support import app_env, git, new_app, petrock_in, refused_without_a_trace, run_app_tests, serving

APP = "blog"
API_TOKEN = "operator-token-7a1f0c3e9b2d4e6f8a0c"
SECRET_KEY = "owned-reset-key-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
PASSWORDS = {"ann": "ann's passphrase 0001 !", "bob": "bob's passphrase 0002 ?", "ada": "ada's passphrase 0003 #"}
NOTE = {"title": "A title", "body": "Some words."}


@pytest.fixture(scope="module")
def _owned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = new_app(tmp_path_factory.mktemp("owned"), APP)
    for args in (("generate", "auth"), ("feature", "add", "notes", "title:str", "body:text", "--owned")):
        result = petrock_in(root, *args)
        assert result.returncode == 0, result.stderr
    return root


@pytest.fixture
def owned(_owned: Path, tmp_path: Path) -> Path:
    root = tmp_path / APP
    shutil.copytree(_owned, root, symlinks=True)
    return root


# --- the generator ---


def test_owned_needs_users_and_says_so_in_one_line(tmp_path: Path) -> None:
    root = new_app(tmp_path, APP)
    message = refused_without_a_trace(root, "feature", "add", "notes", "--owned")
    assert "--owned needs users" in message and "petrock generate auth" in message


def test_dry_run_plans_the_owners_tests_and_writes_nothing(owned: Path) -> None:
    before = git(owned, "status", "--porcelain") + git(owned, "rev-parse", "HEAD")
    result = petrock_in(owned, "feature", "add", "tasks", "--owned", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    planned = json.loads(result.stdout)
    assert planned["owned"] is True
    assert "tests/test_tasks_owners.py" in json.dumps(planned)
    assert git(owned, "status", "--porcelain") + git(owned, "rev-parse", "HEAD") == before


def test_petrocks_mcp_tool_takes_owned_too(owned: Path) -> None:
    from .test_mcp_petrock import call_tools

    before = git(owned, "status", "--porcelain") + git(owned, "rev-parse", "HEAD")
    (result,) = call_tools(("add_feature", {"name": "tasks", "path": str(owned), "owned": True, "dry_run": True}))
    assert not result.is_error and result.structured_content["owned"] is True
    assert git(owned, "status", "--porcelain") + git(owned, "rev-parse", "HEAD") == before


def test_help_names_the_flag_with_an_example(owned: Path) -> None:
    result = petrock_in(owned, "feature", "add", "--help")
    assert result.returncode == 0
    assert "--owned" in result.stdout and "petrock feature add notes title:str body:text --owned" in result.stdout


def test_the_manifest_records_it_and_the_users_feature_cannot_go_first(owned: Path) -> None:
    assert "owned = true" in (owned / ".petrock.toml").read_text()
    message = refused_without_a_trace(owned, "feature", "remove", "users")
    assert "notes is owned by users" in message
    assert "refers to notes" in refused_without_a_trace(owned, "feature", "add", "tasks", "note:ref:notes")


def test_an_existing_feature_cannot_become_owned(owned: Path) -> None:
    """Its logged commands name no owner: a rebuild could not read them."""
    assert petrock_in(owned, "feature", "add", "tasks", "--no-worker").returncode == 0
    assert "without owners" in refused_without_a_trace(owned, "feature", "add", "tasks", "--owned", "--force")


def test_feature_remove_takes_the_owners_tests_too(owned: Path) -> None:
    result = petrock_in(owned, "feature", "remove", "notes")
    assert result.returncode == 0, result.stderr
    assert not (owned / "tests" / "test_notes_owners.py").exists()
    assert not (owned / "src" / APP / "notes").exists()


@pytest.mark.slow
def test_the_apps_own_tests_of_the_owned_feature_pass(owned: Path) -> None:
    tests = ("tests/test_notes.py", "tests/test_notes_owners.py", "tests/test_openapi.py")
    result = run_app_tests(owned, *tests, "-q")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert result.stdout.count(".") >= 50  # every test of the three files ran (one dot each)


# --- served: two members, an admin and the operator ---


def create_admin(root: Path, db: Path, email: str, password: str) -> None:
    subprocess.run(
        [sys.executable, "-m", APP, "users", "create-admin", email, "--password-stdin", "--db", str(db)],
        cwd=root, env=app_env(root), input=password + "\n", capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip


def signed_in(url: str, name: str, *, register: bool) -> tuple[httpx.Client, str]:
    """A browser-like client with ``name``'s session, and an API token made on their account page."""
    client = httpx.Client(base_url=url, follow_redirects=False, timeout=20)
    form = {"email": f"{name}@example.com", "password": PASSWORDS[name]}
    if register:
        assert client.post("/register", data=form).status_code == 303
    assert client.post("/login", data=form).status_code == 303
    made = client.post("/account/tokens", data={"name": "tests"}).text
    token = re.search(r'<code id="new-token">([A-Za-z0-9_-]+)</code>', made)
    assert token is not None
    return client, token.group(1)


def api(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=20, headers={"authorization": f"Bearer {token}"})


def command(client: httpx.Client, verb: str, payload: dict[str, Any]) -> httpx.Response:
    return client.post("/commands", json={"type": f"notes/{verb}", "payload": payload})


def listing(client: httpx.Client, **params: Any) -> dict[str, Any]:
    response = client.get("/queries/notes/list", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def log_version(operator: httpx.Client) -> int:
    return operator.get("/healthz").json()["version"]


async def mcp_calls(url: str, token: str, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """Each call as ``(is_error, structured content)``, through the mcp SDK's own client."""
    answers = []
    with anyio.fail_after(60):
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http,
            Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client,
        ):
            for tool, arguments in calls:
                result = await client.call_tool(tool, arguments)
                answers.append((result.is_error, result.structured_content))
    return answers


@pytest.mark.slow
def test_two_members_see_only_their_own_through_pages_api_and_mcp(owned: Path) -> None:
    db = owned / "app.db"
    create_admin(owned, db, "ada@example.com", PASSWORDS["ada"])
    env = {"APP_API_TOKEN": API_TOKEN, "APP_SECRET_KEY": SECRET_KEY, "APP_OPEN_SIGNUP": "1", "SMTP_URL": ""}
    with serving(owned, db, env=env) as server:
        ann_browser, ann_token = signed_in(server.url, "ann", register=True)
        bob_browser, bob_token = signed_in(server.url, "bob", register=True)
        ada_browser, ada_token = signed_in(server.url, "ada", register=False)
        ann, bob, ada = api(server.url, ann_token), api(server.url, bob_token), api(server.url, ada_token)
        operator = api(server.url, API_TOKEN)

        # ann: two through the page's form, one through the API; bob: one through the API, one through MCP
        for title in ("Ann's first", "Ann's second"):
            assert ann_browser.post("/notes/new", data={**NOTE, "title": title}).status_code == 303
        created_by_ann = command(ann, "create", {**NOTE, "title": "Ann's third"})
        assert created_by_ann.status_code == 201
        ann_api = created_by_ann.json()["data"]["id"]  # made by the app: a client cannot choose it
        created_by_bob = command(bob, "create", {**NOTE, "title": "Bob's first"})
        assert created_by_bob.status_code == 201
        bob_api, bob_id = created_by_bob.json()["data"]["id"], created_by_bob.json()["data"]["actor"]["user"]
        [(failed, created)] = anyio.run(
            mcp_calls, server.url, bob_token, [("notes_create", {**NOTE, "title": "Bob's second"})]
        )
        assert not failed and created["data"]["actor"] == {"user": bob_id, "admin": False}

        # the JSON API: lists, counts and pages hold only one's own
        assert listing(ann)["total"] == 3 and listing(bob)["total"] == 2
        assert {note["title"] for note in listing(bob)["items"]} == {"Bob's first", "Bob's second"}
        assert [len(listing(ann, limit=2, offset=offset)["items"]) for offset in (0, 2)] == [2, 1]
        assert listing(ada)["total"] == listing(operator)["total"] == 5

        # security trial 4, G8: answers made for one user are kept out of shared caches
        for answer in (bob.get("/queries/notes/list"), bob_browser.get("/notes"), bob_browser.get("/account")):
            assert answer.headers["cache-control"] == "private, no-store", answer.url
            assert "Cookie, Authorization" in answer.headers["vary"], answer.url
        assert "private" not in bob_browser.get("/static/app.css").headers.get("cache-control", "")

        # someone else's note: not found, not changed, not deleted, nothing appended
        before = log_version(operator)
        assert bob.get("/queries/notes/get", params={"id": ann_api}).status_code == 404
        assert command(bob, "update", {**NOTE, "id": ann_api, "title": "Bob was here"}).status_code == 404
        assert command(bob, "delete", {"id": ann_api}).status_code == 404
        assert command(bob, "create", {**NOTE, "actor": {"user": "x"}}).status_code == 400
        assert command(operator, "create", NOTE).status_code == 403
        assert bob_browser.get(f"/notes/{ann_api}").status_code == 404
        assert bob_browser.post(f"/notes/{ann_api}/delete").status_code == 404
        assert bob_browser.post(f"/notes/{ann_api}/edit", data={**NOTE, "title": "Bob was here"}).status_code == 404
        # security trial 4, G1: a create naming ann's id said "already exists" (201 for a free one)
        taken, free = (command(bob, "create", {**NOTE, "id": item_id}) for item_id in (ann_api, "never-used-1"))
        assert taken.status_code == free.status_code == 400 and taken.text == free.text.replace("never-used-1", ann_api)
        assert "already exists" not in taken.text and "made by the app" in taken.text
        mcp_answers = anyio.run(
            mcp_calls,
            server.url,
            bob_token,
            [
                ("notes_list", {}),
                ("notes_get", {"id": ann_api}),
                ("notes_delete", {"id": ann_api}),
                ("notes_create", {**NOTE, "id": ann_api}),
                ("notes_create", {**NOTE, "id": "never-used-2"}),
            ],
        )
        assert log_version(operator) == before
        assert ann.get("/queries/notes/get", params={"id": ann_api}).json()["title"] == "Ann's third"

        # MCP answers bob with his own only, and a create with an id the same whoever has it
        (_, bob_list), (get_failed, _), (delete_failed, _), (taken_failed, _), (free_failed, _) = mcp_answers
        assert bob_list["total"] == 2 and get_failed and delete_failed and taken_failed and free_failed

        # pages: each list and the home page show one's own; an admin's show everyone's
        ann_page, bob_page, ada_page = (b.get("/notes").text for b in (ann_browser, bob_browser, ada_browser))
        assert "Ann&#39;s first" in ann_page and "Bob&#39;s" not in ann_page
        assert "Bob&#39;s first" in bob_page and "Ann&#39;s" not in bob_page
        assert "Ann&#39;s first" in ada_page and "Bob&#39;s first" in ada_page
        assert "Ann&#39;s" not in bob_browser.get("/").text

        # an admin may change anyone's; the owner stays
        assert command(ada, "update", {**NOTE, "id": bob_api, "title": "Fixed by an admin"}).status_code == 201
        assert bob.get("/queries/notes/get", params={"id": bob_api}).json()["owner"] == bob_id

        # the pages never took an id: a form's is ignored, and the new note gets its own
        made = bob_browser.post("/notes/new", data={**NOTE, "id": ann_api, "title": "Bob's page note"})
        assert made.status_code == 303 and ann_api not in made.headers["location"]
        assert ann.get("/queries/notes/get", params={"id": ann_api}).json()["title"] == "Ann's third"


@pytest.mark.slow
def test_the_owners_tests_pass_on_postgresql(owned: Path, pg_url: str) -> None:
    result = run_app_tests(owned, "tests/test_notes_owners.py", "-k", "postgresql", "-rA", env={"APP_TEST_DB": pg_url})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert result.stdout.count("PASSED") == 7, result.stdout[-1500:]
