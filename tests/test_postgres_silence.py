"""A served app whose PostgreSQL falls silent: the connection stays open and nothing answers.

That is what a pooler such as pgbouncer does while PostgreSQL is down (found by a
fresh-user trial: an instance answered nothing for the whole outage, 29 s of a 25 s one),
and what a host gone from the network looks like until TCP gives up. The app's
database calls run on its event loop, so one unanswered query held every request,
``/healthz`` and shutdown. Here a proxy (tests/holding_proxy.py) stands in front of the
session's real PostgreSQL and holds everything on demand.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from .holding_proxy import HoldingProxy
from .support import Server, app_env, free_port

pytestmark = pytest.mark.slow

ANSWER_TIMEOUT = 1.5  # seconds: APP_DB_ANSWER_TIMEOUT for these servers (10 by default)


def through(proxy: HoldingProxy, url: str) -> str:
    """``url`` with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    return parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}").geturl()


def create(server: Server, title: str) -> httpx.Response:
    payload = {"title": title, "content": f"The content of {title}. It has two sentences."}
    return httpx.post(f"{server.url}/commands", json={"type": "posts/create", "payload": payload}, timeout=60)


def timed(call: object) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()  # type: ignore[operator]
    return response, time.monotonic() - started


def stored_titles(url: str) -> list[str]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT data::json->>'title' FROM messages WHERE type = 'posts/create' ORDER BY id")
        return [title for (title,) in rows]


def test_a_silent_database_gets_503s_at_once_after_one_bounded_wait_and_loses_nothing_acknowledged(
    blog_with_posts: Path, pg_url: str
) -> None:
    with HoldingProxy(urlsplit(pg_url).port) as proxy:  # type: ignore[arg-type]
        server = Server(blog_with_posts, through(proxy, pg_url), env={"APP_DB_ANSWER_TIMEOUT": str(ANSWER_TIMEOUT)})
        server.start(timeout=30)
        try:
            assert create(server, "before").status_code == 201
            proxy.hold()
            first, waited = timed(lambda: create(server, "held 0"))
            assert first.status_code == 503, first.text
            assert waited < ANSWER_TIMEOUT + 2, waited  # one bounded wait (the worker may have met it first)
            for n in range(1, 6):  # the silence is known now: no call waits for it again
                answer, waited = timed(lambda n=n: create(server, f"held {n}"))
                assert (answer.status_code, waited < 0.5) == (503, True), (answer.text, waited)
            health, waited = timed(lambda: httpx.get(f"{server.url}/healthz", timeout=60))
            assert (health.status_code, health.json()["database"], waited < 0.5) == (503, "unreachable", True)
            proxy.release()
            deadline = time.monotonic() + 15
            while (after := create(server, "after")).status_code != 201:
                assert time.monotonic() < deadline, after.text
                time.sleep(0.1)
        finally:
            code = server.terminate()
        output = server.output()
    assert code == 0, output
    assert f"(no answer within {ANSWER_TIMEOUT:g} s)" in output
    assert "reached the database" in output and "again after" in output
    assert "Traceback" not in output, output
    assert stored_titles(pg_url) == ["before", "after"]  # every 201 is stored, and no 503 is


def test_shutdown_while_the_database_is_silent_ends_in_time(blog_with_posts: Path, pg_url: str) -> None:
    """SIGTERM gives up the worker's lease (a DELETE) before it exits: held, it waited as long as the silence."""
    with HoldingProxy(urlsplit(pg_url).port) as proxy:  # type: ignore[arg-type]
        server = Server(
            blog_with_posts,
            through(proxy, pg_url),
            stop_timeout=2,
            env={"APP_DB_ANSWER_TIMEOUT": str(ANSWER_TIMEOUT)},
        )
        server.start(timeout=30)
        proxy.hold()
        started = time.monotonic()
        try:
            code = server.terminate(timeout=30)
        finally:
            server.kill()
        stopped_in = time.monotonic() - started
    assert code == 0, server.output()
    assert stopped_in < 2 + ANSWER_TIMEOUT + 3, stopped_in


@pytest.mark.parametrize("value", ["soon", "0", "-1", "inf"])
def test_a_bad_answer_timeout_is_refused_in_one_line(blog_with_posts: Path, pg_url: str, value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "blog", "serve", "--port", str(free_port()), "--db", pg_url],
        cwd=blog_with_posts,
        env=app_env(blog_with_posts, APP_DB_ANSWER_TIMEOUT=value),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr == f"error: APP_DB_ANSWER_TIMEOUT must be a positive number of seconds, not {value!r}\n"
    assert "serving" not in result.stdout
