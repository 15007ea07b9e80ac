"""The few git operations petrock needs, through the real ``git`` command."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from petrock.errors import GitError

# Used only when git cannot name the user (a fresh machine), so petrock's own commits still work.
FALLBACK_IDENTITY = ("-c", "user.name=petrock", "-c", "user.email=petrock@localhost")


def run(
    root: Path, *args: str, input: bytes | None = None, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """``git ARGS`` in ``root``; ``env`` adds variables (e.g. a scratch ``GIT_INDEX_FILE``)."""
    if shutil.which("git") is None:
        raise GitError("git is not installed", "install git, or pass --no-git")
    environment = {**os.environ, **env} if env else None
    result = subprocess.run(["git", *args], cwd=root, input=input, capture_output=True, check=False, env=environment)
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
    """``-c`` options giving git an author when it cannot name one (a fresh machine), else none.

    ``git var`` asks git itself, so an identity from the environment (``GIT_AUTHOR_EMAIL``,
    ``EMAIL``) or any config file counts; the fallback is passed per command and never
    written to a config file, so the user's own commits still ask them who they are.
    """
    known = all(run(root, "var", f"GIT_{role}_IDENT", check=False).returncode == 0 for role in ("AUTHOR", "COMMITTER"))
    return () if known else FALLBACK_IDENTITY


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


def missing_objects(root: Path, ids: Sequence[str]) -> set[str]:
    """The ids among ``ids`` that this repository does not have (one ``git cat-file`` for all)."""
    if not ids:
        return set()
    output = run(root, "cat-file", "--batch-check", input="".join(f"{i}\n" for i in ids).encode()).stdout.decode()
    return {line.split()[0] for line in output.splitlines() if line.endswith(" missing")}


def git_path(root: Path, name: str) -> Path:
    """Where ``.git/NAME`` really is (worktrees and ``GIT_DIR`` included)."""
    return root / run(root, "rev-parse", "--git-path", name).stdout.decode().strip()


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
