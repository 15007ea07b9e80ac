"""The posts feature: validation of every field, state and queries, pages, and the summary worker.

The worker tests run against a real OpenAI-compatible server on 127.0.0.1
(tests/fake_summary_api.py) and a real SQLite log, restarting the app as
``serve`` would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from pydantic_core import to_json
from starlette.testclient import TestClient

from blog.core import App, CommandRejected, MessageLog, NotFound, open_log
from blog.core.http import create_http_app
from blog.posts.commands import (
    CreatePost,
    DeletePost,
    FailSummaryGeneration,
    RequestSummaryGeneration,
    SetGeneratedSummary,
    UpdatePost,
)
from blog.posts.register import register
from blog.posts.worker import SummaryWorker

from .fake_summary_api import FakeSummaryAPI, Reply

URL = "/posts"
CREATE = "posts/create"
DELETE = "posts/delete"
UPDATE = "posts/update"
REQUEST = "posts/request-summary-generation"
SET = "posts/set-generated-summary"
FAIL = "posts/fail-summary-generation"
SECRET = "sk-test-never-shown"
SUMMARY_SETTINGS = (
    "SUMMARY_API_URL",
    "SUMMARY_API_KEY",
    "SUMMARY_MODEL",
    "SUMMARY_TIMEOUT",
    "SUMMARY_MAX_ATTEMPTS",
    "SUMMARY_RETRY_BACKOFF",
    "SUMMARY_CONCURRENCY",
)

# A valid payload, what the queries answer for it, and for each field a value the commands refuse.
VALID: dict[str, Any] = {
    "title": "A short line",
    "content": "First sentence. Second one.",
}
ANSWERED: dict[str, Any] = {
    "title": "A short line",
    "content": "First sentence. Second one.",
}
INVALID: dict[str, Any] = {
    "title": "",
    "content": "   ",
}
REQUIRED = ("title", "content")
# What a browser sends for the valid values (an unchecked checkbox sends nothing), and what is stored.
FORM: dict[str, str] = {
    "title": "A short line",
    "content": "First sentence. Second one.",
}
FORM_ANSWERED: dict[str, Any] = {
    "title": "A short line",
    "content": "First sentence. Second one.",
}


# --- fixtures and helpers ---


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No summary API configured: the worker uses the local summarizer."""
    for name in SUMMARY_SETTINGS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def summary_api(offline: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSummaryAPI]:
    """A fake summary API on 127.0.0.1, configured through the environment as a user would."""
    with FakeSummaryAPI() as api:
        monkeypatch.setenv("SUMMARY_API_URL", api.url)
        monkeypatch.setenv("SUMMARY_API_KEY", SECRET)
        monkeypatch.setenv("SUMMARY_MODEL", "test-model")
        monkeypatch.setenv("SUMMARY_RETRY_BACKOFF", "0.01")
        monkeypatch.setenv("SUMMARY_TIMEOUT", "5")
        yield api


@pytest.fixture
def feature_app(app: App, offline: None) -> App:
    """The conftest's App (real SQLite file) with this feature registered, workers not started."""
    register_all(app)
    return app


@pytest.fixture
def client(feature_app: App) -> Iterator[TestClient]:
    with TestClient(create_http_app(feature_app, prepare=False, start_workers=False), follow_redirects=False) as client:
        yield client


def register_all(app: App) -> None:
    """This feature."""
    register(app)


def create(app: App, **changes: Any) -> str:
    """Create a post from the valid values, with ``changes``; returns its id."""
    return app.dispatch(CreatePost.model_validate({**VALID, **changes})).payload()["id"]


def update(app: App, item_id: str, **changes: Any) -> None:
    app.dispatch(UpdatePost.model_validate({**VALID, **changes, "id": item_id}))


def start_app(db: Path | str) -> App:
    """A fresh App on ``db`` (a file, or a database URL) with this feature, its tables current: what ``serve`` does."""
    app = App(open_log(str(db)), poll_interval=0.05, jitter=0.0, stop_timeout=2.0)
    register_all(app)
    app.prepare()
    return app


