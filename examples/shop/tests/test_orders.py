"""The orders feature: validation of every field, state and queries, pages, and the summary worker.

The worker tests run against a real OpenAI-compatible server on 127.0.0.1
(tests/fake_summary_api.py) and a real SQLite log, restarting the app as
``serve`` would.
The features that orders refers to are registered too, with one item each.
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

from shop.core import App, CommandRejected, MessageLog, NotFound, open_log
from shop.core.http import create_http_app
from shop.customers.register import register as register_customers
from shop.orders.commands import (
    CreateOrder,
    DeleteOrder,
    FailSummaryGeneration,
    RequestSummaryGeneration,
    SetGeneratedSummary,
    UpdateOrder,
)
from shop.orders.register import register
from shop.orders.worker import SummaryWorker

from .fake_summary_api import FakeSummaryAPI, Reply

URL = "/orders"
CREATE = "orders/create"
DELETE = "orders/delete"
UPDATE = "orders/update"
REQUEST = "orders/request-summary-generation"
SET = "orders/set-generated-summary"
FAIL = "orders/fail-summary-generation"
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
    "customer": "customers-1",
    "total": "12.50",
    "paid": True,
    "due": "2025-01-31",
    "status": "draft",
    "shipped_at": "2025-01-31T12:30:00+02:00",
    "quantity": 42,
    "weight": 2.5,
    "note": "First sentence. Second one.",
}
ANSWERED: dict[str, Any] = {
    "customer": "customers-1",
    "total": "12.50",
    "paid": True,
    "due": "2025-01-31",
    "status": "draft",
    "shipped_at": "2025-01-31T10:30:00Z",
    "quantity": 42,
    "weight": 2.5,
    "note": "First sentence. Second one.",
}
INVALID: dict[str, Any] = {
    "customer": "../not an id",
    "total": "12,50",
    "paid": "maybe",
    "due": "31/01/2025",
    "status": "draft-paid-shipped-none-of-these",
    "shipped_at": "2025-01-31T12:30:00",
    "quantity": 9223372036854775808,
    "weight": "fast",
    "note": "   ",
}
REQUIRED = ("customer", "total", "status", "quantity", "weight")
OPTIONAL = ("due", "shipped_at", "note")
# What a browser sends for the valid values (an unchecked checkbox sends nothing), and what is stored.
FORM: dict[str, str] = {
    "customer": "customers-1",
    "total": "12.50",
    "paid": "on",
    "due": "2025-01-31",
    "status": "draft",
    "shipped_at": "2025-01-31T12:30",
    "quantity": "42",
    "weight": "2.5",
    "note": "First sentence. Second one.",
}
FORM_ANSWERED: dict[str, Any] = {
    "customer": "customers-1",
    "total": "12.50",
    "paid": True,
    "due": "2025-01-31",
    "status": "draft",
    "shipped_at": "2025-01-31T12:30:00Z",
    "quantity": 42,
    "weight": 2.5,
    "note": "First sentence. Second one.",
}
# The items the ref fields point at: created first, one per feature referred to.
REFERENCED: dict[str, dict[str, Any]] = {
    "customers": {
        "id": "customers-1",
        "name": "A short line",
        "email": "ada@example.com",
        "website": "https://example.com/a",
        "notes": "First sentence. Second one.",
    },
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
    create_referenced(app)
    return app


@pytest.fixture
def client(feature_app: App) -> Iterator[TestClient]:
    with TestClient(create_http_app(feature_app, prepare=False, start_workers=False), follow_redirects=False) as client:
        yield client


def register_all(app: App) -> None:
    """This feature and the features it refers to."""
    register_customers(app)
    register(app)


def create_referenced(app: App) -> None:
    """One item for each feature referred to; their summary workers are told it is done, so they call no API."""
    for feature, payload in REFERENCED.items():
        app.dispatch_payload(f"{feature}/create", payload)
    app.log.set_position("customers-summaries", app.log.version())


def create(app: App, **changes: Any) -> str:
    """Create an order from the valid values, with ``changes``; returns its id."""
    return app.dispatch(CreateOrder.model_validate({**VALID, **changes})).payload()["id"]


def update(app: App, item_id: str, **changes: Any) -> None:
    app.dispatch(UpdateOrder.model_validate({**VALID, **changes, "id": item_id}))


def start_app(db: Path | str) -> App:
    """A fresh App on ``db`` (a file, or a database URL) with this feature, its tables current: what ``serve`` does."""
    app = App(open_log(str(db)), poll_interval=0.05, jitter=0.0, stop_timeout=2.0)
    register_all(app)
    app.prepare()
    if app.log.version() == 0:
        create_referenced(app)
    return app


def logged(db_path: Path) -> list[tuple[int, str, dict[str, Any]]]:
    """This feature's messages in the log at ``db_path``, as (id, type, payload)."""
    log = MessageLog(db_path)
    try:
        messages = log.after(0)
        return [(m.id, m.type, m.payload()) for m in messages if m.type.startswith("orders/")]
    finally:
        log.close()


