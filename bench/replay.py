"""Replay: rebuild state from a log of 1,000,000 messages, against raw ``sqlite3`` + ``json.loads``.

Ours is ``App.replay()``: each row is validated into its pydantic command model and handed
to the state handler. The baseline iterates ``SELECT id, timestamp, type, data`` on a plain
connection, decodes each row with ``json.loads`` and applies the same state change. Both
read the same database file, in the OS cache since it was just written. The state is a
dict over 1,000 keys, so any memory growth measured is the replay's own, not the state's:
the peak resident size is sampled while it runs.

Rates are per CPU second of this process (user + sys), not wall time: replay is CPU
bound once the file is cached, and CPU time is far less disturbed by other processes
on a busy machine. On an idle machine the two agree.
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

from pydantic import BaseModel

from bench.common import Result, Row, app_module, main, median

SIZES = {"smoke": (5000, 1), "full": (1_000_000, 1)}  # (messages, rounds)
KEYS = 1000
TYPE = "bench/set"


class SetValue(BaseModel):
    key: str
    value: str


def fill(path: Path, count: int) -> None:
    """A log of ``count`` messages: the app's schema, rows inserted raw in one transaction (fast)."""
    app_module("core").MessageLog(path).close()
    db = sqlite3.connect(path)
    with db:
        db.executemany(
            "INSERT INTO messages (timestamp, type, data) VALUES (?, ?, ?)",
            (
                ("2025-01-01T00:00:00.000000+00:00", TYPE, f'{{"key": "k{n % KEYS}", "value": "value number {n}"}}')
                for n in range(count)
            ),
        )
    db.close()


def replay_ours(path: Path) -> int:
    core = app_module("core")
    state: dict[str, str] = {}

    def apply(command: SetValue, message) -> None:
        state[command.key] = command.value

    app = core.App(core.MessageLog(path))
    app.commands.register(TYPE, SetValue, apply)
    try:
        app.replay()
    finally:
        app.log.close()
    return len(state)


def replay_raw(path: Path) -> int:
    state: dict[str, str] = {}
    db = sqlite3.connect(path)
    try:
        for _id, _timestamp, type, data in db.execute("SELECT id, timestamp, type, data FROM messages ORDER BY id"):
            if type == TYPE:
                payload = json.loads(data)
                state[payload["key"]] = payload["value"]
    finally:
        db.close()
    return len(state)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _page_size()


def _page_size() -> int:
    import os

    return os.sysconf("SC_PAGE_SIZE")


def measure(replay: Callable[[Path], int], path: Path) -> tuple[float, float]:
    """CPU seconds taken and peak resident-memory growth in MB while ``replay`` runs."""
    gc.collect()
    before = rss_bytes()
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.005):
            peak = max(peak, rss_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    began = time.process_time()
    keys = replay(path)
    elapsed = time.process_time() - began
    done.set()
    sampler.join()
    peak = max(peak, rss_bytes())
    assert keys == KEYS or keys < KEYS, keys
    return elapsed, (peak - before) / 1e6


def run(size: str) -> list[Row]:
    count, rounds = SIZES[size]
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as scratch:
        path = Path(scratch) / "app.db"
        fill(path, count)  # also leaves the file in the OS cache
        ours, raw = [], []
        for _ in range(rounds):
            ours.append(measure(replay_ours, path))
            raw.append(measure(replay_raw, path))
    ours_rate = median(count / seconds for seconds, _ in ours)
    raw_rate = median(count / seconds for seconds, _ in raw)
    ratio = median(r[0] / o[0] for o, r in zip(ours, raw, strict=True))
    ours_growth = max(growth for _, growth in ours)
    raw_growth = max(growth for _, growth in raw)
    return [
        Result(f"replay of {count:,} messages", ours_rate, raw_rate, "msg/s", ratio, "≥ 0.7×", ratio >= 0.7),
        Result(
            "replay memory growth (peak RSS)",
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
