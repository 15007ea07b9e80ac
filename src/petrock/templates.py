"""Where petrock's templates are: shipped in the wheel, or beside the source in a checkout.

``PETROCK_TEMPLATES`` points at another copy (used to test upgrades against changed templates).
"""

from __future__ import annotations

import os
from pathlib import Path

from petrock import __version__
from petrock.errors import UserError

TEMPLATE_VERSION = __version__


def templates_dir() -> Path:
    override = os.environ.get("PETROCK_TEMPLATES")
    if override:
        path = Path(override)
        if not (path / "project").is_dir():
            raise UserError(f"PETROCK_TEMPLATES={override} has no project/ template", "point it at a templates folder")
        return path
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent.parent / "templates"):
        if (candidate / "project").is_dir():
            return candidate
    raise UserError("petrock's templates are missing from this installation", "reinstall petrock")


def template_version() -> str:
    """The version of the templates in use (a changed copy may declare its own in VERSION)."""
    marker = templates_dir() / "VERSION"
    return marker.read_text().strip() if marker.is_file() else TEMPLATE_VERSION
