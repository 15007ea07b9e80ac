"""The few git operations petrock needs, through the real ``git`` command."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from petrock.errors import GitError

# Used only when the user has no git identity configured, so a fresh machine can commit.
FALLBACK_IDENTITY = ("-c", "user.name=petrock", "-c", "user.email=petrock@localhost")


def run(root: Path, *args: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    if shutil.which("git") is None:
        raise GitError("git is not installed", "install git, or pass --no-git")
    result = subprocess.run(["git", *args], cwd=root, input=input, capture_output=True, check=False)
    if check and result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        raise GitError(f"git {args[0]} failed: {message[-1] if message else result.returncode}")
    return result


def is_repo(root: Path) -> bool:
    return shutil.which("git") is not None and run(root, "rev-parse", "--git-dir", check=False).returncode == 0


def dirty_files(root: Path) -> list[str]:
    """Paths with uncommitted changes (untracked included), relative to the repository."""
    # --no-optional-locks: asking must not rewrite .git/index (dry runs write nothing).
    output = run(root, "--no-optional-locks", "status", "--porcelain", "--untracked-files=all", "--", ".").stdout
    output = output.decode()
    return [line[3:] for line in output.splitlines() if line]


def init(root: Path) -> None:
    run(root, "init", "-q", "-b", "main")


def identity(root: Path) -> tuple[str, ...]:
    """``-c`` options giving git an author when the user has none configured (a fresh machine)."""
    configured = run(root, "config", "user.email", check=False).stdout.strip()
    return () if configured else FALLBACK_IDENTITY


def commit(root: Path, message: str, paths: Sequence[str] | None = None) -> str:
    """Commit ``paths`` only (everything when None), and return the new commit id.

    With ``paths``, changes the user had staged elsewhere stay out of petrock's commit.
    """
    run(root, "add", "-A", "--", *(paths or ["."]))
    only = ["--", *paths] if paths else []
    run(root, *identity(root), "commit", "-q", "--no-verify", "--allow-empty", "-m", message, *only)
    return head(root)


def head(root: Path) -> str:
    return run(root, "rev-parse", "HEAD").stdout.decode().strip()


def show(root: Path, revision: str, path: str) -> str | None:
    """The text of ``path`` at ``revision``, or None if it did not exist there."""
    result = run(root, "show", f"{revision}:{path}", check=False)
    return result.stdout.decode() if result.returncode == 0 else None


def read_blob(root: Path, blob_id: str) -> str | None:
    """The text of a blob by id (as recorded in the manifest), or None if git does not have it."""
    result = run(root, "cat-file", "blob", blob_id, check=False)
    return result.stdout.decode() if result.returncode == 0 else None


def blob_id(content: str | bytes) -> str:
    """The id git gives this content as a blob: a content hash that also finds it in history."""
    data = content.encode() if isinstance(content, str) else content
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def merge_file(ours: Path, base: Path, theirs: Path, labels: tuple[str, str, str]) -> tuple[str, bool]:
    """3-way merge with ``git merge-file``; returns (merged text, clean)."""
    result = subprocess.run(
        [
            "git",
            "merge-file",
            "-p",
            "-L",
            labels[0],
            "-L",
            labels[1],
            "-L",
            labels[2],
            str(ours),
            str(base),
            str(theirs),
        ],
        capture_output=True,
        check=False,
    )
    if result.returncode < 0 or result.returncode > 127:
        raise GitError(f"git merge-file failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout.decode(), result.returncode == 0
