"""Shutdown bound: SIGTERM or Ctrl-C ends the server within stop-timeout + 1 s, whatever the workers do."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .harness import Server, add_feature, integrity, log_version

STOP_TIMEOUT = 1.0
SLACK = 1.0
WORKER_NAMES = {
    "work": "hangs-in-work",
    "stop": "hangs-in-stop",
    "cancellation": "ignores-cancellation",
    "thread": "blocks-in-thread",
}
SIGNALS = [pytest.param(signal.SIGTERM, id="SIGTERM"), pytest.param(signal.SIGINT, id="SIGINT")]


def wait_for(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)


def stop_with_stalls(
    app_dir: Path, tmp_path: Path, servers: Callable[..., Server], stalls: str, signum: int
) -> tuple[float, Server]:
    """Serve an app whose ``stalls`` workers misbehave, signal it once they do; returns the seconds to exit."""
    add_feature(app_dir, "stalls")
    markers = tmp_path / "markers"
    markers.mkdir()
    env = {"RELIABILITY_MARKERS": str(markers), "RELIABILITY_STALLS": stalls}
    server = servers(app_dir, tmp_path / "app.db", stop_timeout=STOP_TIMEOUT, env=env).start()
    for kind in ["healthy", *stalls.split(",")]:
        wait_for(markers / f"{WORKER_NAMES.get(kind, kind)}.working")
    try:
        return server.terminate(timeout=STOP_TIMEOUT + SLACK + 1, signum=signum), server
    except subprocess.TimeoutExpired:
        return float("inf"), server  # terminate() has killed it


@pytest.mark.slow
@pytest.mark.parametrize("signum", SIGNALS)
def test_shutdown_is_bounded_and_runs_every_other_stop(
    app_dir: Path, tmp_path: Path, servers: Callable[..., Server], signum: int
) -> None:
    seconds, server = stop_with_stalls(app_dir, tmp_path, servers, "work,stop", signum)
    markers = tmp_path / "markers"
    output = server.output()

    print(f"shutdown with hanging workers ({signal.Signals(signum).name}): exited in {seconds:.2f}s")
    assert seconds <= STOP_TIMEOUT + SLACK, f"took {seconds:.2f}s\n{output}"
    # uvicorn re-raises the signal once it has shut down cleanly, so -signum is a clean exit too.
    assert server.process is not None and server.process.returncode in (0, 1, -signum), output
    assert "Traceback" not in output
    assert (markers / "healthy.stopped").exists()
    assert (markers / "hangs-in-work.stopped").exists()
    assert (markers / "hangs-in-stop.stopping").exists()
    assert "'hangs-in-stop' did not stop within" in output
    assert "'healthy' stopped" in output
    # Closed cleanly: the last connection checkpointed and removed the WAL, and the writer lock is free.
    db = tmp_path / "app.db"
    assert not Path(f"{db}-wal").exists()
    assert integrity(db) == "ok"
    assert log_version(db) == 0
    servers(app_dir, db).start().terminate()


@pytest.mark.slow
@pytest.mark.parametrize("signum", SIGNALS)
@pytest.mark.parametrize("stalls", ["cancellation", "thread"])
def test_shutdown_is_bounded_even_when_a_worker_cannot_be_cancelled(
    app_dir: Path, tmp_path: Path, servers: Callable[..., Server], stalls: str, signum: int
) -> None:
    seconds, server = stop_with_stalls(app_dir, tmp_path, servers, stalls, signum)
    assert seconds <= STOP_TIMEOUT + SLACK, f"took {seconds:.2f}s\n{server.output()}"
    assert (tmp_path / "markers" / "healthy.stopped").exists()
    assert not Path(f"{tmp_path / 'app.db'}-wal").exists()
