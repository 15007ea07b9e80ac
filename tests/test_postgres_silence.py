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
from .support import Server, app_env, free_port, run_in_app

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


# A worker's COMMIT lands but its answer never comes back: the watchdog cuts the wait, and the commit's
# outcome is unknown (found by review: the worker then went on from the position it had before that
# commit, and handled the same messages again, dispatching every command twice).
WORKER_COMMIT_UNANSWERED = """
import asyncio, sys
from urllib.parse import urlsplit
sys.path.insert(0, sys.argv[2])
from tests.holding_proxy import HoldingProxy
from pydantic import BaseModel
from blog.core import App, CommandWorker, Context, Message, open_log
from blog.core.backends.postgres import PostgresLog
from blog.core.log import CommitOutcomeUnknown, LogUnreachable

class Note(BaseModel):
    n: int

class Reply(BaseModel):
    n: int

url = urlsplit(sys.argv[1])
cut = []
with HoldingProxy(url.port) as proxy:
    log = PostgresLog(url._replace(netloc=f"postgres@127.0.0.1:{proxy.port}").geturl(), answer_timeout=1.0)
    app = App(log)

    def apply_reply(command: Reply, message: Message) -> None:
        if not cut:  # inside the worker's transaction, its BEGIN answered: the next round trip is its COMMIT
            cut.append(command.n)
            proxy.hold(answers_only=True)

    app.commands.register("notes/add", Note, lambda command, message: None)
    app.commands.register("notes/reply", Reply, apply_reply)
    worker = CommandWorker("replier")

    @worker.on("notes/add")
    def reply(command: Note, ctx: Context) -> None:
        ctx.dispatch(Reply(n=command.n))

    app.prepare()
    for n in (1, 2, 3):
        app.dispatch(Note(n=n))

    async def main() -> None:
        assert log.acquire_lease(worker.name, 60)
        await worker.start(app)
        try:
            await worker.work()
        except CommitOutcomeUnknown:
            pass
        else:
            raise AssertionError("the cut commit was answered")
        proxy.release()
        for _ in range(300):  # the supervisor's retries: the cycle again, after a pause
            await asyncio.sleep(0.1)
            try:
                log.acquire_lease(worker.name, 60)
                await worker.work()
                return
            except LogUnreachable:
                continue
        raise AssertionError("the worker never worked again")

    asyncio.run(main())
    log.close()
stored = open_log(sys.argv[1])
replies = [m.payload()["n"] for m in stored.after(0) if m.type == "notes/reply"]
assert replies == [1, 2, 3], replies
assert stored.position("replier") == 6, stored.position("replier")  # past its own replies too
print("ok")
"""


def test_a_worker_whose_commit_landed_unanswered_goes_on_from_the_stored_position(
    blog_with_posts: Path, pg_url: str
) -> None:
    result = run_in_app(blog_with_posts, WORKER_COMMIT_UNANSWERED, pg_url, str(Path(__file__).parents[1]), timeout=90)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
    assert "the outcome of messages 4-6 (notes/reply) is unknown" in result.stderr


def test_only_a_serving_app_bounds_its_waits(blog_with_posts: Path, pg_url: str) -> None:
    """``projections rebuild`` builds tables and indexes that take minutes on a big log: the CLI waits as
    long as the database takes (found by review: it was cut at the bound, blaming the database)."""
    env = {"APP_DB_ANSWER_TIMEOUT": "0.001"}  # every statement of a rebuild takes longer
    result = subprocess.run(
        [sys.executable, "-m", "blog", "projections", "rebuild", "--db", pg_url],
        cwd=blog_with_posts,
        env=app_env(blog_with_posts, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "rebuilt posts" in result.stdout + result.stderr


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
