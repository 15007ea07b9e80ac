"""The gate's last look: serve the migrated app for a few seconds and see every migrated job run.

The app is started as its users start it (``python -m APP serve``, on a free loopback
port and a throwaway database) and its ``/healthz`` read until every migrated worker
runs: past ``start`` (the server's start-up reached its line), in or after its first
pass (a hosted job's first pass checks that what it started is alive). A worker that
failed, or that the server's start-up never started although nothing guards its start
line, is a problem. Then the server is
stopped as Ctrl-C stops it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

UP_TIMEOUT = 30.0  # seconds for the server to answer at all (imports, replay)
RUN_TIMEOUT = 15.0  # then for every migrated worker to run once
STOP_TIMEOUT = 15.0


@dataclass(frozen=True)
class Expected:
    """A migrated worker the served app should run."""

    name: str
    hosted: bool
    guarded: str | None  # why its start line may not run (an `if` around it), or None


def serve_and_watch(
    copy: Path, package: str, python: str, env: dict[str, str], expected: list[Expected]
) -> tuple[list[tuple[str, str]], dict[str, Any] | None]:
    """Serve the app at ``copy``; returns problems as (where, what), and what each migrated worker
    reported (None when the app did not serve at all)."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="petrock-serve-") as folder:
        log_path = Path(folder) / "serve.log"
        command = [python, "-m", package, "serve", "--host", "127.0.0.1", "--port", str(port)]
        command += ["--db", str(Path(folder) / "serve.db")]
        with log_path.open("w") as log:
            process = subprocess.Popen(command, cwd=copy, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                workers = _watch(process, port, expected, env)
            finally:
                _stop(process)
        output = log_path.read_text(errors="replace")
    if workers is None:
        last = (output.strip().splitlines() or [f"exit code {process.returncode}"])[-1]
        return [(f"python -m {package} serve", f"the app does not serve: {last}")], None
    return _problems(workers, expected, package), {w: workers[w] for w in (e.name for e in expected) if w in workers}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _watch(
    process: subprocess.Popen[bytes], port: int, expected: list[Expected], env: dict[str, str]
) -> dict[str, dict[str, Any]] | None:
    """Poll ``/healthz`` until each expected worker ran once (or the time is up); None if it never answered."""
    import httpx  # here: a gate kept from the dry run never serves, and httpx is slow to import

    token = (env.get("APP_API_TOKEN") or "").split(",")[0].strip()
    headers = {"authorization": f"Bearer {token}"} if token else {}
    url = f"http://127.0.0.1:{port}/healthz"
    deadline = time.monotonic() + UP_TIMEOUT
    workers: dict[str, dict[str, Any]] | None = None
    settled = None
    # One client for every look: each new one loads the CA bundle, 30 ms of CPU for a plain-HTTP request.
    with httpx.Client(headers=headers, timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return workers
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                body = client.get(url).json()
                workers = {w["name"]: w for w in body["workers"]}
                if settled is None:
                    settled = time.monotonic() + RUN_TIMEOUT
                    deadline = settled
                watched = [workers.get(e.name) for e in expected if e.guarded is None]
                if all(_ran(worker) or _failed(worker) for worker in watched):
                    return workers
            time.sleep(0.2)
    return workers


def _ran(worker: dict[str, Any] | None) -> bool:
    """It started: the server's start-up reached its line (a first pass may take a while: it is running)."""
    return worker is not None and (worker.get("cycles", 0) >= 1 or worker.get("state") == "running")


def _failed(worker: dict[str, Any] | None) -> bool:
    return worker is not None and worker.get("state") == "failed"


def _problems(workers: dict[str, dict[str, Any]], expected: list[Expected], package: str) -> list[tuple[str, str]]:
    problems = []
    where = f"python -m {package} serve"
    for job in expected:
        worker = workers.get(job.name)
        if worker is None:
            problems.append((where, f"worker {job.name!r} is not registered when the app serves"))
        elif _failed(worker):
            problems.append((where, f"worker {job.name!r} failed while serving: {worker.get('last_error')}"))
        elif not _ran(worker) and job.guarded is None:
            state = worker.get("state")
            never = "the server's start-up never reached its run_with_server line"
            problems.append((where, f"worker {job.name!r} did not run while serving (state {state}): {never}"))
        elif job.hosted and _ran(worker):
            hosted = worker.get("hosted") or {}
            if hosted.get("errors") and not any((hosted.get("running") or {}).values()):
                problems.append((where, f"hosted job {job.name!r} died while serving: {hosted['errors'][-1]}"))
    return problems


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop it as Ctrl-C does; kill it if it does not stop in time."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def env_for(copy: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(copy / "src"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1"}
