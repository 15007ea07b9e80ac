"""A generated app served by a real uvicorn: the HTTP contract, restarts, and crash recovery.

The app gets a small hand-written feature (as a user would write one): a
`notes/add` command, a `notes/list` query, and a CommandWorker that answers
every note with one `notes/echo` command.
"""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from petrock.inject import add_line

from .support import TLS, app_env, new_app, serving

NOTES_FEATURE = '''\
"""A hand-written feature for tests: notes, and a worker that echoes each one exactly once."""

from pydantic import BaseModel, Field

from ..core import App, CommandWorker, Context, Message, Projection, Store, TableSpec

NOTES = TableSpec("notes")
ECHOES = TableSpec("note-echoes")


class AddNote(BaseModel):
    id: str = Field(min_length=1, max_length=40)
    text: str = Field(min_length=1, max_length=200)


class EchoNote(BaseModel):
    source: int
    id: str


class ListNotes(BaseModel):
    pass


class Notes(Projection):
    tables = (NOTES, ECHOES)

    def __init__(self, store: Store) -> None:
        super().__init__(store, "notes")
        self.items = self.table(NOTES)
        self.echoes = self.table(ECHOES)

    def add(self, command: AddNote, message: Message) -> None:
        self.items.put(command.id, {"id": command.id, "text": command.text})

    def echo(self, command: EchoNote, message: Message) -> None:
        self.echoes.put(str(command.source), {"source": command.source})

    def list(self, query: ListNotes) -> dict:
        items = {note["id"]: note["text"] for note in self.items.find(limit=1000)}
        return {"items": items, "echoed": [echo["source"] for echo in self.echoes.find(limit=1000)]}


def register(app: App) -> None:
    notes = Notes(app.store)
    app.add_feature("notes")
    app.projections.add(notes)
    app.commands.register("notes/add", AddNote, notes.add)
    app.commands.register("notes/echo", EchoNote, notes.echo)
    app.queries.register("notes/list", ListNotes, notes.list)

    echo = CommandWorker("echo", poll_interval=0.2, jitter=0.1)

    @echo.on("notes/add")
    def answer(command: AddNote, ctx: Context) -> None:
        ctx.dispatch(EchoNote(source=ctx.message.id, id=command.id))

    app.register_worker(echo)
'''


@pytest.fixture
def app_root(tmp_path: Path) -> Path:
    root = new_app(tmp_path)
    (root / "src/blog/notes").mkdir()
    (root / "src/blog/notes/__init__.py").write_text("")
    (root / "src/blog/notes/register.py").write_text(NOTES_FEATURE)
    features = root / "src/blog/features.py"
    text = add_line(features.read_text(), "imports", "from .notes.register import register as register_notes")
    features.write_text(add_line(text, "registrations", "register_notes(app)"))
    return root


def rows(db: Path, type: str) -> list[tuple[int, dict]]:
    """(message id, payload) of every message of ``type``, read straight from SQLite."""
    with sqlite3.connect(db) as connection:
        found = connection.execute("SELECT id, data FROM messages WHERE type = ? ORDER BY id", (type,)).fetchall()
    return [(row[0], json.loads(row[1])) for row in found]