def types(db_path: Path) -> list[str]:
    return [type for _, type, _ in logged(db_path)]


def summary_of(app: App, item_id: str) -> dict[str, Any]:
    return app.query("orders/get", {"id": item_id})


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
    item = feature_app.query("orders/get", {"id": create(feature_app)})
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
    lookup = 'SELECT data FROM "state_orders" WHERE id = '
    assert statements and not [sql for sql in statements if sql.startswith(lookup)]


@pytest.mark.parametrize("name", list(INVALID))
def test_an_invalid_value_is_refused(name: str) -> None:
    with pytest.raises(ValidationError) as refused:
        CreateOrder.model_validate({**VALID, name: INVALID[name]})
    assert [error["loc"][0] for error in refused.value.errors()] == [name]


@pytest.mark.parametrize("name", REQUIRED)
def test_a_required_field_left_out_is_refused(name: str) -> None:
    with pytest.raises(ValidationError) as refused:
        CreateOrder.model_validate({key: value for key, value in VALID.items() if key != name})
    assert [error["loc"][0] for error in refused.value.errors()] == [name]


def test_optional_fields_left_out_are_empty(feature_app: App) -> None:
    item_id = feature_app.dispatch(
        CreateOrder.model_validate({key: value for key, value in VALID.items() if key not in OPTIONAL})
    ).payload()["id"]
    item = feature_app.query("orders/get", {"id": item_id})
    assert all(item[name] is None for name in OPTIONAL)


def test_unknown_fields_and_bad_ids_are_refused() -> None:
    for payload in ({**VALID, "unknown": 1}, {**VALID, "id": "../etc"}):
        with pytest.raises(ValidationError):
            CreateOrder.model_validate(payload)


def test_total_is_exact_from_a_json_number_or_string() -> None:
    for sent, kept in ((12.5, "12.5"), ("0.10", "0.10"), ("1234567890.123456789", "1234567890.123456789")):
        command = CreateOrder.model_validate({**VALID, "total": sent})
        assert command.model_dump(mode="json")["total"] == kept
    for refused in ("NaN", "Infinity", "12,50"):
        with pytest.raises(ValidationError):
            CreateOrder.model_validate({**VALID, "total": refused})


def test_shipped_at_needs_an_offset_and_is_stored_in_utc() -> None:
    command = CreateOrder.model_validate({**VALID, "shipped_at": "2025-06-01T00:30:00-04:00"})
    assert command.model_dump(mode="json")["shipped_at"] == "2025-06-01T04:30:00Z"


def test_an_invalid_command_over_http_is_a_400_and_appends_nothing(client: TestClient, feature_app: App) -> None:
    before = feature_app.log.version()
    name = next(iter(INVALID))
    response = client.post("/commands", json={"type": CREATE, "payload": {**VALID, name: INVALID[name]}})
    assert response.status_code == 400
    assert response.json()["fields"][0]["loc"] == [name]
    assert feature_app.log.version() == before


# --- references to other features ---


def test_customer_must_name_an_existing_customers_item(client: TestClient, feature_app: App) -> None:
    before = feature_app.log.version()
    response = client.post("/commands", json={"type": CREATE, "payload": {**VALID, "customer": "missing"}})
    assert response.status_code == 422 and "customer" in response.json()["error"]
    assert feature_app.log.version() == before


def test_a_customers_item_referred_to_by_customer_cannot_be_deleted(client: TestClient, feature_app: App) -> None:
    item_id = create(feature_app)
    with pytest.raises(CommandRejected) as refused:
        feature_app.dispatch_payload("customers/delete", {"id": VALID["customer"]})
    assert refused.value.status_code == 409
    assert "orders" in str(refused.value) and item_id in str(refused.value)
    page = client.post("/customers/" + VALID["customer"] + "/delete", follow_redirects=False)
    assert page.status_code == 409 and f'href="{URL}/{item_id}"' in page.text  # names the referring item, linked
    feature_app.dispatch(DeleteOrder(id=item_id))


