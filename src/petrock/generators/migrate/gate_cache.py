"""Remembering that a tree passed the gate, so ``--dry-run`` then the real command prove it once.

A passing verdict is kept in the user's cache folder (a dry run writes nothing in the app,
not even in ``.git``), keyed by a hash of every file the gate ran on, the interpreter, what
the gate was asked to check, and petrock's own code (a verdict is proof only for the gate
that made it: a petrock changed since, by an upgrade or a fix, proves the tree again). The
real command finds the same key only if it would write exactly the tree the dry run proved,
with the same interpreter and petrock, within ``KEEP_SECONDS``; anything else runs the gate.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from petrock.user_cache import keep_json, petrock_digest, user_cache

if TYPE_CHECKING:
    from .verify import Verdict

KEEP_SECONDS = 3600.0
KEPT = 50  # verdicts kept, newest first


def tree_key(tree: Path, python: str, asked: Any) -> str:
    """A hash of every file under ``tree`` (paths and bytes), the interpreter, ``asked`` and petrock's code."""
    kind = [python, sys.version, asked, petrock_digest()]
    digest = hashlib.sha256(json.dumps(kind, default=repr, sort_keys=True).encode())
    for path in sorted(p for p in tree.rglob("*") if p.is_file() or p.is_symlink()):
        digest.update(path.relative_to(tree).as_posix().encode() + b"\0")
        digest.update((os.readlink(path).encode() if path.is_symlink() else path.read_bytes()) + b"\0")
    return digest.hexdigest()


def _folder() -> Path:
    return user_cache("petrock", "gate")


def recall(key: str) -> dict[str, Any] | None:
    """The passing verdict kept for ``key`` (with ``age``, in seconds), or None."""
    folder = _folder()
    try:
        kept = json.loads((folder / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None
    age = time.time() - kept.get("at", 0)
    return {**kept, "age": age} if 0 <= age <= KEEP_SECONDS else None


def remember(key: str, verdict: Verdict) -> None:
    """Keep a passing verdict; best effort (an unwritable cache just means the gate runs again)."""
    if not verdict.ok:
        return
    record = {"at": time.time(), "checks": verdict.checks, "seconds": verdict.seconds, "running": verdict.running}
    keep_json(_folder(), key, record, kept=KEPT)