def logged(db_path: Path) -> list[tuple[int, str, dict[str, Any]]]:
    """This feature's messages in the log at ``db_path``, as (id, type, payload)."""
    log = MessageLog(db_path)
    try:
        messages = log.after(0)
        return [(m.id, m.type, m.payload()) for m in messages if m.type.startswith("posts/")]
    finally:
        log.close()


def types(db_path: Path) -> list[str]:
    return [type for _, type, _ in logged(db_path)]


def summary_of(app: App, item_id: str) -> dict[str, Any]:
    return app.query("posts/get", {"id": item_id})


def worker_of(app: App) -> SummaryWorker:
    (worker,) = [h.worker for h in app.supervisor.handles if isinstance(h.worker, SummaryWorker)]
    return worker


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def is_settled(app: App, item_id: str) -> bool:
    return summary_of(app, item_id)["summary_status"] != "pending"


# --- validation, one field at a time ---


def test_valid_values_are_stored_and_answered_as_json(feature_app: App) -> None:
    item = feature_app.query("posts/get", {"id": create(feature_app)})
    assert {name: item[name] for name in ANSWERED} == ANSWERED


def test_a_given_id_is_looked_for_and_a_generated_one_is_not(feature_app: App) -> None:
    """A generated id is a fresh random one: its create reads nothing (a round trip on PostgreSQL)."""
    item_id = create(feature_app)
    assert len(item_id) == 32 and item_id[12] == "4"  # a version-4 UUID's hex digits
    with pytest.raises(CommandRejected, match="already exists"):
        create(feature_app, id=item_id)
    connection = getattr(feature_app.log, "_db", None)
    if not hasattr(connection, "set_trace_callback"):
        return  # PostgreSQL: no trace to read; SQLite's run says the same for both
    statements: list[str] = []
    connection.set_trace_callback(statements.append)
    try:
        create(feature_app)
    finally:
        connection.set_trace_callback(None)
    lookup = 'SELECT data FROM "state_posts" WHERE id = '
    assert statements and not [sql for sql in statements if sql.startswith(lookup)]


@pytest.mark.parametrize("name", list(INVALID))
def test_an_invalid_value_is_refused(name: str) -> None:
    with pytest.raises(ValidationError) as refused:
        CreatePost.model_validate({**VALID, name: INVALID[name]})
    assert [error["loc"][0] for error in refused.value.errors()] == [name]


@pytest.mark.parametrize("name", REQUIRED)
def test_a_required_field_left_out_is_refused(name: str) -> None:
    with pytest.raises(ValidationError) as refused:
        CreatePost.model_validate({key: value for key, value in VALID.items() if key != name})
    assert [error["loc"][0] for error in refused.value.errors()] == [name]


def test_unknown_fields_and_bad_ids_are_refused() -> None:
    for payload in ({**VALID, "unknown": 1}, {**VALID, "id": "../etc"}):
        with pytest.raises(ValidationError):
            CreatePost.model_validate(payload)


def test_title_is_trimmed_and_at_most_200_characters() -> None:
    assert CreatePost.model_validate({**VALID, "title": "  " + "x" * 200 + " "}).title == "x" * 200
    with pytest.raises(ValidationError):
        CreatePost.model_validate({**VALID, "title": "x" * 201})


def test_an_invalid_command_over_http_is_a_400_and_appends_nothing(client: TestClient, feature_app: App) -> None:
    before = feature_app.log.version()
    name = next(iter(INVALID))
    response = client.post("/commands", json={"type": CREATE, "payload": {**VALID, name: INVALID[name]}})
    assert response.status_code == 400
    assert response.json()["fields"][0]["loc"] == [name]
    assert feature_app.log.version() == before


# --- state and queries ---


