"""Would the installed templates render this app differently from what petrock generated?

A generated file's fingerprint is the git blob id of its pure render, recorded in
``.petrock.toml``'s ``[files]`` at generation (and by every upgrade). Rendering
the app again and hashing each file answers the question file by file, whatever
changed — a template, a new template file, or petrock's own rendering code — with
no version string to forget to bump. The same blob ids find the merge bases in
the app's history.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from petrock import git
from petrock.merge import MARKER_BLOCK, carry_marker_blocks
from petrock.project import Manifest


class Drift(StrEnum):
    """How one file's new render differs from the recorded one."""

    CHANGED = "changed"  # the templates render it differently now
    NEW = "new"  # the templates make a file petrock never generated here
    DROPPED = "dropped"  # petrock generated it; the templates no longer make it


@dataclass(frozen=True)
class Renders:
    """The installed templates' renders for one scope, and the recorded paths that scope owns."""

    files: dict[str, str]  # path -> pure render
    owned: frozenset[str]  # recorded paths in scope, rendered or not (a path not rendered was dropped)


def render_feature_of(manifest: Manifest, name: str) -> dict[str, str]:
    """One feature rendered as it was generated (the one place a feature's recorded answers are passed)."""
    from petrock.generators.auth import is_auth, render_auth
    from petrock.generators.feature import render_feature

    if is_auth(manifest.features[name]):  # the users feature of `generate auth`: no fields to pass
        return render_auth(manifest.project_name)
    return render_feature(manifest.project_name, name, manifest.features)


def render_app(manifest: Manifest, feature: str | None = None) -> Renders:
    """Render the project and every feature (or one feature only) with the installed templates."""
    files: dict[str, str] = {}
    owned: set[str] = set()
    for name in [feature] if feature else sorted(manifest.features):
        files.update(render_feature_of(manifest, name))
        prefix = f"src/{manifest.project_name}/{name}/"
        owned |= {path for path in manifest.files if path.startswith(prefix)}
    if feature is None:
        from petrock.generators.new_project import render_project

        files.update(render_project(manifest.project_name, manifest.petrock_version))
        owned = set(manifest.files)
    return Renders(files, frozenset(owned | files.keys()))


def renders_alike(root: Path | None, recorded: str | None, render: str) -> bool:
    """Is ``render`` what petrock recorded as ``recorded``, up to the lines it injects between markers?

    ``feature add`` and ``generate`` add lines between ``# petrock:`` markers and
    record the edited file, so a fresh render of such a file differs only there.
    ``root`` is None when there is no git history to read the recorded file from.
    """
    if recorded is None:
        return False
    if git.blob_id(render) == recorded:
        return True
    if not MARKER_BLOCK.search(render):
        return False
    generated = git.read_blob(root, recorded) if root is not None else None
    return generated is not None and carry_marker_blocks(generated, render) == generated


def drift(root: Path, manifest: Manifest, renders: Renders) -> list[tuple[str, Drift]]:
    """Every file the installed templates would render differently, sorted by path."""
    found = []
    history = root if git.is_repo(root) else None
    for path in sorted(renders.owned):
        recorded = manifest.files.get(path)
        render = renders.files.get(path)
        if render is None:
            found.append((path, Drift.DROPPED))
        elif recorded is None:
            found.append((path, Drift.NEW))
        elif not renders_alike(history, recorded, render):
            found.append((path, Drift.CHANGED))
    return found


def missing_bases(root: Path, manifest: Manifest) -> list[str]:
    """Generated files whose recorded render is not in this repository (a clone without petrock's refs)."""
    if not git.is_repo(root):
        return []
    missing = git.missing_objects(root, sorted(set(manifest.files.values())))
    return sorted(path for path, blob in manifest.files.items() if blob in missing)
