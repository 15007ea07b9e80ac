"""Projections, served for real: start without replay, rebuild behind a 503, kill -9 at any moment.

Each test serves the generated app with its posts feature (and summary worker) the
way users do (`python -m APP serve`), on a log written through the app's own log API.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from ..support import TLS
from .harness import APP_NAME, LoadThreads, Server, wait_until

pytestmark = pytest.mark.slow

# Above the log length an app rebuilds before it listens (REBUILD_AT_ONCE), so serve answers 503 meanwhile.
POSTS = 12_000
WRITE_LOG = """
import json, sys, uuid
from {app}.core import open_log

log = open_log(sys.argv[1])
posts = int(sys.argv[2])
batch = []
for number in range(posts):
    post, request = f"p{{number}}", uuid.uuid4().hex
    content = f"Post number {{number}} says hello. " * 8
    batch += [
        ("posts/create", json.dumps({{"id": post, "title": f"Post {{number}}", "content": content}})),
        ("posts/request-summary-generation",
         json.dumps({{"request_id": request, "item_id": post, "content": content}})),
        ("posts/set-generated-summary",
         json.dumps({{"request_id": request, "item_id": post, "summary": f"Summary {{number}}."}})),
    ]
    if len(batch) >= 30_000:
        log.append_many(batch)
        batch = []
log.append_many(batch)
log.set_position("posts-summaries", log.version())
log.close()
"""


def app_python(app_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(app_dir / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, *args], cwd=app_dir, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def write_log(app_dir: Path, db: Path, posts: int) -> None:
    """``posts`` posts with their summaries, appended raw (no projection built yet), as an old app left them."""
    result = app_python(app_dir, "-c", WRITE_LOG.format(app=APP_NAME), str(db), str(posts))
    assert result.returncode == 0, result.stderr


def every_post(server: Server) -> dict[str, dict[str, object]]:
    """All posts over the API, page by page (what a client reads)."""
    posts: dict[str, dict[str, object]] = {}
    with httpx.Client(base_url=server.url, timeout=10, verify=TLS) as client:
        while True:
            page = client.get("/queries/posts/list", params={"offset": len(posts), "limit": 1000}).json()
            posts.update({post["id"]: post for post in page["items"]})
            if not page["items"]:
                return posts


def health(server: Server) -> httpx.Response:
    return httpx.get(f"{server.url}/healthz", timeout=5, verify=TLS)


def test_a_big_log_is_rebuilt_behind_503s_once_then_never_again(
    posts_dir: Path, tmp_path: Path, servers: Callable[..., Server]
) -> None:
    db = tmp_path / "app.db"
    write_log(posts_dir, db, POSTS)
    server = servers(posts_dir, db).start()
    first = health(server)
    assert first.status_code == 503 and first.json()["status"] == "rebuilding"
    refused = httpx.post(
        f"{server.url}/commands", json={"type": "posts/create", "payload": {"title": "t", "content": "c"}}
    )
    assert refused.status_code == 503 and refused.headers["retry-after"]
    listed = httpx.get(f"{server.url}/queries/posts/list")  # refused, or the rebuild has just ended: every post
    assert listed.status_code == 503 or (listed.status_code == 200 and listed.json()["total"] == POSTS), listed.text
    assert wait_until(lambda: health(server).status_code == 200, timeout=120)
    posts = every_post(server)
    assert len(posts) == POSTS
    assert all(post["summary_status"] == "ready" and post["summary"] for post in posts.values())
    server.terminate()
    assert "rebuilt posts from" in server.output()

    began = time.monotonic()
    server.start()  # the projections are current: healthy on the first answer, nothing rebuilt
    assert health(server).status_code == 200
    assert time.monotonic() - began < 15
    assert "rebuilt posts from" not in server.output()
    listing = httpx.get(f"{server.url}/queries/posts/list", params={"sort": "-title", "limit": 3}).json()
    assert listing["total"] == POSTS and [post["title"] for post in listing["items"]] == [
        "Post 9999", "Post 9998", "Post 9997"
    ]  # fmt: skip
    server.terminate()


def test_kill_9_during_a_rebuild_leaves_the_old_state_and_the_next_start_finishes_it(
    posts_dir: Path, tmp_path: Path, servers: Callable[..., Server]
) -> None:
    db = tmp_path / "app.db"
    write_log(posts_dir, db, POSTS)
    server = servers(posts_dir, db).start()
    assert health(server).json()["status"] == "rebuilding"
    time.sleep(random.uniform(0.2, 1.0))
    server.kill()
    server.start()
    assert wait_until(lambda: health(server).status_code == 200, timeout=120)
    assert len(every_post(server)) == POSTS
    server.terminate()


def rebuild_lease_holder(db: Path) -> int | None:
    """The pid of the process holding the projections' rebuild lease (its owner is host:pid:token)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as look:
        try:
            row = look.execute("SELECT owner FROM leases WHERE name = 'rebuild:projections'").fetchone()
        except sqlite3.OperationalError:  # not made yet, or busy
            return None
    return int(row[0].split(":")[1]) if row else None


