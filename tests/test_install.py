"""`make install`: petrock on PATH in a new shell, the way pipx would leave it.

The test runs the real Makefile against the venv running the suite (its stamp file is
declared up to date with `make -o`, so nothing is reinstalled) and a temporary BINDIR
and HOME, then follows the advice it prints in a brand-new interactive bash.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from petrock import __version__

from .support import REPO

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")

BARE_PATH = "/usr/local/bin:/usr/bin:/bin"  # a fresh Debian root shell's PATH, give or take sbin


def make_install(bindir: Path, home: Path, path: str) -> subprocess.CompletedProcess[str]:
    venv = Path(sys.prefix)
    stamp = venv / ".installed"
    return subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(REPO),
            "-o",
            str(stamp),
            "install",
            f"VENV={venv}",
            f"BINDIR={bindir}",
        ],
        env={**os.environ, "HOME": str(home), "PATH": path},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_install_links_petrock_and_says_how_to_put_it_on_path(tmp_path: Path) -> None:
    bindir, home = tmp_path / "home" / ".local" / "bin", tmp_path / "home"
    result = make_install(bindir, home, BARE_PATH)
    assert result.returncode == 0, result.stderr
    link = bindir / "petrock"
    assert link.is_symlink() and link.resolve() == (Path(sys.prefix) / "bin" / "petrock").resolve()
    assert f"note: {bindir} is not on your PATH" in result.stdout
    advice = re.search(r"^  (echo 'export PATH=.*>> ~/\.bashrc)", result.stdout, re.MULTILINE)
    assert advice is not None, result.stdout

    # Follow the advice, then open a new shell that knows nothing of this one.
    subprocess.run(["bash", "-c", advice[1]], env={"HOME": str(home), "PATH": BARE_PATH}, check=True)
    new_shell = subprocess.run(
        ["bash", "-i", "-c", "petrock --version"],
        env={"HOME": str(home), "PATH": BARE_PATH, "TERM": "dumb"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert new_shell.stdout.strip() == f"petrock {__version__}", new_shell.stderr


def test_install_into_a_folder_already_on_path_needs_no_note(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    result = make_install(bindir, tmp_path, f"{bindir}:{BARE_PATH}")
    assert result.returncode == 0, result.stderr
    assert "petrock is on your PATH" in result.stdout and "note:" not in result.stdout
    assert (bindir / "petrock").is_symlink()
