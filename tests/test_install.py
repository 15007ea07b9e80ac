"""`make install`: petrock on PATH in a new shell, the way pipx would leave it.

The tests run the real Makefile against the venv running the suite (its stamp file is
declared up to date with `make -o`, so nothing is reinstalled) and a temporary BINDIR
and HOME, then ask brand-new login and interactive bash shells for `petrock`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from petrock import __version__

from .support import REPO

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")

BARE_PATH = "/usr/local/bin:/usr/bin:/bin"  # a fresh Debian root shell's PATH, give or take sbin


def make_install(bindir: Path, home: Path, path: str, **env: str) -> subprocess.CompletedProcess[str]:
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
        env={**os.environ, "HOME": str(home), "PATH": path, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def new_shell(home: Path, *flags: str) -> str:
    """What ``petrock --version`` prints in a brand-new bash (``-l`` login, ``-i`` interactive) that knows
    nothing of this one: only HOME, a bare PATH and its startup files."""
    result = subprocess.run(
        ["bash", *flags, "-c", "petrock --version"],
        env={"HOME": str(home), "PATH": BARE_PATH, "TERM": "dumb"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.stdout.strip() or result.stderr.strip()


def test_install_reaches_new_login_and_interactive_shells(tmp_path: Path) -> None:
    home = tmp_path / "home"
    bindir = home / ".local" / "bin"
    result = make_install(bindir, home, BARE_PATH)
    assert result.returncode == 0, result.stderr
    link = bindir / "petrock"
    assert link.is_symlink() and link.resolve() == (Path(sys.prefix) / "bin" / "petrock").resolve()
    assert f"added {bindir} to PATH for new shells in ~/.profile ~/.bashrc" in result.stdout
    assert new_shell(home, "-l") == f"petrock {__version__}"  # ssh, a console login, `su -`
    assert new_shell(home, "-i") == f"petrock {__version__}"  # a new terminal tab

    again = make_install(bindir, home, BARE_PATH)
    assert "is on PATH for new shells" in again.stdout, again.stdout
    for startup in (".profile", ".bashrc"):
        assert (home / startup).read_text().count(str(bindir)) == 2, startup  # one line: the check and the export


def test_install_writes_to_bash_profile_when_login_bash_reads_that_instead(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bash_profile").write_text("export EDITOR=vi\n")
    result = make_install(home / ".local" / "bin", home, BARE_PATH)
    assert "~/.profile ~/.bashrc ~/.bash_profile" in result.stdout, result.stdout
    assert (home / ".bash_profile").read_text().startswith("export EDITOR=vi\n")
    assert new_shell(home, "-l") == f"petrock {__version__}"


def test_install_with_no_modify_path_prints_the_line_and_touches_no_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    result = make_install(home / ".local" / "bin", home, BARE_PATH, NO_MODIFY_PATH="1")
    assert result.returncode == 0, result.stderr
    assert "is not on your PATH" in result.stdout and "export PATH=" in result.stdout
    assert sorted(path.name for path in home.iterdir()) == [".local"]


def test_install_into_a_folder_already_on_path_needs_no_note(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    result = make_install(bindir, tmp_path, f"{bindir}:{BARE_PATH}")
    assert result.returncode == 0, result.stderr
    assert "petrock is on your PATH" in result.stdout and "note:" not in result.stdout
    assert (bindir / "petrock").is_symlink()