def test_create_update_and_delete_change_what_the_queries_answer(feature_app: App) -> None:
    item_id = create(feature_app)
    item = feature_app.query("posts/get", {"id": item_id})
    assert item["summary"] is None and item["summary_status"] == "pending"
    update(feature_app, item_id, title="Changed")
    item = feature_app.query("posts/get", {"id": item_id})
    assert item["title"] == "Changed"
    assert item["updated_at"] >= item["created_at"]

    feature_app.dispatch(DeletePost(id=item_id))
    with pytest.raises(NotFound):
        feature_app.query("posts/get", {"id": item_id})


def test_commands_on_a_missing_item_are_refused_and_not_logged(feature_app: App) -> None:
    before = feature_app.log.version()
    with pytest.raises(NotFound):
        update(feature_app, "missing")
    with pytest.raises(NotFound):
        feature_app.dispatch(DeletePost(id="missing"))
    assert feature_app.log.version() == before


def test_an_id_cannot_be_created_twice(feature_app: App) -> None:
    create(feature_app, id="one")
    before = feature_app.log.version()
    with pytest.raises(CommandRejected):
        create(feature_app, id="one")
    assert feature_app.log.version() == before


def test_a_summary_request_takes_exactly_one_outcome(feature_app: App) -> None:
    item_id = create(feature_app)
    feature_app.dispatch(RequestSummaryGeneration(request_id="r1", item_id=item_id, content="c"))
    with pytest.raises(CommandRejected):
        feature_app.dispatch(SetGeneratedSummary(request_id="other", item_id=item_id, summary="s"))
    feature_app.dispatch(SetGeneratedSummary(request_id="r1", item_id=item_id, summary="Short."))
    with pytest.raises(CommandRejected):
        feature_app.dispatch(FailSummaryGeneration(request_id="r1", item_id=item_id, error_message="late"))
    item = feature_app.query("posts/get", {"id": item_id})
    assert (item["summary"], item["summary_status"]) == ("Short.", "ready")


def test_list_is_newest_first_and_paged(feature_app: App) -> None:
    ids = [create(feature_app) for _ in range(5)]
    listing = feature_app.query("posts/list", {"offset": 1, "limit": 2})
    assert [item["id"] for item in listing["items"]] == [ids[3], ids[2]]
    assert listing["total"] == 5
    assert set(ANSWERED) <= set(listing["items"][0])
    with pytest.raises(ValidationError):
        feature_app.query("posts/list", {"limit": 0})


def test_list_answers_twenty_unless_asked_for_more(feature_app: App) -> None:
    ids = [create(feature_app) for _ in range(21)]
    listing = feature_app.query("posts/list", {})
    assert [item["id"] for item in listing["items"]] == ids[:0:-1]
    assert (listing["total"], listing["limit"]) == (21, 20)
    assert len(feature_app.query("posts/list", {"limit": 1000})["items"]) == 21
    with pytest.raises(ValidationError):
        feature_app.query("posts/list", {"limit": 1001})


@pytest.mark.parametrize(
    "name",
    [
        "title",
        "created_at",
        "updated_at",
    ],
)
def test_list_sorts_by_any_field_both_ways(feature_app: App, name: str) -> None:
    ids = [create(feature_app) for _ in range(3)]
    ascending = [item["id"] for item in feature_app.query("posts/list", {"sort": name})["items"]]
    descending = [item["id"] for item in feature_app.query("posts/list", {"sort": f"-{name}"})["items"]]
    assert sorted(ascending) == sorted(descending) == sorted(ids)
    if name == "created_at":
        assert ascending == ids


def test_list_refuses_an_unknown_sort_or_filter_naming_the_ones_there_are(client: TestClient) -> None:
    sort = client.get("/queries/posts/list?sort=no_such_field")
    assert sort.status_code == 400 and "'-created_at'" in str(sort.json()["fields"])
    unknown = client.get("/queries/posts/list?colour=red")
    assert unknown.status_code == 400 and "this query takes offset, limit, sort" in str(unknown.json()["fields"])


