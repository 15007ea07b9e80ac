"""Rebuild: a projection built again from a log of 1,000,000 messages, against raw ``sqlite3``.

Ours is ``app.projections.rebuild()`` on the generated app's core: a projection whose
handlers keep one row per key (with an indexed column) in a store table, three messages
per key as a post's create, summary request and summary are. Each row is validated into
its pydantic command model and handed to its handler; the rows are written to a shadow
table in batches, indexed, counted and swapped in. The baseline does the least a rebuild
must: it reads the same rows from a plain connection, decodes each with ``json.loads``,
keeps the newest item per key and writes them with ``executemany`` into a table it then
indexes. Both read the same file, in the OS cache since it was just written.

Rates are per CPU second of this process (user + sys), not wall time: a rebuild is CPU
bound once the file is cached, and CPU time is far less disturbed by other processes on a
busy machine. On an idle machine the two agree.
"""

from __future__ import annotations

import gc
import json
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bench.common import Result, Row, app_module, main, median

SIZES = {"smoke": (6000, 1), "full": (1_000_000, 1)}  # (messages, rounds)
TYPES = ("bench/create", "bench/request", "bench/settle")


class Create(BaseModel):
    id: str
    title: str
    content: str


class Request(BaseModel):
    id: str
    request_id: str


class Settle(BaseModel):
    id: str
    request_id: str
    summary: str


def fill(path: Path, count: int) -> None:
    """A log of ``count`` messages, three per item, appended through the app's own log."""
    log = app_module("core").MessageLog(path)
    batch: list[tuple[str, str]] = []
    for n in range(count):
        item, kind = f"item-{n // 3}", TYPES[n % 3]
        if kind == "bench/create":
            payload = {"id": item, "title": f"Title {n // 3}", "content": "Some words of content. " * 12}
        elif kind == "bench/request":
            payload = {"id": item, "request_id": f"r{n}"}
        else:
            payload = {"id": item, "request_id": f"r{n - 1}", "summary": "Some words."}
        batch.append((kind, json.dumps(payload)))
        if len(batch) == 50_000:
            log.append_many(batch)
            batch = []
    log.append_many(batch)
    log.close()


def rebuild_ours(path: Path) -> int:
    core = app_module("core")
    items = core.TableSpec("bench-items", columns=(core.Column("title", "folded"),))

    class Items(core.Projection):
        tables = (items,)

        def created(self, command: Create, message: Any) -> None:
            if self.table(items).get(command.id) is not None:
                raise core.CommandRejected("exists")
            self.table(items).put(command.id, {**command.model_dump(), "status": "new", "at": message.timestamp})

        def requested(self, command: Request, message: Any) -> None:
            row = self.table(items).get(command.id)
            self.table(items).put(command.id, {**row, "status": "pending", "request": command.request_id})

        def settled(self, command: Settle, message: Any) -> None:
            row = self.table(items).get(command.id)
            self.table(items).put(command.id, {**row, "status": "ready", "summary": command.summary})

    app = core.App(core.MessageLog(path))
    projection = Items(app.store, "bench-items")
    app.projections.add(projection)
    for type, model, handler in zip(
        TYPES, (Create, Request, Settle), (projection.created, projection.requested, projection.settled), strict=True
    ):
        app.commands.register(type, model, handler)
    try:
        report = app.projections.rebuild()
        return projection.table(items).count() if report.refused == 0 else -1
    finally:
        app.log.close()


def rebuild_raw(path: Path) -> int:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("DROP TABLE IF EXISTS raw_items")
        db.execute("CREATE TABLE raw_items (id TEXT PRIMARY KEY, data TEXT NOT NULL, k_title TEXT)")
        pending: dict[str, dict[str, Any]] = {}

        def flush() -> None:
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO raw_items VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET data = excluded.data",
                ((key, json.dumps(item), item["title"].casefold()) for key, item in pending.items()),
            )
            db.execute("COMMIT")
            pending.clear()

        for _id, _timestamp, type, data in db.execute("SELECT id, timestamp, type, data FROM messages ORDER BY id"):
            payload = json.loads(data)
            key = payload["id"]
            if type == "bench/create":
                pending[key] = {**payload, "status": "new"}
            else:
                pending[key] = {**pending[key], **payload}
            if len(pending) >= 20_000 and type == "bench/settle":  # an item's messages are consecutive: it is done
                flush()
        flush()
        db.execute("CREATE INDEX raw_items_title ON raw_items (k_title)")
        return db.execute("SELECT COUNT(*) FROM raw_items").fetchone()[0]
    finally:
        db.close()


def rss_bytes() -> int:
    """This process's own resident memory: ``RssAnon``, without the pages of files it maps. Ours reads
    the log through a memory map (the OS's page cache, shared and dropped under pressure), which a
    total RSS counts as its own: 260 MB at a million messages."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("RssAnon:"))


def measure(rebuild: Callable[[Path], int], path: Path, items: int) -> tuple[float, float]:
    """CPU seconds taken and peak resident-memory growth in MB while ``rebuild`` runs."""
    gc.collect()
    before = peak = rss_bytes()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.005):
            peak = max(peak, rss_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    began = time.process_time()
    built = rebuild(path)
    elapsed = time.process_time() - began
    done.set()
    sampler.join()
    assert built == items, (built, items)
    return elapsed, (max(peak, rss_bytes()) - before) / 1e6


def run(size: str) -> list[Row]:
    count, rounds = SIZES[size]
    with tempfile.TemporaryDirectory(prefix="bench-rebuild-") as scratch:
        path = Path(scratch) / "app.db"
        fill(path, count)  # also leaves the file in the OS cache
        items = -(-count // 3)  # three messages per item; the last one may have fewer
        ours, raw = [], []
        for _ in range(rounds):
            ours.append(measure(rebuild_ours, path, items))
            raw.append(measure(rebuild_raw, path, items))
    ours_rate = median(count / seconds for seconds, _ in ours)
    raw_rate = median(count / seconds for seconds, _ in raw)
    ratio = median(r[0] / o[0] for o, r in zip(ours, raw, strict=True))
    ours_growth = max(growth for _, growth in ours)
    raw_growth = max(growth for _, growth in raw)
    return [
        Result(f"rebuild of {count:,} messages", ours_rate, raw_rate, "msg/s", ratio, "≥ 0.5×", ratio >= 0.5),
        Result(
            "rebuild rate, absolute (per CPU second)", ours_rate, None, "msg/s", None, "≥ 50,000", ours_rate >= 50_000
        ),
        Result(
            "rebuild memory growth (peak anonymous RSS: mapped files not counted)",
            ours_growth,
            raw_growth,
            "MB",
            None,
            "< 100 MB",
            ours_growth < 100,
        ),
    ]


if __name__ == "__main__":
    main(run)
