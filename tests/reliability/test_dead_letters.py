"""Poison messages in a served app: bounded retries across a kill -9, then an operator's retry, exactly once."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from ..support import TLS
from .harness import APP_NAME, Server, add_feature, log_rows, wait_until

pytestmark = pytest.mark.slow


def attempts_on(markers: Path, item: str) -> int:
    return len(list(markers.glob(f"{item}.*")))


def handled(db: Path) -> list[str]:
    return [json.loads(data)["id"] for _, _, type, data in log_rows(db) if type == "poison/handled"]


def dead_letter_rows(db: Path) -> list[tuple[int, int, str]]:
    """The checker's dead letters as committed (they live in the app's key/value store)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        row = connection.execute("SELECT value FROM kv WHERE key = 'deadletters/poison-checker'").fetchone()
    letters = json.loads(row[0]) if row else []
    return [(letter["message_id"], letter["attempts"], letter["status"]) for letter in letters]


def health(server: Server) -> dict[str, object]:
    return httpx.get(f"{server.url}/healthz", timeout=5, verify=TLS).json()


def test_a_dead_letter_is_recorded_once_across_a_kill_and_retried_exactly_once(
    app_dir: Path, tmp_path: Path, servers: Callable[..., Server]
) -> None:
    add_feature(app_dir, "poison")
    markers = tmp_path / "markers"
    markers.mkdir()
    db = tmp_path / "app.db"
    server = servers(app_dir, db, env={"RELIABILITY_MARKERS": str(markers)}).start()
    add = {"type": "poison/add", "payload": {"id": "p1", "text": "poison"}}
    assert httpx.post(f"{server.url}/commands", json=add, timeout=5).status_code == 201

    assert wait_until(lambda: attempts_on(markers, "p1") >= 3, timeout=10), server.output()
    server.kill()  # in the middle of the retries: 6 are allowed
    killed_after = attempts_on(markers, "p1")
    assert killed_after < 6

    server.start()
    assert wait_until(lambda: health(server)["dead_letters"] == {"poison-checker": 1}, timeout=15), server.output()
    later = {"type": "poison/add", "payload": {"id": "ok1", "text": "fine"}}
    assert httpx.post(f"{server.url}/commands", json=later, timeout=5).status_code == 201
    assert wait_until(lambda: handled(db) == ["ok1"], timeout=10), server.output()
    # Attempts are committed one by one: the budget counts those before the crash too.
    assert dead_letter_rows(db) == [(1, 6, "dead")]
    assert attempts_on(markers, "p1") in (6, 7)  # 7 if the kill landed between an attempt and its record
    assert "gave up on message 1 (poison/add) after 6 attempts" in server.output()
    server.terminate()

    retry = subprocess.run(
        [sys.executable, "-m", APP_NAME, "deadletters", "retry", "1", "--db", str(db)],
        cwd=app_dir,
        env={**os.environ, "PYTHONPATH": str(app_dir / "src")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert retry.returncode == 0, retry.stderr

    server.env["POISON_FIXED"] = "1"  # the operator deployed the fix
    server.start()
    assert wait_until(lambda: "p1" in handled(db), timeout=10), server.output()
    assert wait_until(lambda: health(server)["status"] == "ok", timeout=5)
    server.terminate()
    server.start()  # and once more: the retry is not repeated after a restart
    assert wait_until(lambda: health(server)["status"] == "ok", timeout=5)
    server.terminate()
    assert sorted(handled(db)) == ["ok1", "p1"]
    assert dead_letter_rows(db) == [(1, 6, "retried")]
