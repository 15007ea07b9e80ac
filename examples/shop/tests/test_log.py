"""The message log and the key/value store, on real SQLite files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from shop.core import MessageLog
from shop.core.kv import KeyValueStore
from shop.core.log import LogLockedError


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
    assert columns == ["id", "timestamp", "type", "data"]
    assert sqlite3.connect(db_path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


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
