"""The message log and the key/value store, on real SQLite files."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from blog.core import LeaseLost, MessageLog, open_log
from blog.core.kv import KeyValueStore
from blog.core.log import LogLockedError, MessageLogBackend


def test_append_assigns_increasing_ids_and_after_streams_newer_messages(db_path: Path) -> None:
    log = MessageLog(db_path)
    first = log.append("notes/add", {"id": "a", "text": "one"})
    second = log.append("notes/add", {"id": "b", "text": "two"})
    assert (first.id, second.id) == (1, 2)
    assert [m.id for m in log.after(0)] == [1, 2]
    assert [m.payload()["id"] for m in log.after(first.id)] == ["b"]
    assert log.version() == 2


def test_after_streams_in_batches_and_sees_appends_made_while_iterating(db_path: Path) -> None:
    log = MessageLog(db_path)
    log.append_many([("t/x", {"n": n}) for n in range(25)])
    seen = []
    for message in log.after(0, batch_size=10):
        seen.append(message.payload()["n"])
        if message.id == 25:
            log.append("t/x", {"n": 25})
    assert seen == list(range(26))


def test_the_schema_is_the_documented_one(db_path: Path) -> None:
    MessageLog(db_path).append("t/x", {"a": 1})
    columns = [row[1] for row in sqlite3.connect(db_path).execute("PRAGMA table_info(messages)")]
    assert columns == ["id", "timestamp", "type", "data", "version"]
    assert sqlite3.connect(db_path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_new_log_creates_its_tables_in_one_commit(db_path: Path) -> None:
    """One commit writes each page once (a commit per table rewrote the first page each time)."""
    log = MessageLog(db_path)
    db = sqlite3.connect(db_path)
    try:
        _busy, frames, _copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert frames == db.execute("PRAGMA page_count").fetchone()[0]
    finally:
        db.close()
        log.close()


def test_a_log_made_before_versions_gains_the_column_in_place_and_its_rows_stay_as_they_were(db_path: Path) -> None:
    old_row = (1, "2025-01-01T00:00:00+00:00", "t/x", '{"a": 1}')
    with sqlite3.connect(db_path) as db:
        db.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, timestamp TEXT, type TEXT, data TEXT)")
        db.execute("INSERT INTO messages VALUES (?, ?, ?, ?)", old_row)
    log = MessageLog(db_path)
    old = next(iter(log.after(0)))
    new = log.append("t/x", {"a": 2}, 3)
    assert (old.version, old.data) == (1, '{"a": 1}')
    assert [m.version for m in log.after(0)] == [1, 3] and new.version == 3
    log.close()
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT id, timestamp, type, data FROM messages WHERE id = 1").fetchone() == old_row


def test_a_failed_transaction_appends_nothing_and_notifies_nobody(db_path: Path) -> None:
    log = MessageLog(db_path)
    calls = []
    log.subscribe(lambda: calls.append(1))
    with pytest.raises(RuntimeError), log.transaction():
        log.append("t/x", {})
        log.set_position("w", 1)
        raise RuntimeError("boom")
    assert log.version() == 0 and log.position("w") == 0 and calls == []
    log.append("t/x", {})
    assert calls == [1]


def test_positions_survive_reopening(db_path: Path) -> None:
    log = MessageLog(db_path)
    log.set_position("worker", 42)
    log.close()
    assert MessageLog(db_path).position("worker") == 42


def test_a_second_exclusive_writer_is_refused_clearly(db_path: Path) -> None:
    first = MessageLog(db_path, exclusive=True)
    with pytest.raises(LogLockedError, match="already in use"):
        MessageLog(db_path, exclusive=True)
    first.close()
    MessageLog(db_path, exclusive=True).close()


def test_unknown_synchronous_mode_is_refused(db_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        MessageLog(db_path, synchronous="sometimes")


def test_kv_stores_json_values_beside_the_log(db_path: Path) -> None:
    log = MessageLog(db_path)
    kv = KeyValueStore(log)
    kv.set("config", {"theme": "dark", "size": 3})
    kv.set("count", 1)
    kv.set("count", 2)
    assert kv.get("config") == {"theme": "dark", "size": 3}
    assert dict(kv.items()) == {"config": {"theme": "dark", "size": 3}, "count": 2}
    assert kv.delete("count") and not kv.delete("count")
    assert kv.get("missing", "default") == "default"


# --- several processes on one log: each MessageLog below stands for one process ---


@pytest.mark.anyio
async def test_a_follower_hears_what_other_processes_append_within_milliseconds(db_path: Path) -> None:
    ours, theirs = open_log(str(db_path)), open_log(str(db_path))
    heard = asyncio.Event()
    ours.subscribe(heard.set)
    following = asyncio.create_task(ours.follow(interval=0.001))
    try:
        await asyncio.sleep(0.01)
        theirs.append("t/x", {"n": 1})
        await asyncio.wait_for(heard.wait(), timeout=2)
    finally:
        following.cancel()


def test_a_nested_transaction_is_a_savepoint(db_path: Path) -> None:
    log = MessageLog(db_path)
    with log.transaction():
        log.append("t/x", {"n": 1})
        with pytest.raises(RuntimeError), log.transaction():
            log.append("t/x", {"n": 2})
            raise RuntimeError("refused")
        log.append("t/x", {"n": 3})
    assert [m.payload()["n"] for m in log.after(0)] == [1, 3]


def test_a_worker_lease_is_held_by_one_process_and_fences_its_position(db_path: Path) -> None:
    first, second = open_log(str(db_path)), open_log(str(db_path))
    assert first.acquire_lease("summaries", ttl=30) and first.acquire_lease("summaries", ttl=30)
    assert not second.acquire_lease("summaries", ttl=30)
    with pytest.raises(LeaseLost):
        second.set_position("summaries", 5)
    assert second.position("summaries") == 0
    first.set_position("summaries", 5)
    assert second.leases()["summaries"]["owner"] == first.owner
    first.close()  # gives its leases up
    assert second.acquire_lease("summaries", ttl=30)
    assert second.position("summaries") == 5


def test_an_expired_lease_can_be_taken_over(db_path: Path) -> None:
    first, second = open_log(str(db_path)), open_log(str(db_path))
    assert first.acquire_lease("summaries", ttl=-1)  # already expired: as if its process died
    assert second.acquire_lease("summaries", ttl=30)
    with pytest.raises(LeaseLost):
        first.set_position("summaries", 1)


def test_every_backend_implements_the_interface(db_path: Path) -> None:
    assert isinstance(open_log(str(db_path)), MessageLogBackend)
