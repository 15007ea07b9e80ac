"""Where petrock and its tooling keep what can be rebuilt: ``$XDG_CACHE_HOME``, else ``~/.cache``."""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path


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