def test_a_page_past_the_end_is_empty(client: TestClient) -> None:
    page = client.get("/queries/posts/list?offset=1000").json()
    assert (page["items"], page["total"]) == ([], 0)


def test_a_restart_keeps_the_state_without_replay(feature_app: App, db: str) -> None:
    first, second = create(feature_app), create(feature_app)
    update(feature_app, first)
    feature_app.dispatch(DeletePost(id=second))
    before = feature_app.query("posts/list")
    restarted = start_app(db)
    try:
        after = restarted.query("posts/list")
        assert after == before
        assert {name: after["items"][0][name] for name in ANSWERED} == ANSWERED
    finally:
        restarted.log.close()


def test_a_rebuild_from_the_log_gives_the_same_state(feature_app: App) -> None:
    first, second = create(feature_app), create(feature_app)
    update(feature_app, first)
    feature_app.dispatch(DeletePost(id=second))
    before = feature_app.query("posts/list")
    report = feature_app.projections.rebuild(["posts"])
    assert report.refused == 0
    assert feature_app.query("posts/list") == before


def test_the_json_api_creates_and_lists(client: TestClient) -> None:
    response = client.post("/commands", json={"type": CREATE, "payload": VALID})
    assert response.status_code == 201
    item_id = response.json()["data"]["id"]
    listing = client.get("/queries/posts/list").json()
    assert [item["id"] for item in listing["items"]] == [item_id]
    assert {name: listing["items"][0][name] for name in ANSWERED} == ANSWERED
    assert client.get("/queries/posts/get", params={"id": "missing"}).status_code == 404


def test_the_json_api_answers_a_list_as_encoding_the_query_s_answer_would(client: TestClient, feature_app: App) -> None:
    """The API writes a page's rows as the table stores them: the same bytes as the query's answer, encoded."""
    ids = [create(feature_app) for _ in range(3)]
    update(feature_app, ids[0])
    asks: list[dict[str, Any]] = [{}, {"offset": 1, "limit": 1}, {"offset": 1000}]
    asks += [{"sort": "title"}, {"sort": "-title", "offset": 1}]
    for params in asks:
        answer = client.get("/queries/posts/list", params=params)
        assert answer.status_code == 200 and answer.content == to_json(feature_app.query("posts/list", params))


def test_clients_cannot_forge_the_workers_summary_commands(client: TestClient, feature_app: App) -> None:
    item_id = create(feature_app)
    version = feature_app.log.version()
    forged = {"request_id": "forged", "item_id": item_id, "summary": "FORGED"}
    for verb in ("request-summary-generation", "set-generated-summary", "fail-summary-generation"):
        response = client.post("/commands", json={"type": f"posts/{verb}", "payload": forged})
        assert response.status_code == 404
    assert feature_app.log.version() == version


# --- pages ---


def test_the_list_page_starts_empty_and_is_linked_from_the_index(client: TestClient) -> None:
    assert "No posts yet" in client.get(URL).text
    assert f'href="{URL}"' in client.get("/").text


def test_the_list_page_pages_by_number_and_drops_empty_filters(client: TestClient, feature_app: App) -> None:
    ids = [create(feature_app) for _ in range(3)]
    page = client.get(URL, params={"per_page": "2", "page": "2"})
    assert page.status_code == 200 and "Showing 3–3 of 3" in page.text
    assert f"{URL}/{ids[0]}" in page.text and f"{URL}/{ids[2]}" not in page.text
    assert f'href="{URL}?per_page=2"' in page.text  # the first page's link
    cleaned = client.get(URL, params={"sort": "", "per_page": "2"}, follow_redirects=False)
    assert cleaned.status_code == 303 and cleaned.headers["location"] == f"{URL}?per_page=2"
    for params in ({"per_page": "0"}, {"page": "0"}, {"page": "abc"}):
        refused = client.get(URL, params=params)
        assert refused.status_code == 400 and "Page and per_page are " in refused.text, params
    unsorted = client.get(URL, params={"sort": "no-such-field"})
    assert unsorted.status_code == 400 and "sort: " in unsorted.text and "created_at" in unsorted.text
    greedy = client.get(URL, params={"per_page": "500"})  # more than a page holds: as many as it does
    assert greedy.status_code == 200 and "Showing 1–3 of 3" in greedy.text


