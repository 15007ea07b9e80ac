"""Keeping copier's render of the project template, so ``check`` and ``upgrade`` render it once.

Rendering ``templates/project`` with copier costs most of a second of CPU (importing copier,
then compiling every file as a Jinja template), and ``check``, ``upgrade`` and ``new`` render
the same project for the same answers again and again. The files are kept in the user's cache
folder, keyed by a hash of every file of the template (paths and bytes), the answers, the
copier and Jinja versions and petrock's own code: a render is reused only for exactly the
inputs that made it. Best effort, as the gate's verdicts (gate_cache.py): an unreadable or
unwritable cache just means copier renders again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from importlib import metadata
from pathlib import Path

from petrock.user_cache import keep_json, petrock_digest, user_cache

KEPT = 20  # renders kept, the most recently used first (under a megabyte each)
SKIPPED_PARTS = frozenset({"__pycache__"})  # copier never renders these (nor *.pyc): a test run may add them


def render_key(template: Path, answers: dict[str, str]) -> str:
    """A hash of every file of ``template``, the answers, copier's and Jinja's versions and petrock's code."""
    versions = {}
    for package in ("copier", "jinja2"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    digest = hashlib.sha256(json.dumps([answers, versions, petrock_digest()], sort_keys=True).encode())
    for path in sorted(template.rglob("*")):
        relative = path.relative_to(template)
        if SKIPPED_PARTS & set(relative.parts) or path.suffix in (".pyc", ".pyo"):
            continue
        if path.is_symlink():
            digest.update(relative.as_posix().encode() + b"\0->" + os.readlink(path).encode() + b"\0")
        elif path.is_file():
            digest.update(relative.as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _folder() -> Path:
    return user_cache("petrock", "renders")


def recall(key: str) -> dict[str, str] | None:
    """The files kept for ``key`` (path -> text), or None. A render used is kept longest (its time is renewed)."""
    path = _folder() / f"{key}.json"
    try:
        files = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        return None
    with contextlib.suppress(OSError):
        os.utime(path)
    return files


def remember(key: str, files: dict[str, str]) -> None:
    """Keep a render, whole or not at all (several processes may write the same key at once)."""
    keep_json(_folder(), key, files, kept=KEPT)
