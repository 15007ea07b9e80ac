"""Helpers the tests share: run the real CLI, make apps, serve them on a free loopback port."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import certifi
import httpx

REPO = Path(__file__).resolve().parent.parent
_APP_CACHE: dict[str, Path] = {}
# httpx loads the CA bundle into every new client (30 ms of CPU, for plain HTTP to 127.0.0.1 too): a helper that
# polls a server with a new client each look passes ``verify=TLS``, httpx's default context, made once.
TLS = ssl.create_default_context(cafile=certifi.where())


def run_petrock(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``petrock ARGS`` as a real subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "petrock", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,  # no terminal, as in CI: petrock must never wait for an answer
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def petrock_in(root: Path, *args: str) -> subprocess.CompletedProcess:
    """``petrock ARGS`` run inside ``root``."""
    return run_petrock(*args, cwd=root)


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


def app_files(root: Path) -> dict[str, bytes]:
    """Every file of the app except git's and Python's caches."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and ".git" not in path.parts and "__pycache__" not in path.parts
    }


def git_snapshot(root: Path) -> tuple[str, str, dict[str, bytes]]:
    """HEAD, the git status and every file: equal snapshots mean nothing was written or committed."""
    return git(root, "rev-parse", "HEAD"), git(root, "status", "--porcelain"), app_files(root)


def refused_without_a_trace(root: Path, *args: str) -> str:
    """Run ``petrock ARGS`` in ``root``; assert it refused in one ``error:`` line, wrote and
    committed nothing; return the message."""
    before = git_snapshot(root)
    result = petrock_in(root, *args)
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert git_snapshot(root) == before
    return result.stderr


def run_app_tests(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The generated app's own pytest, run in ``root`` with its ``src/`` importable (plus ``env``)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=root,
        env=app_env(root, **(env or {})),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def run_in_app(root: Path, script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a Python ``script`` (``python -c``) inside a generated app, with its ``src`` on the path."""
    command = [sys.executable, "-c", script, *args]
    return subprocess.run(
        command, cwd=root, env=app_env(root), capture_output=True, text=True, timeout=timeout, check=False
    )


def app_env(root: Path, **extra: str) -> dict[str, str]:
    """Environment to run a generated app from its source tree with this interpreter."""
    path = os.pathsep.join(filter(None, [str(root / "src"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def new_app(parent: Path, name: str = "blog") -> Path:
    """A freshly generated app (with its git history) at ``parent/name``.

    Generating takes about a second (copier), so each name is generated once per
    test process and copied.
    """
    if name not in _APP_CACHE:
        cache = Path(tempfile.mkdtemp(prefix="petrock-app-cache-"))
        result = run_petrock("new", name, cwd=cache)
        assert result.returncode == 0, result.stderr
        _APP_CACHE[name] = cache / name
    target = parent / name
    shutil.copytree(_APP_CACHE[name], target, symlinks=True)
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tree_snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (the .git folder included), to prove nothing was written."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


class Server:
    """A generated app served by its own ``python -m APP serve`` in a subprocess.

    By default from its source tree (``src/`` on the path, run in ``root``); with ``python``
    (an interpreter the app is installed in) and ``cwd``, as an installed package instead.
    """

    def __init__(
        self,
        root: Path,
        db: Path | str,
        *,
        stop_timeout: float = 5.0,
        env: dict[str, str] | None = None,
        python: str | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.root = root
        self.db = db
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        package = tomllib.loads((root / ".petrock.toml").read_text())["project_name"]
        self.command = [
            python or sys.executable, "-m", package, "serve", "--port", str(self.port), "--db", str(db),
            "--stop-timeout", str(stop_timeout),
        ]  # fmt: skip
        self.env = {**os.environ, **(env or {})} if python else app_env(root, **(env or {}))
        self.cwd = cwd or root
        self.process: subprocess.Popen[str] | None = None
        # A database URL (PostgreSQL) is shared by several servers: each logs beside the app.
        self.log_path = db.with_suffix(".serve.log") if isinstance(db, Path) else root / f"serve-{self.port}.log"

    def start(self, timeout: float = 20.0) -> Server:
        self._log = self.log_path.open("a")
        self.process = subprocess.Popen(self.command, cwd=self.cwd, env=self.env, stdout=self._log, stderr=self._log)
        deadline = time.monotonic() + timeout
        # One client for every look: each new one loads the CA bundle (30 ms of CPU), and a server that starts
        # in two seconds is looked at forty times.
        with httpx.Client(timeout=1, verify=TLS) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(f"server exited with {self.process.returncode}:\n{self.output()}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.url}/healthz").status_code in (200, 503):
                        return self
                time.sleep(0.05)
        self.kill()
        raise AssertionError(f"server did not come up:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self._log.close()
        return code

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        with contextlib.suppress(AttributeError):
            self._log.close()


@contextlib.contextmanager
def serving(root: Path, db: Path | str, **kwargs: object) -> Iterator[Server]:
    server = Server(root, db, **kwargs).start()  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.kill()


def fake_summary_api_module() -> ModuleType:
    """The generated apps' fake OpenAI-compatible summary server (templates/project/tests/fake_summary_api.py)."""
    if "fake_summary_api" not in sys.modules:
        source = REPO / "templates" / "project" / "tests" / "fake_summary_api.py"
        spec = importlib.util.spec_from_file_location("fake_summary_api", source)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
    return sys.modules["fake_summary_api"]