def built(db: Path) -> bool:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as look:
        return look.execute("SELECT 1 FROM projections WHERE name = 'posts'").fetchone() is not None


def test_a_rebuild_whose_process_is_killed_is_taken_over_within_seconds(
    posts_dir: Path, tmp_path: Path, servers: Callable[..., Server]
) -> None:
    """Two server processes start on a log to rebuild; the one rebuilding is killed with kill -9. Its
    lease is short and was kept alive by a timer, so the other takes over in seconds (not minutes) and
    every process serves the whole log."""
    db = tmp_path / "app.db"
    write_log(posts_dir, db, POSTS)
    server = servers(posts_dir, db, processes=2).start()
    deadline = time.monotonic() + 30
    while (holder := rebuild_lease_holder(db)) is None:
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.01)
    os.kill(holder, signal.SIGKILL)
    killed = time.monotonic()
    assert not built(db), "the rebuild finished before the kill: lengthen the log"

    def serving() -> bool:  # a new connection each time: either process may answer
        try:
            return all(health(server).status_code == 200 for _ in range(6))
        except httpx.TransportError:
            return False

    assert wait_until(serving, timeout=60), server.output()
    took = time.monotonic() - killed
    assert took < 20, f"took over after {took:.1f}s"  # the lease's 10 s and the rebuild, not 120 s
    assert "waiting while" in server.output()
    assert len(every_post(server)) == POSTS
    server.terminate()


class Writers(LoadThreads):
    """Clients creating, editing and deleting posts as fast as they can."""

    def __init__(self, url: str) -> None:
        super().__init__(4)
        self.url = url
        self.acknowledged = 0

    def _client(self, number: int) -> None:
        ids: list[str] = []
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while not self._stop.is_set():
                roll = random.random()
                if ids and roll < 0.2:
                    command = {"type": "posts/delete", "payload": {"id": ids.pop(random.randrange(len(ids)))}}
                elif ids and roll < 0.5:
                    edit = {"id": random.choice(ids), "title": f"edited {roll:.3f}", "content": f"Edited at {roll}."}
                    command = {"type": "posts/update", "payload": edit}
                else:
                    ids.append(uuid.uuid4().hex)
                    command = {"type": "posts/create", "payload": {"id": ids[-1], "title": "t", "content": "Body."}}
                try:
                    response = client.post("/commands", json=command)
                except httpx.TransportError:
                    return  # the server died
                if response.status_code == 201:
                    with self._lock:
                        self.acknowledged += 1


