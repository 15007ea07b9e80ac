"""The README's Quick start, on a fresh machine: HOME an empty folder, git knowing no one, a bare PATH.

`make demo` runs as written until it serves (then Ctrl-C, as its user would), and the
install step of `make test` builds a new .venv in which a test that commits with git passes.
Both are slow (a real pip install, a real server); each is bounded by timeouts. They sit in
their own folder so the suite collects, and starts, them early: the pip install waits on the
network for minutes while the other worker runs the rest.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ..support import REPO, free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed"),
]

BARE_PATH = "/usr/local/bin:/usr/bin:/bin"  # a fresh Debian root shell's PATH, give or take sbin


def fresh_machine(home: Path) -> dict[str, str]:
    """What a new user's shell has: an empty HOME, no git identity (nor the suite's), a bare PATH."""
    home.mkdir()
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "PYTEST_", "XDG_", "VIRTUAL_ENV"))}
    kept.pop("EMAIL", None)
    kept.pop("PYTHONPATH", None)
    return kept | {"HOME": str(home), "PATH": BARE_PATH}


def test_make_demo_serves_the_app_on_a_fresh_machine_until_ctrl_c(tmp_path: Path) -> None:
    env = fresh_machine(tmp_path / "home")
    port = free_port()
    log = tmp_path / "demo.log"
    venv = Path(sys.prefix)  # the suite's own .venv: the install step of `make test` below builds a new one
    command = ["make", "--no-print-directory", "-C", str(REPO), "-o", str(venv / ".installed"), "demo"]
    command += [f"VENV={venv}", f"DEMO_DIR={tmp_path}", f"PORT={port}"]
    with log.open("w") as output:
        demo = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        page = _wait_for_page(f"http://127.0.0.1:{port}/posts", demo, log, timeout=120)
        assert page.status_code == 200 and "Posts" in page.text
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole foreground group
        demo.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(demo.pid, signal.SIGKILL)
    text = log.read_text()
    assert f"demo app in {tmp_path}/blog" in text and "stopped blog" in text, text
    assert "Traceback" not in text, text
    app = tmp_path / "blog"
    authors = git_output(app, env, "log", "--format=%an <%ae>").splitlines()
    assert len(authors) >= 2  # petrock new and feature add committed
    if subprocess.run(["git", "var", "GIT_AUTHOR_IDENT"], env=env, capture_output=True, check=False).returncode:
        assert set(authors) == {"petrock <petrock@localhost>"}  # git knew no one here: petrock's own name
    assert (tmp_path / "home" / ".local" / "bin" / "petrock").is_symlink()  # `make install` ran too


def git_output(root: Path, env: dict[str, str], *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, env=env, capture_output=True, text=True, check=True).stdout


def _wait_for_page(url: str, process: subprocess.Popen[bytes], log: Path, *, timeout: float) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"make demo exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(url, timeout=2)
        time.sleep(0.2)
    raise AssertionError(f"make demo did not serve {url} in {timeout:g} s:\n{log.read_text()}")


def test_make_test_installs_into_a_new_venv_and_its_git_tests_pass_on_a_fresh_machine(tmp_path: Path) -> None:
    env = fresh_machine(tmp_path / "home")
    venv = tmp_path / "venv"
    make = ["make", "--no-print-directory", "-C", str(REPO), "venv", f"VENV={venv}"]
    installed = subprocess.run(make, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-4000:]
    assert (venv / ".installed").is_file()
    # The tests that failed on a fresh machine were the ones committing in repositories they made themselves.
    chosen = [
        "tests/test_git_identity.py",
        "tests/test_feature_list_remove.py::test_a_changed_file_is_refused_unless_forced",
    ]
    suite = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", *chosen],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert suite.returncode == 0, suite.stdout[-4000:] + suite.stderr[-2000:]
    assert re.search(r"\b\d+ passed in ", suite.stdout) and "skipped" not in suite.stdout, suite.stdout[-2000:]
