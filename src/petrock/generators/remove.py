"""``petrock feature remove NAME``: undo what petrock generated for a feature.

The manifest says which files petrock wrote and their blob ids at the time: a file
that still matches is removed, one the user changed is a conflict unless ``--force``.
Files petrock never wrote are left alone. The feature's two lines in features.py
and its manifest entries go too, so the app is back to how it was before
``petrock feature add``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from petrock import git, inject
from petrock.errors import UserError
from petrock.fields import recorded_fields
from petrock.generators.auth import is_auth, remove_cli_lines, remove_dependency
from petrock.generators.component import component_files, copy_manifest, keep_pristine
from petrock.plan import Plan
from petrock.project import MANIFEST, Manifest


@dataclass(frozen=True)
class Removal:
    """A planned removal: the plan, the manifest it leaves, and the files it keeps."""

    plan: Plan
    manifest: Manifest
    feature: str
    kept: list[str]  # files in the feature's folder that petrock did not generate


def feature_files(manifest: Manifest, feature: str) -> list[str]:
    """The generated files that belong to ``feature``: its folder and tests, and its components' files."""
    folder = f"src/{manifest.project_name}/{feature}/"
    rendered = {
        path
        for path in manifest.files
        if path.startswith((folder, f"tests/{feature}/"))
        or path in (f"tests/test_{feature}.py", f"tests/test_{feature}_upcasters.py", f"tests/test_{feature}_owners.py")
    }
    return sorted(rendered | component_files(manifest, feature).keys())


def plan_remove(root: Path, manifest: Manifest, feature: str, *, force: bool = False) -> Removal:
    """Validate and plan the removal; nothing is written."""
    if feature not in manifest.features:
        folder = manifest.package_dir(root) / feature
        if folder.is_dir():
            raise UserError(
                f"petrock did not generate a feature {feature!r}",
                f"it is not in {MANIFEST}; remove {folder.relative_to(root).as_posix()} and its registration by hand",
            )
        known = ", ".join(sorted(manifest.features)) or "none"
        raise UserError(f"there is no feature {feature!r}", f"features petrock generated: {known}")

    referrers = sorted(name for name, entry in manifest.features.items() if _refers_to(entry, feature))
    if referrers:
        raise UserError(
            f"{', '.join(referrers)} {'refers' if len(referrers) == 1 else 'refer'} to {feature!r} (a ref field)",
            f"remove {' and '.join(referrers)} first",
        )
    owned = sorted(name for name, entry in manifest.features.items() if entry.get("owned"))
    if owned and is_auth(manifest.features[feature]):
        raise UserError(
            f"{', '.join(owned)} {'is' if len(owned) == 1 else 'are'} owned by users (--owned)",
            f"remove {' and '.join(owned)} first",
        )
    paths = feature_files(manifest, feature)
    plan = Plan(root, pristine={**manifest.files, **component_files(manifest, feature)}, force=force)
    for path in paths:
        plan.delete(path)

    updated = copy_manifest(manifest)
    features_path = f"src/{manifest.project_name}/features.py"
    current = (root / features_path).read_text()
    edited = inject.remove_line(
        current, "imports", f"from .{feature}.register import register as register_{feature}", features_path
    )
    edited = inject.remove_line(edited, "registrations", f"register_{feature}(app)", features_path)
    plan.write(features_path, edited, edit=True)
    keep_pristine(updated, manifest, features_path, current, edited)
    if is_auth(manifest.features[feature]):  # `generate auth` also added a CLI group and a dependency
        cli_path = f"src/{manifest.project_name}/cli.py"
        plan.write(cli_path, remove_cli_lines((root / cli_path).read_text(), cli_path), edit=True)
        plan.write("pyproject.toml", remove_dependency((root / "pyproject.toml").read_text()), edit=True)

    del updated.features[feature]
    for path in paths:
        updated.files.pop(path, None)  # component files are recorded with the feature, gone with it
    for key in list(updated.commits):
        if key == f"feature:{feature}" or key.startswith(f"component:{feature}/"):
            del updated.commits[key]
    plan.write(MANIFEST, updated.dumps(), edit=True)

    folder = manifest.package_dir(root) / feature
    kept = sorted(
        path.relative_to(root).as_posix()
        for path in (folder.rglob("*") if folder.is_dir() else [])
        if path.is_file() and "__pycache__" not in path.parts and path.relative_to(root).as_posix() not in paths
    )
    return Removal(plan, updated, feature, kept)


def _refers_to(entry: dict[str, object], feature: str) -> bool:
    """Does the feature recorded as ``entry`` have a ``ref`` field to ``feature``?"""
    return any(spec.split(":")[1:3] == ["ref", feature] for spec in recorded_fields(entry))


def tidy_folders(root: Path, removal: Removal) -> None:
    """Remove the folders the removal emptied, with their bytecode caches; keep any other file."""
    folder = removal.manifest.package_dir(root) / removal.feature
    if not folder.is_dir():
        return
    for directory in sorted((folder, *(p for p in folder.rglob("*") if p.is_dir())), key=_depth, reverse=True):
        if not directory.exists() or directory.name == "__pycache__":
            continue
        entries = list(directory.iterdir())
        if all(entry.is_dir() and entry.name == "__pycache__" for entry in entries):
            for cache in entries:
                shutil.rmtree(cache)
            directory.rmdir()


def _depth(path: Path) -> int:
    return len(path.parts)


def remove_feature(removal: Removal, *, root: Path) -> str | None:
    """Apply the removal (all or nothing), tidy the emptied folders, and commit; returns the commit."""
    written = removal.plan.apply()
    tidy_folders(root, removal)
    if not written or not git.is_repo(root):
        return None
    return git.commit(root, f"Remove feature {removal.feature} with petrock", [c.path for c in written])
