"""Secure by default: security headers, no cross-origin form posts, and APP_API_TOKEN for the API and pages."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.testclient import TestClient

from shop.core import App, MessageLog
from shop.core.auth import SESSION_COOKIE, Tokens, open_bind_refusal
from shop.core.http import create_http_app, read_form

from .conftest import AddNote, register_notes

HTML = {"accept": "text/html"}
NOTE = {"type": "notes/add", "payload": {"id": "a", "text": "hi"}}
TOKEN = "s3cret-token-for-tests"
NEW_TOKEN = "the-next-token-after-rotation"


def add_note_form(app: App) -> None:
    """A page route that changes state, as a feature's HTML form does."""

    async def add(request: Request) -> Response:
        form = await read_form(request)
        app.dispatch(AddNote(id=form["id"], text=form["text"]))
        return Response(status_code=303, headers={"location": "/"})

    app.add_route("/notes/new", add, methods=("POST",))


@pytest.fixture
def client(app: App) -> Iterator[TestClient]:
    register_notes(app)
    add_note_form(app)
    with TestClient(create_http_app(app, tokens=[])) as client:
        yield client


def secured(app: App, *tokens: str) -> TestClient:
    register_notes(app)
    add_note_form(app)
    return TestClient(create_http_app(app, tokens=tokens or [TOKEN]))


# --- headers ---


@pytest.mark.parametrize("path", ["/", "/healthz", "/queries", "/static/app.css", "/nope"])
def test_every_response_carries_the_security_headers(client: TestClient, path: str) -> None:
    headers = client.get(path).headers
    assert "default-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"


# --- cross-origin protection ---


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
        {"sec-fetch-site": "cross-site", "origin": "http://testserver"},
    ],
)
def test_a_cross_origin_form_post_is_refused_and_appends_nothing(
    client: TestClient, app: App, headers: dict[str, str]
) -> None:
    response = client.post("/notes/new", data={"id": "x", "text": "forged"}, headers={**HTML, **headers})
    assert response.status_code == 403 and "another site" in response.text
    assert app.log.version() == 0


@pytest.mark.parametrize(
    "headers",
    [{}, {"sec-fetch-site": "same-origin"}, {"sec-fetch-site": "none"}, {"origin": "http://testserver"}],
)
def test_same_origin_and_non_browser_form_posts_pass(client: TestClient, app: App, headers: dict[str, str]) -> None:
    response = client.post("/notes/new", data={"id": "x", "text": "mine"}, headers=headers, follow_redirects=False)
    assert response.status_code == 303
    assert app.log.version() == 1


def test_the_json_api_keeps_refusing_anything_but_json_and_answers_no_cors(client: TestClient, app: App) -> None:
    cross = {"sec-fetch-site": "cross-site", "origin": "https://evil.example"}
    form = client.post("/commands", content=b'{"type": "notes/add"}', headers={**cross, "content-type": "text/plain"})
    assert form.status_code == 415
    preflight = client.options("/commands", headers={**cross, "access-control-request-method": "POST"})
    assert not any(name.startswith("access-control-") for name in preflight.headers)
    assert app.log.version() == 0


# --- the token ---


def test_without_a_token_the_api_is_open(client: TestClient) -> None:
    assert client.post("/commands", json=NOTE).status_code == 201


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic czNjcmV0", f"bearer {TOKEN}x", "Bearer "])
def test_the_api_needs_the_right_bearer_token(app: App, authorization: str | None) -> None:
    headers = {"authorization": authorization} if authorization else {}
    with secured(app) as client:
        for method, path in [("POST", "/commands"), ("GET", "/commands"), ("GET", "/queries"), ("GET", "/events")]:
            response = client.request(method, path, json=NOTE, headers=headers)
            assert response.status_code == 401, (method, path)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert TOKEN not in response.text
        assert client.get("/queries/notes/get", params={"id": "a"}, headers=headers).status_code == 401
        assert app.log.version() == 0


