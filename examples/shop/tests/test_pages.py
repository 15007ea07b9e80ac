"""The pages' core: error pages, static files, flash messages, plain-English form errors, /events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import AfterValidator, BaseModel, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.testclient import TestClient

from shop.core import App
from shop.core.events import EventStreams
from shop.core.forms import field_errors
from shop.core.http import create_http_app, form_errors
from shop.core.pages import Pages, redirect_with_flash

from .conftest import AddNote, register_notes

HTML = {"accept": "text/html"}


@pytest.fixture
def client(app: App) -> Iterator[TestClient]:
    register_notes(app)

    async def flash_then_home(request: Request) -> Response:
        return redirect_with_flash("/", "Note saved.")

    async def crash(request: Request) -> Response:
        raise RuntimeError("a bug")

    app.add_route("/flash", flash_then_home, methods=("POST",))
    app.add_route("/crash", crash)
    with TestClient(create_http_app(app), raise_server_exceptions=False) as client:
        yield client


def test_an_app_reuses_the_templates_another_compiled_and_an_edited_one_is_compiled_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "page.html").write_text("one {{ x }}")
    first, second, third = Pages(), Pages(), Pages()
    for pages in (first, second, third):
        pages.add("mine", tmp_path)
    assert first.environment.get_template("mine/page.html").render(x=1) == "one 1"

    def compile_again(*args: object, **kwargs: object) -> None:
        raise AssertionError("compiled again")

    monkeypatch.setattr(second.environment, "compile", compile_again)
    assert second.environment.get_template("mine/page.html").render(x=2) == "one 2"
    (tmp_path / "page.html").write_text("two {{ x }}")
    assert third.environment.get_template("mine/page.html").render(x=3) == "two 3"


def test_an_unknown_page_is_a_styled_404_for_browsers_and_json_for_programs(client: TestClient) -> None:
    page = client.get("/no/such/page", headers=HTML)
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "<h1>Not found</h1>" in page.text and "/static/app.css" in page.text
    api = client.get("/no/such/page")
    assert api.status_code == 404 and api.json() == {"error": "There is nothing at this address."}
    assert client.get("/queries/nope/nothing", headers=HTML).headers["content-type"] == "application/json"


def test_a_wrong_method_is_a_405_page_that_says_what_is_allowed(client: TestClient) -> None:
    page = client.delete("/", headers=HTML)
    assert page.status_code == 405 and "DELETE is not allowed here." in page.text
    assert "GET" in page.headers["allow"]


def test_a_crash_is_a_500_page_that_shows_no_details(client: TestClient) -> None:
    page = client.get("/crash", headers=HTML)
    assert page.status_code == 500 and "Something went wrong" in page.text
    assert "a bug" not in page.text and "RuntimeError" not in page.text
    assert page.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/static/app.css", "text/css"), ("/static/app.js", "javascript"), ("/static/favicon.svg", "image/svg+xml")],
)
def test_the_stylesheet_script_and_icon_are_served(client: TestClient, path: str, content_type: str) -> None:
    response = client.get(path)
    assert response.status_code == 200 and content_type in response.headers["content-type"]
    assert path in client.get("/").text


def test_the_app_name_is_in_the_header(client: TestClient) -> None:
    assert 'class="app-name" href="/">shop</a>' in client.get("/").text


def test_a_flash_message_shows_once_after_the_redirect(client: TestClient) -> None:
    redirect = client.post("/flash", follow_redirects=False)
    assert redirect.status_code == 303
    cookie = redirect.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    shown = client.get("/")
    assert '<p class="flash" role="status">Note saved.</p>' in shown.text
    assert "Note saved." not in client.get("/").text


def test_pages_work_under_the_csp_without_inline_scripts_or_styles(client: TestClient) -> None:
    for page in (client.get("/"), client.get("/nope", headers=HTML)):
        assert "<script>" not in page.text and "<style" not in page.text and "style=" not in page.text


class Order(BaseModel):
    title: str = Field(min_length=1, max_length=5)
    quantity: int = Field(ge=1)
    price: float
    contact: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    rating: float = Field(default=1, le=5.0)
    # As a feature's ``isbn:str:min=10:max=17``: the length rule is checked after the Line type's validators.
    isbn: Annotated[Annotated[str, AfterValidator(str.strip)], Field(min_length=10, max_length=17)] = "0123456789"


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({}, "title", "Please fill in this field."),
        ({"title": ""}, "title", "Please fill in this field."),
        ({"title": "too long"}, "title", "Use at most 5 characters."),
        ({"quantity": "two"}, "quantity", "Enter a whole number."),
        ({"quantity": "0"}, "quantity", "Enter a number of at least 1."),
        ({"price": "cheap"}, "price", "Enter a number."),
        ({"contact": "nobody"}, "contact", "Enter a valid email address."),
        ({"rating": "9"}, "rating", "Enter a number of at most 5."),
        ({"isbn": "123"}, "isbn", "Use at least 10 characters."),
        ({"isbn": "x" * 18}, "isbn", "Use at most 17 characters."),
    ],
)
def test_form_errors_are_plain_english(values: dict[str, str], field: str, message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Order.model_validate(values)
    assert form_errors(refused.value)[field] == message


def test_the_apis_errors_count_a_texts_length_in_characters() -> None:
    with pytest.raises(ValidationError) as refused:
        Order.model_validate({"title": "ok", "quantity": 1, "price": 1, "contact": "a@b", "isbn": " 123 "})
    assert field_errors(refused.value) == [
        {"loc": ["isbn"], "msg": "String should have at least 10 characters", "type": "string_too_short"}
    ]


async def read_events(streams: EventStreams, position: int, count: int) -> list[str]:
    """The first ``count`` events of a stream (its retry line is the first), however they were batched."""
    events: list[str] = []
    async for chunk in streams.stream(position):
        events += [f"{event}\n\n" for event in chunk.split("\n\n") if event]
        if len(events) >= count:
            break
    return events[:count]


@pytest.mark.anyio
async def test_events_announce_each_new_message_by_id_and_type_only(app: App) -> None:
    register_notes(app)
    streams = EventStreams(app.log, heartbeat=5)
    reading = asyncio.create_task(read_events(streams, app.log.version(), 3))
    await asyncio.sleep(0.05)
    app.dispatch(AddNote(id="a", text="secret text"))
    await asyncio.to_thread(app.dispatch, AddNote(id="b", text="from a thread"))
    events = await asyncio.wait_for(reading, 5)
    assert events[0].startswith("retry: ")
    assert events[1] == f"id: 1\ndata: {json.dumps({'id': 1, 'type': 'notes/add'})}\n\n"
    assert events[2].startswith("id: 2\n") and "secret" not in "".join(events)
    streams.close()


@pytest.mark.anyio
async def test_a_reconnecting_client_resumes_after_the_last_event_it_saw(app: App) -> None:
    register_notes(app)
    for note in ("a", "b", "c"):
        app.dispatch(AddNote(id=note, text=note))
    streams = EventStreams(app.log, heartbeat=5)
    events = await asyncio.wait_for(read_events(streams, 1, 3), 5)
    assert [event.split("\n")[0] for event in events[1:]] == ["id: 2", "id: 3"]
    streams.close()


@pytest.mark.anyio
async def test_closing_ends_every_open_stream(app: App) -> None:
    streams = EventStreams(app.log, heartbeat=5)
    reading = asyncio.create_task(read_events(streams, 0, 100))
    await asyncio.sleep(0.05)
    streams.close()
    assert await asyncio.wait_for(reading, 2) == ["retry: 2000\n\n"]
