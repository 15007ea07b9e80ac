"""GET /metrics: Prometheus' text format, read back with prometheus_client's own parser."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel
from starlette.testclient import TestClient

from shop.core import App, CommandWorker, Context, open_log
from shop.core.http import create_http_app
from shop.core.metrics import METRICS_TOKEN_VARIABLE, NoMetrics

from .conftest import AddNote, register_notes

TOKEN = "metrics-test-api-token"
SCRAPER_TOKEN = "metrics-test-scraper-token"


def samples(client: TestClient, **headers: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape: ``{(name, labels): value}``."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(scraped: dict, name: str, **labels: str) -> float | None:
    return scraped.get((name, frozenset(labels.items())))


@pytest.fixture
def client(app: App) -> Iterator[TestClient]:
    register_notes(app)
    with TestClient(create_http_app(app, start_workers=False)) as client:
        yield client


def test_requests_are_counted_by_route_template_method_and_status(client: TestClient) -> None:
    client.post("/commands", json={"type": "notes/add", "payload": {"id": "a", "text": "hi"}})
    client.get("/queries/notes/get", params={"id": "a"})
    client.get("/queries/notes/get", params={"id": "missing"})
    client.get("/no/such/page")
    for method in ("BREW", "WHEN"):  # methods nobody serves: one "other" series, not one per invention
        client.request(method, "/commands")
    scraped = samples(client)
    total = "app_http_requests_total"
    assert value(scraped, total, route="/commands", method="POST", status="201") == 1
    assert value(scraped, total, route="/queries/{feature}/{name}", method="GET", status="200") == 1
    assert value(scraped, total, route="/queries/{feature}/{name}", method="GET", status="404") == 1
    assert value(scraped, total, route="unmatched", method="GET", status="404") == 1  # never the raw path
    assert value(scraped, total, route="/commands", method="other", status="405") == 2
    count = "app_http_request_duration_seconds_count"
    assert value(scraped, count, route="/commands", method="POST", status="201") == 1
    bucket = "app_http_request_duration_seconds_bucket"
    assert value(scraped, bucket, route="/commands", method="POST", status="201", le="+Inf") == 1


def test_commands_are_counted_appended_by_type_and_refused_by_reason(client: TestClient) -> None:
    client.post("/commands", json={"type": "notes/add", "payload": {"id": "a", "text": "hi"}})
    client.post("/commands", json={"type": "notes/add", "payload": {"id": "b", "text": ""}})
    client.post("/commands", json={"type": "notes/nope", "payload": {}})
    client.post("/commands", json={"type": "notes/remove", "payload": {"id": "missing"}})
    client.post("/commands", content=b"{not json", headers={"content-type": "application/json"})
    client.post("/commands", content=b"type=notes/add", headers={"content-type": "application/x-www-form-urlencoded"})
    scraped = samples(client)
    assert value(scraped, "app_commands_appended_total", type="notes/add") == 1
    refused = "app_commands_refused_total"
    for reason in ("invalid_payload", "unknown_type", "not_found", "malformed", "unsupported_media_type"):
        assert value(scraped, refused, reason=reason) == 1, reason


class Announce(BaseModel):
    note: str


class Announcer(CommandWorker):
    """Announces each note; gives up at once on a note whose text is "poison"."""

    def __init__(self) -> None:
        super().__init__("announcer", max_attempts=1)
        self.on("notes/add", self.announce)

    def announce(self, command: AddNote, ctx: Context) -> None:
        if command.text == "poison":
            raise ValueError("cannot announce this one")
        ctx.dispatch(Announce(note=command.id))


def test_worker_lag_cycle_time_and_undecided_dead_letters(db: str) -> None:
    app = App(open_log(db), poll_interval=0.01, jitter=0.0, stop_timeout=1.0)
    register_notes(app)
    app.commands.register("announcer/announce", Announce, public=False)
    app.register_worker(Announcer())
    for id, text in (("a", "fine"), ("b", "poison"), ("c", "fine")):
        app.dispatch(AddNote(id=id, text=text))
    with TestClient(create_http_app(app, start_workers=False)) as client:
        scraped = samples(client)
        assert value(scraped, "app_log_head") == 3
        assert value(scraped, "app_worker_lag_messages", worker="announcer") == 3  # not started: nothing read
    app = App(open_log(db), poll_interval=0.01, jitter=0.0, stop_timeout=1.0)
    register_notes(app)
    app.commands.register("announcer/announce", Announce, public=False)
    app.register_worker(Announcer())
    with TestClient(create_http_app(app)) as client:
        deadline = time.monotonic() + 10
        while value(scraped := samples(client), "app_worker_lag_messages", worker="announcer") != 0:
            assert time.monotonic() < deadline, "the worker did not catch up"
            time.sleep(0.02)
        assert value(scraped, "app_log_head") == 5  # two announcements appended
        assert value(scraped, "app_dead_letters_undecided", worker="announcer") == 1
        assert value(scraped, "app_worker_cycle_seconds_count", worker="announcer") >= 1
        assert value(scraped, "app_log_reachable") == 1


def test_a_projection_rebuild_reports_its_progress(client: TestClient, app: App) -> None:
    app.metrics.rebuild("notes", 250, 1000)
    assert value(samples(client), "app_projection_rebuild_progress", projection="notes") == 0.25
    app.metrics.rebuild("notes", 1000, 1000)
    assert value(samples(client), "app_projection_rebuild_progress", projection="notes") == 1


def test_metrics_take_the_api_token_or_the_metrics_token_which_opens_nothing_else(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(METRICS_TOKEN_VARIABLE, SCRAPER_TOKEN)
    register_notes(app)
    with TestClient(create_http_app(app, start_workers=False, tokens=[TOKEN])) as client:
        refused = client.get("/metrics")
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        assert client.get("/metrics", headers={"authorization": "Bearer wrong"}).status_code == 401
        assert samples(client, authorization=f"Bearer {SCRAPER_TOKEN}")
        assert samples(client, authorization=f"Bearer {TOKEN}")
        scraper = {"authorization": f"Bearer {SCRAPER_TOKEN}"}
        assert client.get("/queries/notes/get", params={"id": "a"}, headers=scraper).status_code == 401
        note = {"type": "notes/add", "payload": {"id": "a", "text": "hi"}}
        assert client.post("/commands", json=note, headers=scraper).status_code == 401


def test_the_metrics_token_alone_guards_metrics_and_leaves_the_open_app_open(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(METRICS_TOKEN_VARIABLE, SCRAPER_TOKEN)
    register_notes(app)
    with TestClient(create_http_app(app, start_workers=False)) as client:
        assert client.get("/metrics").status_code == 401
        assert samples(client, authorization=f"Bearer {SCRAPER_TOKEN}")
        assert client.get("/queries").status_code == 200


def test_without_metrics_nothing_is_counted_or_served(db: str) -> None:
    app = App(open_log(db), metrics=NoMetrics())
    register_notes(app)
    with TestClient(create_http_app(app, start_workers=False)) as client:
        note = {"type": "notes/add", "payload": {"id": "a", "text": "hi"}}
        assert client.post("/commands", json=note).status_code == 201
        assert client.get("/metrics").status_code == 404
