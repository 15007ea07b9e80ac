"""``petrock upgrade`` and ``petrock check``: bring template changes into an app that has been edited.

Each generated file is merged three ways: base = the file as petrock generated
it (its blob id is in ``.petrock.toml``), ours = the file now, theirs = the same
file rendered by the installed templates. Clean merges are applied; conflicts
get standard markers and nothing is committed, as with ``git merge``.

The pure renders are committed as a parentless commit that the upgrade commit
merges in, so the next upgrade finds its base in the app's own history.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from petrock import git
from petrock.errors import GitError, UserError
from petrock.merge import carry_marker_blocks, files_with_conflict_markers, merge_text
from petrock.plan import Plan
from petrock.project import MANIFEST, Manifest, require_clean
from petrock.templates import template_version

TEMPLATES_REF = "refs/petrock/templates"


class Status(StrEnum):
    """What upgrade does with one file."""

    CREATE = "create"  # new in the templates
    UPDATE = "update"  # you had not changed it: replaced by the new render
    MERGE = "merge"  # you and the templates changed it: merged cleanly
    CONFLICT = "conflict"  # overlapping changes: written with conflict markers
    IDENTICAL = "identical"  # nothing to bring in
    SKIP = "skip"  # you deleted it: stays deleted
    REMOVE = "remove"  # gone from the templates and unchanged by you: deleted
    KEEP = "keep"  # gone from the templates but changed by you: kept as yours

    @property
    def writes(self) -> bool:
        return self in (Status.CREATE, Status.UPDATE, Status.MERGE, Status.CONFLICT, Status.REMOVE)


@dataclass(frozen=True)
class FileUpgrade:
    path: str
    status: Status
    note: str = ""


@dataclass
class Upgrade:
    """Everything an upgrade will do, computed before anything is written."""

    root: Path
    scope: str  # "project" or "feature:NAME"
    from_version: str
    to_version: str
    files: list[FileUpgrade]
    plan: Plan
    manifest: Manifest  # as it will be after the upgrade
    renders: dict[str, str] = field(default_factory=dict)  # the pure new renders (the next bases)

    @property
    def conflicts(self) -> list[str]:
        return [f.path for f in self.files if f.status == Status.CONFLICT]

    def to_json(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "from": self.from_version,
            "to": self.to_version,
            "files": [{"path": f.path, "status": f.status.value, "note": f.note} for f in self.files],
            "conflicts": self.conflicts,
        }


@dataclass(frozen=True)
class Applied:
    commit: str | None  # None when conflicts stopped the commit
    conflicts: list[str]  # every file in the tree with conflict markers


def version_key(version: str) -> tuple[tuple[int, str], ...]:
    """Sort key for versions like ``0.10.2``: numeric parts compare as numbers."""
    return tuple((int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"[.+-]", version))


def plan_upgrade(root: Path, *, feature: str | None = None, allow_dirty: bool = False) -> Upgrade:
    """Render with the installed templates and merge every generated file; nothing is written."""
    manifest = Manifest.load(root)
    if not git.is_repo(root):
        raise GitError(f"{root} is not a git repository", "upgrade merges from the app's history; run `git init` first")
    require_clean(root, allow_dirty=allow_dirty)
    installed = template_version()
    if feature is not None and feature not in manifest.features:
        known = ", ".join(sorted(manifest.features)) or "none"
        raise UserError(f"no feature {feature!r} in this app (features: {known})", "check `petrock feature list`")
    current = manifest.features[feature].get("template_version", manifest.template_version) if feature else None
    from_version = current or manifest.template_version
    if version_key(installed) < version_key(from_version):
        raise UserError(
            f"the app uses templates {from_version}, newer than the installed {installed}",
            "install a petrock at least that new; upgrade never downgrades",
        )
    renders, scope_paths = _render(manifest, feature)
    upgraded = replace(
        manifest, files=dict(manifest.files), features=dict(manifest.features), commits=dict(manifest.commits)
    )
    plan = Plan(root, pristine=manifest.files)
    labels = ("yours", f"generated (templates {from_version})", f"templates {installed}")
    files = [_merge_one(root, path, text, manifest, upgraded, plan, labels) for path, text in sorted(renders.items())]
    for path in sorted(scope_paths - renders.keys()):
        files.append(_drop_one(root, path, manifest, upgraded, plan))
    if feature is None:
        upgraded.template_version = installed
    else:
        upgraded.features[feature] = {**manifest.features[feature], "template_version": installed}
    scope = f"feature:{feature}" if feature else "project"
    return Upgrade(root, scope, from_version, installed, files, plan, upgraded, renders)


def _render(manifest: Manifest, feature: str | None) -> tuple[dict[str, str], set[str]]:
    """The new renders in scope, and the recorded paths that scope owns (to find dropped files)."""
    renders: dict[str, str] = {}
    owned: set[str] = set()
    features = [feature] if feature else sorted(manifest.features)
    if features:
        from petrock.generators.feature import render_feature

        for name in features:
            renders.update(render_feature(manifest.project_name, name, manifest.features))
            prefix = f"src/{manifest.project_name}/{name}/"
            owned |= {path for path in manifest.files if path.startswith(prefix)}
    if feature is None:
        from petrock.generators.new_project import render_project

        renders.update(render_project(manifest.project_name))
        owned = set(manifest.files)
    return renders, owned | renders.keys()


def _merge_one(
    root: Path,
    path: str,
    theirs: str,
    manifest: Manifest,
    upgraded: Manifest,
    plan: Plan,
    labels: tuple[str, str, str],
) -> FileUpgrade:
    recorded = manifest.files.get(path)
    upgraded.files[path] = git.blob_id(theirs)
    target = root / path
    ours = target.read_text() if target.is_file() else None
    if ours is None:
        if recorded is not None:
            return FileUpgrade(path, Status.SKIP, "you deleted it; it stays deleted")
        plan.write(path, theirs)
        return FileUpgrade(path, Status.CREATE, "new in the templates")
    base = git.read_blob(root, recorded) if recorded else None
    theirs = carry_marker_blocks(ours, theirs)
    if base is not None:
        base = carry_marker_blocks(ours, base)
    if ours == theirs or base == theirs:
        return FileUpgrade(path, Status.IDENTICAL)
    if ours == base:
        plan.write(path, theirs, edit=True)
        return FileUpgrade(path, Status.UPDATE)
    merged, clean = merge_text(ours, base or "", theirs, labels)
    plan.write(path, merged, edit=True)
    if clean:
        return FileUpgrade(path, Status.MERGE, "your changes kept")
    why = "overlapping changes" if base is not None else "petrock has no record of generating it"
    return FileUpgrade(path, Status.CONFLICT, f"{why}; resolve the markers")


def _drop_one(root: Path, path: str, manifest: Manifest, upgraded: Manifest, plan: Plan) -> FileUpgrade:
    """A file petrock generated that the new templates no longer have."""
    upgraded.files.pop(path, None)
    target = root / path
    if not target.is_file():
        return FileUpgrade(path, Status.SKIP, "gone from the templates and from the app")
    if git.blob_id(target.read_text()) == manifest.files.get(path):
        plan.delete(path)
        return FileUpgrade(path, Status.REMOVE, "gone from the templates")
    return FileUpgrade(path, Status.KEEP, "gone from the templates; you changed it, so it is yours now")


def apply_upgrade(upgrade: Upgrade) -> Applied:
    """Write the merges; commit unless any file in the tree still has conflict markers."""
    root = upgrade.root
    render_commit = _store_renders(root, upgrade.renders, f"petrock templates {upgrade.to_version} ({upgrade.scope})")
    upgrade.manifest.commits[upgrade.scope] = render_commit
    upgrade.plan.write(MANIFEST, upgrade.manifest.dumps(), edit=True)
    upgrade.plan.apply()
    conflicts = files_with_conflict_markers(root)
    if conflicts:
        # Keep the new bases reachable until the user commits the resolution.
        git.run(root, "update-ref", TEMPLATES_REF, render_commit)
        return Applied(None, conflicts)
    what = (
        upgrade.scope.replace("feature:", "feature ") if upgrade.scope != "project" else upgrade.manifest.project_name
    )
    message = f"Upgrade {what} to petrock templates {upgrade.to_version}"
    paths = [change.path for change in upgrade.plan.writes]
    return Applied(_commit_merging(root, message, paths, render_commit), [])


def _store_renders(root: Path, renders: dict[str, str], message: str) -> str:
    """Write the pure renders as a parentless commit; returns its id."""
    blobs = {
        path: git.run(root, "hash-object", "-w", "--stdin", input=text.encode()).stdout.decode().strip()
        for path, text in renders.items()
    }
    tree = _make_tree(root, [(path.split("/"), blob) for path, blob in blobs.items()])
    return git.run(root, *git.identity(root), "commit-tree", tree, "-m", message).stdout.decode().strip()


def _make_tree(root: Path, entries: Iterable[tuple[list[str], str]]) -> str:
    """A git tree from (path parts, blob id) pairs, built bottom-up with ``git mktree``."""
    files: dict[str, str] = {}
    folders: dict[str, list[tuple[list[str], str]]] = {}
    for parts, blob in entries:
        if len(parts) == 1:
            files[parts[0]] = blob
        else:
            folders.setdefault(parts[0], []).append((parts[1:], blob))
    lines = [f"100644 blob {blob}\t{name}" for name, blob in files.items()]
    lines += [f"040000 tree {_make_tree(root, children)}\t{name}" for name, children in folders.items()]
    return git.run(root, "mktree", input=("\n".join(lines) + "\n").encode()).stdout.decode().strip()


def _commit_merging(root: Path, message: str, paths: list[str], render_commit: str) -> str:
    """Commit ``paths`` as a merge of HEAD and the render commit, keeping the new bases in history."""
    git.run(root, "add", "-A", "--", *paths)
    tree = git.run(root, "write-tree").stdout.decode().strip()
    head = git.head(root)
    commit = (
        git.run(root, *git.identity(root), "commit-tree", tree, "-p", head, "-p", render_commit, "-m", message)
        .stdout.decode()
        .strip()
    )
    git.run(root, "update-ref", "-m", f"petrock: {message}", "HEAD", commit, head)
    return commit


@dataclass(frozen=True)
class CheckResult:
    app_version: str
    installed: str
    behind: list[str]  # "project" and feature names whose templates are older than the installed ones
    conflicts: list[str]

    @property
    def ok(self) -> bool:
        return not self.behind and not self.conflicts

    def reason(self) -> str:
        if self.conflicts:
            return f"conflict markers in {', '.join(self.conflicts)} — resolve them and commit"
        if self.behind:
            return (
                f"{', '.join(self.behind)} behind the installed templates {self.installed} "
                f"(app has {self.app_version}) — run `petrock upgrade`"
            )
        return f"up to date with templates {self.installed}"

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "app_version": self.app_version,
            "installed": self.installed,
            "behind": self.behind,
            "conflicts": self.conflicts,
            "reason": self.reason(),
        }


def check(root: Path) -> CheckResult:
    """Is the app behind the installed templates, or does it hold leftover conflict markers?"""
    manifest = Manifest.load(root)
    installed = version_key(template_version())
    behind = ["project"] if version_key(manifest.template_version) < installed else []
    for name, info in sorted(manifest.features.items()):
        if version_key(info.get("template_version", manifest.template_version)) < installed:
            behind.append(f"feature {name}")
    return CheckResult(manifest.template_version, template_version(), behind, files_with_conflict_markers(root))