def test_the_right_token_opens_the_api(app: App) -> None:
    with secured(app) as client:
        response = client.post("/commands", json=NOTE, headers={"authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 201
        answer = client.get("/queries/notes/get", params={"id": "a"}, headers={"authorization": f"Bearer {TOKEN}"})
        assert answer.json() == {"id": "a", "text": "hi"}


def test_during_a_rotation_both_tokens_work_and_afterwards_only_the_new_one(app: App, tmp_path: Path) -> None:
    with secured(app, TOKEN, NEW_TOKEN) as client:
        for token in (TOKEN, NEW_TOKEN):
            assert client.get("/queries", headers={"authorization": f"Bearer {token}"}).status_code == 200
    rotated = App(MessageLog(tmp_path / "after-rotation.db"))
    with secured(rotated, NEW_TOKEN) as client:
        assert client.get("/queries", headers={"authorization": f"Bearer {NEW_TOKEN}"}).status_code == 200
        assert client.get("/queries", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 401


def test_healthz_stays_open_but_says_only_ok_without_the_token(app: App) -> None:
    with secured(app) as client:
        anonymous = client.get("/healthz")
        assert anonymous.status_code == 200 and anonymous.json() == {"status": "ok"}
        full = client.get("/healthz", headers={"authorization": f"Bearer {TOKEN}"}).json()
        assert "workers" in full and "version" in full


# --- pages and the login ---


def test_pages_send_a_browser_to_the_login_and_back(app: App) -> None:
    with secured(app) as client:
        redirect = client.get("/", headers=HTML, follow_redirects=False)
        assert redirect.status_code == 303 and redirect.headers["location"] == "/login?next=/"
        login = client.get("/login", headers=HTML)
        assert login.status_code == 200 and 'type="password"' in login.text
        assert client.get("/static/app.css").status_code == 200  # the login page needs its style

        wrong = client.post("/login", data={"token": "wrong", "next": "/"}, headers=HTML, follow_redirects=False)
        assert wrong.status_code == 401 and "That token is not right." in wrong.text and "wrong" not in wrong.text
        assert SESSION_COOKIE not in client.cookies

        right = client.post("/login", data={"token": TOKEN, "next": "/"}, headers=HTML, follow_redirects=False)
        assert right.status_code == 303 and right.headers["location"] == "/"
        cookie = right.headers["set-cookie"]
        assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and TOKEN not in cookie
        page = client.get("/", headers=HTML)
        assert page.status_code == 200 and "Sign out" in page.text and TOKEN not in page.text


def test_a_session_opens_the_pages_and_events_but_not_the_json_api(app: App) -> None:
    with secured(app) as client:
        client.post("/login", data={"token": TOKEN}, headers=HTML)
        posted = client.post("/notes/new", data={"id": "n", "text": "signed in"}, follow_redirects=False)
        assert posted.status_code == 303
        assert client.get("/queries").status_code == 401
        assert client.post("/commands", json=NOTE).status_code == 401
        assert app.log.version() == 1


def test_signing_out_ends_the_session(app: App) -> None:
    with secured(app) as client:
        client.post("/login", data={"token": TOKEN}, headers=HTML)
        signed_out = client.post("/logout", headers=HTML, follow_redirects=False)
        assert signed_out.status_code == 303 and signed_out.headers["location"] == "/login"
        assert client.get("/", headers=HTML, follow_redirects=False).status_code == 303


def test_login_goes_back_only_to_pages_of_this_site(app: App) -> None:
    with secured(app) as client:
        for target in ("https://evil.example/", "//evil.example/", "/\\evil.example", "/\t/evil.example", "/x\\y"):
            right = client.post("/login", data={"token": TOKEN, "next": target}, follow_redirects=False)
            assert right.headers["location"] == "/"


def test_a_forged_or_expired_session_is_refused() -> None:
    tokens = Tokens([TOKEN])
    session = tokens.new_session(TOKEN, now=1_000_000)
    assert tokens.valid_session(session, now=1_000_060)
    assert not tokens.valid_session(session, now=1_000_000 + tokens.session_seconds + 1)
    assert not tokens.valid_session(session.replace(".", ".x"), now=1_000_060)
    assert not Tokens([NEW_TOKEN]).valid_session(session, now=1_000_060)
    assert TOKEN not in repr(tokens)


# --- serving beyond loopback ---


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_needs_no_token(host: str) -> None:
    assert open_bind_refusal(host, [], insecure=False) is None


def test_other_interfaces_need_a_token_or_insecure() -> None:
    refusal = open_bind_refusal("0.0.0.0", [], insecure=False)
    assert refusal is not None and "APP_API_TOKEN" in refusal and "--insecure" in refusal
    assert open_bind_refusal("0.0.0.0", [TOKEN], insecure=False) is None
    assert open_bind_refusal("0.0.0.0", [], insecure=True) is None


def test_serve_refuses_a_public_interface_without_a_token_in_one_line(tmp_path: Path) -> None:
    src = str(Path(__file__).resolve().parent.parent / "src")
    env = {k: v for k, v in os.environ.items() if k != "APP_API_TOKEN"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "shop", "serve", "--host", "0.0.0.0", "--db", str(tmp_path / "app.db")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert not (tmp_path / "app.db").exists()
