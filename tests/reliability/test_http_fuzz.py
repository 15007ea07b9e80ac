"""HTTP fuzz against a real uvicorn: junk never gets a 5xx, and a refused request appends nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from .harness import Server, log_rows, log_version

pytestmark = pytest.mark.slow

FUZZ = settings(
    max_examples=250,
    deadline=5000,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEW = settings(FUZZ, max_examples=100)

CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/jsonx",
    "",
]
COMMAND_TYPES = ["notes/add", "notes/nope", "notes", "/", "", "notes/add/", "../core/x", "NOTES/ADD", "posts/create"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.integers(10_000, 300_000).map(lambda n: "x" * n)
)
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)

VALID_NOTE = {"id": "n", "title": "t", "body": "b", "tags": ["a"], "priority": 1, "score": 0.5, "author": {"name": "a"}}


@st.composite
def mutated_notes(draw: st.DrawFn) -> dict[str, object]:
    """A valid note payload with one to three fields replaced, removed or added."""
    note: dict[str, object] = {**VALID_NOTE, "id": draw(st.uuids()).hex[:12]}
    for _ in range(draw(st.integers(1, 3))):
        field = draw(st.sampled_from([*VALID_NOTE, "extra", "__class__", "id"]))
        if draw(st.booleans()) and field in note:
            del note[field]
        else:
            note[field] = draw(junk)
    return note


envelopes = (
    junk
    | st.fixed_dictionaries({"type": st.sampled_from(COMMAND_TYPES) | st.text(max_size=20), "payload": junk})
    | st.fixed_dictionaries({"type": st.just("notes/add"), "payload": mutated_notes()})
    | st.fixed_dictionaries({"type": st.just("notes/add")}, optional={"payload": junk, "extra": junk})
)


def huge_number_body(digits: int) -> bytes:
    """A note whose priority has more digits than Python parses by default."""
    return b'{"type": "notes/add", "payload": {"id": "a", "title": "t", "priority": %s}}' % (b"1" * digits)


raw_bodies = (
    st.binary(max_size=200)
    | st.text(max_size=200).map(str.encode)
    | envelopes.map(lambda e: json.dumps(e)[: max(1, len(json.dumps(e)) // 2)].encode())  # truncated JSON
    | st.integers(4_000, 6_000).map(huge_number_body)
    | st.just(b"")
)  # fmt: skip


@pytest.fixture
def client(notes_server: Server) -> Iterator[httpx.Client]:
    """Per test: a test may restart the module's server, which then listens on a new port."""
    with httpx.Client(base_url=notes_server.url, timeout=30) as client:
        yield client


def check(response: httpx.Response, before: int, server: Server) -> None:
    """Never a 5xx; a command's 2xx appended exactly one message; anything else appended nothing."""
    after = log_version(server.db)
    event(f"HTTP {response.status_code}")
    assert response.status_code < 500, response.text[:500]
    if response.request.method == "GET":
        assert after == before
    elif response.is_success:
        assert response.json()["id"] == after == before + 1
    else:
        assert response.status_code >= 400
        assert after == before, f"{response.status_code} but the log grew from {before} to {after}"
        if response.headers.get("content-type", "").startswith("application/json"):
            assert "error" in response.json()


@FUZZ
@given(body=envelopes, content_type=st.sampled_from(CONTENT_TYPES))
def test_fuzzed_json_commands_get_4xx_and_append_nothing(
    client: httpx.Client, notes_server: Server, body: object, content_type: str
) -> None:
    before = log_version(notes_server.db)
    response = client.post("/commands", content=json.dumps(body).encode(), headers={"content-type": content_type})
    check(response, before, notes_server)
    if content_type.split(";")[0].strip().lower() != "application/json":
        assert response.status_code == 415


@FEW
@given(body=raw_bodies, content_type=st.sampled_from(CONTENT_TYPES[:3]))
def test_fuzzed_raw_bodies_get_4xx_and_append_nothing(
    client: httpx.Client, notes_server: Server, body: bytes, content_type: str
) -> None:
    before = log_version(notes_server.db)
    check(client.post("/commands", content=body, headers={"content-type": content_type}), before, notes_server)


path_parts = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=20) | (
    st.sampled_from(["notes", "get", "list", "..", "%00", "core"])
)
params = st.dictionaries(
    st.sampled_from(["id", "prefix", "limit", "x", "limit[]"]) | st.text(max_size=10),
    st.text(max_size=40) | st.integers().map(str) | st.sampled_from(["' OR 1=1 --", "1e999", "-1", "NaN", "\x00"]),
    max_size=4,
)


@FEW
@given(feature=path_parts, name=path_parts, query=params)
def test_fuzzed_queries_never_fail_with_5xx(
    client: httpx.Client, notes_server: Server, feature: str, name: str, query: dict[str, str]
) -> None:
    before = log_version(notes_server.db)
    url = f"/queries/{quote(feature, safe='')}/{quote(name, safe='')}"
    check(client.get(url, params=query), before, notes_server)
    for known in ("/queries/notes/get", "/queries/notes/list"):
        check(client.get(known, params=query), before, notes_server)


@FEW
@given(path=path_parts)
def test_fuzzed_pages_never_fail_with_5xx(client: httpx.Client, notes_server: Server, path: str) -> None:
    before = log_version(notes_server.db)
    check(client.get(f"/notes/{quote(path, safe='')}"), before, notes_server)


def test_the_server_is_alive_and_its_log_replays_after_the_fuzzing(client: httpx.Client, notes_server: Server) -> None:
    """Runs last in this module: every accepted note is valid, and a restart rebuilds exactly them."""
    assert client.get("/healthz").status_code == 200
    rows = log_rows(notes_server.db)
    assert [row[0] for row in rows] == list(range(1, len(rows) + 1))
    accepted = {json.loads(data)["id"] for _, _, _, data in rows}
    notes_server.terminate()
    notes_server.start()
    with httpx.Client(base_url=notes_server.url) as fresh:
        assert set(fresh.get("/queries/notes/list").json()) == accepted


def test_deeply_nested_json_is_refused_with_400(client: httpx.Client, notes_server: Server) -> None:
    before = log_version(notes_server.db)
    body = b'{"type": "notes/add", "payload": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = client.post("/commands", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert log_version(notes_server.db) == before


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused_and_never_poison_the_log(
    client: httpx.Client, notes_server: Server, number: str
) -> None:
    before = log_version(notes_server.db)
    body = '{"type": "notes/add", "payload": {"id": "nan-%s", "title": "t", "score": %s}}' % (number.lower(), number)  # noqa: UP031
    response = client.post("/commands", content=body.encode(), headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert log_version(notes_server.db) == before
