"""The app on disk: finding its root, and its manifest ``.petrock.toml``.

The manifest records the template version, the answers, the features, the
generation commits and the git blob id of every generated file. The blob ids
tell petrock which files the user changed or deleted, and give the base of a
3-way merge on upgrade, without re-rendering old templates.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from petrock import git
from petrock.errors import DirtyTree, NotInApp, UserError

MANIFEST = ".petrock.toml"
RESTORE = "restore it from git (`git checkout .petrock.toml`)"
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
BLOB_ID = re.compile(r"[0-9a-f]{40}")


class ManifestError(UserError):
    """``.petrock.toml`` is not what petrock wrote: a wrong type, a missing key, a renamed app."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{MANIFEST}: {what}", RESTORE)


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
        """Read and validate the manifest: a hand-edited one fails in one line naming the key, never later."""
        path = root / MANIFEST
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise UserError(f"cannot read {path}: {exc}", RESTORE) from None
        manifest = cls(
            project_name=_required_text(data, "project_name"),
            template_version=_required_text(data, "template_version"),
            petrock_version=_text(data, "petrock_version", data["template_version"]),
            answers=_table(data, "answers"),
            commits=_texts(data, "commits"),
            features=_features(data),
            files=_blobs(data),
        )
        manifest._require_package(root)
        return manifest

    def _require_package(self, root: Path) -> None:
        """``project_name`` names the package every path is recorded under: it must be the one on disk."""
        if not IDENTIFIER.fullmatch(self.project_name):
            raise ManifestError(f"`project_name` = {self.project_name!r} is not a package name")
        if not self.package_dir(root).is_dir():
            on_disk = sorted(p.parent.name for p in (root / "src").glob("*/__init__.py"))
            found = f"the package on disk is src/{on_disk[0]}" if len(on_disk) == 1 else f"no src/{self.project_name}"
            raise ManifestError(f"`project_name` = {self.project_name!r} does not match the app ({found})")

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


def _describe(value: object) -> str:
    """How a wrong value reads in an error: ``a number (5)``, ``a list``."""
    if isinstance(value, list | dict):
        return "a list" if isinstance(value, list) else "a table"
    kind = "true/false" if isinstance(value, bool) else "a string" if isinstance(value, str) else "a number"
    return f"{kind} ({value!r})" if not isinstance(value, str) or value else "an empty string"


def _required_text(data: dict[str, Any], key: str) -> str:
    if key not in data:
        raise ManifestError(f"`{key}` is missing")
    return _text(data, key, None)


def _text(data: dict[str, Any], key: str, default: Any) -> str:
    value = data.get(key, default)
    if not isinstance(value, str) or not value:
        raise ManifestError(f"`{key}` must be a non-empty string, not {_describe(value)}")
    return value


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ManifestError(f"`{key}` must be a table ([{key}]), not {_describe(value)}")
    return dict(value)


def _texts(data: dict[str, Any], key: str) -> dict[str, str]:
    table = _table(data, key)
    for name, value in table.items():
        if not isinstance(value, str):
            raise ManifestError(f"`{key}.{name}` must be a string, not {_describe(value)}")
    return table


def _blobs(data: dict[str, Any]) -> dict[str, str]:
    files = _texts(data, "files")
    for name, value in files.items():
        if not BLOB_ID.fullmatch(value):
            raise ManifestError(f"`files.{json.dumps(name)}` must be a git blob id (40 hex digits), not {value!r}")
    return files


def _features(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each feature is a table; the keys petrock reads from it have the types it expects."""
    features = _table(data, "features")
    for name, entry in features.items():
        if not isinstance(entry, dict):
            raise ManifestError(f"`features.{name}` must be a table ([features.{name}]), not {_describe(entry)}")
        if not IDENTIFIER.fullmatch(name):
            raise ManifestError(f"`features.{name}` is not a feature name")
        version = entry.get("template_version", "")
        if not isinstance(version, str):
            raise ManifestError(f"`features.{name}.template_version` must be a string, not {_describe(version)}")
        components = entry.get("components", {})
        if not isinstance(components, dict) or not all(isinstance(c, dict) for c in components.values()):
            raise ManifestError(f"`features.{name}.components` must be a table of tables")
        features[name] = {key: dict(value) if isinstance(value, dict) else value for key, value in entry.items()}
    return features