def post(url: str, body: object, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{url}/commands", json=body, timeout=10, verify=TLS, **kwargs)  # type: ignore[arg-type]


def test_only_valid_commands_reach_the_log_and_a_restart_keeps_the_state(app_root: Path, tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    with serving(app_root, db) as server:
        url = server.url
        assert post(url, {"type": "notes/add", "payload": {"id": "a", "text": "first"}}).status_code == 201
        assert post(url, {"type": "notes/add", "payload": {"id": "b", "text": "second"}}).status_code == 201
        refusals = {
            "unknown type": (post(url, {"type": "notes/nope", "payload": {}}), 404),
            "missing field": (post(url, {"type": "notes/add", "payload": {"id": "c"}}), 400),
            "too long": (post(url, {"type": "notes/add", "payload": {"id": "c", "text": "x" * 201}}), 400),
            "not json": (
                httpx.post(f"{url}/commands", content=b"{", headers={"content-type": "application/json"}),
                400,
            ),
            "wrong type": (httpx.post(f"{url}/commands", content=b"id=c", headers={"content-type": "text/plain"}), 415),
            "too big": (post(url, {"type": "notes/add", "payload": {"id": "c", "text": "x" * 1_100_000}}), 413),
        }
        for name, (response, status) in refusals.items():
            assert response.status_code == status, name
        assert [payload["id"] for _, payload in rows(db, "notes/add")] == ["a", "b"]
        assert server.terminate() == 0

    with serving(app_root, db) as server:
        state = httpx.get(f"{server.url}/queries/notes/list").json()
        assert state["items"] == {"a": "first", "b": "second"}
        assert sorted(state["echoed"]) == [message_id for message_id, _ in rows(db, "notes/add")]
        assert server.terminate() == 0


def test_inspect_shows_live_worker_states_from_a_running_server(app_root: Path, tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    with serving(app_root, db) as server:
        assert post(server.url, {"type": "notes/add", "payload": {"id": "a", "text": "x"}}).status_code == 201
        time.sleep(0.5)
        result = subprocess.run(
            [sys.executable, "-m", "blog", "inspect", "--db", str(db), "--url", server.url],
            cwd=app_root,
            env=app_env(app_root),
            capture_output=True,
            text=True,
            check=True,
        )
        assert server.terminate() == 0
    description = json.loads(result.stdout)
    assert [c["type"] for c in description["commands"]] == ["notes/add", "notes/echo"]
    (worker,) = description["workers"]
    assert (worker["name"], worker["state"], worker["last_error"]) == ("echo", "running", None)
    assert worker["position"] >= 1
    # Offline, the position is the one recorded (a fault trial saw 0 there), the state this process's own.
    offline = subprocess.run(
        [sys.executable, "-m", "blog", "inspect", "--db", str(db)],
        cwd=app_root,
        env=app_env(app_root),
        capture_output=True,
        text=True,
        check=True,
    )
    (stored,) = json.loads(offline.stdout)["workers"]
    assert stored["state"] == "registered" and stored["position"] >= worker["position"] >= 1


def test_sigterm_stops_workers_and_exits_cleanly(app_root: Path, tmp_path: Path) -> None:
    with serving(app_root, tmp_path / "app.db", stop_timeout=2.0) as server:
        began = time.monotonic()
        assert server.terminate() == 0
        assert time.monotonic() - began < 2.0 + 3.0
        assert "worker 'echo' stopped" in server.output()


def _post_until_stopped(url: str, acknowledged: list[str], stop: threading.Event, client_id: int) -> None:
    with httpx.Client(timeout=5) as client:
        for n in range(10_000):
            if stop.is_set():
                return
            note = f"c{client_id}-{n}"
            try:
                response = client.post(
                    f"{url}/commands", json={"type": "notes/add", "payload": {"id": note, "text": "x"}}
                )
            except httpx.HTTPError:
                return  # the server died under us: this one was not acknowledged
            if response.status_code == 201:
                acknowledged.append(note)


@pytest.mark.slow
def test_kill_9_mid_stream_loses_no_acknowledged_command_and_never_echoes_twice(app_root: Path, tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    acknowledged: list[str] = []
    rounds = 3
    for _ in range(rounds):
        server = serving(app_root, db)
        with server as running:
            stop = threading.Event()
            clients = [
                threading.Thread(target=_post_until_stopped, args=(running.url, acknowledged, stop, i))
                for i in range(4)
            ]
            for client in clients:
                client.start()
            time.sleep(random.uniform(0.3, 0.8))
            running.kill()  # SIGKILL while commands and echoes are in flight
            stop.set()
            for client in clients:
                client.join(timeout=10)

    # Restart and let the worker catch up from its stored position.
    with serving(app_root, db) as server:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if len(rows(db, "notes/echo")) >= len(rows(db, "notes/add")):
                break
            time.sleep(0.1)
        assert server.terminate() == 0

    added = rows(db, "notes/add")
    echoes = [payload["source"] for _, payload in rows(db, "notes/echo")]
    assert len(acknowledged) > 0
    assert set(acknowledged) <= {payload["id"] for _, payload in added}, "an acknowledged command was lost"
    assert sorted(echoes) == [message_id for message_id, _ in added], "a note was echoed twice or skipped"
