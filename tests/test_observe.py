"""A served app measures and describes itself: real scrapes of ``serve --processes 2``, JSON logs, the spec.

Each test serves the blog (posts feature, summary worker) as users serve it, on
SQLite and on PostgreSQL (tests/pg.py), and reads what it says with the tools an
operator would point at it: prometheus_client's parser, a JSON parser per log
line, openapi-spec-validator.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from .support import Server

pytestmark = pytest.mark.slow

PER_PROCESS = 15  # commands sent through each server process


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The log's ``--db``: an SQLite file, or a fresh PostgreSQL database (skipped without PostgreSQL)."""
    if request.param == "sqlite":
        return str(tmp_path / "app.db")
    return request.getfixturevalue("pg_url")


def scrape(client: httpx.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """One scrape of /metrics, parsed by prometheus_client: ``{(sample name, labels): value}``."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(scraped: dict, name: str, **labels: str) -> float | None:
    return scraped.get((name, frozenset(labels.items())))


@contextmanager
def client_per_process(server: Server, count: int = 2, attempts: int = 200) -> Iterator[dict[int, httpx.Client]]:
    """A keep-alive client on each server process (the kernel picks a process per connection)."""
    clients: dict[int, httpx.Client] = {}
    try:
        for _ in range(attempts):
            client = httpx.Client(base_url=server.url, timeout=10)
            pid = client.get("/healthz").json()["process"]["pid"]
            if pid in clients:
                client.close()
            else:
                clients[pid] = client
            if len(clients) == count:
                break
        assert len(clients) == count, f"reached only {len(clients)} of {count} server processes"
        yield clients
    finally:
        for client in clients.values():
            client.close()


def create(client: httpx.Client, title: str) -> httpx.Response:
    payload = {"title": title, "content": f"{title}. A post made by the observability tests."}
    return client.post("/commands", json={"type": "posts/create", "payload": payload})


def wait_for(client: httpx.Client, name: str, expected: float, timeout: float = 10.0, **labels: str) -> None:
    deadline = time.monotonic() + timeout
    while (got := value(scrape(client), name, **labels)) != expected:
        assert time.monotonic() < deadline, f"{name}{labels} is {got}, not {expected}"
        time.sleep(0.05)


def test_one_scrape_of_either_process_gives_the_whole_groups_totals(
    blog_with_posts: Path, database: str, tmp_path: Path
) -> None:
    scratch = tmp_path / "tmp"  # where serve makes the group's metrics directory (TMPDIR)
    scratch.mkdir()
    server = Server(blog_with_posts, database, env={"TMPDIR": str(scratch)})
    server.command += ["--processes", "2"]
    server.start()
    try:
        with client_per_process(server) as clients:
            sent: Counter[int] = Counter()
            for i in range(PER_PROCESS):
                for pid, client in clients.items():
                    assert create(client, f"post {pid}-{i}").status_code == 201
                    sent[pid] += 1
            for client in clients.values():
                assert client.post("/commands", json={"type": "posts/nope", "payload": {}}).status_code == 404
                assert client.get("/queries/posts/list").status_code == 200
            (directory,) = scratch.glob("app-metrics-*")
            assert {f"counter_{pid}.db" for pid in clients} <= {file.name for file in directory.iterdir()}

            for client in clients.values():
                scraped = scrape(client)
                created = value(scraped, "app_http_requests_total", route="/commands", method="POST", status="201")
                assert created == sum(sent.values()) == 2 * PER_PROCESS
                assert value(scraped, "app_http_requests_total", route="/commands", method="POST", status="404") == 2
                queries = value(
                    scraped, "app_http_requests_total", route="/queries/{feature}/{name}", method="GET", status="200"
                )
                assert queries == 2
                count = "app_http_request_duration_seconds_count"
                assert value(scraped, count, route="/commands", method="POST", status="201") == 2 * PER_PROCESS
                assert value(scraped, "app_commands_appended_total", type="posts/create") == 2 * PER_PROCESS
                assert value(scraped, "app_commands_refused_total", reason="unknown_type") == 2

            first, second = clients.values()
            wait_for(second, "app_worker_lag_messages", 0, timeout=30, worker="posts-summaries")
            with first.stream("GET", "/events") as events:  # a stream open on one process, seen from the other
                chunks = events.iter_text()  # kept: a dropped iterator closes the stream
                next(chunks)
                wait_for(second, "app_event_streams_open", 1)
            wait_for(second, "app_event_streams_open", 0)
    finally:
        assert server.terminate() == 0, server.output()
    assert not list(scratch.glob("app-metrics-*")), "serve leaves no metrics directory behind"


def test_json_logs_parse_line_by_line_and_name_every_request(blog_with_posts: Path, database: str) -> None:
    server = Server(blog_with_posts, database)
    server.command += ["--log-format", "json"]
    server.start()
    ids = []
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            ids.append(create(client, "logged").headers["x-request-id"])
            ids.append(
                client.get("/queries/posts/list", headers={"x-request-id": "from-the-proxy"}).headers["x-request-id"]
            )
            ids.append(client.get("/no/such/page").headers["x-request-id"])
    finally:
        assert server.terminate() == 0, server.output()
    entries = [json.loads(line) for line in server.output().splitlines() if line.strip()]  # every line parses
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries)
    access = [entry for entry in entries if entry["logger"] == "blog.access" and entry["path"] != "/healthz"]
    assert [entry["request_id"] for entry in access] == ids and ids[1] == "from-the-proxy"
    assert [(entry["route"], entry["status"]) for entry in access] == [
        ("/commands", 201),
        ("/queries/{feature}/{name}", 200),
        ("unmatched", 404),
    ]
    assert all(entry["duration_ms"] > 0 for entry in access)
    assert any(entry["message"].startswith("serving blog on") for entry in entries)
    assert any(entry["logger"] == "blog.core.supervisor" for entry in entries)


def test_the_served_description_validates_and_the_page_is_served(blog_with_posts: Path, tmp_path: Path) -> None:
    token = "observe-test-token"
    server = Server(blog_with_posts, tmp_path / "app.db", env={"APP_API_TOKEN": token})
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.get("/openapi.json").status_code == 401
            assert client.get("/metrics").status_code == 401
            bearer = {"authorization": f"Bearer {token}"}
            spec = client.get("/openapi.json", headers=bearer).json()
            validate(spec)
            assert {"posts/create", "posts/update", "posts/delete"} == set(
                spec["paths"]["/commands"]["post"]["requestBody"]["content"]["application/json"]["schema"][
                    "discriminator"
                ]["mapping"]
            )
            page = client.get("/docs", headers=bearer)
            assert page.status_code == 200 and "posts/create" in page.text
    finally:
        server.terminate()
