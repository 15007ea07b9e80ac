"""Idempotent edits between ``# petrock:NAME`` / ``# petrock:end-NAME`` markers.

User code outside the markers is never touched; a line already present is not
added twice; a removed line disappears without disturbing its neighbours.
"""

from __future__ import annotations

import re

from petrock.errors import UserError


def _block(text: str, marker: str, path: str) -> tuple[int, int, str]:
    """Start and end offsets of the lines between the markers, and the indentation to use."""
    start = re.search(rf"^([ \t]*)# petrock:{re.escape(marker)}[ \t]*\n", text, re.MULTILINE)
    end = re.search(rf"^[ \t]*# petrock:end-{re.escape(marker)}[ \t]*$", text, re.MULTILINE)
    if start is None or end is None or end.start() < start.end():
        raise UserError(
            f"{path} has lost its `# petrock:{marker}` / `# petrock:end-{marker}` markers",
            "put them back (see a freshly generated app) so petrock can edit the file",
        )
    return start.end(), end.start(), start.group(1)


def lines_between(text: str, marker: str, path: str = "file") -> list[str]:
    start, end, _ = _block(text, marker, path)
    return [line.strip() for line in text[start:end].splitlines() if line.strip()]


def add_line(text: str, marker: str, line: str, path: str = "file") -> str:
    """Add ``line`` inside the marked block unless it is already there.

    Import blocks are kept sorted, as ruff's import sorting expects; other blocks
    (registrations) keep the order lines were added in.
    """
    if line.strip() in lines_between(text, marker, path):
        return text
    start, end, indent = _block(text, marker, path)
    block = text[start:end]
    lines = [existing for existing in block.splitlines() if existing.strip()]
    if marker == "imports":
        position = sum(1 for existing in lines if _import_key(existing) < _import_key(line))
    else:
        position = len(lines)
    lines.insert(position, f"{indent}{line.strip()}")
    # A blank line kept before the end marker (ruff wants one after an import block) stays.
    gap = "\n" if block.startswith("\n") or block.endswith("\n\n") else ""
    return text[:start] + "\n".join(lines) + "\n" + gap + text[end:]


def _import_key(line: str) -> str:
    """Sort key of an import line: its module, as ruff's isort orders them."""
    words = line.split()
    return words[1].lower() if len(words) > 1 else line.lower()


def remove_line(text: str, marker: str, line: str, path: str = "file") -> str:
    """Remove ``line`` from the marked block (no-op if absent)."""
    start, end, _ = _block(text, marker, path)
    kept = [existing for existing in text[start:end].splitlines(keepends=True) if existing.strip() != line.strip()]
    return text[:start] + "".join(kept) + text[end:]
