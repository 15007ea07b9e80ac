"""petrock's CHANGELOG.md: where it is, and which of its versions an app has not taken in yet.

`petrock upgrade` and `petrock check` name those versions and the file, so a user reads
what changed before merging it. The file ships in the wheel beside the templates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHANGELOG = "CHANGELOG.md"
HEADING = re.compile(r"^## \[?(\d+\.\d+\.\d+[^\]\s]*)\]?", re.MULTILINE)  # `## [0.2.0] - 2026-05-01`


def version_key(version: str) -> tuple[tuple[int, str], ...]:
    """Sort key for versions like ``0.10.2``: numeric parts compare as numbers."""
    parts = version.replace("+", ".").replace("-", ".").split(".")
    return tuple((int(part), "") if part.isdigit() else (-1, part) for part in parts)


def changelog_path() -> Path | None:
    """CHANGELOG.md in the installed package, or at the top of a checkout."""
    here = Path(__file__).resolve().parent
    return next((path for path in (here / CHANGELOG, here.parent.parent / CHANGELOG) if path.is_file()), None)


def listed_versions(text: str) -> list[str]:
    """The versions the changelog has a section for, in the file's order (newest first)."""
    return HEADING.findall(text)


@dataclass(frozen=True)
class ChangesSince:
    """What the changelog says between the version an app records and the installed one."""

    since: str
    installed: str
    versions: list[str]  # the sections after ``since`` up to ``installed``, oldest first
    path: Path | None

    def pointer(self) -> str:
        """``what changed from 0.1.0 to 0.3.0: see /…/CHANGELOG.md (0.2.0, 0.3.0)``"""
        where = str(self.path) if self.path else CHANGELOG
        listed = f" ({', '.join(self.versions)})" if self.versions else ""
        return f"what changed from {self.since} to {self.installed}: see {where}{listed}"

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path) if self.path else None, "versions": self.versions}


def changes_since(since: str, installed: str) -> ChangesSince | None:
    """The changelog's sections newer than ``since`` and not newer than ``installed``; None if nothing is newer."""
    if version_key(installed) <= version_key(since):
        return None
    path = changelog_path()
    listed = listed_versions(path.read_text()) if path else []
    newer = [v for v in listed if version_key(since) < version_key(v) <= version_key(installed)]
    return ChangesSince(since, installed, sorted(newer, key=version_key), path)
