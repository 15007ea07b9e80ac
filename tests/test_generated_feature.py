"""A generated feature in a real served app: ``python -m blog serve`` with a local summary API.

The summary API is the generated apps' own fake OpenAI-compatible server on
127.0.0.1; everything else is the real app, over real HTTP.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from .support import TLS, serving

pytestmark = pytest.mark.slow

SECRET = "sk-e2e-secret"


def summary_when_ready(url: str, item_id: str, timeout: float) -> tuple[dict[str, Any], float]:
    """Poll ``GET /queries/posts/list`` until the item's summary is settled; returns it and the seconds it took."""
    began = time.monotonic()
    while True:
        items = httpx.get(f"{url}/queries/posts/list", timeout=5, verify=TLS).json()["items"]
        item = next(item for item in items if item["id"] == item_id)
        if item["summary_status"] != "pending" or time.monotonic() - began > timeout:
            return item, time.monotonic() - began
        time.sleep(0.01)


def logged_types(db: Path) -> list[str]:
    with sqlite3.connect(db) as connection:
        return [row[0] for row in connection.execute("SELECT type FROM messages ORDER BY id")]


def test_a_post_created_over_http_gets_its_summary_within_a_second(
    blog_with_posts: Path, fake_summary_api: Any, tmp_path: Path
) -> None:
    db = tmp_path / "app.db"
    env = {"SUMMARY_API_URL": fake_summary_api.url, "SUMMARY_API_KEY": SECRET, "SUMMARY_MODEL": "e2e-model"}
    content = "Petrock renders features. Each one gets a worker that summarizes new posts."
    with serving(blog_with_posts, db, env=env) as server:
        created = httpx.post(
            f"{server.url}/commands",
            json={"type": "posts/create", "payload": {"title": "Hello", "content": content}},
            timeout=5,
        )
        assert created.status_code == 201, created.text
        item, seconds = summary_when_ready(server.url, created.json()["data"]["id"], timeout=5)
        assert item["summary_status"] == "ready", item
        assert item["summary"] == fake_summary_api.summary_for(content)
        assert seconds < 1.0

        page = httpx.get(f"{server.url}/posts", timeout=5)
        assert page.status_code == 200 and item["summary"] in page.text
        assert server.terminate() == 0

    (request,) = fake_summary_api.requests
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert request.body["model"] == "e2e-model"
    assert logged_types(db) == ["posts/create", "posts/request-summary-generation", "posts/set-generated-summary"]

    # a restart keeps the state and repeats nothing
    with serving(blog_with_posts, db, env=env) as server:
        listing = httpx.get(f"{server.url}/queries/posts/list", timeout=5).json()
        assert listing["items"][0]["summary"] == item["summary"]
        time.sleep(0.3)
        assert server.terminate() == 0
    assert len(fake_summary_api.requests) == 1
    assert len(logged_types(db)) == 3


def test_offline_the_forms_create_a_post_with_a_local_summary(blog_with_posts: Path, tmp_path: Path) -> None:
    with serving(blog_with_posts, tmp_path / "app.db", env={"SUMMARY_API_URL": ""}) as server:
        client = httpx.Client(base_url=server.url, timeout=5)
        invalid = client.post("/posts/new", data={"title": "", "content": "<b>kept</b>"})
        assert invalid.status_code == 400 and "&lt;b&gt;kept&lt;/b&gt;" in invalid.text

        created = client.post("/posts/new", data={"title": "Offline", "content": "Works without a model. Really."})
        assert created.status_code == 303
        item_id = created.headers["location"].rsplit("/", 1)[1]
        item, _ = summary_when_ready(server.url, item_id, timeout=5)
        assert (item["summary_status"], item["summary"]) == ("ready", "Works without a model. Really.")
        assert "Works without a model. Really." in client.get(created.headers["location"]).text
        client.close()
        assert server.terminate() == 0