def test_kill_9_under_load_leaves_the_tables_exactly_what_the_log_rebuilds(
    posts_dir: Path, tmp_path: Path, servers: Callable[..., Server]
) -> None:
    db = tmp_path / "app.db"
    server = servers(posts_dir, db).start()
    for _ in range(3):
        with Writers(server.url) as writers:
            assert wait_until(lambda: writers.acknowledged >= 100, timeout=30)
            time.sleep(random.uniform(0.0, 0.3))
            server.kill()
        server.start()
    assert wait_until(lambda: health(server).status_code == 200, timeout=30)
    # The summary worker catches up on what the crashes interrupted; then nothing moves any more.
    assert wait_until(lambda: all(p["summary_status"] != "pending" for p in every_post(server).values()), 60)
    kept = every_post(server)
    server.terminate()
    result = app_python(posts_dir, "-m", APP_NAME, "projections", "status", "--db", str(db))
    assert result.returncode == 0 and "current" in result.stdout, result.stdout

    rebuilt = app_python(posts_dir, "-m", APP_NAME, "projections", "rebuild", "--db", str(db))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuilt posts" in rebuilt.stdout
    server.start()
    assert every_post(server) == kept and kept
    server.terminate()


def test_a_worker_state_is_rebuilt_ahead_of_a_start_and_never_while_a_server_runs_the_worker(
    posts_dir: Path, tmp_path: Path, servers: Callable[..., Server]
) -> None:
    db = tmp_path / "app.db"
    write_log(posts_dir, db, 2_000)
    status = app_python(posts_dir, "-m", APP_NAME, "projections", "status", "--db", str(db))
    assert "worker:posts-summaries       missing" in status.stdout, status.stdout

    # the worker's handlers read the posts projection: asked for alone, it is built first
    rebuilt = app_python(posts_dir, "-m", APP_NAME, "projections", "rebuild", "worker:posts-summaries", "--db", str(db))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuilt posts from 6000 messages" in rebuilt.stdout
    assert "rebuilt worker:posts-summaries from 6000 messages" in rebuilt.stdout
    status = app_python(posts_dir, "-m", APP_NAME, "projections", "status", "--db", str(db))
    assert "stale" not in status.stdout and "missing" not in status.stdout, status.stdout
    assert "posts-summary-requests 2000" in status.stdout

    server = servers(posts_dir, db).start()
    assert health(server).status_code == 200
    refused = app_python(posts_dir, "-m", APP_NAME, "projections", "rebuild", "worker:posts-summaries", "--db", str(db))
    assert refused.returncode == 1 and "runs in a served process" in refused.stderr, refused.stderr
    post = "fresh-post"
    payload = {"id": post, "title": "New", "content": "Fresh words."}
    assert httpx.post(f"{server.url}/commands", json={"type": "posts/create", "payload": payload}).status_code == 201

    def summarized() -> bool:
        return (
            httpx.get(f"{server.url}/queries/posts/get", params={"id": post}, verify=TLS).json()["summary_status"]
            == "ready"
        )

    assert wait_until(summarized, timeout=30)  # the worker goes on from its position
    server.terminate()
    assert "rebuilding its state" not in server.output()


def test_a_worker_state_rebuilt_at_start_says_how_far_it_is_and_what_it_took(
    posts_dir: Path, tmp_path: Path, servers: Callable[..., Server]
) -> None:
    db = tmp_path / "app.db"
    write_log(posts_dir, db, 2_000)  # as an upgraded app's first start finds it: no table built yet

    server = servers(posts_dir, db).start()
    assert wait_until(lambda: "rebuilt its state" in server.output(), timeout=120), server.output()
    workers = {worker["name"]: worker for worker in health(server).json()["workers"]}
    assert workers["posts-summaries"]["rebuilding"] is None  # /healthz shows (done, total) only meanwhile
    server.terminate()
    output = server.output()
    assert "worker 'posts-summaries': rebuilt its state from 6000 messages in" in output, output
    # the last batch and the end of the rebuild both report the total: it is said once
    assert output.count("rebuilding worker 'posts-summaries': 6000 of 6000 messages") == 1, output
