"""kill -9 under load: every command that got a 2xx survives the crash, in the log and in state."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from .harness import LoadThreads, Server, add_feature, integrity, log_rows

CLIENTS = 8
ROUNDS = 5
NOTE_KEYS = {"id", "title", "body", "tags", "priority", "score", "author"}


class Load(LoadThreads):
    """CLIENTS threads posting notes as fast as they can, remembering which ones were acknowledged."""

    def __init__(self, url: str, round: int) -> None:
        super().__init__(CLIENTS)
        self.url = url
        self.round = round
        self.acknowledged: dict[str, tuple[int, dict[str, object]]] = {}
        self.sent = 0
        self.refused: list[str] = []

    def wait_until_flowing(self, acknowledged: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acknowledged) < acknowledged:
            assert time.monotonic() < deadline, f"only {len(self.acknowledged)} commands acknowledged in {timeout}s"
            time.sleep(0.01)

    def _client(self, number: int) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            for i in range(1_000_000):
                if self._stop.is_set():
                    return
                note = {
                    "id": f"r{self.round}-c{number}-{i}",
                    "title": f"note {i} from client {number}",
                    "tags": ["load"],
                }
                with self._lock:
                    self.sent += 1
                try:
                    response = client.post("/commands", json={"type": "notes/add", "payload": note})
                except httpx.TransportError:
                    return  # the server died mid-request: not acknowledged, may or may not be in the log
                if response.status_code == 201:
                    with self._lock:
                        self.acknowledged[note["id"]] = (response.json()["id"], note)
                else:
                    self.refused.append(f"{response.status_code} {response.text[:200]}")


def check_log(db: Path, acknowledged: dict[str, tuple[int, dict[str, object]]]) -> dict[str, int]:
    """No torn rows, ids without gaps, every acknowledged note stored as sent; returns note id -> message id."""
    assert integrity(db) == "ok"
    rows = log_rows(db)
    assert [row[0] for row in rows] == list(range(1, len(rows) + 1))
    stored: dict[str, int] = {}
    for id, timestamp, type, data in rows:
        datetime.fromisoformat(timestamp)
        assert type == "notes/add"
        payload = json.loads(data)
        assert set(payload) == NOTE_KEYS, data
        assert payload["id"] not in stored
        stored[payload["id"]] = id
    for note_id, (message_id, note) in acknowledged.items():
        assert stored.get(note_id) == message_id, f"acknowledged {note_id} (message {message_id}) was lost"
        assert json.loads(rows[message_id - 1][3])["title"] == note["title"]
    return stored


@pytest.mark.slow
def test_kill_9_under_load_loses_no_acknowledged_command(
    app_dir: Path, tmp_path: Path, servers: Callable[..., Server]
) -> None:
    add_feature(app_dir, "notes")
    db = tmp_path / "app.db"
    server = servers(app_dir, db)
    seed = random.randrange(1_000_000)
    chance = random.Random(seed)
    acknowledged: dict[str, tuple[int, dict[str, object]]] = {}
    figures = []
    for round in range(ROUNDS):
        server.start()
        with httpx.Client(base_url=server.url) as client:
            state = client.get("/queries/notes/list").json()
        assert state == check_log(db, acknowledged), f"state after restart differs from the log (seed {seed})"
        before = len(log_rows(db))
        with Load(server.url, round) as load:
            load.wait_until_flowing(2 * CLIENTS)
            time.sleep(chance.uniform(0.05, 1.0))
            server.kill()
        assert not load.refused, load.refused[:3]
        acknowledged |= load.acknowledged
        stored = check_log(db, acknowledged)
        figures.append((load.sent, len(load.acknowledged), len(stored) - before))
    server.start()
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/queries/notes/list").json() == check_log(db, acknowledged)
    server.terminate()
    print(f"kill -9 seed={seed} per round (sent, acknowledged, appended)={figures}")