# --- state and queries ---


def test_create_update_and_delete_change_what_the_queries_answer(feature_app: App) -> None:
    item_id = create(feature_app)
    item = feature_app.query("orders/get", {"id": item_id})
    assert item["summary"] is None and item["summary_status"] == "pending"
    nothing = feature_app.query("orders/get", {"id": create(feature_app, note=None)})
    assert nothing["summary_status"] == "none"  # nothing to summarize: not pending for ever
    update(feature_app, item_id, note="Changed")
    item = feature_app.query("orders/get", {"id": item_id})
    assert item["note"] == "Changed"
    assert item["updated_at"] >= item["created_at"]

    feature_app.dispatch(DeleteOrder(id=item_id))
    with pytest.raises(NotFound):
        feature_app.query("orders/get", {"id": item_id})


def test_commands_on_a_missing_item_are_refused_and_not_logged(feature_app: App) -> None:
    before = feature_app.log.version()
    with pytest.raises(NotFound):
        update(feature_app, "missing")
    with pytest.raises(NotFound):
        feature_app.dispatch(DeleteOrder(id="missing"))
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
    item = feature_app.query("orders/get", {"id": item_id})
    assert (item["summary"], item["summary_status"]) == ("Short.", "ready")


def test_list_is_newest_first_and_paged(feature_app: App) -> None:
    ids = [create(feature_app) for _ in range(5)]
    listing = feature_app.query("orders/list", {"offset": 1, "limit": 2})
    assert [item["id"] for item in listing["items"]] == [ids[3], ids[2]]
    assert listing["total"] == 5
    assert set(ANSWERED) <= set(listing["items"][0])
    with pytest.raises(ValidationError):
        feature_app.query("orders/list", {"limit": 0})


def test_list_answers_twenty_unless_asked_for_more(feature_app: App) -> None:
    ids = [create(feature_app) for _ in range(21)]
    listing = feature_app.query("orders/list", {})
    assert [item["id"] for item in listing["items"]] == ids[:0:-1]
    assert (listing["total"], listing["limit"]) == (21, 20)
    assert len(feature_app.query("orders/list", {"limit": 1000})["items"]) == 21
    with pytest.raises(ValidationError):
        feature_app.query("orders/list", {"limit": 1001})


@pytest.mark.parametrize(
    "name",
    [
        "customer",
        "total",
        "paid",
        "due",
        "status",
        "shipped_at",
        "quantity",
        "weight",
        "created_at",
        "updated_at",
    ],
)
def test_list_sorts_by_any_field_both_ways(feature_app: App, name: str) -> None:
    ids = [create(feature_app) for _ in range(3)]
    ascending = [item["id"] for item in feature_app.query("orders/list", {"sort": name})["items"]]
    descending = [item["id"] for item in feature_app.query("orders/list", {"sort": f"-{name}"})["items"]]
    assert sorted(ascending) == sorted(descending) == sorted(ids)
    if name == "created_at":
        assert ascending == ids


def test_list_refuses_an_unknown_sort_or_filter_naming_the_ones_there_are(client: TestClient) -> None:
    sort = client.get("/queries/orders/list?sort=no_such_field")
    assert sort.status_code == 400 and "'-created_at'" in str(sort.json()["fields"])
    unknown = client.get("/queries/orders/list?colour=red")
    assert unknown.status_code == 400 and "this query takes offset, limit, sort" in str(unknown.json()["fields"])


def test_a_page_past_the_end_is_empty(client: TestClient) -> None:
    page = client.get("/queries/orders/list?offset=1000").json()
    assert (page["items"], page["total"]) == ([], 0)


@pytest.mark.parametrize(
    ("name", "other"),
    [
        ("customer", "other-id"),
        ("paid", False),
        ("status", "paid"),
    ],
)
def test_list_filters_by_choice_flag_and_reference(feature_app: App, name: str, other: Any) -> None:
    item_id = create(feature_app)
    matching = feature_app.query("orders/list", {name: VALID[name]})
    assert [item["id"] for item in matching["items"]] == [item_id]
    if other is not None:
        assert feature_app.query("orders/list", {name: other})["total"] == 0


