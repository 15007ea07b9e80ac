"""Where petrock and its tooling keep what can be rebuilt: ``$XDG_CACHE_HOME``, else ``~/.cache``."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def user_cache(*parts: str) -> Path:
    """``$XDG_CACHE_HOME/PARTS`` (``~/.cache/PARTS`` when it is not set), not created."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").joinpath(*parts)


@functools.cache
def petrock_digest() -> str:
    """A hash of petrock's version and every module of the running petrock (paths and bytes): what a kept
    result was made by (a petrock changed since, by an upgrade or a fix, makes it again)."""
    import petrock

    package = Path(petrock.__file__).resolve().parent
    digest = hashlib.sha256(petrock.__version__.encode() + b"\0")
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def keep_json(folder: Path, key: str, value: Any, *, kept: int) -> None:
    """Write ``value`` as ``folder/KEY.json``, whole or not at all (several processes may write the same
    key at once), and keep only the ``kept`` newest files. Best effort: a cache that cannot be written
    only means the work is done again."""
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=folder, suffix=".tmp", delete=False) as out:
            json.dump(value, out, default=str)
        os.replace(out.name, folder / f"{key}.json")
        for old in sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)[kept:]:
            old.unlink(missing_ok=True)
