"""Poison messages: a handler that keeps failing on one message does not stall its worker forever."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import Result
from pydantic import BaseModel
from starlette.testclient import TestClient
from typer.testing import CliRunner

from shop.cli import cli
from shop.core import App, CommandWorker, Context, open_log
from shop.core.deadletters import DeadLetterStatus
from shop.core.http import create_http_app

from .conftest import AddNote, register_notes

pytestmark = pytest.mark.anyio

SRC = str(Path(__file__).resolve().parent.parent / "src")


class Announce(BaseModel):
    note: str


class Announcer(CommandWorker):
    """Announces every note, and fails on those whose text is "poison" until ``fixed`` is set."""

    def __init__(self, **budget: object) -> None:
        super().__init__("announcer", **budget)
        self.fixed = False
        self.attempts: list[str] = []
        self.on("notes/add", self.announce)

    def announce(self, command: AddNote, ctx: Context) -> None:
        self.attempts.append(command.id)
        if command.text == "poison" and not self.fixed:
            raise ValueError(f"cannot announce {command.id}")
        ctx.dispatch(Announce(note=command.id))


def make_app(db: str, **budget: object) -> tuple[App, Announcer]:
    app = App(open_log(db), poll_interval=0.01, jitter=0.0, stop_timeout=1.0)
    app.supervisor.backoff_base = 0.01
    register_notes(app)
    app.commands.register("announcer/announce", Announce)
    worker = Announcer(**budget)
    app.register_worker(worker)
    return app, worker


def announced(app: App) -> list[str]:
    return [m.payload()["note"] for m in app.log.after(0) if m.type == "announcer/announce"]


async def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


async def test_a_poison_message_becomes_a_dead_letter_and_later_messages_are_handled(db: str) -> None:
    app, worker = make_app(db, max_attempts=3)
    app.dispatch(AddNote(id="bad", text="poison"))
    app.dispatch(AddNote(id="good", text="fine"))
    await app.start_workers()
    await wait_until(lambda: "good" in announced(app))
    await app.close()

    assert worker.attempts.count("bad") == 3
    with reopened(db) as committed:
        (letter,) = committed.dead_letters.list()
        assert announced(committed) == ["good"]
    assert (letter.worker, letter.message_id, letter.type) == ("announcer", 1, "notes/add")
    assert letter.attempts == 3 and "cannot announce bad" in letter.error


async def test_a_dead_letter_is_recorded_once_and_not_replayed_after_a_restart(db: str) -> None:
    app, _ = make_app(db, max_attempts=2)
    app.dispatch(AddNote(id="bad", text="poison"))
    await app.start_workers()
    await wait_until(lambda: app.dead_letters.counts() == {"announcer": 1})
    await app.close()

    again, worker = make_app(db, max_attempts=2)
    await again.start_workers()  # goes on from the stored position: the dead letter is not handled again
    again.dispatch(AddNote(id="next", text="fine"))
    await wait_until(lambda: "next" in announced(again))
    await again.close()
    assert worker.attempts == ["next"]
    with reopened(db) as committed:
        assert len(committed.dead_letters.list(statuses=tuple(DeadLetterStatus))) == 1


async def test_attempts_survive_a_restart_in_the_middle_of_retries(db: str) -> None:
    app, worker = make_app(db, max_attempts=4)
    app.dispatch(AddNote(id="bad", text="poison"))
    await app.start_workers()
    await wait_until(lambda: worker.attempts.count("bad") >= 2)
    await app.close()  # a crash here would leave the same rows: attempts are committed one by one

    again, worker_again = make_app(db, max_attempts=4)
    await again.start_workers()
    await wait_until(lambda: again.dead_letters.counts() == {"announcer": 1})
    await again.close()
    assert worker.attempts.count("bad") + worker_again.attempts.count("bad") == 4


async def test_retry_after_the_fix_handles_the_message_exactly_once(db: str) -> None:
    app, worker = make_app(db, max_attempts=2)
    app.dispatch(AddNote(id="bad", text="poison"))
    await app.start_workers()
    await wait_until(lambda: app.dead_letters.counts() == {"announcer": 1})
    (letter,) = app.dead_letters.list()
    worker.fixed = True
    app.dead_letters.retry(letter.id)
    await wait_until(lambda: announced(app) == ["bad"])
    await asyncio.sleep(0.1)  # several more cycles: the retry must not happen again
    await app.close()
    with reopened(db) as committed:
        assert announced(committed) == ["bad"]
        assert committed.dead_letters.get(letter.id).status is DeadLetterStatus.RETRIED
        assert committed.dead_letters.counts() == {}


async def test_a_retry_that_fails_again_waits_for_the_operator_once_more(db: str) -> None:
    app, _ = make_app(db, max_attempts=2)
    app.dispatch(AddNote(id="bad", text="poison"))
    await app.start_workers()
    await wait_until(lambda: app.dead_letters.counts() == {"announcer": 1})
    (letter,) = app.dead_letters.list()
    app.dead_letters.retry(letter.id)
    await wait_until(lambda: app.dead_letters.get(letter.id).attempts == 4)
    await app.close()
    with reopened(db) as committed:
        assert committed.dead_letters.get(letter.id).status is DeadLetterStatus.DEAD


async def test_a_worker_that_opts_out_keeps_retrying_and_stays_degraded(db: str) -> None:
    app, worker = make_app(db, max_attempts=2, dead_letter=False)
    app.dispatch(AddNote(id="bad", text="poison"))
    app.dispatch(AddNote(id="good", text="fine"))
    await app.start_workers()
    await wait_until(lambda: worker.attempts.count("bad") >= 4)
    await app.close()
    assert "good" not in worker.attempts
    with reopened(db) as committed:
        assert committed.dead_letters.counts() == {}


async def test_a_time_budget_gives_up_after_that_long(db: str) -> None:
    app, worker = make_app(db, max_attempts=1_000, max_retry_seconds=0.2)
    app.dispatch(AddNote(id="bad", text="poison"))
    await app.start_workers()
    await wait_until(lambda: app.dead_letters.counts() == {"announcer": 1})
    await app.close()
    assert 1 < worker.attempts.count("bad") < 1_000


def test_healthz_reports_dead_letters_until_they_are_discarded(db: str) -> None:
    app, _ = make_app(db, max_attempts=1)
    app.dispatch(AddNote(id="bad", text="poison"))
    with TestClient(create_http_app(app)) as client:
        deadline = time.monotonic() + 5
        while client.get("/healthz").json()["dead_letters"] != {"announcer": 1}:
            assert time.monotonic() < deadline, "no dead letter in time"
            time.sleep(0.01)
        health = client.get("/healthz")
        assert (health.status_code, health.json()["status"]) == (200, "degraded")
        (letter,) = app.dead_letters.list()
        app.dead_letters.discard(letter.id)
        health = client.get("/healthz")
        assert (health.status_code, health.json()["status"]) == (200, "ok")


def test_the_cli_lists_shows_retries_and_discards(db: str) -> None:
    app, _ = make_app(db)
    first = app.dispatch(AddNote(id="one", text="poison"))
    second = app.dispatch(AddNote(id="two", text="poison"))
    for message in (first, second):
        app.dead_letters.bury("announcer", message, 5, "ValueError: boom")
    app.log.close()

    everything = deadletters(db, "list")
    assert everything.exit_code == 0, everything.output
    assert everything.stdout.count("announcer") == 2 and "notes/add" in everything.stdout
    shown = deadletters(db, "show", "1")
    assert '"text": "poison"' in shown.stdout and '"status": "dead"' in shown.stdout
    assert deadletters(db, "retry", "1").exit_code == 0
    assert deadletters(db, "discard", "2").exit_code == 0
    listing = deadletters(db, "list").stdout.strip()
    assert listing == "1\tannouncer\tmessage 1\tnotes/add\t5 attempts\tretry\tValueError: boom"

    refused = deadletters(db, "discard", "2")
    assert (refused.exit_code, refused.output.strip()) == (1, "error: dead letter 2 is already discarded")
    unknown = deadletters(db, "show", "99")
    assert (unknown.exit_code, unknown.output.strip()) == (1, "error: no dead letter with id 99")
    assert isinstance(refused.exception, SystemExit) and isinstance(unknown.exception, SystemExit)  # no traceback


def test_reading_tools_refuse_a_database_that_is_not_there(tmp_path: Path) -> None:
    missing = str(tmp_path / "elsewhere.db")
    refusal = f"error: no database at {missing} — the app has not run here yet (serve creates it), or pass --db PATH"
    # As an operator runs it: a process of its own, one line on stderr, no traceback.
    process = subprocess.run(
        [sys.executable, "-m", "shop", "deadletters", "list", "--db", missing],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))},
        check=False,
    )
    assert (process.returncode, process.stderr.strip()) == (1, refusal)
    for args in (["log", "tail"], ["kv", "list"]):
        result = app_cli(*args, "--db", missing)
        assert (result.exit_code, result.output.strip()) == (1, refusal)
    assert list(tmp_path.iterdir()) == []  # no empty database left behind


def deadletters(db: str, *args: str) -> Result:
    """``python -m shop deadletters ARGS --db DB``, as an operator runs it."""
    return app_cli("deadletters", *args, "--db", db)


def app_cli(*args: str) -> Result:
    """``python -m shop ARGS``, run in this process by typer's test runner (a second each saved)."""
    return CliRunner().invoke(cli, list(args), prog_name="python -m shop")


@contextmanager
def reopened(db: str) -> Iterator[App]:
    """A fresh App on the same database, to read what was committed."""
    app = App(open_log(db))
    try:
        yield app
    finally:
        app.log.close()
