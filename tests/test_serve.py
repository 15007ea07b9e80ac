"""``petrock serve``: runs the app's own serve, refuses clearly, stops cleanly on signals."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from petrock.serve import ServeOptions, app_python, exit_code, prepare
from tests.support import free_port, new_app, run_petrock

STOP_TIMEOUT = 3.0


@pytest.fixture
def app_root(tmp_path: Path) -> Path:
    return new_app(tmp_path)


class Server:
    """A ``petrock serve`` subprocess and what it printed."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output = cwd / "serve.out"
        argv = [sys.executable, "-m", "petrock", "serve", "--port", str(self.port), *args]
        argv += ["--stop-timeout", str(STOP_TIMEOUT)]
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)

    def wait_healthy(self, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as client:  # one for every look: each new client loads the CA bundle
            while time.monotonic() < deadline:
                assert self.process.poll() is None, self.text()
                try:
                    response = client.get(f"{self.url}/healthz")
                    if response.status_code == 200:
                        return response.json()
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise AssertionError(f"not healthy within {timeout} s:\n{self.text()}")

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, float]:
        started = time.monotonic()
        self.process.send_signal(sig)
        code = self.process.wait(timeout=STOP_TIMEOUT + 15)
        return code, time.monotonic() - started

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.kill()


def test_refuses_outside_an_app(tmp_path: Path) -> None:
    result = run_petrock("serve", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: no petrock app here ({tmp_path.resolve()}) — run this inside an app made by `petrock new`"
    ]


def test_refuses_a_port_in_use(app_root: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_petrock("serve", "--port", str(port), cwd=app_root)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: port {port} on 127.0.0.1 is already in use — stop what runs there or pass --port N"
    )
    assert not (app_root / "app.db").exists()


def test_refuses_a_database_in_a_missing_directory(app_root: Path) -> None:
    result = run_petrock("serve", "--port", str(free_port()), "--db", "missing/app.db", cwd=app_root)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: database directory {app_root / 'missing'} does not exist — ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_refuses_a_database_path_that_is_a_directory(app_root: Path) -> None:
    (app_root / "data").mkdir()
    result = run_petrock("serve", "--port", str(free_port()), "--db", "data", cwd=app_root)
    assert result.returncode == 1
    assert (
        result.stderr.strip() == f"error: database path {app_root / 'data'} is a directory — pass --db with a file name"
    )


def test_refuses_a_database_another_process_serves(app_root: Path) -> None:
    db = app_root / "app.db"
    with open(f"{db}.lock", "w") as lock:  # what a running app holds
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = run_petrock("serve", "--port", str(free_port()), cwd=app_root)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: database {db} is already served by another process")
    assert not db.exists()


def test_refuses_to_serve_beyond_loopback_without_a_token_before_starting_anything(app_root: Path) -> None:
    env = {"APP_API_TOKEN": ""}
    result = run_petrock("serve", "--host", "0.0.0.0", "--port", str(free_port()), cwd=app_root, env=env)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("error: refusing to serve on 0.0.0.0 without APP_API_TOKEN")
    assert "--insecure" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (app_root / "app.db").exists()
    opened = prepare(ServeOptions(host="0.0.0.0", port=free_port(), insecure=True), start=app_root)
    assert opened.argv[-1] == "--insecure"  # passed on to the app, which refuses the same way without it


def test_refuses_an_unknown_synchronous_mode(app_root: Path) -> None:
    result = run_petrock("serve", "--synchronous", "sometimes", cwd=app_root)
    assert result.returncode == 1
    assert "unknown synchronous mode 'sometimes'" in result.stderr


def test_runs_the_apps_own_serve_with_its_options(app_root: Path) -> None:
    port = free_port()
    command = prepare(ServeOptions(port=port, reload=True, synchronous="full"), start=app_root / "src" / "blog")
    assert command.cwd == app_root
    assert command.db == app_root / "app.db"
    assert command.argv[1:] == [
        "-m", "blog", "serve", "--host", "127.0.0.1", "--port", str(port), "--db", str(app_root / "app.db"),
        "--synchronous", "FULL", "--stop-timeout", "5.0", "--reload",
    ]  # fmt: skip
    assert command.env["PYTHONPATH"].split(":")[0] == str(app_root / "src")


def test_passes_processes_to_the_apps_serve(app_root: Path) -> None:
    command = prepare(ServeOptions(port=free_port(), processes=2), start=app_root)
    assert command.argv[-2:] == ["--processes", "2"]
    assert "--processes" not in prepare(ServeOptions(port=free_port()), start=app_root).argv


def test_passes_the_log_format_to_the_apps_serve_only_when_asked(app_root: Path) -> None:
    command = prepare(ServeOptions(port=free_port(), log_format="json"), start=app_root)
    assert command.argv[-2:] == ["--log-format", "json"]
    assert "--log-format" not in prepare(ServeOptions(port=free_port()), start=app_root).argv
    result = run_petrock("serve", "--port", str(free_port()), "--log-format", "xml", cwd=app_root)
    assert result.returncode == 1 and "unknown log format 'xml'" in result.stderr
    assert not (app_root / "app.db").exists()