def test_the_list_page_refuses_offset_and_limit_naming_the_parameters_it_takes(
    client: TestClient, feature_app: App
) -> None:
    """The JSON API pages with offset and limit, the page with page and per_page: a page asked for with the
    API's is refused, not shown from the start as if they had not been given; the API keeps taking them."""
    ids = [create(feature_app) for _ in range(3)]
    for params in ({"offset": "2"}, {"limit": "1"}, {"page": "1", "offset": "2", "limit": "1"}):
        refused = client.get(URL, params=params)
        assert refused.status_code == 400, params
        assert "This page takes sort, " in refused.text and "page, per_page; not " in refused.text
        assert "offset and limit page the JSON API (/queries/posts/list)" in refused.text
    unknown = client.get(URL, params={"colour": "red"})
    assert unknown.status_code == 400 and "not colour." in unknown.text and "JSON API" not in unknown.text
    api = client.get("/queries/posts/list", params={"offset": "2", "limit": "1"}).json()
    assert [item["id"] for item in api["items"]] == [ids[0]] and (api["offset"], api["limit"]) == (2, 1)


def test_the_new_form_has_an_input_of_the_right_kind_for_each_field(client: TestClient) -> None:
    page = client.get(f"{URL}/new")
    assert page.status_code == 200
    assert '<input type="text" id="title" name="title"' in page.text
    assert '<textarea id="content" name="content"' in page.text


def test_the_new_form_creates_and_redirects_to_the_detail_page(client: TestClient, feature_app: App) -> None:
    response = client.post(f"{URL}/new", data=FORM)
    assert response.status_code == 303
    page = client.get(response.headers["location"])
    assert page.status_code == 200
    (item,) = feature_app.query("posts/list")["items"]
    assert {name: item[name] for name in FORM_ANSWERED} == FORM_ANSWERED
    assert str(FORM["title"]) in page.text and str(FORM["title"]) in client.get(URL).text


def test_an_invalid_form_is_shown_again_with_errors_and_nothing_is_dispatched(
    client: TestClient, feature_app: App
) -> None:
    before = feature_app.log.version()
    data = {**FORM, "title": ""}
    response = client.post(f"{URL}/new", data=data)
    assert response.status_code == 400
    assert 'id="title-error"' in response.text
    assert 'aria-invalid="true" aria-describedby="title-error"' in response.text
    assert feature_app.log.version() == before


def test_pages_escape_what_users_typed(client: TestClient, feature_app: App) -> None:
    item_id = create(feature_app, title="<script>alert(1)</script>")
    for path in (URL, f"{URL}/{item_id}", f"{URL}/{item_id}/edit"):
        text = client.get(path).text
        assert "<script>alert(1)" not in text
        assert "&lt;script&gt;" in text


def test_the_edit_form_updates_and_delete_removes(client: TestClient, feature_app: App) -> None:
    item_id = create(feature_app)
    edit = client.post(f"{URL}/{item_id}/edit", data=FORM)
    assert edit.status_code == 303
    item = feature_app.query("posts/get", {"id": item_id})
    assert {name: item[name] for name in FORM_ANSWERED} == FORM_ANSWERED
    invalid_data = {**FORM, "title": ""}
    invalid = client.post(f"{URL}/{item_id}/edit", data=invalid_data)
    assert invalid.status_code == 400 and 'id="title-error"' in invalid.text

    assert 'data-confirm="' in client.get(f"{URL}/{item_id}").text
    deleted = client.post(f"{URL}/{item_id}/delete")
    assert (deleted.status_code, deleted.headers["location"]) == (303, URL)
    assert client.get(f"{URL}/{item_id}").status_code == 404
    assert client.post(f"{URL}/{item_id}/delete").status_code == 404


