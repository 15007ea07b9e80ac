"""``petrock migrate jobs`` on an app made with today's petrock, whose developer started jobs by hand.

The corpus apps keep their old cores; this one has today's (projections, the worker runtime,
``core/hosted.py`` from ``petrock new``). What migrate writes into it must work with that core,
and the core's own background code (the summary worker's calls, ``serve``'s shutdown watchdog)
is no job of the user's: it is neither migrated nor marked.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .support import app_env, git, run_app_tests

TASKS = '''"""Jobs the server starts by hand: a cache warmer and a heartbeat."""

from __future__ import annotations

import os
import threading
import time

from .core import App

WARM_INTERVAL = float(os.environ.get("BLOG_WARM_INTERVAL", "30"))


def warm_cache(app: App) -> None:
    while True:
        app.kv.set("tasks/warmed", app.kv.get("tasks/warmed", 0) + 1)
        time.sleep(WARM_INTERVAL)


def heartbeat(app: App) -> None:
    while True:
        app.kv.set("tasks/beats", app.kv.get("tasks/beats", 0) + 1)
        time.sleep(WARM_INTERVAL / 2)  # settle
        time.sleep(WARM_INTERVAL / 2)


def start_background(app: App) -> None:
    threading.Thread(target=warm_cache, args=(app,), daemon=True).start()
    threading.Thread(target=heartbeat, args=(app,), daemon=True).start()
'''

OPENED = (
    "    app = _open_app(\n"
    "        db, exclusive=True, synchronous=synchronous, stop_timeout=stop_timeout, metrics=metrics, serving=True\n"
    "    )\n"
)


@pytest.mark.slow
def test_jobs_started_by_hand_in_an_app_with_todays_core_migrate_and_its_tests_pass(blog_with_posts: Path) -> None:
    root = blog_with_posts
    (root / "src/blog/tasks.py").write_text(TASKS)
    cli = (root / "src/blog/cli.py").read_text()
    assert OPENED in cli
    cli = cli.replace(OPENED, OPENED + "    start_background(app)\n")
    core_import = re.compile(r"^from \.core\.database_urls import .*\n", re.MULTILINE)  # a top-level import of cli.py
    cli, imported = core_import.subn(r"\g<0>from .tasks import start_background\n", cli, count=1)
    assert imported == 1
    (root / "src/blog/cli.py").write_text(cli)
    git(root, "add", "-A")
    git(root, "-c", "user.name=Test User", "-c", "user.email=test@example.invalid", "commit", "-qm", "Hand jobs")

    command = [sys.executable, "-m", "petrock", "migrate", "jobs", "--json", "--no-verify-tests"]
    env = app_env(root, BLOG_WARM_INTERVAL="0.05")
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600, check=False)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    report = json.loads(result.stdout)
    assert {line["worker"]: line["outcome"] for line in report["jobs"]} == {
        "tasks/warm-cache": "native",
        "tasks/heartbeat": "hosted",
    }  # the summary worker's calls and serve's shutdown watchdog are the core's, not jobs
    assert report["verification"]["ok"] and "serves" in report["verification"]["checks"]
    running = report["verification"]["running"]
    assert running["tasks/warm-cache"]["cycles"] >= 1 and running["tasks/heartbeat"]["state"] == "running"
    assert "could not migrate" not in (root / "src/blog/cli.py").read_text()
    assert git(root, "status", "--porcelain") == ""
    tests = run_app_tests(root, "tests/test_hosted.py", "tests/test_workers.py", "tests/test_app.py", "-q")
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
