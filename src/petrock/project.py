"""The app on disk: finding its root, and its manifest ``.petrock.toml``.

The manifest records the template version, the answers, the features, the
generation commits and the git blob id of every generated file. The blob ids
tell petrock which files the user changed or deleted, and give the base of a
3-way merge on upgrade, without re-rendering old templates.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from petrock import git
from petrock.errors import DirtyTree, NotInApp, UserError

MANIFEST = ".petrock.toml"


@dataclass
class Manifest:
    """The contents of ``.petrock.toml``."""

    project_name: str
    template_version: str
    petrock_version: str
    answers: dict[str, Any] = field(default_factory=dict)
    commits: dict[str, str] = field(default_factory=dict)  # "project" / "feature:posts" -> commit id
    features: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {template_version, ...}
    files: dict[str, str] = field(default_factory=dict)  # generated path -> git blob id

    @classmethod
    def load(cls, root: Path) -> Manifest:
        path = root / MANIFEST
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise UserError(
                f"cannot read {path}: {exc}", "restore it from git (`git checkout .petrock.toml`)"
            ) from None
        try:
            return cls(
                project_name=data["project_name"],
                template_version=data["template_version"],
                petrock_version=data.get("petrock_version", data["template_version"]),
                answers=dict(data.get("answers", {})),
                commits=dict(data.get("commits", {})),
                features={k: dict(v) for k, v in data.get("features", {}).items()},
                files=dict(data.get("files", {})),
            )
        except KeyError as exc:
            raise UserError(
                f"{path} has no {exc.args[0]!r}", "restore it from git (`git checkout .petrock.toml`)"
            ) from None

    def dumps(self) -> str:
        import tomli_w

        data: dict[str, Any] = {
            "project_name": self.project_name,
            "template_version": self.template_version,
            "petrock_version": self.petrock_version,
            "answers": self.answers,
            "commits": dict(sorted(self.commits.items())),
            "features": dict(sorted(self.features.items())),
        }
        header = "# Written by petrock: what it generated, from which templates, in which commits.\n"
        return header + tomli_w.dumps(data) + _files_table(self.files)

    def package_dir(self, root: Path) -> Path:
        return root / "src" / self.project_name


def _files_table(files: dict[str, str]) -> str:
    """The ``[files]`` table, written directly: it grows with every feature, and a generic
    TOML writer made each ``feature add`` slower than the one before. A JSON string is a
    valid TOML basic string, so ``json.dumps`` quotes keys and values correctly."""
    lines = [f"{json.dumps(path)} = {json.dumps(blob)}" for path, blob in sorted(files.items())]
    return "\n[files]\n" + "".join(f"{line}\n" for line in lines)


def find_root(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` holding a ``.petrock.toml``."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / MANIFEST).is_file():
            return directory
    raise NotInApp(f"no petrock app here ({here})", "run this inside an app made by `petrock new`")


def require_clean(root: Path, *, allow_dirty: bool) -> None:
    """Refuse to mix petrock's commit with uncommitted work (unless the user says so, or there is no git)."""
    if allow_dirty or not git.is_repo(root):
        return
    if dirty := git.dirty_files(root):
        shown = ", ".join(dirty[:3]) + (f" and {len(dirty) - 3} more" if len(dirty) > 3 else "")
        raise DirtyTree(
            f"the app has uncommitted changes ({shown})", "commit or stash them first, or pass --allow-dirty"
        )
