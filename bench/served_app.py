"""A generated app served as its users serve it: ``python -m APP serve``, one process, on 127.0.0.1.

The only options passed are the port and the database; the environment is a clean one
(no ``SUMMARY_API_URL``: the summary worker summarizes offline). The server runs in its
own session, so a Ctrl-C in the terminal reaches the benchmark, which then stops the
server (and anything it started) through :func:`served`, whatever interrupted it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import httpx

from bench.common import free_port

STOP_LIMIT = 30.0  # seconds for a graceful stop before SIGKILL (a big in-memory state takes a while to free)


class ServedApp:
    """One server process; :attr:`started_in` is the time from spawning it until ``/healthz`` answered 200."""

    def __init__(self, root: Path, db: str, output: Path) -> None:
        self.package = root.name
        self.db = db
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output = output
        self.env = {"PYTHONPATH": str(root / "src"), "PATH": "/usr/bin:/bin"}
        self.process: subprocess.Popen[bytes] | None = None
        self.started_in = 0.0

    def start(self, limit: float) -> float:
        """Spawn the server and wait (at most ``limit`` seconds) until it is healthy; returns the seconds taken."""
        argv = [sys.executable, "-m", self.package, "serve", "--port", str(self.port), "--db", self.db]
        with self.output.open("ab") as output:
            began = time.perf_counter()
            self.process = subprocess.Popen(
                argv, env=self.env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + limit
        with httpx.Client(timeout=5) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    code = self.process.returncode
                    raise RuntimeError(f"the server exited ({code}) before it was healthy:\n{self.tail()}")
                with contextlib.suppress(httpx.TransportError):
                    # A new connection each time: a refused connect returns at once.
                    if http.get(f"{self.url}/healthz", headers={"Connection": "close"}).status_code == 200:
                        self.started_in = time.perf_counter() - began
                        return self.started_in
                time.sleep(0.02)
        raise RuntimeError(f"the server was not healthy within {limit:.0f} s:\n{self.tail()}")

    def memory_mb(self) -> tuple[float, float]:
        """(resident, peak resident) size of the server process in MB, from /proc."""
        assert self.process is not None
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            fields[name] = value
        return _kb(fields["VmRSS"]) / 1024, _kb(fields["VmHWM"]) / 1024

    def wait_idle(self, limit: float, others: Callable[[], Iterable[int]] = tuple, looks: int = 10) -> float:
        """Wait until the server (and the processes ``others`` names, e.g. the database's) has finished
        what a load left queued: it keeps computing answers for connections wrk has closed. Returns the
        seconds waited.

        Idle means no thread runnable in all but a fifth (rounded down) of ``looks`` looks 30 ms apart:
        8 of 10, or all 4 of 4. Runnable, not CPU time: on a loaded machine a busy server gets little CPU,
        but it stays runnable.
        """
        assert self.process is not None
        began = time.monotonic()
        while time.monotonic() - began < limit:
            pids = [self.process.pid, *others()]
            busy = 0
            for _ in range(looks):
                busy += any_runnable(pids)
                time.sleep(0.03)
            if busy <= looks // 5:
                break
        return time.monotonic() - began

    def stop(self) -> None:
        """SIGTERM (a graceful stop, as systemd does it), then SIGKILL after STOP_LIMIT; the whole session."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_LIMIT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.output.read_text(errors="replace").splitlines()[-lines:])
        return ""


def any_runnable(pids: Iterable[int]) -> bool:
    """Whether a thread of these processes is running or waiting for a CPU (state R in /proc)."""
    for pid in pids:
        for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
            with contextlib.suppress(OSError):
                if stat.read_text().rsplit(")", 1)[1].split()[0] == "R":
                    return True
    return False


def _kb(value: str) -> int:
    return int(value.split()[0])


@contextlib.contextmanager
def served(root: Path, db: str, output: Path, *, limit: float) -> Iterator[ServedApp]:
    """A started server, stopped on the way out (also on Ctrl-C or an error)."""
    server = ServedApp(root, db, output)
    try:
        server.start(limit)
        yield server
    finally:
        server.stop()