def test_unknown_ids_are_404_pages(client: TestClient) -> None:
    for path in (f"{URL}/missing", f"{URL}/missing/edit", f"{URL}/not%20an%20id"):
        response = client.get(path)
        assert response.status_code == 404 and "Not found" in response.text


# --- the summary worker ---


@pytest.mark.anyio
async def test_a_new_item_gets_its_summary_from_the_api(summary_api: FakeSummaryAPI, db_path: Path) -> None:
    app = start_app(db_path)
    await app.start_workers()
    item_id = create(app, content="The content to summarize. It has two sentences.")
    await eventually(lambda: is_settled(app, item_id))
    item = summary_of(app, item_id)
    await app.close()

    assert (item["summary_status"], item["summary"]) == ("ready", FakeSummaryAPI.summary_for(item["content"]))
    assert types(db_path) == [CREATE, REQUEST, SET]
    (request,) = summary_api.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert request.headers["idempotency-key"] == item["summary_request_id"]
    assert request.body["model"] == "test-model"
    assert request.body["messages"][-1] == {"role": "user", "content": item["content"]}


@pytest.mark.anyio
async def test_an_edit_of_the_content_is_summarized_again_and_other_edits_are_not(
    summary_api: FakeSummaryAPI, db_path: Path
) -> None:
    app = start_app(db_path)
    await app.start_workers()
    first, edited = "First content.", "Edited content."
    item_id = create(app, content=first)
    await eventually(lambda: is_settled(app, item_id))
    update(app, item_id, content=first)
    update(app, item_id, content=edited)
    await eventually(lambda: summary_of(app, item_id)["summary"] == FakeSummaryAPI.summary_for(edited))
    await app.close()

    assert types(db_path) == [CREATE, REQUEST, SET, UPDATE, UPDATE, REQUEST, SET]


@pytest.mark.anyio
async def test_a_server_error_is_retried_then_succeeds(summary_api: FakeSummaryAPI, db_path: Path) -> None:
    summary_api.queue(Reply(500), Reply(502))
    app = start_app(db_path)
    await app.start_workers()
    item_id = create(app)
    await eventually(lambda: is_settled(app, item_id))
    assert summary_of(app, item_id)["summary_status"] == "ready"
    await app.close()
    assert len(summary_api.requests) == 3
    assert types(db_path) == [CREATE, REQUEST, SET]


@pytest.mark.anyio
async def test_a_permanent_failure_is_recorded_after_bounded_retries(
    summary_api: FakeSummaryAPI, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUMMARY_MAX_ATTEMPTS", "3")
    summary_api.always(Reply(503))
    app = start_app(db_path)
    await app.start_workers()
    item_id = create(app)
    await eventually(lambda: is_settled(app, item_id))
    item = summary_of(app, item_id)
    await app.close()
    assert item["summary_status"] == "failed" and "HTTP 503" in item["summary_error"]
    assert len(summary_api.requests) == 3
    assert types(db_path) == [CREATE, REQUEST, FAIL]


@pytest.mark.anyio
async def test_timeouts_are_retried_and_reported(
    summary_api: FakeSummaryAPI, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Long enough for each request to reach the API on a busy machine (at 0.2 s one sometimes timed out first).
    monkeypatch.setenv("SUMMARY_TIMEOUT", "0.5")
    monkeypatch.setenv("SUMMARY_MAX_ATTEMPTS", "2")
    summary_api.always(Reply(delay=5))
    app = start_app(db_path)
    await app.start_workers()
    item_id = create(app)
    await eventually(lambda: is_settled(app, item_id))
    item = summary_of(app, item_id)
    await app.close()
    assert item["summary_status"] == "failed" and "after 2 attempt(s): timed out" in item["summary_error"]
    assert len(summary_api.requests) == 2


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(401, body='{"error": {"message": "invalid api key sk-test-never-shown"}}'), "HTTP 401"),
        (Reply(400, body='{"error": {"message": "model not found"}}'), "model not found"),
        (Reply(200, body="this is not JSON"), "malformed JSON"),
        (Reply(200, body='{"choices": []}'), "choices[0].message.content"),
    ],
)
async def test_refusals_and_malformed_answers_fail_at_once_without_the_key(
    summary_api: FakeSummaryAPI, db_path: Path, reply: Reply, reason: str
) -> None:
    summary_api.always(reply)
    app = start_app(db_path)
    await app.start_workers()
    item_id = create(app)
    await eventually(lambda: is_settled(app, item_id))
    await app.close()
    assert len(summary_api.requests) == 1
    (failure,) = [payload for _, type, payload in logged(db_path) if type == FAIL]
    assert reason in failure["error_message"]
    assert SECRET not in str(logged(db_path))


