"""The app a Python user would write instead: FastAPI + SQLAlchemy 2 (bench/peer_app.py) beside ours.

Both serve the posts feature with the same fields on the same server stack (uvloop +
httptools, ``serve``'s default) with the access log on, one process each. Each round
serves one and then the other on a fresh database: ``wrk -c32`` creates posts for the run's
seconds (ours: ``POST /commands`` ``posts/create``; the peer: ``POST /posts/``), then, once
our summary worker has caught up, reads the first page of 20 (ours:
``GET /queries/posts/list?limit=20``, which also counts the total; the peer:
``GET /posts/?limit=20``) from the thousands of posts just created, newest first.
Ours also runs its summary worker, which appends two more messages per post; the peer has
none.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.common import Result, Row, Skipped, main, median
from bench.http_commands import BODY, CONNECTIONS, catch_up_time, cpu_seconds, serve, stop, wrk

SIZES = {"smoke": (1, 1, 128), "full": (10, 2, None)}  # (seconds of load per run, rounds, requests: stop at that many)
PEER_BODY = json.dumps(json.loads(BODY)["payload"])
PAGE = 20
PATHS = {
    "ours": ("/commands", BODY, f"/queries/posts/list?limit={PAGE}"),
    "peer": ("/posts/", PEER_BODY, f"/posts/?limit={PAGE}"),
}


def post_script(body: str) -> str:
    return f"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{body}'
"""


def measure(
    kind: str, db: Path, seconds: int, scratch: Path, quota: int | None = None
) -> dict[str, tuple[float, float, float]]:
    """(req/s, p99 ms, server CPU µs per request) of creating posts, then of reading the first page, on one fresh
    server. Our CPU for creating includes what the summary worker did meanwhile (its catch-up after is not counted)."""
    create_path, body, list_path = PATHS[kind]
    script = scratch / f"{kind}.lua"
    script.write_text(post_script(body))
    process, url = serve(kind, db)
    try:
        created = loaded(process.pid, lambda: wrk(url, seconds, script, create_path, quota))
        if kind == "ours":
            catch_up_time(db)  # the summary worker's appends would otherwise compete with the reads
        page = httpx.get(f"{url}{list_path}", timeout=10).json()
        items = page["items"] if kind == "ours" else page
        if len(items) != PAGE:
            raise RuntimeError(f"{kind}: the list gave {len(items)} items, not {PAGE}")
        listed = loaded(process.pid, lambda: wrk(url, seconds, None, list_path, quota))
    finally:
        stop(process)
    return {"create": created, "list": listed}


def loaded(pid: int, load: Callable[[], tuple[float, float, int]]) -> tuple[float, float, float]:
    """(req/s, p99 ms, CPU µs per request) of the server process ``pid`` under ``load``."""
    before = cpu_seconds(pid)
    rate, p99, requests = load()
    return rate, p99, (cpu_seconds(pid) - before) / requests * 1e6


def run(size: str) -> list[Row]:
    if shutil.which("wrk") is None:
        return [Skipped("FastAPI + SQLAlchemy peer", "wrk is not installed (apt-get install wrk)")]
    try:
        import fastapi  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError:
        return [Skipped("FastAPI + SQLAlchemy peer", "fastapi or sqlalchemy missing: pip install -e '.[bench]'")]
    seconds, rounds, quota = SIZES[size]
    results: dict[str, list[dict[str, tuple[float, float, float]]]] = {"ours": [], "peer": []}
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as scratch:
        for round in range(rounds):
            for kind, loads in results.items():
                db = Path(scratch) / f"{kind}-{round}.db"
                loads.append(measure(kind, db, seconds, Path(scratch), quota))
    table: list[Row] = []
    targets = {"create": 3.0, "list": 1.5}
    for load, target in targets.items():
        ours_rate = median(r[load][0] for r in results["ours"])
        peer_rate = median(r[load][0] for r in results["peer"])
        ours_p99 = median(r[load][1] for r in results["ours"])
        peer_p99 = median(r[load][1] for r in results["peer"])
        what = "create a post" if load == "create" else f"list the newest {PAGE} posts"
        name = f"{what}, {CONNECTIONS} connections, vs FastAPI + SQLAlchemy"
        note = (
            "peer = bench/peer_app.py as FastAPI's SQL tutorial writes it (sync def, a Session per request, "
            "SQLite in WAL); both on uvloop + httptools"
            if load == "create"
            else ""
        )
        table.append(
            Result(
                f"{name}: throughput",
                ours_rate,
                peer_rate,
                "req/s",
                ours_rate / peer_rate,
                f"≥ {target:g}×",
                ours_rate >= target * peer_rate,
                note,
            )
        )
        table.append(Result(f"{name}: p99 latency", ours_p99, peer_p99, "ms", ours_p99 / peer_p99, "—", None))
        ours_cpu = median(r[load][2] for r in results["ours"])
        peer_cpu = median(r[load][2] for r in results["peer"])
        table.append(
            Result(
                f"{name}: server CPU per request",
                ours_cpu,
                peer_cpu,
                "µs",
                ours_cpu / peer_cpu,
                "—",
                None,
                "steadier than req/s on a busy machine; ours includes its summary worker's work during the load"
                if load == "create"
                else "",
            )
        )
    return table


if __name__ == "__main__":
    main(run)
