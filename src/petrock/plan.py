"""A Plan: the file operations a generator wants, computed before anything is written.

Every generating command builds one Plan; the dry run, the per-file status
lines, ``--json`` and the apply step all read the same Plan, so they can never
disagree. Applying is all-or-nothing: on any failure the files this run wrote
are put back as they were, and nothing else is touched.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from petrock.errors import ConflictError
from petrock.git import blob_id


class Action(StrEnum):
    """The status word printed for each file (as Rails generators do)."""

    CREATE = "create"
    UPDATE = "update"
    IDENTICAL = "identical"
    CONFLICT = "conflict"
    FORCE = "force"
    SKIP = "skip"
    REMOVE = "remove"

    @property
    def writes(self) -> bool:
        return self in (Action.CREATE, Action.UPDATE, Action.FORCE, Action.REMOVE)


@dataclass(frozen=True)
class Change:
    """One file in the plan: what is there now (``old``), what will be (``new``, None to delete)."""

    path: str
    action: Action
    old: str | None
    new: str | None
    note: str = ""

    def diff(self) -> str:
        before = (self.old or "").splitlines(keepends=True)
        after = (self.new or "").splitlines(keepends=True) if self.action != Action.CONFLICT else before
        if self.action in (Action.CONFLICT, Action.SKIP, Action.IDENTICAL):
            return ""
        return "".join(
            difflib.unified_diff(
                before,
                after,
                "/dev/null" if self.old is None else f"a/{self.path}",
                "/dev/null" if self.new is None else f"b/{self.path}",
            )
        )


class Plan:
    """File changes under one root, with the status each would get."""

    def __init__(self, root: Path, *, pristine: Mapping[str, str] | None = None, force: bool = False) -> None:
        """``pristine`` maps generated paths to their blob id at generation: a file that still
        matches it was not edited by the user and may be replaced without ``--force``."""
        self.root = root
        self.force = force
        self._pristine = dict(pristine or {})
        self._changes: dict[str, Change] = {}

    def __iter__(self) -> Iterator[Change]:
        return iter(self._changes.values())

    def __len__(self) -> int:
        return len(self._changes)

    def __getitem__(self, path: str) -> Change:
        return self._changes[path]

    def _current(self, path: str) -> str | None:
        target = self.root / path
        try:
            with target.open(encoding="utf-8", newline="") as handle:  # keep line endings as they are
                return handle.read()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except IsADirectoryError:
            raise ConflictError(f"{path} is a directory", "move it out of the way") from None

    def _is_pristine(self, path: str, text: str) -> bool:
        return self._pristine.get(path) == blob_id(text)

    def write(self, path: str, content: str, *, edit: bool = False) -> Change:
        """Plan ``path`` to hold ``content``. ``edit`` marks a surgical edit of a user file
        (a registration line), which never counts as overwriting user changes."""
        old = self._current(path)
        if old is None:
            action = Action.CREATE
        elif old == content:
            action = Action.IDENTICAL
        elif edit or self._is_pristine(path, old):
            action = Action.UPDATE
        elif self.force:
            action = Action.FORCE
        else:
            action = Action.CONFLICT
        return self._add(Change(path, action, old, content, "" if action != Action.CONFLICT else "modified"))

    def delete(self, path: str, *, taken_over: bool = False) -> Change:
        """Plan ``path`` to be removed (a conflict if the user changed it, unless forced).

        ``taken_over`` says its whole content now lives elsewhere in this plan (a migrated
        ``jobs.py``), so removing it loses nothing the user wrote.
        """
        old = self._current(path)
        if old is None:
            action, note = Action.SKIP, "already gone"
        elif taken_over or self._is_pristine(path, old) or self.force:
            action, note = Action.REMOVE, ""
        else:
            action, note = Action.CONFLICT, "modified"
        return self._add(Change(path, action, old, None, note))

    def _add(self, change: Change) -> Change:
        self._changes[change.path] = change
        return change

    @property
    def conflicts(self) -> list[Change]:
        return [c for c in self if c.action == Action.CONFLICT]

    @property
    def writes(self) -> list[Change]:
        return [c for c in self if c.action.writes]

    def check(self) -> None:
        """Raise if applying would overwrite or delete user changes."""
        if conflicts := self.conflicts:
            paths = ", ".join(c.path for c in conflicts)
            deletions = sum(c.new is None for c in conflicts)
            verb = {0: "overwrite", len(conflicts): "delete"}.get(deletions, "overwrite or delete")
            raise ConflictError(f"would {verb} your changes to {paths}", "commit or move them, or pass --force")

    def diff(self) -> str:
        return "".join(change.diff() for change in self)

    def to_json(self) -> list[dict[str, Any]]:
        return [{"path": c.path, "action": c.action.value, "note": c.note} for c in self]

    def apply(self) -> list[Change]:
        """Write every change or none; returns the changes written.

        A file that changed on disk since the plan was made is a conflict: the
        run stops and puts back what it wrote, so it never clobbers a concurrent edit.
        """
        self.check()
        written: list[Change] = []
        created_dirs: list[Path] = []
        try:
            for change in self.writes:
                if self._current(change.path) != change.old:
                    raise ConflictError(f"{change.path} changed while petrock was working", "run the command again")
                target = self.root / change.path
                if change.new is None:
                    target.unlink()
                else:
                    created_dirs.extend(_make_parents(target.parent))
                    _atomic_write(target, change.new)
                written.append(change)
        except BaseException:
            _roll_back(self.root, written, created_dirs)
            raise
        return written


def _make_parents(directory: Path) -> list[Path]:
    """Create ``directory`` and missing parents; return the ones created, outermost first."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        path.mkdir()
    return list(reversed(missing))


def _atomic_write(target: Path, text: str) -> None:
    """Write via a temporary file and rename, keeping the file's mode (new files get the umask's)."""
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _roll_back(root: Path, written: list[Change], created_dirs: list[Path]) -> None:
    for change in reversed(written):
        target = root / change.path
        if change.old is None:
            target.unlink(missing_ok=True)
        else:
            _atomic_write(target, change.old)
    for directory in reversed(created_dirs):
        with contextlib.suppress(OSError):
            directory.rmdir()
