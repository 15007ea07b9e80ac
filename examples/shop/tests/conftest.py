"""Shared fixtures: a real App on a real SQLite file, with a tiny "notes" feature for core tests.

Set ``APP_TEST_DB`` to a PostgreSQL database (``postgresql://user@host:port/dbname``, a
user allowed to create schemas in it) and every test using ``app`` or ``db`` runs on
PostgreSQL as well, each in a fresh schema (``pip install -e '.[postgres]'``).

Tests' files (``tmp_path``: their SQLite logs) go to a fresh folder in memory (``/dev/shm``,
when it has room) rather than on disk: every test's log syncs to disk a few times as it is
created and closed, which costs more than the test on a busy disk. SQLite runs the same code
either way. The folder is removed when the run ends, failed or not: ``pytest --basetemp DIR``
puts the files where you choose, and keeps them to look at.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from pydantic import BaseModel, Field

from shop.core import App, Message, NotFound, Projection, Store, TableSpec, open_log

TEST_DB = os.environ.get("APP_TEST_DB", "")
MEMORY = Path("/dev/shm")
MEMORY_NEEDED = 1 << 30  # free bytes in it before tests use it (a container's default is 64 MB)
IN_MEMORY = pytest.StashKey[str]()


@pytest.hookimpl(tryfirst=True)  # before pytest reads --basetemp for tmp_path
def pytest_configure(config: pytest.Config) -> None:
    if config.option.basetemp or hasattr(config, "workerinput"):  # chosen, or a worker of pytest -n
        return
    try:
        roomy = os.access(MEMORY, os.W_OK) and shutil.disk_usage(MEMORY).free >= MEMORY_NEEDED
    except OSError:
        roomy = False
    if roomy:
        remove_folders_of_killed_runs()
        folder = tempfile.mkdtemp(prefix=f"shop-tests-{os.getpid()}-", dir=MEMORY)
        config.option.basetemp = config.stash[IN_MEMORY] = folder


def remove_folders_of_killed_runs() -> None:
    """A run killed outright (SIGKILL, a timeout) never removes its folder: a later run does, once that one's process is gone."""
    for folder in MEMORY.glob("shop-tests-*-*"):
        pid = folder.name.removeprefix("shop-tests-").split("-")[0]
        if pid.isdigit() and folder.stat().st_uid == os.getuid() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(IN_MEMORY, None)
    if folder is not None:  # memory is not for keeping: --basetemp DIR keeps a run's files to look at
        shutil.rmtree(folder, ignore_errors=True)


class AddNote(BaseModel):
    id: str = Field(min_length=1, max_length=40)
    text: str = Field(min_length=1, max_length=200)


class RemoveNote(BaseModel):
    id: str


class GetNote(BaseModel):
    id: str


NOTES = TableSpec("notes")


class Notes(Projection):
    """The smallest possible feature state: notes by id, in the store's ``notes`` table."""

    tables = (NOTES,)

    def __init__(self, store: Store) -> None:
        super().__init__(store, "notes")
        self.items = self.table(NOTES)

    def add(self, command: AddNote, message: Message) -> None:
        self.items.put(command.id, {"id": command.id, "text": command.text})

    def remove(self, command: RemoveNote, message: Message) -> None:
        if self.items.get(command.id) is None:
            raise NotFound(f"no note {command.id!r}")
        self.items.delete(command.id)

    def get(self, query: GetNote) -> dict[str, str]:
        note = self.items.get(query.id)
        if note is None:
            raise NotFound(f"no note {query.id!r}")
        return note

    def texts(self) -> dict[str, str]:
        """Every note's text by id (a test's view: the notes are few)."""
        return {note["id"]: note["text"] for note in self.items.find(limit=1000)}


def register_notes(app: App) -> Notes:
    notes = Notes(app.store)
    app.add_feature("notes")
    app.projections.add(notes)
    app.commands.register("notes/add", AddNote, notes.add)
    app.commands.register("notes/remove", RemoveNote, notes.remove)
    app.queries.register("notes/get", GetNote, notes.get)
    return notes


@pytest.fixture(autouse=True)
def _no_api_token_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose their tokens (``create_http_app(app, tokens=[...])``): exported ones must not leak in."""
    monkeypatch.delenv("APP_API_TOKEN", raising=False)
    monkeypatch.delenv("APP_METRICS_TOKEN", raising=False)


@pytest.fixture(autouse=True)
def _test_client_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """Starlette's TestClient sends ``Host: testserver``: allow it in tests, as Django's test runner does."""
    monkeypatch.setenv("APP_ALLOWED_HOSTS", "testserver")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "app.db"


@pytest.fixture(params=["sqlite", "postgresql"] if TEST_DB else ["sqlite"])
def db(request: pytest.FixtureRequest, db_path: Path) -> Iterator[str]:
    """Where a test's log lives (``--db``): an SQLite file, and a fresh PostgreSQL schema with ``APP_TEST_DB``."""
    if request.param == "sqlite":
        yield str(db_path)
    else:
        yield from fresh_postgresql_database(TEST_DB)


def fresh_postgresql_database(server: str) -> Iterator[str]:
    """An empty schema of its own on ``server`` (cheaper than a database): yield its URL, drop it afterwards."""
    import psycopg

    name = f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {name}")
    parts = urlsplit(server)
    query = "&".join(filter(None, [parts.query, f"options=-csearch_path%3D{name}"]))
    yield urlunsplit(parts._replace(query=query))
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA {name} CASCADE")


@pytest.fixture
def app(db: str) -> Iterator[App]:
    app = App(open_log(db), poll_interval=0.01, jitter=0.01, stop_timeout=1.0)
    yield app
    app.log.close()  # closing twice is harmless