@pytest.mark.parametrize("args", [["--processes", "0"], ["--processes", "2", "--reload"]], ids=["zero", "reload"])
def test_refuses_processes_it_cannot_run(app_root: Path, args: list[str]) -> None:
    result = run_petrock("serve", "--port", str(free_port()), *args, cwd=app_root)
    assert result.returncode == 1
    assert result.stderr.startswith("error: --")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (app_root / "app.db").exists()


def test_prefers_the_apps_own_virtualenv(app_root: Path) -> None:
    assert app_python(app_root) == sys.executable
    venv_python = app_root / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text("")
    assert app_python(app_root) == str(venv_python)


def test_a_requested_stop_is_success_and_a_crash_is_not() -> None:
    assert exit_code(0, stopped=False) == 0
    assert exit_code(-signal.SIGTERM, stopped=True) == 0
    assert exit_code(128 + signal.SIGINT, stopped=True) == 0
    assert exit_code(-signal.SIGKILL, stopped=True) == 128 + signal.SIGKILL
    assert exit_code(-signal.SIGTERM, stopped=False) == 128 + signal.SIGTERM
    assert exit_code(1, stopped=True) == 1


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serves_from_a_subdirectory_and_stops_cleanly_on_a_signal(
    app_root: Path, servers: list[Server], sig: int
) -> None:
    server = Server(app_root / "src" / "blog")
    servers.append(server)
    health = server.wait_healthy()
    assert health["status"] == "ok"
    assert httpx.get(f"{server.url}/", timeout=5).status_code == 200

    # While it runs, a second server on the same database is refused before it starts.
    second = run_petrock("serve", "--port", str(free_port()), cwd=app_root)
    assert second.returncode == 1
    assert "already served by another process" in second.stderr

    code, seconds = server.stop(sig)
    assert code == 0, server.text()
    assert seconds < STOP_TIMEOUT + 1
    output = server.text()
    assert f"serving blog on http://127.0.0.1:{server.port}" in output
    assert "Application shutdown complete" in output  # the lifespan stopped the workers and closed the db
    assert (app_root / "app.db").exists()
    with open(app_root / "app.db.lock", "w") as lock:  # released: a new server could take it
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)


@pytest.mark.slow
def test_reload_serves_and_stops_cleanly(app_root: Path, servers: list[Server], tmp_path: Path) -> None:
    server = Server(app_root, "--reload", "--db", str(tmp_path / "reload.db"))
    servers.append(server)
    server.wait_healthy()
    code, seconds = server.stop(signal.SIGTERM)
    assert code == 0, server.text()
    assert seconds < STOP_TIMEOUT + 5
    assert "Started reloader process" in server.text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_killing_petrock_with_sigkill_does_not_orphan_the_app(app_root: Path, servers: list[Server]) -> None:
    server = Server(app_root)
    servers.append(server)
    server.wait_healthy()
    server.kill()  # SIGKILL: petrock cannot pass anything on
    deadline = time.monotonic() + STOP_TIMEOUT + 5
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{server.url}/healthz", timeout=0.5)
        except httpx.TransportError:
            break  # the app stopped with its parent
        time.sleep(0.1)
    else:
        raise AssertionError("the app kept serving after petrock was killed")
    with open(app_root / "app.db.lock", "w") as lock:  # and it lets go of the database, cleanly
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, "the app still holds the database"
                time.sleep(0.1)


def test_an_app_killed_by_a_signal_nobody_sent_through_petrock_is_reported(
    app_root: Path, servers: list[Server]
) -> None:
    """A fresh-user trial: after a kill -9 of the app (as the OOM killer does), petrock exited 137 in silence."""
    server = Server(app_root)
    servers.append(server)
    app_pid = server.wait_healthy()["process"]["pid"]
    os.kill(app_pid, signal.SIGKILL)
    assert server.process.wait(timeout=10) == 128 + signal.SIGKILL
    assert "petrock: blog was killed by SIGKILL" in server.text()


@pytest.mark.slow
def test_serves_with_two_processes_and_stops_them_cleanly(app_root: Path, servers: list[Server]) -> None:
    server = Server(app_root, "--processes", "2")
    servers.append(server)
    server.wait_healthy()
    pids = set()
    deadline = time.monotonic() + 20
    # A new connection for each look (either process may take it), from one client: a new client loads the CA bundle.
    with httpx.Client(base_url=server.url, timeout=5, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        while len(pids) < 2 and time.monotonic() < deadline:
            pids.add(client.get("/healthz").json()["process"]["pid"])
    assert len(pids) == 2

    second = run_petrock("serve", "--port", str(free_port()), cwd=app_root)
    assert second.returncode == 1 and "already served by another process" in second.stderr

    code, seconds = server.stop(signal.SIGTERM)
    assert code == 0, server.text()
    assert seconds < STOP_TIMEOUT + 5
    assert server.text().count("Application shutdown complete") == 2
    with open(app_root / "app.db.lock", "w") as lock:  # released by the whole group
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
