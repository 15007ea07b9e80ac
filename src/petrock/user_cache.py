"""Where petrock and its tooling keep what can be rebuilt: ``$XDG_CACHE_HOME``, else ``~/.cache``."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache(*parts: str) -> Path:
    """``$XDG_CACHE_HOME/PARTS`` (``~/.cache/PARTS`` when it is not set), not created."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").joinpath(*parts)
