"""The API describes itself: /openapi.json is valid OpenAPI 3.1 for every feature, and /docs shows it."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from openapi_spec_validator import validate
from pydantic import BaseModel
from starlette.testclient import TestClient

from blog.core import App, open_log
from blog.core.http import create_http_app
from blog.core.openapi import component_name, openapi_spec
from blog.core.owners import Actor, acting_as
from blog.main import build_app

from .conftest import register_notes

TOKEN = "openapi-test-token"


class Remember(BaseModel):
    note: str


@pytest.fixture
def client(app: App) -> Iterator[TestClient]:
    register_notes(app)
    app.commands.register("notes/remember", Remember, public=False)  # the app's own workers send it
    with TestClient(create_http_app(app, start_workers=False)) as client:
        yield client


def test_the_description_is_valid_openapi_3_1(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    validate(spec)
    assert spec["openapi"].startswith("3.1")


def test_every_public_command_is_one_schema_told_apart_by_its_type(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/commands"]["post"]["requestBody"]["content"]["application/json"]
    mapping = body["schema"]["discriminator"]["mapping"]
    assert body["schema"]["discriminator"]["propertyName"] == "type"
    assert sorted(mapping) == ["notes/add", "notes/remove"]  # notes/remember is not public: HTTP answers 404
    envelope = spec["components"]["schemas"][component_name("notes/add")]
    assert envelope["properties"]["type"] == {"const": "notes/add"}
    payload = spec["components"]["schemas"][envelope["properties"]["payload"]["$ref"].rsplit("/", 1)[1]]
    assert sorted(payload["properties"]) == ["id", "text"] and sorted(payload["required"]) == ["id", "text"]


def test_every_query_is_a_path_with_its_parameters(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    (parameter,) = spec["paths"]["/queries/notes/get"]["get"]["parameters"]
    assert (parameter["name"], parameter["in"], parameter["required"]) == ("id", "query", True)


def test_the_errors_a_command_can_meet_are_described(client: TestClient) -> None:
    responses = client.get("/openapi.json").json()["paths"]["/commands"]["post"]["responses"]
    assert {"201", "400", "401", "404", "409", "413", "415", "421", "422"} <= set(responses)


def test_every_feature_of_this_app_is_described_and_its_examples_validate(db: str) -> None:
    app = build_app(db)  # the features this app registers (features.py), not just the test's notes
    try:
        spec = openapi_spec(app, secured=True)
        validate(spec)
        assert spec["security"] == [{"bearer": []}]
        examples = spec["paths"]["/commands"]["post"]["requestBody"]["content"]["application/json"]["examples"]
        public = [command for command in app.commands if command.public]
        assert sorted(examples) == sorted(command.type for command in public)
        for command in public:
            example = examples[command.type]["value"]
            assert example["type"] == command.type
            with acting_as(Actor(user="someone")):  # as a request: an owned command's actor is not in the example
                command.model.model_validate(example["payload"])  # a first try from /docs gets past validation
        assert {f"/queries/{query.type}" for query in app.queries} <= set(spec["paths"])
    finally:
        app.log.close()


def test_the_docs_page_shows_every_command_and_query_with_the_apps_own_files(client: TestClient) -> None:
    page = client.get("/docs", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for text in ("notes/add", "notes/remove", "/queries/notes/get", 'data-try="command"', 'data-try="query"'):
        assert text in page.text
    assert "notes/remember" not in page.text
    assets = re.findall(r'(?:src|href)="([^"#]+)"', page.text)
    assert "/static/docs.js" in assets and "/static/docs.css" in assets
    for asset in assets:
        assert asset.startswith("/"), f"{asset} is not one of the app's own files"  # no CDN
    for asset in ("/static/docs.js", "/static/docs.css"):
        assert client.get(asset).status_code == 200


def test_the_description_and_the_page_sit_behind_the_token(app: App) -> None:
    register_notes(app)
    with TestClient(create_http_app(app, start_workers=False, tokens=[TOKEN]), follow_redirects=False) as client:
        assert client.get("/openapi.json").status_code == 401
        page = client.get("/docs", headers={"accept": "text/html"})
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
        bearer = {"authorization": f"Bearer {TOKEN}"}
        assert client.get("/openapi.json", headers=bearer).json()["security"] == [{"bearer": []}]
        assert 'id="api-token"' in client.get("/docs", headers=bearer).text  # where a person pastes the token


def test_the_description_is_built_from_the_registries_when_the_app_runs(db_path) -> None:
    app = App(open_log(str(db_path)))
    try:
        validate(openapi_spec(app, secured=False))  # a fresh app, no feature yet
        register_notes(app)
        assert "/queries/notes/get" in openapi_spec(app, secured=False)["paths"]
    finally:
        app.log.close()
