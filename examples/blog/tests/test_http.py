"""The HTTP API: every refusal is a 4xx and appends nothing."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from blog.core import App
from blog.core.http import MAX_BODY_BYTES, create_http_app

from .conftest import register_notes


@pytest.fixture
def client(app: App) -> TestClient:
    register_notes(app)
    with TestClient(create_http_app(app)) as client:
        yield client


def post(client: TestClient, type: str, payload: object) -> object:
    return client.post("/commands", json={"type": type, "payload": payload})


def test_a_valid_command_is_appended_and_answered_with_its_id(client: TestClient, app: App) -> None:
    response = post(client, "notes/add", {"id": "a", "text": "hi"})
    assert response.status_code == 201
    assert response.json()["id"] == 1
    assert client.get("/queries/notes/get", params={"id": "a"}).json() == {"id": "a", "text": "hi"}


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"json": {"type": "notes/nope", "payload": {}}}, 404),
        ({"json": {"type": "notes/add", "payload": {"id": "a"}}}, 400),
        ({"json": {"type": "notes/add", "payload": {"id": "a", "text": ""}}}, 400),
        ({"json": {"type": "notes/add", "payload": []}}, 400),
        ({"json": ["not", "an", "envelope"]}, 400),
        ({"json": {"payload": {}}}, 400),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400),
        ({"content": b"type=notes/add", "headers": {"content-type": "application/x-www-form-urlencoded"}}, 415),
        ({"content": b"{}"}, 415),
        ({"json": {"type": "notes/remove", "payload": {"id": "missing"}}}, 404),
    ],
)
def test_bad_commands_get_a_4xx_and_append_nothing(client: TestClient, app: App, kwargs: dict, status: int) -> None:
    response = client.post("/commands", **kwargs)
    assert response.status_code == status
    assert "error" in response.json()
    assert app.log.version() == 0


def test_field_errors_say_which_field_is_wrong(client: TestClient) -> None:
    response = post(client, "notes/add", {"id": "a", "text": ""})
    assert response.json()["fields"][0]["loc"] == ["text"]


def test_an_oversized_body_is_refused_with_413(client: TestClient, app: App) -> None:
    big = {"type": "notes/add", "payload": {"id": "a", "text": "x" * MAX_BODY_BYTES}}
    assert client.post("/commands", json=big).status_code == 413
    assert app.log.version() == 0


def test_queries_validate_their_parameters(client: TestClient) -> None:
    assert client.get("/queries/notes/get").status_code == 400
    assert client.get("/queries/notes/nope").status_code == 404
    assert client.get("/queries/notes/get", params={"id": "missing"}).status_code == 404


def test_the_about_page_lists_commands_and_queries(client: TestClient) -> None:
    assert 'href="/_/about"' in client.get("/").text
    page = client.get("/_/about")
    assert page.status_code == 200
    assert "notes/add" in page.text and "notes/get" in page.text
    assert [q["type"] for q in client.get("/queries").json()] == ["notes/get"]


def test_healthz_reports_ok(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"


def test_commands_only_workers_send_are_not_on_the_http_api(app: App) -> None:
    from pydantic import BaseModel

    class Internal(BaseModel):
        id: str

    app.commands.register("notes/internal", Internal, public=False)
    register_notes(app)
    with TestClient(create_http_app(app)) as client:
        assert post(client, "notes/internal", {"id": "x"}).status_code == 404
        assert app.log.version() == 0
