"""``petrock selftest``: the whole loop, in a temporary directory, the way a user runs it.

It runs the real commands as child processes (``petrock new``, ``petrock feature
add``, the app's own tests, ``petrock serve``), talks to the served app over
HTTP on a free loopback port, and stops it with SIGTERM. Each step is timed and
passes or fails on its own; after a failure the remaining steps are skipped,
except that a started server is always stopped.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

# The guide's app name, unless this environment already has a module of that name (a `blog`
# installed while following the guide): then the first free alternative.
APP_NAMES = ("blog", "selftest_blog", *(f"selftest_blog_{n}" for n in range(2, 10)))
FEATURE = "posts"
STOP_TIMEOUT = 5.0
# The summary API settings a user may have exported: the self-test uses the local summarizer.
SUMMARY_SETTINGS_PREFIX = "SUMMARY_"


class StepFailed(Exception):
    """A step did not do what it should; the message says what happened instead."""


@dataclass
class StepResult:
    name: str
    status: str  # "pass", "fail" or "skip"
    seconds: float = 0.0
    detail: str = ""


@dataclass
class Report:
    """What the self-test did: every step, and where to look when one failed."""

    workdir: Path
    steps: list[StepResult] = field(default_factory=list)
    server_log: Path | None = None

    @property
    def passed(self) -> bool:
        return bool(self.steps) and all(step.status == "pass" for step in self.steps)

    @property
    def seconds(self) -> float:
        return sum(step.seconds for step in self.steps)


def free_app_name() -> str:
    """An app name that no installed or standard module shadows, so step 1 cannot fail on it."""
    from petrock.errors import InvalidName
    from petrock.names import validate_project_name

    for name in APP_NAMES:
        try:
            return validate_project_name(name)
        except InvalidName:
            continue
    raise StepFailed(f"every candidate app name is taken by an installed module: {', '.join(APP_NAMES)}")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class Selftest:
    """The steps, in order, sharing the app directory and the server they start."""

    def __init__(self, workdir: Path, *, on_step: Callable[[StepResult], None] = lambda _: None) -> None:
        self.workdir = workdir
        self.app = free_app_name()
        self.root = workdir / self.app
        self.db = workdir / "selftest.db"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.report = Report(workdir, server_log=workdir / "serve.log")
        self.on_step = on_step
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(SUMMARY_SETTINGS_PREFIX)}
        self.server: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.url, timeout=10.0)
        self.post_title = "Hello from petrock selftest"
        self.created_at = 0.0

    def steps(self) -> list[tuple[str, Callable[[], str]]]:
        return [
            (f"petrock new {self.app}", self.new_app),
            (f"petrock feature add {FEATURE}", self.add_feature),
            ("the app's own tests", self.app_tests),
            ("petrock serve (healthy)", self.serve),
            ("GET / (index page)", self.index_page),
            (f"POST {FEATURE}/create (valid)", self.create_valid),
            (f"POST {FEATURE}/create (invalid)", self.create_invalid),
            (f"GET /queries/{FEATURE}/list", self.list_posts),
            ("worker writes the summary", self.wait_for_summary),
            ("SIGTERM: clean stop", self.stop_server),
            ("restart: state kept", self.restart_keeps_state),
        ]

    def run(self) -> Report:
        failed = False
        try:
            for name, step in self.steps():
                if failed:
                    self._record(StepResult(name, "skip"))
                    continue
                started = time.monotonic()
                try:
                    detail, status = step(), "pass"
                except StepFailed as exc:
                    detail, status, failed = str(exc), "fail", True
                except (OSError, httpx.HTTPError, subprocess.SubprocessError, ValueError, KeyError) as exc:
                    detail, status, failed = f"{type(exc).__name__}: {exc}", "fail", True
                self._record(StepResult(name, status, time.monotonic() - started, detail))
        finally:
            if self.server is not None and self.server.poll() is None:
                self.server.kill()
                self.server.wait()
            self.http.close()
        return self.report

    def _record(self, result: StepResult) -> None:
        self.report.steps.append(result)
        self.on_step(result)

    # --- the steps: each returns a short detail or raises StepFailed ---

    def new_app(self) -> str:
        self._petrock("new", self.app, cwd=self.workdir)
        return str(self.root)

    def add_feature(self) -> str:
        self._petrock("feature", "add", FEATURE, cwd=self.root)
        return f"src/{self.app}/{FEATURE}/"

    def app_tests(self) -> str:
        if importlib.util.find_spec("pytest") is None:
            raise StepFailed("pytest is not installed: pip install pytest (or petrock[test])")
        env = dict(
            self.env, PYTHONPATH=os.pathsep.join(filter(None, [str(self.root / "src"), self.env.get("PYTHONPATH")]))
        )
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        summary = _last_line(result.stdout)
        if result.returncode != 0:
            raise StepFailed(f"pytest exited {result.returncode}: {summary}")
        return summary

    def serve(self) -> str:
        self._start_server()
        health = self._wait_healthy()
        workers = ", ".join(worker["name"] for worker in health["workers"]) or "none"
        return f"{self.url} (workers: {workers})"

    def index_page(self) -> str:
        response = self.http.get("/")
        _expect(response, 200)
        if "text/html" not in response.headers.get("content-type", ""):
            raise StepFailed(f"content-type is {response.headers.get('content-type')!r}, not HTML")
        return f"{len(response.content)} bytes of HTML"

    def create_valid(self) -> str:
        payload = {"title": self.post_title, "content": "petrock selftest wrote this post. " * 8}
        self.created_at = time.monotonic()
        response = self._command({"type": f"{FEATURE}/create", "payload": payload})
        if not 200 <= response.status_code < 300:
            raise StepFailed(f"HTTP {response.status_code}: {response.text[:200]}")
        return f"HTTP {response.status_code}, message {response.json().get('id')}"

    def create_invalid(self) -> str:
        before = self._log_version()
        response = self._command({"type": f"{FEATURE}/create", "payload": {"title": "", "content": ""}})
        _expect(response, 400)
        after = self._log_version()
        if after != before:
            raise StepFailed(f"the log grew from {before} to {after} messages on a refused command")
        fields = sorted({".".join(error["loc"]) for error in response.json().get("fields", [])})
        return f"HTTP 400 ({', '.join(fields)}), nothing appended"

    def list_posts(self) -> str:
        items = self._list()
        if not any(item.get("title") == self.post_title for item in items):
            raise StepFailed(f"the new post is not in the list: {items!r:.200}")
        return f"{len(items)} item(s)"

    def wait_for_summary(self, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            post = next((item for item in self._list() if item.get("title") == self.post_title), None)
            if post and post.get("summary"):
                latency = (time.monotonic() - self.created_at) * 1000
                return f"{latency:.0f} ms after the create: {_shorten(post['summary'], 40)!r}"
            time.sleep(0.05)
        raise StepFailed(f"no summary after {timeout:.0f} s")

    def stop_server(self) -> str:
        assert self.server is not None
        started = time.monotonic()
        self.server.send_signal(signal.SIGTERM)
        try:
            code = self.server.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise StepFailed(f"still running {STOP_TIMEOUT:.0f} s after SIGTERM (the stop timeout)") from None
        seconds = time.monotonic() - started
        if code != 0:
            raise StepFailed(f"exited {code} (expected 0); see {self.report.server_log}")
        return f"exited 0 in {seconds:.2f} s (limit {STOP_TIMEOUT:.0f} s)"

    def restart_keeps_state(self) -> str:
        self._start_server()
        version = self._wait_healthy()["version"]
        post = next((item for item in self._list() if item.get("title") == self.post_title), None)
        if post is None or not post.get("summary"):
            raise StepFailed(f"after a restart the post or its summary is missing: {post!r:.200}")
        time.sleep(0.5)  # give the worker time to (wrongly) repeat itself
        if self._log_version() != version:
            raise StepFailed("the worker appended messages again after a restart (it repeated side effects)")
        self.stop_server()
        return f"{version} messages kept, nothing repeated"

    # --- helpers ---

    def _petrock(self, *args: str, cwd: Path) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "petrock", *args],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise StepFailed(f"exit {result.returncode}: {_last_line(result.stderr or result.stdout)}")

    def _start_server(self) -> None:
        argv = [sys.executable, "-m", "petrock", "serve", "--port", str(self.port), "--db", str(self.db)]
        argv += ["--stop-timeout", str(STOP_TIMEOUT)]
        assert self.report.server_log is not None
        with open(self.report.server_log, "ab") as log:
            self.server = subprocess.Popen(argv, cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def _wait_healthy(self, timeout: float = 30.0) -> dict[str, Any]:
        assert self.server is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise StepFailed(f"serve exited {self.server.returncode}: {_last_line(self.report.server_log)}")
            try:
                response = self.http.get("/healthz", timeout=1.0)
                if response.status_code == 200:
                    return response.json()
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise StepFailed(f"/healthz not 200 within {timeout:.0f} s")

    def _command(self, envelope: dict[str, Any]) -> httpx.Response:
        return self.http.post("/commands", json=envelope)

    def _list(self) -> list[dict[str, Any]]:
        response = self.http.get(f"/queries/{FEATURE}/list")
        _expect(response, 200)
        body = response.json()
        items = body.get("items", body) if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise StepFailed(f"unexpected list answer: {body!r:.200}")
        return items

    def _log_version(self) -> int:
        return int(self.http.get("/healthz").json()["version"])


def _expect(response: httpx.Response, status: int) -> None:
    if response.status_code != status:
        raise StepFailed(f"HTTP {response.status_code} (expected {status}): {response.text[:200]}")


def _last_line(text: str | Path | None) -> str:
    if isinstance(text, Path):
        text = text.read_text(errors="replace") if text.exists() else ""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
