"""Every response carries an X-Request-ID; the JSON log format writes one parseable object per line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.testclient import TestClient

from newsroom.core import App
from newsroom.core.http import create_http_app
from newsroom.core.logformat import ACCESS_LOGGER, JsonFormatter

from .conftest import register_notes

TOKEN = "request-log-test-token"
NOTE = {"type": "notes/add", "payload": {"id": "a", "text": "hi"}}


class JsonLines:
    """A JSON log handler on a few loggers, writing to memory."""

    def __init__(self, *names: str) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(JsonFormatter())
        self.loggers = [logging.getLogger(name) for name in names]
        for logger in self.loggers:
            logger.addHandler(self.handler)
            logger.setLevel(logging.INFO)

    def entries(self) -> list[dict]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]  # each line parses alone

    def close(self) -> None:
        for logger in self.loggers:
            logger.removeHandler(self.handler)


@pytest.fixture
def lines() -> Iterator[JsonLines]:
    lines = JsonLines(ACCESS_LOGGER, "notes.routes")
    yield lines
    lines.close()


def add_routes(app: App) -> None:
    async def greet(request: Request) -> Response:
        logging.getLogger("notes.routes").info("greeting %s", request.path_params["name"])
        return JSONResponse({"hello": request.path_params["name"]})

    async def crash(request: Request) -> Response:
        raise RuntimeError("boom")

    app.add_route("/greet/{name}", greet)
    app.add_route("/crash", crash)


@pytest.fixture
def client(app: App, lines: JsonLines) -> Iterator[TestClient]:
    register_notes(app)
    add_routes(app)
    access = logging.getLogger(ACCESS_LOGGER)
    with TestClient(create_http_app(app, start_workers=False, access_log=access), raise_server_exceptions=False) as c:
        yield c


def test_every_answer_carries_a_request_id(client: TestClient) -> None:
    answers = [
        client.post("/commands", json=NOTE),
        client.get("/queries/notes/get", params={"id": "missing"}),
        client.get("/no/such/page"),
        client.post("/commands", content=b"{}"),
        client.get("/crash"),
    ]
    ids = [answer.headers.get("x-request-id") for answer in answers]
    assert [answer.status_code for answer in answers] == [201, 404, 404, 415, 500]
    assert all(ids) and len(set(ids)) == len(ids), ids


def test_a_plausible_request_id_from_the_client_is_kept_and_any_other_replaced(client: TestClient) -> None:
    assert client.get("/healthz", headers={"x-request-id": "proxy-42.a:b"}).headers["x-request-id"] == "proxy-42.a:b"
    for odd in ("two words", "x" * 129, 'quote"d'):
        given = client.get("/healthz", headers={"x-request-id": odd}).headers["x-request-id"]
        assert given != odd and len(given) == 16


def test_refusals_before_the_app_carry_a_request_id_too(app: App) -> None:
    register_notes(app)
    with TestClient(create_http_app(app, start_workers=False, tokens=[TOKEN])) as client:
        refused = client.post("/commands", json=NOTE)
        cross_site = client.post("/notes", headers={"sec-fetch-site": "cross-site"})
    assert refused.status_code == 401 and refused.headers["x-request-id"]
    assert cross_site.status_code == 403 and cross_site.headers["x-request-id"]


def test_json_lines_carry_the_request_its_route_status_and_duration(client: TestClient, lines: JsonLines) -> None:
    answer = client.get("/greet/ada", headers={"x-request-id": "req-1"})
    client.get("/queries/notes/get", params={"id": "missing", "secret": "never-logged"})
    greeting, access, query = lines.entries()
    assert greeting["message"] == "greeting ada" and greeting["request_id"] == "req-1"
    assert greeting["logger"] == "notes.routes" and greeting["level"] == "INFO"
    assert access["request_id"] == answer.headers["x-request-id"] == "req-1"
    assert (access["method"], access["path"], access["status"]) == ("GET", "/greet/ada", 200)
    assert access["route"] == "/greet/{name}"
    assert access["duration_ms"] >= 0 and access["time"].endswith("+00:00")
    assert (query["route"], query["status"]) == ("/queries/{feature}/{name}", 404)
    assert "never-logged" not in lines.stream.getvalue()  # query strings stay out of the log


def test_a_crash_is_logged_as_a_500_with_its_request_id(client: TestClient, lines: JsonLines) -> None:
    answer = client.get("/crash")
    (access,) = [entry for entry in lines.entries() if entry.get("route") == "/crash"]
    assert (access["status"], access["request_id"]) == (500, answer.headers["x-request-id"])