@pytest.mark.anyio
async def test_stop_cancels_a_call_and_a_restart_makes_it_again_without_duplicates(
    summary_api: FakeSummaryAPI, db_path: Path
) -> None:
    summary_api.queue(Reply(delay=30))  # the first call hangs until it is cancelled
    first = start_app(db_path)
    await first.start_workers()
    item_id = create(first)
    await eventually(lambda: len(summary_api.requests) == 1)
    began = time.monotonic()
    assert await first.close() == []
    assert time.monotonic() - began < 1.5
    assert types(db_path) == [CREATE, REQUEST]

    second = start_app(db_path)
    await second.start_workers()
    await eventually(lambda: is_settled(second, item_id))
    await second.close()

    third = start_app(db_path)
    await third.start_workers()
    await asyncio.sleep(0.3)
    assert worker_of(third).requests.find({"pending": True}) == []
    assert worker_of(third).position == logged(db_path)[-1][0]  # went on from its position, up to the summary
    await third.close()

    assert types(db_path) == [CREATE, REQUEST, SET]
    assert len(summary_api.requests) == 2
    assert len({request.headers["idempotency-key"] for request in summary_api.requests}) == 1


@pytest.mark.anyio
async def test_each_item_is_requested_once_with_bounded_concurrency(
    summary_api: FakeSummaryAPI, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUMMARY_CONCURRENCY", "2")
    summary_api.always(Reply(delay=0.1))
    app = start_app(db_path)
    await app.start_workers()
    ids = [create(app, content=f"Content number {n}.") for n in range(6)]
    await eventually(lambda: all(is_settled(app, item_id) for item_id in ids))
    await app.close()
    assert summary_api.max_concurrent == 2
    messages = logged(db_path)
    requests = [payload for _, type, payload in messages if type == REQUEST]
    assert sorted(request["item_id"] for request in requests) == sorted(ids)
    assert len({request["request_id"] for request in requests}) == 6
    assert [type for _, type, _ in messages].count(SET) == 6


@pytest.mark.anyio
async def test_a_deleted_item_needs_no_summary(summary_api: FakeSummaryAPI, db_path: Path) -> None:
    summary_api.queue(Reply(delay=30))
    app = start_app(db_path)
    await app.start_workers()
    item_id = create(app)
    await eventually(lambda: len(summary_api.requests) == 1)
    app.dispatch(DeletePost(id=item_id))
    await eventually(lambda: not worker_of(app).in_flight)
    assert worker_of(app).requests.get(item_id) is None
    await app.close()
    assert types(db_path) == [CREATE, REQUEST, DELETE]


@pytest.mark.anyio
async def test_without_an_api_url_the_local_summarizer_works_offline(offline: None, db_path: Path) -> None:
    app = start_app(db_path)
    await app.start_workers()
    long_third = "A third sentence, far too long for a summary" + ", and longer" * 15 + "."
    item_id = create(app, content=f"The first sentence.\n\nThe   second sentence. {long_third}")
    await eventually(lambda: is_settled(app, item_id))
    item = summary_of(app, item_id)
    await app.close()
    assert (item["summary_status"], item["summary"]) == ("ready", "The first sentence. The second sentence.")
