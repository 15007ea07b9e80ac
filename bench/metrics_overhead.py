"""What counting for ``/metrics`` costs a request: ``POST /commands`` handled with metrics and without.

The generated app with its ``posts`` feature answers ``POST /commands`` in this process,
called straight through ASGI (no sockets, no HTTP parsing), once with its metrics
(``Metrics``) and once with ``NoMetrics`` (``serve --no-metrics``): everything else,
the request ids included, is the same. Without the server's own work around each
request, the share metrics take here is larger than under real load, so this bounds
that share from above; ``bench.http_commands`` measures the real thing beside it.

Both are measured in CPU time of this process, alternating every few dozen requests
(a burst of load from elsewhere then falls on both alike), and the ratio is the median
of the rounds' ratios, so other processes on a busy machine disturb it little. It runs
twice, in a fresh interpreter each: as one process, and as a process of ``serve
--processes N`` (``PROMETHEUS_MULTIPROC_DIR`` set, so every count is written to a file).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, Result, Row, main, median
from bench.http_commands import APP, BODY, posts_app

SIZES = {"smoke": (100, 2), "full": (2000, 15)}  # (requests per round and side, rounds)
BLOCK = 25  # requests in a row on one side before the other side's turn
MODES = ("one process", "serve --processes N")


def measure_here(requests: int, rounds: int) -> list[tuple[float, float]]:
    """Per round, (CPU µs per request with metrics, without), in this interpreter."""
    return asyncio.run(_rounds(requests, rounds))


async def _rounds(requests: int, rounds: int) -> list[tuple[float, float]]:
    main_module = __import__(f"{APP}.main", fromlist=["build_app"])
    http = __import__(f"{APP}.core.http", fromlist=["create_http_app"])
    scratch = Path(tempfile.mkdtemp(prefix="bench-metrics-"))
    servers = {}
    for metrics in (True, False):
        app = main_module.build_app(str(scratch / f"{metrics}.db"), metrics=metrics)
        app.prepare()
        servers[metrics] = http.create_http_app(app, start_workers=False)
    for server in servers.values():  # warm up: imports, caches, the labelled children
        await _post(server, 50)
    results = []
    for _ in range(rounds):
        on = off = 0.0
        for _ in range(max(1, requests // BLOCK)):
            on += await _post(servers[True], BLOCK)
            off += await _post(servers[False], BLOCK)
        results.append((on, off))
    return [(on / max(1, requests // BLOCK), off / max(1, requests // BLOCK)) for on, off in results]


async def _post(server: Any, requests: int) -> float:
    """CPU µs per ``POST /commands`` answered by ``server`` (an ASGI app)."""
    body = BODY.encode()
    headers = [(b"host", b"127.0.0.1:8080"), (b"content-type", b"application/json")]
    headers.append((b"content-length", str(len(body)).encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http"}
    scope |= {"path": "/commands", "raw_path": b"/commands", "query_string": b"", "root_path": ""}
    scope |= {"client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080)}
    statuses = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    began = time.process_time()
    for _ in range(requests):
        await server({**scope, "headers": list(headers)}, receive, send)
    spent = time.process_time() - began
    if set(statuses) != {201}:
        raise RuntimeError(f"POST /commands answered {sorted(set(statuses))}, not only 201")
    return spent / requests * 1e6


def measure_in_child(mode: str, requests: int, rounds: int) -> list[tuple[float, float]]:
    """:func:`measure_here` in a fresh interpreter: prometheus_client picks its mode when imported."""
    with tempfile.TemporaryDirectory(prefix="bench-multiproc-") as directory:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(posts_app() / "src"), str(REPO)])}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if mode == "serve --processes N":
            env["PROMETHEUS_MULTIPROC_DIR"] = directory
        code = f"import json, bench.metrics_overhead as m; print(json.dumps(m.measure_here({requests}, {rounds})))"
        output = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
        ).stdout
    return [tuple(pair) for pair in json.loads(output)]


def run(size: str) -> list[Row]:
    requests, rounds = SIZES[size]
    rows: list[Row] = []
    for mode in MODES:
        results = measure_in_child(mode, requests, rounds)
        ratio = median(on / off for on, off in results)
        on, off = median(on for on, _ in results), median(off for _, off in results)
        rows.append(
            Result(
                f"POST /commands in-process, CPU per request, metrics vs none ({mode})",
                on,
                off,
                "µs",
                ratio,
                "—",
                None,
                "ASGI calls without a server: an upper bound of the share under real load, whose target"
                " (≥ 0.95× throughput) bench.http_commands checks"
                if mode == MODES[0]
                else "",
            )
        )
    return rows


if __name__ == "__main__":
    main(run)
