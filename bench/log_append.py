"""Log append throughput: ``MessageLog.append`` (one message per transaction) and
``append_many`` (batched), against raw ``sqlite3`` inserts of the same rows.

Both sides use the same database settings (WAL, ``synchronous=NORMAL``, ``BEGIN
IMMEDIATE`` ... ``COMMIT``), make a timestamp per transaction like the log does, and
write the same JSON text. They alternate round by round, and the ratio is the median of
the rounds' ratios, so a burst of load from elsewhere spoils one round, not the result.

Rates are per CPU second of this process (user + sys, so the SQLite writes' system calls
count), not wall time, which other processes on a busy machine disturb far more. With
``synchronous=NORMAL`` a commit does not wait for the disk, so on an idle machine the
two agree.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench.common import Result, Row, app_module, main, median

SIZES = {"smoke": (200, 2000, 1), "full": (2000, 20000, 11)}  # (single rows, batched rows, rounds)
BATCH = 100
TYPE = "notes/add"
INSERT = "INSERT INTO messages (timestamp, type, data, version) VALUES (?, ?, ?, ?)"  # the log's own row


def payloads(count: int) -> list[str]:
    return [json.dumps({"id": f"note-{n}", "text": f"note number {n}, with a little text"}) for n in range(count)]


def raw_connection(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection set up the way the log sets up its own."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY AUTOINCREMENT, "
        "timestamp TEXT NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL, version INTEGER NOT NULL DEFAULT 1)"
    )
    return db


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def raw_single(db: sqlite3.Connection, rows: list[str]) -> None:
    for data in rows:
        db.execute("BEGIN IMMEDIATE")
        db.execute(INSERT, (now(), TYPE, data, 1))
        db.execute("COMMIT")


def raw_batched(db: sqlite3.Connection, rows: list[str]) -> None:
    for start in range(0, len(rows), BATCH):
        timestamp = now()
        db.execute("BEGIN IMMEDIATE")
        db.executemany(INSERT, [(timestamp, TYPE, data, 1) for data in rows[start : start + BATCH]])
        db.execute("COMMIT")


def ours_single(log, rows: list[str]) -> None:
    for data in rows:
        log.append(TYPE, data)


def ours_batched(log, rows: list[str]) -> None:
    for start in range(0, len(rows), BATCH):
        log.append_many([(TYPE, data) for data in rows[start : start + BATCH]])


def throughput(write: Callable[[list[str]], None], rows: list[str]) -> float:
    """Messages per CPU second of this process (see the module docstring)."""
    began = time.process_time()
    write(rows)
    return len(rows) / (time.process_time() - began)


def compare(name: str, ours: Callable, raw: Callable, count: int, rounds: int) -> Result:
    core = app_module("core")
    rows = payloads(count)
    with tempfile.TemporaryDirectory(prefix="bench-append-") as scratch:
        log = core.MessageLog(Path(scratch) / "ours.db")
        db = raw_connection(Path(scratch) / "raw.db")
        try:
            ours_rates, raw_rates = [], []
            for _ in range(rounds):
                ours_rates.append(throughput(lambda r: ours(log, r), rows))
                raw_rates.append(throughput(lambda r: raw(db, r), rows))
        finally:
            log.close()
            db.close()
    ratio = median(o / r for o, r in zip(ours_rates, raw_rates, strict=True))
    return Result(
        name=name,
        ours=median(ours_rates),
        baseline=median(raw_rates),
        unit="msg/s",
        ratio=ratio,
        target="≥ 0.8×",
        met=ratio >= 0.8,
    )


def run(size: str) -> list[Row]:
    single, batched, rounds = SIZES[size]
    return [
        compare(f"log append, 1 per transaction, {single} msgs", ours_single, raw_single, single, rounds),
        compare(f"log append, batches of {BATCH}, {batched} msgs", ours_batched, raw_batched, batched, rounds),
    ]


if __name__ == "__main__":
    main(run)