def test_a_restart_keeps_the_state_without_replay(feature_app: App, db: str) -> None:
    first, second = create(feature_app), create(feature_app)
    update(feature_app, first)
    feature_app.dispatch(DeleteOrder(id=second))
    before = feature_app.query("orders/list")
    restarted = start_app(db)
    try:
        after = restarted.query("orders/list")
        assert after == before
        assert {name: after["items"][0][name] for name in ANSWERED} == ANSWERED
    finally:
        restarted.log.close()


def test_a_rebuild_from_the_log_gives_the_same_state(feature_app: App) -> None:
    first, second = create(feature_app), create(feature_app)
    update(feature_app, first)
    feature_app.dispatch(DeleteOrder(id=second))
    before = feature_app.query("orders/list")
    report = feature_app.projections.rebuild(["orders"])
    assert report.refused == 0
    assert feature_app.query("orders/list") == before


def test_the_json_api_creates_and_lists(client: TestClient) -> None:
    response = client.post("/commands", json={"type": CREATE, "payload": VALID})
    assert response.status_code == 201
    item_id = response.json()["data"]["id"]
    listing = client.get("/queries/orders/list").json()
    assert [item["id"] for item in listing["items"]] == [item_id]
    assert {name: listing["items"][0][name] for name in ANSWERED} == ANSWERED
    assert client.get("/queries/orders/get", params={"id": "missing"}).status_code == 404


def test_the_json_api_answers_a_list_as_encoding_the_query_s_answer_would(client: TestClient, feature_app: App) -> None:
    """The API writes a page's rows as the table stores them: the same bytes as the query's answer, encoded."""
    ids = [create(feature_app) for _ in range(3)]
    update(feature_app, ids[0])
    asks: list[dict[str, Any]] = [{}, {"offset": 1, "limit": 1}, {"offset": 1000}]
    asks += [{"sort": "customer"}, {"sort": "-customer", "offset": 1}]
    asks += [{"sort": "total"}, {"sort": "-total", "offset": 1}]
    asks += [{"sort": "paid"}, {"sort": "-paid", "offset": 1}]
    asks += [{"sort": "due"}, {"sort": "-due", "offset": 1}]
    asks += [{"sort": "status"}, {"sort": "-status", "offset": 1}]
    asks += [{"sort": "shipped_at"}, {"sort": "-shipped_at", "offset": 1}]
    asks += [{"sort": "quantity"}, {"sort": "-quantity", "offset": 1}]
    asks += [{"sort": "weight"}, {"sort": "-weight", "offset": 1}]
    asks += [{"customer": VALID["customer"]}, {"customer": VALID["customer"], "sort": "-created_at"}]
    asks += [{"paid": VALID["paid"]}, {"paid": VALID["paid"], "sort": "-created_at"}]
    asks += [{"status": VALID["status"]}, {"status": VALID["status"], "sort": "-created_at"}]
    for params in asks:
        answer = client.get("/queries/orders/list", params=params)
        assert answer.status_code == 200 and answer.content == to_json(feature_app.query("orders/list", params))


def test_clients_cannot_forge_the_workers_summary_commands(client: TestClient, feature_app: App) -> None:
    item_id = create(feature_app)
    version = feature_app.log.version()
    forged = {"request_id": "forged", "item_id": item_id, "summary": "FORGED"}
    for verb in ("request-summary-generation", "set-generated-summary", "fail-summary-generation"):
        response = client.post("/commands", json={"type": f"orders/{verb}", "payload": forged})
        assert response.status_code == 404
    assert feature_app.log.version() == version


# --- pages ---


def test_the_list_page_starts_empty_and_is_linked_from_the_index(client: TestClient) -> None:
    assert "No orders yet" in client.get(URL).text
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
        assert "offset and limit page the JSON API (/queries/orders/list)" in refused.text
    unknown = client.get(URL, params={"colour": "red"})
    assert unknown.status_code == 400 and "not colour." in unknown.text and "JSON API" not in unknown.text
    api = client.get("/queries/orders/list", params={"offset": "2", "limit": "1"}).json()
    assert [item["id"] for item in api["items"]] == [ids[0]] and (api["offset"], api["limit"]) == (2, 1)


