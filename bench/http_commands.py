"""``POST /commands`` throughput and p99 latency under 32 concurrent connections.

Load comes from ``wrk`` (Debian package ``wrk``) in its own process; a Python client on
the same two cores would saturate before the server does. Each server (see
``bench/http_server.py``) runs in its own uvicorn process on a free 127.0.0.1 port; the
two take turns, round by round. Without ``wrk`` this benchmark prints a skip line.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import REPO, Result, Row, Skipped, free_port, generated_app, main, median

SIZES = {"smoke": (1, 1), "full": (5, 2)}  # (seconds per run, rounds)
CONNECTIONS = 32
NAME = f"POST /commands, {CONNECTIONS} connections"
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"type": "notes/add", "payload": {"id": "note-1", "text": "a short note to add"}}'
"""
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def serve(kind: str, db: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start one server and wait until it answers; returns the process and its base URL."""
    port = free_port()
    app_src = str(generated_app() / "src")
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.http_server", kind, str(port), str(db), app_src],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.05)
        if process.poll() is not None:
            break
    process.terminate()
    raise RuntimeError(f"the {kind} server did not start")


def load(url: str, seconds: int, script: Path) -> tuple[float, float]:
    """Run wrk against ``url``/commands; returns (requests per second, p99 in ms)."""
    output = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(script), f"{url}/commands"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"wrk saw failed requests:\n{output}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    value, unit = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)$", output, re.MULTILINE).groups()
    return rate, float(value) * UNITS[unit]


def run(size: str) -> list[Row]:
    if shutil.which("wrk") is None:
        return [Skipped(NAME, "wrk not installed (apt-get install wrk)")]
    seconds, rounds = SIZES[size]
    results: dict[str, list[tuple[float, float]]] = {"ours": [], "baseline": []}
    with tempfile.TemporaryDirectory(prefix="bench-http-") as scratch:
        script = Path(scratch) / "post.lua"
        script.write_text(WRK_SCRIPT)
        for round in range(rounds):
            for kind in ("ours", "baseline"):
                process, url = serve(kind, Path(scratch) / f"{kind}-{round}.db")
                try:
                    results[kind].append(load(url, seconds, script))
                finally:
                    process.terminate()
                    process.wait(timeout=10)
    ours_rate = median(rate for rate, _ in results["ours"])
    base_rate = median(rate for rate, _ in results["baseline"])
    ours_p99 = median(p99 for _, p99 in results["ours"])
    base_p99 = median(p99 for _, p99 in results["baseline"])
    rate_met, p99_met = ours_rate >= 0.6 * base_rate, ours_p99 <= 2 * base_p99
    return [
        Result(f"{NAME}: throughput", ours_rate, base_rate, "req/s", ours_rate / base_rate, "≥ 0.6×", rate_met),
        Result(f"{NAME}: p99 latency", ours_p99, base_p99, "ms", ours_p99 / base_p99, "≤ 2×", p99_met),
    ]


if __name__ == "__main__":
    main(run)
