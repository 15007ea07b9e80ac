"""Running generated apps for real: copy, add a hand-written feature, serve, kill, read the log.

Everything here binds to 127.0.0.1 and every process it starts is stopped by the
``servers`` fixture, whatever the test did.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import httpx

from petrock.inject import add_line

from ..support import TLS, free_port, run_petrock

APP_NAME = "relapp"
HOST = "127.0.0.1"
FEATURE_SOURCES = Path(__file__).parent / "feature_sources"


def petrock(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the real petrock CLI in a subprocess, without colours."""
    return run_petrock(*args, cwd=cwd, env={"NO_COLOR": "1"})


def add_feature(app_dir: Path, name: str) -> None:
    """Copy ``feature_sources/NAME`` into the app and register it between features.py's markers."""
    package = app_dir / "src" / APP_NAME
    shutil.copytree(FEATURE_SOURCES / name, package / name, ignore=shutil.ignore_patterns("__pycache__"))
    features = package / "features.py"
    text = features.read_text()
    text = add_line(text, "imports", f"from .{name}.register import register as register_{name}")
    text = add_line(text, "registrations", f"register_{name}(app)")
    features.write_text(text)


@dataclass
class Server:
    """One ``python -m APP serve`` subprocess on a free 127.0.0.1 port."""

    app_dir: Path
    db: Path
    stop_timeout: float = 2.0
    env: dict[str, str] = field(default_factory=dict)
    host: str | None = HOST
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    output_path: Path | None = None
    starts: int = 0
    processes: int = 1  # serve --processes N: a parent keeping N server processes

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def command(self) -> list[str]:
        host = ["--host", self.host] if self.host is not None else []
        return [
            sys.executable, "-m", APP_NAME, "serve", *host, "--port", str(self.port),
            "--db", str(self.db), "--stop-timeout", str(self.stop_timeout), "--processes", str(self.processes),
        ]  # fmt: skip

    def start(self, timeout: float = 30.0) -> Server:
        """Start (or restart) the server and wait until /healthz answers."""
        self.starts += 1
        self.port = free_port()
        self.output_path = self.db.parent / f"server-{self.db.stem}-{self.starts}.log"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(self.app_dir / "src"), os.environ.get("PYTHONPATH", "")]),
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        with self.output_path.open("wb") as output:
            self.process = subprocess.Popen(
                self.command(), cwd=self.app_dir, env=env, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0, verify=TLS) as client:  # one for every look, its CA bundle loaded once
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.output()}")
                try:
                    if client.get(f"{self.url}/healthz").status_code in (200, 503):
                        return self
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server did not answer within {timeout}s:\n{self.output()}")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def terminate(self, timeout: float = 30.0, signum: int = signal.SIGTERM) -> float:
        """Send ``signum`` and wait; returns the seconds it took to exit (SIGKILL and raise after ``timeout``)."""
        assert self.process is not None
        began = time.monotonic()
        self.process.send_signal(signum)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        return time.monotonic() - began

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        if self.running():
            assert self.process is not None
            self.process.kill()
            self.process.wait(10)

    def output(self) -> str:
        return self.output_path.read_text(errors="replace") if self.output_path and self.output_path.exists() else ""


class LoadThreads:
    """Client threads, each running :meth:`_client` until the ``with`` block ends (joined within 15 s).

    Subclasses send their requests in ``_client(number)``, return once ``self._stop`` is
    set, and record what was acknowledged under ``self._lock``.
    """

    def __init__(self, threads: int) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(threads)]

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def _client(self, number: int) -> None:
        raise NotImplementedError


def log_rows(db: Path) -> list[tuple[int, str, str, str]]:
    """Every row of the message log, read with a separate read-only connection."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        return connection.execute("SELECT id, timestamp, type, data FROM messages ORDER BY id").fetchall()


def log_version(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        return connection.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()[0]


def integrity(db: Path) -> str:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; returns whether it held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


@dataclass
class SummaryHistory:
    """What the log says about each post's summary: its requests and their outcomes."""

    posts: dict[str, dict[str, object]] = field(default_factory=dict)  # post id -> create payload
    requests: dict[str, list[str]] = field(default_factory=dict)  # post id -> request ids
    outcomes: dict[str, list[tuple[str, dict[str, object]]]] = field(default_factory=dict)  # post id -> outcomes

    @classmethod
    def read(cls, db: Path, feature: str = "posts") -> SummaryHistory:
        history = cls()
        for _, _, type, data in log_rows(db):
            payload = json.loads(data)
            verb = type.removeprefix(f"{feature}/")
            if verb == "create":
                history.posts[payload["id"]] = payload
            elif verb == "request-summary-generation":
                history.requests.setdefault(payload["item_id"], []).append(payload["request_id"])
            elif verb in ("set-generated-summary", "fail-summary-generation"):
                history.outcomes.setdefault(payload["item_id"], []).append((verb, payload))
        return history

    def settled(self) -> bool:
        """Every post has an outcome."""
        return all(self.outcomes.get(post) for post in self.posts)