def test_the_new_form_has_an_input_of_the_right_kind_for_each_field(client: TestClient) -> None:
    page = client.get(f"{URL}/new")
    assert page.status_code == 200
    assert '<select id="customer" name="customer"' in page.text
    assert '<input type="number" id="total" name="total"' in page.text
    assert '<input type="checkbox" id="paid" name="paid"' in page.text
    assert '<input type="date" id="due" name="due"' in page.text
    assert '<select id="status" name="status"' in page.text
    assert '<input type="datetime-local" id="shipped_at" name="shipped_at"' in page.text
    assert '<input type="number" id="quantity" name="quantity"' in page.text
    assert '<input type="number" id="weight" name="weight"' in page.text
    assert '<textarea id="note" name="note"' in page.text


def test_the_new_form_creates_and_redirects_to_the_detail_page(client: TestClient, feature_app: App) -> None:
    response = client.post(f"{URL}/new", data=FORM)
    assert response.status_code == 303
    page = client.get(response.headers["location"])
    assert page.status_code == 200
    (item,) = feature_app.query("orders/list")["items"]
    assert {name: item[name] for name in FORM_ANSWERED} == FORM_ANSWERED


def test_an_invalid_form_is_shown_again_with_errors_and_nothing_is_dispatched(
    client: TestClient, feature_app: App
) -> None:
    before = feature_app.log.version()
    data = {**FORM, "customer": "../not an id", "note": "kept <b>as typed</b>"}
    response = client.post(f"{URL}/new", data=data)
    assert response.status_code == 400
    assert 'id="customer-error"' in response.text
    assert 'aria-invalid="true" aria-describedby="customer-error"' in response.text
    assert "kept &lt;b&gt;as typed&lt;/b&gt;" in response.text
    assert feature_app.log.version() == before


def test_pages_escape_what_users_typed(client: TestClient, feature_app: App) -> None:
    item_id = create(feature_app, note="<script>alert(1)</script>")
    for path in (URL, f"{URL}/{item_id}", f"{URL}/{item_id}/edit"):
        text = client.get(path).text
        assert "<script>alert(1)" not in text


def test_the_edit_form_updates_and_delete_removes(client: TestClient, feature_app: App) -> None:
    item_id = create(feature_app)
    edit = client.post(f"{URL}/{item_id}/edit", data=FORM)
    assert edit.status_code == 303
    item = feature_app.query("orders/get", {"id": item_id})
    assert {name: item[name] for name in FORM_ANSWERED} == FORM_ANSWERED
    invalid_data = {**FORM, "customer": "../not an id"}
    invalid = client.post(f"{URL}/{item_id}/edit", data=invalid_data)
    assert invalid.status_code == 400 and 'id="customer-error"' in invalid.text

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
    item_id = create(app, note="The content to summarize. It has two sentences.")
    await eventually(lambda: is_settled(app, item_id))
    item = summary_of(app, item_id)
    await app.close()

    assert (item["summary_status"], item["summary"]) == ("ready", FakeSummaryAPI.summary_for(item["note"]))
    assert types(db_path) == [CREATE, REQUEST, SET]
    (request,) = summary_api.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert request.headers["idempotency-key"] == item["summary_request_id"]
    assert request.body["model"] == "test-model"
    assert request.body["messages"][-1] == {"role": "user", "content": item["note"]}


@pytest.mark.anyio
async def test_an_edit_of_the_note_is_summarized_again_and_other_edits_are_not(
    summary_api: FakeSummaryAPI, db_path: Path
) -> None:
    app = start_app(db_path)
    await app.start_workers()
    first, edited = "First content.", "Edited content."
    item_id = create(app, note=first)
    await eventually(lambda: is_settled(app, item_id))
    update(app, item_id, note=first)
    update(app, item_id, note=edited)
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
    ids = [create(app, note=f"Content number {n}.") for n in range(6)]
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
    app.dispatch(DeleteOrder(id=item_id))
    await eventually(lambda: not worker_of(app).in_flight)
    assert worker_of(app).requests.get(item_id) is None
    await app.close()
    assert types(db_path) == [CREATE, REQUEST, DELETE]


@pytest.mark.anyio
async def test_without_an_api_url_the_local_summarizer_works_offline(offline: None, db_path: Path) -> None:
    app = start_app(db_path)
    await app.start_workers()
    long_third = "A third sentence, far too long for a summary" + ", and longer" * 15 + "."
    item_id = create(app, note=f"The first sentence.\n\nThe   second sentence. {long_third}")
    await eventually(lambda: is_settled(app, item_id))
    item = summary_of(app, item_id)
    await app.close()
    assert (item["summary_status"], item["summary"]) == ("ready", "The first sentence. The second sentence.")
