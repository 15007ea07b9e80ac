"""What every log backend promises, one suite for all of them (SQLite, and PostgreSQL too).

Each test runs once per backend the ``db`` fixture offers: SQLite always, PostgreSQL when
``APP_TEST_DB`` names a server (see conftest.py). Two logs opened on the same ``db`` stand
for two processes, or two machines.
"""

from __future__ import annotations

import asyncio
import re
import threading
from datetime import datetime

import pytest

from blog.core import LeaseLost, open_log
from blog.core.log import MessageLogBackend

pytestmark = pytest.mark.anyio


def test_appends_get_increasing_ids_and_after_streams_the_newer_ones(db: str) -> None:
    log = open_log(db)
    first = log.append("t/x", {"n": 1})
    batch = log.append_many([("t/y", {"n": 2}), ("t/y", {"n": 3})])
    assert [first.id, *(m.id for m in batch)] == [1, 2, 3] and log.version() == 3
    assert list(log.after(0)) == [first, *batch]
    assert [m.payload()["n"] for m in log.after(first.id)] == [2, 3]
    assert [row[0] for row in log.rows_after(1, batch_size=1)] == [2, 3]
    assert log.append_many([]) == []


def test_after_reads_in_batches_and_sees_appends_made_while_iterating(db: str) -> None:
    log = open_log(db)
    log.append_many([("t/x", {"n": n}) for n in range(25)])
    seen = []
    for message in log.after(0, batch_size=10):
        seen.append(message.payload()["n"])
        if message.id == 25:
            log.append("t/x", {"n": 25})
    assert seen == list(range(26))


def test_stored_json_and_timestamps_come_back_exactly(db: str) -> None:
    log = open_log(db)
    text = '{"b": 1, "a": "caf\\u00e9 \\u0000 \\ud83d\\ude00", "n": 1.50}'
    stored = log.append("t/x", text)
    (again,) = open_log(db).after(0)
    assert again == stored and again.data == text  # byte for byte, whatever the backend
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", again.timestamp)
    assert datetime.fromisoformat(again.timestamp).utcoffset() is not None


def test_a_failed_transaction_appends_nothing_and_notifies_nobody(db: str) -> None:
    log = open_log(db)
    heard: list[int] = []
    log.subscribe(lambda: heard.append(1))
    with pytest.raises(RuntimeError), log.transaction():
        log.append("t/x", {})
        log.set_position("w", 1)
        raise RuntimeError("refused")
    assert log.version() == 0 and log.position("w") == 0 and heard == []
    log.append("t/x", {})
    assert heard == [1]


def test_a_nested_transaction_is_a_savepoint(db: str) -> None:
    log = open_log(db)
    with log.transaction():
        log.append("t/x", {"n": 1})
        with pytest.raises(RuntimeError), log.transaction():
            log.append("t/x", {"n": 2})
            raise RuntimeError("refused")
        log.append("t/x", {"n": 3})
    assert [m.payload()["n"] for m in log.after(0)] == [1, 3]


def test_a_log_knows_whether_the_calling_thread_has_a_transaction_open(db: str) -> None:
    log = open_log(db)
    from_another_thread: list[bool] = []
    assert not log.in_transaction()
    with log.transaction():
        with log.transaction():
            assert log.in_transaction()
        assert log.in_transaction()
        thread = threading.Thread(target=lambda: from_another_thread.append(log.in_transaction()))
        thread.start()
        thread.join(10)
    assert not log.in_transaction()
    assert from_another_thread == [False]


async def test_follow_calls_the_subscribers_when_another_log_appends(db: str) -> None:
    ours, theirs = open_log(db), open_log(db)
    woken = asyncio.Event()
    ours.subscribe(woken.set)
    following = asyncio.create_task(ours.follow())
    try:
        await asyncio.sleep(0.2)  # listening
        theirs.append("t/x", {"n": 1})
        async with asyncio.timeout(1.0):  # well before any fallback poll
            await woken.wait()
    finally:
        following.cancel()
        ours.close()
        theirs.close()


async def test_follow_tells_only_of_other_logs_appends_and_an_own_append_once_at_its_commit(db: str) -> None:
    ours, theirs = open_log(db), open_log(db)
    heard: list[int] = []
    ours.subscribe(lambda: heard.append(1))
    ours.append("t/x", {"n": 1})  # before the follower's first look: told now, at the commit
    following = asyncio.create_task(ours.follow(interval=0.001))
    try:
        await asyncio.sleep(0.2)  # the follower has looked, and found the append: not news
        ours.append("t/x", {"n": 2})
        theirs.set_position("elsewhere", 1)  # another process commits, but appends nothing
        await asyncio.sleep(0.2)
        assert len(heard) == 2  # each append once: a second telling is a second cycle of every worker
        theirs.append("t/x", {"n": 3})
        async with asyncio.timeout(2.0):
            while len(heard) < 3:
                await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        assert len(heard) == 3
    finally:
        following.cancel()
        ours.close()
        theirs.close()


def test_positions_are_stored_and_survive_reopening(db: str) -> None:
    log = open_log(db)
    log.set_position("worker", 42)
    log.set_position("worker", 43)
    log.close()
    assert open_log(db).position("worker") == 43 and open_log(db).position("other") == 0


def test_a_worker_lease_is_held_by_one_log_and_fences_its_position(db: str) -> None:
    first, second = open_log(db), open_log(db)
    assert first.acquire_lease("summaries", ttl=30) and first.acquire_lease("summaries", ttl=30)
    assert not second.acquire_lease("summaries", ttl=30)
    with pytest.raises(LeaseLost):
        second.set_position("summaries", 5)
    assert second.position("summaries") == 0
    first.set_position("summaries", 5)
    assert second.leases()["summaries"]["owner"] == first.owner
    assert 0 < second.leases()["summaries"]["expires_in"] <= 30
    first.close()  # gives its leases up
    assert second.acquire_lease("summaries", ttl=30)
    assert second.position("summaries") == 5


def test_an_expired_lease_is_taken_over_and_fences_the_old_holder(db: str) -> None:
    first, second = open_log(db), open_log(db)
    assert first.acquire_lease("summaries", ttl=-1)  # already expired: as if its process died
    assert second.acquire_lease("summaries", ttl=30)
    with pytest.raises(LeaseLost):
        first.set_position("summaries", 1)
    second.release_lease("summaries")
    assert first.acquire_lease("summaries", ttl=30)


def test_kv_values_are_shared_and_join_transactions(db: str) -> None:
    log, other = open_log(db), open_log(db)
    log.kv_set("theme", '"dark"')
    log.kv_set("size", "3")
    assert other.kv_get("theme") == '"dark"' and other.kv_items() == [("size", "3"), ("theme", '"dark"')]
    with pytest.raises(RuntimeError), log.transaction():
        log.kv_set("theme", '"light"')
        raise RuntimeError("refused")
    assert other.kv_get("theme") == '"dark"'
    assert log.kv_delete("size") and not log.kv_delete("size") and other.kv_get("size") is None


def test_every_backend_implements_the_interface(db: str) -> None:
    assert isinstance(open_log(db), MessageLogBackend)
